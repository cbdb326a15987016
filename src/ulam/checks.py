"""The one input-check vocabulary of ulam: a handful of helpers with one message style.

Every public function checks its arguments early (at call or trace time) with these
helpers, so a bad input raises a ``TypeError`` (wrong kind of object) or a
``ValueError`` (right kind, wrong value) whose message reads

    ``name: expected <what>, got <what was given>[; <what to do>]``

Values are checked when they are concrete; inside ``jit``/``vmap``/``grad`` only
shapes and dtypes can be checked, and the value checks are skipped (a traced value
cannot be inspected without a host round-trip).

Example:
  >>> from ulam import checks
  >>> checks.count("num_samples", 100)
  100
  >>> checks.count("num_samples", 0)
  Traceback (most recent call last):
  ...
  ValueError: num_samples: expected an integer >= 1, got 0
"""

from __future__ import annotations

import difflib
from typing import Any, Iterable

import jax
import jax.numpy as jnp
import numpy as np

__all__ = [
    "message",
    "is_concrete",
    "count",
    "positive",
    "in_interval",
    "finite",
    "prng_key",
    "function",
    "one_of",
    "array",
    "callback_output",
    "positive_semidefinite",
]


def message(name: str, expected: str, got: Any, do: str | None = None) -> str:
    """The one message style: ``name: expected …, got …; do …``."""
    text = f"{name}: expected {expected}, got {got}"
    return f"{text}; {do}" if do else text


def is_concrete(x: Any) -> bool:
    """True when every leaf of ``x`` holds values (no tracer inside ``jit``/``grad``/``vmap``)."""
    return not any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree_util.tree_leaves(x))


