"""Particle filters: likelihood against the Kalman filter, unbiasedness of the normalizing constant, SV model.

Bootstrap filter (Gordon, Salmond & Smith 1993) on a linear-Gaussian model whose
likelihood the Kalman filter gives exactly; E[Lhat] = L (Del Moral 2004) checked
by replicates; a stochastic-volatility model filtered and smoothed (FFBS).
"""

from __future__ import annotations

import math

import numpy as np

from ulam.reproduce import Outcome, Reproduction, claim, markdown_table


def run(ctx) -> Outcome:
    import jax
    import jax.numpy as jnp
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ulam.smc import (
        Bootstrap,
        LinearGaussianModel,
        StateSpaceModel,
        backward_sample,
        kalman_filter,
        linear_gaussian_ssm,
        run_filter,
        simulate,
    )

    lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
    ssm = linear_gaussian_ssm(lg, batched=True)
    T = 100
    _, y = simulate(ctx.key(0), ssm, T)
    exact = float(kalman_filter(lg, y).log_likelihood)
    ns = ctx.size([100, 1000, 10000], [100, 1000, 10000, 100000])
    reps = ctx.size(48, 200)
    # The smallest N runs many replicates: they also test E[exp(log L_hat)] = L.
    n_u, reps_u = ns[0], ctx.size(800, 4000)
    rows, sds = [], []
    for n in ns:
        ctx.progress(f"bootstrap filter N={n}")
        f = jax.jit(jax.vmap(lambda k: run_filter(k, Bootstrap(ssm), y, n).log_likelihood))
        ll = f(jax.random.split(ctx.key(n), reps_u if n == n_u else reps))
        v = np.asarray(ll.mean, float)
        if n == n_u:
            r = np.exp(v - exact)
        sd = float(v.std(ddof=1))
        sds.append(sd)
        rows.append([n, float(v.mean() - exact), sd, float(np.median(np.asarray(ll.stderr, float)))])
    slope = float(np.polyfit(np.log(ns), np.log(sds), 1)[0])
    ratio_mean, ratio_se = float(r.mean()), float(r.std(ddof=1) / math.sqrt(reps_u))
    z = (ratio_mean - 1.0) / ratio_se

    # Stochastic volatility: x_t = mu + phi (x_{t-1} - mu) + sigma u_t, y_t ~ N(0, exp(x_t)).
    ctx.progress("stochastic volatility")
    mu, phi, sigma = -1.0, 0.95, 0.3
    norm = jax.scipy.stats.norm.logpdf
    sv = StateSpaceModel(
        initial_sample=lambda k: mu + sigma / math.sqrt(1 - phi**2) * jax.random.normal(k),
        transition_sample=lambda k, x: mu + phi * (x - mu) + sigma * jax.random.normal(k),
        observation_log_prob=lambda x, yt: norm(yt, 0.0, jnp.exp(0.5 * x)),
        transition_log_prob=lambda xp, x: norm(x, mu + phi * (xp - mu), sigma),
        observation_sample=lambda k, x: jnp.exp(0.5 * x) * jax.random.normal(k),
        transition_log_bound=-0.5 * math.log(2 * math.pi * sigma**2),
        observation_shape=(),
    )
    t_sv = ctx.size(200, 500)
    x_sv, y_sv = simulate(ctx.key(21), sv, t_sv)
    out = run_filter(ctx.key(22), Bootstrap(sv), y_sv, 2000, keep_history=True)
    paths = jax.jit(lambda k, h: backward_sample(k, sv, h, 200))(ctx.key(23), out.history)
    smoothed = np.asarray(paths.mean(0))
    filt = np.asarray(out.filtering_mean.mean)
    filt_se = np.asarray(out.filtering_mean.stderr)
    x_np = np.asarray(x_sv)
    rmse_f = float(np.sqrt(np.mean((filt - x_np) ** 2)))
    rmse_s = float(np.sqrt(np.mean((smoothed - x_np) ** 2)))

    fig, ax = plt.subplots(2, 1, figsize=(9, 5.5), sharex=True)
    ax[0].plot(np.asarray(y_sv), lw=0.6, color="gray")
    ax[0].set_ylabel("y (returns)")
    ax[1].plot(x_np, color="k", lw=0.8, label="true log-volatility")
    ax[1].plot(filt, color="C0", lw=0.8, label="filtered mean")
    ax[1].fill_between(np.arange(t_sv), filt - 2 * filt_se, filt + 2 * filt_se, color="C0", alpha=0.3)
    ax[1].plot(smoothed, color="C3", lw=0.8, label="smoothed mean (FFBS)")
    ax[1].legend(fontsize=7), ax[1].set_xlabel("t")
    fig.tight_layout()
    path_sv = ctx.figure_path("stochastic_volatility.png")
    fig.savefig(path_sv, dpi=110)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.loglog(ns, sds, "o-", label="sd of log L_hat over replicates")
    ax.loglog(ns, [row[3] for row in rows], "s--", label="median Lee-Whiteley s.e.")
    ax.loglog(ns, [abs(row[1]) for row in rows], "x:", label="|mean error|")
    ax.set_xlabel("N"), ax.legend(fontsize=7)
    fig.tight_layout()
    path_ll = ctx.figure_path("loglik_vs_n.png")
    fig.savefig(path_ll, dpi=110)
    plt.close(fig)

    claims = [
        claim("log-likelihood sd vs N: log-log slope", slope, "<=", -0.4, paper="-1/2 (CLT)"),
        claim(f"|E[exp(log L_hat)]/L - 1| in s.e. (N={n_u})", abs(z), "<=", 3.0, paper="unbiased (Del Moral 2004)"),
        claim("SV: smoothed RMSE / filtered RMSE to the true states", rmse_s / rmse_f, "<=", 1.0, paper="smoothing uses all data"),
    ]
    tables = [
        markdown_table(["N", "mean error vs Kalman", "sd over replicates", "median Lee-Whiteley s.e."], rows),
        markdown_table(["quantity", "value"], [["mean exp(log L_hat - log L)", ratio_mean], ["s.e.", ratio_se], ["replicates", reps_u]]),
    ]
    notes = (
        f"Linear-Gaussian model a=0.9, sigma_x=0.6, sigma_y=1, T={T}; Kalman log L = {exact:.3f}; {reps} replicates per N "
        f"({reps_u} at N={n_u}), "
        f"systematic resampling at ESS < N/2. SV model mu={mu}, phi={phi}, sigma={sigma}, T={t_sv}, N=2000, 200 FFBS paths "
        f"(rejection backward sampler); RMSE filtered {rmse_f:.3f}, smoothed {rmse_s:.3f}."
    )
    return Outcome(claims=claims, tables=tables, figures=[path_ll, path_sv], notes=notes)


REPRODUCTION = Reproduction(
    name="particle-filter",
    paper="Gordon, Salmond & Smith 1993; Lee & Whiteley 2018, *Variance estimation in the particle filter*",
    summary="bootstrap-filter likelihood converges to the Kalman value, exp(log L_hat) is unbiased; SV filtering/smoothing.",
    run=run,
)
