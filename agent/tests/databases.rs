//! The PostgreSQL and Redis collectors against real servers: the shared
//! ones on 127.0.0.1:5432 / :6379 (counters move with real traffic), and
//! throwaway instances started from the installed binaries on free ports
//! (stopping them flips `pg_up` / `redis_up` to 0 at the next collection,
//! which returns well within one 15 s interval thanks to the timeouts).

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::free_port;
use vigil_agent::Collector;
use vigil_agent::config::{PostgresConfig, RedisConfig};
use vigil_agent::family::Family;
use vigil_agent::postgres::PostgresCollector;
use vigil_agent::redis_collector::RedisCollector;

fn value(fams: &[Family], name: &str, want: &[(&str, &str)]) -> Option<f64> {
    fams.iter()
        .flat_map(|f| f.series.iter())
        .find(|s| {
            s.labels.metric_name() == Some(name)
                && want.iter().all(|(k, v)| s.labels.get(k) == Some(*v))
        })
        .map(|s| s.value)
}

#[tokio::test]
async fn postgres_counters_follow_real_transactions() {
    let dsn = "host=127.0.0.1 port=5432 user=postgres dbname=test";
    let mut c = PostgresCollector::new(&PostgresConfig::from_dsn(dsn));
    let before = c.collect().await;
    assert_eq!(
        value(&before, "pg_up", &[]),
        Some(1.0),
        "PostgreSQL on 127.0.0.1:5432 must be running"
    );
    assert!(value(&before, "pg_settings_max_connections", &[]).is_some_and(|v| v > 0.0));

    let (client, conn) = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
        .await
        .expect("connect");
    tokio::spawn(conn);
    const COMMITS: usize = 12;
    const ROLLBACKS: usize = 5;
    for _ in 0..COMMITS {
        client
            .batch_execute("BEGIN; SELECT 1; COMMIT;")
            .await
            .expect("commit");
    }
    for _ in 0..ROLLBACKS {
        client
            .batch_execute("BEGIN; SELECT 1; ROLLBACK;")
            .await
            .expect("rollback");
    }
    // The statistics collector publishes with a short delay.
    let db = [("datname", "test")];
    let c0 = value(&before, "pg_stat_database_xact_commit", &db).expect("xact_commit for test");
    let r0 = value(&before, "pg_stat_database_xact_rollback", &db).expect("xact_rollback for test");
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let after = c.collect().await;
        let c1 = value(&after, "pg_stat_database_xact_commit", &db).unwrap_or(0.0);
        let r1 = value(&after, "pg_stat_database_xact_rollback", &db).unwrap_or(0.0);
        if c1 - c0 >= COMMITS as f64 && r1 - r0 >= ROLLBACKS as f64 {
            assert!(
                value(
                    &after,
                    "pg_stat_activity_count",
                    &[("datname", "test"), ("state", "idle")]
                )
                .is_some()
            );
            assert!(value(&after, "pg_database_size_bytes", &db).is_some_and(|v| v > 0.0));
            assert!(
                value(
                    &after,
                    "pg_locks_count",
                    &[("datname", "test"), ("mode", "accesssharelock")]
                )
                .is_some()
            );
            assert_eq!(value(&after, "pg_replication_is_replica", &[]), Some(0.0));
            break;
        }
        assert!(
            Instant::now() < deadline,
            "commits +{} (want {COMMITS}), rollbacks +{} (want {ROLLBACKS})",
            c1 - c0,
            r1 - r0
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// Sends one command over RESP and reads the reply (the test's own client,
/// independent of the agent's).
async fn redis_cmd(addr: &str, args: &[&str]) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr)
        .await
        .expect("redis connect");
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = s.read(&mut buf).await.expect("read");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[tokio::test]
async fn redis_hits_and_misses_follow_real_traffic() {
    let addr = "127.0.0.1:6379";
    let mut c = RedisCollector::new(&RedisConfig::from_url(&format!("redis://{addr}")));
    let before = c.collect().await;
    assert_eq!(
        value(&before, "redis_up", &[]),
        Some(1.0),
        "Redis on 127.0.0.1:6379 must be running"
    );
    let key = format!("vigil:agent-test:{}", free_port());
    assert!(
        redis_cmd(addr, &["SET", &key, "v", "EX", "60"])
            .await
            .starts_with("+OK")
    );
    const HITS: usize = 7;
    const MISSES: usize = 4;
    for _ in 0..HITS {
        redis_cmd(addr, &["GET", &key]).await;
    }
    for i in 0..MISSES {
        redis_cmd(addr, &["GET", &format!("{key}:missing:{i}")]).await;
    }
    let after = c.collect().await;
    let d = |n: &str| value(&after, n, &[]).unwrap_or(0.0) - value(&before, n, &[]).unwrap_or(0.0);
    assert!(
        d("redis_keyspace_hits_total") >= HITS as f64,
        "hits +{}",
        d("redis_keyspace_hits_total")
    );
    assert!(
        d("redis_keyspace_misses_total") >= MISSES as f64,
        "misses +{}",
        d("redis_keyspace_misses_total")
    );
    assert!(d("redis_commands_processed_total") >= (HITS + MISSES + 1) as f64);
    assert!(value(&after, "redis_db_keys", &[("db", "db0")]).is_some_and(|v| v >= 1.0));
    redis_cmd(addr, &["DEL", &key]).await;
}

#[tokio::test]
async fn stopping_a_throwaway_redis_flips_redis_up() {
    let port = free_port();
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server is installed");
    let mut cfg = RedisConfig::from_url(&format!("redis://127.0.0.1:{port}"));
    cfg.timeout = Duration::from_secs(2).into();
    let mut c = RedisCollector::new(&cfg);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let f = c.collect().await;
        if value(&f, "redis_up", &[]) == Some(1.0) {
            break;
        }
        assert!(Instant::now() < deadline, "throwaway redis never came up");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    server.kill().expect("stop redis");
    let _ = server.wait();
    let start = Instant::now();
    let f = c.collect().await;
    assert_eq!(value(&f, "redis_up", &[]), Some(0.0));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "collection took {:?}",
        start.elapsed()
    );
}

