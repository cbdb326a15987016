"""Shared test set-up: one XLA thread per test worker, fixed keys, float64 on request."""

import os

# pytest-xdist runs two workers on two cores; one intra-op thread each avoids
# oversubscription (measured up to 2.5x slower otherwise on these machines).
os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402


@pytest.fixture
def key():
    return jax.random.key(20261125)


@pytest.fixture
def x64():
    """Run the test body with 64-bit floats (for comparisons to 1e-6 and tighter)."""
    with jax.enable_x64(True):
        yield
