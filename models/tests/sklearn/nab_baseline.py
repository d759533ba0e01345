"""NAB baseline: scikit-learn's IsolationForest used the way Vigil's
streaming detector uses its own forest.

Reads a feature CSV written by `cargo run --example nab_bench` (header
`timestamp_ms,f0,...,fk`, one row per point, features computed causally by
Vigil's extractor), replays it as a stream and prints, per row, two `0`/`1`
alert flags separated by a comma, for two decision rules:

* nothing is scored before `--min-points` rows; the first model is fitted on
  the rows before the first scored one, then refitted every
  `--retrain-every` scored rows on the last `--window` rows before the
  current one (never on the current or later rows);
* features are standard-scaled with a scaler fitted on the same rows;
* rule 1 (`predict`): a point is anomalous when `IsolationForest.predict`
  says so (the contamination threshold);
* rule 2 (`vigil`): Vigil's decision applied to scikit-learn's scores: the
  contamination threshold, and a robust z-score of the score against the
  history of streamed scores of at least `--score-z`, and a percentile rank
  in that history of at least `--min-score-percentile` (no decisions until
  the history holds `--min-points` scores). The difference from Vigil is
  then only the forest's scoring of unseen points;
* an anomaly within `--suppression-ms` of the previous anomaly does not alert
  again (the same episode rule as Vigil's detector).

Usage: python3 nab_baseline.py FEATURES.csv [--min-points 100] [--window 1000]
       [--retrain-every 100] [--contamination 0.1] [--n-estimators 100]
       [--seed 42] [--suppression-ms 1800000] [--score-z 4]
       [--min-score-percentile 99.9]
"""

import argparse
import collections
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
    p.add_argument("--score-z", type=float, default=4.0)
    p.add_argument("--min-score-percentile", type=float, default=99.9)
    a = p.parse_args()
    contamination = a.contamination if a.contamination == "auto" else float(a.contamination)

    data = np.loadtxt(a.features, delimiter=",", skiprows=1, ndmin=2)
    ts = data[:, 0].astype(np.int64)
    x = data[:, 1:]
    n = len(x)
    predicted = np.zeros(n, dtype=bool)
    ruled = np.zeros(n, dtype=bool)
    history = collections.deque(maxlen=a.window)
    scale = None

    def robust_scale():
        if len(history) < a.min_points:
            return None
        h = np.asarray(history)
        median = np.median(h)
        return median, max(1.4826 * np.median(np.abs(h - median)), 1e-3)

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
        scale = robust_scale()
        # The model is fixed until the next retrain, so the rows it scores can
        # be scored in one call; each row's features depend only on the past.
        hi = min(n, i + a.retrain_every)
        block = scaler.transform(x[i:hi])
        predicted[i:hi] = model.predict(block) == -1
        threshold = -model.offset_
        for k, s in enumerate(-model.score_samples(block)):
            if scale is not None and len(history) > 0:
                h = np.asarray(history)
                rank = 100.0 * (np.sum(h < s) + 0.5 * np.sum(h == s)) / len(h)
                z = (s - scale[0]) / scale[1]
                ruled[i + k] = s > threshold and z >= a.score_z and rank >= a.min_score_percentile
            history.append(s)
            if scale is None:
                scale = robust_scale()
        i = hi

    def alerts(anomalous):
        last = None
        out = []
        for t, o in zip(ts, anomalous):
            out.append(bool(o) and (last is None or t - last >= a.suppression_ms))
            if o:
                last = t
        return out

    lines = [f"{int(p)},{int(r)}" for p, r in zip(alerts(predicted), alerts(ruled))]
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
