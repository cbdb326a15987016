r"""Sorting that is fast on CPU and differentiable: ``sort`` and ``argsort``.

XLA's CPU sort is a generic comparison sort that runs one comparator call per
comparison; NumPy's sort uses vectorised (SIMD) kernels. Measured on this project's
2-core x86 machine (jax 0.10.2, float32, jitted, 15 interleaved repeats, min / median):

==============  ====================  ==========================
shape           ``jnp.sort``          NumPy via ``pure_callback``
==============  ====================  ==========================
(1024,)         0.30 / 0.33 ms        0.17 / 0.24 ms
(4096,)         0.77 / 0.96 ms        0.16 / 0.24 ms
(100, 1000)     17 / 21 ms            0.94 / 1.2 ms
(100, 4096)     106 / 203 ms          3.0 / 7.3 ms
(1000, 1000)    256 / 370 ms          4.7 / 9.9 ms
==============  ====================  ==========================

(``-lax.top_k(-x, n)``, the other pure-XLA sort, measured 14 ms at (100, 1000) and
211 ms at (1000, 1000): no better.) A 20-80x gap is too large to give up, so on CPU
:func:`sort` hands arrays of at least :data:`CPU_HOST_SORT_MIN_SIZE` elements to
``numpy.sort`` through :func:`jax.pure_callback` (the callback costs a fixed ~0.2 ms
round trip, hence the cut-off), and keeps XLA's sort for small arrays and on GPU/TPU,
where the data would otherwise travel to the host. ``benchmarks/transport.py``
re-measures both paths on the machine it runs on.

The host path is a pair of primitives whose rules keep every transformation working
at every size: ``jit`` and ``vmap`` (one NumPy call for the whole batch), ``grad``
and second derivatives (Hessian-vector products: the derivative's permutation is
computed from a stop-gradient operand), and :func:`jax.export`, which lowers them to
XLA's own sort (an exported module must not hold a host callback; it then runs
anywhere, with the same result). The result is the same array either way (sorting is
exact), so the choice never changes a number. Derivative: the tangent gathered by the
sorting permutation, :math:`\dot y = \dot x_{\pi}` with
:math:`\pi = \operatorname{argsort}(x)`.

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
from jax.extend.core import Primitive
from jax.interpreters import ad, batching, mlir

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

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.sorting import sort_method
      >>> sort_method(jnp.zeros(10)), sort_method(jnp.zeros(10), "host")
      ('xla', 'host')
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


# The host path is two primitives (sort and stable argsort along the last axis) rather
# than bare ``jax.pure_callback`` calls, so that each transformation gets a rule of its own:
#
# * lowering: NumPy through ``pure_callback`` when compiling for the CPU alone, and XLA's
#   own sort when exporting (``jax.export`` cannot serialize host callbacks) or lowering
#   for any other platform -- so an exported function is portable and gives the same bits;
# * batching: one NumPy call for the whole batch (the batch axis is moved to the front);
# * JVP: the tangent gathered by the sorting permutation, whose argsort takes a
#   stop-gradient operand, so the rule is itself differentiable (Hessian-vector products,
#   ``jax.hessian``) at every size.
_sort_p = Primitive("ulam_host_sort")
_argsort_p = Primitive("ulam_host_argsort")


def _exporting_or_not_cpu(ctx) -> bool:
    module = ctx.module_context
    params = getattr(module, "lowering_parameters", None)
    # Unknown lowering context: take the portable path.
    for_export = getattr(params, "for_export", True)
    return bool(for_export) or tuple(getattr(module, "platforms", ())) != ("cpu",)


def _sort_impl(x):
    return jnp.asarray(_np_sort_last(np.asarray(x), x.dtype))


def _argsort_impl(x, *, index_dtype):
    return jnp.asarray(_np_argsort_last(np.asarray(x), index_dtype))


def _sort_lowering(ctx, x):
    if _exporting_or_not_cpu(ctx):
        fn = functools.partial(jnp.sort, axis=-1)
    else:
        def fn(x):
            out = jax.ShapeDtypeStruct(x.shape, x.dtype)
            return jax.pure_callback(functools.partial(_np_sort_last, dtype=x.dtype), out, x)
    return mlir.lower_fun(fn, multiple_results=False)(ctx, x)


def _argsort_lowering(ctx, x, *, index_dtype):
    if _exporting_or_not_cpu(ctx):
        def fn(x):
            return jnp.argsort(x, axis=-1, stable=True).astype(index_dtype)
    else:
        def fn(x):
            out = jax.ShapeDtypeStruct(x.shape, index_dtype)
            return jax.pure_callback(functools.partial(_np_argsort_last, dtype=index_dtype), out, x)
    return mlir.lower_fun(fn, multiple_results=False)(ctx, x)


def _batch_to_front(prim):
    def rule(args, dims, **params):
        (x,), (d,) = args, dims
        # The primitive works on the last axis; any leading axes are batch axes to it.
        return prim.bind(jnp.moveaxis(x, d, 0), **params), 0

    return rule


def _sort_jvp(primals, tangents):
    (x,), (t,) = primals, tangents
    # The sort is piecewise a fixed permutation, so its derivative is the same gather applied
    # to the tangent; only differentiated calls pay for the argsort. The stop-gradient keeps
    # the (non-differentiable) argsort out of higher-order derivatives.
    perm = _argsort_p.bind(jax.lax.stop_gradient(x), index_dtype=_index_dtype())
    t = ad.instantiate_zeros(t)
    return jnp.take_along_axis(x, perm, axis=-1), jnp.take_along_axis(t, perm, axis=-1)


_sort_p.def_impl(_sort_impl)
_sort_p.def_abstract_eval(lambda x: jax.core.ShapedArray(x.shape, x.dtype))
mlir.register_lowering(_sort_p, _sort_lowering)
batching.primitive_batchers[_sort_p] = _batch_to_front(_sort_p)
ad.primitive_jvps[_sort_p] = _sort_jvp

_argsort_p.def_impl(_argsort_impl)
_argsort_p.def_abstract_eval(lambda x, *, index_dtype: jax.core.ShapedArray(x.shape, index_dtype))
mlir.register_lowering(_argsort_p, _argsort_lowering)
batching.primitive_batchers[_argsort_p] = _batch_to_front(_argsort_p)


def _host_sort_last(x):
    return _sort_p.bind(x)


def _host_argsort_last(x):
    # The index dtype is fixed at trace time (x64 may be toggled before the call runs).
    return _argsort_p.bind(x, index_dtype=_index_dtype())


def _check(x, axis):
    try:
        x = jnp.asarray(x)
    except TypeError:
        raise TypeError(f"x: expected a real or integer array, got {type(x).__name__} {x!r:.40}") from None
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
    return jnp.moveaxis(_host_sort_last(moved), -1, axis)


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
