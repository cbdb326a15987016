r"""Sorting that is fast on CPU and differentiable: ``sort`` and ``argsort``.

XLA's CPU sort is a generic comparison sort that runs one comparator call per
comparison; NumPy's sort uses vectorised (SIMD) kernels. Measured on a 2-core
x86 machine (one XLA thread, float32, jitted, best of 30):

==============  ==========  ======================
shape           ``jnp.sort``  NumPy via ``pure_callback``
==============  ==========  ======================
(256,)          0.11 ms     0.29 ms
(1000,)         0.30 ms     0.30 ms
(10, 300)       0.66 ms     0.32 ms
(4096,)         1.2 ms      0.33 ms
(100, 1000)     24 ms       1.1 ms
==============  ==========  ======================

so on CPU :func:`sort` hands arrays of at least :data:`CPU_HOST_SORT_MIN_SIZE`
elements to ``numpy.sort`` through :func:`jax.pure_callback` (the callback costs
a fixed ~0.3 ms round trip, hence the cut-off), and keeps XLA's sort for small
arrays and on GPU/TPU, where the data would otherwise travel to the host.
``benchmarks/transport.py`` re-measures both paths on the machine it runs on.

The result is the same array either way (sorting is exact), so the choice never
changes a number. Both paths are differentiable: the derivative of a sorted
vector is the tangent gathered by the sorting permutation,
:math:`\dot y = \dot x_{\pi}` with :math:`\pi = \operatorname{argsort}(x)`,
and ``jax.vmap`` batches the host call (``vmap_method="expand_dims"``: one NumPy
call for the whole batch).

Example:
  >>> import jax, jax.numpy as jnp
  >>> from ulam.sorting import sort
  >>> x = jnp.array([3.0, 1.0, 2.0])
  >>> sort(x).tolist()
  [1.0, 2.0, 3.0]
  >>> jax.grad(lambda x: sort(x)[0])(x).tolist()  # d min / dx
  [0.0, 1.0, 0.0]
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["sort", "argsort", "sort_method", "CPU_HOST_SORT_MIN_SIZE"]

#: Arrays with at least this many elements are sorted by NumPy on the CPU
#: backend (the measured break-even of the ~0.3 ms host round trip).
CPU_HOST_SORT_MIN_SIZE = 1024

_METHODS = ("auto", "host", "xla")


def sort_method(x, method: str = "auto") -> str:
    """The path :func:`sort` takes for ``x``: ``"host"`` (NumPy) or ``"xla"``.

    ``"auto"`` picks ``"host"`` on the CPU backend for real or integer arrays of at
    least :data:`CPU_HOST_SORT_MIN_SIZE` elements and ``"xla"`` otherwise (GPU,
    TPU, small arrays, dtypes NumPy cannot sort natively such as bfloat16), and
    also when the process may run on only one CPU (``os.sched_getaffinity``): JAX
    runs the host callback on XLA's worker thread and first moves the operand
    with ``device_put``, which then waits for that same thread if another
    computation is in flight -- measured here under ``taskset -c 0``, a jitted
    ``jnp.sort`` and a host sort dispatched together never returned. (An explicit
    ``method="host"`` on one CPU keeps that risk; block on other work first.)
    Under ``jax.vmap`` the size seen is that of one batch member.
    """
    if method not in _METHODS:
        raise ValueError(f"method: expected one of {_METHODS}, got {method!r}")
    if method != "auto":
        return method
    dtype = jnp.dtype(x.dtype)
    native = dtype in (np.float16, np.float32, np.float64) or jnp.issubdtype(dtype, jnp.integer)
    if jax.default_backend() == "cpu" and native and x.size >= CPU_HOST_SORT_MIN_SIZE and _cpus_available() > 1:
        return "host"
    return "xla"


def _cpus_available() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # platforms without affinity (macOS): every core is available
        return os.cpu_count() or 1


def _np_sort_last(a, dtype):
    # Cast to the dtype declared at trace time: a float32 operand has been seen reaching a
    # callback declared float64 after x64 was toggled in the same process (JAX raises then).
    return np.sort(np.asarray(a, dtype=dtype), axis=-1)


def _np_argsort_last(a, dtype):
    return np.argsort(np.asarray(a), axis=-1, kind="stable").astype(dtype)


def _index_dtype():
    return jnp.dtype(jnp.int64) if jax.config.jax_enable_x64 else jnp.dtype(jnp.int32)


def _host_argsort_last(x):
    # The index dtype is fixed at trace time (x64 may be toggled before the call runs).
    dtype = _index_dtype()
    out = jax.ShapeDtypeStruct(x.shape, dtype)
    return jax.pure_callback(functools.partial(_np_argsort_last, dtype=dtype), out, x, vmap_method="expand_dims")


def _host_sort_nodiff(x):
    out = jax.ShapeDtypeStruct(x.shape, x.dtype)
    return jax.pure_callback(functools.partial(_np_sort_last, dtype=x.dtype), out, x, vmap_method="expand_dims")


@jax.custom_jvp
def _host_sort_last(x):
    return _host_sort_nodiff(x)


@_host_sort_last.defjvp
def _host_sort_last_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    # The sort is piecewise a fixed permutation, so its derivative is the same
    # gather applied to the tangent; only differentiated calls pay for argsort.
    perm = _host_argsort_last(x)
    return jnp.take_along_axis(x, perm, axis=-1), jnp.take_along_axis(t, perm, axis=-1)


def _check(x, axis):
    x = jnp.asarray(x)
    if x.ndim == 0:
        raise ValueError("x: expected an array with at least one axis, got a scalar")
    if jnp.issubdtype(x.dtype, jnp.complexfloating):
        raise TypeError(f"x: complex arrays have no order; got dtype {x.dtype}")
    if not -x.ndim <= axis < x.ndim:
        raise ValueError(f"axis: {axis} is out of range for an array with {x.ndim} axes")
    return x, axis % x.ndim


def sort(x, axis: int = -1, *, method: str = "auto"):
    r"""Sort ``x`` along ``axis``, fast on CPU and differentiable.

    Returns the same values as :func:`jax.numpy.sort` (NaNs last). Derivative:
    :math:`\partial\,\mathrm{sort}(x)_i / \partial x_j = [\pi_i = j]` with
    :math:`\pi = \operatorname{argsort}(x)` (ties broken stably).

    Args:
      x: a real or integer array.
      axis: the axis to sort along.
      method: ``"auto"`` (see :func:`sort_method`), ``"host"`` (NumPy through
        :func:`jax.pure_callback`) or ``"xla"`` (:func:`jax.numpy.sort`).

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.sorting import sort
      >>> sort(jnp.array([[2, 1], [0, 5]]), axis=0).tolist()
      [[0, 1], [2, 5]]
    """
    x, axis = _check(x, axis)
    if sort_method(x, method) == "xla":
        return jnp.sort(x, axis=axis)
    moved = jnp.moveaxis(x, axis, -1)
    host = _host_sort_last if jnp.issubdtype(x.dtype, jnp.floating) else _host_sort_nodiff
    return jnp.moveaxis(host(moved), -1, axis)


def argsort(x, axis: int = -1, *, method: str = "auto"):
    """Indices that sort ``x`` along ``axis`` (stable), fast on CPU.

    Same result as ``jax.numpy.argsort(x, axis, stable=True)``; an integer array,
    so it carries no derivative (gather with it, e.g. ``jnp.take_along_axis``,
    to get a differentiable reordering).

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.sorting import argsort
      >>> argsort(jnp.array([3.0, 1.0, 2.0])).tolist()
      [1, 2, 0]
    """
    x, axis = _check(x, axis)
    if sort_method(x, method) == "xla":
        return jnp.argsort(x, axis=axis, stable=True)
    moved = jax.lax.stop_gradient(jnp.moveaxis(x, axis, -1))
    return jnp.moveaxis(_host_argsort_last(moved), -1, axis)
