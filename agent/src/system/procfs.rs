//! Pure parsers for the `/proc` files the system collector reads. Each takes
//! the file's text and returns plain values, so they are tested without a
//! kernel and never panic on odd input (lines that do not parse are
//! skipped).

/// Clock ticks per second of `/proc/stat` times. Linux fixes USER_HZ at 100
/// on every architecture the agent targets (node_exporter assumes the same).
pub const USER_HZ: f64 = 100.0;

/// node_exporter's CPU modes, in `/proc/stat` column order.
pub const CPU_MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// What `/proc/stat` holds.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Stat {
    /// Per CPU: its index and seconds per mode (in [`CPU_MODES`] order).
    pub cpus: Vec<(u32, [f64; 8])>,
    pub boot_time: Option<f64>,
    pub context_switches: Option<f64>,
    pub interrupts: Option<f64>,
    pub forks: Option<f64>,
    pub procs_running: Option<f64>,
    pub procs_blocked: Option<f64>,
}

pub fn parse_stat(text: &str) -> Stat {
    let mut st = Stat::default();
    for line in text.lines() {
        let mut parts = line.split_ascii_whitespace();
        let Some(key) = parts.next() else { continue };
        let first = || {
            line.split_ascii_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
        };
        match key {
            "btime" => st.boot_time = first(),
            "ctxt" => st.context_switches = first(),
            "intr" => st.interrupts = first(),
            "processes" => st.forks = first(),
            "procs_running" => st.procs_running = first(),
            "procs_blocked" => st.procs_blocked = first(),
            k if k.starts_with("cpu") && k.len() > 3 => {
                let Ok(idx) = k[3..].parse::<u32>() else {
                    continue;
                };
                let mut modes = [0.0; 8];
                for (slot, v) in modes.iter_mut().zip(parts.by_ref()) {
                    *slot = v.parse::<f64>().unwrap_or(0.0) / USER_HZ;
                }
                st.cpus.push((idx, modes));
            }
            _ => {}
        }
    }
    st
}

/// `/proc/loadavg`: the 1, 5 and 15 minute load averages.
pub fn parse_loadavg(text: &str) -> Option<[f64; 3]> {
    let mut it = text.split_ascii_whitespace().map(|v| v.parse::<f64>().ok());
    Some([it.next()??, it.next()??, it.next()??])
}

/// `/proc/meminfo` as node_exporter names it: `Active(anon)` becomes
/// `Active_anon`, and fields in kB get a `_bytes` suffix and are scaled.
pub fn parse_meminfo(text: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for line in text.lines() {
        let mut parts = line.split_ascii_whitespace();
        let (Some(key), Some(value)) = (parts.next(), parts.next()) else {
            continue;
        };
        let Ok(mut value) = value.parse::<f64>() else {
            continue;
        };
        let mut name: String = key
            .trim_end_matches(':')
            .chars()
            .map(|c| if c == '(' { '_' } else { c })
            .filter(|c| *c != ')')
            .collect();
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || name.is_empty() {
            continue;
        }
        if parts.next() == Some("kB") {
            value *= 1024.0;
            name.push_str("_bytes");
        }
        out.push((name, value));
    }
    out
}

/// One `/proc/diskstats` line, in node_exporter's units.
#[derive(Debug, Clone, PartialEq)]
pub struct DiskStats {
    pub device: String,
    pub reads_completed: f64,
    pub reads_merged: f64,
    pub read_bytes: f64,
    pub read_time_seconds: f64,
    pub writes_completed: f64,
    pub writes_merged: f64,
    pub written_bytes: f64,
    pub write_time_seconds: f64,
    pub io_now: f64,
    pub io_time_seconds: f64,
    pub io_time_weighted_seconds: f64,
}

/// node_exporter 1.5's default device exclusion: partitions and virtual
/// devices (`ram0`, `loop3`, `sda1`, `nvme0n1p2`, …).
pub fn disk_ignored(device: &str) -> bool {
    let strip_digits = |s: &str| -> Option<usize> {
        let n = s.len() - s.trim_end_matches(|c: char| c.is_ascii_digit()).len();
        (n > 0).then_some(n)
    };
    let Some(nd) = strip_digits(device) else {
        return false;
    };
    let stem = &device[..device.len() - nd];
    if matches!(stem, "ram" | "loop" | "fd") {
        return true;
    }
    // (h|s|v|xv)d[a-z] followed by digits.
    for prefix in ["hd", "sd", "vd", "xvd"] {
        if let Some(rest) = stem.strip_prefix(prefix)
            && rest.len() == 1
            && rest.chars().all(|c| c.is_ascii_lowercase())
        {
            return true;
        }
    }
    // nvme\d+n\d+p followed by digits.
    if let Some(rest) = stem.strip_prefix("nvme").and_then(|r| r.strip_suffix('p'))
        && let Some((a, b)) = rest.split_once('n')
    {
        let digits = |s: &str| !s.is_empty() && s.chars().all(|c| c.is_ascii_digit());
        return digits(a) && digits(b);
    }
    false
}

