r"""Directions on the unit sphere :math:`S^{d-1}` for sliced Wasserstein estimators.

Three designs, each with every direction marginally uniform on the sphere (so any
average over them is unbiased for a spherical expectation):

* :func:`random_directions` — i.i.d. uniform (plain Monte Carlo);
* :func:`sobol_directions` — randomized quasi-Monte Carlo: Sobol points, randomized
  by a linear matrix scramble and digital shift, pushed through the normal inverse CDF and normalized
  (Nguyen et al., *Quasi-Monte Carlo for 3D sliced Wasserstein*, ICLR 2024);
* :func:`orthogonal_directions` — blocks of orthonormal directions from Haar-random
  rotations (Rowland et al., *Orthogonal estimation of Wasserstein distances*,
  AISTATS 2019).

The structured designs come in ``num_directions // block_size`` independent blocks, so a
standard error can be taken from the spread of block means.
"""

from __future__ import annotations

import functools
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri

from ulam import checks
from ulam.integrate import draw_flat, sobol_points

__all__ = ["random_directions", "sobol_directions", "orthogonal_directions"]

_MAX_SOBOL_DIM = 21201  # the direction numbers shipped with scipy


def _renamed_count(fn):
    """Accept the old keyword ``num=`` for ``num_directions=`` for one release, with a DeprecationWarning."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        if "num" in kwargs:
            warnings.warn(f"{fn.__name__}: num= is deprecated; use num_directions=", DeprecationWarning, stacklevel=2)
            kwargs["num_directions"] = kwargs.pop("num")
        return fn(*args, **kwargs)

    return wrapper


def _check(key, num, dim, block_size, name):
    checks.prng_key(key)
    num, dim = checks.count("num_directions", num), checks.count("dim", dim)
    block_size = num if block_size is None else checks.count("block_size", block_size)
    if num % block_size:
        raise ValueError(checks.message("block_size", f"a divisor of num_directions={num}", f"{block_size} ({name} directions)"))
    return num, dim, block_size


@_renamed_count
def random_directions(key, num_directions: int, dim: int, dtype=None):
    r"""``num_directions`` i.i.d. directions uniform on :math:`S^{d-1}`: :math:`\theta = z/\|z\|`, :math:`z\sim N(0, I_d)`.

    Example:
      >>> import jax
      >>> from ulam.transport import random_directions
      >>> random_directions(jax.random.key(0), 4, 3).shape
      (4, 3)
    """
    num, dim, _ = _check(key, num_directions, dim, None, "random")
    z = jax.random.normal(key, (num, dim), dtype=dtype or jnp.result_type(float))
    return z / jnp.linalg.norm(z, axis=-1, keepdims=True)


@_renamed_count
def orthogonal_directions(key, num_directions: int, dim: int, block_size: int | None = None, dtype=None):
    r"""Blocks of ``block_size`` orthonormal directions, each block from an independent Haar rotation.

    A block is the first ``block_size`` columns of :math:`Q` in :math:`G = QR`
    (:math:`G` a ``dim x block_size`` Gaussian matrix, signs fixed so that
    :math:`\mathrm{diag}(R) > 0`), i.e. an orthonormal frame uniform on the Stiefel
    manifold; each direction is marginally uniform on the sphere. Cost
    :math:`O(d\,b^2)` per block. ``block_size`` defaults to ``min(num_directions, dim)`` and must
    divide ``num_directions`` and be at most ``dim``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.transport import orthogonal_directions
      >>> t = orthogonal_directions(jax.random.key(0), 6, 3)
      >>> bool(jnp.allclose(t[:3] @ t[:3].T, jnp.eye(3), atol=1e-5))
      True
    """
    if block_size is None and isinstance(num_directions, (int, np.integer)) and isinstance(dim, (int, np.integer)):
        block_size = _largest_divisor_at_most(num_directions, dim)
    num, dim, block_size = _check(key, num_directions, dim, block_size, "orthogonal")
    if block_size > dim:
        raise ValueError(checks.message("block_size", f"at most dim={dim} (orthogonal directions)", block_size))
    num_blocks = num // block_size
    g = draw_flat(jax.random.normal, key, (num_blocks, dim, block_size), dtype or jnp.result_type(float))
    q, r = jnp.linalg.qr(g)
    q = q * jnp.sign(jnp.diagonal(r, axis1=-2, axis2=-1))[:, None, :]
    return jnp.swapaxes(q, -1, -2).reshape(num, dim)


@_renamed_count
def sobol_directions(key, num_directions: int, dim: int, block_size: int | None = None, dtype=None):
    r"""Randomized quasi-Monte Carlo directions: scrambled Sobol points mapped to the sphere.

    Each block is an independently scrambled Sobol net (:func:`ulam.sobol_points`:
    random linear matrix scramble plus digital shift), so each point
    :math:`u_i` is uniform on the cube; then :math:`z_i = \Phi^{-1}(u_i)` and
    :math:`\theta_i = z_i / \|z_i\|` is uniform on the sphere. ``block_size``
    defaults to ``num_directions`` (one randomization); powers of two keep the Sobol balance.

    Example:
      >>> import jax
      >>> from ulam.transport import sobol_directions
      >>> sobol_directions(jax.random.key(0), 8, 3, block_size=4).shape
      (8, 3)
    """
    num, dim, block_size = _check(key, num_directions, dim, block_size, "sobol")
    if dim > _MAX_SOBOL_DIM:
        raise ValueError(checks.message("dim", f"at most {_MAX_SOBOL_DIM} (Sobol direction numbers)", dim))
    dtype = dtype or jnp.result_type(float)
    keys = jax.random.split(key, num // block_size)
    u = jax.vmap(lambda k: sobol_points(k, block_size, dim, dtype))(keys)
    z = ndtri(u)
    theta = z / jnp.linalg.norm(z, axis=-1, keepdims=True)
    return theta.reshape(num, dim)


def _largest_divisor_at_most(num: int, cap: int) -> int:
    for b in range(min(num, cap), 0, -1):
        if num % b == 0:
            return b
    return 1
