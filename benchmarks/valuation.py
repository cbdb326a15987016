"""Benchmark: ulam.valuation TMC-Shapley vs pyDVL 0.10 on the same data, learner and truncation.

Setting (issue 8): scikit-learn breast-cancer data, standardized, 200 training / 200
test points, logistic regression (C = 1), utility = test accuracy, truncation
rtol = 0.01 with burn-in 0.4 (pyDVL's TMCShapleyValuation default; ulam's
``Truncation(rtol=0.01, patience=0, burn_in_fraction=0.4)`` is the same rule).

pyDVL 0.10 pins numpy < 2 and JAX needs numpy >= 2, so pyDVL runs in its own venv
(``.venv-pydvl``, created here on first use) as a subprocess on the same saved data,
within this benchmark run. Reports permutations per second, model fits per
permutation, compile time separately, and the Spearman correlation reached after a
fixed wall time against a long reference run of ulam's fast path.

Run:  .venv/bin/python benchmarks/valuation.py [--seconds 60] [--reference-permutations 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import jax  # noqa: E402
import numpy as np  # noqa: E402
import sklearn  # noqa: E402
from scipy.stats import spearmanr  # noqa: E402
from sklearn.datasets import load_breast_cancer  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

from ulam.valuation import Truncation, jax_utility, logistic_regression, sklearn_utility, tmc_shapley  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv-pydvl"
WORKER = Path(__file__).resolve().parent / "_pydvl_worker.py"
TRUNC = Truncation(rtol=0.01, patience=0, burn_in_fraction=0.4)


def make_data(seed: int = 0):
    X, y = load_breast_cancer(return_X_y=True)
    idx = np.random.default_rng(seed).permutation(len(y))[:400]
    X = StandardScaler().fit_transform(X[idx]).astype(np.float32)
    y = y[idx]
    return X[:200], y[:200], X[200:], y[200:]


def ensure_pydvl_venv() -> tuple[bool, str]:
    py = VENV / "bin" / "python"
    if py.exists():
        ok = subprocess.run([str(py), "-c", "import pydvl"], capture_output=True).returncode == 0
        if ok:
            return True, "existing venv"
    base = "python3.11" if subprocess.run(["which", "python3.11"], capture_output=True).returncode == 0 else sys.executable
    steps = [[base, "-m", "venv", str(VENV)], [str(py), "-m", "pip", "install", "-q", "pydvl==0.10.0"]]
    for cmd in steps:
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode != 0:
            return False, f"`{' '.join(cmd)}` failed: {r.stderr.strip()[-800:]}"
    return True, "created"


def run_pydvl(data_path: Path, seconds: float) -> dict:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    start = time.perf_counter()
    r = subprocess.run([str(VENV / "bin" / "python"), str(WORKER), str(data_path), str(seconds), out],
                       capture_output=True, text=True, env=env)
    if r.returncode != 0:
        raise RuntimeError(f"pyDVL worker failed:\n{r.stderr[-2000:]}")
    res = json.load(open(out))
    res["process_seconds"] = time.perf_counter() - start
    return res


def spearman(a, b) -> float:
    return float(spearmanr(np.asarray(a), np.asarray(b)).statistic)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0, help="wall time for the equal-time Spearman runs")
    ap.add_argument("--reference-permutations", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--out", default=str(ROOT / "docs" / "benchmarks" / "valuation.md"))
    args = ap.parse_args()
    cmd = "python benchmarks/valuation.py " + " ".join(sys.argv[1:])

    X, y, Xt, yt = make_data()
    cache = Path(tempfile.gettempdir()) / "ulam-valuation-bench"
    cache.mkdir(exist_ok=True)
    data_path = cache / "breast_cancer_200_200.npz"
    np.savez(data_path, X_train=X, y_train=y, X_test=Xt, y_test=yt, seed=0)
    lines = []

    u = jax_utility(logistic_regression(), X, y, Xt, yt)
    us = sklearn_utility(LogisticRegression(), X, y, Xt, yt)

    # compile once (first call), then measured runs
    t0 = time.perf_counter()
    tmc_shapley(u, jax.random.key(100), max_permutations=64, batch_size=64, truncation=TRUNC, chunk=40)
    compile_s = time.perf_counter() - t0

    pyok, pymsg = ensure_pydvl_venv()
    print("pyDVL venv:", pyok, pymsg, flush=True)

    rows = {"ulam JAX fast path": [], "ulam scikit-learn path": [], "pyDVL TMC (1 process)": []}
    fits = {}
    for rep in range(args.repeats):
        if pyok:
            r = run_pydvl(data_path, 15.0)
            rows["pyDVL TMC (1 process)"].append(r["permutations"] / r["seconds"])
            fits["pyDVL TMC (1 process)"] = r["fits"] / max(r["permutations"], 1)
            versions_pydvl = r["versions"]
        t = time.perf_counter()
        e = tmc_shapley(u, jax.random.key(200 + rep), max_permutations=256, batch_size=64, truncation=TRUNC, chunk=40)
        rows["ulam JAX fast path"].append(e.n / (time.perf_counter() - t))
        fits["ulam JAX fast path"] = e.info["fits_per_permutation"]
        fits["ulam JAX fast path (computed, incl. batch padding)"] = e.info["computed_fits"] / e.n
        t = time.perf_counter()
        e = tmc_shapley(us, jax.random.key(300 + rep), max_permutations=4, batch_size=2, truncation=TRUNC)
        rows["ulam scikit-learn path"].append(e.n / (time.perf_counter() - t))
        fits["ulam scikit-learn path"] = e.info["fits_per_permutation"]
        print("repeat", rep, {k: v[-1] for k, v in rows.items() if v}, flush=True)

    # reference: long run of the fast path (cached by size)
    ref_path = cache / f"reference_{args.reference_permutations}.npz"
    if ref_path.exists():
        ref = np.load(ref_path)["values"]
        ref_note = "cached"
    else:
        t = time.perf_counter()
        ref_est = tmc_shapley(u, jax.random.key(7), max_permutations=args.reference_permutations, batch_size=128,
                              truncation=TRUNC, chunk=40)
        ref = np.asarray(ref_est.mean)
        np.savez(ref_path, values=ref)
        ref_note = f"computed in {time.perf_counter() - t:.0f} s"
    print("reference:", ref_note, flush=True)

    # equal wall time: Spearman against the reference
    corr = {}
    if pyok:
        r = run_pydvl(data_path, args.seconds)
        corr["pyDVL TMC (plain permutations)"] = (spearman(r["values"], ref), r["permutations"])
    for scheme in ("plain", "antithetic", "stratified"):
        e = tmc_shapley(u, jax.random.key(11), max_permutations=10**9, max_seconds=args.seconds, batch_size=64,
                        truncation=TRUNC, chunk=40, scheme=scheme)
        corr[f"ulam JAX, {scheme}"] = (spearman(e.mean, ref), e.n)
        print(scheme, corr[f"ulam JAX, {scheme}"], flush=True)

    med = {k: float(np.median(v)) for k, v in rows.items() if v}
    lines += [
        "# Benchmark: Data Shapley (TMC) — ulam.valuation vs pyDVL",
        "",
        f"Command: `{cmd}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, **shared with other running jobs** (numbers are real "
        "measurements but noisy). One XLA/BLAS thread per process.",
        f"Versions: jax {jax.__version__}, numpy {np.__version__}, scikit-learn {sklearn.__version__}"
        + (f"; pyDVL side: {versions_pydvl}" if pyok else ""),
        f"pyDVL venv: {'ok (' + pymsg + ')' if pyok else 'NOT AVAILABLE: ' + pymsg}",
        "",
        "Setting: breast-cancer, standardized, 200 train / 200 test, logistic regression (C = 1), V = test accuracy, "
        "truncation rtol 0.01 with burn-in 0.4 (pyDVL's default; same rule in ulam).",
        "",
        f"ulam JAX compile + first 64 permutations: {compile_s:.1f} s (excluded from the rates below).",
        "",
        "| implementation | permutations / s (min, median over repeats) | model fits / permutation |",
        "|---|---|---|",
    ]
    for k, v in rows.items():
        if v:
            lines.append(f"| {k} | {min(v):.2f}, {np.median(v):.2f} | {fits.get(k, float('nan')):.1f} |")
    lines.append(f"| (ulam JAX: fits actually computed incl. batch padding) | | "
                 f"{fits['ulam JAX fast path (computed, incl. batch padding)']:.1f} |")
    if pyok:
        p = med["pyDVL TMC (1 process)"]
        lines += ["", f"Ratios (median): JAX path / pyDVL = **{med['ulam JAX fast path'] / p:.1f}x** (target >= 10x); "
                  f"scikit-learn path / pyDVL = **{med['ulam scikit-learn path'] / p:.2f}x** (target >= 1x)."]
    lines += ["", f"Spearman correlation with the reference ({args.reference_permutations} permutations of ulam's fast "
              f"path, {ref_note}) after {args.seconds:.0f} s of wall time:", "",
              "| run | Spearman | permutations done |", "|---|---|---|"]
    for k, (rho, n) in corr.items():
        lines.append(f"| {k} | {rho:.3f} | {n} |")
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
