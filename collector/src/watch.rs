//! Reload on file change: watches the directories holding rule files and
//! the alerting configuration and requests a reload when one of those files
//! changes. The reload itself validates everything first, so a half-written
//! file is rejected and the running set kept.
//!
//! Only the files a reload would read count: the alerting configuration,
//! the rule files loaded last, and new files matching a `--rule-file` glob
//! (as the loader matches them). An editor's swap file, a log written into
//! the rules folder or anything else there causes no reload. Bursts of
//! events from one save are merged by the reload loop's quiet period
//! ([`crate::server`]), so one save is one reload.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::{RecursiveMode, Watcher};
use parking_lot::Mutex;
use tokio::sync::Notify;

use crate::config::Config;

/// The directory part of a glob pattern: everything before the first path
/// component holding a glob character.
fn pattern_dir(pattern: &str) -> PathBuf {
    let mut dir = PathBuf::new();
    for component in Path::new(pattern).components() {
        let text = component.as_os_str().to_string_lossy();
        if text.contains(['*', '?', '[', '{']) {
            return dir;
        }
        dir.push(component);
    }
    // A plain file path: watch its parent, since editors replace files.
    dir.parent().map(Path::to_path_buf).unwrap_or_default()
}

/// `path` made absolute against the working directory, as the watcher
/// reports paths in the (absolute) directories it watches.
fn absolute(path: &Path) -> PathBuf {
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    }
}

/// Which changed paths call for a reload.
pub struct Relevance {
    patterns: Vec<glob::Pattern>,
    alerting_config: Option<PathBuf>,
    /// Rule files as the loader last found them (absolute), so removing or
    /// renaming one away reloads too.
    loaded: Mutex<BTreeSet<PathBuf>>,
    raw_patterns: Vec<String>,
}

impl Relevance {
    pub fn new(cfg: &Config) -> Self {
        let patterns = cfg
            .rules
            .files
            .iter()
            .filter_map(|p| glob::Pattern::new(&absolute(Path::new(p)).to_string_lossy()).ok())
            .collect();
        let r = Relevance {
            patterns,
            alerting_config: cfg.alerting_config.as_deref().map(absolute),
            loaded: Mutex::new(BTreeSet::new()),
            raw_patterns: cfg.rules.files.clone(),
        };
        r.refresh();
        r
    }

    /// Re-reads which files the rule patterns match now.
    fn refresh(&self) {
        let files = vigil_rules::file::expand_patterns(&self.raw_patterns).unwrap_or_default();
        *self.loaded.lock() = files.iter().map(|p| absolute(p)).collect();
    }

    /// Whether a change to `path` calls for a reload.
    pub fn matters(&self, path: &Path) -> bool {
        let path = absolute(path);
        if self.alerting_config.as_deref() == Some(path.as_path()) {
            return true;
        }
        if self.loaded.lock().contains(&path) {
            return true;
        }
        // A new file the loader would pick up (a dangling editor lock
        // symlink matching the glob is not a file, so not loaded).
        path.is_file() && self.patterns.iter().any(|p| p.matches_path(&path))
    }

    /// Whether any path of an event matters; refreshes the loaded set when
    /// one does.
    fn event_matters(&self, paths: &[PathBuf]) -> bool {
        let hit = paths.iter().any(|p| self.matters(p));
        if hit {
            self.refresh();
        }
        hit
    }
}

/// Starts watching; the returned watcher must be kept alive. Failure to
/// watch is logged, not fatal: SIGHUP and `/-/reload` still work.
pub fn watch_files(cfg: &Config, reload: Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    let mut dirs: BTreeSet<PathBuf> = cfg
        .rules
        .files
        .iter()
        .map(|p| absolute(&pattern_dir(p)))
        .collect();
    if let Some(path) = &cfg.alerting_config {
        dirs.insert(absolute(path.parent().unwrap_or(Path::new(""))));
    }
    if dirs.is_empty() {
        return None;
    }
    let relevance = Relevance::new(cfg);
    let handler = move |event: notify::Result<notify::Event>| match event {
        Ok(e) if e.kind.is_create() || e.kind.is_modify() || e.kind.is_remove() => {
            if relevance.event_matters(&e.paths) {
                reload.notify_one();
            } else {
                tracing::trace!(paths = ?e.paths, "change in a watched folder ignored: not a rule or alerting file");
            }
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "file watch error"),
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch rule files; reload with SIGHUP or /-/reload");
            return None;
        }
    };
    for dir in dirs {
        if let Err(e) = watcher.watch(&dir, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %dir.display(), error = %e, "cannot watch directory");
        }
    }
    Some(watcher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directory_of_patterns() {
        assert_eq!(
            pattern_dir("/etc/vigil/rules/*.yml"),
            PathBuf::from("/etc/vigil/rules")
        );
        assert_eq!(
            pattern_dir("rules/system.rules.yml"),
            PathBuf::from("rules")
        );
        assert_eq!(pattern_dir("/a/*/b.yml"), PathBuf::from("/a"));
    }

    #[test]
    fn only_rule_and_alerting_files_matter() {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let rules = d.join("a.rules.yml");
        std::fs::write(&rules, "groups: []\n").expect("write");
        let am = d.join("alertmanager.yml");
        std::fs::write(&am, "route: {}\n").expect("write");
        let mut cfg = Config::default();
        cfg.rules.files = vec![d.join("*.rules.yml").to_string_lossy().into_owned()];
        cfg.alerting_config = Some(am.clone());
        let r = Relevance::new(&cfg);
        assert!(r.matters(&rules));
        assert!(r.matters(&am));
        for junk in [
            ".a.rules.yml.swp",
            "a.rules.yml~",
            "4913",
            "vigil.log",
            "notes.txt",
        ] {
            let p = d.join(junk);
            std::fs::write(&p, "x").expect("write");
            assert!(!r.matters(&p), "{junk}");
        }
        // A new file matching the glob matters; so does a loaded one that
        // is removed.
        let new = d.join("b.rules.yml");
        std::fs::write(&new, "groups: []\n").expect("write");
        assert!(r.matters(&new));
        std::fs::remove_file(&rules).expect("remove");
        assert!(r.matters(&rules));
        // A removed file that was never loaded does not.
        std::fs::remove_file(d.join("vigil.log")).expect("remove");
        assert!(!r.matters(&d.join("vigil.log")));
    }
}
