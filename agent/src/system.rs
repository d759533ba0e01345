//! The host collector: CPU, load, memory, filesystems, disks, network,
//! boot time, uname and PSI, under node_exporter's names, types, labels and
//! units.
//!
//! Everything is read straight from `/proc` (see [`procfs`]) and
//! `statvfs(2)`: one small read per file per cycle is lighter and more exact
//! than a general-purpose library (sysinfo derives per-mode CPU seconds,
//! diskstats and PSI from the same files, and keeps state the agent does not
//! need). `statvfs` runs on a blocking thread under a timeout, and a mount
//! that stalls (a hung NFS server) is skipped from then on, as node_exporter
//! does, so one bad mount never stalls a collection.

pub mod procfs;

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use vigil_wire::remote_write::MetricType;

use crate::Collector;
use crate::config::SystemConfig;
use crate::family::Family;

/// How long one `statvfs` may take before its mount is marked stuck.
const STATFS_TIMEOUT: Duration = Duration::from_secs(5);

/// The host collector.
pub struct SystemCollector {
    proc_path: PathBuf,
    ignored_fs_types: Vec<String>,
    ignored_mount_points: Vec<String>,
    ignored_net: Vec<String>,
    /// Mount points whose `statvfs` did not return in time.
    stuck_mounts: HashSet<String>,
}

impl SystemCollector {
    pub fn new(cfg: &SystemConfig) -> Self {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        Self {
            proc_path: cfg.proc_path.clone(),
            ignored_fs_types: cfg
                .filesystem_ignored_types
                .clone()
                .unwrap_or_else(|| owned(procfs::DEFAULT_IGNORED_FS_TYPES)),
            ignored_mount_points: cfg
                .filesystem_ignored_mount_points
                .clone()
                .unwrap_or_else(|| owned(procfs::DEFAULT_IGNORED_MOUNT_POINTS)),
            ignored_net: cfg.network_ignored_devices.clone(),
            stuck_mounts: HashSet::new(),
        }
    }

