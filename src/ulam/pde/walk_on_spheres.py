r"""Walk-on-spheres (WoS): Monte Carlo solutions of Dirichlet problems at chosen points.

Solves :math:`\Delta u - \sigma u = -f` in :math:`\Omega`, :math:`u = g` on
:math:`\partial\Omega` (:math:`\sigma \ge 0`; Laplace for :math:`f=0,\sigma=0`,
Poisson for :math:`\sigma=0`) by the recursion of Muller (1956): from :math:`x_0`,
with :math:`R_k = \mathrm{dist}(x_k,\partial\Omega)`,

.. math::  \hat u(x_0) = \sum_{k<T} w_k\,|G_{R_k}|\,\rho_k f(y_k) + w_T\, g(\pi(x_T)),
           \qquad x_{k+1} \sim \mathrm{Unif}\,\partial B(x_k, R_k),

where :math:`y_k\sim G_{R_k}(x_k,\cdot)/|G_{R_k}|` is drawn through the ball's Green's
function (:mod:`ulam.pde.green`), :math:`\rho_k = G^\sigma/G` and
:math:`w_{k+1} = w_k\,\kappa_\sigma(R_k)` are the screened factors (1 when
:math:`\sigma=0`), and the walk stops at step :math:`T` when :math:`R_T<\varepsilon`
(the :math:`\varepsilon`-shell, a bias of order :math:`\varepsilon\,|\nabla u|`) or
after ``max_steps`` (then counted in ``info["truncated_fraction"]``).

The gradient estimator (Sawhney & Crane 2020) differentiates the first
ball: :math:`\nabla u(x_0) = \tfrac{d}{R_0}\mathbb E[\nu_0\,\hat u(x_1)] + \int_{B_0}\nabla_xG f`.

Variance reduction: ``"antithetic"`` pairs every walk with its mirror image (all
directions negated), ``"control_variate"`` subtracts :math:`\hat\beta\cdot(x_1-x_0)`
with :math:`\hat\beta` the regression coefficient, which is the WoS gradient
estimate itself (the gradient control variate of Sawhney & Crane 2020).

Walks run in chunks of at most ``batch_size`` (points x walks) and their moments are
merged (Chan et al.), so memory is bounded for any number of walks. Same key,
same ``batch_size`` -> same result.

Papers: Muller (1956); Sawhney & Crane (2020), *Monte Carlo geometry processing*;
Viswanath et al. (2026), *Operator learning using weak supervision from
walk-on-spheres* (WoS-NO), which uses these estimates as training labels.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from ulam.pde import Ball, DirichletProblem, walk_on_spheres
  >>> disk = Ball(jnp.zeros(2), 1.0)
  >>> problem = DirichletProblem(disk, boundary=lambda x: x[0] ** 2 - x[1] ** 2)
  >>> est = walk_on_spheres(problem, jax.random.key(0), jnp.array([[0.3, 0.2]]), num_walks=4096)
  >>> bool(abs(est.mean[0] - 0.05) < 4 * est.stderr[0] + 2e-3)
  True
"""

from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ulam import checks
from ulam.checks import is_concrete
from ulam.estimate import Estimate
from ulam.pde import green
from ulam.pde.domains import check_signed_distance

__all__ = ["DirichletProblem", "WalkMoments", "walk_on_spheres", "solution_gradient", "walk_moments"]

_METHODS = ("none", "antithetic", "control_variate")


class DirichletProblem(NamedTuple):
    r""":math:`\Delta u - \sigma u = -f` in ``domain``, :math:`u = g` on its boundary.

    Attributes:
      domain: a domain from :mod:`ulam.pde.domains` (``sdf``, ``closest_point``, ``dim``).
      boundary: :math:`g`, a function of one point ``x`` of shape ``(dim,)`` returning a scalar.
      source: :math:`f` (same signature), or ``None`` for Laplace.
      absorption: :math:`\sigma \ge 0` (screened Poisson); 0 for Laplace and Poisson.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.pde import Ball, DirichletProblem
      >>> prob = DirichletProblem(Ball(jnp.zeros(3), 1.0), boundary=lambda x: x[0], source=lambda x: 1.0 + 0 * x[0])
      >>> prob.domain.dim, prob.absorption
      (3, 0.0)
    """

    domain: Any
    boundary: Callable
    source: Callable | None = None
    absorption: float = 0.0


