"""Langevin dynamics with iterate averaging on tensor PCA (Wei, Damian & Lee 2026), at d = 48 / 64.

Order-4 tensor PCA, ``T = θ*^{⊗4} + Sym(W)/√n`` (information exponent k* = 4, so the paper's
averaged-iterate rate is n ≳ d^{k*/2} = d², the last iterate's n ≳ d^{k*-1} = d³). For each sample
size n on a grid of n/d², several seeds (a fresh θ*, tensor and start each) run spherical Langevin
(:func:`ulam.mcmc.averaging.spherical_langevin`) at every inverse temperature β of a grid, all from
the same uniform start and with the same step size and number of steps. We compare the overlap
|θ̂·θ*| of the last iterate with that of the averaged estimator (top eigenvector of the averaged
θθᵀ, since the k = 4 loss is sign-symmetric), each at its best β, and report the closed-form
partial-trace estimator as the d² reference (digest §24.5).

The claim and its threshold were fixed before any run at d ≥ 48 (digest §24.5 threshold 0.5 on
the median overlap; "the averaged iterate reaches the threshold at a sample size where the last
iterate does not", the last iterate being allowed its best β of the grid).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ulam.mcmc import averaging as av
from ulam.reproduce import Outcome, Reproduction, claim, markdown_table

THRESHOLD = 0.5  # median overlap that counts as recovery (digest §24.5)


@functools.partial(jax.jit, static_argnames=("d", "num_steps"))
def _overlaps(keys, n, beta_over_d, d, num_steps, step_size):
    """Per seed: overlaps (betas, [last, averaged]) and the partial-trace overlap."""

    def one(key):
        k_star, k_noise, k_start, k_chain = jax.random.split(key, 4)
        theta_star = jax.random.normal(k_star, (d,))
        theta_star = theta_star / jnp.linalg.norm(theta_star)
        tensor = av.tensor_pca_tensor(k_noise, theta_star, n)
        theta0 = jax.random.normal(k_start, (d,))
        theta0 = theta0 / jnp.linalg.norm(theta0)
        grad = av.tensor_pca_grad(tensor)

        # vmap over β: the chains share the tensor, so each gradient is one matrix-matrix product.
        def chain(k, b):
            out = av.spherical_langevin(k, grad, theta0, step_size=step_size, inverse_temperature=b * d,
                                        num_steps=num_steps)
            return jnp.stack([av.overlap(out.last, theta_star), av.overlap(out.second_moment_direction, theta_star)])

        per_beta = jax.vmap(chain)(jax.random.split(k_chain, beta_over_d.shape[0]), beta_over_d)
        return per_beta, av.overlap(av.partial_trace_estimate(tensor), theta_star)

    return jax.lax.map(one, keys)


def run(ctx):
    d = ctx.size(48, 64)
    seeds = ctx.size(3, 5)
    num_steps = ctx.size(500, 2000)
    step_size = ctx.size(0.06, 0.02)  # η · steps = 30 / 40 units of Langevin time
    beta_over_d = ctx.size((1.0, 2.0, 4.0), (0.5, 1.0, 2.0, 4.0))
    ratios = ctx.size((0.25, 1.0, 4.0), (0.125, 0.25, 1.0, 4.0, 16.0))  # n / d²
    bod = jnp.asarray(beta_over_d, jnp.float32)
    rows, best = [], {}
    for r in ratios:
        n = r * d**2
        ctx.progress(f"d={d}, n={n:.0f}")
        keys = jax.random.split(jax.random.fold_in(ctx.key(1), int(r * 1000)), seeds)
        per_beta, pt = _overlaps(keys, n, bod, d, num_steps, step_size)
        med = np.median(np.asarray(per_beta), axis=0)  # (betas, 2)
        med_pt = float(np.median(np.asarray(pt)))
        for j, b in enumerate(beta_over_d):
            rows.append([f"{r:g}", f"{n:.0f}", f"{b:g} d", float(med[j, 0]), float(med[j, 1]), med_pt])
        best[r] = (float(med[:, 0].max()), float(med[:, 1].max()), med_pt,
                   beta_over_d[int(med[:, 0].argmax())], beta_over_d[int(med[:, 1].argmax())])
    table = markdown_table(
        ["n/d²", "n", "β", "median overlap, last iterate", "median overlap, averaged θθᵀ", "median, partial trace"],
        rows,
    )
    summary = markdown_table(
        ["n/d²", "best last (β)", "best averaged (β)", "partial trace", "averaged ≥ 0.5 and last < 0.5"],
        [[f"{r:g}", f"{b[0]:.2f} ({b[3]:g} d)", f"{b[1]:.2f} ({b[4]:g} d)", b[2],
          "yes" if b[1] >= THRESHOLD and b[0] < THRESHOLD else "no"] for r, b in best.items()],
    )
    def n_c(col):
        hits = [r for r, b in best.items() if b[col] >= THRESHOLD]
        return f"{min(hits):g}" if hits else "none"

    separated = sum(1 for b in best.values() if b[1] >= THRESHOLD and b[0] < THRESHOLD)
    claims = [
        claim(
            f"d={d}: grid sample sizes n where the averaged iterate (best β) reaches median overlap {THRESHOLD} "
            "and the last iterate (best β) does not",
            separated, ">=", 1, paper="averaged Langevin needs n ≳ d^{k*/2} = d², last iterate d^{k*-1} = d³",
        ),
    ]
    notes = (
        f"Tensor PCA, k = 4, d = {d}, η = {step_size}, {num_steps} steps, averaging over the last 80 % of them, "
        f"{seeds} seeds per n (medians), β ∈ {{{', '.join(f'{b:g}' for b in beta_over_d)}}}·d. "
        f"Smallest grid n/d² with median overlap ≥ {THRESHOLD}: last iterate {n_c(0)}, averaged {n_c(1)}, "
        f"partial trace {n_c(2)}. "
        + ("" if separated else "The separation did not show at this d (not a threshold missed by tuning): the "
           "last iterate at its best β crosses the threshold at a sample size no larger than the averaged "
           "estimator's, as the digest's pilot found at d = 24. ")
        + "Why the small-d runs cannot show it: at n ∝ d² "
        "and β ∝ d the escape barrier of the last iterate from the equator is an entropic barrier of about "
        "d²/(16β) nats plus a random-landscape roughness of about β/√n nats; at the best β these are each of "
        "order √d/2 nats, i.e. only ~3–4 nats at d = 48–64, which a few hundred Langevin steps cross. "
        "The paper's d³-versus-d² gap is asymptotic; seeing it needs d in the hundreds "
        "(an O(d⁴) gradient: 4·10⁸ entries at d = 144), beyond a 2-core CPU. The averaged θθᵀ at high temperature "
        "(β ≤ d) needs ≳ d³/576·(d/β)² effectively independent draws to resolve the spike, more than these runs "
        "give. Model choice: a single-index model with the He₄ correlation loss (cheaper per step) was tried "
        "first and dropped before writing this file: at n ~ d² its empirical loss is dominated by single data "
        "points (θ ∥ x_i gives He₄(√d) ≫ 1), which is not the paper's regime."
    )
    return Outcome(claims=claims, tables=[summary, table], notes=notes)


REPRODUCTION = Reproduction(
    name="langevin-averaging",
    paper="Wei, Damian & Lee 2026, *Improved high-dimensional estimation with Langevin dynamics and stochastic "
    "weight averaging* (ICLR 2026)",
    summary="on order-4 tensor PCA, the averaged Langevin iterate recovers the planted direction at sample sizes "
    "where the last iterate does not",
    run=run,
)
