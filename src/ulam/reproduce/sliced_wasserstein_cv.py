"""Reproduction: sliced Wasserstein estimation with control variates (Nguyen & Ho, ICLR 2024).

(a) isotropic Gaussians, where SW_2^2 = ||dm||^2/d + (s1 - s2)^2: every estimator unbiased,
    and the lower control variate (LCV) cuts the variance >= 100x at L = 10;
(b) anisotropic covariances: LCV variance <= plain MC variance at every L;
(c) variance against L for MC, LCV, UCV, RQMC and orthogonal directions (figure);
(d) a 3-D point-cloud gradient flow (sphere -> torus, n = 300): exact W2 against step.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ulam.estimate import Estimate
from ulam.reproduce import Outcome, Reproduction, claim, markdown_table
from ulam.transport import gradient_flow, sliced_wasserstein

DIM = 10
# name -> (directions, control variate, centring of the CV coefficient)
ESTIMATORS = {
    "MC": ("mc", None, "sample"),
    "LCV": ("mc", "lower", "sample"),
    "UCV": ("mc", "upper", "sample"),
    "RQMC": ("rqmc", None, "sample"),
    "orthogonal": ("orthogonal", None, "sample"),
}
OFFICIAL = {"LCV (official centring)": ("mc", "lower", "exact")}


@functools.partial(jax.jit, static_argnames=("num", "design", "cv", "centering"))
def _replicate_means(x, y, keys, num, design, cv, centering):
    def one(k):
        return sliced_wasserstein(x, y, k, num, directions=design, control_variate=cv, cv_centering=centering).mean

    return jax.vmap(one)(keys)


def _key(ctx, salt):
    # The "rbg" generator: XLA compiles the default (partitionable threefry) one about 5x slower
    # on CPU, and this reproduction compiles one estimator per (design, L).
    return jax.random.key(1_000_003 * ctx.seed + salt, impl="rbg")


def _clouds(key, n, case):
    kx, ky, ka, kb = jax.random.split(key, 4)
    if case == "isotropic":  # X ~ N(1, I), Y ~ N(-1, 4I): SW_2^2 = 40/10 + 1 = 5
        return jax.random.normal(kx, (n, DIM)) + 1.0, 2.0 * jax.random.normal(ky, (n, DIM)) - 1.0
    if case == "anisotropic":  # the digest's case: random covariances S = A A^T / d, dm = 1 (each coordinate)
        a, b = jax.random.normal(ka, (DIM, DIM)) / jnp.sqrt(DIM), jax.random.normal(kb, (DIM, DIM)) / jnp.sqrt(DIM)
        return jax.random.normal(kx, (n, DIM)) @ a.T + 1.0, jax.random.normal(ky, (n, DIM)) @ b.T

    def factor(k):  # a harder case: eigenvalues log-spaced over [0.1, 10], ||dm|| = 1
        q, _ = jnp.linalg.qr(jax.random.normal(k, (DIM, DIM)))
        return q * jnp.sqrt(jnp.logspace(-1, 1, DIM))

    dm = jnp.ones(DIM) / jnp.sqrt(DIM)
    return jax.random.normal(kx, (n, DIM)) @ factor(ka).T + dm, jax.random.normal(ky, (n, DIM)) @ factor(kb).T


def _reference(x, y, key, num_chunks):
    """SW_2^2 of the two empirical measures, by LCV with num_chunks x 2,000 directions (pooled)."""
    keys = jax.random.split(key, num_chunks)
    means = _replicate_means(x, y, keys, 2000, "mc", "lower", "sample")
    return Estimate.from_samples(means)


def _variances(x, y, key, num, reps, names):
    keys = jax.random.split(key, reps)  # the same keys for every estimator: paired comparisons
    out = {}
    for name in names:
        design, cv, centering = {**ESTIMATORS, **OFFICIAL}[name]
        out[name] = np.asarray(_replicate_means(x, y, keys, num, design, cv, centering), dtype=float)
    return out


def _flow_shapes(key, n):
    """Source: uniform on a unit sphere at (-1, -1, -1); target: uniform-angle torus (R=2, r=0.5) at (1, 1, 1)."""
    ks, kt1, kt2 = jax.random.split(key, 3)
    s = jax.random.normal(ks, (n, 3))
    sphere = s / jnp.linalg.norm(s, axis=1, keepdims=True) - 1.0
    u = 2 * jnp.pi * jax.random.uniform(kt1, (n,))
    v = 2 * jnp.pi * jax.random.uniform(kt2, (n,))
    torus = jnp.stack([(2 + 0.5 * jnp.cos(v)) * jnp.cos(u), (2 + 0.5 * jnp.cos(v)) * jnp.sin(u), 0.5 * jnp.sin(v)], 1)
    return sphere, torus + 1.0


def run(ctx):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = ctx.size(1000, 1000)
    reps = ctx.size(100, 500)
    claims, tables, figures = [], [], []
    notes = []

    # (a) isotropic: unbiasedness and the LCV variance reduction at L = 10.
    ctx.progress("(a) isotropic Gaussians")
    x, y = _clouds(_key(ctx, 1), n, "isotropic")
    ref = _reference(x, y, _key(ctx, 2), ctx.size(5, 50))
    names = list(ESTIMATORS) + list(OFFICIAL)
    var_a = _variances(x, y, _key(ctx, 3), 10, reps, names)
    rows, worst_z = [], 0.0
    for name in names:
        m = var_a[name]
        se = np.sqrt(m.var(ddof=1) / reps + float(ref.stderr) ** 2)
        z = (m.mean() - float(ref.mean)) / se
        if name in ESTIMATORS:
            worst_z = max(worst_z, abs(z))
        rows.append([name, float(m.mean()), float(se), float(z), float(m.var(ddof=1)),
                     float(var_a["MC"].var(ddof=1) / m.var(ddof=1))])
    tables.append(
        "**(a) Isotropic Gaussians, d = 10, n = %d, L = 10, %d replicates.** Exact SW₂² of the population: 5; "
        "of these two samples: %.4f ± %.4f (LCV with %d directions)." % (n, reps, float(ref.mean), float(ref.stderr),
                                                                         2000 * ctx.size(5, 50)) + "\n\n"
        + markdown_table(["estimator", "mean", "SE of mean", "z vs exact", "variance", "MC var / var"], rows)
    )
    claims.append(claim("(a) all five estimators unbiased: max |z| against the exact SW₂² of the samples",
                        worst_z, "<=", 3.0, paper="unbiased"))
    lcv_ratio = var_a["MC"].var(ddof=1) / var_a["LCV"].var(ddof=1)
    claims.append(claim("(a) LCV variance reduction at L = 10 (isotropic)", lcv_ratio, ">=", 100.0,
                        paper="~1400x (digest check)"))

    # (b) + (c): variance against L, isotropic and anisotropic.
    ls = ctx.size([10, 100], [10, 20, 50, 100, 200, 500])
    cases = {"isotropic": (x, y), "anisotropic": _clouds(_key(ctx, 4), n, "anisotropic"),
             "anisotropic, spread eigenvalues": _clouds(_key(ctx, 4), n, "spread")}
    curves = {}
    for case, (cx, cy) in cases.items():
        curves[case] = {name: [] for name in ESTIMATORS}
        for num in ls:
            ctx.progress(f"(c) {case}, L = {num}")
            v = _variances(cx, cy, _key(ctx, 100 + num), num, reps, list(ESTIMATORS))
            for name in ESTIMATORS:
                curves[case][name].append(float(v[name].var(ddof=1)))
    aniso_ratios = [mc / lcv for mc, lcv in zip(curves["anisotropic"]["MC"], curves["anisotropic"]["LCV"])]
    claims.append(claim("(b) anisotropic: min over L of MC variance / LCV variance", min(aniso_ratios), ">=", 1.0,
                        paper="1.4x (L=10), 2.1x (L=100)"))
    for case in curves:
        rows = [[num] + [curves[case][name][i] for name in ESTIMATORS] for i, num in enumerate(ls)]
        tables.append(f"**(c) Variance of the SW₂² estimate against L, {case} ({reps} replicates).**\n\n"
                      + markdown_table(["L"] + list(ESTIMATORS), rows))
    hard = [mc / lcv for mc, lcv in zip(curves["anisotropic, spread eigenvalues"]["MC"],
                                        curves["anisotropic, spread eigenvalues"]["LCV"])]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    for ax, case in zip(axes, curves):
        for name in ESTIMATORS:
            ax.loglog(ls, curves[case][name], "o-", label=name)
        ax.set_title(f"{case}, d = {DIM}", fontsize=10)
        ax.set_xlabel("number of directions L")
        ax.set_ylabel("variance of the SW₂² estimate")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend()
    fig.tight_layout()
    path = ctx.figure_path("variance_vs_L.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    figures.append(path)

    # (d) gradient flow of a 3-D point cloud.
    steps = ctx.size(400, 2000)
    seeds = ctx.size(2, 5)
    flow_names = ctx.size(["MC", "LCV"], list(ESTIMATORS))  # quick mode: the two the claim compares
    source, target = _flow_shapes(jax.random.key(ctx.seed + 5), 300)
    w2 = {}
    for name in flow_names:
        design, cv, _ = ESTIMATORS[name]
        runs = []
        for seed in range(seeds):
            ctx.progress(f"(d) gradient flow, {name}, seed {seed}")
            trace = gradient_flow(source, target, _key(ctx, 1000 + seed), steps, learning_rate=0.01,
                                  record_every=steps // 5, num_directions=10, directions=design, control_variate=cv)
            runs.append(trace.wasserstein)
        w2[name] = np.mean(runs, axis=0)
    record_steps = trace.steps
    rows = [[name] + [float(v) for v in w2[name]] for name in flow_names]
    tables.append(f"**(d) Exact W₂ against step (sphere → torus, n = 300, L = 10, SGD lr 0.01 on N·SW₂, "
                  f"mean of {seeds} seeds).**\n\n" + markdown_table(["estimator"] + [f"step {s}" for s in record_steps], rows))
    fig, ax = plt.subplots(figsize=(5, 4))
    for name in flow_names:
        ax.semilogy(record_steps, w2[name], "o-", label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("exact W₂ to the target")
    ax.legend()
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = ctx.figure_path("gradient_flow.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    figures.append(path)
    claims.append(claim("(d) final W₂, LCV / MC (mean over seeds)", w2["LCV"][-1] / w2["MC"][-1], "<=", 1.0,
                        paper="CV equal or lower (soft)"))

    notes.append(
        "In the harder anisotropic case (eigenvalues spread over [0.1, 10], ||dm|| = 1) the mean term explains "
        "little of W(theta), and MC variance / LCV variance was "
        + ", ".join(f"{r:.2f} at L = {num}" for r, num in zip(hard, ls))
        + ": with rho^2 small, estimating the coefficient from L directions costs about a factor 1 + 1/(L - 3), "
        "so LCV can lose slightly at small L there (UCV, RQMC and orthogonal directions are shown for comparison)."
    )
    official = var_a["MC"].var(ddof=1) / var_a["LCV (official centring)"].var(ddof=1)
    notes.append(
        "The control-variate coefficient is the sample regression coefficient Cov(W, C)/Var(C) (the paper's "
        "equation). The official code (khainb/CV-SW) centres C at its exact mean in both covariance and variance; "
        f"that variant is shown as 'LCV (official centring)': at L = 10 it reduces the variance only {official:.1f}x "
        "here and is biased low, because the coefficient shrinks by Var(C)/(Var(C) + (mean C - E C)^2). "
        "Truth for (a) is the SW₂² of the two sampled clouds (the estimators are unbiased for it); the population "
        "value 5 differs from it by the sampling error of the clouds. Standard errors of the means in (a) add the "
        "reference's own standard error."
    )
    return Outcome(claims=claims, tables=tables, figures=figures, notes=" ".join(notes))


REPRODUCTION = Reproduction(
    name="sliced-wasserstein-cv",
    paper="Nguyen & Ho 2024, *Sliced Wasserstein Estimation with Control Variates* (ICLR 2024, arXiv 2305.00402)",
    summary="Gaussian control variates cut the variance of Monte Carlo sliced Wasserstein by orders of magnitude "
    "for isotropic Gaussians and never hurt on anisotropic ones; RQMC and orthogonal directions compared; "
    "a 3-D point-cloud gradient flow with each estimator.",
    run=run,
)
