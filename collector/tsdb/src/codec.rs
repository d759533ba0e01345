//! Byte encodings stored in SQLite besides chunks: label sets (the `series`
//! table, as references into the `symbols` table) and write-ahead records
//! (the `wal` table). See `FORMAT.md`.

use std::collections::HashMap;

use thiserror::Error;
use vigil_wire::{Label, Labels, Sample};

/// Version byte leading every wal record, so the layout can evolve.
/// Version 2 added the per-entry value mode; version 1 records (raw values
/// only) are still read, so a wal left by an older build replays.
const WAL_VERSION: u8 = 2;
const WAL_VERSION_RAW: u8 = 1;

/// Value mode of a version-2 entry whose values are stored as raw bits;
/// `1 + e` means decimals at scale `e` (see `FORMAT.md`).
const VALUES_RAW: u8 = 0;

/// Largest decimal scale the writer tries. Every try costs a multiplication
/// and a division on the single writer thread, and a value that is no
/// decimal (a full-precision float) tries them all before it is stored raw;
/// gauges and counters have a few decimals at most.
const WAL_MAX_SCALE: usize = 9;

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
    #[error("unknown wal value mode {0}")]
    ValueMode(u8),
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

    /// Bytes left to read.
    pub fn remaining(&self) -> usize {
        self.buf.len()
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
///
/// Values that are decimals with a few digits (counters, most gauges) are
/// stored as varint deltas of scaled integers rather than 8 raw bytes: the
/// record is written to SQLite's WAL file and again into the database by
/// the checkpoint before it is trimmed, and with raw values it was the
/// bulk of the bytes the store writes.
#[derive(Debug, Default)]
pub struct WalWriter {
    buf: Vec<u8>,
    /// Scaled values of the entry being added.
    scaled: Vec<i64>,
}

impl WalWriter {
    pub fn new() -> Self {
        Self::with_capacity(0, 0)
    }

    /// Sizes the record for `series` entries of `samples` samples in all, so
    /// a large group commit does not grow (and copy) its buffer repeatedly.
    pub fn with_capacity(series: usize, samples: usize) -> Self {
        // An entry's id, count, first timestamp and value mode take about
        // 13 bytes; a regular scrape's timestamp delta takes 2 and a
        // decimal value's delta 1 to 3 (8 for raw values, which then grow
        // the buffer once or twice).
        let mut buf = Vec::with_capacity(1 + series * 13 + samples * 5);
        buf.push(WAL_VERSION);
        Self {
            buf,
            scaled: Vec::new(),
        }
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
        match self.decimal_scale(samples) {
            Some(e) => {
                self.buf.push(1 + e as u8);
                let mut prev = 0i64;
                for &m in &self.scaled {
                    put_varint(&mut self.buf, m.wrapping_sub(prev));
                    prev = m;
                }
            }
            None => {
                self.buf.push(VALUES_RAW);
                for s in samples {
                    self.buf.extend_from_slice(&s.value.to_bits().to_le_bytes());
                }
            }
        }
    }

    /// The one decimal scale at which every value of `samples` round-trips
    /// bit for bit, leaving the scaled integers in `self.scaled`; `None`
    /// stores them raw.
    fn decimal_scale(&mut self, samples: &[Sample]) -> Option<usize> {
        let mut e = crate::sealed::decimal_scale_within(samples.first()?.value, WAL_MAX_SCALE)?;
        self.scaled.clear();
        for (i, s) in samples.iter().enumerate() {
            if let Some(m) = scaled_fast(s.value, crate::sealed::POW10[e]) {
                self.scaled.push(m);
                continue;
            }
            // A finer scale may hold this value and the earlier ones; they
            // are scaled again, and checked again, at it.
            let finer = crate::sealed::decimal_scale_within(s.value, WAL_MAX_SCALE)?;
            if finer <= e {
                return None;
            }
            e = finer;
            self.scaled.clear();
            for p in &samples[..=i] {
                self.scaled
                    .push(scaled_fast(p.value, crate::sealed::POW10[e])?);
            }
        }
        Some(e)
    }

    pub fn is_empty(&self) -> bool {
        self.buf.len() <= 1
    }

    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// `v` as an integer `m` with `m / p == v` bit for bit, if there is one
/// below 2^51 in magnitude; `p` is a power of ten. The check sealing does,
/// with the rounding done by adding and taking away 1.5 × 2^52 (exact
/// below 2^51, and no call into libm): this runs for every sample on the
/// writer thread.
#[inline]
fn scaled_fast(v: f64, p: f64) -> Option<i64> {
    const ROUNDER: f64 = 6_755_399_441_055_744.0;
    let x = v * p;
    // NaN and the infinities fail this too.
    if x.is_nan() || x.abs() >= 2_251_799_813_685_248.0 {
        return None;
    }
    let m = ((x + ROUNDER) - ROUNDER) as i64;
    ((m as f64 / p).to_bits() == v.to_bits()).then_some(m)
}

/// Decodes a wal record, calling `f(series_id, samples)` per entry.
pub fn decode_wal(buf: &[u8], mut f: impl FnMut(u64, &[Sample])) -> Result<(), CodecError> {
    let mut r = Reader::new(buf);
    let version = r.bytes(1)?[0];
    if version != WAL_VERSION && version != WAL_VERSION_RAW {
        return Err(CodecError::Version(version));
    }
    let mut samples = Vec::new();
    while !r.is_empty() {
        let id = r.uvarint()?;
        let n = r.uvarint()?;
        if n == 0 {
            return Err(CodecError::EmptyEntry);
        }
        // Every sample takes at least one byte (its timestamp or delta),
        // which bounds the allocation.
        if n > r.remaining() as u64 {
            return Err(CodecError::Truncated);
        }
        samples.clear();
        let mut t = r.varint()?;
        samples.push(Sample::new(t, 0.0));
        for _ in 1..n {
            t = t.wrapping_add(r.varint()?);
            samples.push(Sample::new(t, 0.0));
        }
        let mode = if version == WAL_VERSION_RAW {
            VALUES_RAW
        } else {
            r.bytes(1)?[0]
        };
        match mode {
            VALUES_RAW => {
                for s in samples.iter_mut() {
                    s.value = f64::from_bits(r.u64_le()?);
                }
            }
            m if usize::from(m - 1) <= crate::sealed::MAX_SCALE => {
                let p = crate::sealed::POW10[usize::from(m - 1)];
                let mut v = 0i64;
                for s in samples.iter_mut() {
                    v = v.wrapping_add(r.varint()?);
                    // The division the writer checked: bit for bit.
                    s.value = v as f64 / p;
                }
            }
            m => return Err(CodecError::ValueMode(m)),
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
            // Past the version byte, into both layouts' entry decoding.
            for version in [WAL_VERSION_RAW, WAL_VERSION] {
                let mut b = vec![version];
                b.extend_from_slice(&buf);
                let _ = decode_wal(&b, |_, _| {});
            }
        }

        #[test]
        fn wal_values_roundtrip_bit_for_bit(
            entries in prop::collection::vec(prop::collection::vec(wal_value(), 1..24), 1..8)
        ) {
            let mut w = WalWriter::new();
            for (id, bits) in entries.iter().enumerate() {
                let samples: Vec<Sample> = bits
                    .iter()
                    .enumerate()
                    .map(|(i, b)| Sample::new(i as i64 * 15_000, f64::from_bits(*b)))
                    .collect();
                w.add(id as u64, &samples);
            }
            let buf = w.finish();
            let mut got = Vec::new();
            decode_wal(&buf, |_, s| got.push(s.iter().map(|s| s.value.to_bits()).collect::<Vec<_>>()))
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(got, entries);
        }
    }

    /// Values as the wal meets them: decimals at every scale (within and
    /// past the writer's bound), integers, and the values no scale holds.
    fn wal_value() -> impl Strategy<Value = u64> {
        prop_oneof![
            4 => (-1_000_000_000i64..1_000_000_000, 0usize..=12)
                .prop_map(|(m, e)| (m as f64 / crate::sealed::POW10[e]).to_bits()),
            1 => prop::sample::select(vec![
                (-0.0f64).to_bits(),
                0.0f64.to_bits(),
                f64::NAN.to_bits(),
                0x7ff0_0000_0000_0002, // Prometheus's stale marker
                0xfff8_0000_0000_0001, // a NaN with a payload
                f64::INFINITY.to_bits(),
                f64::NEG_INFINITY.to_bits(),
                f64::MIN_POSITIVE.to_bits(),
                1u64, // the smallest subnormal
                9_007_199_254_740_993f64.to_bits(),
                f64::MAX.to_bits(),
                0.1f64.to_bits(),
                (0.1f64 + 0.2).to_bits(),
            ]),
            1 => any::<u64>(),
        ]
    }

    /// A record of `version` opening with one entry of series `id`, up to
    /// its values: the count, the first timestamp and the deltas.
    fn entry_head(version: u8, id: u64, t0_and_deltas: &[i64]) -> Vec<u8> {
        let mut b = vec![version];
        put_uvarint(&mut b, id);
        put_uvarint(&mut b, t0_and_deltas.len() as u64);
        for &t in t0_and_deltas {
            put_varint(&mut b, t);
        }
        b
    }

    #[test]
    fn version_1_records_still_decode() {
        // A record as the previous layout wrote it: no value mode, raw bits.
        let mut b = entry_head(WAL_VERSION_RAW, 7, &[1_000, 15_000]);
        b.extend_from_slice(&1.5f64.to_bits().to_le_bytes());
        b.extend_from_slice(&0x7ff0_0000_0000_0002u64.to_le_bytes());
        let mut got = Vec::new();
        decode_wal(&b, |id, s| {
            got.extend(s.iter().map(|s| (id, s.timestamp_ms, s.value.to_bits())))
        })
        .expect("a version-1 record decodes");
        assert_eq!(
            got,
            [
                (7, 1_000, 1.5f64.to_bits()),
                (7, 16_000, 0x7ff0_0000_0000_0002)
            ]
        );
    }

    #[test]
    fn decimal_values_take_a_few_bytes() {
        // A two-decimal gauge and an integer counter, ten scrapes per
        // request as a remote_write sender batches them.
        let gauge: Vec<Sample> = (0..10)
            .map(|i| {
                Sample::new(
                    1_700_000_000_000 + i * 15_000,
                    (4_321 + 37 * i) as f64 / 100.0,
                )
            })
            .collect();
        let counter: Vec<Sample> = (0..10)
            .map(|i| Sample::new(1_700_000_000_000 + i * 15_000, (90_000 + 250 * i) as f64))
            .collect();
        let record = |values: &dyn Fn(&Sample) -> f64| {
            let mut w = WalWriter::new();
            for (id, s) in [gauge.as_slice(), counter.as_slice()]
                .into_iter()
                .enumerate()
            {
                let s: Vec<Sample> = s
                    .iter()
                    .map(|x| Sample::new(x.timestamp_ms, values(x)))
                    .collect();
                w.add(id as u64, &s);
            }
            w.finish()
        };
        let decimal = record(&|s| s.value);
        // The same timestamps with values no scale holds: raw bits.
        let raw = record(&|s| s.value * std::f64::consts::PI);
        assert!(
            decimal.len() * 2 <= raw.len(),
            "{} bytes against {} raw",
            decimal.len(),
            raw.len()
        );
        // A value no decimal scale holds falls back to raw bits, and only
        // for its own entry.
        let mut w = WalWriter::new();
        w.add(1, &[Sample::new(0, std::f64::consts::PI)]);
        let raw = w.finish();
        assert_eq!(raw[raw.len() - 9], VALUES_RAW);
    }

    #[test]
    fn unknown_value_modes_are_refused() {
        let mut b = entry_head(WAL_VERSION, 1, &[0]);
        b.push(1 + crate::sealed::MAX_SCALE as u8 + 1);
        b.push(0);
        assert_eq!(
            decode_wal(&b, |_, _| {}),
            Err(CodecError::ValueMode(
                1 + crate::sealed::MAX_SCALE as u8 + 1
            ))
        );
    }
}
