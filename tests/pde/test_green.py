"""Ball Green's functions: samplers against closed-form laws, masses against quadrature, K0 against SciPy."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

from ulam import Estimate
from ulam.pde import green
from ulam.testing import assert_within_stderr

N = 200_000


def cdf_green(s, dim):
    # 2-D density -4 s log s; 3-D density 6 s (1 - s) (Beta(2, 2)).
    return s**2 * (1 - 2 * np.log(np.maximum(s, 1e-300))) if dim == 2 else 3 * s**2 - 2 * s**3


def cdf_gradient(s, dim):
    # density (d + 1)/d (1 - s^d)
    return (dim + 1) / dim * (s - s ** (dim + 1) / (dim + 1))


@pytest.mark.parametrize("dim", [2, 3])
def test_green_radius_follows_its_closed_form_law(dim):
    s = np.asarray(green.sample_green_radius(jax.random.key(dim), (N,), dim), dtype=float)
    assert stats.kstest(s, lambda q: cdf_green(q, dim)).pvalue > 1e-3
    # Moments: E[s] = 4/9 (2-D), 1/2 (3-D); E[s^2] = 1/4 (2-D), 3/10 (3-D).
    est = Estimate.from_samples(jnp.stack([s, s**2], axis=1))
    truth = [4 / 9, 1 / 4] if dim == 2 else [1 / 2, 3 / 10]
    assert_within_stderr(est, np.array(truth))


@pytest.mark.parametrize("dim", [2, 3])
def test_green_gradient_radius_follows_its_law(dim):
    s = np.asarray(green.sample_green_gradient_radius(jax.random.key(10 + dim), (N,), dim), dtype=float)
    assert stats.kstest(s, lambda q: cdf_gradient(q, dim)).pvalue > 1e-3


@pytest.mark.parametrize("dim", [2, 3])
def test_uniform_direction_is_unit_and_isotropic(dim):
    u = green.uniform_direction(jax.random.key(5), (N,), dim)
    np.testing.assert_allclose(np.linalg.norm(np.asarray(u), axis=1), 1.0, atol=1e-5)
    # E[u] = 0, E[u u^T] = I/d
    est = Estimate.from_samples(jnp.concatenate([u, (u[:, :, None] * u[:, None, :]).reshape(N, -1)], axis=1))
    truth = np.concatenate([np.zeros(dim), np.eye(dim).ravel() / dim])
    assert_within_stderr(est, truth)


@pytest.mark.parametrize("dim", [2, 3])
@pytest.mark.parametrize("radius", [0.3, 1.7])
def test_green_masses_match_quadrature(dim, radius):
    area = green.sphere_area(dim)
    mass, _ = integrate.quad(lambda r: float(green.ball_green(r, radius, dim)) * area * r ** (dim - 1), 0, radius)
    assert float(green.ball_green_mass(radius, dim)) == pytest.approx(mass, rel=1e-5)
    # |grad_x G(0, y)| = r (r^-d - R^-d) / |S|
    grad_mass, _ = integrate.quad(lambda r: r * (r**-dim - radius**-dim) / area * area * r ** (dim - 1), 0, radius)
    assert float(green.green_gradient_mass(radius, dim)) == pytest.approx(grad_mass, rel=1e-6)


def test_bessel_k0_matches_scipy():
    x = np.concatenate([np.geomspace(1e-4, 2, 50), np.linspace(2, 40, 50)])
    with jax.enable_x64(True):
        ours = np.asarray(green.bessel_k0(jnp.asarray(x)))
    np.testing.assert_allclose(ours, special.k0(x), rtol=3e-7)


@pytest.mark.parametrize("dim", [2, 3])
def test_screened_green_matches_closed_form_and_its_limits(dim):
    sigma, radius = 3.0, 0.8
    k = math.sqrt(sigma)
    r = np.linspace(0.01, 0.79, 40)
    with jax.enable_x64(True):
        ratio = np.asarray(green.screened_green_ratio(jnp.asarray(r), radius, sigma, dim))
        survival = float(green.screened_survival(radius, sigma, dim))
        at_edge = float(green.screened_green_ratio(jnp.asarray(radius * (1 - 1e-9)), radius, sigma, dim))
    if dim == 2:
        screened = (special.k0(k * r) - special.k0(k * radius) * special.i0(k * r) / special.i0(k * radius)) / (2 * np.pi)
        laplace = np.log(radius / r) / (2 * np.pi)
        assert survival == pytest.approx(1 / special.i0(k * radius), rel=1e-10)
    else:
        screened = np.sinh(k * (radius - r)) / (4 * np.pi * r * np.sinh(k * radius))
        laplace = (1 / r - 1 / radius) / (4 * np.pi)
        assert survival == pytest.approx(k * radius / np.sinh(k * radius), rel=1e-10)
    np.testing.assert_allclose(ratio, screened / laplace, rtol=1e-6)
    assert at_edge == pytest.approx(survival, rel=1e-5)
    assert np.all((ratio > 0) & (ratio <= 1))


@pytest.mark.parametrize("dim", [2, 3])
def test_screened_survival_is_the_sphere_mean_of_a_screened_solution(dim):
    # u = exp(a.x) with |a|^2 = sigma solves Delta u = sigma u; its sphere mean is u(0) / survival.
    sigma, radius = 2.0, 0.9
    a = np.full(dim, math.sqrt(sigma / dim))
    u = green.uniform_direction(jax.random.key(1), (N,), dim)
    vals = jnp.exp(radius * u @ a)
    est = Estimate.from_samples(vals * green.screened_survival(radius, sigma, dim))
    assert_within_stderr(est, 1.0)
