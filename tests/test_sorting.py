"""ulam.sorting: the CPU-fast differentiable sort must equal jnp.sort in value and derivative."""

import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ulam.sorting import CPU_HOST_SORT_MIN_SIZE, argsort, sort, sort_method

METHODS = ["host", "xla"]


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_sort_matches_jnp_sort(method, axis, key):
    x = jax.random.normal(key, (7, 9, 5))
    np.testing.assert_array_equal(sort(x, axis, method=method), jnp.sort(x, axis=axis))
    np.testing.assert_array_equal(argsort(x, axis, method=method), jnp.argsort(x, axis=axis, stable=True))


@pytest.mark.parametrize("method", METHODS)
def test_ties_nans_and_integers(method):
    x = jnp.array([2.0, jnp.nan, 1.0, 2.0, -jnp.inf, 1.0])
    np.testing.assert_array_equal(sort(x, method=method), jnp.sort(x))
    np.testing.assert_array_equal(argsort(x, method=method), jnp.argsort(x, stable=True))
    i = jnp.array([[3, 1, 2, 1], [0, -5, 9, 9]], dtype=jnp.int32)
    np.testing.assert_array_equal(sort(i, method=method), jnp.sort(i))
    assert sort(i, method=method).dtype == jnp.int32


@pytest.mark.parametrize("method", METHODS)
def test_derivatives_match_jnp_sort(method, key):
    x = jax.random.normal(key, (6, 8))
    weights = jnp.arange(48.0).reshape(6, 8)

    def loss(sorter, x):
        return jnp.sum(weights * sorter(x) ** 2)

    g = jax.grad(lambda x: loss(lambda z: sort(z, method=method), x))(x)
    g_ref = jax.grad(lambda x: loss(jnp.sort, x))(x)
    np.testing.assert_allclose(g, g_ref, rtol=1e-6)
    jac = jax.jacfwd(lambda v: sort(v, method=method))(x[0])
    np.testing.assert_array_equal(jac, jax.jacfwd(jnp.sort)(x[0]))


@pytest.mark.parametrize("method", METHODS)
def test_vmap_jit_and_grad_compose(method, key):
    x = jax.random.normal(key, (5, 4, 30))
    batched = jax.jit(jax.vmap(lambda z: sort(z, 0, method=method)))(x)
    np.testing.assert_array_equal(batched, jnp.sort(x, axis=1))
    g = jax.jit(jax.vmap(jax.grad(lambda z: sort(z, method=method)[..., -1].sum())))(x)
    # The gradient of the row maxima is one indicator per row at the argmax.
    np.testing.assert_array_equal(g, jax.nn.one_hot(jnp.argmax(x, -1), 30))


def test_float64(x64):
    x = jnp.asarray(np.random.default_rng(0).normal(size=2000))
    assert x.dtype == jnp.float64
    y = sort(x, method="host")
    assert y.dtype == jnp.float64
    np.testing.assert_array_equal(y, np.sort(np.asarray(x)))
    assert argsort(x, method="host").dtype == jnp.int64


def test_auto_picks_host_for_large_cpu_arrays(monkeypatch):
    import ulam.sorting as S

    assert jax.default_backend() == "cpu"
    monkeypatch.setattr(S, "_cpus_available", lambda: 2)
    assert sort_method(jnp.zeros(CPU_HOST_SORT_MIN_SIZE)) == "host"
    assert sort_method(jnp.zeros(CPU_HOST_SORT_MIN_SIZE - 1)) == "xla"
    assert sort_method(jnp.zeros(4096, jnp.bfloat16)) == "xla"
    # One CPU: the host callback can wait forever on XLA's only worker thread.
    monkeypatch.setattr(S, "_cpus_available", lambda: 1)
    assert sort_method(jnp.zeros(4096)) == "xla"


_ONE_CPU_CHILD = """
import os
if hasattr(os, "sched_setaffinity"):  # Linux: confine the child to one CPU, where the deadlock lived
    os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
import jax, jax.numpy as jnp, numpy as np
from ulam.sorting import sort
a = jnp.asarray(np.random.default_rng(0).normal(size=(200, 1000)).astype(np.float32))
xla = jax.jit(lambda a: jnp.sort(a, axis=-1))
auto = jax.jit(lambda a: sort(a))
out = jax.block_until_ready((xla(a), auto(a)))  # dispatched together: hung when auto took the host path
print(bool((out[0] == out[1]).all()))
"""


