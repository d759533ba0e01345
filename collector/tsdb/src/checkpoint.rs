//! Moves SQLite's WAL checkpoints off the writer thread.
//!
//! SQLite's default auto-checkpoint runs inside the commit that pushes its
//! WAL file past 1000 pages: that commit copies every frame into the main
//! file and fsyncs both files while every ingesting client waits on it.
//! Measured on `bench-ingest` (10,000 series × 800 samples), those few
//! commits took 50–100 ms each and about a third of the whole run.
//!
//! Here a WAL hook on the writer's connection only signals a background
//! thread, which checkpoints through its own connection in PASSIVE mode:
//! it copies what no reader still needs and never blocks the writer or a
//! reader. SQLite restarts the WAL file from its beginning at the first
//! write that finds it fully copied, so its size stays bounded while the
//! writer has pauses. Under ingestion with no pause at all the background
//! pass may never catch up completely; past [`INLINE_PAGES`] the writer
//! then checkpoints once itself, which is cheap because the background
//! pass has already copied and synced nearly everything, and lets the next
//! write restart the file.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, SyncSender, TrySendError};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;
use rusqlite::wal::CheckpointMode;
use tracing::{debug, warn};

use crate::{Error, SyncMode};

/// WAL frames (pages) after which a commit wakes the background pass:
/// SQLite's own auto-checkpoint threshold.
pub const BACKGROUND_PAGES: i32 = 1000;

/// WAL frames after which the writer checkpoints inline. With 16 KiB pages
/// this bounds the WAL file near 64 MiB plus one group commit.
pub const INLINE_PAGES: i32 = 4096;

/// Checkpoints run so far, by where they ran.
#[derive(Debug, Default)]
pub struct Counts {
    pub background: AtomicU64,
    pub inline: AtomicU64,
}

/// The background checkpoint thread. Dropping it stops the thread.
pub struct Checkpointer {
    counts: Arc<Counts>,
    stop: Arc<AtomicBool>,
    wake: SyncSender<()>,
    handle: Option<JoinHandle<()>>,
}

impl Checkpointer {
    /// Starts the thread on its own connection to `path` and installs the
    /// WAL hook on `writer` (which replaces SQLite's auto-checkpoint there).
    pub fn start(path: &Path, sync: SyncMode, writer: &mut Connection) -> Result<Self, Error> {
        let conn = Connection::open(path)?;
        // Checkpoints sync as the writer's commits do.
        conn.pragma_update(None, "synchronous", sync.pragma())?;
        // One pending wake-up is enough: a pass copies everything committed
        // before it starts.
        let (wake, rx) = mpsc::sync_channel::<()>(1);
        let stop = Arc::new(AtomicBool::new(false));
        let counts = Arc::new(Counts::default());
        let handle = {
            let (stop, counts) = (stop.clone(), counts.clone());
            std::thread::Builder::new()
                .name("vigil-tsdb-checkpoint".into())
                .spawn(move || run(&conn, &rx, &stop, &counts))
                .map_err(|source| Error::Io {
                    path: "checkpoint thread".into(),
                    source,
                })?
        };
        let (hook_wake, hook_counts) = (wake.clone(), counts.clone());
        writer.wal_hook(Some(move |wal: &mut rusqlite::hooks::Wal, pages: i32| {
            if pages >= INLINE_PAGES {
                // The commit has happened whatever this returns; an error
                // returned here would make the writer report a committed
                // group as failed, so it is only logged.
                match wal.checkpoint_v2(CheckpointMode::PASSIVE) {
                    Ok((log, copied)) => {
                        hook_counts.inline.fetch_add(1, Ordering::Relaxed);
                        debug!(log, copied, "inline WAL checkpoint");
                    }
                    // Busy: the background pass is copying right now.
                    Err(e) if is_busy(&e) => debug!(error = %e, "inline WAL checkpoint skipped"),
                    Err(e) => warn!(error = %e, pages, "inline WAL checkpoint failed; the WAL file keeps growing"),
                }
            } else if pages >= BACKGROUND_PAGES {
                match hook_wake.try_send(()) {
                    Ok(()) | Err(TrySendError::Full(())) => {}
                    Err(TrySendError::Disconnected(())) => {
                        debug!("background checkpoint thread gone; inline checkpoints remain");
                    }
                }
            }
            Ok(())
        }))?;
        Ok(Self {
            counts,
            stop,
            wake,
            handle: Some(handle),
        })
    }

    pub fn counts(&self) -> Arc<Counts> {
        self.counts.clone()
    }
}

