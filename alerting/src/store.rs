//! Durable state in `alerting.db` (SQLite, WAL): alerts, silences, the
//! notification log, the notification outbox and the incident history.
//!
//! One connection lives on a dedicated thread fed by a channel; writes that
//! arrive together are committed in one transaction (group commit) and each
//! caller can wait for its commit. With WAL and `synchronous=NORMAL` a
//! committed write survives `kill -9` of the process. Every table is
//! `(key, body)` with a JSON body; see `alerting/README.md` for the format.

use std::path::Path;
use std::sync::mpsc;

use rusqlite::{Connection, params};
use thiserror::Error;
use tokio::sync::oneshot;
use tracing::error;

use crate::alert::Alert;
use crate::incident::Incident;
use crate::nflog::{NflogEntry, NflogKey};
use crate::outbox::OutboxEntry;
use crate::silence::Silence;

#[derive(Debug, Error)]
pub enum StoreError {
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("corrupt row in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
    #[error("store thread has stopped")]
    Closed,
}

/// One change to persist.
#[derive(Debug, Clone)]
pub enum Write {
    PutAlert(Box<Alert>),
    DeleteAlert(u64),
    PutSilence(Box<Silence>),
    DeleteSilence(String),
    PutNflog(NflogKey, NflogEntry),
    DeleteNflog(NflogKey),
    PutOutbox(Box<OutboxEntry>),
    DeleteOutbox(u64),
    PutIncident(Box<Incident>),
    DeleteIncident(String),
}

/// Everything read back at start.
#[derive(Debug, Default)]
pub struct Loaded {
    pub alerts: Vec<Alert>,
    pub silences: Vec<Silence>,
    pub nflog: Vec<(NflogKey, NflogEntry)>,
    pub outbox: Vec<OutboxEntry>,
    pub incidents: Vec<Incident>,
}

type Reply = oneshot::Sender<Result<(), String>>;

/// Handle to the store thread; cheap to clone.
#[derive(Clone)]
pub struct Store {
    tx: mpsc::Sender<(Vec<Write>, Option<Reply>)>,
}

impl Store {
    /// Opens (creating if needed) the database and loads its contents.
    pub fn open(path: &Path) -> Result<(Store, Loaded), StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS alerts (fp INTEGER PRIMARY KEY, body TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS silences (id TEXT PRIMARY KEY, body TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS nflog (key TEXT PRIMARY KEY, body TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY, body TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS incidents (id TEXT PRIMARY KEY, body TEXT NOT NULL);",
        )?;
        let loaded = Loaded {
            alerts: load(&conn, "SELECT body FROM alerts", "alerts")?,
            silences: load(&conn, "SELECT body FROM silences", "silences")?,
            nflog: load(&conn, "SELECT body FROM nflog", "nflog")?,
            outbox: load(&conn, "SELECT body FROM outbox ORDER BY id", "outbox")?,
            incidents: load(&conn, "SELECT body FROM incidents", "incidents")?,
        };
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("alerting-store".into())
            .spawn(move || run(conn, rx))
            .map_err(|e| StoreError::Corrupt {
                table: "-",
                reason: format!("cannot start store thread: {e}"),
            })?;
        Ok((Store { tx }, loaded))
    }

    /// Queues writes and waits until they are committed.
    pub async fn write(&self, writes: Vec<Write>) -> Result<(), StoreError> {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send((writes, Some(tx)))
            .map_err(|_| StoreError::Closed)?;
        match rx.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(reason)) => Err(StoreError::Corrupt { table: "-", reason }),
            Err(_) => Err(StoreError::Closed),
        }
    }

    /// Queues writes without waiting (they commit within milliseconds).
    pub fn write_later(&self, writes: Vec<Write>) {
        if writes.is_empty() {
            return;
        }
        if self.tx.send((writes, None)).is_err() {
            error!("alerting store thread has stopped; state change not persisted");
        }
    }
}

/// The silences stored in `path`, read-only (a running serve may own the
/// database): what `vigil backtest` applies to past notifications.
pub fn read_silences(path: &Path) -> Result<Vec<Silence>, StoreError> {
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    load(&conn, "SELECT body FROM silences", "silences")
}