fn pg_bin_dir() -> Option<std::path::PathBuf> {
    let mut dirs: Vec<_> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .collect();
    dirs.sort();
    dirs.pop().filter(|d| d.join("initdb").exists())
}

fn as_postgres(bin: &Path, tool: &str, args: &[&str]) -> std::process::ExitStatus {
    Command::new("runuser")
        .args(["-u", "postgres", "--"])
        .arg(bin.join(tool))
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("runuser")
}

#[tokio::test]
async fn stopping_a_throwaway_postgres_flips_pg_up() {
    let bin = pg_bin_dir().expect("PostgreSQL server binaries under /usr/lib/postgresql/*/bin");
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("pgdata");
    // The temp dir belongs to root; let the postgres user create its data dir.
    let _ = Command::new("chmod").arg("777").arg(dir.path()).status();
    let d = data.to_str().expect("utf-8 path");
    assert!(
        as_postgres(&bin, "initdb", &["-D", d, "-A", "trust", "-U", "postgres"]).success(),
        "initdb failed"
    );
    let port = free_port();
    let opts = format!(
        "-p {port} -k {} -c listen_addresses=127.0.0.1",
        dir.path().display()
    );
    assert!(
        as_postgres(
            &bin,
            "pg_ctl",
            &["-D", d, "-o", &opts, "-w", "-t", "30", "start"]
        )
        .success(),
        "pg_ctl start failed"
    );

    let mut cfg = PostgresConfig::from_dsn(&format!(
        "host=127.0.0.1 port={port} user=postgres dbname=postgres"
    ));
    cfg.connect_timeout = Duration::from_secs(2).into();
    cfg.query_timeout = Duration::from_secs(2).into();
    let mut c = PostgresCollector::new(&cfg);
    let f = c.collect().await;
    let up = value(&f, "pg_up", &[]);
    if up != Some(1.0) {
        as_postgres(&bin, "pg_ctl", &["-D", d, "-m", "immediate", "stop"]);
        panic!("throwaway PostgreSQL not reachable: pg_up={up:?}");
    }
    assert!(
        as_postgres(&bin, "pg_ctl", &["-D", d, "-m", "fast", "-w", "stop"]).success(),
        "pg_ctl stop failed"
    );
    let start = Instant::now();
    let f = c.collect().await;
    assert_eq!(value(&f, "pg_up", &[]), Some(0.0));
    assert!(
        start.elapsed() < Duration::from_secs(5),
        "collection took {:?}",
        start.elapsed()
    );
    // Only pg_up is reported for a server that is down.
    assert_eq!(
        f.iter().map(|f| f.name.as_str()).collect::<Vec<_>>(),
        ["pg_up"]
    );
}
