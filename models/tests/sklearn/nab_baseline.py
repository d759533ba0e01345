"""NAB baseline: scikit-learn's IsolationForest used the way Vigil's
streaming detector uses its own forest.

Reads a feature CSV written by `cargo run --example nab_bench` (header
`timestamp_ms,f0,...,fk`, one row per point, features computed causally by
Vigil's extractor), replays it as a stream and prints one `0`/`1` alert flag
per row:

* nothing is scored before `--min-points` rows; the first model is fitted on
  the rows before the first scored one, then refitted every
  `--retrain-every` scored rows on the last `--window` rows before the
  current one (never on the current or later rows);
* features are standard-scaled with a scaler fitted on the same rows;
* a point is an outlier when `IsolationForest.predict` says so (the
  contamination threshold);
* an outlier within `--suppression-ms` of the previous outlier does not alert
  again (the same episode rule as Vigil's detector).

Usage: python3 nab_baseline.py FEATURES.csv [--min-points 100] [--window 1000]
       [--retrain-every 100] [--contamination 0.1] [--n-estimators 100]
       [--seed 42] [--suppression-ms 1800000]
"""

import argparse
import sys

import numpy as np
from sklearn.ensemble import IsolationForest
from sklearn.preprocessing import StandardScaler


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("features")
    p.add_argument("--min-points", type=int, default=100)
    p.add_argument("--window", type=int, default=1000)
    p.add_argument("--retrain-every", type=int, default=100)
    p.add_argument("--contamination", default="0.1")
    p.add_argument("--n-estimators", type=int, default=100)
    p.add_argument("--seed", type=int, default=42)
    p.add_argument("--suppression-ms", type=int, default=1_800_000)
    a = p.parse_args()
    contamination = a.contamination if a.contamination == "auto" else float(a.contamination)

    data = np.loadtxt(a.features, delimiter=",", skiprows=1, ndmin=2)
    ts = data[:, 0].astype(np.int64)
    x = data[:, 1:]
    n = len(x)
    outlier = np.zeros(n, dtype=bool)
    i = a.min_points
    while i < n:
        lo = max(0, i - a.window)
        scaler = StandardScaler().fit(x[lo:i])
        model = IsolationForest(
            n_estimators=a.n_estimators,
            max_samples=min(256, i - lo),
            contamination=contamination,
            random_state=a.seed + i,
            n_jobs=1,
        ).fit(scaler.transform(x[lo:i]))
        # The model is fixed until the next retrain, so the rows it scores can
        # be scored in one call; each row's features depend only on the past.
        hi = min(n, i + a.retrain_every)
        outlier[i:hi] = model.predict(scaler.transform(x[i:hi])) == -1
        i = hi

    last = None
    out = []
    for t, o in zip(ts, outlier):
        alert = bool(o) and (last is None or t - last >= a.suppression_ms)
        if o:
            last = t
        out.append("1" if alert else "0")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
