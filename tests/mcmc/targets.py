"""Targets with known moments shared by the MCMC tests (imported by file path, see conftest)."""

import jax
import jax.numpy as jnp
import numpy as np

# A correlated 2-D Gaussian.
MU = jnp.array([1.0, -1.0])
COV = jnp.array([[1.0, 0.8], [0.8, 1.5]])
PREC = jnp.linalg.inv(COV)
CHOL = jnp.linalg.cholesky(COV)


def gauss_logdensity(x):
    d = x - MU
    return -0.5 * d @ PREC @ d


def gauss_exact(key, n):
    return MU + jax.random.normal(key, (n, 2)) @ CHOL.T


def gauss_stats(x):
    """Statistics whose expectations are MU and the entries of COV."""
    d = x - MU
    return jnp.stack([x[..., 0], x[..., 1], d[..., 0] ** 2, d[..., 1] ** 2, d[..., 0] * d[..., 1]], -1)


GAUSS_TRUTH = np.array([1.0, -1.0, 1.0, 1.5, 0.8])

# Haario's banana: x1 ~ N(0, A^2), x2 = y + B (x1^2 - A^2), y ~ N(0, 1).
A, B = 1.0, 0.5


def banana_logdensity(x):
    return -0.5 * x[0] ** 2 / A**2 - 0.5 * (x[1] - B * (x[0] ** 2 - A**2)) ** 2


def banana_stats(x):
    return jnp.stack([x[..., 0], x[..., 1], x[..., 0] ** 2, x[..., 1] ** 2], -1)


# E x1 = 0, E x2 = 0, E x1^2 = A^2, E x2^2 = 1 + B^2 Var(x1^2) = 1 + 2 B^2 A^4.
BANANA_TRUTH = np.array([0.0, 0.0, A**2, 1.0 + 2.0 * B**2 * A**4])