def test_one_cpu_process_does_not_deadlock():
    # Where CPU affinity exists the child runs on one CPU (the case that hung); elsewhere it still
    # checks that an XLA sort and an 'auto' sort dispatched together return equal results.
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    done = subprocess.run([sys.executable, "-c", _ONE_CPU_CHILD], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "True"


def test_bad_input():
    with pytest.raises(ValueError, match="scalar"):
        sort(jnp.float32(1.0))
    with pytest.raises(TypeError, match="complex"):
        sort(jnp.ones(3, jnp.complex64))
    with pytest.raises(ValueError, match="axis: 2 is out of range"):
        sort(jnp.ones((2, 2)), axis=2)
    with pytest.raises(ValueError, match="method: expected one of"):
        sort(jnp.ones(3), method="quick")


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(np.float32, st.integers(1, 40), elements=st.floats(-1e6, 1e6, width=32, allow_subnormal=False)))
def test_property_host_sort_is_numpy_sort(values):
    # Subnormals are excluded: XLA on CPU flushes them to zero on the way in.
    out = np.asarray(sort(jnp.asarray(values), method="host"))
    np.testing.assert_array_equal(out, np.sort(values))
    np.testing.assert_array_equal(values[np.asarray(argsort(jnp.asarray(values), method="host"))], out)


@pytest.mark.parametrize("n", [100, 2 * CPU_HOST_SORT_MIN_SIZE])
def test_hessian_vector_product_at_every_size(n, key):
    # Issue #16.11: the host sort's JVP rule called a host callback on a differentiated operand,
    # so a second derivative raised "Pure callbacks do not support JVP" at n >= 1024.
    x = jax.random.normal(key, (2, n))
    v = jax.random.normal(jax.random.fold_in(key, 1), (2, n))
    scale = jnp.arange(2.0 * n).reshape(2, n)

    def loss(sorter):
        return lambda z: jnp.sum(scale * sorter(z) ** 3)

    ref = jax.jvp(jax.grad(loss(jnp.sort)), (x,), (v,))[1]
    fwd_over_rev = jax.jit(lambda x, v: jax.jvp(jax.grad(loss(sort)), (x,), (v,))[1])(x, v)
    rev_over_rev = jax.grad(lambda z: jnp.vdot(jax.grad(loss(sort))(z), v))(x)
    np.testing.assert_allclose(fwd_over_rev, ref, rtol=1e-6)
    np.testing.assert_allclose(rev_over_rev, ref, rtol=1e-5)


@pytest.mark.parametrize("n", [100, 2 * CPU_HOST_SORT_MIN_SIZE])
def test_jax_export_at_every_size(n, key):
    # Issue #16.11: an exported function cannot hold a host callback; exporting lowers to XLA's sort.
    x = jax.random.normal(key, (3, n))

    def fn(z):
        return sort(z), argsort(z), jax.grad(lambda w: jnp.sum(jnp.arange(n) * sort(w)))(z)

    exported = jax.export.export(jax.jit(fn))(x)
    assert "callback" not in exported.mlir_module()
    values, order, grad = exported.call(x)
    np.testing.assert_array_equal(values, jnp.sort(x))
    np.testing.assert_array_equal(order, jnp.argsort(x, stable=True))
    np.testing.assert_array_equal(grad, jax.grad(lambda w: jnp.sum(jnp.arange(n) * jnp.sort(w)))(x))
    # Restored from bytes, as a user would ship it (serialization needs flatbuffers, in the test extra).
    restored = jax.export.deserialize(exported.serialize())
    np.testing.assert_array_equal(restored.call(x)[0], values)


def test_host_path_still_used_under_jit_on_cpu(monkeypatch):
    import ulam.sorting as S

    monkeypatch.setattr(S, "_cpus_available", lambda: 2)
    x = jnp.zeros(2 * CPU_HOST_SORT_MIN_SIZE)
    assert "callback" in jax.jit(sort).lower(x).as_text()


def test_vmap_over_the_sorted_axis_position(key):
    # The batch axis may sit where the sort axis is counted from; the primitive moves it first.
    x = jax.random.normal(key, (2 * CPU_HOST_SORT_MIN_SIZE, 3))
    out = jax.vmap(lambda z: sort(z, method="host"), in_axes=1, out_axes=1)(x)
    np.testing.assert_array_equal(out, jnp.sort(x, axis=0))
