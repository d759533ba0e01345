//! The disk buffer checked against an in-memory model (a `VecDeque`), with
//! random sequences of appends, sends, restarts and torn writes.

use std::collections::VecDeque;

use proptest::prelude::*;

use super::*;

const MAX_BYTES: u64 = 2_000;
const SEGMENT_BYTES: u64 = 1_024;

/// What the buffer must behave like: a FIFO of (payload, samples) whose
/// total record size stays within the bound by dropping from the front.
#[derive(Default)]
struct Model {
    pending: VecDeque<(Vec<u8>, u32)>,
    dropped: u64,
}

impl Model {
    fn bytes(&self) -> u64 {
        self.pending.iter().map(|(p, _)| record_size(p.len())).sum()
    }
    fn append(&mut self, p: Vec<u8>, samples: u32) {
        self.pending.push_back((p, samples));
        while self.bytes() > MAX_BYTES {
            if let Some((_, s)) = self.pending.pop_front() {
                self.dropped += u64::from(s);
            }
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<u8>, u32),
    /// Send up to n records and acknowledge them.
    Send(usize),
    /// Close and reopen on the same directory (an agent restart).
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        5 => (proptest::collection::vec(any::<u8>(), 0..400), 0u32..50).prop_map(|(p, s)| Op::Append(p, s)),
        2 => (1usize..6).prop_map(Op::Send),
        1 => Just(Op::Restart),
    ]
}

fn check(buf: &DiskBuffer, model: &Model, dropped_before_restarts: u64) {
    let got = buf.peek(usize::MAX, usize::MAX).expect("peek");
    let want: Vec<(Vec<u8>, u32)> = model.pending.iter().cloned().collect();
    let got: Vec<(Vec<u8>, u32)> = got.into_iter().map(|r| (r.payload, r.samples)).collect();
    assert_eq!(got, want);
    assert_eq!(buf.pending_bytes(), model.bytes());
    assert!(buf.pending_bytes() <= MAX_BYTES);
    assert_eq!(
        dropped_before_restarts + buf.dropped_samples(),
        model.dropped
    );
    // The documented disk bound: max_bytes + one segment + one record.
    assert!(buf.disk_bytes() <= MAX_BYTES + SEGMENT_BYTES + record_size(400));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]
    #[test]
    fn buffer_matches_model(ops in proptest::collection::vec(op(), 1..60)) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut buf = DiskBuffer::open(dir.path(), MAX_BYTES, SEGMENT_BYTES).expect("open");
        let mut model = Model::default();
        let mut dropped_before = 0;
        let mut last_seq = 0;
        for op in ops {
            match op {
                Op::Append(p, s) => {
                    let seq = buf.append(&p, s).expect("append");
                    prop_assert!(seq > last_seq, "sequence numbers increase");
                    last_seq = seq;
                    model.append(p, s);
                }
                Op::Send(n) => {
                    let batch = buf.peek(n, usize::MAX).expect("peek");
                    if let Some(last) = batch.last() {
                        buf.ack(last.seq).expect("ack");
                    }
                    for _ in 0..batch.len() {
                        model.pending.pop_front();
                    }
                }
                Op::Restart => {
                    dropped_before += buf.dropped_samples();
                    drop(buf);
                    buf = DiskBuffer::open(dir.path(), MAX_BYTES, SEGMENT_BYTES).expect("reopen");
                }
            }
            check(&buf, &model, dropped_before);
        }
    }
}

#[test]
fn torn_tail_is_truncated_and_later_records_survive() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut buf = DiskBuffer::open(dir.path(), 1 << 20, 1 << 20).expect("open");
    buf.append(b"first", 1).expect("append");
    buf.append(b"second", 2).expect("append");
    drop(buf);
    // Simulate a crash in the middle of writing the second record.
    let seg = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .expect("a segment exists");
    let len = std::fs::metadata(&seg).expect("stat").len();
    let f = OpenOptions::new()
        .write(true)
        .open(&seg)
        .expect("open segment");
    f.set_len(len - 3).expect("truncate");
    drop(f);
    let mut buf = DiskBuffer::open(dir.path(), 1 << 20, 1 << 20).expect("reopen");
    let recs = buf.peek(10, usize::MAX).expect("peek");
    assert_eq!(recs.len(), 1);
    assert_eq!(recs[0].payload, b"first");
    let seq = buf.append(b"third", 3).expect("append after recovery");
    assert!(seq > recs[0].seq);
    let recs: Vec<_> = buf
        .peek(10, usize::MAX)
        .expect("peek")
        .into_iter()
        .map(|r| r.payload)
        .collect();
    assert_eq!(recs, vec![b"first".to_vec(), b"third".to_vec()]);
}

