//! `file_sd_configs`: target groups from JSON (`*.json`) or YAML (`*.yml`,
//! `*.yaml`) files, Prometheus's format:
//!
//! ```json
//! [{"targets": ["10.0.0.1:9100"], "labels": {"env": "prod"}}]
//! ```
//!
//! How changes are seen: every second ([`POLL`]) the `files` globs are
//! expanded and each match is `stat`ed; when the set of files or any file's
//! modification time or size differs from the last read, every file is read
//! again, and so are they every `refresh_interval` whatever happened. (A
//! poll rather than inotify: it also sees files on network and overlay
//! filesystems and ConfigMap symlink swaps, at the cost of one `stat` per
//! file per second.) Each group gets `__meta_filepath`. A file that cannot
//! be read or parsed counts in `prometheus_sd_file_read_errors_total`, is
//! logged, and keeps the groups it last gave; a file that disappears takes
//! its groups with it. Write files atomically (write elsewhere, then
//! rename) so a half-written file is never read.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{FileSdConfig, SdStats, TargetGroup, Update, parse_groups};

/// How often file modification times are checked.
pub const POLL: Duration = Duration::from_secs(1);

/// The label naming the file a group came from.
pub const META_FILEPATH: &str = "__meta_filepath";

/// What identifies a file's content without reading it.
type Stamp = (Option<SystemTime>, u64);

/// The files the globs match now, sorted and without duplicates.
fn list(cfg: &FileSdConfig) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for pattern in &cfg.files {
        match glob::glob(pattern) {
            Ok(paths) => out.extend(paths.filter_map(Result::ok).filter(|p| p.is_file())),
            Err(e) => tracing::warn!(pattern, error = %e, "file_sd_configs: bad glob"),
        }
    }
    out.sort();
    out.dedup();
    out
}

fn stamp(path: &PathBuf) -> Stamp {
    match std::fs::metadata(path) {
        Ok(m) => (m.modified().ok(), m.len()),
        Err(_) => (None, 0),
    }
}

/// Reads one file's groups, each labelled with `__meta_filepath`.
fn read(path: &PathBuf) -> Result<Vec<TargetGroup>, String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let yaml = !path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    let mut groups = parse_groups(&text, yaml)?;
    let name = path.to_string_lossy().into_owned();
    for g in &mut groups {
        g.labels.insert(META_FILEPATH.into(), name.clone());
    }
    Ok(groups)
}

/// The state of one `file_sd_configs` entry between polls.
#[derive(Default)]
pub struct FileDiscovery {
    stamps: BTreeMap<PathBuf, Stamp>,
    /// The last good groups of each file.
    groups: BTreeMap<PathBuf, Vec<TargetGroup>>,
    last_read: Option<Instant>,
}

impl FileDiscovery {
    /// One poll: re-reads the files when they changed or `refresh_interval`
    /// passed, and returns every file's groups when it did.
    pub fn poll(&mut self, cfg: &FileSdConfig, stats: &SdStats) -> Option<Vec<TargetGroup>> {
        let files = list(cfg);
        let stamps: BTreeMap<PathBuf, Stamp> =
            files.iter().map(|p| (p.clone(), stamp(p))).collect();
        let due = self
            .last_read
            .is_none_or(|t| t.elapsed() >= cfg.refresh_interval.0);
        if !due && stamps == self.stamps {
            return None;
        }
        let mut mtimes = stats.file_mtimes.lock();
        for p in self.stamps.keys().filter(|p| !stamps.contains_key(*p)) {
            mtimes.remove(&*p.to_string_lossy());
        }
        drop(mtimes);
        let mut groups = BTreeMap::new();
        for (p, st) in &stamps {
            match read(p) {
                Ok(g) => {
                    let mtime =
                        st.0.and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                            .map_or(0.0, |d| d.as_secs_f64());
                    stats
                        .file_mtimes
                        .lock()
                        .insert(p.to_string_lossy().into_owned(), mtime);
                    groups.insert(p.clone(), g);
                }
                Err(e) => {
                    stats.file_read_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(path = %p.display(), error = %e, "file_sd_configs: error reading file; its last good targets stay");
                    if let Some(old) = self.groups.get(p) {
                        groups.insert(p.clone(), old.clone());
                    }
                }
            }
        }
        self.groups = groups;
        self.stamps = stamps;
        self.last_read = Some(Instant::now());
        Some(self.groups.values().flatten().cloned().collect())
    }
}

