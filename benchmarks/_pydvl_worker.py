"""pyDVL side of benchmarks/valuation.py, run by the pyDVL venv's Python (pyDVL pins numpy < 2).

Usage: python _pydvl_worker.py DATA.npz SECONDS OUT.json
Runs pyDVL's TMCShapleyValuation (RelativeTruncation(rtol=0.01, burn_in_fraction=0.4),
its documented default) on scikit-learn LogisticRegression for SECONDS of wall time,
one process (joblib n_jobs=1), and writes values, permutations and model fits.
"""

import json
import os
import sys
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import pydvl  # noqa: E402
import sklearn  # noqa: E402
from joblib import parallel_config  # noqa: E402
from pydvl.valuation import (  # noqa: E402
    Dataset,
    MaxTime,
    ModelUtility,
    RelativeTruncation,
    SupervisedScorer,
    TMCShapleyValuation,
)
from sklearn.linear_model import LogisticRegression  # noqa: E402


class CountingLogisticRegression(LogisticRegression):
    fits = 0

    def fit(self, X, y, sample_weight=None):
        CountingLogisticRegression.fits += 1
        return super().fit(X, y, sample_weight)


def main():
    data_path, seconds, out_path = sys.argv[1], float(sys.argv[2]), sys.argv[3]
    d = np.load(data_path)
    train, test = Dataset(d["X_train"], d["y_train"]), Dataset(d["X_test"], d["y_test"])
    scorer = SupervisedScorer("accuracy", test, default=0.0, range=(0.0, 1.0))
    utility = ModelUtility(CountingLogisticRegression(), scorer, show_warnings=False)
    valuation = TMCShapleyValuation(
        utility,
        truncation=RelativeTruncation(rtol=0.01, burn_in_fraction=0.4),
        is_done=MaxTime(seconds),
        seed=int(d["seed"]),
        show_warnings=False,
    )
    start = time.perf_counter()
    with parallel_config(n_jobs=1):
        valuation.fit(train)
    elapsed = time.perf_counter() - start
    result = valuation.result
    counts = np.asarray(result.counts)
    perms = int(counts.max())
    json.dump(
        {
            "values": np.asarray(result.values, float).tolist(),
            "seconds": elapsed,
            "permutations": perms,
            "fits": CountingLogisticRegression.fits,
            "versions": {"pydvl": pydvl.__version__, "numpy": np.__version__, "sklearn": sklearn.__version__},
        },
        open(out_path, "w"),
    )


if __name__ == "__main__":
    main()
