//! Evaluation-cycle benchmark: 1,000 alerting rules over 10,000 series held
//! in `MemStorage`. Prints the time of each full cycle (all groups, all
//! rules, including template expansion and writing `ALERTS` /
//! `ALERTS_FOR_STATE`) and the process's memory.
//!
//! The same cycles run twice: over plain `MemStorage` (which scans every
//! series for every selector, so its cost grows with rules × series) and
//! over the same data behind a small inverted index (label pair → series),
//! as the collector's TSDB has, which isolates the rule engine's own cost.
//!
//! Run: `cargo run --release -p vigil-rules --example bench [RULES] [SERIES] [CYCLES]`

use std::sync::Arc;
use std::time::Instant;

use std::collections::{BTreeMap, HashMap};

use parking_lot::RwLock;
use vigil_promql::{Engine, EngineOptions, MemStorage, Queryable, SeriesData, StorageError};
use vigil_rules::{
    AlertSender, ManagerOptions, OutgoingAlert, RuleManager, RuleSet, SampleAppender, parse_rules,
};
use vigil_wire::{Labels, Matcher, Sample};
use vigil_wire::{MatchOp, matches_all};

struct Store0(RwLock<MemStorage>);

impl Queryable for Store0 {
    fn select(&self, m: &[Matcher], start: i64, end: i64) -> Result<Vec<SeriesData>, StorageError> {
        self.0.read().select(m, start, end)
    }
}

impl SampleAppender for Store0 {
    fn append(&self, samples: Vec<(Labels, Sample)>) -> Result<(), String> {
        let mut s = self.0.write();
        for (l, x) in samples {
            s.add(l, vec![x]);
        }
        Ok(())
    }
}

/// `MemStorage`'s data behind an inverted index on label pairs, so a
/// selector with an equality matcher only looks at its postings.
#[derive(Default)]
struct Indexed {
    inner: RwLock<IndexedInner>,
}

#[derive(Default)]
struct IndexedInner {
    series: Vec<(Labels, Vec<Sample>)>,
    by_labels: BTreeMap<Labels, usize>,
    postings: HashMap<(String, String), Vec<usize>>,
}

impl Queryable for Indexed {
    fn select(&self, m: &[Matcher], start: i64, end: i64) -> Result<Vec<SeriesData>, StorageError> {
        let inner = self.inner.read();
        // The shortest posting list among the equality matchers.
        let candidates: Option<&Vec<usize>> = m
            .iter()
            .filter(|x| x.op == MatchOp::Equal && !x.value.is_empty())
            .map(|x| inner.postings.get(&(x.name.clone(), x.value.clone())))
            .min_by_key(|p| p.map_or(0, |v| v.len()))
            .map(|p| p.unwrap_or(&EMPTY));
        let ids: Box<dyn Iterator<Item = usize>> = match candidates {
            Some(ids) => Box::new(ids.iter().copied()),
            None => Box::new(0..inner.series.len()),
        };
        let mut out = Vec::new();
        for id in ids {
            let (labels, samples) = &inner.series[id];
            if !matches_all(m, labels) {
                continue;
            }
            let lo = samples.partition_point(|s| s.timestamp_ms < start);
            let hi = samples.partition_point(|s| s.timestamp_ms <= end);
            if lo < hi {
                out.push(SeriesData {
                    labels: labels.clone(),
                    samples: samples[lo..hi].to_vec(),
                });
            }
        }
        Ok(out)
    }
}

static EMPTY: Vec<usize> = Vec::new();

impl SampleAppender for Indexed {
    fn append(&self, samples: Vec<(Labels, Sample)>) -> Result<(), String> {
        let mut inner = self.inner.write();
        for (l, x) in samples {
            let id = match inner.by_labels.get(&l) {
                Some(id) => *id,
                None => {
                    let id = inner.series.len();
                    for p in l.iter() {
                        inner
                            .postings
                            .entry((p.name.clone(), p.value.clone()))
                            .or_default()
                            .push(id);
                    }
                    inner.by_labels.insert(l.clone(), id);
                    inner.series.push((l, Vec::new()));
                    id
                }
            };
            let s = &mut inner.series[id].1;
            match s.last() {
                Some(last) if last.timestamp_ms >= x.timestamp_ms => {
                    s.retain(|y| y.timestamp_ms != x.timestamp_ms);
                    let at = s.partition_point(|y| y.timestamp_ms < x.timestamp_ms);
                    s.insert(at, x);
                }
                _ => s.push(x),
            }
        }
        Ok(())
    }
}

trait Store: Queryable + SampleAppender {}
impl<T: Queryable + SampleAppender> Store for T {}

struct Count(std::sync::atomic::AtomicUsize);

impl AlertSender for Count {
    fn send(&self, alerts: Vec<OutgoingAlert>) {
        self.0
            .fetch_add(alerts.len(), std::sync::atomic::Ordering::Relaxed);
    }
}