/// Runs one `file_sd_configs` entry until `shutdown`, sending its groups to
/// the pool as provider `index` whenever they change.
pub async fn run(
    cfg: FileSdConfig,
    index: usize,
    tx: mpsc::Sender<Update>,
    stats: Arc<SdStats>,
    shutdown: CancellationToken,
) {
    let mut state = FileDiscovery::default();
    let mut last: Option<Vec<TargetGroup>> = None;
    loop {
        if let Some(groups) = state.poll(&cfg, &stats)
            && last.as_ref() != Some(&groups)
        {
            last = Some(groups.clone());
            if tx.send((index, groups)).await.is_err() {
                return;
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(POLL) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(dir: &std::path::Path, pattern: &str) -> FileSdConfig {
        FileSdConfig {
            files: vec![dir.join(pattern).to_string_lossy().into_owned()],
            refresh_interval: Duration::from_secs(3600).into(),
        }
    }

    #[test]
    fn reads_json_and_yaml_and_sees_changes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let stats = SdStats::default();
        let a = dir.path().join("a.json");
        std::fs::write(
            &a,
            r#"[{"targets": ["h1:1", "h2:2"], "labels": {"env": "prod"}}, {"targets": ["h3:3"]}]"#,
        )
        .expect("write");
        std::fs::write(
            dir.path().join("b.yml"),
            "- targets: ['h4:4']\n  labels: {team: db}\n",
        )
        .expect("write");
        let mut sd = FileDiscovery::default();
        let c = FileSdConfig {
            files: vec![
                dir.path().join("*.json").to_string_lossy().into_owned(),
                dir.path().join("*.yml").to_string_lossy().into_owned(),
            ],
            ..cfg(dir.path(), "")
        };
        let groups = sd.poll(&c, &stats).expect("first read");
        assert_eq!(groups.len(), 3);
        assert_eq!(groups[0].targets, ["h1:1", "h2:2"]);
        assert_eq!(groups[0].labels["env"], "prod");
        assert_eq!(
            groups[0].labels[META_FILEPATH],
            a.to_string_lossy().as_ref()
        );
        assert_eq!(groups[2].labels["team"], "db");
        // Nothing changed: no re-read.
        assert!(sd.poll(&c, &stats).is_none());
        // A rewrite (different size) is seen.
        std::fs::write(&a, r#"[{"targets": ["h9:9"]}]"#).expect("write");
        let groups = sd.poll(&c, &stats).expect("changed");
        assert_eq!(groups[0].targets, ["h9:9"]);
        assert_eq!(groups.len(), 2);
        // A broken file keeps its last good groups and counts an error.
        std::fs::write(&a, "[{\"targets\": [").expect("write");
        let groups = sd.poll(&c, &stats).expect("changed");
        assert_eq!(groups[0].targets, ["h9:9"]);
        assert_eq!(stats.file_read_errors.load(Ordering::Relaxed), 1);
        // A removed file takes its groups with it.
        std::fs::remove_file(&a).expect("rm");
        let groups = sd.poll(&c, &stats).expect("changed");
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].targets, ["h4:4"]);
        assert_eq!(stats.file_mtimes.lock().len(), 1);
    }

    #[test]
    fn invalid_label_names_are_read_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("x.yaml"),
            "- targets: [a:1]\n  labels: {bad-name: x}\n",
        )
        .expect("write");
        let stats = SdStats::default();
        let groups = FileDiscovery::default()
            .poll(&cfg(dir.path(), "*.yaml"), &stats)
            .expect("read");
        assert!(groups.is_empty());
        assert_eq!(stats.file_read_errors.load(Ordering::Relaxed), 1);
    }
}
