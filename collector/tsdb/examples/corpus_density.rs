//! Density analysis of a `bench-ingest --record-corpus` file, without the
//! HTTP path: groups the corpus per series and reports what each part of
//! the sealed encoding costs (timestamps, values by kind).
//!
//! Run: `cargo run --release -p vigil-tsdb --example corpus_density -- CORPUS [DUMP_DIR]`;
//! with `DB=DIR` in the environment it also stores the corpus in a fresh
//! store in DIR, request by request as `bench-ingest` replays it, flushes
//! it and prints the file's size (inspect it with `sqlite3` and `dbstat`).

use std::collections::BTreeMap;

use vigil_wire::remote_write as rw;
use vigil_wire::{Labels, Sample};

fn main() {
    let path = std::env::args().nth(1).expect("corpus path");
    let raw = std::fs::read(&path).expect("read corpus");
    let mut series: BTreeMap<Labels, Vec<Sample>> = BTreeMap::new();
    let mut requests: Vec<Vec<vigil_tsdb::SeriesSamples>> = Vec::new();
    let mut pos = 0;
    let mut total = 0usize;
    while pos + 5 <= raw.len() {
        let len = u32::from_le_bytes(raw[pos + 1..pos + 5].try_into().expect("4 bytes")) as usize;
        let Some(body) = raw.get(pos + 5..pos + 5 + len) else {
            break;
        };
        pos += 5 + len;
        let req = rw::decode_write_request(body, 512 << 20).expect("decode");
        let mut batch = Vec::new();
        for ts in req.timeseries {
            let labels = Labels::from_pairs(ts.labels.into_iter().map(|l| (l.name, l.value)));
            batch.push(vigil_tsdb::SeriesSamples {
                labels: labels.clone(),
                samples: ts
                    .samples
                    .iter()
                    .map(|s| Sample::new(s.timestamp, s.value))
                    .collect(),
            });
            let v = series.entry(labels).or_default();
            for s in ts.samples {
                if v.last()
                    .is_none_or(|l: &Sample| l.timestamp_ms < s.timestamp)
                {
                    v.push(Sample::new(s.timestamp, s.value));
                    total += 1;
                }
            }
        }
        requests.push(batch);
    }
    if let Some(dir) = std::env::var_os("DB") {
        let dir = std::path::PathBuf::from(dir);
        let newest = series
            .values()
            .filter_map(|s| s.last())
            .map(|s| s.timestamp_ms)
            .max()
            .unwrap_or(0);
        let started = std::time::Instant::now();
        {
            let db = vigil_tsdb::Db::open(&dir, vigil_tsdb::Options::default()).expect("open");
            for batch in requests.drain(..) {
                db.append(batch, newest + 60_000).expect("append");
            }
            db.flush().expect("flush");
        }
        let size: u64 = std::fs::read_dir(&dir)
            .expect("dir")
            .flatten()
            .filter_map(|e| e.metadata().ok())
            .map(|m| m.len())
            .sum();
        println!(
            "store: {size} B = {:.3} B/sample ({:.1} s)",
            size as f64 / total as f64,
            started.elapsed().as_secs_f64()
        );
    }
    let (mut all, mut ts_only, mut val_only) = (0usize, 0usize, 0usize);
    let mut by_kind: BTreeMap<&str, (usize, usize, usize)> = BTreeMap::new();
    let mut costly: Vec<(usize, String, String)> = Vec::new();
    for (labels, samples) in &series {
        let sealed = vigil_tsdb::sealed::seal(samples);
        all += sealed.len();
        let t: Vec<Sample> = samples
            .iter()
            .map(|s| Sample::new(s.timestamp_ms, 0.0))
            .collect();
        let tl = vigil_tsdb::sealed::seal(&t).len();
        ts_only += tl;
        let v: Vec<Sample> = samples
            .iter()
            .enumerate()
            .map(|(i, s)| Sample::new(i as i64 * 1000, s.value))
            .collect();
        let vl = vigil_tsdb::sealed::seal(&v).len();
        val_only += vl;
        let first = samples[0].value.to_bits();
        let kind = if samples.iter().all(|s| s.value.to_bits() == first) {
            "constant"
        } else if vl * 8 > samples.len() * 20 {
            "noisy (>20 bits/sample)"
        } else {
            "changing"
        };
        costly.push((
            vl,
            labels.to_string(),
            samples
                .iter()
                .take(4)
                .map(|s| format!("{:?}", s.value))
                .collect::<Vec<_>>()
                .join(" "),
        ));
        let e = by_kind.entry(kind).or_default();
        e.0 += 1;
        e.1 += samples.len();
        e.2 += vl;
    }
    // Series whose timestamps are identical (one scrape target) could
    // share one timestamp column.
    let mut cols: BTreeMap<Vec<i64>, usize> = BTreeMap::new();
    for samples in series.values() {
        *cols
            .entry(samples.iter().map(|s| s.timestamp_ms).collect())
            .or_default() += 1;
    }
    let mut shared_cost = 0usize;
    let mut sizes: Vec<usize> = cols.values().copied().collect();
    sizes.sort_unstable_by(|a, b| b.cmp(a));
    for ts in cols.keys() {
        let t: Vec<Sample> = ts.iter().map(|&t| Sample::new(t, 0.0)).collect();
        shared_cost += vigil_tsdb::sealed::seal(&t).len();
    }
    println!(
        "{} distinct timestamp columns (largest groups {:?}), shared cost {:.4} B/sample",
        cols.len(),
        &sizes[..sizes.len().min(8)],
        shared_cost as f64 / total as f64
    );
    if let Some(dir) = std::env::args().nth(2) {
        // Value streams for trying general-purpose codecs on them.
        let mut out = Vec::new();
        for samples in series.values() {
            let v: Vec<Sample> = samples
                .iter()
                .enumerate()
                .map(|(i, s)| Sample::new(i as i64 * 1000, s.value))
                .collect();
            out.extend(vigil_tsdb::sealed::seal(&v));
        }
        std::fs::write(format!("{dir}/values.bin"), out).expect("write");
        let mut raw = Vec::new();
        for samples in series.values() {
            for s in samples {
                raw.extend(s.value.to_bits().to_le_bytes());
            }
        }
        std::fs::write(format!("{dir}/raw_values.bin"), raw).expect("write");
    }
    costly.sort_by_key(|c| std::cmp::Reverse(c.0));
    for (b, l, v) in costly.iter().take(40) {
        println!("{b:6} {l} {v}");
    }
    // Timestamp coders over each series' own timestamps, in bits.
    let (mut dod_b, mut base_b, mut grid_b) = (0u64, 0u64, 0u64);
    for samples in series.values() {
        let ts: Vec<i64> = samples.iter().map(|s| s.timestamp_ms).collect();
        if ts.len() < 3 {
            continue;
        }
        let d: Vec<i64> = ts.windows(2).map(|p| p[1] - p[0]).collect();
        let dods: Vec<i64> = d.windows(2).map(|p| p[1] - p[0]).collect();
        let mut sorted = d.clone();
        sorted.sort_unstable();
        let base = sorted[sorted.len() / 2];
        let res: Vec<i64> = d.iter().map(|x| x - base).collect();
        let grid: Vec<i64> = ts
            .iter()
            .enumerate()
            .map(|(i, t)| t - ts[0] - i as i64 * base)
            .collect();
        dod_b += ints_cost(&dods);
        base_b += ints_cost(&res);
        grid_b += ints_cost(&grid);
    }
    println!(
        "own timestamps, B/sample: dod {:.3}, delta - median {:.3}, grid residual {:.3}",
        dod_b as f64 / 8.0 / total as f64,
        base_b as f64 / 8.0 / total as f64,
        grid_b as f64 / 8.0 / total as f64
    );
    println!("{} series, {total} samples", series.len());
    println!(
        "sealed, one chunk per series: {all} B = {:.3} B/sample",
        all as f64 / total as f64
    );
    println!(
        "  timestamps alone: {:.3} B/sample",
        ts_only as f64 / total as f64
    );
    println!(
        "  values alone: {:.3} B/sample",
        val_only as f64 / total as f64
    );
    for (k, (n, s, b)) in by_kind {
        println!(
            "  {k}: {n} series, {s} samples, values {b} B ({:.3} B/sample of all)",
            b as f64 / total as f64
        );
    }
}

fn ints_cost(v: &[i64]) -> u64 {
    let zz = |x: i64| ((x << 1) ^ (x >> 63)) as u64;
    (0..40u32)
        .map(|k| {
            v.iter()
                .map(|&x| {
                    let u = zz(x);
                    let q = u >> k;
                    if q < 24 {
                        q + 1 + u64::from(k)
                    } else {
                        30 + u64::from(64 - u.leading_zeros())
                    }
                })
                .sum::<u64>()
        })
        .min()
        .unwrap_or(0)
}