class WalkMoments(NamedTuple):
    """Per-point moments of the per-walk features (see :func:`walk_moments`).

    Fields (``P`` query points, ``k = 1 + 3 dim`` features): ``count`` ``(P,)`` samples
    (walks, or antithetic pairs); ``mean`` ``(P, k)``; ``cov`` ``(P, k, k)``;
    ``mean_steps`` ``(P,)`` mean walk length; ``truncated_fraction`` ``(P,)`` share of
    walks stopped by ``max_steps``; ``boundary_failures`` / ``source_failures`` ``(P,)``
    integer counts of walks on which the boundary function (at the exit point) or the
    source function returned NaN or infinity -- such walks make ``mean`` and ``cov``
    non-finite, and :func:`walk_on_spheres` raises on them.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.pde import Ball, DirichletProblem, walk_moments
      >>> prob = DirichletProblem(Ball(jnp.zeros(2), 1.0), boundary=lambda x: x[0])
      >>> m = walk_moments(prob, jax.random.key(0), jnp.array([[0.1, 0.2]]), num_walks=64)
      >>> m.mean.shape, m.cov.shape, int(m.boundary_failures[0])
      ((1, 7), (1, 7, 7), 0)
    """

    count: jax.Array  # (P,) samples (walks, or antithetic pairs)
    mean: jax.Array  # (P, k)
    cov: jax.Array  # (P, k, k) sample covariance
    mean_steps: jax.Array  # (P,)
    truncated_fraction: jax.Array  # (P,)
    boundary_failures: jax.Array | None = None  # (P,) walks whose g at the exit point was NaN/inf
    source_failures: jax.Array | None = None  # (P,) walks whose source terms were NaN/inf


