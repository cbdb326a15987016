"""The classic comparison of gradient estimators (Mohamed, Rosca, Figurnov & Mnih, JMLR 2020 §3; Dong et al. 2020).

(a) d/dμ E_{N(μ,σ)}[x²] = 2μ: score function (plain, leave-one-out, optimal baseline), pathwise, measure-valued.
(b) d/dθ E[(b − 0.45)²] for three independent Bernoulli(σ(θ_k)): score function, RLOO, ARM, DisARM, REBAR,
    measure-valued, Gumbel-softmax (biased), exact enumeration.
(b2) two coupled 4-way categoricals: REINFORCE-LOO, ARSM, stick-breaking DisARM (Dong, Mnih & Tucker 2021)
    and categorical RELAX, against exact enumeration.
(c) a binary-latent VAE on sklearn digits at a fixed point: gradient variance of VIMCO(4), RLOO(4),
    DisARM and straight-through Gumbel for the encoder parameters.
Reported: bias in standard errors, variance per sample, time per sample, and variance × time (work-normalised).
"""

from __future__ import annotations

import time

import jax
import jax.flatten_util
import jax.numpy as jnp
import matplotlib
import numpy as np
import numpyro.distributions as dist

from ulam import Estimate
from ulam import grad as G
from ulam import vi
from ulam.reproduce import Outcome, Reproduction, claim, markdown_table

matplotlib.use("Agg")

WORK_REPEATS = 4  # timed calls per categorical estimator, for the se of the work-normalised ratio


def _variance(est):
    s = np.ravel(np.asarray(jax.flatten_util.ravel_pytree(est.stderr)[0]))
    return float(np.sum(s**2) * int(np.asarray(est.n)))


def _measure(fn, key, repeats=2):
    """The estimate at ``key`` (after compiling), its best time over ``repeats`` further calls, and each timed call's
    (variance per sample, seconds): independent keys, so the work figure can be given with an se over calls."""
    est = fn(key)
    jax.block_until_ready(est.mean)
    best, runs = np.inf, []
    for r in range(repeats):
        t0 = time.perf_counter()
        other = fn(jax.random.fold_in(key, r + 1))
        jax.block_until_ready(other.mean)
        seconds = time.perf_counter() - t0
        best = min(best, seconds)
        runs.append((_variance(other), seconds))
    return est, best, runs


def _stats(est, truth, seconds):
    m = np.ravel(np.asarray(jax.flatten_util.ravel_pytree(est.mean)[0]))
    s = np.ravel(np.asarray(jax.flatten_util.ravel_pytree(est.stderr)[0]))
    n = int(np.asarray(est.n))
    var = float(np.sum(s**2) * n)
    # float32 rounding allowance (1e-5 relative) so exact (zero-variance) estimators are not divided by ~0
    z = float(np.max(np.abs(m - truth) / np.sqrt(s**2 + (1e-5 * np.abs(truth)) ** 2))) if truth is not None else float("nan")
    per_sample = seconds / n
    return z, var, per_sample, var * per_sample


def _table(ctx, cases, truth, n, repeats=2):
    rows, out = [], {}
    for i, (name, fn, unbiased) in enumerate(cases):
        ctx.progress(name)
        est, sec, runs = _measure(jax.jit(fn), ctx.key(200 + i), repeats)
        z, var, t, work = _stats(est, truth, sec)
        out[name] = (z, var, t, work, unbiased, np.array([v * s / n for v, s in runs]))
        rows.append([name, z, var, t * 1e6, work * 1e6, "yes" if unbiased else "no"])
    table = markdown_table(["estimator", "max |bias| / se", "variance per sample", "µs per sample",
                            "variance × µs", "unbiased"], rows)
    return table, out


