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

The reference (20,000 plain TMC permutations of ulam's fast path) is computed by this
script on first use and cached under ``checkpoints/valuation-reference/`` (git-ignored),
keyed by a hash of the data, learner, truncation, seed and permutation count.

Run:  .venv/bin/python benchmarks/valuation.py [--seconds 60] [--reference-permutations 20000] [--seeds 4]
      .venv/bin/python benchmarks/valuation.py --reference-only   # just build the cached reference
"""

from __future__ import annotations

import argparse
import hashlib
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

import _one_core  # noqa: E402  (before jax: one core for ulam and, by inheritance, the pyDVL subprocess)

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
REF_DIR = ROOT / "checkpoints" / "valuation-reference"  # git-ignored


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


def reference_values(u, data, num_permutations: int, seed: int = 7) -> tuple[np.ndarray, str]:
    """The long reference run of ulam's fast path (plain TMC), cached to a git-ignored file.

    The file name is a hash of the data, learner, truncation rule, key seed and
    permutation count; the run checkpoints every round, so an interrupted run resumes.
    """
    h = hashlib.sha256()
    for a in data:
        h.update(np.ascontiguousarray(a).tobytes())
    h.update(f"{u.learner.name}|{TRUNC}|seed={seed}|n={num_permutations}|batch=512".encode())
    tag = h.hexdigest()[:16]
    REF_DIR.mkdir(parents=True, exist_ok=True)
    path = REF_DIR / f"reference-{tag}.npz"
    if path.exists():
        saved = np.load(path)
        return saved["values"], (f"cached in `{path.relative_to(ROOT)}`, computed by this benchmark in "
                                 f"{float(saved['seconds']):.0f} s ({int(saved['n'])} permutations)")
    t = time.perf_counter()
    est = tmc_shapley(u, jax.random.key(seed), max_permutations=num_permutations, batch_size=512,
                      truncation=TRUNC, checkpoint=REF_DIR / f"checkpoint-{tag}.npz")
    seconds = time.perf_counter() - t
    np.savez(path, values=np.asarray(est.mean), stderr=np.asarray(est.stderr), n=est.n, seconds=seconds)
    (REF_DIR / f"checkpoint-{tag}.npz").unlink(missing_ok=True)
    return np.asarray(est.mean), (f"computed by this run in {seconds:.0f} s ({est.n} permutations), cached in "
                                  f"`{path.relative_to(ROOT)}`; max stderr {float(np.max(est.stderr)):.2g}")


SCHEMES = ("plain", "antithetic", "stratified", "neyman")
# permutations per round: ~1-2 s of work each (Neyman scans are ~6x shorter), one stratified block
BATCH = {"plain": 64, "antithetic": 64, "stratified": 200, "neyman": 512}


def equal_time_study(u, ref, seconds: float, seeds: int) -> tuple[dict, list]:
    """Spearman with the reference after ``seconds`` of wall time, ``seeds`` runs per scheme.

    Schemes are interleaved (the order rotates each seed), so a change of machine load
    hits them alike; seed ``s`` uses the same key for every scheme (a paired design).
    """
    for scheme in ("plain", "neyman"):  # compile outside the timed runs (the other schemes share plain's shapes)
        tmc_shapley(u, jax.random.key(999), max_permutations=64, batch_size=64, truncation=TRUNC, scheme=scheme)
    res = {k: [] for k in SCHEMES}
    perms = {k: [] for k in SCHEMES}
    for s in range(seeds):
        order = SCHEMES[s % len(SCHEMES):] + SCHEMES[: s % len(SCHEMES)]
        for scheme in order:
            e = tmc_shapley(u, jax.random.key(1000 + s), max_permutations=10**9, max_seconds=seconds,
                            batch_size=BATCH[scheme], truncation=TRUNC, scheme=scheme)
            res[scheme].append(spearman(e.mean, ref))
            perms[scheme].append(e.n)
            print(f"seed {s} {scheme}: spearman {res[scheme][-1]:.3f}, {e.n} permutations, "
                  f"{e.info['fits_per_permutation']:.1f} fits/perm", flush=True)
    rows = []
    base = np.array(res["plain"])
    for scheme in SCHEMES:
        r = np.array(res[scheme])
        se = r.std(ddof=1) / np.sqrt(len(r)) if len(r) > 1 else float("nan")
        line = [scheme, f"{r.mean():.3f} ± {se:.3f}", f"{int(np.mean(perms[scheme]))}"]
        if scheme == "plain":
            line += ["", ""]
        else:
            d = r - base
            dse = d.std(ddof=1) / np.sqrt(len(d)) if len(d) > 1 else float("nan")
            line += [f"{d.mean():+.3f} ± {dse:.3f}", f"{int((d > 0).sum())} / {len(d)}"]
        rows.append(line)
    return res, rows


LOAD_AT_START = os.getloadavg()[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=60.0, help="wall time for the equal-time Spearman runs")
    ap.add_argument("--reference-permutations", type=int, default=20000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=4, help="runs per scheme in the equal-time study")
    ap.add_argument("--reference-only", action="store_true", help="compute (or load) the cached reference and stop")
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
    tmc_shapley(u, jax.random.key(100), max_permutations=128, batch_size=128, truncation=TRUNC)
    compile_s = time.perf_counter() - t0

    if args.reference_only:
        print(reference_values(u, (X, y, Xt, yt), args.reference_permutations)[1])
        return

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
        e = tmc_shapley(u, jax.random.key(200 + rep), max_permutations=512, batch_size=128, truncation=TRUNC)
        rows["ulam JAX fast path"].append(e.n / (time.perf_counter() - t))
        fits["ulam JAX fast path"] = e.info["fits_per_permutation"]
        fits["ulam JAX fast path (computed, incl. chunk overshoot)"] = e.info["computed_fits"] / e.n
        t = time.perf_counter()
        e = tmc_shapley(us, jax.random.key(300 + rep), max_permutations=4, batch_size=2, truncation=TRUNC)
        rows["ulam scikit-learn path"].append(e.n / (time.perf_counter() - t))
        fits["ulam scikit-learn path"] = e.info["fits_per_permutation"]
        print("repeat", rep, {k: v[-1] for k, v in rows.items() if v}, flush=True)

    ref, ref_note = reference_values(u, (X, y, Xt, yt), args.reference_permutations)
    print("reference:", ref_note, flush=True)

    corr = {}
    if pyok:
        r = run_pydvl(data_path, args.seconds)
        corr["pyDVL TMC (plain permutations)"] = (spearman(r["values"], ref), r["permutations"])
        print("pyDVL", corr["pyDVL TMC (plain permutations)"], flush=True)
    res, vr_rows = equal_time_study(u, ref, args.seconds, args.seeds)

    med = {k: float(np.median(v)) for k, v in rows.items() if v}
    lines += [
        "# Benchmark: Data Shapley (TMC) — ulam.valuation vs pyDVL",
        "",
        f"Command: `{cmd}`",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, {_one_core.DESCRIPTION}; 1-minute load average "
        f"{LOAD_AT_START:.1f} at the start and {os.getloadavg()[0]:.1f} at the end (above the core count, times are "
        "noisy). One XLA/BLAS thread per process; the pyDVL subprocess inherits the CPU affinity.",
        f"Versions: jax {jax.__version__}, numpy {np.__version__}, scikit-learn {sklearn.__version__}"
        + (f"; pyDVL side: {versions_pydvl}" if pyok else ""),
        f"pyDVL venv: {'ok (' + pymsg + ')' if pyok else 'NOT AVAILABLE: ' + pymsg}",
        "",
        "Setting: breast-cancer, standardized, 200 train / 200 test, logistic regression (C = 1), V = test accuracy, "
        "truncation rtol 0.01 with burn-in 0.4 (pyDVL's default; same rule in ulam).",
        "",
        f"ulam JAX compile + first 128 permutations: {compile_s:.1f} s (excluded from the rates below).",
        "",
        "| implementation | permutations / s (min, median over repeats) | model fits / permutation |",
        "|---|---|---|",
    ]
    for k, v in rows.items():
        if v:
            lines.append(f"| {k} | {min(v):.2f}, {np.median(v):.2f} | {fits.get(k, float('nan')):.1f} |")
    lines.append(f"| (ulam JAX: fits actually computed, incl. chunk overshoot) | | "
                 f"{fits['ulam JAX fast path (computed, incl. chunk overshoot)']:.1f} |")
    if pyok:
        p = med["pyDVL TMC (1 process)"]
        lines += ["", f"Ratios (median): JAX path / pyDVL = **{med['ulam JAX fast path'] / p:.1f}x** (target >= 10x); "
                  f"scikit-learn path / pyDVL = **{med['ulam scikit-learn path'] / p:.2f}x** (target >= 1x)."]
    lines += ["", f"Reference: plain TMC, {args.reference_permutations} permutations of ulam's fast path (key 7), "
              f"{ref_note}.", "",
              f"Spearman correlation with the reference after {args.seconds:.0f} s of wall time:", "",
              "| run | Spearman | permutations done |", "|---|---|---|"]
    for k, (rho, n) in corr.items():
        lines.append(f"| {k} | {rho:.3f} | {n} |")
    lines += ["", f"ulam's schemes, {args.seeds} seeds each, interleaved (order rotated per seed; seed s uses the same "
              "key for every scheme). Mean ± standard error over seeds; paired difference to plain TMC on the same "
              "seed:", "",
              "| scheme | Spearman (mean ± se) | permutations (mean) | minus plain (mean ± se) | seeds better than plain |",
              "|---|---|---|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in vr_rows]
    lines += ["", "Per-seed Spearman: " + "; ".join(f"{k}: " + ", ".join(f"{v:.3f}" for v in res[k]) for k in SCHEMES)
              + "."]
    text = "\n".join(lines) + "\n"
    print(text)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
