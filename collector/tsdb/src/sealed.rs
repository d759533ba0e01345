//! Sealed chunks: the denser encoding a head chunk is re-encoded into when
//! it is cut, and in which compaction merges a series' small chunks.
//!
//! A head must take one sample at a time, so it stays in the Gorilla
//! encoding of [`crate::chunk`]. A sealed chunk sees all its samples at
//! once, which lets it pick, per chunk, what the data needs:
//! - timestamps as delta-of-delta, all zero for perfectly regular scrapes
//!   (no bits at all), else Rice-coded;
//! - values that are decimals with a common scale (counters, gauges with a
//!   few digits: `m / 10^e` for an integer `m`, bit for bit) as scaled
//!   integers, delta- or delta-of-delta-coded, divided by their common
//!   divisor and Rice- or zero-run-coded; values that are not (NaNs, the
//!   stale marker, `-0.0`, infinities, full-precision floats) ride along as
//!   raw 64-bit exceptions when they are few;
//! - otherwise the Gorilla XOR encoding.
//!
//! Every value round-trips bit for bit: a value is only stored as a scaled
//! integer after checking that the decoder's `m as f64 / 10^e` gives back
//! exactly its bits.
//!
//! Series scraped from one target share their timestamps exactly, and with
//! millisecond jitter those cost most of a chunk's bits. So a sealed chunk
//! either carries its own timestamps (version 2; version 1 is still read)
//! or only its values (version 3), its timestamps then living once in a
//! *timestamp column* ([`encode_timestamps`]) that the store shares
//! between every chunk with the same ones. See `FORMAT.md` for the layout.

use vigil_wire::Sample;

use crate::chunk::{BitReader, BitWriter, ChunkError};

/// The first bytes of a sealed chunk. A Gorilla chunk starts with its
/// big-endian sample count, and no stored chunk is empty, so `[0, 0]`
/// cannot start one; the third byte is the sealed encoding's version:
/// [`V1_OWN`], [`V2_OWN`] or [`V3_SHARED`].
pub const MAGIC: [u8; 2] = [0, 0];

/// Version 1: own timestamps, delta-of-deltas only (format 2; read only).
pub const V1_OWN: u8 = 1;
/// Version 2: own timestamps, delta-of-deltas or deltas from a base.
pub const V2_OWN: u8 = 2;
/// Version 3: values only; the timestamps are in a shared column.
pub const V3_SHARED: u8 = 3;

/// First byte of an encoded timestamp column (its layout's version).
pub const TS_COLUMN_VERSION: u8 = 1;

/// Most samples one sealed chunk may claim; bounds a decoder's allocation
/// for a damaged header (all-zero streams take no bits, so the buffer size
/// does not bound the count).
pub const MAX_SEALED_SAMPLES: usize = 1 << 20;

/// Largest decimal scale tried: every power of ten up to 10^22 is an exact
/// `f64`, so `m / 10^e` is one correctly rounded division.
pub(crate) const MAX_SCALE: usize = 22;

pub(crate) const POW10: [f64; MAX_SCALE + 1] = [
    1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15, 1e16,
    1e17, 1e18, 1e19, 1e20, 1e21, 1e22,
];

/// Integers up to 2^53 are exact in an `f64`.
const EXACT_INT: f64 = 9_007_199_254_740_992.0;

/// Unary prefixes longer than this escape to an explicit bit length.
const RICE_ESCAPE: u64 = 24;

