//! Gorilla-style compressed chunks: the on-disk (and in-head) form of samples.
//!
//! Layout (see `FORMAT.md`): a 2-byte big-endian sample count followed by a
//! bit stream, most significant bit first. Timestamps are delta-of-delta
//! coded with a prefix code tuned for millisecond scrape jitter; values are
//! XOR coded against the previous value as in the Gorilla paper. All
//! arithmetic on timestamps wraps, so any sequence of `i64` round-trips and
//! every `f64` bit pattern (NaNs, the stale marker, -0.0) is kept exactly.

use thiserror::Error;
use vigil_wire::Sample;

/// Most samples a chunk can hold (the count is a `u16`).
pub const MAX_CHUNK_SAMPLES: usize = u16::MAX as usize;

/// Why a chunk could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum ChunkError {
    #[error("chunk is shorter than its 2-byte header")]
    NoHeader,
    #[error("chunk bit stream ends after {decoded} of {expected} samples")]
    Truncated { decoded: usize, expected: usize },
    #[error("chunk has an invalid significant-bit count")]
    BadWidth,
    #[error("chunk has unknown sealed encoding version {0}")]
    UnknownEncoding(u8),
    #[error("chunk's timestamp column is missing or holds another sample count")]
    Timestamps,
}

/// Appends bits, most significant first, to a byte vector.
#[derive(Debug, Clone, Default)]
pub(crate) struct BitWriter {
    pub(crate) buf: Vec<u8>,
    /// Unused low bits in the last byte of `buf` (0 = start a new byte).
    pub(crate) free: u32,
}

impl BitWriter {
    #[inline]
    pub(crate) fn write_bit(&mut self, bit: bool) {
        if self.free == 0 {
            self.buf.push(0);
            self.free = 8;
        }
        self.free -= 1;
        if bit && let Some(last) = self.buf.last_mut() {
            *last |= 1 << self.free;
        }
    }

    /// Writes the low `nbits` (0..=64) bits of `value`: first into the free
    /// bits of the last byte, then whole bytes, then the rest into a new
    /// byte. Head chunks are encoded on the writer thread, the one serial
    /// step of ingestion, so this is a byte at a time, not a bit at a time.
    #[inline]
    pub(crate) fn write_bits(&mut self, value: u64, nbits: u32) {
        if nbits == 0 {
            return;
        }
        let mut left = nbits.min(64);
        let value = if left == 64 {
            value
        } else {
            value & ((1u64 << left) - 1)
        };
        if self.free > 0 {
            let take = self.free.min(left);
            let bits = ((value >> (left - take)) & ((1u64 << take) - 1)) as u8;
            if let Some(last) = self.buf.last_mut() {
                *last |= bits << (self.free - take);
            }
            self.free -= take;
            left -= take;
        }
        if left > 0 {
            // The remaining bits, moved to the top of a word (the bits above
            // them, already written, shift out), go out as its first bytes.
            let word = (value << (64 - left)).to_be_bytes();
            let bytes = left.div_ceil(8);
            self.buf.extend_from_slice(&word[..bytes as usize]);
            self.free = bytes * 8 - left;
        }
    }
}

/// Reads bits, most significant first.
pub(crate) struct BitReader<'a> {
    pub(crate) buf: &'a [u8],
    pub(crate) pos: usize,
}

impl<'a> BitReader<'a> {
    pub(crate) fn read_bit(&mut self) -> Option<bool> {
        let byte = *self.buf.get(self.pos / 8)?;
        let bit = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Some(bit == 1)
    }

    /// The next `nbits` (1 to 56) bits without consuming them, when eight
    /// bytes remain from the current one: a big-endian load of those holds
    /// the current bit and at least 56 more, so this is a shift and a mask
    /// (decoding is most of a query's storage time).
    pub(crate) fn peek(&self, nbits: u32) -> Option<u64> {
        let byte = self.pos / 8;
        let w = self.buf.get(byte..byte + 8)?;
        let mut word = [0u8; 8];
        word.copy_from_slice(w);
        Some((u64::from_be_bytes(word) << (self.pos % 8)) >> (64 - nbits))
    }

