//! The bounded on-disk send buffer: every batch is appended here before it
//! is shipped, so data survives receiver outages and restarts of the
//! process (`kill -9` included) and is replayed in the order it was
//! written. The agent buffers what it collects; the collector buffers, per
//! remote_write destination, what its store accepted.
//!
//! # On-disk format
//!
//! The buffer is a directory of segment files plus one acknowledgement file:
//!
//! * `NNNNNNNNNNNNNNNNNNNN.seg` — a segment; the number (20 digits, zero
//!   padded) is the sequence number of its first record, so lexical order is
//!   write order. A segment is a plain concatenation of records:
//!
//!   | bytes | field |
//!   |---|---|
//!   | 4 | payload length `n`, u32 little endian |
//!   | 4 | CRC-32 (IEEE) over the next 12 header bytes and the payload |
//!   | 8 | sequence number, u64 LE, strictly increasing across segments |
//!   | 4 | sample count of the payload, u32 LE (for drop accounting) |
//!   | n | payload: a snappy-compressed remote_write `WriteRequest` |
//!
//! * `ack` — 8 bytes, u64 LE: every record with a sequence number at or
//!   below it is done (sent, refused by the receiver, or dropped). Replaced
//!   atomically (write `ack.tmp`, rename).
//! * `inflight` — 20 bytes: u64 LE first and u64 LE last sequence number
//!   of the batch being sent, then u32 LE, how many of its parts the
//!   receiver already took. Written before a batch is sent, so a restart re-sends exactly the
//!   same batch (same records, same parts) instead of a larger one; see
//!   [`DiskBuffer::set_inflight`]. Stale once `ack` reaches it. A batch
//!   sent in `k > 1` shards appends u32 LE `k` and `k` u32 LE, the parts
//!   each shard delivered.
//!
//! A record is durable once `write` returns (it reached the OS), so a
//! `kill -9` loses nothing; a torn record at the end of a segment (power
//! loss) fails its CRC and the segment is truncated there on open.
//!
//! # Bounds
//!
//! The bytes of *unacknowledged* records never exceed `max_bytes`: when an
//! append would pass it, the oldest records are dropped (acknowledged
//! without sending) and their samples counted. Whole segments are deleted
//! once all their records are acknowledged, so the directory holds at most
//! `max_bytes + segment_bytes` (plus one record).

use std::collections::VecDeque;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use thiserror::Error;

const HEADER_LEN: u64 = 20;
const ACK_FILE: &str = "ack";
const INFLIGHT_FILE: &str = "inflight";

/// A buffer I/O failure.
#[derive(Debug, Error)]
pub enum BufferError {
    #[error("buffer {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("record of {0} bytes is larger than the 4 GiB record limit")]
    TooLarge(usize),
    #[error("buffer {0} is in use by another process")]
    Locked(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> BufferError + '_ {
    move |source| BufferError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where one unacknowledged record lives.
#[derive(Debug, Clone, Copy)]
struct RecordMeta {
    seq: u64,
    segment: u64,
    offset: u64,
    len: u32,
    samples: u32,
}

impl RecordMeta {
    fn disk_size(&self) -> u64 {
        HEADER_LEN + u64::from(self.len)
    }
}

/// One record read back for sending.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub samples: u32,
    pub payload: Vec<u8>,
}

/// A batch a sender started: records `first..=last`, of whose parts the
/// first `parts_done` were delivered.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Inflight {
    pub first: u64,
    pub last: u64,
    pub parts_done: u32,
    /// When the batch is sent in several shards (each shard's parts in
    /// order, the shards in parallel): how many parts of each shard were
    /// delivered; `parts_done` is then their sum. Empty for one shard.
    pub shard_parts_done: Vec<u32>,
}

