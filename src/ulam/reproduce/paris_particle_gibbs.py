"""PaRIS particle Gibbs (Cardoso et al. 2023): bias reduction of PPG over PaRIS, and learning.

Model of the digest (papers 10-17, section 11.6): x_{k+1} = 0.9 x_k + 0.6 u,
y_k = x_k + v, x_0 ~ N(0, 0.36/0.19), n = 50, one fixed simulated record;
functional h = sum_k x_k x_{k+1}; ground truth from the Kalman filter and RTS smoother.
Gated: the PaRIS bias exponent (slope <= -0.6 against N) and PPG's unbiasedness (|bias|/se <= 3).
Reported with standard errors, not gated (soft claims): |bias PaRIS| / |bias PPG| at N = 16 and the
learning ratio RMSE(PaRIS-SA) / RMSE(PPG-SA) to the MLE.
"""

from __future__ import annotations

import math

import numpy as np

from ulam.reproduce import Outcome, Reproduction, claim, markdown_table

A, SX, SY, T = 0.9, 0.6, 1.0, 50
P0 = SX**2 / (1 - A**2)


def _over_keys(fn):
    """Independent runs over a batch of keys, one after another: ``lax.map`` compiles the body once,
    about half the compile time of ``vmap`` here (compilation dominates the quick run)."""
    import jax

    return lambda keys: jax.lax.map(fn, keys)


