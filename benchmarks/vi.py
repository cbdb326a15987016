"""Benchmark: ulam.vi against NumPyro SVI (Trace_ELBO, TraceGraph_ELBO) on the same VAE and data.

VAE: 10-d Gaussian latent, 64-128-64 tanh decoder with Bernoulli likelihood, 64-128-20 encoder
(diagonal Gaussian, reparameterised), sklearn digits binarised at 0.5, minibatches of the first
B rows, one latent draw per row. Both sides use numpyro distributions for every density, the
same parameter pytree (NumPyro: one ``numpyro.param`` per network holding the same dict as
ulam's), the same initial values, the same data, and the SAME optimizer: ``optax.adam(1e-3)``
(NumPyro through ``numpyro.optim.optax_to_numpyro``), so the comparison is of the VI machinery.

Five implementations: ulam, NumPyro's Trace_ELBO and TraceGraph_ELBO, and the same step written by
hand in JAX (parameters as a tuple, and as a dict ordered as NumPyro stores them). Two ways of
stepping, each timed for all five:

* ``step``: one jitted call per training step, parameters and optimizer state donated
  (``donate_argnums``) on every side, so no side pays for copying its state;
* ``scan``: ``STEPS`` steps inside one jitted ``lax.scan`` (how ``ulam.vi.fit`` and
  ``SVI.run`` train), which measures the compiled step without Python dispatch.

Compilation (``lower().compile()``) is timed separately. Every repeat runs each implementation
once, in an order that rotates between repeats; ratios are paired (per repeat, then the median,
with a bootstrap interval). Writes docs/benchmarks/vi.md.

Run:  XLA_FLAGS="--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1" \\
      .venv/bin/python benchmarks/vi.py [--quick]
"""

from __future__ import annotations

import os

os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import _one_core  # noqa: E402  (before jax: one core, see its docstring)

import argparse  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import numpyro  # noqa: E402
import numpyro.distributions as dist  # noqa: E402
import optax  # noqa: E402
from numpyro.infer import SVI, Trace_ELBO, TraceGraph_ELBO  # noqa: E402

from ulam import vi  # noqa: E402
from ulam.reproduce.programmable_vi import LATENT, _mlp, digits_binary, vae_init  # noqa: E402

LR = 1e-3
IMPLS = ("ulam", "Trace_ELBO", "TraceGraph_ELBO", "hand", "hand_dict")


def log_joint(z, theta, x):
    return jnp.sum(dist.Normal(0.0, 1.0).log_prob(z)) + jnp.sum(dist.Bernoulli(logits=_mlp(theta, z)).log_prob(x))


def guide(phi, x):
    out = _mlp(phi, x)
    return dist.Normal(out[..., :LATENT], jnp.exp(out[..., LATENT:]))


def numpyro_pair(theta0, phi0):
    """The same VAE as NumPyro model/guide; each network's parameter dict is one ``numpyro.param``."""

    def model(x):
        theta = numpyro.param("theta", theta0)
        with numpyro.plate("batch", x.shape[0]):
            z = numpyro.sample("z", dist.Normal(0.0, 1.0).expand([LATENT]).to_event(1))
            numpyro.sample("x", dist.Bernoulli(logits=_mlp(theta, z)).to_event(1), obs=x)

    def q(x):
        phi = numpyro.param("phi", phi0)
        out = _mlp(phi, x)
        with numpyro.plate("batch", x.shape[0]):
            numpyro.sample("z", dist.Normal(out[..., :LATENT], jnp.exp(out[..., LATENT:])).to_event(1))

    return model, q


def _copy(tree):
    return jax.tree_util.tree_map(jnp.copy, tree)


def _hand_step(opt, as_dict):
    """A hand-written reparameterised ELBO step (the overhead baseline of the programmable-VI paper)."""

    def step(params, opt_state, key, x):
        def loss(p):
            theta, phi = (p["theta"], p["phi"]) if as_dict else p
            q = guide(phi, x)
            z = q.rsample(key)
            value = log_joint(z, theta, x) - jnp.sum(q.log_prob(z))
            return -value, value

        grads, value = jax.grad(loss, has_aux=True)(params)
        updates, opt_state = opt.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value

    return step