    pub(crate) fn read_bits(&mut self, nbits: u32) -> Option<u64> {
        if (1..=56).contains(&nbits)
            && let Some(out) = self.peek(nbits)
        {
            self.pos += nbits as usize;
            return Some(out);
        }
        self.read_bits_slow(nbits)
    }

    fn read_bits_slow(&mut self, mut nbits: u32) -> Option<u64> {
        let mut out: u64 = 0;
        while nbits > 0 {
            let byte = *self.buf.get(self.pos / 8)?;
            let offset = (self.pos % 8) as u32;
            let avail = 8 - offset;
            let take = avail.min(nbits);
            let bits = (u64::from(byte) >> (avail - take)) & ((1u64 << take) - 1);
            // `take <= 8` and at most 64 bits are read, so nothing is lost.
            out = (out << take) | bits;
            self.pos += take as usize;
            nbits -= take;
        }
        Some(out)
    }
}

/// The delta-of-delta prefix code: `(prefix, prefix length, payload bits)`.
/// Small buckets first: scrape timestamps usually land within ±2 ms of their
/// slot (why Prometheus 2.43 added a 2 ms alignment tolerance), so a dod in
/// [-8, 7] costs 6 bits; the first delta of a chunk takes the 20-bit bucket.
const DOD_BUCKETS: [(u64, u32, u32); 3] = [(0b10, 2, 4), (0b110, 3, 14), (0b1110, 4, 20)];

fn fits_signed(v: i64, bits: u32) -> bool {
    let lo = -(1i64 << (bits - 1));
    let hi = (1i64 << (bits - 1)) - 1;
    (lo..=hi).contains(&v)
}

fn sign_extend(v: u64, bits: u32) -> i64 {
    let shift = 64 - bits;
    ((v << shift) as i64) >> shift
}

/// Incrementally encodes one chunk. The head of every series is one of these,
/// so appending costs a few bit operations and no allocation per sample
/// beyond the byte vector's growth.
#[derive(Debug, Clone)]
pub struct ChunkEncoder {
    w: BitWriter,
    n: u16,
    first_t: i64,
    t: i64,
    delta: i64,
    v: u64,
    /// Leading/trailing zero window of the last XOR written in full;
    /// `leading == u8::MAX` means no window yet.
    leading: u8,
    trailing: u8,
}

impl Default for ChunkEncoder {
    fn default() -> Self {
        Self::new()
    }
}

impl ChunkEncoder {
    pub fn new() -> Self {
        Self {
            w: BitWriter {
                buf: vec![0, 0],
                free: 0,
            },
            n: 0,
            first_t: 0,
            t: 0,
            delta: 0,
            v: 0,
            leading: u8::MAX,
            trailing: 0,
        }
    }

    /// An encoder whose buffer starts with room for `bytes`: a head that
    /// follows a cut chunk of that size then grows once or not at all,
    /// instead of doubling into up to twice the room it needs.
    pub fn with_capacity(bytes: usize) -> Self {
        let mut e = Self::new();
        e.w.buf.reserve_exact(bytes.saturating_sub(e.w.buf.len()));
        e
    }

    pub fn len(&self) -> usize {
        usize::from(self.n)
    }

    pub fn is_empty(&self) -> bool {
        self.n == 0
    }

    /// Whether another sample fits (the count is 16 bits).
    pub fn is_full(&self) -> bool {
        self.n == u16::MAX
    }

    /// Timestamp of the first sample (meaningless when empty).
    pub fn first_t(&self) -> i64 {
        self.first_t
    }

    /// Timestamp of the last sample (meaningless when empty).
    pub fn last_t(&self) -> i64 {
        self.t
    }

    /// The encoded bytes so far: a complete, decodable chunk.
    pub fn bytes(&self) -> &[u8] {
        &self.w.buf
    }

    /// Consumes the encoder, returning the chunk bytes.
    pub fn into_bytes(self) -> Vec<u8> {
        self.w.buf
    }