def _features(problem_parts, key, x0, data, *, epsilon, max_steps, antithetic, pool_size):
    """Run one walk from each row of ``x0`` (N, d); per-walk features (N, 1 + 3d), steps, truncated.

    ``data`` (a pytree with leading axis N, or None) is passed to ``boundary(x, data_i)``
    and ``source(x, data_i)`` for the walk from row ``i``.

    A pool of ``pool_size`` walk slots advances together; a slot whose walk ends
    is refilled with the next walk at once, so a few long walks do not keep the
    whole batch waiting (the cost is about ``N * mean_length / pool_size``
    iterations instead of ``max_length`` iterations of the whole batch). With
    ``antithetic``, walk ``i`` and walk ``i + N/2`` share a slot pair and mirrored draws.
    """
    domain, boundary, source, absorption = problem_parts
    n, d = x0.shape
    dtype = x0.dtype
    sdf = jax.vmap(domain.sdf)
    screened = absorption is not None
    pool = pool_size
    half = pool // 2 if antithetic else pool
    n_units = n // 2 if antithetic else n  # walks, or walk pairs, to hand out

    def mirrored(u):
        return jnp.concatenate([u, -u]) if antithetic else u

    def directions(k):
        return mirrored(green.uniform_direction(k, (half,), d))

    def radii(k, sampler):
        s = sampler(k, (half,), d)
        return jnp.concatenate([s, s]) if antithetic else s

    # Threefry costs ~5x more than the rest of a walk step on CPU; the walk's own draws come
    # from XLA's RngBitGenerator, seeded by threefry bits of the caller's key.
    key = jax.random.wrap_key_data(jax.random.bits(key, (4,), jnp.uint32), impl="rbg")
    def f_at(y, slot_data):
        return jax.vmap(source)(y) if data is None else jax.vmap(source)(y, slot_data)

    slot_offset = jnp.concatenate([jnp.zeros(half, jnp.int32), jnp.full(half, n // 2, jnp.int32)]) if antithetic else 0

    zeros_d = jnp.zeros((pool, d), dtype)
    state = dict(
        it=jnp.int32(0),
        next=jnp.int32(0),
        walk=jnp.full(pool, n, jnp.int32),
        x=zeros_d,
        w=jnp.ones(pool, dtype),
        acc=jnp.zeros(pool, dtype),
        steps=jnp.zeros(pool, jnp.int32),
        active=jnp.zeros(pool, bool),
        s0=jnp.zeros(pool, dtype),
        z=zeros_d,
        a=zeros_d,
        h0=zeros_d,
        data=jax.tree_util.tree_map(lambda a: jnp.zeros((pool, *a.shape[1:]), a.dtype), data),
    )
    out = dict(
        x=jnp.zeros((n, d), dtype),
        w=jnp.ones(n, dtype),
        acc=jnp.zeros(n, dtype),
        s0=jnp.zeros(n, dtype),
        z=jnp.zeros((n, d), dtype),
        a=jnp.zeros((n, d), dtype),
        h0=jnp.zeros((n, d), dtype),
        steps=jnp.zeros(n, jnp.int32),
        truncated=jnp.zeros(n, bool),
    )

    def refill(st):
        if antithetic:
            free_unit = ~st["active"][:half] & ~st["active"][half:]
        else:
            free_unit = ~st["active"]
        rank = jnp.cumsum(free_unit, dtype=jnp.int32) - 1
        unit = st["next"] + rank
        load_unit = free_unit & (unit < n_units)
        load = jnp.concatenate([load_unit, load_unit]) if antithetic else load_unit
        unit = jnp.concatenate([unit, unit]) if antithetic else unit
        walk = jnp.minimum(unit + slot_offset, n - 1)
        new = dict(st)
        new["walk"] = jnp.where(load, walk, st["walk"])
        new["x"] = jnp.where(load[:, None], x0[walk], st["x"])
        for name, fresh in (("w", 1.0), ("acc", 0.0), ("s0", 0.0)):
            new[name] = jnp.where(load, fresh, st[name])
        for name in ("z", "a", "h0"):
            new[name] = jnp.where(load[:, None], 0.0, st[name])
        new["steps"] = jnp.where(load, 0, st["steps"])
        new["data"] = jax.tree_util.tree_map(
            lambda a, cur: jnp.where(load.reshape(-1, *([1] * (a.ndim - 1))), a[walk], cur), data, st["data"]
        )
        new["active"] = st["active"] | load
        new["next"] = jnp.minimum(st["next"] + jnp.sum(free_unit, dtype=jnp.int32), n_units)
        return new

    def body(carry):
        st, out = carry
        st = refill(st)
        k = jax.random.fold_in(key, st["it"])
        k_dir, k_src, k_grad = jax.random.split(k, 3)
        x, w, steps, active = st["x"], st["w"], st["steps"], st["active"]
        radius = jnp.maximum(-sdf(x), 0.0)
        inside = radius >= epsilon
        moving = active & inside & (steps < max_steps)
        finishing = active & ~moving
        first = moving & (steps == 0)
        nu = directions(k_dir)
        if source is None:
            src = jnp.zeros(pool, dtype)
        else:
            k1, k2 = jax.random.split(k_src)
            s = radii(k1, green.sample_green_radius)
            y = x + (radius * s)[:, None] * directions(k2)
            src = green.ball_green_mass(radius, d) * f_at(y, st["data"])
            if screened:
                src = src * green.screened_green_ratio(jnp.maximum(radius * s, 1e-30), radius, absorption, d)
        new = dict(st)
        new["acc"] = st["acc"] + jnp.where(moving, w * src, 0.0)
        new["x"] = jnp.where(moving[:, None], x + radius[:, None] * nu, x)
        if screened:
            new["w"] = jnp.where(moving, w * green.screened_survival(radius, absorption, d), w)
        new["steps"] = steps + moving
        safe_r = jnp.where(moving, radius, 1.0)
        new["s0"] = jnp.where(first, src, st["s0"])
        new["z"] = jnp.where(first[:, None], radius[:, None] * nu, st["z"])
        new["a"] = jnp.where(first[:, None], (d / safe_r)[:, None] * nu, st["a"])
        if source is not None and not screened:
            # Source part of the gradient, int_B grad_x G f, with the radius drawn from |grad_x G|.
            kr, kd = jax.random.split(k_grad)
            s = radii(kr, green.sample_green_gradient_radius)
            om = directions(kd)
            yg = x + (radius * s)[:, None] * om
            h0 = (green.green_gradient_mass(radius, d) * f_at(yg, st["data"]))[:, None] * om
            new["h0"] = jnp.where(first[:, None], h0, st["h0"])
        new["active"] = moving
        new["it"] = st["it"] + 1
        idx = jnp.where(finishing, st["walk"], n)  # out of range: dropped
        out = dict(out)
        for name in ("x", "w", "acc", "s0", "z", "a", "h0", "steps"):
            out[name] = out[name].at[idx].set(st[name] if name != "steps" else steps, mode="drop")
        out["truncated"] = out["truncated"].at[idx].set(inside, mode="drop")
        return new, out

    def cond(carry):
        st, _ = carry
        return jnp.any(st["active"]) | (st["next"] < n_units)

    _, out = jax.lax.while_loop(cond, body, (state, out))
    cp = jax.vmap(domain.closest_point)(out["x"])
    g_end = jax.vmap(boundary)(cp) if data is None else jax.vmap(boundary)(cp, data)
    value = out["acc"] + out["w"] * g_end
    grad = out["a"] * (value - out["s0"])[:, None] + out["h0"]
    feats = jnp.concatenate([value[:, None], out["z"], grad, out["a"]], axis=1)
    # Failure flags: bit 0 the boundary value, bit 1 the source terms (value or gradient part).
    bad_g = ~jnp.isfinite(g_end)
    bad_f = ~(jnp.isfinite(out["acc"]) & jnp.isfinite(out["s0"]) & jnp.all(jnp.isfinite(out["h0"]), axis=1))
    failed = bad_g.astype(jnp.int32) + 2 * bad_f.astype(jnp.int32)
    return feats, out["steps"], out["truncated"], failed


def _chunk_moments(feats, mask):
    """Masked mean and centred sum of outer products over axis 1 of ``feats`` (P, w, k)."""
    m = mask.astype(feats.dtype)
    count = jnp.sum(m, axis=1)
    mean = jnp.sum(feats * m[..., None], axis=1) / jnp.maximum(count, 1.0)[:, None]
    c = (feats - mean[:, None, :]) * m[..., None]
    m2 = jnp.einsum("pwi,pwj->pij", c, c)
    return count, mean, m2


def _merge(a, b):
    """Chan et al. (1979) parallel update of (count, mean, M2)."""
    n1, mu1, m1 = a
    n2, mu2, m2 = b
    n = n1 + n2
    delta = mu2 - mu1
    frac = jnp.where(n > 0, n2 / jnp.maximum(n, 1.0), 0.0)
    mu = mu1 + delta * frac[:, None]
    m = m1 + m2 + jnp.einsum("pi,pj->pij", delta, delta) * (n1 * frac)[:, None, None]
    return n, mu, m


@functools.partial(
    jax.jit,
    static_argnames=(
        "boundary", "source", "num_walks", "point_block", "walk_block", "antithetic", "screened",
        "pool_size",
    ),
)
def _moments_jit(
    domain, absorption, key, points, epsilon, max_steps, point_data, *, boundary, source, num_walks, point_block, walk_block,
    antithetic, screened, pool_size,
):
    # epsilon and max_steps are traced: changing them does not recompile.
    return _moments(
        domain, boundary, source, absorption if screened else None, key, points,
        num_walks=num_walks, epsilon=epsilon, max_steps=max_steps,
        point_block=point_block, walk_block=walk_block, antithetic=antithetic, pool_size=pool_size,
        point_data=point_data,
    )


def _moments(
    domain, boundary, source, absorption, key, points, *, num_walks, epsilon, max_steps, point_block, walk_block,
    antithetic, pool_size, point_data=None,
):
    p, d = points.shape
    num_blocks = -(-p // point_block)

    def to_blocks(a):
        pad = jnp.broadcast_to(a[:1], (num_blocks * point_block - p, *a.shape[1:]))
        return jnp.concatenate([a, pad]).reshape(num_blocks, point_block, *a.shape[1:])

    blocks = to_blocks(points)
    data_blocks = jax.tree_util.tree_map(to_blocks, point_data)
    num_chunks = -(-num_walks // walk_block)
    k_feat = 1 + 3 * d
    parts = (domain, boundary, source, absorption)
    per = 2 if antithetic else 1  # walks per sample

    def block_moments(args):
        i, xb, db = args

        def per_walk(a):
            # (point_block, ...) -> one row per walk, in the same layout as x0 below.
            a = jnp.broadcast_to(a[:, None], (point_block, walk_block, *a.shape[1:]))
            if antithetic:
                a = jnp.swapaxes(a, 0, 1)
            return a.reshape(point_block * walk_block, *a.shape[2:])

        def chunk(carry, j):
            stats, steps_sum, trunc_sum, fail_g, fail_f = carry
            x0 = jnp.broadcast_to(xb[:, None, :], (point_block, walk_block, d))
            if antithetic:
                # Pairs (j, j + w/2) of the same point: lay the batch out as [first halves; mirrors].
                x0 = x0.transpose(1, 0, 2)
            kk = jax.random.fold_in(jax.random.fold_in(key, i), j)
            feats, steps, trunc, failed = _features(
                parts, kk, x0.reshape(-1, d), jax.tree_util.tree_map(per_walk, db), epsilon=epsilon, max_steps=max_steps, antithetic=antithetic,
                pool_size=pool_size,
            )
            if antithetic:
                feats = feats.reshape(2, walk_block // 2, point_block, k_feat).mean(axis=0).transpose(1, 0, 2)
                steps = steps.reshape(walk_block, point_block).T
                trunc = trunc.reshape(walk_block, point_block).T
                failed = failed.reshape(walk_block, point_block).T
            else:
                feats = feats.reshape(point_block, walk_block, k_feat)
                steps = steps.reshape(point_block, walk_block)
                trunc = trunc.reshape(point_block, walk_block)
                failed = failed.reshape(point_block, walk_block)
            w = jnp.arange(walk_block)
            pair = w % (walk_block // 2) if antithetic else w
            walk_mask = (j * walk_block + per * pair) < num_walks
            sample_mask = (j * walk_block + per * jnp.arange(walk_block // per)) < num_walks
            mask = jnp.broadcast_to(sample_mask, (point_block, walk_block // per))
            stats = _merge(stats, _chunk_moments(feats, mask))
            steps_sum = steps_sum + jnp.sum(jnp.where(walk_mask, steps, 0), axis=1, dtype=jnp.int32)
            trunc_sum = trunc_sum + jnp.sum(jnp.where(walk_mask, trunc, False), axis=1, dtype=jnp.int32)
            failed = jnp.where(walk_mask, failed, 0)
            fail_g = fail_g + jnp.sum(failed % 2, axis=1, dtype=jnp.int32)
            fail_f = fail_f + jnp.sum(failed // 2, axis=1, dtype=jnp.int32)
            return (stats, steps_sum, trunc_sum, fail_g, fail_f), None

        zero = (
            jnp.zeros(point_block, points.dtype),
            jnp.zeros((point_block, k_feat), points.dtype),
            jnp.zeros((point_block, k_feat, k_feat), points.dtype),
        )
        ints = jnp.zeros(point_block, jnp.int32)
        init = (zero, ints, ints, ints, ints)
        (stats, steps_sum, trunc_sum, fail_g, fail_f), _ = jax.lax.scan(chunk, init, jnp.arange(num_chunks))
        return stats, steps_sum, trunc_sum, fail_g, fail_f

    (count, mean, m2), steps_sum, trunc_sum, fail_g, fail_f = jax.lax.map(block_moments, (jnp.arange(num_blocks), blocks, data_blocks))
    count = count.reshape(-1)[:p]
    mean = mean.reshape(-1, k_feat)[:p]
    cov = m2.reshape(-1, k_feat, k_feat)[:p] / jnp.maximum(count - 1.0, 1.0)[:, None, None]
    walks = float(num_walks)
    return WalkMoments(
        count, mean, cov, steps_sum.reshape(-1)[:p] / walks, trunc_sum.reshape(-1)[:p] / walks,
        fail_g.reshape(-1)[:p], fail_f.reshape(-1)[:p],
    )


def _validate(problem, points, num_walks, epsilon, max_steps, variance_reduction, check_domain, key):
    checks.prng_key(key)
    if not isinstance(problem, DirichletProblem):
        raise TypeError(checks.message("problem", "a DirichletProblem(domain, boundary, source, absorption)",
                                       type(problem).__name__))
    domain = problem.domain
    for name in ("sdf", "closest_point", "dim"):
        if not hasattr(domain, name):
            raise TypeError(checks.message("problem.domain", f"a domain with .{name} (see ulam.pde.domains)",
                                           type(domain).__name__))
    d = domain.dim
    checks.function("problem.boundary", problem.boundary, "a callable g(x) -> scalar")
    if problem.source is not None:
        checks.function("problem.source", problem.source, "a callable f(x) -> scalar, or None")
    for name, fn in (("boundary", problem.boundary), ("source", problem.source)):
        if fn is None:
            continue
        try:
            out = jax.eval_shape(fn, jax.ShapeDtypeStruct((d,), jnp.float32))
        except Exception as err:  # report what the user's function did wrong on a (dim,) input
            raise TypeError(checks.message(f"problem.{name}", f"a function of one point of shape ({d},)",
                                           f"an error when called on one: {err}")) from err
        # One scalar per point: the message names the function and the shape it returned.
        checks.callback_output(f"problem.{name}", out, shape=(), what=f"a scalar for one point of shape ({d},)")
    absorption = problem.absorption
    if checks.is_concrete(absorption):
        if np.shape(absorption) != ():
            raise ValueError(checks.message("problem.absorption", "a scalar", f"shape {np.shape(absorption)}"))
        checks.positive("problem.absorption", absorption, allow_zero=True)
    if isinstance(epsilon, bool) or not isinstance(epsilon, (int, float, np.floating)):
        raise TypeError(checks.message("epsilon", "a number (the shell width)", type(epsilon).__name__))
    checks.positive("epsilon", epsilon, do="the shell width must be a finite number > 0")
    checks.count("max_steps", max_steps)
    checks.one_of("variance_reduction", variance_reduction, _METHODS)
    min_walks = 4 if variance_reduction == "antithetic" else 2
    checks.count("num_walks", num_walks, minimum=min_walks)
    if variance_reduction == "antithetic" and num_walks % 2:
        raise ValueError(checks.message("num_walks", "an even number (antithetic walks come in pairs)", num_walks))
    points = jnp.asarray(points)
    if points.ndim == 1:
        points = points[None]
    if points.ndim != 2 or points.shape[1] != d:
        raise ValueError(checks.message("points", f"shape (num_points, {d}) for a {d}-D domain", f"shape {tuple(points.shape)}"))
    if not jnp.issubdtype(points.dtype, jnp.floating):
        points = points.astype(jnp.result_type(float))
    if not isinstance(points, jax.core.Tracer):
        checks.finite("points", points)
        phi = np.asarray(jax.vmap(domain.sdf)(points))
        outside = np.flatnonzero(phi >= 0)
        if outside.size:
            i = int(outside[0])
            raise ValueError(
                f"points: {outside.size} query point(s) lie outside the domain (signed distance >= 0), e.g. point {i} "
                f"= {np.asarray(points[i]).tolist()} with distance {phi[i]:.3g}; walk-on-spheres needs interior points"
            )
        if check_domain:
            check_signed_distance(domain, key=jax.random.fold_in(key, 7919))
    return points


def _blocks(num_points, num_walks, batch_size, antithetic, pool_size):
    checks.count("batch_size", batch_size, minimum=2)
    walk_block = min(num_walks, batch_size)
    if antithetic:
        walk_block = max(2, walk_block - walk_block % 2)
    point_block = max(1, min(num_points, batch_size // walk_block))
    chunk = point_block * walk_block
    if pool_size is None:
        # Enough slots to amortise the loop overhead, few enough that refills keep them busy.
        pool_size = min(chunk, 1024)
    checks.count("pool_size", pool_size, minimum=2)
    pool_size = int(min(pool_size, chunk))
    if antithetic:
        pool_size = max(2, pool_size - pool_size % 2)
    return point_block, walk_block, pool_size


def walk_moments(
    problem: DirichletProblem,
    key,
    points,
    *,
    num_walks: int = 256,
    epsilon: float = 1e-3,
    max_steps: int = 1024,
    batch_size: int = 65536,
    antithetic: bool = False,
    pool_size: int | None = None,
    point_data=None,
):
    r"""Per-point moments of the per-walk features :math:`[\hat u, x_1 - x_0, \hat{\nabla u}, a]`.

    The building block of :func:`walk_on_spheres` and :func:`solution_gradient`;
    a pure function (no host checks), so it can be called inside ``jit``/``vmap``
    (e.g. to make training labels). ``problem.boundary`` and ``problem.source`` may
    close over traced values there.

    ``point_data``: a pytree with leading axis ``P`` (one entry per query point). When
    given, the boundary and source are called as ``g(x, data_p)`` and ``f(x, data_p)``
    for walks started at point ``p``: one call then solves many problem instances
    (e.g. a family of boundary data for operator learning) with a single walk pool.

    Returns a :class:`WalkMoments`.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.pde import Ball, DirichletProblem, walk_moments
      >>> prob = DirichletProblem(Ball(jnp.zeros(2), 1.0), boundary=lambda x, c: c * x[0])
      >>> m = walk_moments(prob, jax.random.key(0), jnp.array([[0.2, 0.0], [0.2, 0.0]]), num_walks=512,
      ...                  point_data=jnp.array([1.0, -1.0]))  # u = c x: two problems, one pool
      >>> bool(jnp.all(jnp.abs(m.mean[:, 0] - jnp.array([0.2, -0.2])) < 0.05))
      True
    """
    checks.prng_key(key)
    num_walks = checks.count("num_walks", num_walks)
    points = jnp.asarray(points)
    point_block, walk_block, pool_size = _blocks(points.shape[0], num_walks, batch_size, antithetic, pool_size)
    absorption = problem.absorption
    screened = isinstance(absorption, jax.core.Tracer) or float(absorption) != 0.0
    if isinstance(points, jax.core.Tracer) or _closes_over_tracer(problem):
        return _moments(
            problem.domain, problem.boundary, problem.source, absorption if screened else None, key, points,
            num_walks=num_walks, epsilon=epsilon, max_steps=max_steps,
            point_block=point_block, walk_block=walk_block, antithetic=antithetic, pool_size=pool_size,
            point_data=point_data,
        )
    return _moments_jit(
        problem.domain, jnp.asarray(absorption, points.dtype), key, points, jnp.asarray(epsilon, points.dtype),
        jnp.asarray(max_steps, jnp.int32), point_data,
        boundary=problem.boundary, source=problem.source, num_walks=num_walks, point_block=point_block,
        walk_block=walk_block, antithetic=antithetic, screened=screened, pool_size=pool_size,
    )


def _closes_over_tracer(problem) -> bool:
    leaves = jax.tree_util.tree_leaves(problem.domain)
    for fn in (problem.boundary, problem.source):
        if fn is None:
            continue
        closure = getattr(fn, "__closure__", None) or ()
        leaves += [c.cell_contents for c in closure if hasattr(c, "cell_contents")]
        leaves += jax.tree_util.tree_leaves(getattr(fn, "args", ()))
    return any(isinstance(x, jax.core.Tracer) for x in leaves)


def _walk_info(m: WalkMoments) -> dict:
    info = {
        "mean_walk_length": m.mean_steps,
        "overall_mean_walk_length": jnp.mean(m.mean_steps),
        "truncated_fraction": m.truncated_fraction,
    }
    if m.boundary_failures is not None:
        info["boundary_failures"] = m.boundary_failures
        info["source_failures"] = m.source_failures
    return info


def _raise_on_failures(m: WalkMoments, num_walks: int) -> None:
    """Refuse a NaN estimate: name the user function that returned NaN/inf, and how often."""
    if not is_concrete((m.boundary_failures, m.source_failures)):
        return  # inside a transformation: the counts stay in ``info``
    for name, counts in (("problem.boundary", m.boundary_failures), ("problem.source", m.source_failures)):
        counts = np.asarray(counts)
        if counts.sum():
            points = np.flatnonzero(counts)
            raise ValueError(checks.message(
                name, "finite values",
                f"NaN or inf on {int(counts.sum())} of {num_walks * counts.size} walks "
                f"(from {points.size} of {counts.size} query points, e.g. {int(counts[points[0]])} of {num_walks} walks "
                f"from point {int(points[0])})",
                "make the function finite wherever the walks can reach it (the boundary for g, the domain for f)",
            ))


def _value_estimate(m: WalkMoments, d: int, method: str, num_walks: int, epsilon: float) -> Estimate:
    var_y = m.cov[:, 0, 0]
    mean = m.mean[:, 0]
    info = _walk_info(m)
    info["epsilon"] = jnp.asarray(epsilon)
    info["num_walks"] = jnp.asarray(num_walks)
    n = m.count
    if method == "control_variate":
        czz = m.cov[:, 1 : 1 + d, 1 : 1 + d]
        czy = m.cov[:, 1 : 1 + d, 0]
        ridge = 1e-12 + 1e-9 * jnp.trace(czz, axis1=1, axis2=2)[:, None, None]
        beta = jnp.linalg.solve(czz + ridge * jnp.eye(d), czy[..., None])[..., 0]
        mean = mean - jnp.sum(beta * m.mean[:, 1 : 1 + d], axis=1)
        var_cv = jnp.maximum(var_y - jnp.sum(beta * czy, axis=1), 0.0)
        info["variance_reduction"] = var_y / jnp.maximum(var_cv, 1e-30)
        info["control_coefficient"] = beta
        var_y = var_cv
    # n counts samples (walks, or antithetic pairs); the Estimate's n counts walks so that
    # variance_ratio compares estimators at equal cost.
    stderr = jnp.sqrt(var_y / n)
    walks = jnp.asarray(float(num_walks))
    ess = walks * info.get("variance_reduction", jnp.ones_like(mean))
    return Estimate(mean, stderr, walks, ess, info)


def walk_on_spheres(
    problem: DirichletProblem,
    key,
    points,
    *,
    num_walks: int = 256,
    epsilon: float = 1e-3,
    max_steps: int = 1024,
    batch_size: int = 65536,
    variance_reduction: str = "none",
    check_domain: bool = True,
) -> Estimate:
    r"""Walk-on-spheres estimate of the solution :math:`u` at ``points`` (shape ``(P, dim)``).

    Args:
      problem: the :class:`DirichletProblem`.
      key: a JAX key.
      points: query points inside the domain, shape ``(P, dim)`` (or ``(dim,)``).
      num_walks: walks per point.
      epsilon: width of the stopping shell; the bias is about ``epsilon * |grad u|``.
      max_steps: longest walk; longer walks stop where they are (``info["truncated_fraction"]``).
      batch_size: most walks held in memory at once (points x walks per chunk).
      variance_reduction: ``"none"``, ``"antithetic"`` (mirrored walk pairs) or
        ``"control_variate"`` (gradient control variate on the first step).
      check_domain: test on a sample that the domain's SDF is a distance (host side).

    Returns:
      An :class:`~ulam.Estimate` with ``mean``/``stderr`` of shape ``(P,)``, ``n`` the
      walks per point (a scalar), and ``info`` with, for ``P`` query points:

      * ``mean_walk_length`` ``(P,)``: mean number of steps of the walks from each point
        (an array: ``float()`` of it fails for ``P > 1``; use the next entry);
      * ``overall_mean_walk_length`` ``()``: its mean over the points, a scalar;
      * ``truncated_fraction`` ``(P,)``: share of walks stopped by ``max_steps``;
      * ``boundary_failures``, ``source_failures`` ``(P,)`` integers: walks on which
        ``boundary`` (at the exit point) or ``source`` returned NaN or infinity. Outside
        ``jit`` any failure raises a ``ValueError`` naming the function (a NaN estimate
        is never returned silently); inside ``jit`` the estimate is then non-finite and
        these counts say why;
      * ``epsilon`` ``()`` and ``num_walks`` ``()``: the settings used;
      * with ``variance_reduction="control_variate"``: ``variance_reduction`` ``(P,)``
        (variance without / with the control variate) and ``control_coefficient``
        ``(P, dim)`` (the fitted :math:`\hat\beta`).

    Raises:
      ValueError: when ``boundary`` or ``source`` returns NaN or infinity on any walk
        (with how many walks, from how many points).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.pde import Ball, DirichletProblem, walk_on_spheres
      >>> ball = Ball(jnp.zeros(3), 1.0)
      >>> prob = DirichletProblem(ball, boundary=lambda x: 0.0 * x[0], source=lambda x: 1.0 + 0.0 * x[0])
      >>> est = walk_on_spheres(prob, jax.random.key(1), jnp.zeros((1, 3)), num_walks=2048)
      >>> bool(abs(est.mean[0] - 1 / 6) < 4 * est.stderr[0] + 1e-3)   # u = (1 - |x|^2) / 6
      True
    """
    points = _validate(problem, points, num_walks, epsilon, max_steps, variance_reduction, check_domain, key)
    m = walk_moments(
        problem, key, points, num_walks=int(num_walks), epsilon=epsilon, max_steps=int(max_steps),
        batch_size=batch_size, antithetic=variance_reduction == "antithetic",
    )
    _raise_on_failures(m, int(num_walks))
    return _value_estimate(m, problem.domain.dim, variance_reduction, int(num_walks), epsilon)


def solution_gradient(
    problem: DirichletProblem,
    key,
    points,
    *,
    num_walks: int = 256,
    epsilon: float = 1e-3,
    max_steps: int = 1024,
    batch_size: int = 65536,
    baseline: bool = True,
    check_domain: bool = True,
) -> Estimate:
    r"""Walk-on-spheres estimate of :math:`\nabla u` at ``points``: an Estimate with mean/stderr ``(P, dim)``.

    .. math:: \widehat{\nabla u}(x_0) = \tfrac{d}{R_0}\,\nu_0\,\big(\hat u(x_1) - b\big)
              + \tfrac{R_0 d}{d+1}\,\omega\, f(x_0 + R_0 s\,\omega),

    where the second term samples :math:`\int_{B(x_0,R_0)}\nabla_xG\,f` by the law of
    :math:`|\nabla_x G|` and :math:`b` is a baseline (``baseline=True``: the
    per-coordinate regression coefficient on :math:`a = d\nu_0/R_0`, whose mean is 0;
    Sawhney & Crane 2020). Laplace and Poisson only (``absorption = 0``).

    ``info`` holds ``mean_walk_length`` ``(P,)``, ``overall_mean_walk_length`` ``()``,
    ``truncated_fraction`` ``(P,)``, ``boundary_failures`` and ``source_failures``
    ``(P,)`` (see :func:`walk_on_spheres`; failures raise outside ``jit`` here too).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.pde import Ball, DirichletProblem, solution_gradient
      >>> prob = DirichletProblem(Ball(jnp.zeros(2), 1.0), boundary=lambda x: x[0] ** 2 - x[1] ** 2)
      >>> g = solution_gradient(prob, jax.random.key(0), jnp.array([[0.3, 0.2]]), num_walks=8192)
      >>> bool(jnp.all(jnp.abs(g.mean[0] - jnp.array([0.6, -0.4])) < 4 * g.stderr[0] + 1e-2))
      True
    """
    points = _validate(problem, points, num_walks, epsilon, max_steps, "none", check_domain, key)
    if not isinstance(problem.absorption, jax.core.Tracer) and float(problem.absorption) != 0.0:
        raise ValueError(checks.message("problem.absorption", "0 (the gradient estimator is implemented for Laplace "
                                        "and Poisson)", problem.absorption))
    d = problem.domain.dim
    m = walk_moments(
        problem, key, points, num_walks=int(num_walks), epsilon=epsilon, max_steps=int(max_steps), batch_size=batch_size
    )
    _raise_on_failures(m, int(num_walks))
    return gradient_from_moments(m, d, baseline=baseline)


def gradient_from_moments(m: WalkMoments, d: int, *, baseline: bool = True) -> Estimate:
    """The gradient :class:`~ulam.Estimate` from :func:`walk_moments` output (see :func:`solution_gradient`).

    Lets one set of walks give both the value and the gradient.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.pde import Ball, DirichletProblem, gradient_from_moments, walk_moments
      >>> prob = DirichletProblem(Ball(jnp.zeros(2), 1.0), boundary=lambda x: 2 * x[0] - x[1])  # grad u = (2, -1)
      >>> m = walk_moments(prob, jax.random.key(0), jnp.array([[0.1, 0.3]]), num_walks=4096)
      >>> g = gradient_from_moments(m, 2)
      >>> bool(jnp.all(jnp.abs(g.mean[0] - jnp.array([2.0, -1.0])) < 4 * g.stderr[0] + 0.02))
      True
    """
    d = checks.count("d", d)
    if m.mean.shape[-1] != 1 + 3 * d:
        raise ValueError(checks.message("d", f"the dimension the moments were gathered in ({(m.mean.shape[-1] - 1) // 3})", d))
    g_idx = slice(1 + d, 1 + 2 * d)
    a_idx = slice(1 + 2 * d, 1 + 3 * d)
    mean = m.mean[:, g_idx]
    var = jnp.diagonal(m.cov[:, g_idx, g_idx], axis1=1, axis2=2)
    if baseline:
        cga = jnp.diagonal(m.cov[:, g_idx, a_idx], axis1=1, axis2=2)
        vaa = jnp.diagonal(m.cov[:, a_idx, a_idx], axis1=1, axis2=2)
        b = cga / jnp.maximum(vaa, 1e-30)
        mean = mean - b * m.mean[:, a_idx]
        var = jnp.maximum(var - b * cga, 0.0)
    n = m.count
    stderr = jnp.sqrt(var / n[:, None])
    info = _walk_info(m)
    return Estimate(mean, stderr, n[0] if n.ndim else n, n[0] if n.ndim else n, info)