    fn read(&self, rel: &str) -> Option<String> {
        let path = self.proc_path.join(rel);
        match std::fs::read_to_string(&path) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::debug!(path = %path.display(), error = %e, "cannot read proc file");
                None
            }
        }
    }

    fn cpu_and_stat(&self, out: &mut Vec<Family>) {
        let Some(text) = self.read("stat") else {
            return;
        };
        let st = procfs::parse_stat(&text);
        let mut cpu = Family::counter(
            "node_cpu_seconds_total",
            "Seconds the CPUs spent in each mode.",
        );
        for (idx, modes) in &st.cpus {
            let idx = idx.to_string();
            for (mode, v) in procfs::CPU_MODES.iter().zip(modes) {
                cpu.push(&[("cpu", idx.as_str()), ("mode", mode)], *v);
            }
        }
        out.push(cpu);
        let singles = [
            (
                st.boot_time,
                "node_boot_time_seconds",
                "Node boot time, in unixtime.",
                MetricType::Gauge,
            ),
            (
                st.context_switches,
                "node_context_switches_total",
                "Total number of context switches.",
                MetricType::Counter,
            ),
            (
                st.interrupts,
                "node_intr_total",
                "Total number of interrupts serviced.",
                MetricType::Counter,
            ),
            (
                st.forks,
                "node_forks_total",
                "Total number of forks.",
                MetricType::Counter,
            ),
            (
                st.procs_running,
                "node_procs_running",
                "Number of processes in runnable state.",
                MetricType::Gauge,
            ),
            (
                st.procs_blocked,
                "node_procs_blocked",
                "Number of processes blocked waiting for I/O to complete.",
                MetricType::Gauge,
            ),
        ];
        for (v, name, help, kind) in singles {
            if let Some(v) = v {
                out.push(Family::single(name, help, kind, v));
            }
        }
    }

    fn load(&self, out: &mut Vec<Family>) {
        let Some(l) = self.read("loadavg").and_then(|t| procfs::parse_loadavg(&t)) else {
            return;
        };
        out.push(Family::single(
            "node_load1",
            "1m load average.",
            MetricType::Gauge,
            l[0],
        ));
        out.push(Family::single(
            "node_load5",
            "5m load average.",
            MetricType::Gauge,
            l[1],
        ));
        out.push(Family::single(
            "node_load15",
            "15m load average.",
            MetricType::Gauge,
            l[2],
        ));
    }

    fn memory(&self, out: &mut Vec<Family>) {
        let Some(text) = self.read("meminfo") else {
            return;
        };
        for (field, v) in procfs::parse_meminfo(&text) {
            let name = format!("node_memory_{field}");
            let help = format!("Memory information field {field}.");
            out.push(Family::single(&name, &help, MetricType::Gauge, v));
        }
    }

    fn disks(&self, out: &mut Vec<Family>) {
        let Some(text) = self.read("diskstats") else {
            return;
        };
        let stats: Vec<_> = procfs::parse_diskstats(&text)
            .into_iter()
            .filter(|d| !procfs::disk_ignored(&d.device))
            .collect();
        type Get = fn(&procfs::DiskStats) -> f64;
        let defs: [(&str, &str, MetricType, Get); 11] = [
            (
                "node_disk_reads_completed_total",
                "The total number of reads completed successfully.",
                MetricType::Counter,
                |d| d.reads_completed,
            ),
            (
                "node_disk_reads_merged_total",
                "The total number of reads merged.",
                MetricType::Counter,
                |d| d.reads_merged,
            ),
            (
                "node_disk_read_bytes_total",
                "The total number of bytes read successfully.",
                MetricType::Counter,
                |d| d.read_bytes,
            ),
            (
                "node_disk_read_time_seconds_total",
                "The total number of seconds spent by all reads.",
                MetricType::Counter,
                |d| d.read_time_seconds,
            ),
            (
                "node_disk_writes_completed_total",
                "The total number of writes completed successfully.",
                MetricType::Counter,
                |d| d.writes_completed,
            ),
            (
                "node_disk_writes_merged_total",
                "The number of writes merged.",
                MetricType::Counter,
                |d| d.writes_merged,
            ),
            (
                "node_disk_written_bytes_total",
                "The total number of bytes written successfully.",
                MetricType::Counter,
                |d| d.written_bytes,
            ),
            (
                "node_disk_write_time_seconds_total",
                "This is the total number of seconds spent by all writes.",
                MetricType::Counter,
                |d| d.write_time_seconds,
            ),
            (
                "node_disk_io_now",
                "The number of I/Os currently in progress.",
                MetricType::Gauge,
                |d| d.io_now,
            ),
            (
                "node_disk_io_time_seconds_total",
                "Total seconds spent doing I/Os.",
                MetricType::Counter,
                |d| d.io_time_seconds,
            ),
            (
                "node_disk_io_time_weighted_seconds_total",
                "The weighted # of seconds spent doing I/Os.",
                MetricType::Counter,
                |d| d.io_time_weighted_seconds,
            ),
        ];
        for (name, help, kind, get) in defs {
            let mut f = Family::new(name, help, kind);
            for d in &stats {
                f.push(&[("device", d.device.as_str())], get(d));
            }
            out.push(f);
        }
    }

    fn network(&self, out: &mut Vec<Family>) {
        let Some(text) = self.read("net/dev") else {
            return;
        };
        let devs: Vec<_> = procfs::parse_net_dev(&text)
            .into_iter()
            .filter(|(d, _)| !self.ignored_net.iter().any(|i| i == d))
            .collect();
        let names = procfs::NET_RECEIVE
            .iter()
            .map(|n| ("receive", n))
            .chain(procfs::NET_TRANSMIT.iter().map(|n| ("transmit", n)));
        for (i, (dir, what)) in names.enumerate() {
            let name = format!("node_network_{dir}_{what}_total");
            let help = format!("Network device statistic {dir}_{what}.");
            let mut f = Family::counter(name, help);
            for (dev, vals) in &devs {
                f.push(&[("device", dev.as_str())], vals[i]);
            }
            out.push(f);
        }
    }

    fn pressure(&self, out: &mut Vec<Family>) {
        // node_exporter 1.5 reports cpu "some" only; io and memory both.
        let defs = [
            (
                "cpu",
                Some((
                    "node_pressure_cpu_waiting_seconds_total",
                    "Total time in seconds that processes have waited for CPU time",
                )),
                None,
            ),
            (
                "io",
                Some((
                    "node_pressure_io_waiting_seconds_total",
                    "Total time in seconds that processes have waited due to IO congestion",
                )),
                Some((
                    "node_pressure_io_stalled_seconds_total",
                    "Total time in seconds no process could make progress due to IO congestion",
                )),
            ),
            (
                "memory",
                Some((
                    "node_pressure_memory_waiting_seconds_total",
                    "Total time in seconds that processes have waited for memory",
                )),
                Some((
                    "node_pressure_memory_stalled_seconds_total",
                    "Total time in seconds no process could make progress due to memory congestion",
                )),
            ),
        ];
        for (res, some_def, full_def) in defs {
            // Kernels without PSI (or with it disabled) have no such file.
            let Ok(text) = std::fs::read_to_string(self.proc_path.join("pressure").join(res))
            else {
                continue;
            };
            let (some, full) = procfs::parse_pressure(&text);
            for (v, def) in [(some, some_def), (full, full_def)] {
                if let (Some(v), Some((name, help))) = (v, def) {
                    out.push(Family::single(name, help, MetricType::Counter, v));
                }
            }
        }
    }

    fn uname(&self, out: &mut Vec<Family>) {
        let k = |f: &str| {
            self.read(&format!("sys/kernel/{f}"))
                .map(|s| s.trim().to_string())
                .unwrap_or_default()
        };
        let mut f = Family::gauge(
            "node_uname_info",
            "Labeled system information as provided by the uname system call.",
        );
        let (sysname, release, version, nodename, domainname) = (
            k("ostype"),
            k("osrelease"),
            k("version"),
            k("hostname"),
            k("domainname"),
        );
        f.push(
            &[
                ("sysname", sysname.as_str()),
                ("release", release.as_str()),
                ("version", version.as_str()),
                ("machine", std::env::consts::ARCH),
                ("nodename", nodename.as_str()),
                ("domainname", domainname.as_str()),
            ],
            1.0,
        );
        out.push(f);
    }

    async fn filesystems(&mut self, out: &mut Vec<Family>) {
        let text = match self.read("1/mounts").or_else(|| self.read("self/mounts")) {
            Some(t) => t,
            None => return,
        };
        let mut seen = HashSet::new();
        let mounts: Vec<_> = procfs::parse_mounts(&text)
            .into_iter()
            .filter(|m| !self.ignored_fs_types.contains(&m.fstype))
            .filter(|m| !procfs::mount_point_ignored(&m.mount_point, &self.ignored_mount_points))
            .filter(|m| seen.insert((m.device.clone(), m.mount_point.clone())))
            .collect();
        let mut size = Family::gauge("node_filesystem_size_bytes", "Filesystem size in bytes.");
        let mut free = Family::gauge(
            "node_filesystem_free_bytes",
            "Filesystem free space in bytes.",
        );
        let mut avail = Family::gauge(
            "node_filesystem_avail_bytes",
            "Filesystem space available to non-root users in bytes.",
        );
        let mut files = Family::gauge("node_filesystem_files", "Filesystem total file nodes.");
        let mut files_free = Family::gauge(
            "node_filesystem_files_free",
            "Filesystem total free file nodes.",
        );
        let mut ro = Family::gauge("node_filesystem_readonly", "Filesystem read-only status.");
        let mut dev_err = Family::gauge(
            "node_filesystem_device_error",
            "Whether an error occurred while getting statistics for the given device.",
        );
        for m in mounts {
            let labels = [
                ("device", m.device.as_str()),
                ("fstype", m.fstype.as_str()),
                ("mountpoint", m.mount_point.as_str()),
            ];
            if self.stuck_mounts.contains(&m.mount_point) {
                dev_err.push(&labels, 1.0);
                continue;
            }
            let mp = m.mount_point.clone();
            let stat = tokio::time::timeout(
                STATFS_TIMEOUT,
                tokio::task::spawn_blocking(move || rustix::fs::statvfs(mp.as_str())),
            )
            .await;
            let st = match stat {
                Ok(Ok(Ok(st))) => st,
                Ok(Ok(Err(e))) => {
                    tracing::debug!(mountpoint = %m.mount_point, error = %e, "statvfs failed");
                    dev_err.push(&labels, 1.0);
                    continue;
                }
                Ok(Err(e)) => {
                    tracing::warn!(mountpoint = %m.mount_point, error = %e, "statvfs task failed");
                    dev_err.push(&labels, 1.0);
                    continue;
                }
                Err(_) => {
                    tracing::warn!(mountpoint = %m.mount_point, "statvfs timed out; skipping this mount from now on");
                    self.stuck_mounts.insert(m.mount_point.clone());
                    dev_err.push(&labels, 1.0);
                    continue;
                }
            };
            let bs = st.f_frsize as f64;
            dev_err.push(&labels, 0.0);
            size.push(&labels, st.f_blocks as f64 * bs);
            free.push(&labels, st.f_bfree as f64 * bs);
            avail.push(&labels, st.f_bavail as f64 * bs);
            files.push(&labels, st.f_files as f64);
            files_free.push(&labels, st.f_ffree as f64);
            ro.push(&labels, if m.read_only { 1.0 } else { 0.0 });
        }
        out.extend([size, free, avail, files, files_free, ro, dev_err]);
    }
}

impl Collector for SystemCollector {
    fn name(&self) -> String {
        "system".into()
    }

    async fn collect(&mut self) -> Vec<Family> {
        let mut out = Vec::with_capacity(96);
        self.cpu_and_stat(&mut out);
        self.load(&mut out);
        self.memory(&mut out);
        self.disks(&mut out);
        self.network(&mut out);
        self.pressure(&mut out);
        self.uname(&mut out);
        self.filesystems(&mut out).await;
        out
    }
}