pub fn parse_diskstats(text: &str) -> Vec<DiskStats> {
    const SECTOR: f64 = 512.0;
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 14 {
            continue;
        }
        let n = |i: usize| f[i].parse::<f64>().unwrap_or(0.0);
        out.push(DiskStats {
            device: f[2].to_string(),
            reads_completed: n(3),
            reads_merged: n(4),
            read_bytes: n(5) * SECTOR,
            read_time_seconds: n(6) / 1000.0,
            writes_completed: n(7),
            writes_merged: n(8),
            written_bytes: n(9) * SECTOR,
            write_time_seconds: n(10) / 1000.0,
            io_now: n(11),
            io_time_seconds: n(12) / 1000.0,
            io_time_weighted_seconds: n(13) / 1000.0,
        });
    }
    out
}

/// The counters of `/proc/net/dev`, receive then transmit, as named by
/// node_exporter (`node_network_<direction>_<name>_total`).
pub const NET_RECEIVE: [&str; 8] = [
    "bytes",
    "packets",
    "errs",
    "drop",
    "fifo",
    "frame",
    "compressed",
    "multicast",
];
pub const NET_TRANSMIT: [&str; 8] = [
    "bytes",
    "packets",
    "errs",
    "drop",
    "fifo",
    "colls",
    "carrier",
    "compressed",
];

/// `/proc/net/dev`: per interface, 8 receive and 8 transmit counters.
pub fn parse_net_dev(text: &str) -> Vec<(String, [f64; 16])> {
    let mut out = Vec::new();
    for line in text.lines().skip(2) {
        let Some((name, rest)) = line.split_once(':') else {
            continue;
        };
        let mut vals = [0.0; 16];
        let mut n = 0;
        for (slot, v) in vals.iter_mut().zip(rest.split_ascii_whitespace()) {
            *slot = v.parse::<f64>().unwrap_or(0.0);
            n += 1;
        }
        if n == 16 {
            out.push((name.trim().to_string(), vals));
        }
    }
    out
}

/// One `/proc/pressure/<resource>` file: the `some` and `full` totals in
/// seconds (the kernel reports microseconds).
pub fn parse_pressure(text: &str) -> (Option<f64>, Option<f64>) {
    let mut some = None;
    let mut full = None;
    for line in text.lines() {
        let mut parts = line.split_ascii_whitespace();
        let kind = parts.next();
        let total = parts
            .find_map(|p| p.strip_prefix("total="))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|us| us / 1e6);
        match kind {
            Some("some") => some = total,
            Some("full") => full = total,
            _ => {}
        }
    }
    (some, full)
}

/// One line of a mounts file.
#[derive(Debug, Clone, PartialEq)]
pub struct Mount {
    pub device: String,
    pub mount_point: String,
    pub fstype: String,
    pub read_only: bool,
}

