//! Byte encodings stored in SQLite besides chunks: label sets (the `series`
//! table, as references into the `symbols` table) and write-ahead records
//! (the `wal` table). See `FORMAT.md`.

use std::collections::HashMap;

use thiserror::Error;
use vigil_wire::{Label, Labels, Sample};

/// Version byte leading every wal record, so the layout can evolve.
const WAL_VERSION: u8 = 1;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CodecError {
    #[error("record ends in the middle of a field")]
    Truncated,
    #[error("varint is longer than 10 bytes")]
    VarintOverflow,
    #[error("label text is not valid UTF-8")]
    Utf8,
    #[error("unknown wal record version {0}")]
    Version(u8),
    #[error("a wal entry holds no samples")]
    EmptyEntry,
    #[error("label set refers to unknown symbol {0}")]
    UnknownSymbol(u64),
}

pub fn put_uvarint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

pub fn put_varint(out: &mut Vec<u8>, v: i64) {
    put_uvarint(out, ((v << 1) ^ (v >> 63)) as u64);
}

/// A cursor over an encoded record.
pub struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Self { buf }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    pub fn uvarint(&mut self) -> Result<u64, CodecError> {
        let mut v: u64 = 0;
        for i in 0..10 {
            let (&b, rest) = self.buf.split_first().ok_or(CodecError::Truncated)?;
            self.buf = rest;
            v |= u64::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                return Ok(v);
            }
        }
        Err(CodecError::VarintOverflow)
    }

    pub fn varint(&mut self) -> Result<i64, CodecError> {
        let u = self.uvarint()?;
        Ok(((u >> 1) as i64) ^ -((u & 1) as i64))
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.buf.len() < n {
            return Err(CodecError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn u64_le(&mut self) -> Result<u64, CodecError> {
        let b = self.bytes(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn string(&mut self) -> Result<String, CodecError> {
        let n = usize::try_from(self.uvarint()?).map_err(|_| CodecError::Truncated)?;
        let b = self.bytes(n)?;
        String::from_utf8(b.to_vec()).map_err(|_| CodecError::Utf8)
    }
}

/// `uvarint count, then (uvarint len, name bytes, uvarint len, value bytes)*`.
pub fn encode_labels(labels: &Labels) -> Vec<u8> {
    let mut out = Vec::with_capacity(
        labels
            .iter()
            .map(|l| l.name.len() + l.value.len() + 2)
            .sum::<usize>()
            + 1,
    );
    put_uvarint(&mut out, labels.len() as u64);
    for l in labels.iter() {
        put_uvarint(&mut out, l.name.len() as u64);
        out.extend_from_slice(l.name.as_bytes());
        put_uvarint(&mut out, l.value.len() as u64);
        out.extend_from_slice(l.value.as_bytes());
    }
    out
}

pub fn decode_labels(buf: &[u8]) -> Result<Labels, CodecError> {
    let mut r = Reader::new(buf);
    let n = r.uvarint()?;
    // Each label takes at least 2 bytes, which bounds the allocation.
    let mut v = Vec::with_capacity((n as usize).min(buf.len() / 2));
    for _ in 0..n {
        let name = r.string()?;
        let value = r.string()?;
        v.push(Label { name, value });
    }
    Ok(v.into_iter().collect())
}

/// The symbol table: every label name and value string stored once, in the
/// `symbols` table, and referred to by id from `series.labels` (format 2).
/// Ids are dense and assigned in order; symbols are never deleted.
#[derive(Debug, Default)]
pub struct Symbols {
    ids: HashMap<Box<str>, u32>,
    next: u32,
}

impl Symbols {
    /// The table as stored (`id`, text).
    pub fn from_rows(rows: impl IntoIterator<Item = (u32, String)>) -> Self {
        let mut out = Symbols::default();
        for (id, text) in rows {
            out.next = out.next.max(id.saturating_add(1));
            out.ids.insert(text.into_boxed_str(), id);
        }
        out
    }

    fn intern(&mut self, text: &str, added: &mut Vec<(u32, String)>) -> u32 {
        if let Some(&id) = self.ids.get(text) {
            return id;
        }
        let id = self.next;
        self.next += 1;
        self.ids.insert(text.into(), id);
        added.push((id, text.to_string()));
        id
    }

    /// `uvarint count, then (uvarint name id, uvarint value id)*`; strings
    /// not yet in the table get ids and are pushed to `added`, which the
    /// caller stores in the same transaction (or hands to
    /// [`Symbols::forget`] if that fails).
    pub fn encode(&mut self, labels: &Labels, added: &mut Vec<(u32, String)>) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + labels.len() * 4);
        put_uvarint(&mut out, labels.len() as u64);
        for l in labels.iter() {
            let n = self.intern(&l.name, added);
            let v = self.intern(&l.value, added);
            put_uvarint(&mut out, u64::from(n));
            put_uvarint(&mut out, u64::from(v));
        }
        out
    }

    /// Undoes the ids handed out since `added` was empty (a failed commit).
    pub fn forget(&mut self, added: &[(u32, String)]) {
        for (_, text) in added {
            self.ids.remove(text.as_str());
        }
        if let Some((first, _)) = added.first() {
            self.next = *first;
        }
    }
}

/// Decodes a format-2 label set against the stored symbol table.
pub fn decode_labels_sym(buf: &[u8], table: &HashMap<u32, String>) -> Result<Labels, CodecError> {
    let mut r = Reader::new(buf);
    let n = r.uvarint()?;
    let mut v = Vec::with_capacity((n as usize).min(buf.len() / 2));
    let text = |r: &mut Reader<'_>| -> Result<String, CodecError> {
        let id = r.uvarint()?;
        u32::try_from(id)
            .ok()
            .and_then(|id| table.get(&id))
            .cloned()
            .ok_or(CodecError::UnknownSymbol(id))
    };
    for _ in 0..n {
        let name = text(&mut r)?;
        let value = text(&mut r)?;
        v.push(Label { name, value });
    }
    if !r.is_empty() {
        return Err(CodecError::Truncated);
    }
    Ok(v.into_iter().collect())
}

/// Builds one wal record: the samples accepted by one group commit.
#[derive(Debug, Default)]
pub struct WalWriter {
    buf: Vec<u8>,
}

impl WalWriter {
    pub fn new() -> Self {
        Self::with_capacity(0, 0)
    }

    /// Sizes the record for `series` entries of `samples` samples in all, so
    /// a large group commit does not grow (and copy) its buffer repeatedly.
    pub fn with_capacity(series: usize, samples: usize) -> Self {
        // An entry's id, count and first timestamp take about 12 bytes; a
        // regular scrape's timestamp delta takes 2 and the value 8.
        let mut buf = Vec::with_capacity(1 + series * 12 + samples * 10);
        buf.push(WAL_VERSION);
        Self { buf }
    }

    /// Adds the samples of one series (non-empty, in append order).
    pub fn add(&mut self, series_id: u64, samples: &[Sample]) {
        let Some(first) = samples.first() else { return };
        put_uvarint(&mut self.buf, series_id);
        put_uvarint(&mut self.buf, samples.len() as u64);
        put_varint(&mut self.buf, first.timestamp_ms);
        let mut prev = first.timestamp_ms;
        for s in &samples[1..] {
            put_varint(&mut self.buf, s.timestamp_ms.wrapping_sub(prev));
            prev = s.timestamp_ms;
        }
        for s in samples {
            self.buf.extend_from_slice(&s.value.to_bits().to_le_bytes());
        }
    }

    pub fn is_empty(&self) -> bool {
        self.buf.len() <= 1
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Decodes a wal record, calling `f(series_id, samples)` per entry.
pub fn decode_wal(buf: &[u8], mut f: impl FnMut(u64, &[Sample])) -> Result<(), CodecError> {
    let mut r = Reader::new(buf);
    let version = r.bytes(1)?[0];
    if version != WAL_VERSION {
        return Err(CodecError::Version(version));
    }
    let mut samples = Vec::new();
    while !r.is_empty() {
        let id = r.uvarint()?;
        let n = r.uvarint()?;
        if n == 0 {
            return Err(CodecError::EmptyEntry);
        }
        // Each sample needs at least 9 bytes, which bounds the allocation.
        if n > (buf.len() / 9) as u64 + 1 {
            return Err(CodecError::Truncated);
        }
        samples.clear();
        let mut t = r.varint()?;
        samples.push(Sample::new(t, 0.0));
        for _ in 1..n {
            t = t.wrapping_add(r.varint()?);
            samples.push(Sample::new(t, 0.0));
        }
        for s in samples.iter_mut() {
            s.value = f64::from_bits(r.u64_le()?);
        }
        f(id, &samples);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn varints_roundtrip(u in any::<u64>(), i in any::<i64>()) {
            let mut b = Vec::new();
            put_uvarint(&mut b, u);
            put_varint(&mut b, i);
            let mut r = Reader::new(&b);
            prop_assert_eq!(r.uvarint(), Ok(u));
            prop_assert_eq!(r.varint(), Ok(i));
            prop_assert!(r.is_empty());
        }

        #[test]
        fn labels_roundtrip(pairs in prop::collection::vec(("[a-z_]{1,8}", ".{0,12}"), 0..8)) {
            let labels = Labels::from_pairs(pairs);
            prop_assert_eq!(decode_labels(&encode_labels(&labels)), Ok(labels));
        }

        #[test]
        fn wal_roundtrip(entries in prop::collection::vec(
            (any::<u64>(), prop::collection::vec((any::<i64>(), any::<u64>()), 1..20)), 0..10)
        ) {
            let mut w = WalWriter::new();
            for (id, s) in &entries {
                let samples: Vec<Sample> = s.iter().map(|(t, v)| Sample::new(*t, f64::from_bits(*v))).collect();
                w.add(*id, &samples);
            }
            let buf = w.finish();
            let mut got = Vec::new();
            decode_wal(&buf, |id, s| {
                got.push((id, s.iter().map(|s| (s.timestamp_ms, s.value.to_bits())).collect::<Vec<_>>()))
            }).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(got, entries);
        }

        #[test]
        fn symbol_labels_roundtrip(sets in prop::collection::vec(prop::collection::vec(("[a-c_]{1,3}", ".{0,3}"), 0..6), 1..8)) {
            let mut syms = Symbols::default();
            let mut table = HashMap::new();
            for pairs in sets {
                let labels = Labels::from_pairs(pairs);
                let mut added = Vec::new();
                let enc = syms.encode(&labels, &mut added);
                table.extend(added);
                prop_assert_eq!(decode_labels_sym(&enc, &table), Ok(labels));
            }
            // Every distinct string is stored once.
            let mut texts: Vec<&String> = table.values().collect();
            texts.sort();
            let before = texts.len();
            texts.dedup();
            prop_assert_eq!(before, texts.len());
        }

        #[test]
        fn garbage_never_panics(buf in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode_labels(&buf);
            let _ = decode_labels_sym(&buf, &HashMap::new());
            let _ = decode_wal(&buf, |_, _| {});
        }
    }
}