/// VmRSS and VmHWM from /proc/self/status, in MiB.
fn memory_mib() -> (f64, f64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map_or(0.0, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn arg(i: usize, default: usize) -> usize {
    std::env::args()
        .nth(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn data(rules: usize, series: usize, history: i64, step_ms: i64) -> Vec<(Labels, Vec<Sample>)> {
    (0..series)
        .map(|i| {
            let labels = Labels::from_pairs([
                ("__name__", "bench_metric".to_string()),
                ("service", format!("s{}", i % rules)),
                ("instance", format!("host-{i}:9100")),
            ]);
            // Deterministic values in [0, 100): about half above the threshold.
            let samples = (0..history)
                .map(|k| Sample::new(k * step_ms, ((i * 37 + k as usize * 11) % 100) as f64))
                .collect();
            (labels, samples)
        })
        .collect()
}

fn rule_set(rules: usize) -> RuleSet {
    let mut yaml = String::from("groups:\n");
    for g in 0..rules.div_ceil(100) {
        yaml.push_str(&format!("  - name: bench-{g}\n    rules:\n"));
        for r in (g * 100)..((g + 1) * 100).min(rules) {
            yaml.push_str(&format!(
                "      - alert: BenchHigh{r}\n        expr: bench_metric{{service=\"s{r}\"}} > 50\n        for: 1m\n        labels: {{severity: warning}}\n        annotations:\n          summary: '{{{{ $labels.instance }}}} of {{{{ $labels.service }}}} is {{{{ $value | humanize }}}}'\n"
            ));
        }
    }
    match parse_rules("bench.yml", &yaml) {
        Ok(groups) => RuleSet {
            groups,
            files: vec!["bench.yml".into()],
        },
        Err(e) => {
            eprintln!("{e:?}");
            std::process::exit(1);
        }
    }
}

fn run(name: &str, store: Arc<dyn Store>, rules: usize, cycles: usize, history: i64, step_ms: i64) {
    let sent = Arc::new(Count(Default::default()));
    let queryable: Arc<dyn Queryable> = Arc::new(Via(store.clone()));
    let appender: Arc<dyn SampleAppender> = Arc::new(Via(store));
    let m = RuleManager::new(
        Arc::new(Engine::new(EngineOptions::default())),
        queryable,
        appender,
        sent.clone(),
        ManagerOptions {
            restore: false,
            ..ManagerOptions::default()
        },
    );
    m.update(rule_set(rules));
    let mut times = Vec::new();
    for c in 0..cycles {
        // Evaluate at the end of the loaded history, one step apart.
        let ts = (history - 1) * step_ms + c as i64 * step_ms;
        let started = Instant::now();
        m.eval_all_at(ts);
        let took = started.elapsed();
        times.push(took.as_secs_f64());
        let active = m.alerts_json()["alerts"].as_array().map_or(0, Vec::len);
        println!(
            "  {name} cycle {c}: {:.1} ms, {active} active alerts",
            took.as_secs_f64() * 1000.0
        );
    }
    times.sort_by(f64::total_cmp);
    let (rss, hwm) = memory_mib();
    println!(
        "{name}: median cycle {:.1} ms, max {:.1} ms; RSS {rss:.0} MiB, peak {hwm:.0} MiB; {} alerts sent",
        times[times.len() / 2] * 1000.0,
        times[times.len() - 1] * 1000.0,
        sent.0.load(std::sync::atomic::Ordering::Relaxed)
    );
}

/// Lets one `Arc<dyn Store>` serve as both trait objects.
struct Via(Arc<dyn Store>);

impl Queryable for Via {
    fn select(&self, m: &[Matcher], start: i64, end: i64) -> Result<Vec<SeriesData>, StorageError> {
        self.0.select(m, start, end)
    }
}

impl SampleAppender for Via {
    fn append(&self, samples: Vec<(Labels, Sample)>) -> Result<(), String> {
        self.0.append(samples)
    }
}

fn main() {
    let rules = arg(1, 1000);
    let series = arg(2, 10_000);
    let cycles = arg(3, 5);
    let step_ms = 15_000;
    let history = 40; // 10 minutes at 15 s
    println!(
        "{rules} alerting rules, {series} series x {history} samples, load average {}",
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .split_whitespace()
            .next()
            .unwrap_or("?")
    );
    let (rss0, _) = memory_mib();
    let indexed = Indexed::default();
    for (l, s) in data(rules, series, history, step_ms) {
        let _ = indexed.append(s.into_iter().map(|x| (l.clone(), x)).collect());
    }
    let (rss1, _) = memory_mib();
    println!("data: {:.0} MiB", rss1 - rss0);
    run(
        "indexed",
        Arc::new(indexed),
        rules,
        cycles,
        history,
        step_ms,
    );
    let mut mem = MemStorage::new();
    for (l, s) in data(rules, series, history, step_ms) {
        mem.add(l, s);
    }
    run(
        "MemStorage",
        Arc::new(Store0(RwLock::new(mem))),
        rules,
        cycles,
        history,
        step_ms,
    );
}
