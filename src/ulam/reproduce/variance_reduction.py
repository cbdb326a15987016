"""Variance reduction on integrands with known values: MC, antithetic, control variates, RQMC.

Textbook claims (Owen 2013, *Monte Carlo theory, methods and examples*, ch. 2, 8, 17):
plain Monte Carlo's error falls like n^{-1/2}; a control variate with correlation rho
divides the variance by 1/(1 - rho^2); randomized QMC beats plain MC by orders of
magnitude on smooth integrands (a soft claim: its factor is reported with an se, not gated).

How each is measured (issue 15, item 4): the error at each n is the spread (standard
deviation) of REPLICATES independent estimates, never an estimate's own s/sqrt(n) (whose
slope is -1/2 by construction); the slope is a weighted least-squares fit of log spread on
log n over >= 4 values of n, its standard error from bootstrap standard errors of each log
spread, and the claim is |slope + 1/2| <= 3 of its standard errors. The control-variate
factor is measured out of sample: ``control_variates(..., unbiased=True)`` fits the
coefficient on one half of the draws and measures the residual variance on the other
(cross-fitting); the in-sample figure (coefficient and variance from the same draws) is
reported beside it. The out-of-sample factor, averaged over CV_REPLICATES independent
runs, must agree with 1/(1 - rho^2) within 3 standard errors.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
from scipy.stats import norm

import ulam
from ulam.reproduce import Outcome, Reproduction, claim, markdown_table

# Black-Scholes call: S_T = S0 exp((r - s^2/2) T + s sqrt(T) Z), price e^{-rT} E[(S_T - K)^+].
S0, STRIKE, RATE, VOL, MATURITY = 100.0, 110.0, 0.05, 0.2, 1.0


def black_scholes_price() -> float:
    d1 = (math.log(S0 / STRIKE) + (RATE + VOL**2 / 2) * MATURITY) / (VOL * math.sqrt(MATURITY))
    d2 = d1 - VOL * math.sqrt(MATURITY)
    return S0 * norm.cdf(d1) - STRIKE * math.exp(-RATE * MATURITY) * norm.cdf(d2)


def terminal_price(z):
    return S0 * jnp.exp((RATE - VOL**2 / 2) * MATURITY + VOL * math.sqrt(MATURITY) * z)


def discounted_payoff(z):
    return math.exp(-RATE * MATURITY) * jnp.maximum(terminal_price(z) - STRIKE, 0.0)


def smooth5(u):
    """A smooth periodic-plus-linear integrand on [0,1]^5, E = 1.5^5."""
    return jnp.prod(1.0 + 0.5 * jnp.sin(2.0 * jnp.pi * u) + u)


CUBE5 = ulam.from_uniform(5, lambda u: u)
NORMAL = dist.Normal(0.0, 1.0)
E_TERMINAL = S0 * math.exp(RATE * MATURITY)
CONTROLS = [(terminal_price, E_TERMINAL)]


REPLICATES = 32  # independent estimates at each n (the spread is their standard deviation)
CV_REPLICATES = 20  # independent control-variate runs (mean factor and its standard error)


def _spread(values, rng, num_boot=400):
    """Standard deviation of independent replicates, and the bootstrap standard error of its log."""
    values = np.asarray(values, float)
    boot = rng.choice(values, size=(num_boot, values.size), replace=True).std(axis=1, ddof=1)
    return float(values.std(ddof=1)), float(np.std(np.log(boot), ddof=1))


def _weighted_slope(ns, spreads, log_se):
    """Weighted least squares of log spread on log n: (slope, standard error of the slope)."""
    x, y, w = np.log(np.asarray(ns, float)), np.log(np.asarray(spreads)), 1.0 / np.asarray(log_se) ** 2
    xm = np.sum(w * x) / np.sum(w)
    sxx = np.sum(w * (x - xm) ** 2)
    slope = float(np.sum(w * (x - xm) * (y - np.sum(w * y) / np.sum(w))) / sxx)
    return slope, float(1.0 / np.sqrt(sxx))


def run(ctx) -> Outcome:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    price = black_scholes_price()
    # Every n compiles its own program (n fixes the scan length): quick mode uses 4 sizes.
    log2_ns = list(range(8, 15, 2)) if ctx.quick else list(range(8, 21, 2))
    methods = {
        "Monte Carlo": lambda k, n: ulam.monte_carlo(discounted_payoff, NORMAL, k, n),
        "antithetic": lambda k, n: ulam.antithetic(discounted_payoff, NORMAL, k, n),
        "control variate (S_T)": lambda k, n: ulam.control_variates(discounted_payoff, NORMAL, k, n, CONTROLS),
        "RQMC (Sobol', R=16)": lambda k, n: ulam.quasi_monte_carlo(discounted_payoff, NORMAL, k, n),
    }
    rng = np.random.default_rng(ctx.seed)
    curves: dict[str, list[float]] = {name: [] for name in methods}
    curve_se: dict[str, list[float]] = {name: [] for name in methods}
    own_se: dict[str, list[float]] = {name: [] for name in methods}
    final: dict[str, ulam.Estimate] = {}
    for i, (name, method) in enumerate(methods.items()):
        ctx.progress(f"Black-Scholes: {name}")
        for log2_n in log2_ns:
            n = 2**log2_n
            keys = jax.random.split(ctx.key(1000 * i + log2_n), REPLICATES)
            ests = [method(k, n) for k in keys]
            spread, log_se = _spread([float(e.mean) for e in ests], rng)
            curves[name].append(spread)
            curve_se[name].append(log_se)
            own_se[name].append(float(np.mean([float(e.stderr) for e in ests])))
            final[name] = ests[0]
    ns = [2**m for m in log2_ns]
    fits = {name: _weighted_slope(ns, curves[name], curve_se[name]) for name in methods}
    slopes = {name: fit[0] for name, fit in fits.items()}
    mc_slope, mc_slope_se = fits["Monte Carlo"]

    # Smooth 5-d integrand: RQMC against plain MC at n = 2^14.
    ctx.progress("smooth 5-d integrand")
    n14 = 2**14
    mc5 = ulam.monte_carlo(smooth5, CUBE5, ctx.key(7), n14)
    qmc5 = ulam.quasi_monte_carlo(smooth5, CUBE5, ctx.key(8), n14, num_randomizations=16)
    rqmc_gain = float(mc5.stderr / qmc5.stderr)
    # "RQMC beats MC by orders of magnitude" is a soft claim: the factor is reported with its se, not gated.
    # The RQMC se comes from 16 randomizations, so its relative se is about 1/sqrt(2 (16 - 1)) (delta method,
    # Gaussian replicates); the MC se, from 2^14 draws, is far more precise and its error is neglected.
    rqmc_gain_se = rqmc_gain / math.sqrt(2 * (16 - 1))

    # Control variates: the achieved factor against 1/(1 - rho^2), out of sample (cross-fitted) and in sample.
    # (a) exp(X) with control X: rho^2 = 1/(e - 1) exactly.
    ctx.progress("control-variate factors")
    n_cv = ctx.size(2**18, 2**21)

    def factors(f, controls, salt):
        keys = jax.random.split(ctx.key(salt), CV_REPLICATES)
        out = np.array([[float(ulam.control_variates(f, NORMAL, k, n_cv, controls, unbiased=cross).info[
            "variance_reduction"]) for cross in (True, False)] for k in keys])
        return out.mean(0), out.std(0, ddof=1) / np.sqrt(CV_REPLICATES)  # (out of sample, in sample)

    theory_exp, theory_exp_se = 1.0 / (1.0 - 1.0 / (math.e - 1.0)), 0.0
    cv_exp, cv_exp_se = factors(jnp.exp, [(lambda x: x, 0.0)], 9)
    # (b) the call with control S_T: rho from an independent large sample (no closed form used), its
    # standard error from 32 batch means.
    z = np.asarray(jax.random.normal(ctx.key(10), (2**21,)), float)
    fz, gz = np.asarray(discounted_payoff(z), float), np.asarray(terminal_price(z), float)

    def theory_of(a, b):
        return 1.0 / (1.0 - np.corrcoef(a, b)[0, 1] ** 2)

    theory_bs = float(theory_of(fz, gz))
    batches = [theory_of(a, b) for a, b in zip(np.split(fz, 32), np.split(gz, 32))]
    theory_bs_se = float(np.std(batches, ddof=1) / np.sqrt(32))
    cv_bs, cv_bs_se = factors(discounted_payoff, CONTROLS, 11)
    z_exp = (cv_exp[0] - theory_exp) / np.hypot(cv_exp_se[0], theory_exp_se)
    z_bs = (cv_bs[0] - theory_bs) / np.hypot(cv_bs_se[0], theory_bs_se)

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for name, errs in curves.items():
        ax.loglog(ns, errs, "o-", ms=3, label=f"{name} (slope {slopes[name]:.2f})")
    ax.set_xlabel("n (evaluations)")
    ax.set_ylabel(f"spread of {REPLICATES} independent estimates")
    ax.set_title(f"Black-Scholes call, price {price:.4f}")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = ctx.figure_path("stderr_vs_n.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)

    table = markdown_table(
        ["method", f"one estimate at n=2^{log2_ns[-1]}", "truth", "z", "slope of replicate spread vs n (± se)",
         "slope of own s/sqrt(n) (for comparison)", "ess / n"],
        [
            [name, f"{float(e.mean):.5f} ± {float(e.stderr):.5f}", f"{price:.5f}",
             f"{float((e.mean - price) / e.stderr):+.2f}", f"{fits[name][0]:.3f} ± {fits[name][1]:.3f}",
             f"{_weighted_slope(ns, own_se[name], [1.0] * len(ns))[0]:.3f}", f"{float(e.ess) / float(e.n):.1f}"]
            for name, e in final.items()
        ],
    )
    spread_table = markdown_table(
        ["n"] + [f"{name}: spread / mean own se" for name in methods],
        [[f"2^{m}"] + [f"{curves[name][j]:.3g} / {own_se[name][j]:.3g}" for name in methods]
         for j, m in enumerate(log2_ns)],
    )
    cv_table = markdown_table(
        ["integrand, control", "1/(1-rho^2)", "out of sample (cross-fitted), mean ± se", "z vs 1/(1-rho^2)",
         "in sample, mean ± se"],
        [
            ["exp(X), X", f"{theory_exp:.4f} (exact)", f"{cv_exp[0]:.4f} ± {cv_exp_se[0]:.4f}", f"{z_exp:+.2f}",
             f"{cv_exp[1]:.4f} ± {cv_exp_se[1]:.4f}"],
            ["call payoff, S_T", f"{theory_bs:.4f} ± {theory_bs_se:.4f}", f"{cv_bs[0]:.4f} ± {cv_bs_se[0]:.4f}",
             f"{z_bs:+.2f}", f"{cv_bs[1]:.4f} ± {cv_bs_se[1]:.4f}"],
        ],
    )
    smooth_table = markdown_table(
        ["smooth 5-d integrand, n = 2^14", "estimate", "truth 1.5^5"],
        [["Monte Carlo", repr(mc5), f"{1.5**5:.5f}"], ["RQMC", repr(qmc5), f"{1.5**5:.5f}"]],
    )
    claims = [
        claim(f"plain MC: |slope + 1/2| / se of the slope (spread of {REPLICATES} replicates at {len(ns)} n)",
              abs(mc_slope + 0.5) / mc_slope_se, "<=", 3.0, paper="slope -1/2"),
        claim(f"CV factor out of sample vs 1/(1-rho^2), exp(X) with control X: |z| ({CV_REPLICATES} runs)",
              abs(z_exp), "<=", 3.0, paper="1/(1-rho^2)"),
        claim(f"CV factor out of sample vs 1/(1-rho^2), call with control S_T: |z| ({CV_REPLICATES} runs)",
              abs(z_bs), "<=", 3.0, paper="1/(1-rho^2)"),
    ]
    for name, e in final.items():
        claims.append(claim(f"{name} unbiased: |z| at the largest n", abs(float((e.mean - price) / e.stderr)), "<=", 4.0))
    notes = (
        f"Plain MC slope {mc_slope:.3f} ± {mc_slope_se:.3f}, fitted to the standard deviation of {REPLICATES} "
        f"independent estimates at each of n = {', '.join(f'2^{m}' for m in log2_ns)} (weighted least squares, "
        "weights from bootstrap standard errors of each log spread). Control-variate factors: mean over "
        f"{CV_REPLICATES} independent runs of n = {n_cv} draws; 'out of sample' is ulam.control_variates(..., "
        "unbiased=True), whose coefficients come from the other half of the draws; 'in sample' fits and measures on "
        "the same draws (slightly optimistic, O(1/n)). "
        f"RQMC (16 scrambled randomizations) against plain MC at n = 2^14 on the smooth 5-d integrand: MC se / RQMC "
        f"se = {rqmc_gain:.3g} ± {rqmc_gain_se:.2g} (reported, not gated: 'orders of magnitude better' is a soft claim)."
    )
    return Outcome(claims=claims, tables=[table, spread_table, cv_table, smooth_table], figures=[path], notes=notes)


REPRODUCTION = Reproduction(
    name="variance-reduction",
    paper="Owen 2013, *Monte Carlo theory, methods and examples* (ch. 2, 8, 17)",
    summary="MC error slope -1/2 (spread of independent replicates); RQMC's gain over MC on a smooth integrand reported; "
    "out-of-sample CV gain = 1/(1-rho^2)",
    run=run,
    changes=(
        "MC slope: was |slope + 1/2| <= 0.05 on the mean of each estimate's own s/sqrt(n) (-1/2 by "
        "construction); now fitted to the spread of 32 independent replicates at 4 (quick) or 7 (full) values"
        " of n, claim |slope + 1/2| <= 3 se of the slope. CV factor: was |in-sample factor / (1/(1-rho^2)) - "
        "1| <= 0.2 in one run; now the out-of-sample (cross-fitted) factor over 20 runs, |z| <= 3 against "
        "1/(1-rho^2), in-sample figure reported beside it. "
        "Gate 'RQMC se below MC se at n = 2^14, smooth 5-d integrand (factor) >= 10' dropped (last measured 55.4, quick; "
        "the same statistic on the same keys): 'orders of magnitude better' is a soft claim, now reported "
        "with its se."
    ),
)