fn encode_inflight(i: &Inflight) -> Vec<u8> {
    let mut b = Vec::with_capacity(24 + 4 * i.shard_parts_done.len());
    b.extend_from_slice(&i.first.to_le_bytes());
    b.extend_from_slice(&i.last.to_le_bytes());
    b.extend_from_slice(&i.parts_done.to_le_bytes());
    if !i.shard_parts_done.is_empty() {
        let k = u32::try_from(i.shard_parts_done.len()).unwrap_or(u32::MAX);
        b.extend_from_slice(&k.to_le_bytes());
        for d in &i.shard_parts_done {
            b.extend_from_slice(&d.to_le_bytes());
        }
    }
    b
}

/// `None` for a malformed file: the batch is then not resumed (sent again
/// as a new batch: at least once, never lost).
fn decode_inflight(b: &[u8]) -> Option<Inflight> {
    let u64_at = |i: usize| {
        let mut a = [0u8; 8];
        a.copy_from_slice(b.get(i..i + 8)?);
        Some(u64::from_le_bytes(a))
    };
    let u32_at = |i: usize| {
        let mut a = [0u8; 4];
        a.copy_from_slice(b.get(i..i + 4)?);
        Some(u32::from_le_bytes(a))
    };
    let mut out = Inflight {
        first: u64_at(0)?,
        last: u64_at(8)?,
        parts_done: u32_at(16)?,
        shard_parts_done: Vec::new(),
    };
    if b.len() > 20 {
        let k = u32_at(20)? as usize;
        if b.len() != 24 + 4 * k {
            return None;
        }
        out.shard_parts_done = (0..k).map(|j| u32_at(24 + 4 * j)).collect::<Option<_>>()?;
    }
    Some(out)
}

/// The on-disk buffer. Not thread-safe by itself; callers wrap it in a
/// mutex.
#[derive(Debug)]
pub struct DiskBuffer {
    dir: PathBuf,
    max_bytes: u64,
    segment_bytes: u64,
    /// Unacknowledged records, oldest first.
    pending: VecDeque<RecordMeta>,
    pending_bytes: u64,
    /// Segments on disk: (first seq, size in bytes), oldest first.
    segments: VecDeque<(u64, u64)>,
    /// The segment currently appended to (last of `segments`), if open.
    active: Option<File>,
    next_seq: u64,
    acked: u64,
    dropped_samples: u64,
    /// The batch being sent, as last recorded.
    inflight: Option<Inflight>,
    /// Held for the buffer's lifetime: an exclusive `flock` so two
    /// processes never share a buffer directory.
    _lock: File,
}

impl DiskBuffer {
    /// Opens (or creates) the buffer in `dir`, recovering what a previous
    /// run left: unacknowledged records are pending again, in order.
    pub fn open(dir: &Path, max_bytes: u64, segment_bytes: u64) -> Result<Self, BufferError> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock_path = dir.join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        rustix::fs::flock(&lock, rustix::fs::FlockOperation::NonBlockingLockExclusive)
            .map_err(|_| BufferError::Locked(dir.to_path_buf()))?;
        let ack_path = dir.join(ACK_FILE);
        let acked = match fs::read(&ack_path) {
            Ok(b) if b.len() == 8 => {
                let mut a = [0u8; 8];
                a.copy_from_slice(&b);
                u64::from_le_bytes(a)
            }
            Ok(_) => {
                tracing::warn!(path = %ack_path.display(), "ack file malformed; replaying the whole buffer");
                0
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
            Err(e) => return Err(io_err(&ack_path)(e)),
        };
        let inflight_path = dir.join(INFLIGHT_FILE);
        let inflight = match fs::read(&inflight_path) {
            Ok(b) if b.len() >= 20 => decode_inflight(&b),
            Ok(_) => None,
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(&inflight_path)(e)),
        };
        let mut ids: Vec<u64> = Vec::new();
        for entry in fs::read_dir(dir).map_err(io_err(dir))? {
            let entry = entry.map_err(io_err(dir))?;
            let name = entry.file_name();
            let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
                continue;
            };
            if let Ok(id) = stem.parse::<u64>() {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        let mut buf = Self {
            dir: dir.to_path_buf(),
            max_bytes,
            segment_bytes,
            pending: VecDeque::new(),
            pending_bytes: 0,
            segments: VecDeque::new(),
            active: None,
            next_seq: acked + 1,
            acked,
            dropped_samples: 0,
            inflight,
            _lock: lock,
        };
        for id in ids {
            let (size, records) = buf.scan_segment(id)?;
            if records.is_empty() {
                // Nothing valid in it (created just before a crash): remove
                // it so a new segment may reuse the name.
                let path = buf.segment_path(id);
                fs::remove_file(&path).map_err(io_err(&path))?;
                continue;
            }
            buf.segments.push_back((id, size));
            for r in records {
                buf.next_seq = buf.next_seq.max(r.seq + 1);
                if r.seq > acked {
                    buf.pending_bytes += r.disk_size();
                    buf.pending.push_back(r);
                }
            }
        }
        buf.enforce_limit()?;
        buf.collect_garbage()?;
        Ok(buf)
    }

