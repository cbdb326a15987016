"""Integration overhead and speed, side by side in one process.

1. ulam.monte_carlo against the hand-written jitted one-liner
   ``jnp.mean(f(p.sample(key, (n,))))`` (and the same with a standard error), n = 10^7.
2. ulam against the NumPy/SciPy code a user would otherwise write:
   plain MC (``rng.standard_normal`` + ``np.exp``), and RQMC (``scipy.stats.qmc.Sobol``
   with scrambling, 16 randomizations).
3. Peak memory of n = 10^8 draws in a fresh process.

Run: ``.venv/bin/python benchmarks/integrate.py`` (writes docs/benchmarks/integrate.md).
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import _one_core  # noqa: E402  (before jax: one core, see its docstring)

import platform
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import scipy
from scipy.stats import qmc

import ulam

REPEATS = 5
N = 10**7
NORMAL = dist.Normal(0.0, 1.0)


def f(x):
    return jnp.exp(x)


def timed(fn, *args):
    start = time.perf_counter()
    out = fn(*args)
    jax.block_until_ready(out)
    return time.perf_counter() - start, out


def alternating(cases: dict, repeats=REPEATS):
    """Compile each case once, then time them in turn, ``repeats`` rounds (fair under varying load)."""
    compile_s = {name: timed(fn, *args)[0] for name, (fn, args) in cases.items()}
    runs = {name: [] for name in cases}
    for _ in range(repeats):
        for name, (fn, args) in cases.items():
            runs[name].append(timed(fn, *args)[0])
    return {name: (max(compile_s[name] - min(runs[name]), 0.0), runs[name]) for name in cases}


@jax.jit
def handwritten_mean(key):
    return jnp.mean(f(NORMAL.sample(key, (N,))))


@jax.jit
def handwritten_mean_and_se(key):
    y = f(NORMAL.sample(key, (N,)))
    return jnp.mean(y), jnp.std(y, ddof=1) / jnp.sqrt(N)


def ulam_mc(key):
    return ulam.monte_carlo(f, NORMAL, key, N).mean


def numpy_mc(seed):
    """NumPy at ulam's precision: float32 draws (ziggurat on PCG64) and float32 arithmetic."""
    rng = np.random.default_rng(seed)
    y = np.exp(rng.standard_normal(N, dtype=np.float32))
    return y.mean(), y.std(ddof=1) / np.sqrt(N)


def numpy_mc_default(seed):
    """The NumPy a user writes without thinking about dtypes: float64 throughout."""
    rng = np.random.default_rng(seed)
    y = np.exp(rng.standard_normal(N))
    return y.mean(), y.std(ddof=1) / np.sqrt(N)


D, M, R = 5, 2**16, 16


def smooth5(u):
    return jnp.prod(1.0 + 0.5 * jnp.sin(2.0 * jnp.pi * u) + u, axis=-1)


CUBE5 = ulam.from_uniform(D, lambda u: u)


_smooth_single = lambda u: smooth5(u)  # one object so the compiled body is reused


def ulam_rqmc_cached(key):
    return ulam.quasi_monte_carlo(_smooth_single, CUBE5, key, M * R, num_randomizations=R).mean


def scipy_rqmc(seed):
    rng = np.random.default_rng(seed)
    means = []
    for _ in range(R):
        u = qmc.Sobol(D, scramble=True, seed=rng).random_base2(16)
        means.append(np.prod(1.0 + 0.5 * np.sin(2.0 * np.pi * u) + u, axis=-1).mean())
    return np.mean(means), np.std(means, ddof=1) / np.sqrt(R)


