"""Variance reduction on integrands with known values: MC, antithetic, control variates, RQMC.

Textbook claims (Owen 2013, *Monte Carlo theory, methods and examples*, ch. 2, 8, 17):
plain Monte Carlo's standard error falls like n^{-1/2}; a control variate with
correlation rho divides the variance by 1/(1 - rho^2); randomized QMC beats plain MC
by orders of magnitude on smooth integrands.
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


def _slope(ns, errs) -> float:
    return float(np.polyfit(np.log(ns), np.log(errs), 1)[0])


def run(ctx) -> Outcome:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    price = black_scholes_price()
    # Every n compiles its own program (n fixes the scan length), so quick mode fits the
    # slope claim (plain MC) on 4 sizes and draws the other curves from 2.
    log2_ns = list(range(8, 15, 2)) if ctx.quick else list(range(8, 21))
    log2_ns_other = [log2_ns[0], log2_ns[-1]] if ctx.quick else log2_ns
    reps = ctx.size(4, 16)
    methods = {
        "Monte Carlo": lambda k, n: ulam.monte_carlo(discounted_payoff, NORMAL, k, n),
        "antithetic": lambda k, n: ulam.antithetic(discounted_payoff, NORMAL, k, n),
        "control variate (S_T)": lambda k, n: ulam.control_variates(discounted_payoff, NORMAL, k, n, CONTROLS),
        "RQMC (Sobol', R=16)": lambda k, n: ulam.quasi_monte_carlo(discounted_payoff, NORMAL, k, n),
    }
    curves: dict[str, list[float]] = {name: [] for name in methods}
    sizes = {name: log2_ns if name == "Monte Carlo" else log2_ns_other for name in methods}
    final: dict[str, ulam.Estimate] = {}
    for i, (name, method) in enumerate(methods.items()):
        ctx.progress(f"Black-Scholes: {name}")
        for log2_n in sizes[name]:
            n = 2**log2_n
            keys = jax.random.split(ctx.key(1000 * i + log2_n), reps)
            ests = [method(k, n) for k in keys]
            curves[name].append(float(np.mean([float(e.stderr) for e in ests])))
            final[name] = ests[0]
    slopes = {name: _slope([2**m for m in sizes[name]], errs) for name, errs in curves.items()}

    # Smooth 5-d integrand: RQMC against plain MC at n = 2^14.
    ctx.progress("smooth 5-d integrand")
    n14 = 2**14
    mc5 = ulam.monte_carlo(smooth5, CUBE5, ctx.key(7), n14)
    qmc5 = ulam.quasi_monte_carlo(smooth5, CUBE5, ctx.key(8), n14, num_randomizations=16)
    rqmc_gain = float(mc5.stderr / qmc5.stderr)

    # Control variates: the achieved factor against 1/(1 - rho^2).
    # (a) exp(X) with control X: rho^2 = 1/(e - 1) exactly.
    ctx.progress("control-variate factors")
    n_cv = ctx.size(2**18, 2**21)
    cv_exp = ulam.control_variates(jnp.exp, NORMAL, ctx.key(9), n_cv, [(lambda x: x, 0.0)])
    theory_exp = 1.0 / (1.0 - 1.0 / (math.e - 1.0))
    # (b) the call with control S_T: rho from an independent large sample (no closed form used).
    z = jax.random.normal(ctx.key(10), (2**21,))
    rho = float(np.corrcoef(np.asarray(discounted_payoff(z)), np.asarray(terminal_price(z)))[0, 1])
    theory_bs = 1.0 / (1.0 - rho**2)
    cv_bs = ulam.control_variates(discounted_payoff, NORMAL, ctx.key(11), n_cv, CONTROLS)
    ratio_exp = float(cv_exp.info["variance_reduction"]) / theory_exp
    ratio_bs = float(cv_bs.info["variance_reduction"]) / theory_bs

    fig, ax = plt.subplots(figsize=(6, 4.2))
    for name, errs in curves.items():
        ns = np.array([2**m for m in sizes[name]])
        ax.loglog(ns, errs, "o-", ms=3, label=f"{name} (slope {slopes[name]:.2f})")
    ax.set_xlabel("n (evaluations)")
    ax.set_ylabel("standard error")
    ax.set_title(f"Black-Scholes call, price {price:.4f}")
    ax.legend(fontsize=8)
    ax.grid(True, which="both", alpha=0.3)
    fig.tight_layout()
    path = ctx.figure_path("stderr_vs_n.png")
    fig.savefig(path, dpi=120)
    plt.close(fig)

    table = markdown_table(
        ["method", f"estimate at n=2^{log2_ns[-1]}", "truth", "z", "slope of se vs n", "ess / n"],
        [
            [name, f"{float(e.mean):.5f} ± {float(e.stderr):.5f}", f"{price:.5f}",
             f"{float((e.mean - price) / e.stderr):+.2f}", f"{slopes[name]:.3f}", f"{float(e.ess) / float(e.n):.1f}"]
            for name, e in final.items()
        ],
    )
    cv_table = markdown_table(
        ["integrand, control", "1/(1-rho^2)", "achieved", "ratio"],
        [
            ["exp(X), X", f"{theory_exp:.4f}", f"{float(cv_exp.info['variance_reduction']):.4f}", f"{ratio_exp:.3f}"],
            ["call payoff, S_T", f"{theory_bs:.4f}", f"{float(cv_bs.info['variance_reduction']):.4f}", f"{ratio_bs:.3f}"],
        ],
    )
    smooth_table = markdown_table(
        ["smooth 5-d integrand, n = 2^14", "estimate", "truth 1.5^5"],
        [["Monte Carlo", repr(mc5), f"{1.5**5:.5f}"], ["RQMC", repr(qmc5), f"{1.5**5:.5f}"]],
    )
    claims = [
        claim("plain MC slope of se vs n (Black-Scholes), |slope + 1/2|", abs(slopes["Monte Carlo"] + 0.5), "<=", 0.05,
              paper="slope -1/2"),
        claim("RQMC se below MC se at n = 2^14, smooth 5-d integrand (factor)", rqmc_gain, ">=", 10.0),
        claim("CV factor / (1/(1-rho^2)), exp(X) with control X, |ratio - 1|", abs(ratio_exp - 1.0), "<=", 0.2),
        claim("CV factor / (1/(1-rho^2)), call with control S_T, |ratio - 1|", abs(ratio_bs - 1.0), "<=", 0.2),
    ]
    for name, e in final.items():
        claims.append(claim(f"{name} unbiased: |z| at the largest n", abs(float((e.mean - price) / e.stderr)), "<=", 4.0))
    return Outcome(claims=claims, tables=[table, cv_table, smooth_table], figures=[path])


REPRODUCTION = Reproduction(
    name="variance-reduction",
    paper="Owen 2013, *Monte Carlo theory, methods and examples* (ch. 2, 8, 17)",
    summary="MC error slope -1/2; RQMC >= 10x below MC on a smooth integrand; CV gain = 1/(1-rho^2)",
    run=run,
)