def run(ctx) -> Outcome:
    import jax
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import scipy.optimize

    from ulam.smc import (
        LinearGaussianModel,
        kalman_filter,
        linear_gaussian_ssm,
        paris,
        ppg,
        rts_smoother,
        score_ascent,
        simulate,
    )

    lg = LinearGaussianModel.scalar(A, SX, 1.0, SY, p0=P0)
    ssm = linear_gaussian_ssm(lg)
    _, y = simulate(ctx.key(0), ssm, T)
    sm = rts_smoother(lg, y)
    truth = float(jnp.sum(sm.smoothed_means[:-1] * sm.smoothed_means[1:] + sm.lag_one_covs))
    h = lambda xp, x, yt: xp * x  # noqa: E731

    reps = ctx.size(128, 300)
    ns = ctx.size([16, 32, 64, 128], [16, 32, 64, 128, 256])  # >= 4 values of N for the bias exponent
    rows, paris_bias, paris_values = [], {}, {}
    for n in ns:
        ctx.progress(f"PaRIS N={n}")
        f = jax.jit(_over_keys(lambda k: paris(k, ssm, y, n, h, backward="exact").estimate.mean))
        v = np.asarray(f(jax.random.split(ctx.key(100 + n), reps)), float)
        bias, se = v.mean() - truth, v.std(ddof=1) / math.sqrt(reps)
        paris_bias[n], paris_values[n] = (bias, se), v
        rows.append([f"PaRIS N={n}", n, bias, se, float(np.sqrt(np.mean((v - truth) ** 2)))])
    n_ppg, k, k0 = 16, 8, 2
    ctx.progress("PPG N=16, k=8, k0=2")
    g = jax.jit(
        _over_keys(lambda kk: ppg(kk, ssm, y, n_ppg, h, num_iterations=k, burn_in=k0, backward="exact").estimate.mean)
    )
    v = np.asarray(g(jax.random.split(ctx.key(7), reps)), float)
    ppg_bias, ppg_se = v.mean() - truth, v.std(ddof=1) / math.sqrt(reps)
    # k iterations plus the initial pass: k + 1 passes of N particles.
    rows.append([f"PPG N={n_ppg}, k={k}, k0={k0}", n_ppg * (k + 1), ppg_bias, ppg_se, float(np.sqrt(np.mean((v - truth) ** 2)))])

    # Exponent of |bias| ~ N^slope: weighted least squares of log|bias| on log N, each point weighted by its
    # delta-method variance (se / |bias|)^2; the slope's standard error is 1 / sqrt(sum w (x - mean x)^2).
    logn = np.log(np.array(ns, float))
    b_abs = np.abs([paris_bias[n][0] for n in ns])
    w = (b_abs / np.array([paris_bias[n][1] for n in ns])) ** 2
    xm = np.sum(w * logn) / np.sum(w)
    sxx = np.sum(w * (logn - xm) ** 2)
    slope = float(np.sum(w * (logn - xm) * np.log(b_abs)) / sxx)
    slope_se = float(1.0 / np.sqrt(sxx))
    ratio = abs(paris_bias[16][0]) / max(abs(ppg_bias), 1e-12)
    # A soft claim (how much smaller PPG's bias is): PPG is unbiased, so the denominator is noise and the ratio
    # is heavy-tailed; reported with a bootstrap se over replicates (each estimator resampled on its own).
    ratio_rng = np.random.default_rng(ctx.seed + 1)
    rb = ratio_rng.integers(0, reps, size=(2000, reps))
    ratio_boot = np.abs(paris_values[16][rb].mean(1) - truth) / np.maximum(np.abs(v[rb].mean(1) - truth), 1e-12)
    ratio_se = float(ratio_boot.std(ddof=1))
    ratio_lo, ratio_hi = (float(q) for q in np.percentile(ratio_boot, [5, 95]))

    # Learning a by stochastic approximation (digest 11.6 uses gamma_t = 0.05/sqrt(t); on the raw
    # score, ~27 at a=0.7, its first step overshoots to a~2 for both estimators, so gamma_t = 0.01/sqrt(t)).
    ctx.progress("learning")

    def model_fn(a):
        return linear_gaussian_ssm(LinearGaussianModel.scalar(a, SX, 1.0, SY, p0=P0))

    # One compiled Kalman log-likelihood in a (an eager call per optimizer step retraces: ~0.5 s each).
    kalman_ll = jax.jit(lambda a: kalman_filter(LinearGaussianModel.scalar(a, SX, 1.0, SY, p0=P0), y).log_likelihood)
    mle = float(
        scipy.optimize.minimize_scalar(
            lambda a: -float(kalman_ll(jnp.float32(a))),
            bounds=(0.0, 0.999),
            method="bounded",
        ).x
    )
    steps, seeds, a0 = ctx.size(150, 500), ctx.size(4, 8), 0.7
    gamma = lambda t: 0.01 / jnp.sqrt(t + 1.0)  # noqa: E731
    errs, traces, sq_err = {}, {}, {}
    for est in ("ppg", "paris"):
        fn = jax.jit(
            _over_keys(
                lambda kk: score_ascent(
                    kk, model_fn, a0, y, 16, num_steps=steps, step_size=gamma, estimator=est, backward="exact"
                ).params
            )
        )
        p = np.asarray(fn(jax.random.split(ctx.key(11), seeds)), float)
        final = p[:, -max(1, steps // 10) :].mean(1)  # average of the last 10% of iterates
        sq_err[est] = (final - mle) ** 2
        errs[est] = float(np.sqrt(np.mean(sq_err[est])))
        traces[est] = p
    learn_ratio = errs["paris"] / max(errs["ppg"], 1e-12)
    # A soft claim (the paper's "PPG closer"): reported with a bootstrap se over seeds, resampled in pairs
    # (both estimators run on the same keys), not gated.
    boot_rng = np.random.default_rng(ctx.seed)
    idx = boot_rng.integers(0, seeds, size=(2000, seeds))
    boot = np.sqrt(sq_err["paris"][idx].mean(1)) / np.maximum(np.sqrt(sq_err["ppg"][idx].mean(1)), 1e-12)
    learn_ratio_se = float(boot.std(ddof=1))

    fig, ax = plt.subplots(1, 2, figsize=(9, 3.5))
    costs = [r[1] for r in rows]
    ax[0].errorbar(costs, [abs(r[2]) for r in rows], yerr=[2 * r[3] for r in rows], fmt="o")
    for r, c in zip(rows, costs):
        ax[0].annotate(r[0].split(",")[0], (c, abs(r[2])), fontsize=7)
    ax[0].plot(costs, [r[4] for r in rows], "x", label="RMSE")
    ax[0].set_xscale("log"), ax[0].set_yscale("log"), ax[0].set_xlabel("particles x passes")
    ax[0].set_ylabel("|bias| (o, ±2 s.e.), RMSE (x)"), ax[0].legend()
    for est, color in (("ppg", "C0"), ("paris", "C1")):
        ax[1].plot(traces[est].T, color=color, alpha=0.4, lw=0.7)
    ax[1].axhline(mle, color="k", ls="--", label="exact MLE")
    ax[1].set_xlabel("update"), ax[1].set_ylabel("a"), ax[1].set_title("PPG (blue) vs PaRIS (orange)"), ax[1].legend()
    fig.tight_layout()
    path = ctx.figure_path("paris_ppg_bias.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)

    claims = [
        claim(f"PaRIS log|bias| vs log N slope over N = {ns} (1/N gives -1; fitted {slope:.2f} ± {slope_se:.2f})",
              slope, "<=", -0.6, paper="O(1/N) bias"),
        claim("PPG (N=16, k0=2) |bias| / s.e.", abs(ppg_bias) / ppg_se, "<=", 3.0, paper="unbiased after burn-in"),
    ]
    table = markdown_table(["estimator", "particles x passes", "bias", "s.e.", "RMSE"], rows)
    learn_table = markdown_table(
        ["estimator", "RMSE of final a to MLE", "MLE"],
        [["PPG-SA", errs["ppg"], mle], ["PaRIS-SA", errs["paris"], mle]],
    ) + (f"\n\nRMSE(PaRIS-SA) / RMSE(PPG-SA) = {learn_ratio:.3g} ± {learn_ratio_se:.2g} (bootstrap se over the "
         f"{seeds} paired seeds); paper: PPG closer. Reported, not gated: a soft claim.")
    notes = (
        f"|bias PaRIS N=16| / |bias PPG N=16| = {ratio:.3g} ± {ratio_se:.2g} (bootstrap se over the {reps} "
        f"replicates; 90% bootstrap interval {ratio_lo:.3g} to {ratio_hi:.3g}; digest check: 8.7); reported, not gated: a soft claim whose denominator, PPG's bias, is "
        f"noise ({ppg_bias:.3g} ± {ppg_se:.2g}), so the ratio mostly measures that noise. "
        f"PaRIS bias exponent: {slope:.3f} ± {slope_se:.3f} (weighted least squares of log|bias| on log N over "
        f"N = {', '.join(map(str, ns))}, weights (|bias|/se)^2). "
        f"Truth E[sum x_k x_(k+1) | y] = {truth:.3f} (RTS). {reps} replicates per estimator; exact O(N^2) backward "
        f"kernel, Ñ = 2, multinomial resampling every step. Learning: {seeds} seeds, {steps} updates from a = {a0}, "
        "gamma_t = 0.01/sqrt(t) on the raw score (the digest's 0.05/sqrt(t) overshoots to a~2 at the first update "
        "for both estimators, where the PaRIS-driven run then diverges to NaN), 16 particles per update for both; "
        "error = RMSE over seeds of the mean of the last 10% of iterates."
    )
    return Outcome(claims=claims, tables=[table, learn_table], figures=[path], notes=notes)


REPRODUCTION = Reproduction(
    name="paris-particle-gibbs",
    paper="Cardoso, Janati El Idrissi, Le Corff, Moulines & Olsson 2023, *State and parameter learning with PaRIS particle Gibbs* (ICML)",
    summary="PaRIS bias ~1/N and PPG unbiased after burn-in (gated); the PaRIS / PPG bias ratio and whether "
    "PPG-driven score ascent ends nearer the MLE (reported with standard errors).",
    run=run,
    changes=(
        "The PaRIS bias exponent was fitted to two values of N in quick mode (16, 64); now 4 (16, 32, 64, "
        "128; full 5, to 256) by weighted least squares, reported with its SE; quick replicates 64 -> 128. "
        "Threshold unchanged (slope <= -0.6). "
        "Gate 'learning: RMSE(PaRIS-SA to MLE) / RMSE(PPG-SA to MLE) >= 1' (paper: PPG closer; last measured 1.395, "
        "quick, 4 seeds) dropped: a soft claim, now reported with a paired bootstrap se over seeds. "
        "Gate '|bias PaRIS N=16| / |bias PPG N=16| >= 4' (digest check 8.7; last measured 27.09, quick) dropped: a "
        "soft claim whose denominator is PPG's bias, i.e. noise (PPG is unbiased, which stays gated); now reported "
        "with a bootstrap se."
    ),
)