def run(ctx) -> Outcome:
    n = ctx.size(5_000, 200_000)  # quick: compile time dominates, 5,000 draws keep every |z| claim meaningful
    claims, tables, figures = [], [], []
    # (a) Gaussian
    mu = 1.0
    N = lambda th: dist.Normal(th, 1.0)  # noqa: E731
    sq = lambda x, th: x**2  # noqa: E731
    cases_a = [
        ("score function", lambda k: G.score_function_gradient(sq, N, mu, k, n), True),
        ("score function + leave-one-out", lambda k: G.score_function_gradient(sq, N, mu, k, n, baseline="leave_one_out"), True),
        ("score function + optimal baseline", lambda k: G.score_function_gradient(sq, N, mu, k, n, baseline="optimal"), True),
        ("pathwise", lambda k: G.pathwise_gradient(sq, N, mu, k, n), True),
        ("measure-valued", lambda k: G.measure_valued_gradient(sq, N, mu, k, n), True),
    ]
    ta, ra = _table(ctx, cases_a, np.array([2 * mu]), n)
    tables.append("**(a) d/dμ E_{N(μ,1)}[x²] at μ = 1 (truth 2)**\n\n" + ta)
    claims.append(claim("(a) max |z| of the unbiased estimators", max(v[0] for v in ra.values()), "<=", 3.0))
    claims.append(claim("(a) variance ratio score function / pathwise", ra["score function"][1] / ra["pathwise"][1], ">=", 1.0,
                        paper="exactly 30 / 4 = 7.5 for x² under N(1, 1); pathwise lower variance (Mohamed et al. "
                              "2020 §3)"))

    # (b) Bernoulli
    th = jnp.array([0.3, -1.0, 0.5])
    B = lambda t: dist.Bernoulli(logits=t)  # noqa: E731
    fb = lambda b, t: jnp.sum((b - 0.45) ** 2)  # noqa: E731
    s = np.asarray(jax.nn.sigmoid(th))
    truth_b = 0.1 * s * (1 - s)
    cases_b = [
        ("score function", lambda k: G.score_function_gradient(fb, B, th, k, n), True),
        ("RLOO", lambda k: G.score_function_gradient(fb, B, th, k, n, baseline="leave_one_out"), True),
        ("ARM", lambda k: G.arm_gradient(fb, B, th, k, n), True),
        ("DisARM", lambda k: G.disarm_gradient(fb, B, th, k, n), True),
        ("REBAR", lambda k: G.rebar_gradient(fb, B, th, k, n), True),
        ("measure-valued", lambda k: G.measure_valued_gradient(fb, B, th, k, n), True),
        ("Gumbel-softmax (τ = 0.5)", lambda k: G.gumbel_softmax_gradient(fb, B, th, k, n), False),
    ]
    tb, rb = _table(ctx, cases_b, truth_b, n)
    exact = np.asarray(G.enumeration_gradient(fb, B, th).mean)
    tables.append("**(b) d/dθ E[Σ(b − 0.45)²], three Bernoulli(σ(θ)), θ = (0.3, −1, 0.5)** — enumeration gives "
                  f"{np.round(exact, 6).tolist()} (closed form {np.round(truth_b, 6).tolist()})\n\n" + tb)
    claims.append(claim("(b) max |z| of the unbiased estimators", max(v[0] for v in rb.values() if v[4]), "<=", 3.0))
    claims.append(claim("(b) variance ratio DisARM / ARM", rb["DisARM"][1] / rb["ARM"][1], "<=", 1.0,
                        paper="DisARM ≤ ARM: a Rao-Blackwellisation of ARM (Dong et al. 2020)"))
    claims.append(claim("(b) enumeration error vs closed form", float(np.max(np.abs(exact - truth_b))), "<=", 1e-6))

    # (b2) categorical: two coupled 4-way categoricals, exact gradient by enumeration (16 configurations)
    Wc = jnp.array([[0.3, -1.0, 2.0, 0.5], [1.0, 0.0, -0.5, 0.2]])
    th_c = jnp.array([[0.2, -0.5, 1.0, 0.1], [0.0, 0.7, -0.3, 0.4]])
    Cat = lambda t: dist.Categorical(logits=t)  # noqa: E731

    def fc(z, t):
        return (Wc[0, z[0]] * Wc[1, z[1]] + Wc[1, z[1]]) ** 2

    def relax_control(zr, psi):  # the objective at the relaxed one-hot of the Gumbel logits
        sm = jax.nn.softmax(zr)
        return psi * ((sm[0] @ Wc[0]) * (sm[1] @ Wc[1]) + sm[1] @ Wc[1]) ** 2

    truth_c = np.ravel(np.asarray(G.enumeration_gradient(fc, Cat, th_c).mean))
    cases_c2 = [
        ("REINFORCE + leave-one-out (1 evaluation)", lambda k: G.score_function_gradient(fc, Cat, th_c, k, n, baseline="leave_one_out"), True),
        ("ARSM (C(C-1)/2 + 1 = 7 evaluations)", lambda k: G.arsm_gradient(fc, Cat, th_c, k, n), True),
        ("DisARM, stick-breaking (2 evaluations)", lambda k: G.categorical_disarm_gradient(fc, Cat, th_c, k, n), True),
        ("RELAX, conditional Gumbel (fixed control)", lambda k: G.relax_gradient(fc, Cat, th_c, k, n, control=relax_control,
                                                                                 control_params=jnp.asarray(1.0)), True),
    ]
    tc2, rc2 = _table(ctx, cases_c2, truth_c, n, repeats=WORK_REPEATS)
    tables.append("**(b2) d/dθ E[f(z)] for two coupled 4-way categoricals (exact by enumeration)**\n\n" + tc2)
    claims.append(claim("(b2) max |z| of the unbiased categorical estimators", max(v[0] for v in rc2.values()), "<=", 3.0))
    dis, arsm = rc2["DisARM, stick-breaking (2 evaluations)"], rc2["ARSM (C(C-1)/2 + 1 = 7 evaluations)"]
    # Work-normalised variance multiplies by wall-clock time, which depends on machine load: reported, not gated.
    work_ratio = dis[5] / arsm[5]  # per timed call (independent keys), the i-th call of each paired
    work_note = (f"(b2) work-normalised variance, categorical DisARM / ARSM: {dis[3] / arsm[3]:.3g} (min times); "
                 f"{work_ratio.mean():.3g} ± {work_ratio.std(ddof=1) / np.sqrt(len(work_ratio)):.2g} (mean ± se over "
                 f"{len(work_ratio)} timed calls with independent keys); variance alone "
                 f"{dis[1] / arsm[1]:.3g}. Paper: categorical DisARM outperforms ARSM (Dong, Mnih & Tucker 2021). "
                 "Reported, not gated: it includes wall-clock time, which depends on machine load.")

    # (c) binary VAE at a fixed point
    ctx.progress("binary VAE")
    from sklearn.datasets import load_digits

    x = jnp.asarray((load_digits().data[:32] / 16.0 > 0.5).astype(np.float32))
    latent = 8
    k1, k2 = jax.random.split(ctx.key(300))
    theta = {"w": jax.random.normal(k1, (latent, 64)) * 0.3, "b": jnp.zeros(64)}
    phi = {"w": jax.random.normal(k2, (64, latent)) * 0.1, "b": jnp.zeros(latent)}

    def log_joint(z, theta):
        logits = z.astype(jnp.float32) @ theta["w"] + theta["b"]
        return jnp.sum(dist.Bernoulli(probs=0.5).log_prob(z)) + jnp.sum(x * logits - jax.nn.softplus(logits))

    def guide(phi):
        return dist.Bernoulli(logits=x @ phi["w"] + phi["b"])

    def elbo_f(b, params):
        theta, phi = params
        return log_joint(b, theta) - jnp.sum(guide(phi).log_prob(b))

    q_of = lambda params: guide(params[1])  # noqa: E731
    m = ctx.size(200, 4000)
    params = (theta, phi)

    def elbo_prog(t, params):
        z = t.sample("z", guide(params[1]), G.baseline("leave_one_out"))
        return log_joint(z, params[0]) - jnp.sum(guide(params[1]).log_prob(z))

    def rloo(k):  # m draws of the 4-sample RLOO estimator
        ests = jax.vmap(lambda kk: G.program_gradient(elbo_prog, params, kk, 4).mean)(jax.random.split(k, m))
        return Estimate.from_samples(ests)

    def vimco(k):
        _, g = vi.vimco(log_joint, guide, 4).grad_estimate(params, k, m)
        return g

    cases_c = [
        ("VIMCO (K = 4, IWAE-4 gradient)", vimco, True),
        ("RLOO (4 samples, ELBO gradient)", rloo, True),
        ("DisARM (1 pair = 2 evaluations, ELBO gradient)", lambda k: G.disarm_gradient(elbo_f, q_of, params, k, m), True),
        ("straight-through Gumbel (biased)", lambda k: G.gumbel_softmax_gradient(elbo_f, q_of, params, k, m, straight_through=True), False),
    ]
    rows = []
    for i, (name, fn, unbiased) in enumerate(cases_c):
        ctx.progress(f"binary VAE: {name}")
        est, sec, _ = _measure(jax.jit(fn), ctx.key(400 + i), repeats=1)
        var_phi = float(sum(np.sum(np.asarray(sv) ** 2) for sv in jax.tree_util.tree_leaves(est.stderr[1]))) * m
        rows.append([name, var_phi, sec / m * 1e6, var_phi * sec / m * 1e6, "yes" if unbiased else "no"])
    tables.append("**(c) binary-latent VAE (8 latents, 32 digits), encoder-gradient variance at initialisation**\n\n"
                  + markdown_table(["estimator", "variance per draw (encoder)", "µs per draw", "variance × µs", "unbiased"], rows))

    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for ax, res, title in ((axes[0], ra, "(a) Gaussian mean"), (axes[1], rb, "(b) Bernoulli")):
        names = list(res)
        ax.barh(names, [res[k][1] for k in names])
        ax.set_xscale("log")
        ax.set_title(title)
        ax.set_xlabel("variance per sample")
    fig.tight_layout()
    path = ctx.figure_path("estimator_variance.png")
    fig.savefig(path, dpi=100)
    plt.close(fig)
    figures.append(path)
    return Outcome(claims=claims, tables=tables, figures=figures,
                   notes=work_note + " Times are for jitted calls on CPU (min of 2; of "
                   f"{WORK_REPEATS} in (b2)), after compilation; the machine may be shared.")


REPRODUCTION = Reproduction(
    name="gradient-estimators",
    paper="Mohamed, Rosca, Figurnov & Mnih 2020, *Monte Carlo Gradient Estimation in Machine Learning* (JMLR); "
          "Dong, Mnih & Tucker 2020 (DisARM) and 2021 (categorical DisARM)",
    summary="variance of each estimator per unit of compute on Gaussian, Bernoulli and binary-VAE objectives",
    run=run,
    changes=(
        "Gate '(b2) work-normalised variance categorical DisARM / ARSM <= 1' (paper: categorical DisARM outperforms "
        "ARSM; last measured 0.0925, quick) dropped: variance x wall-clock time depends on machine load; now reported "
        "with the mean ± se of the ratio over timed calls with independent keys, beside the variance ratio alone."
    ),
)