def count(name: str, value: Any, minimum: int = 1) -> int:
    """A count (``num_*``, ``batch_size``, ...): a Python or NumPy integer ``>= minimum``; returns ``int``.

    Booleans and floats are refused, even when integral (``1e3`` is a float: write ``1000``).
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise TypeError(message(name, "an integer", f"{type(value).__name__} {value!r}"))
    if value < minimum:
        raise ValueError(message(name, f"an integer >= {minimum}", value))
    return int(value)


def _values(value) -> np.ndarray | None:
    if not is_concrete(value):
        return None
    try:
        return np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(message("value", "a number or an array of numbers", type(value).__name__)) from None


def _describe(v: np.ndarray) -> str:
    if v.size == 1:
        return f"{float(v.ravel()[0]):.6g}"
    bad = v.ravel()
    return f"an array whose entries range over [{np.nanmin(bad):.6g}, {np.nanmax(bad):.6g}]" + (
        " and include NaN" if np.isnan(bad).any() else ""
    )


def positive(name: str, value: Any, *, allow_zero: bool = False, do: str | None = None):
    """A finite number (or array of them) ``> 0`` (``>= 0`` with ``allow_zero``); returned unchanged.

    Arrays are checked entry by entry (a mass matrix, a vector of step sizes).
    """
    v = _values(value)
    if v is not None:
        ok = np.all(np.isfinite(v)) and (np.all(v >= 0) if allow_zero else np.all(v > 0))
        if not ok:
            what = "a finite number >= 0" if allow_zero else "a finite number > 0"
            if v.size > 1:
                what = "entries that are all " + what.removeprefix("a ").replace("number", "numbers")
            raise ValueError(message(name, what, _describe(v), do))
    return value


def in_interval(
    name: str,
    value: Any,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    do: str | None = None,
):
    """A finite number (or array) inside an interval, e.g. ``(0, 1]`` for a probability threshold."""
    v = _values(value)
    if v is not None:
        ok = np.all(np.isfinite(v))
        if low is not None:
            ok = ok and np.all(v > low if low_open else v >= low)
        if high is not None:
            ok = ok and np.all(v < high if high_open else v <= high)
        if not ok:
            lo = "-inf" if low is None else f"{low:g}"
            hi = "inf" if high is None else f"{high:g}"
            interval = f"{'(' if low_open or low is None else '['}{lo}, {hi}{')' if high_open or high is None else ']'}"
            raise ValueError(message(name, f"a finite value in {interval}", _describe(v), do))
    return value


def finite(name: str, value: Any, do: str | None = None):
    """An array (or pytree of arrays) with no NaN or infinity; returned unchanged."""
    for leaf in jax.tree_util.tree_leaves(value):
        v = _values(leaf)
        if v is not None and not np.all(np.isfinite(v)):
            bad = int(np.size(v) - np.count_nonzero(np.isfinite(v)))
            raise ValueError(message(name, "finite values", f"{bad} NaN or infinite of {np.size(v)}", do))
    return value


def prng_key(value: Any, name: str = "key") -> jax.Array:
    """A ``jax.random`` key: a new-style typed key (``jax.random.key(0)``) or a legacy
    ``uint32[2]`` ``jax.random.PRNGKey(0)``; returned unchanged.

    A plain integer (the commonest mistake) is refused with the line that fixes it.
    """
    do = "pass jax.random.key(seed) (or the legacy jax.random.PRNGKey(seed))"
    if isinstance(value, (int, np.integer, float)) and not isinstance(value, bool):
        raise TypeError(message(name, "a jax.random key", f"the {type(value).__name__} {value!r}", do))
    dtype = getattr(value, "dtype", None)
    if dtype is None:
        raise TypeError(message(name, "a jax.random key", type(value).__name__, do))
    if jnp.issubdtype(dtype, jax.dtypes.prng_key):
        if np.ndim(value) != 0:
            raise ValueError(message(name, "a single key", f"an array of keys of shape {np.shape(value)}", "split it and pass one"))
        return value
    if dtype == jnp.uint32 and np.shape(value) == (2,):
        return value
    raise TypeError(message(name, "a jax.random key", f"an array of dtype {dtype} and shape {np.shape(value)}", do))


def function(name: str, value: Any, expects: str = "a function", distribution_hint: str | None = None):
    """A callable; a distribution or array passed instead gets a message that says what fits.

    ``distribution_hint`` is what to say when a distribution object is passed; the default
    suits a log-density argument (``pass d.log_prob``).
    """
    # numpyro distributions are callable (they sample), so look for one first.
    if hasattr(value, "log_prob") and hasattr(value, "sample"):
        hint = distribution_hint or f"a distribution was given: pass its log-density, e.g. `{name}=d.log_prob`"
        raise TypeError(message(name, expects, type(value).__name__, hint))
    if not callable(value):
        raise TypeError(message(name, expects, type(value).__name__))
    return value


def one_of(name: str, value: Any, choices: Iterable[Any]):
    """One of a fixed set of choices (a kernel name, a resampling scheme); the error lists them all."""
    choices = list(choices)
    if value in choices:
        return value
    near = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1) if isinstance(value, str) else []
    listed = ", ".join(repr(c) for c in choices)
    do = f"did you mean {near[0]!r}?" if near else None
    raise ValueError(message(name, f"one of {listed}", repr(value), do))


def array(name: str, value: Any, *, ndim: int | None = None, shape: tuple | None = None, floating: bool = False):
    """An array of a given rank, shape (``None`` entries match any size) or floating dtype; returns ``jnp.asarray``."""
    try:
        x = jnp.asarray(value)
    except (TypeError, ValueError):
        raise TypeError(message(name, "an array", type(value).__name__)) from None
    if floating and not jnp.issubdtype(x.dtype, jnp.floating):
        raise TypeError(message(name, "a floating-point array", f"dtype {x.dtype}", "cast it with .astype(float)"))
    if ndim is not None and x.ndim != ndim:
        raise ValueError(message(name, f"an array with {ndim} dimension(s)", f"shape {x.shape}"))
    if shape is not None and (
        x.ndim != len(shape) or any(s is not None and s != t for s, t in zip(shape, x.shape))
    ):
        want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ")"
        raise ValueError(message(name, f"shape {want}", f"shape {x.shape}"))
    return x


def callback_output(name: str, out: Any, shape: tuple | None = None, floating: bool = True, what: str = "its output"):
    """What a user callback returned: its shape (``None`` entries match any size) and dtype.

    ``name`` is the callback's argument name (``logdensity_fn``, ``f``, ``boundary``);
    the message says what shape was expected and which one came back.
    """
    leaves = jax.tree_util.tree_leaves(out)
    if len(leaves) != 1:
        raise TypeError(message(name, f"{what} to be one array", f"a {type(out).__name__} with {len(leaves)} arrays"))
    x = leaves[0]
    xshape = tuple(np.shape(x))
    if shape is not None and (len(xshape) != len(shape) or any(s is not None and s != t for s, t in zip(shape, xshape))):
        want = "(" + ", ".join("any" if s is None else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
        raise ValueError(message(name, f"{what} of shape {want}", f"shape {xshape}"))
    dtype = x.dtype if hasattr(x, "dtype") else np.asarray(x).dtype  # never np.asarray a tracer
    if floating and not (jnp.issubdtype(dtype, jnp.floating) or jnp.issubdtype(dtype, jnp.integer)):
        raise TypeError(message(name, f"{what} to be real numbers", f"dtype {dtype}"))
    return out


def positive_semidefinite(name: str, matrix: Any, *, strict: bool = False, rtol: float = 1e-6):
    """A symmetric matrix (or a batch of them) that is positive semi-definite (definite with ``strict``)."""
    v = _values(matrix)
    if v is None:
        return matrix
    if v.ndim < 2 or v.shape[-1] != v.shape[-2]:
        raise ValueError(message(name, "a square matrix", f"shape {v.shape}"))
    if not np.all(np.isfinite(v)):
        raise ValueError(message(name, "a matrix of finite values", "NaN or infinite entries"))
    scale = max(float(np.max(np.abs(v))), 1e-300)
    if np.max(np.abs(v - np.swapaxes(v, -1, -2))) > rtol * scale * 10:
        raise ValueError(message(name, "a symmetric matrix", "an asymmetric one", "pass (A + A.T) / 2"))
    smallest = float(np.min(np.linalg.eigvalsh(v)))
    if smallest < -rtol * scale or (strict and smallest <= 0):
        what = "a positive definite matrix" if strict else "a positive semi-definite matrix"
        raise ValueError(message(name, what, f"one with smallest eigenvalue {smallest:.3g}"))
    return matrix
