"""Benchmark: ulam.smc against `particles` (Chopin) and a minimal hand-written jitted JAX filter.

Bootstrap filter on the linear-Gaussian model x_t = 0.9 x_{t-1} + 0.6 u_t, y_t = x_t + v_t,
T = 100, N in (1e3, 1e4, 1e5), systematic resampling when ESS < N/2, in one process,
alternating the implementations (order reversed every repeat) in several rounds; reports min/median time per run,
compile time separately, and the log-likelihood error against the Kalman filter. Then PaRIS
(N = 1e4, T = 100, Ñ = 2) for ulam, and `particles`' PaRIS collector at N = 100 (monkeypatched
here only, see PARTICLES_PATCH; it takes minutes, so its last measurement is cached in the
Markdown output and re-measured only with --particles-paris). Writes docs/benchmarks/smc.md.

Run:  XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \\
      .venv/bin/python benchmarks/smc.py [--quick] [--particles-paris]
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")

import _one_core  # noqa: E402  (before jax: one core, see its docstring)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import math  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from jax import lax  # noqa: E402

from ulam.smc import Bootstrap, LinearGaussianModel, kalman_filter, linear_gaussian_ssm, paris, run_filter, simulate  # noqa: E402

A, SX, SY, T = 0.9, 0.6, 1.0, 100


def minimal_filter(key, y, n):
    """The smallest reasonable jitted bootstrap filter: adaptive systematic resampling, log-likelihood only."""
    p0 = SX / math.sqrt(1 - A**2)
    k0, key = jax.random.split(key)
    x = p0 * jax.random.normal(k0, (n,))
    lw = -0.5 * ((y[0] - x) / SY) ** 2 - math.log(SY * math.sqrt(2 * math.pi))
    ll = jax.scipy.special.logsumexp(lw) - math.log(n)

    def step(carry, inp):
        x, lw, ll = carry
        k, yt = inp
        k1, k2 = jax.random.split(k)
        w = jax.nn.softmax(lw)
        ess = 1.0 / jnp.sum(w**2)

        def resample():
            u = (jnp.arange(n) + jax.random.uniform(k1)) / n
            return jnp.minimum(jnp.searchsorted(jnp.cumsum(w), u), n - 1)

        a = lax.cond(ess < 0.5 * n, resample, lambda: jnp.arange(n))
        base = jnp.where(ess < 0.5 * n, -math.log(n), jnp.log(w))
        x = A * x[a] + SX * jax.random.normal(k2, (n,))
        lw = base + (-0.5 * ((yt - x) / SY) ** 2 - math.log(SY * math.sqrt(2 * math.pi)))
        inc = jax.scipy.special.logsumexp(lw)
        return (x, lw, ll + inc), None

    (_, _, ll), _ = lax.scan(step, (x, lw, ll), (jax.random.split(key, y.shape[0] - 1), y[1:]))
    return ll


def particles_model():
    import particles
    import particles.distributions as dists
    import particles.state_space_models as ssms

    class LinGauss(ssms.StateSpaceModel):
        def PX0(self):
            return dists.Normal(loc=0.0, scale=SX / math.sqrt(1 - A**2))

        def PX(self, t, xp):
            return dists.Normal(loc=A * xp, scale=SX)

        def PY(self, t, xp, x):
            return dists.Normal(loc=x, scale=SY)

        def upper_bound_log_pt(self, t):
            return -0.5 * math.log(2 * math.pi * SX**2)

        def add_func(self, t, xp, x):
            return 0.0 * x if xp is None else xp * x

    return particles, ssms, LinGauss()


PARTICLES_PATCH = """particles 0.3's `collectors.Paris.update` loops over `range(self.N)`, an attribute the collector
never sets: AttributeError on the first step (patched: `Paris.N = property(lambda self: len(self.prev_W))`).
It then calls `fk.upper_bound_log_pt(t)`, which its `Bootstrap` Feynman-Kac class does not define (it
defines `upper_bound_trans`): patched by `Bootstrap.upper_bound_log_pt = lambda self, t:
self.ssm.upper_bound_log_pt(t)`. (Also `MultinomialQueue.dequeue(1)` is made to return a scalar, to
avoid NumPy's deprecated array-to-scalar assignment in `As[m] = a`; behaviour unchanged.)"""


def patch_particles():
    import particles.collectors as collectors
    import particles.resampling as rs
    import particles.state_space_models as ssms

    if not isinstance(getattr(collectors.Paris, "N", None), property):
        collectors.Paris.N = property(lambda self: len(self.prev_W))
    if not hasattr(ssms.Bootstrap, "upper_bound_log_pt"):
        ssms.Bootstrap.upper_bound_log_pt = lambda self, t: self.ssm.upper_bound_log_pt(t)
    orig = rs.MultinomialQueue.dequeue
    if not getattr(orig, "_ulam_patched", False):

        def dequeue(self, k):
            out = orig(self, k)
            return out[0] if k == 1 else out

        dequeue._ulam_patched = True
        rs.MultinomialQueue.dequeue = dequeue


def timeit(fn, repeats, cpu=None):
    """Wall times of ``repeats`` calls (and, into the list ``cpu``, this process's CPU seconds per call)."""
    times = []
    out = None
    for _ in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        out = fn()
        times.append(time.perf_counter() - t0)
        if cpu is not None:
            cpu.append(time.process_time() - c0)
    return times, out


CACHE_TAG = "particles-paris-cache:"


def cached_particles_paris(path):
    """The last measured `particles` PaRIS time, kept in the Markdown file as an HTML comment."""
    import json
    import re

    try:
        text = Path(path).read_text()
    except OSError:
        return None
    m = re.search(r"<!-- " + CACHE_TAG + r" (\{.*?\}) -->", text)
    return json.loads(m.group(1)) if m else None


def bench_filter(n, repeats, rounds, y, exact, fk, particles, ssms, pmodel, y_np):
    """Alternate particles / minimal JAX / ulam (log L only, jitted) / ulam full result (eager call)."""
    ulam_ll = jax.jit(lambda k, yy: run_filter(k, fk, yy, n).log_likelihood.mean)
    mini = jax.jit(minimal_filter, static_argnums=2)
    t0 = time.perf_counter()
    jax.block_until_ready(ulam_ll(jax.random.key(1), y))
    compile_ll = time.perf_counter() - t0
    t0 = time.perf_counter()
    jax.block_until_ready(run_filter(jax.random.key(1), fk, y, n))
    compile_full = time.perf_counter() - t0
    jax.block_until_ready(mini(jax.random.key(1), y, n))
    times = {name: [] for name in ("particles", "minimal", "ulam_ll", "ulam_full", "ulam_lean")}
    errs = {name: [] for name in times}
    per_round = []
    p_reps = repeats if n <= 10000 else max(1, repeats // 2)
    r = 0
    for rnd in range(rounds):
        round_times = {name: [] for name in times}
        for i in range(repeats):
            r += 1
            k = jax.random.key(100 + r)
            order = ["minimal", "ulam_ll", "ulam_full", "ulam_lean", "particles"]
            if r % 2:
                order = order[::-1]  # alternate the order so drifts in load hit everyone alike
            for name in order:
                if name == "particles":
                    if i >= p_reps:
                        continue
                    alg = particles.SMC(
                        fk=ssms.Bootstrap(ssm=pmodel, data=y_np), N=n, resampling="systematic", ESSrmin=0.5
                    )
                    t0 = time.perf_counter()
                    alg.run()
                    dt, v = time.perf_counter() - t0, alg.logLt
                elif name == "minimal":
                    t0 = time.perf_counter()
                    v = float(mini(k, y, n))
                    dt = time.perf_counter() - t0
                elif name == "ulam_ll":
                    t0 = time.perf_counter()
                    v = float(ulam_ll(k, y))
                    dt = time.perf_counter() - t0
                elif name == "ulam_full":
                    t0 = time.perf_counter()
                    out = jax.block_until_ready(run_filter(k, fk, y, n))
                    dt, v = time.perf_counter() - t0, float(out.log_likelihood.mean)
                else:
                    t0 = time.perf_counter()
                    out = jax.block_until_ready(run_filter(k, fk, y, n, filtering_stderr=False))
                    dt, v = time.perf_counter() - t0, float(out.log_likelihood.mean)
                round_times[name].append(dt)
                errs[name].append(abs(v - exact))
        for name in times:
            times[name] += round_times[name]
        per_round.append({name: float(np.median(v)) for name, v in round_times.items()})
    return times, errs, per_round, compile_ll, compile_full


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--particles-paris",
        action="store_true",
        help="re-measure particles' (patched) PaRIS at N = 100: several minutes; otherwise the cached value is shown",
    )
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs" / "benchmarks" / "smc.md"))
    args = parser.parse_args()
    import particles as _p

    repeats = {1000: 9, 10000: 5, 100000: 3} if not args.quick else {1000: 5, 10000: 3}
    rounds = 3 if not args.quick else 2
    lg = LinearGaussianModel.scalar(A, SX, 1.0, SY)
    ssm = linear_gaussian_ssm(lg, batched=True)
    _, y = simulate(jax.random.key(0), ssm, T)
    y = jnp.asarray(y)
    exact = float(kalman_filter(lg, y).log_likelihood)
    particles, ssms, pmodel = particles_model()
    y_np = np.asarray(y, dtype=float)
    cache = cached_particles_paris(args.out)
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = float("nan")

    cmd = "benchmarks/smc.py" + (" --quick" if args.quick else "") + (" --particles-paris" if args.particles_paris else "")
    lines = [
        "# SMC benchmark: ulam.smc vs particles and a minimal JAX filter",
        "",
        f"Command: `XLA_FLAGS=\"--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1\" .venv/bin/python {cmd}`",
        "",
        f"Versions: jax {jax.__version__}, particles {getattr(_p, '__version__', '0.3')}, "
        f"numpy {np.__version__}, Python {platform.python_version()}, {platform.machine()} CPU, {_one_core.DESCRIPTION}. "
        f"Run {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; 1-minute load average at the start {load:.1f} on "
        f"{os.cpu_count()} cores.",
        "",
        "Every implementation runs in the same process, alternating (order reversed every repeat), in "
        "several rounds; ratios are given from the overall medians, the overall minima, and as the range of the "
        "per-round median ratios.",
        "",
        f"## Bootstrap filter, linear-Gaussian model, T = {T}",
        "",
        f"Systematic resampling at ESS < N/2. Kalman log L = {exact:.4f}. Error = mean |log L_hat - log L| over all "
        "runs. *ulam log L* = `jax.jit(lambda k, y: run_filter(k, fk, y, N).log_likelihood.mean)` (what a "
        "likelihood user compiles; XLA drops the unused outputs); *ulam full* = the plain `run_filter(...)` call "
        "returning everything (filtering means with Olsson–Douc standard errors, ESS, Lee–Whiteley variance), "
        "Python dispatch and input checks included; *ulam lean* = the same with `filtering_stderr=False`. The "
        "minimal filter computes the log-likelihood only.",
        "",
        "| N | runs | particles ms (min / med) | minimal JAX ms | ulam log L ms | ulam full ms | ulam lean ms | "
        "compile s (log L / full) | err particles / minimal / ulam |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    ratio_lines = [
        "",
        "Ratios (median-based; min-based in brackets; per-round median range in braces):",
        "",
        "| N | particles / ulam log L | particles / ulam full | ulam log L / minimal | ulam full / minimal | "
        "ulam lean / minimal |",
        "|---|---|---|---|---|---|",
    ]
    fk = Bootstrap(ssm)
    for n in repeats:
        times, errs, per_round, c_ll, c_full = bench_filter(
            n, repeats[n], rounds, y, exact, fk, particles, ssms, pmodel, y_np
        )
        med = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
        mn = {k: float(np.min(v)) * 1e3 for k, v in times.items()}
        lines.append(
            f"| {n} | {len(times['minimal'])} (particles {len(times['particles'])}) | "
            f"{mn['particles']:.1f} / {med['particles']:.1f} | {mn['minimal']:.2f} / {med['minimal']:.2f} | "
            f"{mn['ulam_ll']:.2f} / {med['ulam_ll']:.2f} | {mn['ulam_full']:.2f} / {med['ulam_full']:.2f} | "
            f"{mn['ulam_lean']:.2f} / {med['ulam_lean']:.2f} | {c_ll:.1f} / {c_full:.1f} | "
            f"{np.mean(errs['particles']):.3f} / {np.mean(errs['minimal']):.3f} / {np.mean(errs['ulam_ll']):.3f} |"
        )

        def ratio(a, b):
            rr = [pr[a] / pr[b] for pr in per_round]
            return f"{med[a] / med[b]:.2f}x [{mn[a] / mn[b]:.2f}x] {{{min(rr):.2f}–{max(rr):.2f}}}"

        ratio_lines.append(
            f"| {n} | {ratio('particles', 'ulam_ll')} | {ratio('particles', 'ulam_full')} | "
            f"{ratio('ulam_ll', 'minimal')} | {ratio('ulam_full', 'minimal')} | {ratio('ulam_lean', 'minimal')} |"
        )
        print(lines[-1], flush=True)
        print(ratio_lines[-1], flush=True)
    lines += ratio_lines

    # 200 runs vmapped at N = 1000.
    keys = jax.random.split(jax.random.key(5), 200)
    vu = jax.jit(jax.vmap(lambda k: run_filter(k, fk, y, 1000).log_likelihood.mean))
    vm = jax.jit(jax.vmap(lambda k: minimal_filter(k, y, 1000)))
    vu(keys).block_until_ready(), vm(keys).block_until_ready()
    tv_u, tv_m = [], []
    for _ in range(3 if args.quick else 5):
        tv_m.append(timeit(lambda: vm(keys).block_until_ready(), 1)[0][0])
        tv_u.append(timeit(lambda: vu(keys).block_until_ready(), 1)[0][0])
    lines += [
        "",
        f"200 runs vmapped at N = 1000 (log L only): minimal JAX {np.median(tv_m) / 200 * 1e3:.2f} ms per run, "
        f"ulam {np.median(tv_u) / 200 * 1e3:.2f} ms per run (ratio ulam / minimal {np.median(tv_u) / np.median(tv_m):.2f}x "
        f"median, {np.min(tv_u) / np.min(tv_m):.2f}x min).",
    ]
    print(lines[-1], flush=True)

    # PaRIS.
    h = lambda xp, x, yt: xp * x  # noqa: E731
    n_paris = 10000
    lines += [
        "",
        f"## PaRIS (Ñ = 2, T = {T}, additive functional sum x_(t-1) x_t)",
        "",
        "`backward=\"auto\"` at N = 10^4 is the hybrid backward sampler (2 rejection proposals, then the "
        "independent-MH kernel of Dau & Chopin (2023) started at the particle's ancestor, 2 moves): O(N Ñ) per "
        "step, no O(N^2) path. `\"exact\"` is the O(N^2) kernel (kept for small N; `auto` uses it for N <= 256).",
        "",
        "Run times are wall-clock; on one core, this process's CPU seconds per run (last column) is what "
        "the run would take on an otherwise idle core, and is robust to the other processes on the machine.",
        "",
        "| N | backward | compile s | run s wall (min / median) | run CPU s (median) | estimate | RTS truth |",
        "|---|---|---|---|---|---|---|",
    ]
    from ulam.smc import rts_smoother

    sm = rts_smoother(lg, y)
    truth = float(jnp.sum(sm.smoothed_means[:-1] * sm.smoothed_means[1:] + sm.lag_one_covs))
    paris_times = {}
    paris_cpu = {}
    for n_p, method, reps in ((n_paris, "auto", 5), (n_paris, "mcmc", 3), (100, "auto", 5)):
        fp = jax.jit(lambda k, yy: paris(k, ssm, yy, n_p, h, num_backward=2, backward=method).estimate.mean)
        t0 = time.perf_counter()
        fp(jax.random.key(1), y).block_until_ready()
        compile_p = time.perf_counter() - t0
        cpu = []
        t_p, v = timeit(lambda: fp(jax.random.key(2), y).block_until_ready(), reps, cpu)
        paris_times[(n_p, method)] = t_p
        paris_cpu[(n_p, method)] = cpu
        lines.append(
            f"| {n_p} | {method} | {compile_p:.1f} | {np.min(t_p):.3f} / {np.median(t_p):.3f} | "
            f"{np.median(cpu):.3f} | {float(v):.3f} | {truth:.3f} |"
        )
        print(lines[-1], flush=True)
    t_auto, c_auto = paris_times[(n_paris, "auto")], paris_cpu[(n_paris, "auto")]
    lines += [
        "",
        f"Target: N = 10^4 in under 2 s after compilation: median {np.median(t_auto):.3f} s wall "
        f"({'met' if np.median(t_auto) < 2 else 'NOT met'} on this machine), {np.median(c_auto):.3f} s CPU "
        f"({'met' if np.median(c_auto) < 2 else 'NOT met'}). The exact-law `\"rejection\"` sampler (O(N^2) "
        "fallback) is not timed here.",
    ]
    # particles' PaRIS at N = 100.
    from particles import collectors

    t_u100 = float(np.median(paris_times[(100, "auto")]))
    if args.particles_paris or cache is None:
        status = ""
        try:
            alg = particles.SMC(fk=ssms.Bootstrap(ssm=pmodel, data=y_np), N=100, collect=[collectors.Paris(Nparis=2)])
            alg.run()
            status = "ran unpatched"
        except Exception as err:  # noqa: BLE001 - we report how the anchor fails as released
            status = f"fails as released: {type(err).__name__}: {str(err)[:120]}"
        patch_particles()
        alg = particles.SMC(fk=ssms.Bootstrap(ssm=pmodel, data=y_np), N=100, collect=[collectors.Paris(Nparis=2)])
        t0 = time.perf_counter()
        alg.run()
        t_pp = time.perf_counter() - t0
        cache = {"seconds": t_pp, "status": status, "measured": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
        source = "measured in this run"
    else:
        t_pp, status = cache["seconds"], cache["status"]
        source = (f"cached from the run of {cache.get('measured', 'an earlier run')} (it takes minutes; "
                  "`--particles-paris` re-measures it)")
    import json

    lines += [
        f"particles 0.3 `collectors.Paris` (N = 100, Nparis = 2): {status}. After the patch below: "
        f"{t_pp:.2f} s per run ({source}); ulam PaRIS N = 100: {t_u100 * 1e3:.1f} ms (median, this run); "
        f"ratio particles / ulam at N = 100: {t_pp / t_u100:.0f}x.",
        "",
        "Patch applied in this script only:",
        "",
        "```",
        PARTICLES_PATCH,
        "```",
        "",
        f"<!-- {CACHE_TAG} {json.dumps(cache)} -->",
    ]
    text = "\n".join(lines) + "\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    sys.exit(main())