def peak_memory_mb(n: int, batch_size: int | None) -> float:
    code = (
        "import resource, jax, jax.numpy as jnp, numpyro.distributions as d, ulam;"
        f"e = ulam.monte_carlo(jnp.exp, d.Normal(0., 1.), jax.random.key(0), {n}, batch_size={batch_size});"
        "print(float(e.mean)); print(int([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]) / 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ)
    return float(out.stdout.split()[-1])


def main() -> str:
    key = jax.random.key(0)
    rows = []
    # 1. overhead against the one-liner, and 2. RQMC against SciPy: alternating rounds
    res = alternating({
        "hand-written jitted mean": (handwritten_mean, (key,)),
        "hand-written jitted mean + stderr": (handwritten_mean_and_se, (key,)),
        "ulam.monte_carlo": (ulam_mc, (key,)),
        "NumPy (PCG64, float32)": (numpy_mc, (0,)),
        "NumPy (PCG64, float64 default)": (numpy_mc_default, (0,)),
        "rqmc-ulam": (ulam_rqmc_cached, (key,)),
        "rqmc-scipy": (scipy_rqmc, (0,)),
    })
    for name in list(res)[:5]:
        rows.append((name, *res[name]) if not name.startswith("NumPy") else (name, 0.0, res[name][1]))  # NumPy compiles nothing
    t_hand, t_hand_se, t_ulam, t_np, t_np64 = (res[name][1] for name in list(res)[:5])
    c_rq, t_rq = res["rqmc-ulam"]
    t_sp = res["rqmc-scipy"][1]
    mem = {b: peak_memory_mb(10**8, b) for b in (None,)}
    mem_baseline = float(
        subprocess.run([sys.executable, "-c", "import resource, jax, jax.numpy as jnp, ulam;"
                        "jnp.ones(3).block_until_ready();"
                        "print(int([l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0]) / 1024)"],
                       capture_output=True, text=True, check=True).stdout.split()[-1]
    )

    def med(ts):
        return float(np.median(ts))

    lines = [
        "## Integration (`benchmarks/integrate.py`)",
        "",
        f"Command: `.venv/bin/python benchmarks/integrate.py` ({_one_core.DESCRIPTION}; "
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores; jax {jax.__version__}, "
        f"numpyro {numpyro.__version__}, numpy {np.__version__}, scipy {scipy.__version__}).",
        "",
        f"Plain MC of E[exp X], X ~ N(0,1), n = 10^7, float32; {REPEATS} alternating rounds after each case's first (compiling) call.",
        "",
        "| code | compile (s) | run min (ms) | run median (ms) |",
        "|---|---|---|---|",
    ]
    for name, c, ts in rows:
        lines.append(f"| {name} | {c:.3f} | {1e3 * min(ts):.1f} | {1e3 * med(ts):.1f} |")
    overhead = med(t_ulam) / med(t_hand)
    overhead_se = med(t_ulam) / med(t_hand_se)
    speed_np = med(t_np) / med(t_ulam)
    lines += [
        "",
        f"- ulam / hand-written mean: **{overhead:.3f}×** (target ≤ 1.05×); "
        f"ulam / hand-written mean+stderr: **{overhead_se:.3f}×**.",
        f"- NumPy / ulam (plain MC): **{speed_np:.2f}×** faster against float32 NumPy, "
        f"**{med(t_np64) / med(t_ulam):.2f}×** against NumPy's float64 default (target ≥ 5×). Both sides are bound "
        "by normal-variate generation here, and on one CPU core JAX's counter-based threefry + inverse-erf normals "
        "are no faster than NumPy's ziggurat (slower than its float32 path), so on a CPU the ratio cannot approach "
        "5× for an integrand this cheap; an accelerator would change that (none was lent to this machine). "
        "`ULAM_BENCH_ALL_CORES=1` lets XLA split the fusion over every core (NumPy stays on one).",
        "",
        f"RQMC of a smooth 5-d integrand, 16 scrambles × 2^16 Sobol' points: ulam compile {c_rq:.2f} s, "
        f"run median {1e3 * med(t_rq):.1f} ms; SciPy `qmc.Sobol(scramble=True)` + NumPy median "
        f"{1e3 * med(t_sp):.1f} ms: **{med(t_sp) / med(t_rq):.2f}×** faster.",
        "",
        f"Peak resident memory of `ulam.monte_carlo` with n = 10^8 (default batch 2^18), fresh process: "
        f"**{mem[None]:.0f} MB** (the same process importing jax and ulam and doing nothing else: "
        f"{mem_baseline:.0f} MB). Target < 1 GB.",
    ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    text = main()
    print(text)
    out = Path(__file__).resolve().parent.parent / "docs" / "benchmarks" / "integrate.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
