"""Langevin dynamics with iterate averaging on tensor PCA (Wei, Damian & Lee 2026), at small scale.

Order-4 tensor PCA, ``T = θ*^{⊗4} + Sym(W)/√n``. For each inverse temperature β and sample
size n on a grid around d^{k/2} = d², several seeds run spherical Langevin
(:func:`ulam.mcmc.averaging.spherical_langevin`) from a uniform start; we compare the overlap
|θ̂·θ*| of the last iterate with that of the averaged estimator (top eigenvector of the
averaged θθᵀ, since the k = 4 loss is sign-symmetric), and report the closed-form partial-trace
estimator as the d² reference. Thresholds were fixed before the runs (digest §24.5).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ulam.mcmc import averaging as av
from ulam.reproduce import Outcome, Reproduction, claim, markdown_table

THRESHOLD = 0.5


@functools.partial(jax.jit, static_argnames=("d", "num_steps"))
def _overlaps(keys, theta_star, n, beta, d, num_steps, step_size):
    def one(key):
        k1, k2, k3 = jax.random.split(key, 3)
        tensor = av.tensor_pca_tensor(k1, theta_star, n)
        theta0 = jax.random.normal(k2, (d,))
        out = av.spherical_langevin(
            k3, av.tensor_pca_grad(tensor), theta0 / jnp.linalg.norm(theta0),
            step_size=step_size, inverse_temperature=beta, num_steps=num_steps,
        )
        return jnp.stack([
            av.overlap(out.last, theta_star),
            av.overlap(out.second_moment_direction, theta_star),
            av.overlap(av.partial_trace_estimate(tensor), theta_star),
        ])

    return jax.lax.map(one, keys)


def run(ctx):
    d = ctx.size(24, 32)
    seeds = ctx.size(3, 5)
    num_steps = ctx.size(4000, 8000)
    betas = ctx.size((20.0, 30.0), (20.0, 30.0, 45.0))
    step_size = 1e-2
    ratios = (0.25, 1.0, 4.0, 16.0, 4.0 * d)  # n / d^2, up to n = 4 d^3
    theta_star = jax.random.normal(ctx.key(0), (d,))
    theta_star = theta_star / jnp.linalg.norm(theta_star)
    rows, med = [], {}
    for beta in betas:
        for r in ratios:
            n = r * d**2
            ctx.progress(f"beta={beta:g}, n={n:.0f}")
            keys = jax.random.split(jax.random.fold_in(ctx.key(1), int(n)), seeds)
            o = np.asarray(_overlaps(keys, theta_star, n, beta, d, num_steps, step_size))
            med[(beta, r)] = np.median(o, axis=0)
            rows.append([f"{beta:g}", f"{n:.0f}", float(r), *[float(x) for x in np.median(o, axis=0)],
                         *[float(x) for x in o.mean(axis=0)]])
    table = markdown_table(
        ["β", "n", "n/d²", "median last", "median averaged", "median partial trace", "mean last", "mean averaged",
         "mean partial trace"], rows)
    separated = [(b, r) for (b, r), m in med.items() if m[1] >= THRESHOLD and m[0] < THRESHOLD]
    # The β at which the last iterate does best (digest §24.5, test 1(ii)).
    big = [r for r in ratios if r >= 1.0]
    best_beta = max(betas, key=lambda b: np.mean([med[(b, r)][0] for r in big]))
    gap = float(np.mean([med[(best_beta, r)][1] - med[(best_beta, r)][0] for r in big]))

    def n_c(beta, col):
        hits = [r for r in ratios if med[(beta, r)][col] >= THRESHOLD]
        return min(hits) if hits else float("inf")

    thresholds = markdown_table(
        ["β", "n_c/d² last iterate", "n_c/d² averaged", "n_c/d² partial trace"],
        [[f"{b:g}", n_c(b, 0), n_c(b, 1), n_c(b, 2)] for b in betas],
    )
    claims = [
        claim(
            f"grid points (β, n) where the averaged iterate reaches overlap {THRESHOLD} and the last iterate does not",
            len(separated), ">=", 1, paper="averaged Langevin needs n ≳ d^{k/2}, last iterate d^{k-1}",
        ),
        claim(
            f"at the β where the last iterate does best (β={best_beta:g}), mean over n ∈ [d², 4d³] of "
            "overlap(averaged) − overlap(last)",
            gap, ">=", 0.0, paper="averaging never hurts (digest §24.5, test 1(ii))",
        ),
    ]
    notes = (
        f"d = {d}, k = 4, η = {step_size}, {num_steps} steps, average over the last 80 %, {seeds} seeds, medians "
        "shown. Caveat (digest §24.5): at this small d the asymptotic d³-versus-d² separation is not expected; "
        "where the last iterate fails at every n (hot β), its failure is a temperature effect — the chain is too "
        "hot to stay localized — while the averaged θθᵀ still recovers θ*. Where the last iterate works best, "
        "compare the n_c table: a separation in n there is the paper's effect."
    )
    return Outcome(claims=claims, tables=[table, thresholds], notes=notes)


REPRODUCTION = Reproduction(
    name="langevin-averaging",
    paper="Wei, Damian & Lee 2026, *Improved high-dimensional estimation with Langevin dynamics and stochastic "
    "weight averaging* (ICLR 2026)",
    summary="on order-4 tensor PCA, the averaged Langevin iterate recovers the planted direction at sample sizes "
    "where the last iterate does not",
    run=run,
)
