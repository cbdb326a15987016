"""Input handling shared by the diagnostics: float arrays, the sample axis, ``(chains, draws, *event)`` checks."""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["float_array", "sample_axis_last", "check_draws", "check_prob", "tree_apply", "per_coordinate"]


def float_array(x, name):
    """``x`` as a floating JAX array (ints and bools become the default float)."""
    try:
        x = jnp.asarray(x)
    except TypeError as err:
        raise TypeError(f"`{name}` must be an array of numbers, got {type(x).__name__}") from err
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)
            or x.dtype == jnp.bool_):
        raise TypeError(f"`{name}` must hold real numbers, got dtype {x.dtype}")
    if not jnp.issubdtype(x.dtype, jnp.floating):
        x = x.astype(jnp.result_type(float))
    return x


def sample_axis_last(x, axis, name):
    if x.ndim == 0:
        raise ValueError(f"`{name}` must have at least one axis (the sample axis), got a scalar")
    try:
        axis = int(axis)
    except TypeError as err:
        raise TypeError(f"`axis` must be an int, got {axis!r}") from err
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"`axis`={axis} is out of range for `{name}` with shape {x.shape}")
    return jnp.moveaxis(x, axis, -1)


def per_coordinate(fn, draws, *args):
    """Apply ``fn((chains, draws), *args)`` to every event coordinate; result has shape ``event + fn's shape``."""
    chains, num_draws = draws.shape[:2]
    event = draws.shape[2:]
    flat = jnp.moveaxis(draws.reshape((chains, num_draws, -1)), -1, 0)
    out = jax.vmap(lambda d: fn(d, *args))(flat)
    return out.reshape(event + out.shape[1:])



def check_draws(draws):
    draws = float_array(draws, "draws")
    if draws.ndim < 2:
        raise ValueError(
            f"`draws` must have shape (chains, draws, *event), got shape {draws.shape}; "
            "for a single chain use draws[None]"
        )
    if draws.shape[0] < 1:
        raise ValueError(f"`draws` needs at least one chain, got shape {draws.shape}")
    if draws.shape[1] < 4:
        raise ValueError(
            f"`draws` needs at least 4 draws per chain (axis 1 of (chains, draws, *event)), "
            f"got shape {draws.shape}"
        )
    return draws


def check_prob(prob, name):
    if isinstance(prob, (int, float)) and not 0.0 < float(prob) < 1.0:
        raise ValueError(f"`{name}` must be in (0, 1), got {prob}")
    return prob


def tree_apply(fn, draws):
    return jax.tree_util.tree_map(lambda leaf: fn(check_draws(leaf)), draws)