fn run(conn: &Connection, rx: &Receiver<()>, stop: &AtomicBool, counts: &Counts) {
    let mut failures = 0u32;
    // The timeout only bounds how long a stop request waits.
    while !stop.load(Ordering::Acquire) {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(()) => {}
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if stop.load(Ordering::Acquire) {
            break;
        }
        match conn.wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE) {
            Ok((log, copied)) => {
                failures = 0;
                counts.background.fetch_add(1, Ordering::Relaxed);
                debug!(log, copied, "background WAL checkpoint");
            }
            // Another checkpoint (the writer's inline one, or a flush) is
            // running: it does this pass's work.
            Err(e) if is_busy(&e) => {}
            Err(e) => {
                failures += 1;
                // The writer's inline checkpoints still bound the WAL file,
                // so this degrades latency, not safety: warn once per run of
                // failures rather than on every commit.
                if failures == 1 {
                    warn!(error = %e, "background WAL checkpoint failed; the writer checkpoints inline");
                }
            }
        }
    }
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        // Wakes the thread if it waits; a full channel wakes it as well.
        let _ = self.wake.try_send(());
        if let Some(h) = self.handle.take()
            && h.join().is_err()
        {
            tracing::error!("tsdb checkpoint thread panicked");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAGE: i64 = 4096;

    fn writer(path: &Path) -> Connection {
        let conn = Connection::open(path).expect("test database");
        conn.pragma_update(None, "page_size", PAGE)
            .expect("test database");
        conn.pragma_update(None, "journal_mode", "WAL")
            .expect("test database");
        conn.pragma_update(None, "synchronous", "NORMAL")
            .expect("test database");
        conn.execute_batch("CREATE TABLE t (id INTEGER PRIMARY KEY, data BLOB NOT NULL)")
            .expect("test database");
        conn
    }

    /// One commit of `pages` pages of new rows.
    fn commit(conn: &Connection, pages: usize) {
        let blob = vec![7u8; (PAGE as usize) - 200];
        let tx = conn.unchecked_transaction().expect("test database");
        for _ in 0..pages {
            tx.execute("INSERT INTO t (data) VALUES (?1)", [&blob])
                .expect("test database");
        }
        tx.commit().expect("test database");
    }

    /// A writer connection on a new database, with its checkpointer.
    fn started() -> (
        tempfile::TempDir,
        std::path::PathBuf,
        Connection,
        Checkpointer,
    ) {
        let dir = tempfile::tempdir().expect("test database");
        let path = dir.path().join("x.db");
        let mut conn = writer(&path);
        let ck = Checkpointer::start(&path, SyncMode::Normal, &mut conn).expect("test database");
        (dir, path, conn, ck)
    }

    fn wal_bytes(path: &Path) -> u64 {
        std::fs::metadata(path.with_extension("db-wal")).map_or(0, |m| m.len())
    }

    #[test]
    fn commits_with_pauses_are_checkpointed_in_the_background_and_the_wal_restarts() {
        let (_dir, path, conn, ck) = started();
        // 4,000 pages in all, below the inline threshold, with the pauses
        // a collector's commits have between scrapes.
        let mut largest = 0;
        for _ in 0..200 {
            commit(&conn, 20);
            largest = largest.max(wal_bytes(&path));
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(ck.counts().background.load(Ordering::Relaxed) > 0);
        assert_eq!(ck.counts().inline.load(Ordering::Relaxed), 0);
        // Restarted from its beginning: the file never held the 4,000
        // pages written.
        assert!(
            largest < 3 * BACKGROUND_PAGES as u64 * PAGE as u64,
            "WAL file reached {largest} bytes"
        );
        drop(ck);
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("test database");
        assert_eq!(n, 4000);
    }

    #[test]
    fn without_a_pause_the_writer_checkpoints_inline_and_bounds_the_wal() {
        let (_dir, path, conn, ck) = started();
        // A reader holding one snapshot keeps every frame after it needed,
        // so neither pass can complete until it ends.
        let reader = Connection::open(&path).expect("test database");
        reader.execute_batch("BEGIN").expect("test database");
        let _: i64 = reader
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("test database");
        for _ in 0..100 {
            commit(&conn, 50);
        }
        assert!(ck.counts().inline.load(Ordering::Relaxed) > 0);
        reader.execute_batch("COMMIT").expect("test database");
        // With the reader gone, the next inline pass copies everything and
        // the write after it restarts the file.
        for _ in 0..100 {
            commit(&conn, 50);
        }
        drop(ck);
        // Frames now in the WAL (this pass copies them, after counting).
        let (frames, _) = Connection::open(&path)
            .expect("test database")
            .wal_checkpoint_v2(None::<&str>, CheckpointMode::PASSIVE)
            .expect("test database");
        assert!(frames <= INLINE_PAGES + 60, "{frames} frames in the WAL");
        let n: i64 = conn
            .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
            .expect("test database");
        assert_eq!(n, 10_000);
    }
}
