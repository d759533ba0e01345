//! The PostgreSQL collector, under postgres_exporter's names and labels
//! (`pg_up`, `pg_stat_database_*{datid,datname,server}`,
//! `pg_database_size_bytes`, `pg_settings_max_connections`,
//! `pg_stat_activity_count|max_tx_duration{datname,state}`,
//! `pg_locks_count{datname,mode}`, `pg_replication_*`, and a bounded
//! `pg_stat_statements` top-N when enabled and installed).
//!
//! One connection per server is kept between cycles and re-established when
//! it breaks. Every connect and query runs under a timeout, so a server that
//! is down or hung gives `pg_up 0` and one log line per state change, never
//! a stalled collection. The password (from a file or an environment
//! variable) is never logged: logs name the server as `host:port` only.

use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::{Client, NoTls, Row};
use vigil_wire::remote_write::MetricType;

use crate::Collector;
use crate::config::{PostgresConfig, read_secret};
use crate::family::Family;

/// The collector of one server.
pub struct PostgresCollector {
    cfg: PostgresConfig,
    /// `host:port`, the `server` label and the name used in logs.
    server: String,
    client: Option<Client>,
    /// Last reported state, to log transitions once.
    was_up: Option<bool>,
    has_stat_statements: Option<bool>,
}

/// The `server` label: `host:port` of the first host in the DSN.
pub fn server_label(dsn: &str) -> String {
    match tokio_postgres::Config::from_str(dsn) {
        Ok(c) => {
            let host = match c.get_hosts().first() {
                Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
                Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
                None => "localhost".into(),
            };
            let port = c.get_ports().first().copied().unwrap_or(5432);
            format!("{host}:{port}")
        }
        Err(_) => "invalid-dsn".into(),
    }
}

impl PostgresCollector {
    pub fn new(cfg: &PostgresConfig) -> Self {
        Self {
            server: server_label(&cfg.dsn),
            cfg: cfg.clone(),
            client: None,
            was_up: None,
            has_stat_statements: None,
        }
    }