def build(b, data, key, steps):
    """Per implementation: (compiled step, compiled scan, fresh-state factory, step keys)."""
    x = jnp.asarray(data[:b])
    theta0, phi0 = vae_init(key)
    opt = optax.adam(LR)
    ustep = vi.make_step(vi.elbo(log_joint, guide), opt)
    params0 = (theta0, phi0)
    ustate0 = (params0, opt.init(params0))
    keys = jax.random.split(jax.random.key(1), steps)
    key_list = list(keys)  # indexed on the host: no eager device op inside the timed loop

    def jax_impl(step, state0):
        """A step ``(params, opt_state, key, x) -> (params, opt_state, value)``, jitted per step and in a scan."""

        def scan(state, keys, x):
            def body(c, k):
                p, s, v = step(c[0], c[1], k, x)
                return (p, s), v

            return jax.lax.scan(body, state, keys)

        return dict(
            step=jax.jit(lambda st, k, x: (lambda p, s, v: ((p, s), v))(*step(st[0], st[1], k, x)), donate_argnums=0),
            scan=jax.jit(scan, donate_argnums=0),
            init=lambda: _copy(state0),
            step_args=lambda i: (key_list[i], x),
            scan_args=(keys, x),
        )

    impls = {"ulam": jax_impl(ustep, ustate0)}
    # The same step written by hand in JAX, with the parameters as ulam takes them, (theta, phi),
    # and as NumPyro stores them, a dict whose sorted keys put the guide's first.
    for name, p0 in (("hand", params0), ("hand_dict", {"phi": phi0, "theta": theta0})):
        impls[name] = jax_impl(_hand_step(opt, isinstance(p0, dict)), (p0, opt.init(p0)))
    model, q = numpyro_pair(theta0, phi0)
    for name, loss in (("Trace_ELBO", Trace_ELBO), ("TraceGraph_ELBO", TraceGraph_ELBO)):
        svi = SVI(model, q, numpyro.optim.optax_to_numpyro(optax.adam(LR)), loss())
        nstate0 = svi.init(key, x)

        def nscan(state, x, svi=svi):
            return jax.lax.scan(lambda s, _: svi.update(s, x), state, None, length=steps)

        impls[name] = dict(
            step=jax.jit(svi.update, donate_argnums=0),
            scan=jax.jit(nscan, donate_argnums=0),
            init=lambda s0=nstate0: _copy(s0),
            step_args=lambda i: (x,),
            scan_args=(x,),
        )
    return impls


def time_mode(impls, mode, steps, repeats):
    compiled, compile_s, sizes = {}, {}, {}
    for name, im in impls.items():
        args = im["step_args"](0) if mode == "step" else im["scan_args"]
        t0 = time.perf_counter()
        compiled[name] = im[mode].lower(im["init"](), *args).compile()
        compile_s[name] = time.perf_counter() - t0
        sizes[name] = _hlo_size(compiled[name].as_text())

    def run(name):
        im, f = impls[name], compiled[name]
        st = im["init"]()
        jax.block_until_ready(st)
        t0 = time.perf_counter()
        if mode == "step":
            for i in range(steps):
                st, _ = f(st, *im["step_args"](i))
        else:
            st, _ = f(st, *im["scan_args"])
        jax.block_until_ready(st)
        return (time.perf_counter() - t0) / steps

    for name in impls:  # warm-up run (first-call allocations)
        run(name)
    times = {name: [] for name in impls}
    names = list(impls)
    for r in range(repeats):  # the order rotates, so every implementation runs in every position equally often
        for name in names[r % len(names):] + names[:r % len(names)]:
            times[name].append(run(name))
    return times, compile_s, sizes


def paired_ratio(a, b, *, resamples=4000, seed=0):
    """Median over repeats of a[i] / b[i] (runs of the same repeat saw the same load), with a 95% bootstrap CI."""
    r = np.asarray(a) / np.asarray(b)
    rng = np.random.default_rng(seed)
    boot = np.median(r[rng.integers(0, r.size, (resamples, r.size))], axis=1)
    lo, hi = np.quantile(boot, [0.025, 0.975])
    return float(np.median(r)), float(lo), float(hi)


def _hlo_size(text):
    """(top-level ops of the entry computation, all HLO instructions): a load-independent size of the step."""
    entry = re.search(r"ENTRY.*?\n\}", text, re.S).group(0)
    op = r"= [^ ]+(?:\{[^}]*\})? [a-z\-]+\("
    return len(re.findall(op, entry)), len(re.findall(op, text))


