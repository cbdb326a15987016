r"""Green's functions of a ball, their sampling, and the screened-Poisson factors used by walk-on-spheres.

For the ball :math:`B(c, R)\subset\mathbb R^d` the Dirichlet Green's function of
:math:`-\Delta` with its pole at the centre is

.. math::  G_R(r) = \tfrac{1}{2\pi}\log\tfrac{R}{r}\ (d=2), \qquad
           G_R(r) = \tfrac{1}{4\pi}\big(\tfrac1r - \tfrac1R\big)\ (d=3),

with :math:`r = |y - c|` and total mass :math:`\int_B G_R = R^2/(2d)`. Sampling
:math:`y\propto G_R(|y-c|)` means a uniform direction and a radius :math:`r = Rs`
with density :math:`\propto s^{d-1}G(s)`: :math:`s=\sqrt{U_1U_2}` in 2-D (density
:math:`-4s\log s`) and :math:`s\sim\mathrm{Beta}(2,2)` (the median of three
uniforms) in 3-D. Then :math:`\int_B G_R f = \tfrac{R^2}{2d}\,\mathbb E[f(y)]`.

The gradient of :math:`G` in its first argument at the centre is
:math:`\nabla_xG(c,y) = \frac{y-c}{|S^{d-1}|}\big(r^{-d} - R^{-d}\big)`, with
:math:`\int_B|\nabla_xG| = Rd/(d+1)`; its radius density is :math:`\propto 1-s^d`,
drawn as :math:`s = U_2\,U_1^{1/(d+1)}`.

For the screened equation :math:`\Delta u - \sigma u = -f` (:math:`k=\sqrt\sigma`) the
mean-value property carries the factor :math:`1/I_0(kR)` (2-D) or
:math:`kR/\sinh(kR)` (3-D), and the Green's function is
:math:`\frac1{2\pi}[K_0(kr) - K_0(kR)I_0(kr)/I_0(kR)]` (2-D) or
:math:`\frac{\sinh(k(R-r))}{4\pi r\sinh(kR)}` (3-D).

References: Muller (1956), *Some continuous Monte Carlo methods for the Dirichlet
problem*; Sawhney & Crane (2020), *Monte Carlo geometry processing*; used by
Viswanath et al. (2026), *Operator learning using weak supervision from
walk-on-spheres* (WoS-NO).

Example:
  >>> import jax
  >>> from ulam.pde.green import sample_green_radius
  >>> s = sample_green_radius(jax.random.key(0), (100_000,), dim=2)
  >>> abs(float(s.mean()) - 4 / 9) < 0.01   # E[s] = 4/9 for the 2-D density -4 s log s
  True
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from jax.scipy.special import i0e

__all__ = [
    "ball_green",
    "ball_green_mass",
    "sample_green_radius",
    "sample_green_gradient_radius",
    "green_gradient_mass",
    "uniform_direction",
    "bessel_k0",
    "screened_survival",
    "screened_green_ratio",
    "sphere_area",
]


def sphere_area(dim: int) -> float:
    """Area of the unit sphere :math:`S^{d-1}`: 2π in 2-D, 4π in 3-D.

    Example:
      >>> import math
      >>> from ulam.pde.green import sphere_area
      >>> sphere_area(3) == 4 * math.pi
      True
    """
    return 2 * math.pi ** (dim / 2) / math.gamma(dim / 2)


def _check_dim(dim: int) -> None:
    if dim not in (2, 3):
        raise ValueError(f"dim: walk-on-spheres Green's functions are implemented for 2 and 3 dimensions, got {dim}")


def ball_green(r, radius, dim: int):
    r"""Laplace Green's function of the ball of radius ``radius``, pole at the centre, at distance ``r``.

    Example:
      >>> from ulam.pde.green import ball_green
      >>> round(float(ball_green(0.5, 1.0, 3)), 6)  # (1/r - 1/R) / (4 pi)
      0.079577
    """
    _check_dim(dim)
    if dim == 2:
        return jnp.log(radius / r) / (2 * math.pi)
    return (1.0 / r - 1.0 / radius) / (4 * math.pi)


def ball_green_mass(radius, dim: int):
    r""":math:`\int_{B(0,R)} G_R(|y|)\,dy = R^2 / (2d)` (the expected exit time of Brownian motion / d).

    Example:
      >>> from ulam.pde.green import ball_green_mass
      >>> ball_green_mass(1.0, 2)
      0.25
    """
    _check_dim(dim)
    return radius**2 / (2 * dim)


def sample_green_radius(key, shape, dim: int):
    r"""Draw :math:`s = r/R` with density :math:`\propto s^{d-1}G_1(s)`: :math:`-4s\log s` (2-D) or :math:`6s(1-s)` (3-D).

    Example:
      >>> import jax
      >>> from ulam.pde.green import sample_green_radius
      >>> s = sample_green_radius(jax.random.key(0), (100_000,), dim=3)
      >>> abs(float(s.mean()) - 0.5) < 0.01  # Beta(2, 2) has mean 1/2
      True
    """
    _check_dim(dim)
    if dim == 2:
        u = jax.random.uniform(key, (2, *shape), minval=1e-12, maxval=1.0)
        return jnp.sqrt(u[0] * u[1])
    u = jax.random.uniform(key, (3, *shape))
    # The median of three uniforms is Beta(2, 2).
    return jnp.maximum(jnp.minimum(u[0], u[1]), jnp.minimum(jnp.maximum(u[0], u[1]), u[2]))


def green_gradient_mass(radius, dim: int):
    r""":math:`\int_{B(0,R)} |\nabla_x G(0, y)|\,dy = R\,d/(d+1)`.

    Example:
      >>> from ulam.pde.green import green_gradient_mass
      >>> green_gradient_mass(3.0, 2)
      2.0
    """
    _check_dim(dim)
    return radius * dim / (dim + 1)


def sample_green_gradient_radius(key, shape, dim: int):
    r"""Draw :math:`s = r/R` with density :math:`\propto 1 - s^d` (the radial law of :math:`|\nabla_xG|`).

    Example:
      >>> import jax
      >>> from ulam.pde.green import sample_green_gradient_radius
      >>> s = sample_green_gradient_radius(jax.random.key(0), (100_000,), dim=2)
      >>> abs(float(s.mean()) - 3 / 8) < 0.01  # E[s] = (1/2 - 1/4) / (1 - 1/3)
      True
    """
    _check_dim(dim)
    u = jax.random.uniform(key, (2, *shape), minval=1e-12, maxval=1.0)
    return u[1] * u[0] ** (1.0 / (dim + 1))


def uniform_direction(key, shape, dim: int):
    """Uniform unit vectors on :math:`S^{d-1}`, shape ``(*shape, dim)`` (one angle in 2-D, Archimedes' z in 3-D).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.pde.green import uniform_direction
      >>> u = uniform_direction(jax.random.key(0), (5,), 3)
      >>> u.shape, bool(jnp.allclose(jnp.linalg.norm(u, axis=-1), 1.0, atol=1e-6))
      ((5, 3), True)
    """
    _check_dim(dim)
    if dim == 2:
        theta = jax.random.uniform(key, shape, maxval=2 * math.pi)
        return jnp.stack([jnp.cos(theta), jnp.sin(theta)], axis=-1)
    u = jax.random.uniform(key, (2, *shape))
    z = 2.0 * u[0] - 1.0
    phi = 2 * math.pi * u[1]
    rho = jnp.sqrt(jnp.maximum(1.0 - z * z, 0.0))
    return jnp.stack([rho * jnp.cos(phi), rho * jnp.sin(phi), z], axis=-1)


def bessel_k0(x):
    r"""Modified Bessel function :math:`K_0(x)`, :math:`x > 0` (Abramowitz & Stegun 9.8.5–9.8.6, error < 2e-7 relative).

    Example:
      >>> from ulam.pde.green import bessel_k0
      >>> round(float(bessel_k0(1.0)), 5)  # K_0(1) = 0.42102...
      0.42102
    """
    x = jnp.asarray(x)
    small = x <= 2.0
    xs = jnp.where(small, x, 1.0)
    t = (xs / 2.0) ** 2
    poly_s = -0.57721566 + t * (
        0.42278420 + t * (0.23069756 + t * (0.03488590 + t * (0.00262698 + t * (0.00010750 + t * 0.00000740))))
    )
    i0 = i0e(xs) * jnp.exp(xs)
    k_small = -jnp.log(xs / 2.0) * i0 + poly_s
    xl = jnp.where(small, 2.0, x)
    y = 2.0 / xl
    poly_l = 1.25331414 + y * (
        -0.07832358 + y * (0.02189568 + y * (-0.01062446 + y * (0.00587872 + y * (-0.00251540 + y * 0.00053208))))
    )
    k_large = jnp.exp(-xl) / jnp.sqrt(xl) * poly_l
    return jnp.where(small, k_small, k_large)


def screened_survival(radius, absorption, dim: int):
    r"""Mean-value factor of :math:`\Delta u - \sigma u = 0` over a sphere: :math:`1/I_0(kR)` (2-D), :math:`kR/\sinh kR` (3-D).

    Example:
      >>> import math
      >>> from ulam.pde.green import screened_survival
      >>> round(float(screened_survival(1.0, 1.0, 3)), 6) == round(1 / math.sinh(1.0), 6)
      True
    """
    _check_dim(dim)
    z = jnp.sqrt(absorption) * radius
    if dim == 2:
        return jnp.exp(-z) / i0e(z)
    zs = jnp.where(z > 1e-3, z, 1.0)
    big = 2.0 * zs * jnp.exp(-zs) / (-jnp.expm1(-2.0 * zs))
    return jnp.where(z > 1e-3, big, 1.0 - z * z / 6.0)


def screened_green_ratio(r, radius, absorption, dim: int):
    r"""Ratio :math:`G^\sigma_R(r)/G_R(r)` of the screened to the Laplace ball Green's function (in :math:`(0, 1]`).

    Used to importance-sample the screened source term with the Laplace Green's
    density. At :math:`r\to R` it tends to :func:`screened_survival`.

    Example:
      >>> from ulam.pde.green import screened_green_ratio
      >>> 0.0 < float(screened_green_ratio(0.5, 1.0, 4.0, 2)) < 1.0
      True
    """
    _check_dim(dim)
    k = jnp.sqrt(absorption)
    if dim == 2:
        kr, kR = k * r, k * radius
        log_ratio = jnp.log(radius / r)
        ok = (log_ratio > 1e-4) & (kR > 1e-6)
        krs, kRs = jnp.where(ok, kr, 1.0), jnp.where(ok, kR, 2.0)
        # K0(kR) I0(kr)/I0(kR) with the exponential scalings cancelled to avoid overflow.
        num = bessel_k0(krs) - bessel_k0(kRs) * i0e(krs) / i0e(kRs) * jnp.exp(krs - kRs)
        ratio = num / jnp.where(ok, log_ratio, 1.0)
        limit = screened_survival(radius, absorption, 2)
        return jnp.where(ok, ratio, jnp.where(kR > 1e-6, limit, 1.0))
    gap = radius - r
    z = k * radius
    ok = (gap > 1e-6 * radius) & (z > 1e-3)
    gaps, zs = jnp.where(ok, gap, 1.0), jnp.where(ok, z, 1.0)
    # sinh(k gap) R / (gap sinh(k R)), written with exponentials that cannot overflow.
    ratio = (
        jnp.exp(k * gaps - zs)
        * (-jnp.expm1(-2.0 * k * gaps))
        / (-jnp.expm1(-2.0 * zs))
        * radius
        / gaps
    )
    limit = screened_survival(radius, absorption, 3)
    return jnp.where(ok, ratio, jnp.where(z > 1e-3, limit, 1.0))
