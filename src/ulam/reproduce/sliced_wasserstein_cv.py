"""Reproduction: sliced Wasserstein estimation with control variates (Nguyen & Ho, ICLR 2024).

(a) isotropic Gaussians, where SW_2^2 = ||dm||^2/d + (s1 - s2)^2: every estimator unbiased
    against an INDEPENDENT reference (gated), and how much the lower control variate (LCV) cuts
    the variance at L = 10 (reported with a bootstrap se, not gated: a soft claim);
(b) two anisotropic cases (the digest's random covariances, and eigenvalues spread over
    [0.1, 10]): MC variance / LCV variance at every L, with bootstrap standard errors
    (reported, not gated: the paper's "lower variance" is a soft claim);
(c) variance against L for MC, LCV, UCV, RQMC and orthogonal directions (figure);
(d) a 3-D point-cloud gradient flow (sphere -> torus, n = 300): exact W2 against step, LCV / MC
    over seeds with its standard error (reported, not gated: soft claim).

References, computed by code that shares nothing with ulam.transport: the SW_2^2 of two
sampled clouds by plain Monte Carlo over REFERENCE_DIRECTIONS (10^6 quick, 10^7 full) uniform directions in
NumPy (project, sort, average the squared differences of the order statistics, in chunks), with
its own standard error; the SW_2^2 of the two Gaussian populations by the closed form of
projected Gaussians per direction, W_2^2 = (theta.dm)^2 + (sqrt(theta'S1 theta) -
sqrt(theta'S2 theta))^2, averaged over POPULATION_DIRECTIONS (>= 10^7) directions.
Every estimate here is of SW_2^2 (the p-th power), requested explicitly with ``pth_power=True``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

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
REFERENCE_DIRECTIONS = (1_000_000, 10_000_000)  # plain MC directions of the independent NumPy reference: quick, full
POPULATION_DIRECTIONS = 10_000_000  # directions of the closed-form population reference


@functools.partial(jax.jit, static_argnames=("num", "design", "cv", "centering"))
def _replicate_means(x, y, keys, num, design, cv, centering):
    def one(k):
        return sliced_wasserstein(x, y, k, num, directions=design, control_variate=cv, cv_centering=centering,
                                  pth_power=True).mean  # SW_2^2, the p-th power

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


def numpy_reference(x, y, num_directions, seed, chunk=2000):
    """SW_2^2 of two equal-size empirical measures by plain MC over uniform directions, in NumPy only.

    Per direction: project both clouds, sort (float32 order statistics), average the squared
    differences of matched order statistics (float64). Returns (mean, standard error).
    """
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    assert x.shape == y.shape
    rng = np.random.default_rng(seed)
    total = total_sq = 0.0
    done = 0
    while done < num_directions:
        m = min(chunk, num_directions - done)
        theta = rng.standard_normal((m, x.shape[1]))
        theta /= np.linalg.norm(theta, axis=1, keepdims=True)
        px = (theta @ x.T).astype(np.float32)
        py = (theta @ y.T).astype(np.float32)
        px.sort(axis=1)
        py.sort(axis=1)
        w = np.mean(np.square(px - py, dtype=np.float64), axis=1)
        total += float(w.sum())
        total_sq += float(np.square(w).sum())
        done += m
    mean = total / done
    return mean, float(np.sqrt(max(total_sq / done - mean**2, 0.0) / (done - 1)))


def population_reference(mean_x, cov_x, mean_y, cov_y, num_directions, seed, chunk=500_000):
    """SW_2^2 of N(mean_x, cov_x) and N(mean_y, cov_y): closed form per direction, averaged (mean, se)."""
    rng = np.random.default_rng(seed)
    dm = np.asarray(mean_x, np.float64) - np.asarray(mean_y, np.float64)
    cx, cy = np.asarray(cov_x, np.float64), np.asarray(cov_y, np.float64)
    total = total_sq = 0.0
    done = 0
    while done < num_directions:
        m = min(chunk, num_directions - done)
        theta = rng.standard_normal((m, dm.size))
        theta /= np.linalg.norm(theta, axis=1, keepdims=True)
        sx = np.sqrt(np.sum((theta @ cx) * theta, axis=1))
        sy = np.sqrt(np.sum((theta @ cy) * theta, axis=1))
        w = (theta @ dm) ** 2 + (sx - sy) ** 2
        total += float(w.sum())
        total_sq += float(np.square(w).sum())
        done += m
    mean = total / done
    return mean, float(np.sqrt(max(total_sq / done - mean**2, 0.0) / (done - 1)))


def _variances(x, y, key, num, reps, names):
    keys = jax.random.split(key, reps)  # the same keys for every estimator: paired comparisons
    out = {}
    for name in names:
        design, cv, centering = {**ESTIMATORS, **OFFICIAL}[name]
        out[name] = np.asarray(_replicate_means(x, y, keys, num, design, cv, centering), dtype=float)
    return out


def _case_parameters(key, case):
    """(mean_x, cov_x, mean_y, cov_y) of the two Gaussian populations _clouds(key, n, case) samples."""
    _, _, ka, kb = jax.random.split(key, 4)
    eye = np.eye(DIM)
    if case == "isotropic":
        return np.ones(DIM), eye, -np.ones(DIM), 4.0 * eye
    if case == "anisotropic":
        a = np.asarray(jax.random.normal(ka, (DIM, DIM)) / jnp.sqrt(DIM), np.float64)
        b = np.asarray(jax.random.normal(kb, (DIM, DIM)) / jnp.sqrt(DIM), np.float64)
        return np.ones(DIM), a @ a.T, np.zeros(DIM), b @ b.T

    def factor(k):
        q, _ = jnp.linalg.qr(jax.random.normal(k, (DIM, DIM)))
        return np.asarray(q * jnp.sqrt(jnp.logspace(-1, 1, DIM)), np.float64)

    fa, fb = factor(ka), factor(kb)
    return np.ones(DIM) / np.sqrt(DIM), fa @ fa.T, np.zeros(DIM), fb @ fb.T


def _ratio_with_se(mc, lcv, rng, num_boot=400):
    """MC variance / LCV variance over paired replicates, and its bootstrap standard error."""
    idx = rng.integers(0, mc.size, size=(num_boot, mc.size))
    boot = mc[idx].var(axis=1, ddof=1) / lcv[idx].var(axis=1, ddof=1)
    return float(mc.var(ddof=1) / lcv.var(ddof=1)), float(boot.std(ddof=1))


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
    ref_directions = ctx.size(*REFERENCE_DIRECTIONS)
    ctx.progress(f"(a) isotropic Gaussians: NumPy reference over {ref_directions:,} directions")
    x, y = _clouds(_key(ctx, 1), n, "isotropic")
    ref_mean, ref_se = numpy_reference(x, y, ref_directions, seed=1_000_003 * ctx.seed + 2)
    names = list(ESTIMATORS) + list(OFFICIAL)
    ctx.progress("(a) isotropic Gaussians: estimators at L = 10")
    var_a = _variances(x, y, _key(ctx, 3), 10, reps, names)
    rows, worst_z = [], 0.0
    for name in names:
        m = var_a[name]
        est_se = float(np.sqrt(m.var(ddof=1) / reps))
        se = np.hypot(est_se, ref_se)
        z = (m.mean() - ref_mean) / se
        if name in ESTIMATORS:
            worst_z = max(worst_z, abs(z))
        rows.append([name, float(m.mean()), est_se, float(ref_se / est_se), float(z), float(m.var(ddof=1)),
                     float(var_a["MC"].var(ddof=1) / m.var(ddof=1))])
    tables.append(
        "**(a) Isotropic Gaussians, d = %d, n = %d, L = 10, %d replicates.** Exact SW₂² of the populations: 5. "
        "Reference SW₂² of these two samples: %.5f ± %.5f (plain MC over %s directions, NumPy; shares no code with "
        "ulam.transport). z combines both standard errors." % (DIM, n, reps, ref_mean, ref_se, f"{ref_directions:,}")
        + "\n\n"
        + markdown_table(["estimator", "mean", "SE of mean", "reference SE / SE of mean", "z vs reference",
                          "variance", "MC var / var"], rows)
    )
    claims.append(claim("(a) all five estimators unbiased: max |z| against the independent NumPy reference",
                        worst_z, "<=", 3.0, paper="unbiased"))
    # How much LCV reduces the variance is a soft claim (a paper's "better"): reported with a bootstrap se.
    lcv_ratio, lcv_ratio_se = _ratio_with_se(var_a["MC"], var_a["LCV"], np.random.default_rng(ctx.seed + 7))
    notes.append(f"(a) LCV variance reduction at L = 10 (isotropic), MC var / LCV var: {lcv_ratio:.4g} ± "
                 f"{lcv_ratio_se:.2g} (bootstrap se over the {reps} replicates; digest check ~1400x). Reported, not "
                 "gated: a soft claim.")

    # (b) + (c): variance against L, isotropic and both anisotropic cases.
    ls = ctx.size([10, 100], [10, 20, 50, 100, 200, 500])
    case_keys = {"isotropic": _key(ctx, 1), "anisotropic": _key(ctx, 4), "anisotropic, spread eigenvalues": _key(ctx, 4)}
    case_kind = {"isotropic": "isotropic", "anisotropic": "anisotropic", "anisotropic, spread eigenvalues": "spread"}
    cases = {"isotropic": (x, y), "anisotropic": _clouds(case_keys["anisotropic"], n, "anisotropic"),
             "anisotropic, spread eigenvalues": _clouds(case_keys["anisotropic, spread eigenvalues"], n, "spread")}
    rng = np.random.default_rng(ctx.seed)
    curves, ratio_rows, means_l10 = {}, [], {}
    for case, (cx, cy) in cases.items():
        curves[case] = {name: [] for name in ESTIMATORS}
        for num in ls:
            ctx.progress(f"(c) {case}, L = {num}")
            v = _variances(cx, cy, _key(ctx, 100 + num), num, reps, list(ESTIMATORS))
            for name in ESTIMATORS:
                curves[case][name].append(float(v[name].var(ddof=1)))
            if num == ls[0]:
                means_l10[case] = {name: (float(v[name].mean()), float(v[name].std(ddof=1) / np.sqrt(reps)))
                                   for name in ("MC", "LCV")}
            if case != "isotropic":
                r, r_se = _ratio_with_se(v["MC"], v["LCV"], rng)
                ratio_rows.append([case, num, r, r_se, float((r - 1.0) / r_se)])
    ctx.progress(f"(b) population references: closed form over {POPULATION_DIRECTIONS:,} directions")
    pop_rows = []
    for i, case in enumerate(cases):
        if case == "isotropic":  # ||dm||²/d + (s1 - s2)² = 40/10 + 1, exactly
            pm, pse = 5.0, 0.0
        else:
            pm, pse = population_reference(*_case_parameters(case_keys[case], case_kind[case]),
                                           POPULATION_DIRECTIONS, seed=1_000_003 * ctx.seed + 50 + i)
        pop_rows.append([case, pm, pse, *means_l10[case]["MC"], *means_l10[case]["LCV"]])
    tables.append(
        f"**(b) Population references (closed form of projected Gaussians, {POPULATION_DIRECTIONS:,} directions; "
        "isotropic: exact) "
        f"beside the estimators' means at L = {ls[0]} ({reps} replicates) on one sample of n = {n} per measure.** "
        "The estimators target the SW₂² of the samples, which differs from the population value by the clouds' "
        "sampling error.\n\n"
        + markdown_table(["case", "population SW₂²", "se", "MC mean", "se", "LCV mean", "se"], pop_rows)
    )
    tables.append(
        f"**(b) MC variance / LCV variance, both anisotropic cases ({reps} paired replicates; se by bootstrap of "
        "the replicates).** Reported, not gated (the paper's 'lower variance' is a soft claim).\n\n"
        + markdown_table(["case", "L", "MC var / LCV var", "se", "(ratio - 1) / se"], ratio_rows)
    )
    for case in curves:
        rows = [[num] + [curves[case][name][i] for name in ESTIMATORS] for i, num in enumerate(ls)]
        tables.append(f"**(c) Variance of the SW₂² estimate against L, {case} ({reps} replicates).**\n\n"
                      + markdown_table(["L"] + list(ESTIMATORS), rows))
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
    w2, w2_runs = {}, {}
    for name in flow_names:
        design, cv, _ = ESTIMATORS[name]
        runs = []
        for seed in range(seeds):
            ctx.progress(f"(d) gradient flow, {name}, seed {seed}")
            trace = gradient_flow(source, target, _key(ctx, 1000 + seed), steps, learning_rate=0.01,
                                  record_every=steps // 5, num_directions=10, directions=design, control_variate=cv)
            runs.append(trace.wasserstein)
        w2_runs[name] = np.asarray(runs, float)
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
    flow_ratio = w2_runs["LCV"][:, -1] / w2_runs["MC"][:, -1]  # paired: the same key for both per seed
    flow_ratio_se = float(flow_ratio.std(ddof=1) / np.sqrt(seeds))

    aniso = [r for r in ratio_rows if r[0] == "anisotropic"]
    hard = [r for r in ratio_rows if r[0] == "anisotropic, spread eigenvalues"]
    notes.append(
        "(b) MC variance / LCV variance: digest's anisotropic case (random covariances A Aᵀ/d, dm = 1 per "
        "coordinate) " + ", ".join(f"{r[2]:.3g} ± {r[3]:.2g} at L = {r[1]}" for r in aniso)
        + " (digest: 1.4x at L = 10, 2.1x at L = 100; here the mean term dominates W(θ), so the control explains "
        "most of it); spread-eigenvalue case (eigenvalues log-spaced over [0.1, 10], ||dm|| = 1) "
        + ", ".join(f"{r[2]:.3g} ± {r[3]:.2g} at L = {r[1]}" for r in hard)
        + ". History: an earlier version gated 'LCV variance <= MC variance at every L' on the spread case, which "
        "failed (0.93x), and then swapped in the digest's case (76x) as the gated one; both are shown here and "
        "neither is gated. Where rho² = corr(W, C)² is small, estimating the coefficient from the same L directions "
        "costs a factor about 1 + 1/(L - 3), so LCV can lose slightly at small L."
    )
    notes.append(
        f"(d) Final exact W₂ of the flow, LCV / MC, paired by seed: {flow_ratio.mean():.3f} ± {flow_ratio_se:.3f} "
        f"(mean ± se over {seeds} seeds; per seed: {', '.join(f'{r:.3f}' for r in flow_ratio)}). Reported, not "
        "gated (the paper's 'equal or lower' is a soft claim)."
    )
    official = var_a["MC"].var(ddof=1) / var_a["LCV (official centring)"].var(ddof=1)
    notes.append(
        "The control-variate coefficient is the sample regression coefficient Cov(W, C)/Var(C) (the paper's "
        "equation). The official code (khainb/CV-SW) centres C at its exact mean in both covariance and variance; "
        f"that variant is shown as 'LCV (official centring)': at L = 10 it reduces the variance only {official:.1f}x "
        "here and is biased low, because the coefficient shrinks by Var(C)/(Var(C) + (mean C - E C)^2). "
        "Truth for (a) is the SW₂² of the two sampled clouds (the estimators are unbiased for it), computed by "
        "separate NumPy code; the population value 5 differs from it by the sampling error of the clouds. Where an "
        "estimator's standard error is below the reference's (column 'reference SE / SE of mean' > 1, e.g. LCV), "
        "the z test is limited by the reference's precision."
    )
    return Outcome(claims=claims, tables=tables, figures=figures, notes=" ".join(notes))


REPRODUCTION = Reproduction(
    name="sliced-wasserstein-cv",
    paper="Nguyen & Ho 2024, *Sliced Wasserstein Estimation with Control Variates* (ICLR 2024, arXiv 2305.00402)",
    summary="every SW₂² estimator unbiased against an independent NumPy reference (gated); the lower Gaussian "
    "control variate's variance reduction for isotropic Gaussians and on two anisotropic cases, RQMC and orthogonal "
    "directions, and a 3-D point-cloud gradient flow (reported with standard errors).",
    run=run,
    changes=(
        "(a) The reference was LCV with 10^4 directions (the estimator under test checking itself); it is now"
        " plain MC over 10^6 directions in separate NumPy code, with its SE in the z-score (threshold "
        "unchanged, |z| <= 3). (b) The gate 'anisotropic: MC var / LCV var >= 1 at every L' had been moved to"
        " the digest's case (76x, vs the digest's 1.4x) after failing on the spread-eigenvalue case (0.93x); "
        "both cases are now reported with SEs and neither is gated (a soft claim). (d) 'final W2 LCV / MC <= "
        "1' (soft) is reported with its SE over seeds, not gated. (a) The gate 'LCV variance reduction at L = 10 "
        "(isotropic) >= 100' (digest check ~1400x; last measured 2612, quick) is dropped: how much "
        "better a control variate is, is a soft claim; the ratio is reported with its bootstrap SE."
    ),
)
