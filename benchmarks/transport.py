"""Benchmark: ulam sliced Wasserstein against POT and ott-jax, in one process, same inputs.

1. Time per call of SW_2 with L = 100 directions between two 1,000-point clouds, d = 3 and d = 784
   (targets: ulam >= 5x faster than POT at d = 3, >= 2x at d = 784).
2. Time to reach a given standard error (1% of SW_2^2) on isotropic and anisotropic Gaussians (d = 10,
   n = 1,000): POT's plain estimator at the L its own per-slice variance requires, against ulam's
   LCV-SW at the L its residual variance requires (targets: >= 10x faster isotropic, no slower anisotropic).
3. The sort behind both: jnp.sort against ulam.sorting.sort (NumPy through a host callback) under jit.

Equal resources (issue #15.12): by default the process may use every core, with one thread per
library (POT's NumPy/BLAS at OMP/OPENBLAS/MKL_NUM_THREADS=1, XLA at one intra-op thread); each row
prints the cores each library actually used (process CPU time / wall time over its calls), so an
unequal share shows. ``--one-core`` pins the whole process, both libraries, to one core (ulam.sorting
then keeps XLA's sort, its one-CPU rule).

Run: .venv/bin/python benchmarks/transport.py [--repeats 15] [--one-core] [--out docs/benchmarks/transport.md]
"""

from __future__ import annotations

import os

# One thread everywhere: on shared 2-core machines two threads per process were measured
# up to 2.5x slower when another process held a core.
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

# Not pinned to one core: on one CPU ulam.sorting's "auto" keeps XLA's sort (its host callback can
# wait forever on XLA's only worker thread), so pinning would measure a path a multi-core user never
# takes. POT and ulam's host sort are single-threaded NumPy and Eigen is single-threaded by the flag.
import sys  # noqa: E402

if "--one-core" not in sys.argv:
    os.environ.setdefault("ULAM_BENCH_ALL_CORES", "1")
import _one_core  # noqa: E402  (before jax, see its docstring)
os.environ.setdefault("JAX_PLATFORMS", "cpu")
for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(var, "1")

import argparse  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import ot  # noqa: E402
import ott  # noqa: E402
from ott.tools import sliced as ott_sliced  # noqa: E402

import ulam  # noqa: E402
from ulam.sorting import CPU_HOST_SORT_MIN_SIZE, sort  # noqa: E402
from ulam.transport import sliced_wasserstein  # noqa: E402


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    jax.block_until_ready(out)
    return time.perf_counter() - start, out


def _alternate(fns: dict, repeats: int, cpu: dict | None = None) -> dict:
    """Run each function once per round, rounds alternating, and keep every time (seconds).

    With ``cpu``, also record per function the cores it used: process CPU time / wall time summed
    over its calls (1.0 = one core busy throughout).
    """
    times = {name: [] for name in fns}
    used = {name: [0.0, 0.0] for name in fns}
    for _ in range(repeats):
        for name, fn in fns.items():
            c0 = time.process_time()
            wall = _timed(fn)[0]
            used[name][0] += time.process_time() - c0
            used[name][1] += wall
            times[name].append(wall)
    if cpu is not None:
        cpu.update({name: c / max(w, 1e-12) for name, (c, w) in used.items()})
    return times


def _ms(ts):
    return f"{1e3 * min(ts):.2f} / {1e3 * float(np.median(ts)):.2f}"


