"""Langevin dynamics with iterate averaging on tensor PCA (Wei, Damian & Lee 2026), at the smoothing temperature.

Order-4 tensor PCA, ``T = θ*^{⊗4} + Sym(W)/√n`` (information exponent k* = 4: the averaged
iterate needs n ≳ d^{k*/2} = d², the last iterate n ≳ d^{k*-1} = d³). The paper's mechanism:
at a temperature hot enough to smooth the empirical landscape, the *last* Langevin iterate is
dominated by thermal noise (overlap ~ 1/√d with θ*), while the *time average* of the iterates
concentrates, and its bias is the smoothed landscape's signal (noise injection + averaging
emulates landscape smoothing). For the sign-symmetric k = 4 loss the averaged estimator is the
top eigenvector of the averaged θθᵀ (digest §24.3).

Schedule, fixed from that argument before any run (derived here; the paper's constants were not
retrievable): the random part of the potential, β⟨Sym(W), θ^{⊗4}⟩/√n, has standard deviation
≈ β/√n over the sphere, so β = √n is the coldest temperature at which the landscape's roughness
stays O(1) nats, i.e. smoothed. To first order in β the stationary second moment is
E[θθᵀ] ≈ I/d + β·Cov_unif(θθᵀ, ⟨T, θ^{⊗4}⟩), whose top eigenvector is the partial-trace
direction of T (which succeeds for n ≳ d²), with a spike eigen-gap ≈ 12β/d³; resolving it
against the sampling noise of N effectively independent draws (operator norm ≈ 2/√(dN)) needs
N ≳ d⁵/(36β²) = d³/36 at n = d², i.e. a few hundred relaxation times β/(2d). Both outputs
come from the same run; the last iterate is not given its own temperature, because the claim is
about what averaging adds to one Langevin run at the smoothing temperature.

Claims, as the paper states them (averaged Langevin succeeds with n ≳ d^{k*/2} = d² samples; the
last iterate needs n ≳ d^{k*-1} = d³), fixed before this run (issue 15 item 3), with recovery =
median overlap ≥ 0.5 (digest §24.5):
  A. the averaged iterate recovers θ* at every grid sample size n ≥ d²;
  B. at some grid n ≤ d² (well below d³) the averaged iterate recovers θ* and the last iterate of
     the same run does not.
The grid n/d² ∈ {0.25, 0.5, 1, 4} (quick, d = 24) or {0.125, 0.25, 0.5, 1, 4, 16} (full, d = 32)
is reported in full, with the per-seed count of runs where averaging hurts (averaged overlap below
the last iterate's). History: n = d²/2 was added to the grid after an earlier run had shown no
separation at n ∈ {d²/4, d², 4d²}.
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
def _overlaps(keys, n, beta, d, num_steps, step_size):
    """Per seed: overlaps [last iterate, averaged θθᵀ, partial trace] of one run at inverse temperature ``beta``."""

    def one(key):
        k_star, k_noise, k_start, k_chain = jax.random.split(key, 4)
        theta_star = jax.random.normal(k_star, (d,))
        theta_star = theta_star / jnp.linalg.norm(theta_star)
        tensor = av.tensor_pca_tensor(k_noise, theta_star, n)
        theta0 = jax.random.normal(k_start, (d,))
        theta0 = theta0 / jnp.linalg.norm(theta0)
        out = av.spherical_langevin(k_chain, av.tensor_pca_grad(tensor), theta0, step_size=step_size,
                                    inverse_temperature=beta, num_steps=num_steps)
        return jnp.stack([
            av.overlap(out.last, theta_star),
            av.overlap(out.second_moment_direction, theta_star),
            av.overlap(av.partial_trace_estimate(tensor), theta_star),
        ])

    return jax.lax.map(one, keys)


def run(ctx):
    d = ctx.size(24, 32)
    seeds = ctx.size(3, 7)
    num_steps = ctx.size(4000, 12000)
    step_size = 0.1  # a move of ≈ √(2ηd/β) ≈ 0.45 per step at β = d: ~5 steps per relaxation time β/(2d)
    ratios = ctx.size((0.25, 0.5, 1.0, 4.0), (0.125, 0.25, 0.5, 1.0, 4.0, 16.0))  # n / d²
    rows, med, hurts = [], {}, {}
    for r in ratios:
        n = r * d**2
        beta = float(np.sqrt(n))
        ctx.progress(f"d={d}, n={n:.0f}, β=√n={beta:.1f}")
        keys = jax.random.split(jax.random.fold_in(ctx.key(1), int(r * 1000)), seeds)
        o = np.asarray(_overlaps(keys, n, beta, d, num_steps, step_size))  # (seeds, 3)
        med[r] = np.median(o, axis=0)
        hurts[r] = int(np.sum(o[:, 1] < o[:, 0]))
        m = med[r]
        rows.append([f"{r:g}", f"{n:.0f}", f"{beta:.1f}", float(m[0]), float(m[1]), float(m[2]),
                     "yes" if m[1] >= THRESHOLD and m[0] < THRESHOLD else "no", f"{hurts[r]} of {seeds}"])
    table = markdown_table(
        ["n/d²", "n", "β = √n", "median overlap, last iterate", "median overlap, averaged θθᵀ",
         "median overlap, partial trace", "averaged ≥ 0.5 and last < 0.5", "seeds where averaging hurts"],
        rows,
    )

    def n_c(col):
        hits = [r for r, m in med.items() if m[col] >= THRESHOLD]
        return f"{min(hits):g}" if hits else "none"

    at_rate = [r for r in ratios if r >= 1.0]
    worst_at_rate = min(float(med[r][1]) for r in at_rate)
    separated = sum(1 for r, m in med.items() if r <= 1.0 and m[1] >= THRESHOLD and m[0] < THRESHOLD)
    claims = [
        claim(
            f"A. d={d}, β=√n: min over grid n ≥ d² of the averaged iterate's median overlap",
            worst_at_rate, ">=", THRESHOLD, paper="averaged Langevin succeeds for n ≳ d^{k*/2} = d²",
        ),
        claim(
            f"B. d={d}, β=√n: grid n ≤ d² where the averaged iterate reaches median overlap {THRESHOLD} "
            "and the last iterate of the same run does not",
            separated, ">=", 1, paper="last iterate needs n ≳ d^{k*-1} = d³",
        ),
    ]
    hurt_at = [f"n/d² = {r:g} ({hurts[r]} of {seeds} seeds)" for r in ratios if hurts[r] > 0]
    notes = (
        f"Dimension: d = {d} in this run ({'quick' if ctx.quick else 'full'} mode; quick runs d = 24, full d = 32). "
        "Averaging hurt (averaged overlap below the last iterate's) in: "
        + ("; ".join(hurt_at) if hurt_at else "no run") + ". "
        f"Tensor PCA, k = 4, d = {d}, β = √n, η = {step_size}, {num_steps} steps from a uniform start, averaging "
        f"θθᵀ over the last 80 % of them, {seeds} seeds per n (medians). Smallest grid n/d² with median overlap "
        f"≥ {THRESHOLD}: last iterate {n_c(0)}, averaged {n_c(1)}, partial trace {n_c(2)}. A uniformly random "
        f"direction has overlap ≈ 1/√d = {1 / np.sqrt(d):.2f} (the thermal level of a hot last iterate). Above "
        "β ≈ 1.23d (n ≈ 1.5d²) the stationary measure itself puts most of its mass near θ*, so the last iterate can "
        "succeed there too; the separation, if any, is expected at n ≲ d². History: the first pass gave "
        "each estimator its own best β on a grid β ∈ {1, 2, 4}·d at d = 48, with 500 steps; the last iterate at "
        "β = 4d crossed the threshold as early as the average, and the average at β ≤ 2d had far fewer than the "
        "≈ d³/36 effectively independent draws that resolving the smoothed signal needs (module docstring), "
        "so no separation showed. The grid point n = d²/2 was added after the first run of this schedule (quick "
        "mode, grid n/d² ∈ {0.25, 1, 4}) found no separation: the averaged iterate crossed at n = d² but so did "
        "the last iterate in at least 2 of 3 seeds. Reason, from the stationary law of the overlap m, ∝ exp(βm⁴)(1 − m²)^"
        "{(d−3)/2}: with β = c·d the spike region is suppressed by exp(−d·max_m[c m⁴ + ½log(1 − m²)]), which "
        "is negative only for c < 1.23 and only ≈ −0.1 at c = 1 (a factor 0.1 at d = 24), so at this small d the "
        "last iterate at β = d can sit near θ*; at n = d²/2 (c = 0.71) the factor is e^{−5}. "
        "What is not shown: the exponents themselves (n_c ∝ d² vs d³) need a sweep over d, beyond the time "
        "budget of this reproduction."
    )
    return Outcome(claims=claims, tables=[table], notes=notes)


REPRODUCTION = Reproduction(
    name="langevin-averaging",
    paper="Wei, Damian & Lee 2026, *Improved high-dimensional estimation with Langevin dynamics and stochastic "
    "weight averaging* (ICLR 2026)",
    summary="on order-4 tensor PCA at the smoothing temperature β = √n (d = 24 quick, 32 full), the averaged Langevin "
    "iterate recovers the planted direction at every grid n ≥ d², and at some n ≤ d² where the last iterate of the "
    "same run does not",
    run=run,
    changes=(
        "Claim stated as the paper states it, fixed before this run: A (new) the averaged iterate recovers θ*"
        " (median overlap >= 0.5) at every grid n >= d²; B (was: separation at any grid n) separation at some"
        " grid n <= d². The grid point n = d²/2 had been added after a run showed no separation; the whole "
        "grid is reported, with the seeds where averaging hurts, and the run's dimension (quick d = 24, full "
        "d = 32)."
    ),
)
