//! Reload on file change: watches the directories holding rule files and
//! the alerting configuration and requests a reload when something in them
//! changes. The reload itself validates everything first, so a half-written
//! file is rejected and the running set kept.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use notify::{RecursiveMode, Watcher};
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

/// Starts watching; the returned watcher must be kept alive. Failure to
/// watch is logged, not fatal: SIGHUP and `/-/reload` still work.
pub fn watch_files(cfg: &Config, reload: Arc<Notify>) -> Option<notify::RecommendedWatcher> {
    let mut dirs: BTreeSet<PathBuf> = cfg.rules.files.iter().map(|p| pattern_dir(p)).collect();
    if let Some(path) = &cfg.alerting_config {
        dirs.insert(path.parent().map(Path::to_path_buf).unwrap_or_default());
    }
    if dirs.is_empty() {
        return None;
    }
    let handler = move |event: notify::Result<notify::Event>| match event {
        Ok(e) if e.kind.is_create() || e.kind.is_modify() || e.kind.is_remove() => {
            reload.notify_one()
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
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
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
}