LOAD_AT_START = os.getloadavg()[0]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args()
    batches = [64, 256] if args.quick else [64, 256, 1024]
    repeats, steps = (5, 20) if args.quick else (41, 40)
    data = digits_binary()
    key = jax.random.key(0)
    rows = []
    for b in batches:
        impls = build(b, data, key, steps)
        for mode in ("step", "scan"):
            times, comp, sizes = time_mode(impls, mode, steps, repeats)
            meds = {k: float(np.median(v)) * 1e3 for k, v in times.items()}
            paired = {k: paired_ratio(v, times["Trace_ELBO"]) for k, v in times.items()}
            paired["ulam/TraceGraph_ELBO"] = paired_ratio(times["ulam"], times["TraceGraph_ELBO"])
            rows.append((b, mode, meds, comp, sizes, paired))
            print(f"batch {b} {mode}: " + ", ".join(f"{k} {meds[k]:.3f} ms ({paired[k][0]:.3f})" for k in meds), flush=True)

    def ci(r):
        return f"**{r[0]:.3f}** [{r[1]:.3f}, {r[2]:.3f}]"

    lines = [
        "# ulam.vi vs NumPyro SVI — VAE ELBO training step",
        "",
        "Command: `XLA_FLAGS=\"--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1\" "
        f".venv/bin/python benchmarks/vi.py{' --quick' if args.quick else ''}`",
        "",
        f"Versions: python {platform.python_version()}, jax {jax.__version__}, numpyro {numpyro.__version__}, "
        f"optax {optax.__version__}; CPU, {_one_core.DESCRIPTION}. 1-minute load average {LOAD_AT_START:.1f} at the start and "
        f"{os.getloadavg()[0]:.1f} at the end, on {os.cpu_count()} cores (above the core count, times are noisy).",
        "",
        "Same VAE (10-d latent, 64-128-64 tanh networks, Bernoulli likelihood), same parameter pytree and initial "
        "values, same data (sklearn digits binarised), the same optimizer `optax.adam(1e-3)` on both sides "
        "(NumPyro via `optax_to_numpyro`), one reparameterised draw per row. `step`: one jitted call per step "
        "with parameters and optimizer state donated on every side; `scan`: "
        f"{steps} steps inside one jitted `lax.scan` (as `ulam.vi.fit` and `SVI.run` train). Time per step over "
        f"{steps} steps per repeat; {repeats} repeats, each running every implementation once in an order that "
        "rotates from repeat to repeat; compile time (`lower().compile()`) separate. **Ratios are paired**: the "
        "median over repeats of (ulam's time ÷ the anchor's time in the same repeat), which cancels load that "
        "changes between repeats, with a 95% bootstrap interval over repeats in brackets. The last column counts "
        "the optimised HLO of each compiled step (top-level ops of the entry computation / all instructions), a "
        "load-independent measure of the work per step; Trace_ELBO and TraceGraph_ELBO compile to the same "
        "program here (reparameterised guide), so the spread between their timings shows the noise.",
        "",
        "| batch | mode | median ms: ulam / Trace_ELBO / TraceGraph_ELBO | ulam ÷ Trace_ELBO | ulam ÷ TraceGraph_ELBO "
        "| compile s (ulam / Trace / TraceGraph) | compiled size: entry ops / all HLO ops (ulam; NumPyro Trace) |",
        "|---|---|---|---|---|---|---|",
    ]
    for b, mode, meds, comp, sizes, paired in rows:
        lines.append(
            f"| {b} | {mode} | {meds['ulam']:.3f} / {meds['Trace_ELBO']:.3f} / {meds['TraceGraph_ELBO']:.3f} | "
            f"{ci(paired['ulam'])} | {ci(paired['ulam/TraceGraph_ELBO'])} | "
            f"{comp['ulam']:.2f} / {comp['Trace_ELBO']:.2f} / {comp['TraceGraph_ELBO']:.2f} | "
            f"{sizes['ulam'][0]} / {sizes['ulam'][1]}; {sizes['Trace_ELBO'][0]} / {sizes['Trace_ELBO'][1]} |"
        )
    lines += [
        "",
        "The same step written by hand in JAX, paired ratio to Trace_ELBO as above. *hand*: parameters as ulam "
        "takes them, the tuple `(theta, phi)`; *hand, dict*: the identical code with the parameters in a dict, "
        "which JAX flattens in sorted-key order, guide (`phi`) first, as NumPyro's parameter store does. The two "
        "hand-written steps differ in nothing but the order of the parameter leaves.",
        "",
        "| batch | mode | median ms: hand / hand, dict | ÷ Trace_ELBO: ulam | hand | hand, dict |",
        "|---|---|---|---|---|---|",
    ]
    for b, mode, meds, comp, sizes, paired in rows:
        lines.append(
            f"| {b} | {mode} | {meds['hand']:.3f} / {meds['hand_dict']:.3f} | {ci(paired['ulam'])} | "
            f"{ci(paired['hand'])} | {ci(paired['hand_dict'])} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    out = Path(__file__).resolve().parent.parent / "docs" / "benchmarks" / "vi.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    if not args.quick:
        out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
