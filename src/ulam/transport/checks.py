"""Argument checks shared by the transport modules: point clouds, atom weights and the order p.

The generic checks (counts, positive numbers, keys, choices) come from :mod:`ulam.checks`;
what lives here is specific to measures on point clouds, in the same message style
(``name: expected ..., got ...; do ...``). Values are checked when they are concrete;
inside ``jit``/``grad``/``vmap`` only shapes and dtypes can be.

Example:
  >>> import jax.numpy as jnp
  >>> from ulam.transport.checks import point_cloud
  >>> point_cloud(jnp.ones(4), "x")
  Traceback (most recent call last):
  ...
  ValueError: x: expected a point cloud of shape (num_points, dim), got shape (4,)
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ulam import checks
from ulam.checks import is_concrete

__all__ = ["power", "point_cloud", "cloud_pair", "weights"]


def power(p):
    """The Wasserstein order ``p``: a finite number ``>= 1`` (returned unchanged; traced values pass).

    Example:
      >>> from ulam.transport.checks import power
      >>> power(2.0)
      2.0
    """
    return checks.in_interval("p", p, 1.0, do="the Wasserstein order p must be at least 1")


def point_cloud(x, name: str):
    """A point cloud: a non-empty, finite, floating array of shape ``(num_points, dim)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.transport.checks import point_cloud
      >>> point_cloud(jnp.zeros((3, 2)), "x").shape
      (3, 2)
    """
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(checks.message(name, "floating-point positions", f"dtype {x.dtype}", "cast with .astype(float)"))
    if x.ndim != 2:
        raise ValueError(checks.message(name, "a point cloud of shape (num_points, dim)", f"shape {x.shape}"))
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(checks.message(name, "a non-empty point cloud (at least one point of dim >= 1)",
                                        f"shape {x.shape}"))
    checks.finite(name, x, do="the point cloud contains non-finite positions (NaN or inf)")
    return x


def cloud_pair(x, y):
    """Two point clouds in the same dimension, cast to a common floating dtype.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.transport.checks import cloud_pair
      >>> [a.shape for a in cloud_pair(jnp.zeros((3, 2)), jnp.ones((5, 2)))]
      [(3, 2), (5, 2)]
    """
    x, y = point_cloud(x, "x"), point_cloud(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(checks.message(
            "x, y", "clouds in the same dimension", f"different dimensions ({x.shape[1]} and {y.shape[1]})",
            "both must have shape (num_points, dim) with the same dim",
        ))
    dtype = jnp.result_type(x.dtype, y.dtype)
    return x.astype(dtype), y.astype(dtype)


def weights(w, size: int, name: str, dtype, batch_shape=()):
    """Probability weights over ``size`` atoms: non-negative and summing to one; ``None`` means uniform.

    Values are checked when they are concrete; inside a transformation only the shape can be.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.transport.checks import weights
      >>> weights(None, 4, "x_weights", jnp.float32).tolist()
      [0.25, 0.25, 0.25, 0.25]
    """
    if w is None:
        return jnp.full(batch_shape + (size,), 1.0 / size, dtype=dtype)
    w = jnp.asarray(w)
    if w.ndim < 1 or w.shape[-1] != size:
        raise ValueError(checks.message(name, f"one weight per point ({size})", f"shape {w.shape}"))
    if is_concrete(w):
        wv = np.asarray(w, dtype=float)
        checks.finite(name, wv)
        if np.any(wv < 0):
            raise ValueError(checks.message(name, "non-negative weights", f"a smallest weight of {wv.min():.3g}"))
        sums = wv.sum(axis=-1)
        tol = 1e-4 if jnp.dtype(dtype) != jnp.float64 else 1e-8
        if np.any(np.abs(sums - 1.0) > tol):
            raise ValueError(checks.message(name, "weights that sum to 1", f"a sum of {np.ravel(sums)[0]:.6g}",
                                            "divide them by their sum"))
    return jnp.broadcast_to(w.astype(dtype), batch_shape + (size,))