    /// Appends one sample. Callers keep `len() < MAX_CHUNK_SAMPLES`; past that
    /// the sample is refused and `false` returned.
    pub fn append(&mut self, t: i64, v: f64) -> bool {
        if self.is_full() {
            return false;
        }
        let bits = v.to_bits();
        match self.n {
            0 => {
                self.w.write_bits(t as u64, 64);
                self.w.write_bits(bits, 64);
                self.first_t = t;
            }
            _ => {
                let delta = t.wrapping_sub(self.t);
                let dod = delta.wrapping_sub(self.delta);
                // A regular interval's dod is a single 0 bit: it goes out
                // as a leading zero of the value's first write instead of
                // a write of its own.
                let pending_zero = if dod == 0 {
                    1
                } else {
                    self.write_dod(dod);
                    0
                };
                self.write_xor(bits, pending_zero);
                self.delta = delta;
            }
        }
        self.t = t;
        self.v = bits;
        self.n += 1;
        self.w.buf[..2].copy_from_slice(&self.n.to_be_bytes());
        true
    }

    /// Writes a non-zero dod (a zero one is the caller's leading zero bit).
    fn write_dod(&mut self, dod: i64) {
        for (prefix, plen, bits) in DOD_BUCKETS {
            if fits_signed(dod, bits) {
                // Prefix and value in one write (at most 24 bits).
                let value = (dod as u64) & ((1u64 << bits) - 1);
                self.w.write_bits((prefix << bits) | value, plen + bits);
                return;
            }
        }
        self.w.write_bits(0b1111, 4);
        self.w.write_bits(dod as u64, 64);
    }

    /// Writes the value's XOR with the previous one, preceded by
    /// `pending_zero` (0 or 1) zero bits the caller has not written.
    fn write_xor(&mut self, bits: u64, pending_zero: u32) {
        /// 5 bits of leading zeros and 6 bits of significant-bit count.
        const NEW_WINDOW_HEADER_BITS: u32 = 11;
        let x = bits ^ self.v;
        if x == 0 {
            self.w.write_bits(0, 1 + pending_zero);
            return;
        }
        // 5 bits encode the leading count, so it is capped at 31.
        let lead = (x.leading_zeros() as u8).min(31);
        let trail = x.trailing_zeros() as u8;
        let fits_window = self.leading != u8::MAX && lead >= self.leading && trail >= self.trailing;
        // Reusing a window that is much wider than this XOR needs wastes
        // its spare bits on every later sample too; a new window costs 11
        // header bits. Prometheus always reuses; narrowing when that saves
        // bits keeps noisy series a few per cent smaller, and decoders see
        // nothing new (both cases are part of the format).
        let own_sig = 64 - u32::from(lead) - u32::from(trail);
        let window_sig = || 64 - u32::from(self.leading) - u32::from(self.trailing);
        // Control bits go out with what follows them in as few writes as
        // fit in 64 bits: this runs for every sample on the writer thread.
        if fits_window && window_sig() <= own_sig + NEW_WINDOW_HEADER_BITS {
            let sig = window_sig();
            let value = x >> self.trailing;
            if sig + 2 + pending_zero <= 64 {
                self.w
                    .write_bits((0b10 << sig) | value, sig + 2 + pending_zero);
            } else {
                self.w.write_bits(0b10, 2 + pending_zero);
                self.w.write_bits(value, sig);
            }
        } else {
            let sig = own_sig;
            // '11', 5 bits of leading zeros, 6 bits of significant-bit
            // count (64 is written as 0: 1..=63 fit in 6 bits).
            let header = (0b11 << 11) | (u64::from(lead) << 6) | (u64::from(sig) & 0x3f);
            self.w.write_bits(header, 13 + pending_zero);
            self.w.write_bits(x >> trail, sig);
            self.leading = lead;
            self.trailing = trail;
        }
    }
}

