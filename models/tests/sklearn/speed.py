"""Speed reference for Vigil's forest: scikit-learn's IsolationForest,
single-threaded, on the same matrices.

Usage: python3 speed.py TRAIN.csv SCORE.csv N_ESTIMATORS REPEATS SINGLE

Loads both headerless CSVs (not timed), then REPEATS times: fits
`IsolationForest(n_estimators, max_samples=256, contamination=0.1,
n_jobs=1)` on TRAIN and scores SCORE with `score_samples`. Prints
`fit_s <best seconds>`, `score_s <best seconds>` (CPU time of the thread:
the machine may be shared), `traced_peak_bytes <peak of
Python/NumPy allocations during one fit + score>`, `single_s <mean seconds
of score_samples on one row>` (the first SINGLE rows of SCORE, one call
each) and `maxrss_bytes <process peak resident set>`.
"""

import resource
import sys
import time
import tracemalloc

import numpy as np
from sklearn.ensemble import IsolationForest


def main() -> None:
    train = np.loadtxt(sys.argv[1], delimiter=",", ndmin=2)
    score = np.loadtxt(sys.argv[2], delimiter=",", ndmin=2)
    n_estimators, repeats = int(sys.argv[3]), int(sys.argv[4])
    fit_s, score_s = [], []
    for r in range(repeats):
        t0 = time.thread_time()
        model = IsolationForest(
            n_estimators=n_estimators,
            max_samples=256,
            contamination=0.1,
            random_state=r,
            n_jobs=1,
        ).fit(train)
        t1 = time.thread_time()
        model.score_samples(score)
        t2 = time.thread_time()
        fit_s.append(t1 - t0)
        score_s.append(t2 - t1)
    tracemalloc.start()
    model = IsolationForest(
        n_estimators=n_estimators, max_samples=256, contamination=0.1, random_state=0, n_jobs=1
    ).fit(train)
    model.score_samples(score)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    single = int(sys.argv[5])
    rows = [score[i : i + 1] for i in range(single)]
    t0 = time.thread_time()
    for row in rows:
        model.score_samples(row)
    single_s = (time.thread_time() - t0) / single
    print(f"fit_s {min(fit_s)!r}")
    print(f"score_s {min(score_s)!r}")
    print(f"traced_peak_bytes {peak}")
    print(f"single_s {single_s!r}")
    print(f"maxrss_bytes {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}")


if __name__ == "__main__":
    main()