    async fn connect(&self) -> Result<Client, String> {
        let mut pg = tokio_postgres::Config::from_str(&self.cfg.dsn)
            .map_err(|e| format!("invalid dsn: {e}"))?;
        if let Some(pw) = read_secret(
            self.cfg.password_file.as_deref(),
            self.cfg.password_env.as_deref(),
        )? {
            pg.password(pw);
        }
        pg.connect_timeout(self.cfg.connect_timeout.0);
        pg.application_name("vigil-agent");
        let ms = self.cfg.query_timeout.0.as_millis().max(1);
        pg.options(format!("-c statement_timeout={ms}"));
        let fut = pg.connect(NoTls);
        let (client, conn) =
            tokio::time::timeout(self.cfg.connect_timeout.0 + Duration::from_secs(1), fut)
                .await
                .map_err(|_| "connect timed out".to_string())?
                .map_err(|e| e.to_string())?;
        let server = self.server.clone();
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(server = %server, error = %e, "postgres connection closed");
            }
        });
        Ok(client)
    }

    async fn query(&self, client: &Client, sql: &str) -> Result<Vec<Row>, String> {
        tokio::time::timeout(self.cfg.query_timeout.0, client.query(sql, &[]))
            .await
            .map_err(|_| "query timed out".to_string())?
            .map_err(|e| e.to_string())
    }

    async fn collect_all(&mut self, client: &Client, out: &mut Vec<Family>) -> Result<(), String> {
        let s = self.server.as_str();
        // pg_stat_database
        let rows = self
            .query(
                client,
                "SELECT datid::text, COALESCE(datname, ''), numbackends::float8, xact_commit::float8, \
                 xact_rollback::float8, blks_read::float8, blks_hit::float8, deadlocks::float8, \
                 temp_bytes::float8, tup_returned::float8, tup_fetched::float8, tup_inserted::float8, \
                 tup_updated::float8, tup_deleted::float8, conflicts::float8, temp_files::float8 \
                 FROM pg_stat_database",
            )
            .await?;
        let defs: [(&str, &str, MetricType); 14] = [
            (
                "numbackends",
                "Number of backends currently connected to this database.",
                MetricType::Gauge,
            ),
            (
                "xact_commit",
                "Number of transactions in this database that have been committed.",
                MetricType::Counter,
            ),
            (
                "xact_rollback",
                "Number of transactions in this database that have been rolled back.",
                MetricType::Counter,
            ),
            (
                "blks_read",
                "Number of disk blocks read in this database.",
                MetricType::Counter,
            ),
            (
                "blks_hit",
                "Number of times disk blocks were found already in the buffer cache.",
                MetricType::Counter,
            ),
            (
                "deadlocks",
                "Number of deadlocks detected in this database.",
                MetricType::Counter,
            ),
            (
                "temp_bytes",
                "Total amount of data written to temporary files by queries in this database.",
                MetricType::Counter,
            ),
            (
                "tup_returned",
                "Number of rows returned by queries in this database.",
                MetricType::Counter,
            ),
            (
                "tup_fetched",
                "Number of rows fetched by queries in this database.",
                MetricType::Counter,
            ),
            (
                "tup_inserted",
                "Number of rows inserted by queries in this database.",
                MetricType::Counter,
            ),
            (
                "tup_updated",
                "Number of rows updated by queries in this database.",
                MetricType::Counter,
            ),
            (
                "tup_deleted",
                "Number of rows deleted by queries in this database.",
                MetricType::Counter,
            ),
            (
                "conflicts",
                "Number of queries canceled due to conflicts with recovery in this database.",
                MetricType::Counter,
            ),
            (
                "temp_files",
                "Number of temporary files created by queries in this database.",
                MetricType::Counter,
            ),
        ];
        let mut fams: Vec<Family> = defs
            .iter()
            .map(|(n, h, k)| Family::new(format!("pg_stat_database_{n}"), *h, *k))
            .collect();
        for row in &rows {
            let datid: String = row.try_get(0).map_err(|e| e.to_string())?;
            let datname: String = row.try_get(1).map_err(|e| e.to_string())?;
            for (i, f) in fams.iter_mut().enumerate() {
                let v: Option<f64> = row.try_get(i + 2).map_err(|e| e.to_string())?;
                f.push(
                    &[
                        ("datid", datid.as_str()),
                        ("datname", datname.as_str()),
                        ("server", s),
                    ],
                    v.unwrap_or(0.0),
                );
            }
        }
        out.extend(fams);

        let rows = self
            .query(
                client,
                "SELECT datname, pg_database_size(datname)::float8 FROM pg_database \
                 WHERE datallowconn AND NOT datistemplate",
            )
            .await?;
        let mut size = Family::gauge("pg_database_size_bytes", "Disk space used by the database");
        for row in &rows {
            let (d, v): (String, f64) = (
                row.try_get(0).map_err(|e| e.to_string())?,
                row.try_get(1).map_err(|e| e.to_string())?,
            );
            size.push(&[("datname", d.as_str()), ("server", s)], v);
        }
        out.push(size);

        let rows = self
            .query(
                client,
                "SELECT setting::float8 FROM pg_settings WHERE name = 'max_connections'",
            )
            .await?;
        if let Some(row) = rows.first() {
            let v: f64 = row.try_get(0).map_err(|e| e.to_string())?;
            let mut f = Family::gauge(
                "pg_settings_max_connections",
                "Sets the maximum number of concurrent connections.",
            );
            f.push(&[("server", s)], v);
            out.push(f);
        }

        let rows = self
            .query(
                client,
                "SELECT pg_database.datname, tmp.state, COALESCE(count, 0)::float8, \
                 COALESCE(max_tx_duration, 0)::float8 \
                 FROM (VALUES ('active'), ('idle'), ('idle in transaction'), \
                 ('idle in transaction (aborted)'), ('fastpath function call'), ('disabled')) AS tmp(state) \
                 CROSS JOIN pg_database \
                 LEFT JOIN (SELECT datname, state, count(*) AS count, \
                 MAX(EXTRACT(EPOCH FROM now() - xact_start))::float8 AS max_tx_duration \
                 FROM pg_stat_activity GROUP BY datname, state) AS tmp2 \
                 ON tmp.state = tmp2.state AND pg_database.datname = tmp2.datname \
                 WHERE NOT pg_database.datistemplate",
            )
            .await?;
        let mut count = Family::gauge(
            "pg_stat_activity_count",
            "number of connections in this state",
        );
        let mut maxtx = Family::gauge(
            "pg_stat_activity_max_tx_duration",
            "max duration in seconds any active transaction has been running",
        );
        for row in &rows {
            let d: String = row.try_get(0).map_err(|e| e.to_string())?;
            let st: String = row.try_get(1).map_err(|e| e.to_string())?;
            let c: f64 = row.try_get(2).map_err(|e| e.to_string())?;
            let m: f64 = row.try_get(3).map_err(|e| e.to_string())?;
            let labels = [
                ("datname", d.as_str()),
                ("server", s),
                ("state", st.as_str()),
            ];
            count.push(&labels, c);
            maxtx.push(&labels, m);
        }
        out.push(count);
        out.push(maxtx);

        let rows = self
            .query(
                client,
                "SELECT pg_database.datname, tmp.mode, COALESCE(count, 0)::float8 \
                 FROM (VALUES ('accesssharelock'), ('rowsharelock'), ('rowexclusivelock'), \
                 ('shareupdateexclusivelock'), ('sharelock'), ('sharerowexclusivelock'), \
                 ('exclusivelock'), ('accessexclusivelock'), ('sireadlock')) AS tmp(mode) \
                 CROSS JOIN pg_database \
                 LEFT JOIN (SELECT database, lower(mode) AS mode, count(*) AS count FROM pg_locks \
                 WHERE database IS NOT NULL GROUP BY database, lower(mode)) AS tmp2 \
                 ON tmp.mode = tmp2.mode AND pg_database.oid = tmp2.database \
                 WHERE NOT pg_database.datistemplate",
            )
            .await?;
        let mut locks = Family::gauge("pg_locks_count", "Number of locks");
        for row in &rows {
            let d: String = row.try_get(0).map_err(|e| e.to_string())?;
            let m: String = row.try_get(1).map_err(|e| e.to_string())?;
            let c: f64 = row.try_get(2).map_err(|e| e.to_string())?;
            locks.push(
                &[("datname", d.as_str()), ("mode", m.as_str()), ("server", s)],
                c,
            );
        }
        out.push(locks);

        let rows = self
            .query(
                client,
                "SELECT CASE WHEN NOT pg_is_in_recovery() THEN 0 \
                 ELSE GREATEST(0, EXTRACT(EPOCH FROM (now() - pg_last_xact_replay_timestamp()))) END::float8, \
                 CASE WHEN pg_is_in_recovery() THEN 1 ELSE 0 END::float8",
            )
            .await?;
        if let Some(row) = rows.first() {
            let lag: Option<f64> = row.try_get(0).map_err(|e| e.to_string())?;
            let replica: f64 = row.try_get(1).map_err(|e| e.to_string())?;
            let mut f = Family::gauge(
                "pg_replication_lag_seconds",
                "Replication lag behind master in seconds",
            );
            f.push(&[("server", s)], lag.unwrap_or(0.0));
            out.push(f);
            let mut f = Family::gauge(
                "pg_replication_is_replica",
                "Indicates if the server is a replica",
            );
            f.push(&[("server", s)], replica);
            out.push(f);
        }

        if self.cfg.stat_statements.enabled {
            self.stat_statements(client, out).await;
        }
        Ok(())
    }

    /// Top-N statements by total execution time. Failures here (extension
    /// missing, no permission) are logged and do not mark the server down.
    async fn stat_statements(&mut self, client: &Client, out: &mut Vec<Family>) {
        if self.has_stat_statements.is_none() {
            let exists = self
                .query(
                    client,
                    "SELECT 1 FROM pg_extension WHERE extname = 'pg_stat_statements'",
                )
                .await
                .map(|r| !r.is_empty())
                .unwrap_or(false);
            if !exists {
                tracing::warn!(server = %self.server, "stat_statements enabled but the pg_stat_statements extension is not installed; skipping");
            }
            self.has_stat_statements = Some(exists);
        }
        if self.has_stat_statements != Some(true) {
            return;
        }
        let sql = format!(
            "SELECT pg_get_userbyid(s.userid)::text, d.datname::text, s.queryid::text, \
             sum(s.calls)::float8, (sum(s.total_exec_time) / 1000.0)::float8, sum(s.rows)::float8 \
             FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid \
             WHERE s.queryid IS NOT NULL \
             GROUP BY 1, 2, 3 ORDER BY 5 DESC LIMIT {}",
            self.cfg.stat_statements.top_n
        );
        let rows = match self.query(client, &sql).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(server = %self.server, error = %e, "pg_stat_statements query failed");
                return;
            }
        };
        let mut calls =
            Family::counter("pg_stat_statements_calls_total", "Number of times executed");
        let mut secs = Family::counter(
            "pg_stat_statements_seconds_total",
            "Total time spent in the statement, in seconds",
        );
        let mut rws = Family::counter(
            "pg_stat_statements_rows_total",
            "Total number of rows retrieved or affected by the statement",
        );
        for row in &rows {
            let get =
                |i: usize| -> Option<String> { row.try_get::<_, Option<String>>(i).ok().flatten() };
            let (Some(user), Some(db), Some(qid)) = (get(0), get(1), get(2)) else {
                continue;
            };
            let f = |i: usize| {
                row.try_get::<_, Option<f64>>(i)
                    .ok()
                    .flatten()
                    .unwrap_or(0.0)
            };
            let labels = [
                ("datname", db.as_str()),
                ("queryid", qid.as_str()),
                ("server", self.server.as_str()),
                ("user", user.as_str()),
            ];
            calls.push(&labels, f(3));
            secs.push(&labels, f(4));
            rws.push(&labels, f(5));
        }
        out.extend([calls, secs, rws]);
    }

    fn report(&mut self, up: bool, why: Option<&str>) {
        if self.was_up != Some(up) {
            match (up, why) {
                (true, _) => tracing::info!(server = %self.server, "postgres reachable"),
                (false, Some(e)) => {
                    tracing::warn!(server = %self.server, error = %e, "postgres unreachable; pg_up=0")
                }
                (false, None) => {
                    tracing::warn!(server = %self.server, "postgres unreachable; pg_up=0")
                }
            }
            self.was_up = Some(up);
        }
    }
}

