"""Argument checks shared by the transport estimators (raised at trace time)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def is_concrete(x) -> bool:
    """True when ``x`` holds values (not a tracer inside ``jit``/``grad``/``vmap``)."""
    return not isinstance(x, jax.core.Tracer)


def check_power(p) -> float:
    if is_concrete(p):
        p_value = float(np.asarray(p))
        if not (np.isfinite(p_value) and p_value >= 1.0):
            raise ValueError(f"p: the Wasserstein order must be a finite number >= 1, got {p_value}")
    return p


def check_cloud(x, name: str):
    """A point cloud: a non-empty floating array of shape (n, d)."""
    x = jnp.asarray(x)
    if not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(f"{name}: expected floating-point positions, got dtype {x.dtype}; cast with .astype(float)")
    if x.ndim != 2:
        raise ValueError(f"{name}: expected a point cloud of shape (num_points, dim), got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"{name}: the point cloud is empty (shape {x.shape}); it needs at least one point of dim >= 1")
    if is_concrete(x) and not np.all(np.isfinite(np.asarray(x))):
        raise ValueError(f"{name}: contains non-finite positions (NaN or inf)")
    return x


def check_pair(x, y):
    x, y = check_cloud(x, "x"), check_cloud(y, "y")
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"x, y: the clouds live in different dimensions ({x.shape[1]} and {y.shape[1]}); "
            "both must have shape (num_points, dim) with the same dim"
        )
    dtype = jnp.result_type(x.dtype, y.dtype)
    return x.astype(dtype), y.astype(dtype)


def check_weights(w, size: int, name: str, dtype, batch_shape=()):
    """Probability weights over ``size`` atoms: non-negative and summing to one.

    ``None`` means uniform. Values are checked when they are concrete; inside a
    transformation only the shape can be checked.
    """
    if w is None:
        return jnp.full(batch_shape + (size,), 1.0 / size, dtype=dtype)
    w = jnp.asarray(w)
    if w.ndim < 1 or w.shape[-1] != size:
        raise ValueError(f"{name}: expected one weight per point ({size}), got shape {w.shape}")
    if is_concrete(w):
        wv = np.asarray(w, dtype=float)
        if not np.all(np.isfinite(wv)):
            raise ValueError(f"{name}: contains non-finite weights")
        if np.any(wv < 0):
            raise ValueError(f"{name}: weights must be non-negative (smallest is {wv.min():.3g})")
        sums = wv.sum(axis=-1)
        tol = 1e-4 if jnp.dtype(dtype) != jnp.float64 else 1e-8
        if np.any(np.abs(sums - 1.0) > tol):
            raise ValueError(
                f"{name}: weights must sum to 1 (they sum to {np.ravel(sums)[0]:.6g}); divide by their sum first"
            )
    return jnp.broadcast_to(w.astype(dtype), batch_shape + (size,))


def check_num_directions(num_directions) -> int:
    if not isinstance(num_directions, (int, np.integer)) or isinstance(num_directions, bool):
        raise TypeError(f"num_directions: expected a Python int, got {type(num_directions).__name__}")
    if num_directions < 2:
        raise ValueError(
            f"num_directions: need at least 2 directions for a standard error, got {num_directions}"
        )
    return int(num_directions)