    fn segment_path(&self, id: u64) -> PathBuf {
        self.dir.join(format!("{id:020}.seg"))
    }

    /// Reads every valid record of a segment, truncating a torn tail.
    fn scan_segment(&self, id: u64) -> Result<(u64, Vec<RecordMeta>), BufferError> {
        let path = self.segment_path(id);
        let data = fs::read(&path).map_err(io_err(&path))?;
        let mut records = Vec::new();
        let mut pos = 0usize;
        let header = HEADER_LEN as usize;
        while pos + header <= data.len() {
            let h = &data[pos..pos + header];
            let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]);
            let crc = u32::from_le_bytes([h[4], h[5], h[6], h[7]]);
            let end = pos + header + len as usize;
            if end > data.len() {
                break;
            }
            let mut hasher = crc32fast::Hasher::new();
            hasher.update(&h[8..]);
            hasher.update(&data[pos + header..end]);
            if hasher.finalize() != crc {
                break;
            }
            let mut seq = [0u8; 8];
            seq.copy_from_slice(&h[8..16]);
            records.push(RecordMeta {
                seq: u64::from_le_bytes(seq),
                segment: id,
                offset: pos as u64,
                len,
                samples: u32::from_le_bytes([h[16], h[17], h[18], h[19]]),
            });
            pos = end;
        }
        if pos < data.len() {
            tracing::warn!(
                segment = %path.display(),
                valid_bytes = pos,
                torn_bytes = data.len() - pos,
                "buffer segment has a torn or corrupt tail; truncating it"
            );
            let f = OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(io_err(&path))?;
            f.set_len(pos as u64).map_err(io_err(&path))?;
        }
        Ok((pos as u64, records))
    }

    /// Appends one record (a compressed `WriteRequest` holding `samples`
    /// samples) and returns its sequence number. Drops the oldest records
    /// if the buffer would exceed its bound.
    pub fn append(&mut self, payload: &[u8], samples: u32) -> Result<u64, BufferError> {
        let len = u32::try_from(payload.len()).map_err(|_| BufferError::TooLarge(payload.len()))?;
        let seq = self.next_seq;
        let need_new = match (self.active.as_ref(), self.segments.back()) {
            (Some(_), Some(&(_, size))) => size >= self.segment_bytes,
            _ => true,
        };
        if need_new {
            let path = self.segment_path(seq);
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map_err(io_err(&path))?;
            self.active = Some(f);
            self.segments.push_back((seq, 0));
        }
        let (seg_id, seg_size) = match self.segments.back() {
            Some(&(id, size)) => (id, size),
            None => return Err(io_err(&self.dir)(io::Error::other("no active segment"))),
        };
        let mut rec = Vec::with_capacity(HEADER_LEN as usize + payload.len());
        rec.extend_from_slice(&len.to_le_bytes());
        rec.extend_from_slice(&[0; 4]);
        rec.extend_from_slice(&seq.to_le_bytes());
        rec.extend_from_slice(&samples.to_le_bytes());
        let mut hasher = crc32fast::Hasher::new();
        hasher.update(&rec[8..]);
        hasher.update(payload);
        let crc = hasher.finalize();
        rec[4..8].copy_from_slice(&crc.to_le_bytes());
        rec.extend_from_slice(payload);
        let path = self.segment_path(seg_id);
        let Some(f) = self.active.as_mut() else {
            return Err(io_err(&path)(io::Error::other("no active segment")));
        };
        if let Err(e) = f.write_all(&rec) {
            // A partial write leaves a torn tail; start a fresh segment next
            // time so the torn bytes are never followed by good records;
            // cut them off now if the file system still lets us.
            let _ = f.set_len(seg_size);
            self.active = None;
            return Err(io_err(&path)(e));
        }
        let meta = RecordMeta {
            seq,
            segment: seg_id,
            offset: seg_size,
            len,
            samples,
        };
        if let Some(back) = self.segments.back_mut() {
            back.1 += meta.disk_size();
        }
        self.next_seq += 1;
        self.pending_bytes += meta.disk_size();
        self.pending.push_back(meta);
        self.enforce_limit()?;
        self.collect_garbage()?;
        Ok(seq)
    }

    /// Drops the oldest records while the pending bytes exceed the bound.
    fn enforce_limit(&mut self) -> Result<(), BufferError> {
        let mut dropped_to = None;
        while self.pending_bytes > self.max_bytes {
            let Some(r) = self.pending.pop_front() else {
                break;
            };
            self.pending_bytes -= r.disk_size();
            self.dropped_samples += u64::from(r.samples);
            dropped_to = Some(r.seq);
        }
        if let Some(seq) = dropped_to {
            tracing::warn!(
                up_to_seq = seq,
                dropped_samples_total = self.dropped_samples,
                "send buffer full; dropped the oldest data"
            );
            self.write_ack(seq)?;
        }
        Ok(())
    }

    /// Reads up to `max_records` oldest pending records holding at most
    /// `max_samples` samples together (always at least one record).
    pub fn peek(&self, max_records: usize, max_samples: usize) -> Result<Vec<Record>, BufferError> {
        let mut out = Vec::new();
        let mut samples = 0usize;
        let mut open: Option<(u64, File)> = None;
        for meta in self.pending.iter().take(max_records) {
            if !out.is_empty() && samples + meta.samples as usize > max_samples {
                break;
            }
            let path = self.segment_path(meta.segment);
            if open.as_ref().map(|(id, _)| *id) != Some(meta.segment) {
                open = Some((meta.segment, File::open(&path).map_err(io_err(&path))?));
            }
            let Some((_, f)) = open.as_mut() else { break };
            f.seek(SeekFrom::Start(meta.offset + HEADER_LEN))
                .map_err(io_err(&path))?;
            let mut payload = vec![0u8; meta.len as usize];
            f.read_exact(&mut payload).map_err(io_err(&path))?;
            samples += meta.samples as usize;
            out.push(Record {
                seq: meta.seq,
                samples: meta.samples,
                payload,
            });
        }
        Ok(out)
    }

    /// Marks every record up to and including `seq` as done. Returns how
    /// many pending records this removed (records already dropped for space
    /// are not counted again).
    pub fn ack(&mut self, seq: u64) -> Result<usize, BufferError> {
        if seq <= self.acked {
            return Ok(0);
        }
        let mut n = 0;
        while self.pending.front().is_some_and(|r| r.seq <= seq) {
            if let Some(r) = self.pending.pop_front() {
                self.pending_bytes -= r.disk_size();
                n += 1;
            }
        }
        self.write_ack(seq)?;
        self.collect_garbage()?;
        Ok(n)
    }

    /// Every pending record with a sequence number at or below `seq`: the
    /// batch recorded by [`DiskBuffer::set_inflight`], read back whole.
    pub fn peek_through(&self, seq: u64) -> Result<Vec<Record>, BufferError> {
        let n = self.pending.iter().take_while(|r| r.seq <= seq).count();
        self.peek(n, usize::MAX)
    }

    /// The batch a sender started and did not finish. `None` once `ack`
    /// covers it, or when its first records were dropped for space (the
    /// batch is then no longer the same, so it is not resumed).
    pub fn inflight(&self) -> Option<Inflight> {
        self.inflight
            .as_ref()
            .filter(|i| {
                i.last > self.acked && self.pending.front().is_some_and(|r| r.seq == i.first)
            })
            .cloned()
    }

    /// Records that the batch of records `first..=last` is being sent and
    /// that its first `parts_done` parts were delivered. Written before
    /// each send, so that after a crash the same batch is re-sent, not a
    /// larger one: a receiver that already stored a part (the crash came
    /// between its answer and this record) then sees an exact duplicate,
    /// never older samples mixed with new ones, which Prometheus refuses
    /// whole as out of order.
    pub fn set_inflight(&mut self, batch: Inflight) -> Result<(), BufferError> {
        if self.inflight.as_ref() == Some(&batch) {
            return Ok(());
        }
        let b = encode_inflight(&batch);
        let tmp = self.dir.join("inflight.tmp");
        fs::write(&tmp, b).map_err(io_err(&tmp))?;
        let dst = self.dir.join(INFLIGHT_FILE);
        fs::rename(&tmp, &dst).map_err(io_err(&dst))?;
        self.inflight = Some(batch);
        Ok(())
    }

    fn write_ack(&mut self, seq: u64) -> Result<(), BufferError> {
        self.acked = self.acked.max(seq);
        let tmp = self.dir.join("ack.tmp");
        fs::write(&tmp, self.acked.to_le_bytes()).map_err(io_err(&tmp))?;
        let dst = self.dir.join(ACK_FILE);
        fs::rename(&tmp, &dst).map_err(io_err(&dst))
    }

    /// Deletes segments all of whose records are acknowledged.
    fn collect_garbage(&mut self) -> Result<(), BufferError> {
        // A segment is done when the first pending record lives in a later
        // segment (or nothing is pending and it is not the active one).
        let first_pending_segment = self.pending.front().map(|r| r.segment);
        while let Some(&(id, _)) = self.segments.front() {
            let is_active = self.active.is_some() && self.segments.len() == 1;
            let done = match first_pending_segment {
                Some(s) => id < s,
                None => !is_active,
            };
            if !done {
                break;
            }
            let path = self.segment_path(id);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err(&path)(e)),
            }
            self.segments.pop_front();
            if self.segments.is_empty() {
                self.active = None;
            }
        }
        Ok(())
    }

    /// Samples dropped for space since this buffer was opened.
    pub fn dropped_samples(&self) -> u64 {
        self.dropped_samples
    }

    /// Bytes of pending (unsent) records.
    pub fn pending_bytes(&self) -> u64 {
        self.pending_bytes
    }

    /// Number of pending records.
    pub fn pending_records(&self) -> usize {
        self.pending.len()
    }

    /// Samples in pending records.
    pub fn pending_samples(&self) -> u64 {
        self.pending.iter().map(|r| u64::from(r.samples)).sum()
    }

    /// Bytes of all segment files on disk (pending plus not yet deleted).
    pub fn disk_bytes(&self) -> u64 {
        self.segments.iter().map(|(_, s)| *s).sum()
    }

    /// Flushes the active segment to stable storage (used at shutdown).
    pub fn sync(&mut self) -> Result<(), BufferError> {
        if let Some(f) = self.active.as_mut() {
            let path = self.dir.clone();
            f.sync_data().map_err(io_err(&path))?;
        }
        Ok(())
    }
}

/// Size on disk of a record with a payload of `payload_len` bytes (for
/// callers and tests that reason about the bound).
pub fn record_size(payload_len: usize) -> u64 {
    HEADER_LEN + payload_len as u64
}

#[cfg(test)]
#[path = "buffer/tests.rs"]
mod tests;