/// Whether `data` is a sealed chunk (rather than a Gorilla one).
pub fn is_sealed(data: &[u8]) -> bool {
    data.len() >= 3 && data[0] == 0 && data[1] == 0
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(u: u64) -> i64 {
    ((u >> 1) as i64) ^ -((u & 1) as i64)
}

fn put_uvarint(w: &mut BitWriter, mut v: u64) {
    while v >= 0x80 {
        w.write_bits((v & 0x7f) | 0x80, 8);
        v >>= 7;
    }
    w.write_bits(v, 8);
}

fn put_varint(w: &mut BitWriter, v: i64) {
    put_uvarint(w, zigzag(v));
}

fn get_uvarint(r: &mut BitReader<'_>) -> Option<u64> {
    let mut v: u64 = 0;
    for i in 0..10 {
        let b = r.read_bits(8)?;
        v |= (b & 0x7f) << (7 * i);
        if b < 0x80 {
            return Some(v);
        }
    }
    None
}

fn get_varint(r: &mut BitReader<'_>) -> Option<i64> {
    get_uvarint(r).map(unzigzag)
}

fn bit_len(u: u64) -> u32 {
    64 - u.leading_zeros()
}

fn rice_cost(u: u64, k: u32) -> u64 {
    let q = u >> k;
    if q < RICE_ESCAPE {
        q + 1 + u64::from(k)
    } else {
        RICE_ESCAPE + 6 + u64::from(bit_len(u))
    }
}

fn put_rice(w: &mut BitWriter, u: u64, k: u32) {
    let q = u >> k;
    if q < RICE_ESCAPE {
        // q ones then a zero, at most 25 bits.
        w.write_bits(((1u64 << q) - 1) << 1, q as u32 + 1);
        w.write_bits(u & low_mask(k), k);
    } else {
        w.write_bits((1u64 << RICE_ESCAPE) - 1, RICE_ESCAPE as u32);
        let len = bit_len(u);
        w.write_bits(u64::from(len - 1), 6);
        w.write_bits(u, len);
    }
}

fn low_mask(k: u32) -> u64 {
    if k >= 64 { u64::MAX } else { (1u64 << k) - 1 }
}

fn get_rice(r: &mut BitReader<'_>, k: u32) -> Option<u64> {
    // Count the unary prefix a word at a time where possible.
    let q = match r.peek(RICE_ESCAPE as u32 + 1) {
        Some(w) => {
            let ones = u64::from((w << (64 - RICE_ESCAPE - 1)).leading_ones()).min(RICE_ESCAPE);
            r.pos += ones as usize;
            ones
        }
        None => {
            let mut ones = 0;
            while ones < RICE_ESCAPE && r.read_bit()? {
                ones += 1;
            }
            // The zero that ends a prefix was consumed by the loop.
            if ones < RICE_ESCAPE {
                return Some((ones << k) | if k > 0 { r.read_bits(k)? } else { 0 });
            }
            ones
        }
    };
    if q < RICE_ESCAPE {
        r.pos += 1; // the terminating zero
        let low = if k > 0 { r.read_bits(k)? } else { 0 };
        if r.pos > r.buf.len() * 8 {
            return None;
        }
        Some((q << k) | low)
    } else {
        let len = r.read_bits(6)? as u32 + 1;
        r.read_bits(len)
    }
}

/// The best Rice parameter near `log2(mean)`, and the stream's cost with it.
fn best_rice(us: impl Iterator<Item = u64> + Clone) -> (u32, u64) {
    let (mut sum, mut n) = (0u128, 0u64);
    for u in us.clone() {
        sum += u128::from(u);
        n += 1;
    }
    let mean = if n == 0 {
        0
    } else {
        (sum / u128::from(n)) as u64
    };
    let k0 = bit_len(mean).saturating_sub(1);
    let mut best = (0, u64::MAX);
    for k in k0.saturating_sub(1)..=(k0 + 1).min(63) {
        let cost: u64 = us.clone().map(|u| rice_cost(u, k)).sum();
        if cost < best.1 {
            best = (k, cost);
        }
    }
    best
}

/// Writes `vals` (whose count the decoder knows) as: uvarint `g`, their
/// greatest common divisor (0 when all are zero: nothing follows), then the
/// zigzagged quotients with one of two coders, whichever is shorter:
/// `0` + 6-bit `k`: each Rice-coded with parameter `k`; `1` + 6-bit `kz` +
/// 6-bit `kv`: runs of zeros (Rice `kz`) each followed by a non-zero value
/// minus one (Rice `kv`), the last run possibly ending the stream.
fn put_ints(w: &mut BitWriter, vals: &[i64]) {
    let mut g: u64 = 0;
    for &v in vals {
        g = gcd(g, v.unsigned_abs());
        if g == 1 {
            break;
        }
    }
    put_uvarint(w, g);
    if g == 0 {
        return;
    }
    // Only i64::MIN alone has a divisor past i64::MAX: keep it as is.
    let g = i64::try_from(g).unwrap_or(1);
    let us: Vec<u64> = vals.iter().map(|&v| zigzag(v / g)).collect();
    let (k, rice) = best_rice(us.iter().copied());
    let runs = zero_runs(&us);
    let (kz, zcost) = best_rice(runs.iter().map(|r| r.0));
    let (kv, vcost) = best_rice(runs.iter().filter_map(|r| r.1.map(|u| u - 1)));
    if zcost.saturating_add(vcost).saturating_add(6) < rice {
        w.write_bit(true);
        w.write_bits(u64::from(kz), 6);
        w.write_bits(u64::from(kv), 6);
        for (z, u) in runs {
            put_rice(w, z, kz);
            if let Some(u) = u {
                put_rice(w, u - 1, kv);
            }
        }
    } else {
        w.write_bit(false);
        w.write_bits(u64::from(k), 6);
        for u in us {
            put_rice(w, u, k);
        }
    }
}

/// `(zeros before, the non-zero value)`, the last run possibly without one.
fn zero_runs(us: &[u64]) -> Vec<(u64, Option<u64>)> {
    let mut out = Vec::new();
    let mut z = 0;
    for &u in us {
        if u == 0 {
            z += 1;
        } else {
            out.push((z, Some(u)));
            z = 0;
        }
    }
    if z > 0 {
        out.push((z, None));
    }
    out
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn get_ints(r: &mut BitReader<'_>, n: usize, out: &mut Vec<i64>) -> Option<()> {
    let g = get_uvarint(r)?;
    if g == 0 {
        out.extend(std::iter::repeat_n(0, n));
        return Some(());
    }
    let g = i64::try_from(g).unwrap_or(1);
    if r.read_bit()? {
        let kz = r.read_bits(6)? as u32;
        let kv = r.read_bits(6)? as u32;
        let mut filled = 0usize;
        while filled < n {
            let z = get_rice(r, kz)?;
            let z = usize::try_from(z).ok().filter(|z| *z <= n - filled)?;
            out.extend(std::iter::repeat_n(0, z));
            filled += z;
            if filled == n {
                break;
            }
            let u = get_rice(r, kv)?.checked_add(1)?;
            out.push(unzigzag(u).wrapping_mul(g));
            filled += 1;
        }
    } else {
        let k = r.read_bits(6)? as u32;
        for _ in 0..n {
            out.push(unzigzag(get_rice(r, k)?).wrapping_mul(g));
        }
    }
    Some(())
}

/// The smallest decimal scale `e` with `v == m / 10^e` bit for bit, `m` an
/// integer below 2^53 in magnitude.
fn decimal_scale(v: f64) -> Option<usize> {
    decimal_scale_within(v, MAX_SCALE)
}

/// [`decimal_scale`], trying scales up to `max_scale` only (each try is a
/// multiplication and a division: callers on the ingest path bound it).
pub(crate) fn decimal_scale_within(v: f64, max_scale: usize) -> Option<usize> {
    if !v.is_finite() || v.to_bits() == (-0.0f64).to_bits() {
        return None;
    }
    for (e, p) in POW10.iter().enumerate().take(max_scale.min(MAX_SCALE) + 1) {
        let s = v * p;
        if s.abs() >= EXACT_INT {
            return None;
        }
        let m = s.round();
        if (m / p).to_bits() == v.to_bits() {
            return Some(e);
        }
    }
    None
}

/// `v` as an integer at scale `e`, if it round-trips. The check divides
/// the integer as the reader does: a float `m` would let `-0.0` through
/// (it rounds to `-0.0`), which the reader's integer 0 turns into `+0.0`.
fn scaled(v: f64, e: usize) -> Option<i64> {
    if !v.is_finite() {
        return None;
    }
    let m = (v * POW10[e]).round();
    if m.abs() >= EXACT_INT {
        return None;
    }
    let m = m as i64;
    ((m as f64 / POW10[e]).to_bits() == v.to_bits()).then_some(m)
}

/// Encodes samples (timestamps strictly increasing in the store, though
/// any `i64` sequence round-trips) as a sealed chunk with its own
/// timestamps (version 2).
pub fn seal(samples: &[Sample]) -> Vec<u8> {
    let mut w = start(V2_OWN, samples.len());
    if !samples.is_empty() {
        let ts: Vec<i64> = samples.iter().map(|s| s.timestamp_ms).collect();
        put_timestamps(&mut w, &ts);
        put_values(&mut w, samples);
    }
    w.buf
}

/// Encodes only the values of `samples` (version 3); the decoder gets the
/// timestamps from the column [`encode_timestamps`] made of them.
pub fn seal_values(samples: &[Sample]) -> Vec<u8> {
    let mut w = start(V3_SHARED, samples.len());
    if !samples.is_empty() {
        put_values(&mut w, samples);
    }
    w.buf
}

/// A timestamp column: version byte, then a bit stream of uvarint count
/// and the timestamp section of a version 2 chunk.
pub fn encode_timestamps(ts: &[i64]) -> Vec<u8> {
    let mut w = BitWriter {
        buf: vec![TS_COLUMN_VERSION],
        free: 0,
    };
    put_uvarint(&mut w, ts.len() as u64);
    put_timestamps(&mut w, ts);
    w.buf
}

/// Decodes a timestamp column.
pub fn decode_timestamps(col: &[u8]) -> Result<Vec<i64>, ChunkError> {
    let (&version, rest) = col.split_first().ok_or(ChunkError::NoHeader)?;
    if version != TS_COLUMN_VERSION {
        return Err(ChunkError::UnknownEncoding(version));
    }
    let mut r = BitReader { buf: rest, pos: 0 };
    let bad = ChunkError::Truncated {
        decoded: 0,
        expected: 0,
    };
    let n = get_uvarint(&mut r).ok_or(bad.clone())?;
    let n = usize::try_from(n)
        .ok()
        .filter(|n| *n <= MAX_SEALED_SAMPLES)
        .ok_or(ChunkError::BadWidth)?;
    let ts = get_timestamps(&mut r, n).ok_or(ChunkError::Truncated {
        decoded: 0,
        expected: n,
    })?;
    if r.pos > r.buf.len() * 8 {
        return Err(bad);
    }
    Ok(ts)
}

fn start(version: u8, n: usize) -> BitWriter {
    let mut w = BitWriter {
        buf: vec![MAGIC[0], MAGIC[1], version],
        free: 0,
    };
    put_uvarint(&mut w, n as u64);
    w
}

/// Timestamps whose count the decoder knows: varint `t_0`; when more
/// follow, a mode bit and `0`: varint first delta, `put_ints` of the
/// delta-of-deltas; or `1`: varint base (the median delta), `put_ints` of
/// every delta minus it, whichever is shorter. Scrape jitter is mostly
/// independent per scrape, so deltas from the base are about half the
/// spread of delta-of-deltas.
fn put_timestamps(w: &mut BitWriter, ts: &[i64]) {
    let Some(&t0) = ts.first() else { return };
    put_varint(w, t0);
    if ts.len() < 2 {
        return;
    }
    let deltas: Vec<i64> = ts.windows(2).map(|p| p[1].wrapping_sub(p[0])).collect();
    let mut a = BitWriter::default();
    put_varint(&mut a, deltas[0]);
    if deltas.len() >= 2 {
        let dods: Vec<i64> = deltas.windows(2).map(|p| p[1].wrapping_sub(p[0])).collect();
        put_ints(&mut a, &dods);
    }
    let mut sorted = deltas.clone();
    let mid = sorted.len() / 2;
    let base = *sorted.select_nth_unstable(mid).1;
    let residuals: Vec<i64> = deltas.iter().map(|d| d.wrapping_sub(base)).collect();
    let mut b = BitWriter::default();
    put_varint(&mut b, base);
    put_ints(&mut b, &residuals);
    let bits = |x: &BitWriter| x.buf.len() * 8 - x.free as usize;
    let (mode, chosen) = if bits(&b) < bits(&a) {
        (true, b)
    } else {
        (false, a)
    };
    w.write_bit(mode);
    append_bits(w, &chosen);
}

fn get_timestamps(r: &mut BitReader<'_>, n: usize) -> Option<Vec<i64>> {
    let mut ts = Vec::with_capacity(n);
    if n == 0 {
        return Some(ts);
    }
    let mut t = get_varint(r)?;
    ts.push(t);
    if n < 2 {
        return Some(ts);
    }
    if r.read_bit()? {
        let base = get_varint(r)?;
        let mut deltas = Vec::with_capacity(n - 1);
        get_ints(r, n - 1, &mut deltas)?;
        for d in deltas {
            t = t.wrapping_add(d.wrapping_add(base));
            ts.push(t);
        }
    } else {
        let mut d = get_varint(r)?;
        t = t.wrapping_add(d);
        ts.push(t);
        if n >= 3 {
            let mut dods = Vec::with_capacity(n - 2);
            get_ints(r, n - 2, &mut dods)?;
            for dod in dods {
                d = d.wrapping_add(dod);
                t = t.wrapping_add(d);
                ts.push(t);
            }
        }
    }
    Some(ts)
}

/// Format 2's sealed encoding (version 1). Nothing writes it any more;
/// it is kept so tests can build format-2 files and check they still read.
#[doc(hidden)]
pub fn seal_v1(samples: &[Sample]) -> Vec<u8> {
    let mut w = start(V1_OWN, samples.len());
    let n = samples.len();
    if n == 0 {
        return w.buf;
    }
    let t0 = samples[0].timestamp_ms;
    put_varint(&mut w, t0);
    if n >= 2 {
        let d1 = samples[1].timestamp_ms.wrapping_sub(t0);
        put_varint(&mut w, d1);
        let mut dods = Vec::new();
        let mut prev = d1;
        for p in samples[1..].windows(2) {
            let d = p[1].timestamp_ms.wrapping_sub(p[0].timestamp_ms);
            dods.push(d.wrapping_sub(prev));
            prev = d;
        }
        if !dods.is_empty() {
            put_ints(&mut w, &dods);
        }
    }
    put_values(&mut w, samples);
    w.buf
}

/// Values: decimal when at most a quarter are exceptions, else XOR.
fn put_values(w: &mut BitWriter, samples: &[Sample]) {
    match decimal_plan(samples) {
        Some((e, exceptions)) => {
            w.write_bit(true);
            write_decimal(w, samples, e, &exceptions);
        }
        None => {
            w.write_bit(false);
            write_xor(w, samples);
        }
    }
}

/// The common scale and the positions that must be stored raw, or `None`
/// when XOR coding suits the values better.
fn decimal_plan(samples: &[Sample]) -> Option<(usize, Vec<usize>)> {
    let n = samples.len();
    let max_exceptions = n / 4;
    let mut e = 0;
    let mut exceptions = Vec::new();
    let mut prev: Option<u64> = None;
    for (i, s) in samples.iter().enumerate() {
        let bits = s.value.to_bits();
        // Repeats need no second look.
        if prev == Some(bits) {
            continue;
        }
        prev = Some(bits);
        match decimal_scale(s.value) {
            Some(se) => e = e.max(se),
            None => {
                exceptions.push(i);
                if exceptions.len() > max_exceptions {
                    return None;
                }
            }
        }
    }
    // Mixed scales: a value exact at its own scale may not be at the
    // common one; those become exceptions too.
    let mut all = Vec::with_capacity(exceptions.len());
    let mut it = exceptions.iter().peekable();
    for (i, s) in samples.iter().enumerate() {
        if it.peek() == Some(&&i) {
            it.next();
            all.push(i);
        } else if scaled(s.value, e).is_none() {
            all.push(i);
        }
        if all.len() > max_exceptions {
            return None;
        }
    }
    (all.len() < n).then_some((e, all))
}

/// 5 bits scale `e`; uvarint exception count, each a uvarint gap from the
/// previous exception's position (+1) and 64 raw bits; then the integers
/// of the other positions: varint `m_0`, and when more follow a bit
/// choosing `0`: varint base delta, `put_ints` of each delta minus it; or
/// `1`: varint first delta, `put_ints` of the delta-of-deltas.
fn write_decimal(w: &mut BitWriter, samples: &[Sample], e: usize, exceptions: &[usize]) {
    w.write_bits(e as u64, 5);
    put_uvarint(w, exceptions.len() as u64);
    let mut next = 0usize;
    for &i in exceptions {
        put_uvarint(w, (i - next) as u64);
        w.write_bits(samples[i].value.to_bits(), 64);
        next = i + 1;
    }
    let mut ms = Vec::with_capacity(samples.len() - exceptions.len());
    let mut ex = exceptions.iter().peekable();
    for (i, s) in samples.iter().enumerate() {
        if ex.peek() == Some(&&i) {
            ex.next();
            continue;
        }
        // decimal_plan checked every remaining value.
        ms.push(scaled(s.value, e).unwrap_or(0));
    }
    put_varint(w, ms[0]);
    if ms.len() < 2 {
        return;
    }
    let deltas: Vec<i64> = ms.windows(2).map(|p| p[1].wrapping_sub(p[0])).collect();
    let mut sorted = deltas.clone();
    let mid = sorted.len() / 2;
    let base = *sorted.select_nth_unstable(mid).1;
    let residuals: Vec<i64> = deltas.iter().map(|d| d.wrapping_sub(base)).collect();
    let dods: Vec<i64> = deltas.windows(2).map(|p| p[1].wrapping_sub(p[0])).collect();
    let mut a = BitWriter::default();
    put_varint(&mut a, base);
    put_ints(&mut a, &residuals);
    let mut b = BitWriter::default();
    put_varint(&mut b, deltas[0]);
    if !dods.is_empty() {
        put_ints(&mut b, &dods);
    }
    let bits = |x: &BitWriter| x.buf.len() * 8 - x.free as usize;
    let (mode, chosen) = if bits(&b) < bits(&a) {
        (true, b)
    } else {
        (false, a)
    };
    w.write_bit(mode);
    append_bits(w, &chosen);
}

/// Appends another writer's bits.
fn append_bits(w: &mut BitWriter, other: &BitWriter) {
    let total = other.buf.len() * 8 - other.free as usize;
    let mut r = BitReader {
        buf: &other.buf,
        pos: 0,
    };
    let mut left = total;
    while left > 0 {
        let take = left.min(56);
        // `take` bits exist, so the read succeeds.
        let bits = r.read_bits(take as u32).unwrap_or(0);
        w.write_bits(bits, take as u32);
        left -= take;
    }
}

/// 64 bits of the first value, then Gorilla XOR coding as in `chunk`.
fn write_xor(w: &mut BitWriter, samples: &[Sample]) {
    let mut prev = samples[0].value.to_bits();
    w.write_bits(prev, 64);
    let (mut leading, mut trailing) = (u8::MAX, 0u8);
    for s in &samples[1..] {
        let bits = s.value.to_bits();
        let x = bits ^ prev;
        prev = bits;
        if x == 0 {
            w.write_bit(false);
            continue;
        }
        w.write_bit(true);
        let lead = (x.leading_zeros() as u8).min(31);
        let trail = x.trailing_zeros() as u8;
        let own_sig = 64 - u32::from(lead) - u32::from(trail);
        let fits = leading != u8::MAX && lead >= leading && trail >= trailing;
        let window_sig = 64 - u32::from(leading.min(64)) - u32::from(trailing);
        if fits && window_sig <= own_sig + 11 {
            w.write_bit(false);
            w.write_bits(x >> trailing, window_sig);
        } else {
            w.write_bit(true);
            w.write_bits(u64::from(lead), 5);
            w.write_bits(u64::from(own_sig) & 0x3f, 6);
            w.write_bits(x >> trail, own_sig);
            leading = lead;
            trailing = trail;
        }
    }
}

/// The sample count a sealed chunk claims.
pub fn sealed_len(data: &[u8]) -> Result<usize, ChunkError> {
    let (_, n, _) = header(data)?;
    Ok(n)
}

/// Whether a sealed chunk keeps its timestamps in a shared column.
pub fn needs_timestamps(data: &[u8]) -> bool {
    is_sealed(data) && data[2] == V3_SHARED
}

fn header(data: &[u8]) -> Result<(u8, usize, BitReader<'_>), ChunkError> {
    if data.len() < 3 || data[..2] != MAGIC {
        return Err(ChunkError::NoHeader);
    }
    let version = data[2];
    if !matches!(version, V1_OWN | V2_OWN | V3_SHARED) {
        return Err(ChunkError::UnknownEncoding(version));
    }
    let mut r = BitReader {
        buf: &data[3..],
        pos: 0,
    };
    let n = get_uvarint(&mut r).ok_or(ChunkError::Truncated {
        decoded: 0,
        expected: 0,
    })?;
    let n = usize::try_from(n)
        .ok()
        .filter(|n| *n <= MAX_SEALED_SAMPLES)
        .ok_or(ChunkError::BadWidth)?;
    Ok((version, n, r))
}

/// Decodes a sealed chunk that carries its own timestamps (versions 1
/// and 2); see [`decode_with_ts`].
pub fn decode_with(data: &[u8], f: impl FnMut(Sample) -> bool) -> Result<(), ChunkError> {
    decode_with_ts(data, None, f)
}

/// Decodes a sealed chunk, calling `f` on each sample in order until it
/// returns `false`. A version 3 chunk takes its timestamps from `ts` (its
/// decoded column), which must hold exactly its sample count. A damaged
/// chunk is refused whole: nothing is handed to `f` unless every sample
/// decoded.
pub fn decode_with_ts(
    data: &[u8],
    ts: Option<&[i64]>,
    mut f: impl FnMut(Sample) -> bool,
) -> Result<(), ChunkError> {
    let (version, n, mut r) = header(data)?;
    let truncated = ChunkError::Truncated {
        decoded: 0,
        expected: n,
    };
    if n == 0 {
        return Ok(());
    }
    let own;
    let ts: &[i64] = match version {
        V3_SHARED => match ts {
            Some(ts) if ts.len() == n => ts,
            _ => return Err(ChunkError::Timestamps),
        },
        V1_OWN => {
            own = get_timestamps_v1(&mut r, n).ok_or(truncated.clone())?;
            &own
        }
        _ => {
            own = get_timestamps(&mut r, n).ok_or(truncated.clone())?;
            &own
        }
    };
    let mut vals = Vec::with_capacity(n);
    let ok = if r.read_bit().ok_or(truncated.clone())? {
        read_decimal(&mut r, n, &mut vals)
    } else {
        read_xor(&mut r, n, &mut vals)
    };
    // A stream that claims bits past the end of the buffer is damaged.
    if ok.is_none() || r.pos > r.buf.len() * 8 {
        return Err(truncated);
    }
    for (&t, v) in ts.iter().zip(vals) {
        if !f(Sample::new(t, f64::from_bits(v))) {
            break;
        }
    }
    Ok(())
}

/// Version 1's timestamps: varint `t_0`, varint first delta, `put_ints` of
/// the delta-of-deltas.
fn get_timestamps_v1(r: &mut BitReader<'_>, n: usize) -> Option<Vec<i64>> {
    let mut ts = Vec::with_capacity(n);
    let t0 = get_varint(r)?;
    ts.push(t0);
    if n >= 2 {
        let mut d = get_varint(r)?;
        let mut t = t0.wrapping_add(d);
        ts.push(t);
        if n >= 3 {
            let mut dods = Vec::with_capacity(n - 2);
            get_ints(r, n - 2, &mut dods)?;
            for dod in dods {
                d = d.wrapping_add(dod);
                t = t.wrapping_add(d);
                ts.push(t);
            }
        }
    }
    Some(ts)
}

fn read_decimal(r: &mut BitReader<'_>, n: usize, vals: &mut Vec<u64>) -> Option<()> {
    let e = r.read_bits(5)? as usize;
    let p = *POW10.get(e)?;
    let n_ex = usize::try_from(get_uvarint(r)?).ok().filter(|c| *c < n)?;
    let mut exceptions = Vec::with_capacity(n_ex);
    let mut next = 0usize;
    for _ in 0..n_ex {
        let gap = usize::try_from(get_uvarint(r)?).ok()?;
        let pos = next.checked_add(gap).filter(|p| *p < n)?;
        exceptions.push((pos, r.read_bits(64)?));
        next = pos + 1;
    }
    let k = n - n_ex;
    let mut ms = Vec::with_capacity(k);
    let m0 = get_varint(r)?;
    ms.push(m0);
    if k >= 2 {
        let dod_mode = r.read_bit()?;
        let mut deltas = Vec::with_capacity(k - 1);
        if dod_mode {
            let d1 = get_varint(r)?;
            deltas.push(d1);
            if k >= 3 {
                let mut dods = Vec::with_capacity(k - 2);
                get_ints(r, k - 2, &mut dods)?;
                let mut d = d1;
                for dod in dods {
                    d = d.wrapping_add(dod);
                    deltas.push(d);
                }
            }
        } else {
            let base = get_varint(r)?;
            get_ints(r, k - 1, &mut deltas)?;
            for d in deltas.iter_mut() {
                *d = d.wrapping_add(base);
            }
        }
        let mut m = m0;
        for d in deltas {
            m = m.wrapping_add(d);
            ms.push(m);
        }
    }
    let mut ex = exceptions.into_iter().peekable();
    let mut ints = ms.into_iter();
    for i in 0..n {
        match ex.peek() {
            Some(&(pos, bits)) if pos == i => {
                ex.next();
                vals.push(bits);
            }
            _ => vals.push((ints.next()? as f64 / p).to_bits()),
        }
    }
    Some(())
}

fn read_xor(r: &mut BitReader<'_>, n: usize, vals: &mut Vec<u64>) -> Option<()> {
    let mut v = r.read_bits(64)?;
    vals.push(v);
    let (mut leading, mut trailing) = (0u32, 0u32);
    for _ in 1..n {
        if r.read_bit()? {
            if r.read_bit()? {
                leading = r.read_bits(5)? as u32;
                let mut sig = r.read_bits(6)? as u32;
                if sig == 0 {
                    sig = 64;
                }
                if leading + sig > 64 {
                    return None;
                }
                trailing = 64 - leading - sig;
            }
            let sig = 64 - leading - trailing;
            if sig == 0 {
                return None;
            }
            v ^= r.read_bits(sig)? << trailing;
        }
        vals.push(v);
    }
    Some(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// One value of every kind the store sees.
    #[test]
    fn repeated_negative_zero_keeps_its_sign() {
        // A repeat is not looked at again when the scale is chosen; it must
        // still not be stored as the integer 0.
        let samples: Vec<Sample> = [-0.0, -0.0, 2.5, 2.5, -0.0, 1.0]
            .iter()
            .enumerate()
            .map(|(i, &v)| Sample::new(1_700_000_000_000 + i as i64 * 10, v))
            .collect();
        let mut got = Vec::new();
        decode_with(&seal(&samples), |s| {
            got.push(s);
            true
        })
        .expect("decodes");
        let bits = |s: &[Sample]| -> Vec<(i64, u64)> {
            s.iter()
                .map(|s| (s.timestamp_ms, s.value.to_bits()))
                .collect()
        };
        assert_eq!(bits(&got), bits(&samples));
    }

    fn any_value() -> impl Strategy<Value = u64> {
        prop_oneof![
            Just(vigil_wire::STALE_NAN_BITS),
            Just(f64::NAN.to_bits()),
            any::<u64>().prop_map(|p| 0x7ff0_0000_0000_0001 | (p & 0x000f_ffff_ffff_ffff)),
            Just(f64::INFINITY.to_bits()),
            Just(f64::NEG_INFINITY.to_bits()),
            Just((-0.0f64).to_bits()),
            Just(0.0f64.to_bits()),
            Just(1u64),
            Just(f64::MAX.to_bits()),
            Just(f64::MIN.to_bits()),
            (-1_000_000i64..1_000_000).prop_map(|m| (m as f64 / 100.0).to_bits()),
            (0i64..1 << 53).prop_map(|m| (m as f64).to_bits()),
            (-1i64 << 53..1 << 53, 0usize..=22).prop_map(|(m, e)| (m as f64 / POW10[e]).to_bits()),
            any::<f64>().prop_map(f64::to_bits),
            any::<u64>(),
        ]
    }

    /// Whole series shaped like real ones, with an occasional odd value.
    fn series_values() -> impl Strategy<Value = Vec<u64>> {
        let counter = (
            0u32..4,
            1i64..100_000,
            0usize..300,
            prop::collection::vec(0usize..300, 0..3),
        )
            .prop_map(|(e, rate, n, resets)| {
                let mut m = 0i64;
                (0..n)
                    .map(|i| {
                        m = if resets.contains(&i) {
                            0
                        } else {
                            m + rate + (i as i64 * 7919) % (rate / 3 + 1)
                        };
                        (m as f64 / POW10[e as usize]).to_bits()
                    })
                    .collect::<Vec<u64>>()
            });
        let gauge = (0u32..4, 0usize..300).prop_map(|(e, n)| {
            (0..n)
                .map(|i| {
                    ((((i as f64) / 9.0).sin() * 1e4 * POW10[e as usize]).round()
                        / POW10[e as usize])
                        .to_bits()
                })
                .collect::<Vec<u64>>()
        });
        let mixed = prop::collection::vec(any_value(), 0..300);
        let sprinkled = (
            counter.clone(),
            prop::collection::vec((any::<prop::sample::Index>(), any_value()), 0..8),
        )
            .prop_map(|(mut v, odd)| {
                if !v.is_empty() {
                    for (at, bits) in odd {
                        let i = at.index(v.len());
                        v[i] = bits;
                    }
                }
                v
            });
        prop_oneof![counter, gauge, mixed, sprinkled]
    }

    fn timestamps(n: usize) -> impl Strategy<Value = Vec<i64>> {
        prop_oneof![
            prop::collection::vec(any::<i64>(), n),
            (any::<i64>(), 1i64..100_000, 0i64..50).prop_map(move |(t0, step, jitter)| {
                (0..n as i64)
                    .map(|i| {
                        t0.wrapping_add(i.wrapping_mul(step))
                            .wrapping_add((i * 7919) % (jitter + 1))
                    })
                    .collect()
            }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        #[test]
        fn sealing_is_bit_exact(
            (vals, ts) in series_values().prop_flat_map(|v| { let n = v.len(); (Just(v), timestamps(n)) })
        ) {
            let samples: Vec<(i64, u64)> = ts.into_iter().zip(vals).collect();
            roundtrip(&samples);
        }

        #[test]
        fn garbage_never_panics(
            mut buf in prop::collection::vec(any::<u8>(), 0..200),
            version in prop_oneof![Just(V1_OWN), Just(V2_OWN), Just(V3_SHARED)],
            ts in prop::collection::vec(any::<i64>(), 0..40),
        ) {
            if buf.len() >= 3 {
                buf[..2].copy_from_slice(&MAGIC);
                buf[2] = version;
            }
            let _ = decode_with(&buf, |_| true);
            let _ = decode_with_ts(&buf, Some(&ts), |_| true);
            let _ = sealed_len(&buf);
            let _ = decode_timestamps(&buf[buf.len().min(2)..]);
        }
    }

    /// Every encoding of `samples` decodes to them bit for bit: own
    /// timestamps (versions 1 and 2) and values with a shared column
    /// (version 3). Returns the version 2 chunk.
    fn roundtrip(samples: &[(i64, u64)]) -> Vec<u8> {
        let s: Vec<Sample> = samples
            .iter()
            .map(|&(t, v)| Sample::new(t, f64::from_bits(v)))
            .collect();
        let decoded = |data: &[u8], ts: Option<&[i64]>| {
            let mut got = Vec::new();
            decode_with_ts(data, ts, |s| {
                got.push((s.timestamp_ms, s.value.to_bits()));
                true
            })
            .expect("decodes");
            got
        };
        let data = seal(&s);
        assert_eq!(decoded(&data, None), samples);
        assert_eq!(sealed_len(&data), Ok(samples.len()));
        assert_eq!(decoded(&seal_v1(&s), None), samples);
        let col = encode_timestamps(&s.iter().map(|s| s.timestamp_ms).collect::<Vec<_>>());
        let ts = decode_timestamps(&col).expect("column decodes");
        let values = seal_values(&s);
        assert!(needs_timestamps(&values) && !needs_timestamps(&data));
        assert_eq!(decoded(&values, Some(&ts)), samples);
        if !samples.is_empty() {
            assert_eq!(
                decode_with_ts(&values, None, |_| true),
                Err(ChunkError::Timestamps)
            );
            assert_eq!(
                decode_with_ts(&values, Some(&ts[1..]), |_| true),
                Err(ChunkError::Timestamps)
            );
        }
        data
    }

    #[test]
    fn rice_roundtrips_every_magnitude() {
        for k in [0u32, 1, 5, 20, 63] {
            let vals: Vec<u64> = (0..64)
                .map(|b| 1u64 << b)
                .chain([0, 1, 2, 3, u64::MAX, u64::MAX - 1])
                .collect();
            let mut w = BitWriter::default();
            for &u in &vals {
                put_rice(&mut w, u, k);
            }
            let mut r = BitReader {
                buf: &w.buf,
                pos: 0,
            };
            for &u in &vals {
                assert_eq!(get_rice(&mut r, k), Some(u), "k {k}");
            }
        }
    }

    #[test]
    fn scrape_like_series_are_dense() {
        let t0 = 1_700_000_000_000;
        // A two-decimal counter at a steady 15 s: no timestamp bits, a few
        // bits per value.
        let counter: Vec<(i64, u64)> = (0..240)
            .map(|i| {
                (
                    t0 + i * 15_000,
                    ((i * 1350 + (i * 37) % 90) as f64 / 100.0).to_bits(),
                )
            })
            .collect();
        let data = roundtrip(&counter);
        assert!(data.len() < 240, "{} bytes", data.len());
        // A constant: a handful of bytes whatever the length.
        let constant: Vec<(i64, u64)> = (0..240)
            .map(|i| (t0 + i * 15_000, 5e11f64.to_bits()))
            .collect();
        let data = roundtrip(&constant);
        assert!(data.len() < 32, "{} bytes", data.len());
    }

    #[test]
    fn exceptions_keep_stale_markers_and_nan_payloads() {
        let t0 = 1_700_000_000_000;
        let mut s: Vec<(i64, u64)> = (0..100)
            .map(|i| (t0 + i * 1000, (i as f64 * 0.25).to_bits()))
            .collect();
        s[10].1 = vigil_wire::STALE_NAN_BITS;
        s[50].1 = 0x7ff8_0000_dead_beef;
        s[99].1 = (-0.0f64).to_bits();
        s[0].1 = f64::INFINITY.to_bits();
        roundtrip(&s);
    }

    #[test]
    fn damaged_chunks_are_refused() {
        let s: Vec<Sample> = (0..50)
            .map(|i| Sample::new(i * 1000, i as f64 * 1.5))
            .collect();
        let data = seal(&s);
        for cut in 0..data.len() {
            let mut got = 0;
            let res = decode_with(&data[..cut], |_| {
                got += 1;
                true
            });
            assert!(res.is_err() || got == 50, "cut {cut}");
        }
        assert_eq!(
            decode_with(&[0, 0, 9, 1], |_| true),
            Err(ChunkError::UnknownEncoding(9))
        );
        let col = encode_timestamps(&(0..50).map(|i| i * 1000 + i % 7).collect::<Vec<_>>());
        for cut in 0..col.len() {
            assert!(decode_timestamps(&col[..cut]).is_err(), "cut {cut}");
        }
        assert_eq!(
            decode_timestamps(&[9, 0]),
            Err(ChunkError::UnknownEncoding(9))
        );
    }
}
