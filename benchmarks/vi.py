"""Benchmark: ulam.vi against NumPyro SVI (Trace_ELBO, TraceGraph_ELBO) on the same VAE and data.

VAE: 10-d Gaussian latent, 64-128-64 tanh decoder with Bernoulli likelihood, 64-128-20 encoder
(diagonal Gaussian, reparameterised), sklearn digits binarised at 0.5, minibatches of the first
B rows, Adam(1e-3), one latent draw per row. Both sides use numpyro distributions for every
density, the same initial parameters and the same data. For each batch size the three step
functions are jitted, compiled (timed separately), then timed alternately: ``STEPS`` steps per
repeat, min and median over repeats. Writes docs/benchmarks/vi.md.

Run:  XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \\
      .venv/bin/python benchmarks/vi.py [--quick]
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.flatten_util  # noqa: E402,F401
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
import optax  # noqa: E402
from numpyro.infer import SVI, Trace_ELBO, TraceGraph_ELBO  # noqa: E402

from ulam import vi  # noqa: E402
from ulam.reproduce.programmable_vi import LATENT, _mlp, digits_binary, vae_init  # noqa: E402


def log_joint(z, theta, x):
    return jnp.sum(dist.Normal(0.0, 1.0).log_prob(z)) + jnp.sum(dist.Bernoulli(logits=_mlp(theta, z)).log_prob(x))


def guide(phi, x):
    out = _mlp(phi, x)
    return dist.Normal(out[..., :LATENT], jnp.exp(out[..., LATENT:]))


def numpyro_pair(theta0, phi0):
    flat_t, unravel_t = jax.flatten_util.ravel_pytree(theta0)
    flat_p, unravel_p = jax.flatten_util.ravel_pytree(phi0)

    def model(x):
        theta = unravel_t(numpyro.param("theta", flat_t))
        with numpyro.plate("batch", x.shape[0]):
            z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([LATENT]).to_event(1))
            numpyro.sample("x", dist.Bernoulli(logits=_mlp(theta, z)).to_event(1), obs=x)

    def q(x):
        phi = unravel_p(numpyro.param("phi", flat_p))
        out = _mlp(phi, x)
        with numpyro.plate("batch", x.shape[0]):
            numpyro.sample("z", dist.Normal(out[..., :LATENT], jnp.exp(out[..., LATENT:])).to_event(1))

    return model, q


def main():
    import jax.flatten_util  # noqa: F401

    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    batches = [128, 512] if args.quick else [64, 256, 1024]
    repeats, steps = (3, 20) if args.quick else (7, 50)
    data = digits_binary()
    key = jax.random.key(0)
    theta0, phi0 = vae_init(key)
    rows = []
    for b in batches:
        x = data[:b]
        # ulam
        opt = optax.adam(1e-3)
        obj = vi.elbo(log_joint, guide)
        ustep = jax.jit(vi.make_step(obj, opt))
        uparams = (theta0, phi0)
        ustate = opt.init(uparams)
        # numpyro
        model, q = numpyro_pair(theta0, phi0)
        svis = {name: SVI(model, q, numpyro.optim.Adam(1e-3), loss()) for name, loss in
                (("Trace_ELBO", Trace_ELBO), ("TraceGraph_ELBO", TraceGraph_ELBO))}
        nstates = {name: s.init(key, x) for name, s in svis.items()}
        nsteps = {name: jax.jit(s.update) for name, s in svis.items()}

        step_keys = list(jax.random.split(key, steps))  # made before timing: no eager key ops in the loop

        def run_ulam(n, p=uparams, s=ustate):
            for i in range(n):
                p, s, v = ustep(p, s, step_keys[i], x)
            jax.block_until_ready(p)

        def run_np(name, n):
            st = nstates[name]
            for _ in range(n):
                st, loss = nsteps[name](st, x)
            jax.block_until_ready(loss)

        compile_s = {}
        t0 = time.perf_counter(); run_ulam(1); compile_s["ulam"] = time.perf_counter() - t0  # noqa: E702
        for name in svis:
            t0 = time.perf_counter(); run_np(name, 1); compile_s[name] = time.perf_counter() - t0  # noqa: E702
        times = {k: [] for k in compile_s}
        for r in range(repeats):
            t0 = time.perf_counter(); run_ulam(steps); times["ulam"].append((time.perf_counter() - t0) / steps)  # noqa: E702
            for name in svis:
                t0 = time.perf_counter(); run_np(name, steps); times[name].append((time.perf_counter() - t0) / steps)  # noqa: E702
        mins = {k: min(v) * 1e3 for k, v in times.items()}
        meds = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
        rows.append((b, mins, meds, compile_s))
        print(f"batch {b}: " + ", ".join(f"{k} {mins[k]:.3f} ms" for k in mins), flush=True)

    lines = [
        "# ulam.vi vs NumPyro SVI — VAE ELBO training step",
        "",
        "Command: `XLA_FLAGS=\"--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1\" "
        f".venv/bin/python benchmarks/vi.py{' --quick' if args.quick else ''}`",
        "",
        f"Versions: python {platform.python_version()}, jax {jax.__version__}, numpyro {numpyro.__version__}, "
        f"optax {optax.__version__}; CPU, one XLA thread. The machine was shared with other jobs while this ran, "
        "so absolute times are noisy; the three implementations were timed alternately, so ratios are comparable.",
        "",
        "Same VAE (10-d latent, 64-128-64 tanh networks, Bernoulli likelihood), same initial parameters, same data "
        "(sklearn digits binarised), Adam(1e-3), one reparameterised draw per row. Time per jitted step "
        f"({steps} steps per repeat, {repeats} alternating repeats).",
        "",
        "| batch | ulam ms (min / median) | NumPyro Trace_ELBO ms | NumPyro TraceGraph_ELBO ms | ulam / Trace_ELBO | "
        "ulam / TraceGraph_ELBO | compile s (ulam / Trace / TraceGraph) |",
        "|---|---|---|---|---|---|---|",
    ]
    for b, mins, meds, comp in rows:
        lines.append(
            f"| {b} | {mins['ulam']:.3f} / {meds['ulam']:.3f} | {mins['Trace_ELBO']:.3f} / {meds['Trace_ELBO']:.3f} | "
            f"{mins['TraceGraph_ELBO']:.3f} / {meds['TraceGraph_ELBO']:.3f} | {mins['ulam'] / mins['Trace_ELBO']:.3f} | "
            f"{mins['ulam'] / mins['TraceGraph_ELBO']:.3f} | {comp['ulam']:.2f} / {comp['Trace_ELBO']:.2f} / "
            f"{comp['TraceGraph_ELBO']:.2f} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(__file__).resolve().parent.parent / "docs" / "benchmarks" / "vi.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
