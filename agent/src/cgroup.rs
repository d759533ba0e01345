//! Containers and systemd services as the kernel's cgroups see them, under
//! cAdvisor's metric names so Kubernetes-style dashboards and rules work:
//! `container_cpu_usage_seconds_total`, `container_cpu_user_seconds_total`,
//! `container_cpu_system_seconds_total`, `container_memory_usage_bytes`,
//! `container_memory_working_set_bytes`, `container_memory_rss`,
//! `container_memory_cache`, `container_spec_memory_limit_bytes`,
//! `container_spec_cpu_quota`, `container_spec_cpu_period` and
//! `container_oom_events_total`, each labelled with the cgroup path as
//! `id` (`/system.slice/nginx.service`, `/` for the root) as cAdvisor does.
//!
//! Both hierarchies are read: cgroup v2 (`cgroup.controllers` at the
//! root: `cpu.stat`, `memory.current`, `memory.max`, `memory.stat`,
//! `memory.events`, `cpu.max`) and v1 (the `memory`, `cpuacct` and `cpu`
//! controllers' files). The working set is usage minus inactive file
//! pages, cAdvisor's definition (what the OOM killer weighs). An unlimited
//! memory limit is reported as 0, as cAdvisor does.
//!
//! The walk is bounded by depth and count; cgroups past the bound are
//! counted in `vigil_agent_cgroups_skipped` and logged once, never read.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::Collector;
use crate::family::Family;

/// v1 reports "no limit" as the largest page-aligned i64.
const V1_UNLIMITED: u64 = 0x7FFF_FFFF_FFFF_F000;

/// cgroup settings of the agent.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CgroupConfig {
    /// Read cgroups (containers, systemd services). Default true.
    pub enabled: bool,
    /// Where the cgroup file system is mounted. Default `/sys/fs/cgroup`.
    pub path: PathBuf,
    /// Deepest cgroup reported, counted from the root (`/system.slice` is
    /// 1, `/system.slice/nginx.service` 2). Default 4, deep enough for
    /// Kubernetes pods' containers.
    pub max_depth: usize,
    /// Most cgroups reported per collection. Default 500.
    pub max_cgroups: usize,
}

impl Default for CgroupConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            path: PathBuf::from("/sys/fs/cgroup"),
            max_depth: 4,
            max_cgroups: 500,
        }
    }
}

/// One cgroup's readings; `None` where the kernel does not provide it.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CgroupStats {
    pub id: String,
    pub cpu_usage_seconds: Option<f64>,
    pub cpu_user_seconds: Option<f64>,
    pub cpu_system_seconds: Option<f64>,
    pub memory_usage_bytes: Option<f64>,
    pub memory_working_set_bytes: Option<f64>,
    pub memory_rss_bytes: Option<f64>,
    pub memory_cache_bytes: Option<f64>,
    pub memory_limit_bytes: Option<f64>,
    pub cpu_quota: Option<f64>,
    pub cpu_period: Option<f64>,
    pub oom_events: Option<f64>,
}

/// Which layout the mount point has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Layout {
    /// Unified hierarchy at the root.
    V2(PathBuf),
    /// Per-controller hierarchies (`memory/`, `cpuacct/`, `cpu/`).
    V1 {
        memory: PathBuf,
        cpuacct: Option<PathBuf>,
        cpu: Option<PathBuf>,
    },
}

impl Layout {
    pub fn detect(root: &Path) -> Option<Layout> {
        if root.join("cgroup.controllers").is_file() {
            return Some(Layout::V2(root.to_path_buf()));
        }
        let memory = root.join("memory");
        if !memory.join("memory.usage_in_bytes").is_file() {
            return None;
        }
        let controller = |names: &[&str], probe: &str| {
            names
                .iter()
                .map(|n| root.join(n))
                .find(|p| p.join(probe).is_file())
        };
        Some(Layout::V1 {
            memory,
            cpuacct: controller(&["cpuacct", "cpu,cpuacct", "cpuacct,cpu"], "cpuacct.usage"),
            cpu: controller(&["cpu", "cpu,cpuacct", "cpuacct,cpu"], "cpu.cfs_period_us"),
        })
    }

    /// The directory whose subtree names the cgroups.
    fn walk_root(&self) -> &Path {
        match self {
            Layout::V2(root) => root,
            Layout::V1 { memory, .. } => memory,
        }
    }

