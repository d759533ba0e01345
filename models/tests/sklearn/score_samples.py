"""Reference scores from scikit-learn for Vigil's parity test.

Usage: python3 score_samples.py X.csv N_ESTIMATORS SEED

Reads a headerless numeric CSV (one row per sample), fits
`IsolationForest(n_estimators=N, max_samples="auto", contamination=0.1,
random_state=SEED, n_jobs=1)` on it and prints, one per line,
`-score_samples(X)` (scikit-learn negates the paper's score; we undo that so
the numbers are the paper's `2^(-E[h]/c(psi))`, directly comparable with
Vigil's), followed by a last line `threshold <t>` with `-offset_`, the
contamination threshold on the same scale.
"""

import sys

import numpy as np
from sklearn.ensemble import IsolationForest


def main() -> None:
    path, n_estimators, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    x = np.loadtxt(path, delimiter=",", ndmin=2)
    model = IsolationForest(
        n_estimators=n_estimators,
        max_samples="auto",
        contamination=0.1,
        random_state=seed,
        n_jobs=1,
    ).fit(x)
    scores = -model.score_samples(x)
    out = [repr(float(s)) for s in scores]
    out.append(f"threshold {float(-model.offset_)!r}")
    sys.stdout.write("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