fn load<T: serde::de::DeserializeOwned>(
    conn: &Connection,
    sql: &str,
    table: &'static str,
) -> Result<Vec<T>, StoreError> {
    let mut stmt = conn.prepare(sql)?;
    let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
    let mut out = Vec::new();
    for body in rows {
        let body = body?;
        match serde_json::from_str(&body) {
            Ok(v) => out.push(v),
            // One bad row must not stop the daemon; it is logged and skipped.
            Err(e) => error!(table, error = %e, "skipping unreadable row"),
        }
    }
    Ok(out)
}

fn run(mut conn: Connection, rx: mpsc::Receiver<(Vec<Write>, Option<Reply>)>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while let Ok(more) = rx.try_recv() {
            batch.push(more);
            if batch.len() >= 512 {
                break;
            }
        }
        let result =
            apply(&mut conn, batch.iter().flat_map(|(w, _)| w.iter())).map_err(|e| e.to_string());
        if let Err(e) = &result {
            error!(error = %e, "alerting store write failed");
        }
        for (_, reply) in batch {
            if let Some(r) = reply {
                let _ = r.send(result.clone());
            }
        }
    }
}

fn json<T: serde::Serialize>(v: &T) -> Result<String, rusqlite::Error> {
    serde_json::to_string(v).map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))
}

fn apply<'a>(
    conn: &mut Connection,
    writes: impl Iterator<Item = &'a Write>,
) -> Result<(), rusqlite::Error> {
    let tx = conn.transaction()?;
    for w in writes {
        match w {
            Write::PutAlert(a) => {
                tx.prepare_cached("INSERT OR REPLACE INTO alerts (fp, body) VALUES (?1, ?2)")?
                    .execute(params![a.fingerprint as i64, json(a)?])?;
            }
            Write::DeleteAlert(fp) => {
                tx.prepare_cached("DELETE FROM alerts WHERE fp = ?1")?
                    .execute(params![*fp as i64])?;
            }
            Write::PutSilence(s) => {
                tx.prepare_cached("INSERT OR REPLACE INTO silences (id, body) VALUES (?1, ?2)")?
                    .execute(params![s.id, json(s)?])?;
            }
            Write::DeleteSilence(id) => {
                tx.prepare_cached("DELETE FROM silences WHERE id = ?1")?
                    .execute(params![id])?;
            }
            Write::PutNflog(k, e) => {
                tx.prepare_cached("INSERT OR REPLACE INTO nflog (key, body) VALUES (?1, ?2)")?
                    .execute(params![k.storage_key(), json(&(k, e))?])?;
            }
            Write::DeleteNflog(k) => {
                tx.prepare_cached("DELETE FROM nflog WHERE key = ?1")?
                    .execute(params![k.storage_key()])?;
            }
            Write::PutOutbox(o) => {
                tx.prepare_cached("INSERT OR REPLACE INTO outbox (id, body) VALUES (?1, ?2)")?
                    .execute(params![o.id as i64, json(o)?])?;
            }
            Write::DeleteOutbox(id) => {
                tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?
                    .execute(params![*id as i64])?;
            }
            Write::PutIncident(i) => {
                tx.prepare_cached("INSERT OR REPLACE INTO incidents (id, body) VALUES (?1, ?2)")?
                    .execute(params![i.id, json(i)?])?;
            }
            Write::DeleteIncident(id) => {
                tx.prepare_cached("DELETE FROM incidents WHERE id = ?1")?
                    .execute(params![id])?;
            }
        }
    }
    tx.commit()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alert::PostableAlert;

    #[tokio::test]
    async fn round_trips_through_a_reopen() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("alerting.db");
        let now = chrono::Utc::now();
        let alert = Alert::from_postable(
            PostableAlert {
                labels: [("alertname".to_string(), "X".to_string())]
                    .into_iter()
                    .collect(),
                ..Default::default()
            },
            now,
            chrono::Duration::minutes(5),
        )
        .expect("valid alert");
        {
            let (store, loaded) = Store::open(&path).expect("open");
            assert!(loaded.alerts.is_empty());
            store
                .write(vec![Write::PutAlert(Box::new(alert.clone()))])
                .await
                .expect("write");
            store
                .write(vec![
                    Write::PutAlert(Box::new(alert.clone())),
                    Write::DeleteAlert(7),
                ])
                .await
                .expect("write");
        }
        let (_store, loaded) = Store::open(&path).expect("reopen");
        assert_eq!(loaded.alerts, vec![alert]);
    }
}