#[test]
fn corrupt_byte_stops_replay_at_that_record() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut buf = DiskBuffer::open(dir.path(), 1 << 20, 1 << 20).expect("open");
    buf.append(b"aaaa", 1).expect("append");
    buf.append(b"bbbb", 1).expect("append");
    drop(buf);
    let seg = std::fs::read_dir(dir.path())
        .expect("list")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "seg"))
        .expect("a segment exists");
    let mut bytes = std::fs::read(&seg).expect("read");
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&seg, bytes).expect("write");
    let buf = DiskBuffer::open(dir.path(), 1 << 20, 1 << 20).expect("reopen");
    assert_eq!(buf.pending_records(), 1);
}

#[test]
fn acked_segments_are_deleted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut buf = DiskBuffer::open(dir.path(), 1 << 20, 1024).expect("open");
    let mut last = 0;
    for _ in 0..20 {
        last = buf.append(&[7u8; 300], 1).expect("append");
    }
    assert!(buf.disk_bytes() > 4 * 1024);
    buf.ack(last).expect("ack");
    assert_eq!(buf.pending_records(), 0);
    // Only the active segment may remain.
    assert!(buf.disk_bytes() <= 1024 + record_size(300));
    drop(buf);
    let buf = DiskBuffer::open(dir.path(), 1 << 20, 1024).expect("reopen");
    assert_eq!(buf.pending_records(), 0);
    assert_eq!(buf.disk_bytes(), 0);
}

#[test]
fn a_second_opener_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = DiskBuffer::open(dir.path(), 1 << 20, 1 << 20).expect("open");
    assert!(matches!(
        DiskBuffer::open(dir.path(), 1 << 20, 1 << 20),
        Err(BufferError::Locked(_))
    ));
    drop(first);
    DiskBuffer::open(dir.path(), 1 << 20, 1 << 20).expect("reopen after the first closed");
}

#[test]
fn inflight_batch_survives_a_restart_until_acknowledged() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut buf = DiskBuffer::open(dir.path(), 1 << 20, 1 << 20).expect("open");
    let a = buf.append(b"a", 1).expect("append");
    let b = buf.append(b"b", 1).expect("append");
    assert_eq!(buf.inflight(), None);
    let rec = Inflight {
        first: a,
        last: b,
        parts_done: 1,
        shard_parts_done: Vec::new(),
    };
    buf.set_inflight(rec.clone()).expect("mark");
    buf.append(b"c", 1).expect("append after the batch was cut");
    drop(buf);
    let mut buf = DiskBuffer::open(dir.path(), 1 << 20, 1 << 20).expect("reopen");
    assert_eq!(buf.inflight(), Some(rec.clone()));
    let again: Vec<Vec<u8>> = buf
        .peek_through(rec.last)
        .expect("peek")
        .into_iter()
        .map(|r| r.payload)
        .collect();
    assert_eq!(
        again,
        vec![b"a".to_vec(), b"b".to_vec()],
        "the same batch, not a larger one"
    );
    buf.ack(b).expect("ack");
    assert_eq!(buf.inflight(), None);
    drop(buf);
    let buf = DiskBuffer::open(dir.path(), 1 << 20, 1 << 20).expect("reopen");
    assert_eq!(buf.inflight(), None);
    assert_eq!(buf.pending_records(), 1);
}

#[test]
fn sharded_inflight_progress_survives_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut buf = DiskBuffer::open(dir.path(), 1 << 20, 1 << 20).expect("open");
    let a = buf.append(b"a", 1).expect("append");
    let rec = Inflight {
        first: a,
        last: a,
        parts_done: 5,
        shard_parts_done: vec![2, 0, 3],
    };
    buf.set_inflight(rec.clone()).expect("mark");
    drop(buf);
    let buf = DiskBuffer::open(dir.path(), 1 << 20, 1 << 20).expect("reopen");
    assert_eq!(buf.inflight(), Some(rec));
    // A truncated record is not resumed.
    std::fs::write(dir.path().join("inflight"), [0u8; 27]).expect("write");
    drop(buf);
    let buf = DiskBuffer::open(dir.path(), 1 << 20, 1 << 20).expect("reopen");
    assert_eq!(buf.inflight(), None);
}

#[test]
fn inflight_batch_is_forgotten_when_its_records_are_dropped_for_space() {
    let dir = tempfile::tempdir().expect("tempdir");
    let max = record_size(100) * 2;
    let mut buf = DiskBuffer::open(dir.path(), max, 1 << 20).expect("open");
    let a = buf.append(&[1u8; 100], 5).expect("append");
    buf.set_inflight(Inflight {
        first: a,
        last: a,
        parts_done: 0,
        shard_parts_done: Vec::new(),
    })
    .expect("mark");
    buf.append(&[2u8; 100], 5).expect("append");
    buf.append(&[3u8; 100], 5).expect("append drops the oldest");
    assert_eq!(buf.dropped_samples(), 5);
    assert_eq!(buf.inflight(), None);
}
