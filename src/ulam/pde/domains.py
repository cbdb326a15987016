r"""Domains as signed distance functions (SDFs) with closest-point queries.

A domain :math:`\Omega\subset\mathbb R^d` is described by its signed distance
:math:`\phi(x) = \pm\,\mathrm{dist}(x, \partial\Omega)`, negative inside, and by the
closest boundary point :math:`\pi(x)\in\partial\Omega`. Walk-on-spheres only needs
:math:`|\phi(x)|` to be a *lower bound* of the distance inside :math:`\Omega` (every
ball :math:`B(x, |\phi(x)|)` then lies in :math:`\Omega`) and :math:`\pi` where the
walk stops in the :math:`\varepsilon`-shell.

Every domain here is a JAX pytree, so it can be passed to ``jax.jit`` and its
parameters can be traced. Each has ``dim``, ``sdf(x)`` and ``closest_point(x)`` for
one point ``x`` of shape ``(dim,)`` (``jax.vmap`` for many) and ``bounds`` (a box
``(lower, upper)`` that contains the domain, used to draw check samples).

Exactness: :class:`Ball`, :class:`Box` and :class:`Polygon` are exact everywhere.
:class:`StarShaped` is the exact SDF of the curve sampled at ``num_segments``
points (a polygon within :math:`\max\kappa h^2/8` of the smooth curve).
:class:`Intersection` and :class:`Difference` are exact inside and a lower bound
outside; :class:`Union` is exact outside and a lower bound inside. Closest points of
combinations are the nearest child closest point that lies on the combined boundary,
refined by Newton projection :math:`p \leftarrow p - \phi(p)\nabla\phi(p)`: exact
inside, and on the boundary (not always the nearest point) outside.

Example:
  >>> import jax.numpy as jnp
  >>> from ulam.pde import Ball, Box, Difference
  >>> d = Difference(Box(jnp.zeros(2), jnp.ones(2)), Ball(jnp.ones(2), 1.0))  # an L-like shape
  >>> float(d.sdf(jnp.array([-0.5, -0.5]))) < 0
  True
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ulam import checks

__all__ = [
    "Ball",
    "Box",
    "Polygon",
    "StarShaped",
    "SignedDistance",
    "Union",
    "Intersection",
    "Difference",
    "check_signed_distance",
    "sample_interior",
]

_PROJECTION_STEPS = 3


def _numbers(*values):
    """The values as float arrays when all are concrete numbers, else ``None``.

    Domains are pytrees: JAX rebuilds them with tracers (inside ``jit``) or placeholders (in tree
    utilities), so construction-time checks run only on concrete numbers.
    """
    out = []
    for v in values:
        if v is None or not checks.is_concrete(v):
            return None
        try:
            out.append(np.asarray(v, dtype=float))
        except (TypeError, ValueError):
            return None
    return out


def _check_pair(cls_name, first, second):
    for name, d in (("first", first), ("second", second)):
        # Numbers, strings and arrays are never domains (a tree utility may put other placeholders here).
        if not hasattr(d, "sdf") and isinstance(d, (int, float, str, np.ndarray, jax.Array, np.number)):
            raise TypeError(checks.message(f"{cls_name}: {name}", "a domain (Ball, Box, Polygon, ...)", type(d).__name__))
    try:
        d1, d2 = first.dim, second.dim
    except Exception:  # noqa: BLE001 -- a placeholder rebuilt by a tree utility: nothing to check
        return
    if d1 != d2:
        raise ValueError(checks.message(f"{cls_name}: second", f"a {d1}-D domain like first", f"a {d2}-D domain"))


def _pytree(data: tuple[str, ...], meta: tuple[str, ...] = ()):
    """Register a frozen dataclass as a pytree with ``data`` as leaves and ``meta`` static."""

    def wrap(cls):
        cls = dataclasses.dataclass(frozen=True)(cls)
        return jax.tree_util.register_dataclass(cls, data_fields=list(data), meta_fields=list(meta))

    return wrap


def _safe_norm(v):
    # A zero vector gets norm 0 with a finite gradient (the plain norm's gradient is NaN there).
    sq = jnp.sum(v * v)
    safe = jnp.where(sq > 0, sq, 1.0)
    return jnp.where(sq > 0, jnp.sqrt(safe), 0.0)


def _project(sdf: Callable, p, steps: int = _PROJECTION_STEPS):
    """Newton projection onto the zero level set: ``p <- p - phi(p) grad phi(p)``."""
    value_and_grad = jax.value_and_grad(sdf)

    def body(_, q):
        v, g = value_and_grad(q)
        return q - v * g / jnp.maximum(jnp.sum(g * g), 1e-12)

    return jax.lax.fori_loop(0, steps, body, p)


class _Domain:
    """Shared helpers; subclasses define ``dim``, ``sdf``, ``closest_point``, ``bounds``."""

    def __or__(self, other):
        return Union(self, other)

    def __and__(self, other):
        return Intersection(self, other)

    def __sub__(self, other):
        return Difference(self, other)

    def contains(self, x):
        """Whether ``x`` (shape ``(dim,)``) lies strictly inside."""
        return self.sdf(x) < 0


@_pytree(data=("center", "radius"))
class Ball(_Domain):
    r"""The ball :math:`\{x: |x - c| < r\}` in any dimension (a disk in 2-D): :math:`\phi = |x-c| - r`.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.pde import Ball
      >>> disk = Ball(jnp.zeros(2), 1.0)
      >>> float(disk.sdf(jnp.array([0.5, 0.0]))), disk.closest_point(jnp.array([0.5, 0.0])).tolist()
      (-0.5, [1.0, 0.0])
    """

    center: jax.Array
    radius: jax.Array

    def __post_init__(self):
        v = _numbers(self.center, self.radius)
        if v is not None:
            if v[0].ndim != 1 or v[0].size < 1:
                raise ValueError(checks.message("Ball: center", "a point of shape (dim,)", f"shape {v[0].shape}"))
            if v[1].ndim != 0:
                raise ValueError(checks.message("Ball: radius", "a scalar", f"shape {v[1].shape}"))
            checks.finite("Ball: center", v[0])
            checks.positive("Ball: radius", v[1])

    @property
    def dim(self) -> int:
        return int(np.shape(self.center)[-1])

    @property
    def bounds(self):
        c, r = np.asarray(self.center, float), float(np.asarray(self.radius))
        return c - r, c + r

    def sdf(self, x):
        return _safe_norm(x - self.center) - self.radius

    def closest_point(self, x):
        v = x - self.center
        n = _safe_norm(v)
        # At the centre every boundary point is closest; pick the first axis.
        e = jnp.zeros_like(v).at[0].set(1.0)
        u = jnp.where(n > 0, v / jnp.where(n > 0, n, 1.0), e)
        return self.center + self.radius * u


@_pytree(data=("center", "half_widths"))
class Box(_Domain):
    r"""The axis-aligned box :math:`\{x: |x_i - c_i| < h_i\}`: :math:`\phi = |\max(q,0)| + \min(\max_i q_i, 0)`, :math:`q = |x-c| - h`.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.pde import Box
      >>> square = Box(jnp.zeros(2), jnp.ones(2))  # [-1, 1]^2
      >>> float(square.sdf(jnp.array([0.5, 0.0]))), square.closest_point(jnp.array([0.5, 0.0])).tolist()
      (-0.5, [1.0, 0.0])
    """

    center: jax.Array
    half_widths: jax.Array

    def __post_init__(self):
        v = _numbers(self.center, self.half_widths)
        if v is not None:
            if v[0].ndim != 1 or v[0].size < 1:
                raise ValueError(checks.message("Box: center", "a point of shape (dim,)", f"shape {v[0].shape}"))
            if v[1].shape not in ((), v[0].shape):
                raise ValueError(checks.message("Box: half_widths", f"a scalar or shape {v[0].shape} like center",
                                                f"shape {v[1].shape}"))
            checks.finite("Box: center", v[0])
            checks.positive("Box: half_widths", v[1])

    @property
    def dim(self) -> int:
        return int(np.shape(self.center)[-1])

    @property
    def bounds(self):
        c, h = np.asarray(self.center, float), np.asarray(self.half_widths, float)
        return c - h, c + h

    def sdf(self, x):
        q = jnp.abs(x - self.center) - self.half_widths
        return _safe_norm(jnp.maximum(q, 0.0)) + jnp.minimum(jnp.max(q), 0.0)

    def closest_point(self, x):
        lo, hi = self.center - self.half_widths, self.center + self.half_widths
        outside = jnp.clip(x, lo, hi)
        # Inside: move the coordinate whose face is nearest onto that face.
        q = jnp.abs(x - self.center) - self.half_widths
        i = jnp.argmax(q)
        face = jnp.where(x[i] >= self.center[i], hi[i], lo[i])
        inside = x.at[i].set(face)
        return jnp.where(jnp.max(q) > 0, outside, inside)


def _polygon_sdf_and_closest(vertices, x):
    """Signed distance to a closed polygon (even-odd inside test) and the closest boundary point."""
    a = vertices
    b = jnp.roll(vertices, -1, axis=0)
    e = b - a
    w = x - a
    t = jnp.clip(jnp.sum(w * e, axis=1) / jnp.maximum(jnp.sum(e * e, axis=1), 1e-30), 0.0, 1.0)
    proj = a + t[:, None] * e
    d2 = jnp.sum((x - proj) ** 2, axis=1)
    k = jnp.argmin(d2)
    # Even-odd rule: count edges crossed by the ray from x in the +x1 direction.
    cond = (a[:, 1] > x[1]) != (b[:, 1] > x[1])
    x_cross = a[:, 0] + (x[1] - a[:, 1]) * e[:, 0] / jnp.where(e[:, 1] == 0, 1.0, e[:, 1])
    inside = jnp.sum(cond & (x[0] < x_cross)) % 2 == 1
    # sqrt at 0 has an infinite derivative; a tiny floor keeps grad finite on the boundary.
    dist = jnp.where(d2[k] > 0, jnp.sqrt(jnp.where(d2[k] > 0, d2[k], 1.0)), 0.0)
    return jnp.where(inside, -dist, dist), proj[k]


@_pytree(data=("vertices",))
class Polygon(_Domain):
    r"""A simple closed polygon in 2-D with ``vertices`` of shape ``(m, 2)`` (either orientation).

    :math:`|\phi(x)| = \min_j \mathrm{dist}(x, [v_j, v_{j+1}])`, negative where the
    even-odd ray test says inside.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.pde import Polygon
      >>> unit_square = Polygon(jnp.array([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]]))
      >>> float(unit_square.sdf(jnp.array([0.5, 0.25])))
      -0.25
    """

    vertices: jax.Array

    def __post_init__(self):
        v = _numbers(self.vertices)
        if v is not None:
            if v[0].ndim != 2 or v[0].shape[1] != 2 or v[0].shape[0] < 3:
                raise ValueError(checks.message("Polygon: vertices", "shape (num_vertices >= 3, 2)", f"shape {v[0].shape}"))
            checks.finite("Polygon: vertices", v[0])

    @property
    def dim(self) -> int:
        return 2

    @property
    def bounds(self):
        v = np.asarray(self.vertices, float)
        return v.min(axis=0), v.max(axis=0)

    def sdf(self, x):
        return _polygon_sdf_and_closest(self.vertices, x)[0]

    def closest_point(self, x):
        return _polygon_sdf_and_closest(self.vertices, x)[1]


@_pytree(data=("center", "cos_coefficients", "sin_coefficients", "mean_radius"), meta=("num_segments",))
class StarShaped(_Domain):
    r"""A star-shaped curve in 2-D, :math:`r(\theta) = r_0 + \sum_{k\ge1} a_k\cos k\theta + b_k\sin k\theta` about ``center``.

    The paper's family (Viswanath et al. 2026, WoS-NO, 2-D linear Poisson) is
    :math:`r = 1 + c_1\cos 4\theta + c_2\cos 8\theta`, i.e. ``cos_coefficients`` with
    entries 4 and 8 set. The SDF is that of the curve sampled at ``num_segments``
    angles (exact for that polygon). ``r`` must stay positive.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.pde import StarShaped
      >>> star = StarShaped(jnp.zeros(2), jnp.array([0.0, 0.0, 0.0, 0.2]), jnp.zeros(4))  # r = 1 + 0.2 cos 4t
      >>> round(float(star.radius(jnp.array(0.0))), 6), bool(star.contains(jnp.array([1.1, 0.0])))
      (1.2, True)
    """

    center: jax.Array
    cos_coefficients: jax.Array
    sin_coefficients: jax.Array
    mean_radius: jax.Array = 1.0
    num_segments: int = 512

    def __post_init__(self):
        if isinstance(self.num_segments, (int, np.integer, float, bool)):
            checks.count("StarShaped: num_segments", self.num_segments, minimum=3)
        v = _numbers(self.center, self.mean_radius)
        if v is not None:
            if v[0].shape != (2,):
                raise ValueError(checks.message("StarShaped: center", "a 2-D point of shape (2,)", f"shape {v[0].shape}"))
            checks.positive("StarShaped: mean_radius", v[1])

    @property
    def dim(self) -> int:
        return 2

    def radius(self, theta):
        k = jnp.arange(1, jnp.shape(self.cos_coefficients)[0] + 1)
        return (
            self.mean_radius
            + jnp.cos(theta[..., None] * k) @ self.cos_coefficients
            + jnp.sin(theta[..., None] * k) @ self.sin_coefficients
        )

    def vertices(self):
        theta = jnp.linspace(0.0, 2 * math.pi, self.num_segments, endpoint=False)
        r = self.radius(theta)
        return self.center + r[:, None] * jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=1)

    @property
    def bounds(self):
        v = np.asarray(self.vertices(), float)
        return v.min(axis=0), v.max(axis=0)

    def sdf(self, x):
        return _polygon_sdf_and_closest(self.vertices(), x)[0]

    def closest_point(self, x):
        return _polygon_sdf_and_closest(self.vertices(), x)[1]


@_pytree(data=(), meta=("function", "dim", "lower", "upper"))
class SignedDistance(_Domain):
    r"""A user SDF ``function(x) -> scalar`` on ``dim`` dimensions, inside the box ``[lower, upper]``.

    The closest point is the Newton projection :math:`x - \phi(x)\nabla\phi(x)`
    (exact for a true SDF away from its medial axis). Use
    :func:`check_signed_distance` to test that ``function`` is a distance.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.pde import SignedDistance
      >>> disk = SignedDistance(lambda x: jnp.linalg.norm(x) - 1.0, 2, (-1.0, -1.0), (1.0, 1.0))
      >>> [round(v, 6) for v in disk.closest_point(jnp.array([0.5, 0.0])).tolist()]
      [1.0, 0.0]
    """

    function: Callable
    dim: int
    lower: tuple
    upper: tuple

    def __post_init__(self):
        checks.function("SignedDistance: function", self.function, "a function x -> signed distance (negative inside)")
        dim = checks.count("SignedDistance: dim", self.dim)
        lo, hi = np.asarray(self.lower, dtype=float), np.asarray(self.upper, dtype=float)
        if lo.shape != (dim,) or hi.shape != (dim,):
            raise ValueError(checks.message("SignedDistance: lower, upper", f"two bounding-box corners of length dim={dim}",
                                            f"shapes {lo.shape} and {hi.shape}"))
        if not np.all(np.isfinite(lo) & np.isfinite(hi) & (lo < hi)):
            raise ValueError(checks.message("SignedDistance: lower, upper", "finite corners with lower < upper in every "
                                            "coordinate", f"lower={lo.tolist()}, upper={hi.tolist()}"))

    @property
    def bounds(self):
        return np.asarray(self.lower, float), np.asarray(self.upper, float)

    def sdf(self, x):
        return self.function(x)

    def closest_point(self, x):
        return _project(self.function, x)


def _nearest_valid(x, p1, ok1, p2, ok2):
    """The nearer of two candidate boundary points, preferring those on the combined boundary."""
    d1, d2 = jnp.sum((x - p1) ** 2), jnp.sum((x - p2) ** 2)
    # Invalid candidates lose to valid ones; among two invalid ones the nearer is refined by projection.
    d1 = jnp.where(ok1, d1, d1 + 1e30)
    d2 = jnp.where(ok2, d2, d2 + 1e30)
    return jnp.where(d1 <= d2, p1, p2)


def _pair_bounds(a, b, how):
    (la, ua), (lb, ub) = a.bounds, b.bounds
    if how == "union":
        return np.minimum(la, lb), np.maximum(ua, ub)
    if how == "intersection":
        return np.maximum(la, lb), np.minimum(ua, ub)
    return la, ua


@_pytree(data=("first", "second"))
class Union(_Domain):
    r""":math:`\Omega_1\cup\Omega_2`: :math:`\phi = \min(\phi_1, \phi_2)` (exact outside, a lower bound of the depth inside).

    Also written ``first | second``.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.pde import Ball, Union
      >>> two = Union(Ball(jnp.array([-1.0, 0.0]), 1.0), Ball(jnp.array([1.0, 0.0]), 1.0))
      >>> float(two.sdf(jnp.array([3.0, 0.0])))  # 1 away from the right disk
      1.0
    """

    first: object
    second: object

    def __post_init__(self):
        _check_pair("Union", self.first, self.second)

    @property
    def dim(self) -> int:
        return self.first.dim

    @property
    def bounds(self):
        return _pair_bounds(self.first, self.second, "union")

    def sdf(self, x):
        return jnp.minimum(self.first.sdf(x), self.second.sdf(x))

    def closest_point(self, x):
        # A child's closest point is on the union's boundary unless it lies inside the other child.
        p1, p2 = self.first.closest_point(x), self.second.closest_point(x)
        return _project(self.sdf, _nearest_valid(x, p1, self.second.sdf(p1) >= 0, p2, self.first.sdf(p2) >= 0))


@_pytree(data=("first", "second"))
class Intersection(_Domain):
    r""":math:`\Omega_1\cap\Omega_2`: :math:`\phi = \max(\phi_1, \phi_2)` (exact inside, a lower bound outside).

    Also written ``first & second``.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.pde import Ball, Box, Intersection
      >>> lens = Intersection(Ball(jnp.zeros(2), 1.0), Box(jnp.zeros(2), jnp.array([1.0, 0.5])))
      >>> float(lens.sdf(jnp.array([0.0, 0.25])))  # the box's face y = 0.5 is nearest
      -0.25
    """

    first: object
    second: object

    def __post_init__(self):
        _check_pair("Intersection", self.first, self.second)

    @property
    def dim(self) -> int:
        return self.first.dim

    @property
    def bounds(self):
        return _pair_bounds(self.first, self.second, "intersection")

    def sdf(self, x):
        return jnp.maximum(self.first.sdf(x), self.second.sdf(x))

    def closest_point(self, x):
        # A child's closest point is on the intersection's boundary when it lies in the other child.
        p1, p2 = self.first.closest_point(x), self.second.closest_point(x)
        return _project(self.sdf, _nearest_valid(x, p1, self.second.sdf(p1) <= 0, p2, self.first.sdf(p2) <= 0))


@_pytree(data=("first", "second"))
class Difference(_Domain):
    r""":math:`\Omega_1\setminus\Omega_2`: :math:`\phi = \max(\phi_1, -\phi_2)` (exact inside, a lower bound outside).

    Also written ``first - second``.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.pde import Ball, Difference
      >>> annulus = Difference(Ball(jnp.zeros(2), 1.0), Ball(jnp.zeros(2), 0.5))
      >>> float(annulus.sdf(jnp.array([0.75, 0.0]))), bool(annulus.contains(jnp.zeros(2)))
      (-0.25, False)
    """

    first: object
    second: object

    def __post_init__(self):
        _check_pair("Difference", self.first, self.second)

    @property
    def dim(self) -> int:
        return self.first.dim

    @property
    def bounds(self):
        return self.first.bounds

    def sdf(self, x):
        return jnp.maximum(self.first.sdf(x), -self.second.sdf(x))

    def closest_point(self, x):
        # A point of the first boundary outside the second, or of the second boundary inside the first.
        p1, p2 = self.first.closest_point(x), self.second.closest_point(x)
        return _project(self.sdf, _nearest_valid(x, p1, self.second.sdf(p1) >= 0, p2, self.first.sdf(p2) <= 0))


def sample_interior(domain, key, n: int, oversample: int = 8):
    """``n`` points drawn uniformly from the domain by rejection from its bounding box.

    Draws ``oversample * n`` box points at once (shapes stay static); raises if
    fewer than ``n`` land inside.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.pde import Ball, sample_interior
      >>> x = sample_interior(Ball(jnp.zeros(2), 1.0), jax.random.key(0), 10)
      >>> x.shape, bool(jnp.all(jnp.linalg.norm(x, axis=1) < 1))
      ((10, 2), True)
    """
    checks.prng_key(key)
    n = checks.count("n", n)
    oversample = checks.count("oversample", oversample)
    lo, hi = (np.asarray(b, np.float32) for b in domain.bounds)
    x = jax.random.uniform(key, (oversample * n, domain.dim), minval=lo, maxval=hi)
    inside = np.asarray(jax.vmap(domain.sdf)(x) < 0)
    if inside.sum() < n:
        raise ValueError(checks.message(
            "domain", f"at least n={n} of {oversample * n} box samples inside", int(inside.sum()),
            "raise oversample or tighten the domain's bounds",
        ))
    return x[np.flatnonzero(inside)[:n]]


@jax.jit
def _check_values(domain, x):
    values, grads = jax.vmap(jax.value_and_grad(domain.sdf))(x)
    on = jnp.abs(jax.vmap(domain.sdf)(jax.vmap(domain.closest_point)(x)))
    return values, jnp.linalg.norm(grads, axis=-1), on


def check_signed_distance(domain, key=None, num_samples: int = 256, tolerance: float = 0.05) -> None:
    r"""Raise ``ValueError`` if ``domain.sdf`` is not a signed distance on a sample.

    On ``num_samples`` points drawn uniformly from the (slightly enlarged) bounding
    box, a distance satisfies the eikonal equation :math:`|\nabla\phi| = 1`, and at
    the sample points inside the domain its closest points lie on the zero level set. A function with :math:`|\nabla\phi| > 1`
    would let walk-on-spheres step out of the domain (a biased answer); one with
    :math:`|\nabla\phi| < 1` only slows walks down but is still not a distance.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.pde import Ball, SignedDistance, check_signed_distance
      >>> check_signed_distance(Ball(jnp.zeros(2), 1.0))  # a distance: returns None
      >>> twice = SignedDistance(lambda x: 2 * (jnp.linalg.norm(x) - 1.0), 2, (-1.0, -1.0), (1.0, 1.0))
      >>> check_signed_distance(twice)
      Traceback (most recent call last):
      ...
      ValueError: domain: the SDF is not a distance: |grad phi| = 2 ...
    """
    key = jax.random.key(0) if key is None else checks.prng_key(key)
    num_samples = checks.count("num_samples", num_samples)
    checks.positive("tolerance", tolerance)
    lo, hi = (np.asarray(b, np.float32) for b in domain.bounds)
    pad = 0.1 * (hi - lo)
    x = jax.random.uniform(key, (num_samples, domain.dim), minval=lo - pad, maxval=hi + pad)
    values, norms, on = (np.asarray(v) for v in _check_values(domain, x))
    if not np.all(np.isfinite(values)):
        raise ValueError(checks.message("domain", "a finite signed distance", "NaN or inf on a sample of its bounding box"))
    finite = np.isfinite(norms)
    bad = finite & (np.abs(norms - 1.0) > tolerance)
    if bad.any():
        i = int(np.flatnonzero(bad)[np.argmax(np.abs(norms[bad] - 1.0))])
        raise ValueError(
            f"domain: the SDF is not a distance: |grad phi| = {norms[i]:.3g} at {np.asarray(x[i]).round(3).tolist()} "
            f"({int(bad.sum())} of {num_samples} sample points have |grad phi| outside 1 ± {tolerance}); "
            "walk-on-spheres needs a signed distance (1-Lipschitz with |grad phi| = 1)"
        )
    # Closest points are exact where walk-on-spheres uses them: inside the domain.
    on = np.where(values < 0, on, 0.0)
    scale = float(np.max(hi - lo))
    if np.any(on > 1e-3 * scale):
        i = int(np.argmax(on))
        raise ValueError(
            f"domain: closest_point is off the boundary: phi(closest_point(x)) = {on[i]:.3g} at "
            f"{np.asarray(x[i]).round(3).tolist()}; the SDF and its closest points disagree"
        )