/// The number of samples a chunk claims to hold.
pub fn chunk_len(data: &[u8]) -> Result<usize, ChunkError> {
    if crate::sealed::is_sealed(data) {
        return crate::sealed::sealed_len(data);
    }
    match data {
        [a, b, ..] => Ok(usize::from(u16::from_be_bytes([*a, *b]))),
        _ => Err(ChunkError::NoHeader),
    }
}

/// Decodes a chunk, pushing to `out` the samples with `start <= t <= end`.
pub fn decode_range(
    data: &[u8],
    start: i64,
    end: i64,
    out: &mut Vec<Sample>,
) -> Result<(), ChunkError> {
    decode_range_ts(data, None, start, end, out)
}

/// [`decode_range`] for a chunk that may keep its timestamps in a shared
/// column: `ts` is that column, decoded (`None` for chunks with their own).
pub fn decode_range_ts(
    data: &[u8],
    ts: Option<&[i64]>,
    start: i64,
    end: i64,
    out: &mut Vec<Sample>,
) -> Result<(), ChunkError> {
    decode_with(data, ts, |s| {
        if s.timestamp_ms >= start && s.timestamp_ms <= end {
            out.push(s);
        }
        true
    })
}

/// Decodes a whole chunk.
pub fn decode(data: &[u8]) -> Result<Vec<Sample>, ChunkError> {
    decode_ts(data, None)
}

/// Decodes a whole chunk whose timestamps may be the column `ts`.
pub fn decode_ts(data: &[u8], ts: Option<&[i64]>) -> Result<Vec<Sample>, ChunkError> {
    let mut out = Vec::with_capacity(chunk_len(data)?);
    decode_range_ts(data, ts, i64::MIN, i64::MAX, &mut out)?;
    Ok(out)
}

/// True when the chunk holds at least one sample with `start <= t <= end`;
/// stops decoding at the first one (or once past `end`, as timestamps in a
/// stored chunk increase).
pub fn any_in_range(data: &[u8], start: i64, end: i64) -> Result<bool, ChunkError> {
    any_in_range_ts(data, None, start, end)
}

/// [`any_in_range`] for a chunk whose timestamps may be the column `ts`.
pub fn any_in_range_ts(
    data: &[u8],
    ts: Option<&[i64]>,
    start: i64,
    end: i64,
) -> Result<bool, ChunkError> {
    let mut found = false;
    decode_with(data, ts, |s| {
        if s.timestamp_ms >= start && s.timestamp_ms <= end {
            found = true;
        }
        !found && s.timestamp_ms <= end
    })?;
    Ok(found)
}

/// Decodes samples in order, calling `f` on each until it returns `false`.
fn decode_with(
    data: &[u8],
    ts: Option<&[i64]>,
    mut f: impl FnMut(Sample) -> bool,
) -> Result<(), ChunkError> {
    if crate::sealed::is_sealed(data) {
        return crate::sealed::decode_with_ts(data, ts, f);
    }
    let expected = chunk_len(data)?;
    let mut r = BitReader {
        buf: &data[2..],
        pos: 0,
    };
    let truncated = |decoded| ChunkError::Truncated { decoded, expected };
    let mut t: i64 = 0;
    let mut delta: i64 = 0;
    let mut v: u64 = 0;
    let mut leading: u32 = 0;
    let mut trailing: u32 = 0;
    for i in 0..expected {
        if i == 0 {
            t = r.read_bits(64).ok_or(truncated(i))? as i64;
            v = r.read_bits(64).ok_or(truncated(i))?;
        } else {
            let dod = read_dod(&mut r).ok_or(truncated(i))?;
            delta = delta.wrapping_add(dod);
            t = t.wrapping_add(delta);
            if r.read_bit().ok_or(truncated(i))? {
                if r.read_bit().ok_or(truncated(i))? {
                    leading = r.read_bits(5).ok_or(truncated(i))? as u32;
                    let mut sig = r.read_bits(6).ok_or(truncated(i))? as u32;
                    if sig == 0 {
                        sig = 64;
                    }
                    if leading + sig > 64 {
                        return Err(ChunkError::BadWidth);
                    }
                    trailing = 64 - leading - sig;
                }
                let sig = 64 - leading - trailing;
                let x = r.read_bits(sig).ok_or(truncated(i))?;
                v ^= x << trailing;
            }
        }
        if !f(Sample::new(t, f64::from_bits(v))) {
            return Ok(());
        }
    }
    Ok(())
}