    /// Reads one cgroup, `rel` being its path below the root ("" = root).
    pub fn read(&self, rel: &str) -> CgroupStats {
        let id = format!("/{rel}");
        match self {
            Layout::V2(root) => read_v2(&root.join(rel), id),
            Layout::V1 {
                memory,
                cpuacct,
                cpu,
            } => read_v1(
                &memory.join(rel),
                cpuacct.as_ref().map(|p| p.join(rel)),
                cpu.as_ref().map(|p| p.join(rel)),
                id,
            ),
        }
    }

    /// Relative paths of the cgroups to report, root first, breadth-first,
    /// at most `max` of them and no deeper than `max_depth`; returns how
    /// many were left out.
    pub fn cgroups(&self, max_depth: usize, max: usize) -> (Vec<String>, usize) {
        let mut out = vec![String::new()];
        let mut skipped = 0;
        let mut frontier = vec![String::new()];
        for depth in 1..=max_depth {
            let mut next = Vec::new();
            for rel in &frontier {
                let mut children: Vec<String> = match std::fs::read_dir(self.walk_root().join(rel))
                {
                    Ok(d) => d
                        .filter_map(Result::ok)
                        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                        .map(|e| {
                            let name = e.file_name().to_string_lossy().into_owned();
                            if rel.is_empty() {
                                name
                            } else {
                                format!("{rel}/{name}")
                            }
                        })
                        .collect(),
                    Err(_) => continue,
                };
                children.sort();
                for c in children {
                    if out.len() < max {
                        out.push(c.clone());
                        next.push(c);
                    } else {
                        skipped += 1;
                    }
                }
            }
            if depth == max_depth {
                // What lies below the last level is not counted: the depth
                // bound is a setting, not an overflow.
                break;
            }
            frontier = next;
        }
        (out, skipped)
    }
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// `key value` lines (`memory.stat`, `cpu.stat`, `memory.events`).
fn read_keyed(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    text.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        if k == key {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

fn read_v2(dir: &Path, id: String) -> CgroupStats {
    let stat = dir.join("cpu.stat");
    let usec = |k| read_keyed(&stat, k).map(|v| v as f64 / 1e6);
    let usage = read_u64(&dir.join("memory.current"));
    let mstat = dir.join("memory.stat");
    let inactive_file = read_keyed(&mstat, "inactive_file");
    // The root cgroup has neither memory.max nor cpu.max: no limit.
    let limit = match std::fs::read_to_string(dir.join("memory.max")) {
        Ok(t) if t.trim() == "max" => Some(0.0),
        Ok(t) => t.trim().parse::<u64>().ok().map(|v| v as f64),
        Err(_) => None,
    };
    let (quota, period) = match std::fs::read_to_string(dir.join("cpu.max")) {
        Ok(t) => {
            let mut parts = t.split_whitespace();
            let quota = parts.next().and_then(|q| q.parse::<u64>().ok());
            let period = parts.next().and_then(|p| p.parse::<u64>().ok());
            // cAdvisor reports the quota only when one is set.
            (quota.map(|q| q as f64), period.map(|p| p as f64))
        }
        Err(_) => (None, None),
    };
    CgroupStats {
        id,
        cpu_usage_seconds: usec("usage_usec"),
        cpu_user_seconds: usec("user_usec"),
        cpu_system_seconds: usec("system_usec"),
        memory_usage_bytes: usage.map(|u| u as f64),
        memory_working_set_bytes: usage
            .map(|u| u.saturating_sub(inactive_file.unwrap_or(0)) as f64),
        memory_rss_bytes: read_keyed(&mstat, "anon").map(|v| v as f64),
        memory_cache_bytes: read_keyed(&mstat, "file").map(|v| v as f64),
        memory_limit_bytes: limit,
        cpu_quota: quota,
        cpu_period: period,
        oom_events: read_keyed(&dir.join("memory.events"), "oom_kill").map(|v| v as f64),
    }
}

/// The kernel's USER_HZ for `cpuacct.stat`; 100 on every Linux
/// architecture Vigil builds for.
const USER_HZ: f64 = 100.0;

fn read_v1(
    memory: &Path,
    cpuacct: Option<PathBuf>,
    cpu: Option<PathBuf>,
    id: String,
) -> CgroupStats {
    let usage = read_u64(&memory.join("memory.usage_in_bytes"));
    let mstat = memory.join("memory.stat");
    let inactive_file = read_keyed(&mstat, "total_inactive_file");
    let limit = read_u64(&memory.join("memory.limit_in_bytes"))
        .map(|l| if l >= V1_UNLIMITED { 0.0 } else { l as f64 });
    let ticks = |k| {
        cpuacct
            .as_ref()
            .and_then(|d| read_keyed(&d.join("cpuacct.stat"), k))
            .map(|t| t as f64 / USER_HZ)
    };
    let quota = cpu
        .as_ref()
        .and_then(|d| std::fs::read_to_string(d.join("cpu.cfs_quota_us")).ok())
        .and_then(|t| t.trim().parse::<i64>().ok())
        .filter(|q| *q > 0)
        .map(|q| q as f64);
    CgroupStats {
        id,
        cpu_usage_seconds: cpuacct
            .as_ref()
            .and_then(|d| read_u64(&d.join("cpuacct.usage")))
            .map(|ns| ns as f64 / 1e9),
        cpu_user_seconds: ticks("user"),
        cpu_system_seconds: ticks("system"),
        memory_usage_bytes: usage.map(|u| u as f64),
        memory_working_set_bytes: usage
            .map(|u| u.saturating_sub(inactive_file.unwrap_or(0)) as f64),
        memory_rss_bytes: read_keyed(&mstat, "total_rss").map(|v| v as f64),
        memory_cache_bytes: read_keyed(&mstat, "total_cache").map(|v| v as f64),
        memory_limit_bytes: limit,
        cpu_quota: quota,
        cpu_period: cpu
            .as_ref()
            .and_then(|d| read_u64(&d.join("cpu.cfs_period_us")))
            .map(|p| p as f64),
        oom_events: None,
    }
}

/// The families for a set of readings.
pub fn families(stats: &[CgroupStats], skipped: usize) -> Vec<Family> {
    type Get = fn(&CgroupStats) -> Option<f64>;
    let defs: [(&str, &str, bool, Get); 11] = [
        (
            "container_cpu_usage_seconds_total",
            "Cumulative cpu time consumed in seconds.",
            true,
            |s| s.cpu_usage_seconds,
        ),
        (
            "container_cpu_user_seconds_total",
            "Cumulative user cpu time consumed in seconds.",
            true,
            |s| s.cpu_user_seconds,
        ),
        (
            "container_cpu_system_seconds_total",
            "Cumulative system cpu time consumed in seconds.",
            true,
            |s| s.cpu_system_seconds,
        ),
        (
            "container_memory_usage_bytes",
            "Current memory usage in bytes, including all memory regardless of when it was accessed",
            false,
            |s| s.memory_usage_bytes,
        ),
        (
            "container_memory_working_set_bytes",
            "Current working set in bytes.",
            false,
            |s| s.memory_working_set_bytes,
        ),
        (
            "container_memory_rss",
            "Size of RSS in bytes.",
            false,
            |s| s.memory_rss_bytes,
        ),
        (
            "container_memory_cache",
            "Number of bytes of page cache memory.",
            false,
            |s| s.memory_cache_bytes,
        ),
        (
            "container_spec_memory_limit_bytes",
            "Memory limit for the container.",
            false,
            |s| s.memory_limit_bytes,
        ),
        (
            "container_spec_cpu_quota",
            "CPU quota of the container.",
            false,
            |s| s.cpu_quota,
        ),
        (
            "container_spec_cpu_period",
            "CPU period of the container.",
            false,
            |s| s.cpu_period,
        ),
        (
            "container_oom_events_total",
            "Count of out of memory events observed for the container",
            true,
            |s| s.oom_events,
        ),
    ];
    let mut out = Vec::new();
    for (name, help, counter, get) in defs {
        let mut f = if counter {
            Family::counter(name, help)
        } else {
            Family::gauge(name, help)
        };
        for s in stats {
            if let Some(v) = get(s) {
                if name == "container_cpu_usage_seconds_total" {
                    f.push(&[("id", s.id.as_str()), ("cpu", "total")], v);
                } else {
                    f.push(&[("id", s.id.as_str())], v);
                }
            }
        }
        if !f.series.is_empty() {
            out.push(f);
        }
    }
    let mut f = Family::gauge(
        "vigil_agent_cgroups_skipped",
        "cgroups left out of the last collection by cgroups.max_cgroups.",
    );
    f.push::<&str, &str>(&[], skipped as f64);
    out.push(f);
    out
}

/// Reads every cgroup up to the configured bounds.
pub struct CgroupCollector {
    cfg: CgroupConfig,
    layout: Option<Layout>,
    warned_skip: bool,
}

impl CgroupCollector {
    pub fn new(cfg: &CgroupConfig) -> Self {
        let layout = Layout::detect(&cfg.path);
        match &layout {
            Some(Layout::V2(_)) => {
                tracing::info!(path = %cfg.path.display(), "reading cgroup v2 containers and services")
            }
            Some(Layout::V1 { .. }) => {
                tracing::info!(path = %cfg.path.display(), "reading cgroup v1 containers and services")
            }
            None => {
                tracing::warn!(path = %cfg.path.display(), "no cgroup v1 or v2 hierarchy found: container metrics are off")
            }
        }
        Self {
            cfg: cfg.clone(),
            layout,
            warned_skip: false,
        }
    }
}

impl Collector for CgroupCollector {
    fn name(&self) -> String {
        "cgroup".into()
    }

    async fn collect(&mut self) -> Vec<Family> {
        let Some(layout) = self.layout.clone() else {
            return Vec::new();
        };
        let (max_depth, max) = (self.cfg.max_depth, self.cfg.max_cgroups);
        // Thousands of small file reads: off the async threads.
        let read = tokio::task::spawn_blocking(move || {
            let (paths, skipped) = layout.cgroups(max_depth, max);
            let stats: Vec<CgroupStats> = paths.iter().map(|p| layout.read(p)).collect();
            (stats, skipped)
        })
        .await;
        match read {
            Ok((stats, skipped)) => {
                if skipped > 0 && !self.warned_skip {
                    tracing::warn!(
                        skipped,
                        max_cgroups = max,
                        "more cgroups than cgroups.max_cgroups: the rest are not reported"
                    );
                    self.warned_skip = true;
                }
                families(&stats, skipped)
            }
            Err(e) => {
                tracing::error!(error = %e, "reading cgroups failed");
                Vec::new()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, file: &str, text: &str) {
        std::fs::create_dir_all(dir).expect("mkdir");
        std::fs::write(dir.join(file), text).expect("write");
    }

    /// A small v2 tree as the kernel lays it out: the root (no limits
    /// files), a slice, a service with limits and an OOM kill.
    #[test]
    fn reads_a_v2_tree_as_cadvisor_names_it() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        write(root, "cgroup.controllers", "cpu memory io\n");
        write(
            root,
            "cpu.stat",
            "usage_usec 5000000\nuser_usec 3000000\nsystem_usec 2000000\n",
        );
        write(
            root,
            "memory.stat",
            "anon 100\nfile 400\ninactive_file 300\n",
        );
        let svc = root.join("system.slice/api.service");
        write(
            &root.join("system.slice"),
            "cpu.stat",
            "usage_usec 1\nuser_usec 1\nsystem_usec 0\n",
        );
        write(
            &svc,
            "cpu.stat",
            "usage_usec 2500000\nuser_usec 2000000\nsystem_usec 500000\n",
        );
        write(&svc, "memory.current", "1048576\n");
        write(&svc, "memory.max", "2097152\n");
        write(
            &svc,
            "memory.stat",
            "anon 524288\nfile 262144\ninactive_file 131072\n",
        );
        write(
            &svc,
            "memory.events",
            "low 0\nhigh 0\nmax 4\noom 1\noom_kill 1\n",
        );
        write(&svc, "cpu.max", "50000 100000\n");
        write(&root.join("system.slice"), "memory.max", "max\n");
        write(&root.join("system.slice"), "cpu.max", "max 100000\n");

        let layout = Layout::detect(root).expect("v2 detected");
        assert_eq!(layout, Layout::V2(root.to_path_buf()));
        let (paths, skipped) = layout.cgroups(4, 100);
        assert_eq!(paths, ["", "system.slice", "system.slice/api.service"]);
        assert_eq!(skipped, 0);
        let s = layout.read("system.slice/api.service");
        assert_eq!(s.id, "/system.slice/api.service");
        assert_eq!(s.cpu_usage_seconds, Some(2.5));
        assert_eq!(s.cpu_user_seconds, Some(2.0));
        assert_eq!(s.cpu_system_seconds, Some(0.5));
        assert_eq!(s.memory_usage_bytes, Some(1_048_576.0));
        assert_eq!(s.memory_working_set_bytes, Some(1_048_576.0 - 131_072.0));
        assert_eq!(s.memory_rss_bytes, Some(524_288.0));
        assert_eq!(s.memory_cache_bytes, Some(262_144.0));
        assert_eq!(s.memory_limit_bytes, Some(2_097_152.0));
        assert_eq!(s.cpu_quota, Some(50_000.0));
        assert_eq!(s.cpu_period, Some(100_000.0));
        assert_eq!(s.oom_events, Some(1.0));
        let slice = layout.read("system.slice");
        assert_eq!(slice.memory_limit_bytes, Some(0.0), "max is reported as 0");
        assert_eq!(slice.cpu_quota, None, "no quota when cpu.max is max");
        assert_eq!(slice.cpu_period, Some(100_000.0));
        let top = layout.read("");
        assert_eq!(top.id, "/");
        assert_eq!(top.memory_limit_bytes, None);

        let fams = families(&[s, slice, top], 0);
        let cpu = fams
            .iter()
            .find(|f| f.name == "container_cpu_usage_seconds_total")
            .expect("cpu family");
        assert_eq!(cpu.series.len(), 3);
        assert!(
            cpu.series
                .iter()
                .any(|x| x.labels.get("id") == Some("/system.slice/api.service")
                    && x.labels.get("cpu") == Some("total")
                    && x.value == 2.5)
        );
    }

    #[test]
    fn the_walk_is_bounded_and_counts_what_it_leaves_out() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let root = tmp.path();
        write(root, "cgroup.controllers", "memory\n");
        for i in 0..5 {
            write(
                &root.join(format!("s{i}/deep/deeper")),
                "memory.current",
                "1\n",
            );
        }
        let layout = Layout::detect(root).expect("v2");
        let (paths, skipped) = layout.cgroups(1, 100);
        assert_eq!(paths.len(), 6, "root and the 5 slices, nothing deeper");
        assert_eq!(skipped, 0);
        let (paths, skipped) = layout.cgroups(3, 4);
        assert_eq!(paths.len(), 4);
        // Two slices past the bound, then the `deep` child of each of the
        // three slices kept; below a left-out cgroup nothing is listed.
        assert_eq!(skipped, 5);
    }

    /// This machine's own hierarchy, whichever version it runs: every
    /// reported value agrees with the files (counters read before and
    /// after bracket the collector's reading).
    #[test]
    fn reads_this_machines_hierarchy_like_the_files_say() {
        let root = Path::new("/sys/fs/cgroup");
        let layout = Layout::detect(root).expect("this machine has a cgroup v1 or v2 hierarchy");
        let (paths, _) = layout.cgroups(2, 50);
        assert!(!paths.is_empty());
        for rel in &paths {
            let (usage_file, cpu_file, to_seconds): (PathBuf, PathBuf, f64) = match &layout {
                Layout::V2(r) => (
                    r.join(rel).join("memory.current"),
                    r.join(rel).join("cpu.stat"),
                    1e6,
                ),
                Layout::V1 {
                    memory, cpuacct, ..
                } => (
                    memory.join(rel).join("memory.usage_in_bytes"),
                    cpuacct
                        .clone()
                        .unwrap_or_default()
                        .join(rel)
                        .join("cpuacct.usage"),
                    1e9,
                ),
            };
            let cpu_now = || match &layout {
                Layout::V2(_) => read_keyed(&cpu_file, "usage_usec"),
                Layout::V1 { .. } => read_u64(&cpu_file),
            };
            let before = cpu_now();
            let s = layout.read(rel);
            let after = cpu_now();
            if let (Some(b), Some(a), Some(v)) = (before, after, s.cpu_usage_seconds) {
                assert!(
                    b as f64 / to_seconds <= v && v <= a as f64 / to_seconds,
                    "{rel}: cpu {v} not within [{b}, {a}]"
                );
            }
            assert_eq!(
                s.cpu_usage_seconds.is_some(),
                before.is_some(),
                "{rel}: cpu usage reported exactly when the file has it"
            );
            if let Some(u) = read_u64(&usage_file) {
                let v = s.memory_usage_bytes.expect("memory usage read");
                // Memory moves between reads; the same order of magnitude
                // proves the right file and unit.
                assert!(
                    v > 0.0 && (v / u as f64) > 0.5 && (v / u as f64) < 2.0,
                    "{rel}: {v} vs {u}"
                );
                let ws = s.memory_working_set_bytes.expect("working set");
                assert!(ws <= v, "{rel}: working set {ws} above usage {v}");
            }
        }
    }
}
