//! Shared timestamp columns: which column a newly sealed chunk can refer
//! to instead of storing its timestamps again.
//!
//! Every series scraped from one target carries exactly the same
//! timestamps, and compaction cuts them at the same points, so their
//! sealed chunks can share one column (`timestamps` table, FORMAT.md).
//! The writer remembers recently stored columns by a hash of their bytes;
//! a hit is confirmed against the stored bytes before it is used, so a
//! hash collision or a stale entry (the column deleted since) only costs
//! a new column, never a wrong one.

use std::collections::hash_map::DefaultHasher;
use std::collections::{HashMap, VecDeque};
use std::hash::{Hash, Hasher};

use rusqlite::Connection;

use crate::{Error, store};

/// Columns remembered for sharing. Compaction works on recent data, so
/// older columns are rarely matched again; forgetting one only means the
/// next chunk with those timestamps starts a new column.
const REMEMBERED: usize = 1 << 16;

/// Columns loaded at open to match against (the newest ones).
const LOADED_AT_OPEN: usize = 4096;

/// Timestamp columns shorter than this stay inside their chunk: regular
/// timestamps take a few bytes, less than a column reference saves.
pub const SHARE_MIN_BYTES: usize = 16;

#[derive(Default)]
pub struct Columns {
    by_hash: HashMap<u64, i64>,
    order: VecDeque<u64>,
}

fn hash(data: &[u8]) -> u64 {
    let mut h = DefaultHasher::new();
    data.hash(&mut h);
    h.finish()
}

impl Columns {
    /// Remembers the newest stored columns.
    pub fn load(conn: &Connection) -> Result<Self, Error> {
        let mut out = Self::default();
        let mut stmt = conn.prepare("SELECT id, data FROM timestamps ORDER BY id DESC LIMIT ?1")?;
        let mut rows = stmt.query([LOADED_AT_OPEN as i64])?;
        let mut found = Vec::new();
        while let Some(row) = rows.next()? {
            found.push((row.get::<_, i64>(0)?, hash(store::blob(row, 1)?)));
        }
        for (id, h) in found.into_iter().rev() {
            out.remember(h, id);
        }
        Ok(out)
    }

    fn remember(&mut self, h: u64, id: i64) {
        if self.by_hash.insert(h, id).is_none() {
            self.order.push_back(h);
            if self.order.len() > REMEMBERED
                && let Some(old) = self.order.pop_front()
            {
                self.by_hash.remove(&old);
            }
        }
    }

    /// The id of a stored column holding exactly `data`, with one more
    /// reference taken in `conn`'s transaction; otherwise a new column
    /// with one reference. Answers the id and whether it is new.
    pub fn acquire(&mut self, conn: &Connection, data: &[u8]) -> Result<(i64, bool), Error> {
        let h = hash(data);
        if let Some(&id) = self.by_hash.get(&h)
            && store::ts_data(conn, id)?.is_some_and(|d| d == data)
        {
            store::ts_refs(conn, id, 1)?;
            return Ok((id, false));
        }
        let id = store::ts_insert(conn, data)?;
        // Remembered before the commit: if it rolls back, the entry is
        // stale, which the byte comparison above catches.
        self.remember(h, id);
        Ok((id, true))
    }
}