fn read_dod(r: &mut BitReader<'_>) -> Option<i64> {
    let mut ones = 0;
    while ones < 4 && r.read_bit()? {
        ones += 1;
    }
    match ones {
        0 => Some(0),
        4 => Some(r.read_bits(64)? as i64),
        k => {
            let bits = DOD_BUCKETS[k - 1].2;
            Some(sign_extend(r.read_bits(bits)?, bits))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn fast_bit_reads_match_the_bytewise_reader() {
        let buf: Vec<u8> = (0u32..24)
            .map(|i| (i.wrapping_mul(0x9E37_79B9) >> 13) as u8)
            .collect();
        for start in 0..buf.len() * 8 {
            for nbits in 0..=64u32 {
                let at = |pos| BitReader { buf: &buf, pos };
                let (mut fast, mut slow) = (at(start), at(start));
                assert_eq!(
                    fast.read_bits(nbits),
                    slow.read_bits_slow(nbits),
                    "{nbits} bits at {start}"
                );
                assert_eq!(fast.pos, slow.pos, "{nbits} bits at {start}");
            }
        }
    }

    /// The bit-at-a-time writer the byte-wise one replaced.
    fn write_bits_reference(w: &mut BitWriter, value: u64, mut nbits: u32) {
        while nbits > 0 {
            if w.free == 0 {
                w.buf.push(0);
                w.free = 8;
            }
            let take = w.free.min(nbits);
            let bits = ((value >> (nbits - take)) & ((1u64 << take) - 1)) as u8;
            if let Some(last) = w.buf.last_mut() {
                *last |= bits << (w.free - take);
            }
            w.free -= take;
            nbits -= take;
        }
    }

    proptest! {
        #[test]
        fn bytewise_writer_writes_the_reference_bits(
            writes in proptest::collection::vec((any::<u64>(), 0u32..=64, any::<bool>()), 0..200)
        ) {
            let (mut fast, mut reference) = (BitWriter::default(), BitWriter::default());
            for (value, nbits, single) in writes {
                if single {
                    fast.write_bit(value & 1 == 1);
                    write_bits_reference(&mut reference, value & 1, 1);
                } else {
                    fast.write_bits(value, nbits);
                    write_bits_reference(&mut reference, value, nbits);
                }
                prop_assert_eq!(&fast.buf, &reference.buf);
                prop_assert_eq!(fast.free, reference.free);
            }
        }
    }

    fn roundtrip(samples: &[(i64, u64)]) {
        let mut enc = ChunkEncoder::new();
        for &(t, v) in samples {
            assert!(enc.append(t, f64::from_bits(v)));
        }
        let got = decode(enc.bytes()).expect("decodes");
        let got: Vec<(i64, u64)> = got
            .iter()
            .map(|s| (s.timestamp_ms, s.value.to_bits()))
            .collect();
        assert_eq!(got, samples);
    }

    fn special_value() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(vigil_wire::STALE_NAN_BITS),
            Just(f64::NAN.to_bits()),
            Just(f64::INFINITY.to_bits()),
            Just(f64::NEG_INFINITY.to_bits()),
            Just((-0.0f64).to_bits()),
            Just(0.0f64.to_bits()),
            Just(f64::MIN_POSITIVE.to_bits() - 1), // largest subnormal
            Just(1u64),                            // smallest subnormal
            Just(f64::MAX.to_bits()),
            (0.0f64..1e6).prop_map(|f| (f.round() / 100.0).to_bits()),
            any::<u64>(),
        ]
    }

    fn timestamps() -> impl Strategy<Value = Vec<i64>> {
        prop_oneof![
            // Arbitrary, including negative and huge jumps either way.
            prop::collection::vec(any::<i64>(), 0..150),
            // Equal spacing with jitter, as scrapes produce.
            (any::<i64>(), 1i64..100_000, 0i64..50, 0usize..200).prop_map(
                |(t0, step, jitter, n)| {
                    (0..n as i64)
                        .map(|i| {
                            t0.wrapping_add(i.wrapping_mul(step))
                                .wrapping_add((i * 7919) % (jitter + 1))
                        })
                        .collect()
                }
            ),
        ]
    }

    proptest! {
        // Each case is a 200-sample chunk; 64 cases keep the debug-build run
        // to a few seconds while covering every special value many times.
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn encode_decode_is_bit_exact(
            ts in timestamps(),
            vals in prop::collection::vec(special_value(), 200),
        ) {
            let samples: Vec<(i64, u64)> = ts.iter().copied().zip(vals).collect();
            roundtrip(&samples);
        }

        #[test]
        fn truncated_chunks_decode_a_true_prefix_or_error(
            ts in timestamps(),
            vals in prop::collection::vec(special_value(), 200),
            cut in 0usize..4000,
        ) {
            let samples: Vec<(i64, u64)> = ts.iter().copied().zip(vals).collect();
            let mut enc = ChunkEncoder::new();
            for &(t, v) in &samples {
                prop_assert!(enc.append(t, f64::from_bits(v)));
            }
            let bytes = enc.bytes();
            let cut = cut.min(bytes.len());
            let bits = |s: &[Sample]| -> Vec<(i64, u64)> {
                s.iter().map(|s| (s.timestamp_ms, s.value.to_bits())).collect()
            };
            // Whatever a prefix (or a garbage header) yields, it never
            // panics, and every sample it does yield is bit for bit the one
            // encoded at that position: NaN payloads and stale markers
            // included, nothing invented past the cut.
            let mut partial = Vec::new();
            match decode_range(&bytes[..cut], i64::MIN, i64::MAX, &mut partial) {
                Ok(()) => prop_assert_eq!(bits(&partial), samples.clone()),
                Err(ChunkError::NoHeader) => prop_assert!(cut < 2 && partial.is_empty()),
                Err(ChunkError::Truncated { decoded, expected }) => {
                    prop_assert_eq!(expected, samples.len());
                    prop_assert!(decoded < expected);
                    prop_assert_eq!(bits(&partial), samples[..decoded].to_vec());
                }
                Err(e) => prop_assert!(false, "a prefix of a valid chunk failed with {e:?}"),
            }
            // The whole chunk always decodes to exactly what was encoded.
            let whole = decode(bytes).map_err(|e| TestCaseError::fail(format!("{e:?}")))?;
            prop_assert_eq!(bits(&whole), samples.clone());
            let found = any_in_range(&bytes[..cut], i64::MIN, i64::MAX);
            if let Ok(found) = found {
                prop_assert_eq!(found, !partial.is_empty());
            }
        }
    }

    #[test]
    fn edge_sequences() {
        roundtrip(&[]);
        roundtrip(&[
            (i64::MIN, 0),
            (i64::MAX, u64::MAX),
            (i64::MIN, 1),
            (0, vigil_wire::STALE_NAN_BITS),
        ]);
        let steady: Vec<(i64, u64)> = (0..120)
            .map(|i| (1_700_000_000_000 + i * 15_000, 42.0f64.to_bits()))
            .collect();
        roundtrip(&steady);
    }

    #[test]
    fn steady_series_compress_well() {
        let mut enc = ChunkEncoder::new();
        for i in 0..120 {
            enc.append(1_700_000_000_000 + i * 15_000, 1024.0);
        }
        // Header + first sample (18 bytes) + ~2 bits per further sample.
        assert!(enc.bytes().len() < 18 + 40, "{} bytes", enc.bytes().len());
    }

    #[test]
    fn decode_rejects_garbage() {
        assert_eq!(decode(&[]), Err(ChunkError::NoHeader));
        assert!(matches!(
            decode(&[0, 5, 1, 2]),
            Err(ChunkError::Truncated { .. })
        ));
        assert!(any_in_range(&[0, 0], 0, 10).is_ok_and(|b| !b));
    }
}