def per_call(repeats: int) -> tuple[list[str], dict]:
    lines = ["## 1. Time per call: SW₂ with L = 100, two 1,000-point clouds", ""]
    lines += ["min / median over %d alternating repeats, in ms (compile time excluded, reported apart)." % repeats, ""]
    lines += ["| d | POT | ott-jax | ulam | ulam compile | ott compile | POT / ulam (min) | ott / ulam (min) | target "
              "| cores used POT / ott / ulam |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    ratios = {}
    ulam_fn = jax.jit(lambda x, y, k: sliced_wasserstein(x, y, k, 100).mean)
    ott_fn = jax.jit(lambda x, y, k: ott_sliced.sliced_wasserstein(x, y, n_proj=100, rng=k)[0])
    for dim, target in ((3, 5.0), (784, 2.0)):
        rng = np.random.default_rng(dim)
        xn = rng.normal(size=(1000, dim)).astype(np.float32)
        yn = (rng.normal(size=(1000, dim)) * 2.0 + 1.0).astype(np.float32)
        x, y = jnp.asarray(xn), jnp.asarray(yn)
        key = jax.random.key(0)
        compile_ulam = _timed(lambda: ulam_fn(x, y, key))[0]
        compile_ott = _timed(lambda: ott_fn(x, y, key))[0]
        counter = iter(range(10**9))
        fns = {
            "POT": lambda: ot.sliced_wasserstein_distance(xn, yn, n_projections=100, seed=next(counter)),
            "ott": lambda: ott_fn(x, y, jax.random.key(next(counter))),
            "ulam": lambda: ulam_fn(x, y, jax.random.key(next(counter))),
        }
        cores = {}
        t = _alternate(fns, repeats, cores)
        r_pot = min(t["POT"]) / min(t["ulam"])
        r_ott = min(t["ott"]) / min(t["ulam"])
        ratios[dim] = (r_pot, target)
        lines.append(
            f"| {dim} | {_ms(t['POT'])} | {_ms(t['ott'])} | {_ms(t['ulam'])} | {1e3 * compile_ulam:.0f} | "
            f"{1e3 * compile_ott:.0f} | **{r_pot:.1f}x** | {r_ott:.1f}x | ≥ {target:g}x "
            f"{'met' if r_pot >= target else 'NOT met'} | {cores['POT']:.2f} / {cores['ott']:.2f} / {cores['ulam']:.2f} |"
        )
    return lines, ratios


def _gaussians(anisotropic: bool, n=1000, d=10):
    rng = np.random.default_rng(1 if anisotropic else 0)
    if not anisotropic:
        return rng.normal(1.0, 1.0, (n, d)).astype(np.float32), rng.normal(-1.0, 2.0, (n, d)).astype(np.float32)

    def factor():
        q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        return q * np.sqrt(np.logspace(-1, 1, d))

    dm = np.ones(d) / np.sqrt(d)
    x = rng.normal(size=(n, d)) @ factor().T + dm
    y = rng.normal(size=(n, d)) @ factor().T
    return x.astype(np.float32), y.astype(np.float32)


def time_to_stderr(repeats: int) -> tuple[list[str], dict]:
    lines = ["## 2. Time to reach a standard error of 1% of SW₂²", ""]
    lines += [
        "d = 10, n = 1,000 per cloud. Isotropic: N(1, I) against N(-1, 4I). Anisotropic: random eigenvectors, "
        "eigenvalues log-spaced over [0.1, 10], ||dm|| = 1 (the harder case of the reproduction, where the "
        "control variate explains little: most of the gain there is ulam's per-direction speed). The number of directions each estimator needs is set from a pilot run with "
        "L = 2,000 (POT: the variance of its own per-slice costs, `log=True`; ulam LCV-SW: the variance of its "
        "regression-adjusted slice values, i.e. `stderr² · L`), then each is timed at that L "
        f"(min over {repeats} repeats; ulam compile time excluded and shown apart). The achieved standard error is "
        "the estimator's own, from the timed run.",
        "",
        "| case | target SE | POT L | POT time (ms) | POT SE | ulam LCV L | ulam time (ms) | ulam SE | "
        "ulam compile (ms) | POT / ulam | target |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    ratios = {}
    for case, target in (("isotropic", 10.0), ("anisotropic", 1.0)):
        xn, yn = _gaussians(case == "anisotropic")
        x, y = jnp.asarray(xn), jnp.asarray(yn)
        _, log = ot.sliced_wasserstein_distance(xn, yn, n_projections=2000, seed=0, log=True)
        slices = np.asarray(log["projected_emds"], dtype=float)
        value = slices.mean()
        eps = 0.01 * value
        l_pot = max(2, math.ceil(slices.var(ddof=1) / eps**2))
        pilot = sliced_wasserstein(x, y, jax.random.key(1), 2000, control_variate="lower", pth_power=True)
        resid_var = float(pilot.stderr) ** 2 * 2000
        l_cv = max(10, math.ceil(resid_var / eps**2))
        fn = jax.jit(lambda x, y, k, L=l_cv: sliced_wasserstein(x, y, k, L, control_variate="lower", pth_power=True))
        compile_s = _timed(lambda: fn(x, y, jax.random.key(2)))[0]
        pot_t, ulam_t, pot_se, ulam_se = [], [], [], []
        for r in range(repeats):
            s, (_, lg) = _timed(lambda: ot.sliced_wasserstein_distance(xn, yn, n_projections=l_pot, seed=100 + r, log=True))
            pot_t.append(s)
            pot_se.append(np.std(np.asarray(lg["projected_emds"], float), ddof=1) / math.sqrt(l_pot))
            s, est = _timed(lambda: fn(x, y, jax.random.key(100 + r)))
            ulam_t.append(s)
            ulam_se.append(float(est.stderr))
        ratio = min(pot_t) / min(ulam_t)
        ratios[case] = (ratio, target)
        lines.append(
            f"| {case} | {eps:.4f} | {l_pot} | {1e3 * min(pot_t):.1f} | {np.median(pot_se):.4f} | {l_cv} | "
            f"{1e3 * min(ulam_t):.2f} | {np.median(ulam_se):.4f} | {1e3 * compile_s:.0f} | **{ratio:.0f}x** | "
            f"≥ {target:g}x {'met' if ratio >= target else 'NOT met'} |"
        )
    return lines, ratios


def sort_paths(repeats: int) -> list[str]:
    lines = ["## 3. The sort: XLA's CPU sort against ulam.sorting (NumPy via host callback), float32, under jit", ""]
    lines += [f"min over {repeats} repeats, ms. `auto` picks the host path on CPU from "
              f"{CPU_HOST_SORT_MIN_SIZE} elements.", "",
              "| shape | jnp.sort | ulam host sort | ulam auto picks | speed-up of host path |", "|---|---|---|---|---|"]
    xla = jax.jit(lambda a: jnp.sort(a, axis=-1))
    host = jax.jit(lambda a: sort(a, method="host"))
    for shape in ((256,), (1000,), (10, 300), (100, 1000), (200, 1000)):
        a = jnp.asarray(np.random.default_rng(0).normal(size=shape).astype(np.float32))
        jax.block_until_ready(xla(a))
        jax.block_until_ready(host(a))
        t = _alternate({"xla": lambda: xla(a), "host": lambda: host(a)}, repeats)
        pick = "host" if a.size >= CPU_HOST_SORT_MIN_SIZE else "xla"
        lines.append(f"| {shape} | {1e3 * min(t['xla']):.3f} | {1e3 * min(t['host']):.3f} | {pick} | "
                     f"{min(t['xla']) / min(t['host']):.1f}x |")
    return lines


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", default="docs/benchmarks/transport.md")
    parser.add_argument("--one-core", action="store_true", help="pin the process (both libraries) to one core")
    args = parser.parse_args()
    command = "XLA_FLAGS='--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1' " + \
        ".venv/bin/python benchmarks/transport.py " + " ".join(sys.argv[1:])
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    header = [
        "# Benchmark: sliced Wasserstein (ulam.transport) against POT and ott-jax",
        "",
        f"Command: `{command.strip()}`",
        "",
        f"Versions: ulam {ulam.__version__}, jax {jax.__version__}, POT {ot.__version__}, ott-jax {ott.__version__}, "
        f"numpy {np.__version__}, Python {platform.python_version()}; backend {jax.default_backend()}, "
        f"{os.cpu_count()} CPU cores, {_one_core.DESCRIPTION}. Load average at start: {load:.1f}.",
        "",
        "Absolute times move with the load (above); every comparison "
        "alternates the libraries within one process on the same inputs, and the ratios use the minimum over "
        "repeats. POT runs on NumPy float32 arrays, ott-jax and ulam on the same values as JAX arrays; each call "
        "draws its own L = 100 directions.",
        "",
    ]
    body = []
    lines, r1 = per_call(args.repeats)
    body += lines + [""]
    lines, r2 = time_to_stderr(max(3, args.repeats // 3))
    body += lines + [""]
    body += sort_paths(args.repeats) + [""]
    summary = ["## Summary", ""]
    for dim, (r, t) in r1.items():
        summary.append(f"- SW, L = 100, d = {dim}: ulam {r:.1f}x faster than POT (target ≥ {t:g}x: "
                       f"{'met' if r >= t else 'NOT met'}).")
    for case, (r, t) in r2.items():
        summary.append(f"- Time to 1% standard error, {case}: LCV-SW {r:.0f}x faster than POT's plain estimator "
                       f"(target ≥ {t:g}x: {'met' if r >= t else 'NOT met'}).")
    text = "\n".join(header + summary + [""] + body)
    print(text)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + "\n")


if __name__ == "__main__":
    main()