/// Undoes the kernel's octal escapes in mounts (`\040` for a space).
fn unescape_mount(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn parse_mounts(text: &str) -> Vec<Mount> {
    let mut out = Vec::new();
    for line in text.lines() {
        let f: Vec<&str> = line.split_ascii_whitespace().collect();
        if f.len() < 4 {
            continue;
        }
        out.push(Mount {
            device: unescape_mount(f[0]),
            mount_point: unescape_mount(f[1]),
            fstype: f[2].to_string(),
            read_only: f[3].split(',').any(|o| o == "ro"),
        });
    }
    out
}

/// node_exporter 1.5's default ignored filesystem types.
pub const DEFAULT_IGNORED_FS_TYPES: &[&str] = &[
    "autofs",
    "binfmt_misc",
    "bpf",
    "cgroup",
    "cgroup2",
    "configfs",
    "debugfs",
    "devpts",
    "devtmpfs",
    "fusectl",
    "hugetlbfs",
    "iso9660",
    "mqueue",
    "nsfs",
    "overlay",
    "proc",
    "procfs",
    "pstore",
    "rpc_pipefs",
    "securityfs",
    "selinuxfs",
    "squashfs",
    "sysfs",
    "tracefs",
];

/// node_exporter 1.5's default ignored mount points: these exact paths and
/// everything below them (`/run/credentials/` and container storage only
/// below).
pub const DEFAULT_IGNORED_MOUNT_POINTS: &[&str] = &[
    "/dev",
    "/proc",
    "/sys",
    "/run/credentials/",
    "/var/lib/docker/",
    "/var/lib/containers/storage/",
];

/// True when `mount_point` is `prefix` or lies under it.
pub fn mount_point_ignored(mount_point: &str, prefixes: &[String]) -> bool {
    prefixes.iter().any(|p| match p.strip_suffix('/') {
        Some(_) => mount_point.len() > p.len() && mount_point.starts_with(p.as_str()),
        None => {
            mount_point == p
                || mount_point
                    .strip_prefix(p.as_str())
                    .is_some_and(|r| r.starts_with('/'))
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn stat_cpu_modes_and_btime() {
        let st = parse_stat(
            "cpu  10 0 5 100 1 0 0 0 0 0\ncpu0 250 1 50 1000 2 3 4 5 0 0\nbtime 1700000000\nctxt 99\nprocs_running 3\n",
        );
        assert_eq!(st.cpus.len(), 1);
        assert_eq!(st.cpus[0].0, 0);
        assert_eq!(st.cpus[0].1[0], 2.5);
        assert_eq!(st.cpus[0].1[7], 0.05);
        assert_eq!(st.boot_time, Some(1.7e9));
        assert_eq!(st.context_switches, Some(99.0));
        assert_eq!(st.procs_running, Some(3.0));
    }

    #[test]
    fn meminfo_names_like_node_exporter() {
        let m = parse_meminfo(
            "MemTotal:       16 kB\nActive(anon):   2 kB\nHugePages_Total:       0\n",
        );
        assert_eq!(
            m,
            vec![
                ("MemTotal_bytes".into(), 16384.0),
                ("Active_anon_bytes".into(), 2048.0),
                ("HugePages_Total".into(), 0.0)
            ]
        );
    }

    #[test]
    fn diskstats_units() {
        let d = parse_diskstats("  253       0 vda 10 1 8 30 20 2 16 40 0 1500 70 0 0 0 0\n");
        assert_eq!(d[0].device, "vda");
        assert_eq!(d[0].read_bytes, 4096.0);
        assert_eq!(d[0].written_bytes, 8192.0);
        assert_eq!(d[0].io_time_seconds, 1.5);
    }

    #[test]
    fn disk_exclusion_matches_node_exporter() {
        for d in ["vda1", "sda2", "loop0", "ram3", "nvme0n1p1", "xvda1"] {
            assert!(disk_ignored(d), "{d} should be ignored");
        }
        for d in ["vda", "sda", "nvme0n1", "zram0", "dm-0", "md0"] {
            assert!(!disk_ignored(d), "{d} should be kept");
        }
    }

    #[test]
    fn net_dev_and_pressure() {
        let n = parse_net_dev("Inter-|\n face |\n  eth0: 100 2 3 0 0 0 0 0 200 4 5 0 0 0 0 0\n");
        assert_eq!(n[0].0, "eth0");
        assert_eq!(n[0].1[0], 100.0);
        assert_eq!(n[0].1[10], 5.0);
        let (some, full) = parse_pressure(
            "some avg10=0.00 avg60=0.00 avg300=0.00 total=2500000\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=1000\n",
        );
        assert_eq!(some, Some(2.5));
        assert_eq!(full, Some(0.001));
    }

    #[test]
    fn mounts_unescape_and_filter() {
        let m = parse_mounts("/dev/sda1 /mnt/my\\040disk ext4 ro,relatime 0 0\n");
        assert_eq!(m[0].mount_point, "/mnt/my disk");
        assert!(m[0].read_only);
        let p: Vec<String> = DEFAULT_IGNORED_MOUNT_POINTS
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(mount_point_ignored("/dev", &p));
        assert!(mount_point_ignored("/dev/shm", &p));
        assert!(mount_point_ignored("/var/lib/docker/overlay2/x", &p));
        assert!(!mount_point_ignored("/var/lib/docker", &p));
        assert!(!mount_point_ignored("/devices", &p));
        assert!(!mount_point_ignored("/", &p));
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in "\\PC*") {
            let _ = parse_stat(&s);
            let _ = parse_loadavg(&s);
            let _ = parse_meminfo(&s);
            let _ = parse_diskstats(&s);
            let _ = parse_net_dev(&s);
            let _ = parse_pressure(&s);
            let _ = parse_mounts(&s);
            let _ = disk_ignored(&s);
        }

        #[test]
        fn meminfo_round_trips(fields in proptest::collection::vec(("[A-Za-z][A-Za-z0-9_]{0,12}", 0u64..1u64 << 40, any::<bool>()), 0..20)) {
            let text: String = fields.iter().map(|(k, v, kb)| format!("{k}: {v}{}\n", if *kb { " kB" } else { "" })).collect();
            let parsed = parse_meminfo(&text);
            prop_assert_eq!(parsed.len(), fields.len());
            for ((k, v, kb), (name, value)) in fields.iter().zip(parsed) {
                if *kb {
                    prop_assert_eq!(name, format!("{k}_bytes"));
                    prop_assert_eq!(value, *v as f64 * 1024.0);
                } else {
                    prop_assert_eq!(name, k.clone());
                    prop_assert_eq!(value, *v as f64);
                }
            }
        }
    }
}