impl Collector for PostgresCollector {
    fn name(&self) -> String {
        format!("postgres/{}", self.server)
    }

    async fn collect(&mut self) -> Vec<Family> {
        let mut out = Vec::new();
        let client = match self.client.take() {
            Some(c) if !c.is_closed() => Ok(c),
            _ => self.connect().await,
        };
        let up = match client {
            Err(e) => {
                self.report(false, Some(&e));
                false
            }
            Ok(client) => {
                let mut fams = Vec::new();
                match self.collect_all(&client, &mut fams).await {
                    Ok(()) => {
                        out = fams;
                        self.client = Some(client);
                        self.report(true, None);
                        true
                    }
                    Err(e) => {
                        // Drop the connection: a timed-out query leaves it
                        // in an unknown state.
                        self.report(false, Some(&e));
                        false
                    }
                }
            }
        };
        let mut f = Family::gauge(
            "pg_up",
            "Whether the last scrape of metrics from PostgreSQL was able to connect to the server (1 for yes, 0 for no).",
        );
        f.push::<&str, &str>(&[], if up { 1.0 } else { 0.0 });
        out.push(f);
        for f in &mut out {
            crate::family::add_labels(std::slice::from_mut(f), &self.cfg.labels);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_label_from_both_dsn_forms() {
        assert_eq!(
            server_label("host=127.0.0.1 port=5433 user=postgres"),
            "127.0.0.1:5433"
        );
        assert_eq!(
            server_label("postgresql://postgres@db.example:6000/test"),
            "db.example:6000"
        );
        assert_eq!(server_label("user=postgres host=10.0.0.1"), "10.0.0.1:5432");
    }

    #[tokio::test]
    async fn unreachable_server_gives_pg_up_zero_quickly() {
        // A port nothing listens on: bind, note it, release it.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        let mut cfg = PostgresConfig::from_dsn(&format!(
            "host=127.0.0.1 port={port} user=postgres connect_timeout=1"
        ));
        cfg.connect_timeout = Duration::from_secs(1).into();
        let mut c = PostgresCollector::new(&cfg);
        let start = std::time::Instant::now();
        let fams = c.collect().await;
        assert!(start.elapsed() < Duration::from_secs(3));
        let up = fams
            .iter()
            .find(|f| f.name == "pg_up")
            .expect("pg_up present");
        assert_eq!(up.series[0].value, 0.0);
    }
}
