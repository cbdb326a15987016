"""Statistical assertions: turn a Monte Carlo claim into a test that can fail.

Every test in ulam that checks an estimator uses these helpers with a fixed key,
so a biased estimator fails deterministically while a correct one passes with
known probability (``z = 4`` per coordinate: a false alarm about once in 15,800).
:func:`assert_jit_vmap_deterministic` checks the three rules every estimator and kernel
keeps (same key same bits, jit, vmap over keys); :func:`count_compilations` counts XLA
compilations, for "nothing recompiles on a second call" tests.

Example:
  >>> import jax, numpyro.distributions as dist
  >>> from ulam import monte_carlo
  >>> from ulam.testing import assert_within_stderr
  >>> est = monte_carlo(lambda x: x**2, dist.Normal(0.0, 1.0), jax.random.key(0), 10_000)
  >>> assert_within_stderr(est, 1.0)
"""

from __future__ import annotations

import contextlib
from typing import Callable

import jax
import jax.monitoring
import numpy as np

from ulam import checks
from ulam.estimate import Estimate

__all__ = [
    "assert_within_stderr",
    "assert_variance_reduced",
    "assert_unbiased",
    "assert_close",
    "variance_ratio",
    "z_for_family",
    "count_compilations",
    "assert_jit_vmap_deterministic",
]

_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"  # one event per XLA compilation


def _leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x, dtype=float) for x in jax.tree_util.tree_leaves(tree)]


def assert_within_stderr(estimate: Estimate, truth, z: float = 4.0, *, extra_bias=0.0, msg: str = "") -> None:
    r"""Assert :math:`|\hat\mu - \mu| \le z\,\widehat{\mathrm{se}} + b` for every coordinate.

    Args:
      estimate: the :class:`Estimate` under test.
      truth: the exact value (same structure as ``estimate.mean``, or broadcastable).
      z: how many standard errors to allow. The default 4 keeps false alarms rare
        across a large suite; use 3 where an issue asks for it.
      extra_bias: a known, deterministic bias allowance ``b`` (e.g. the epsilon-shell
        bias of walk-on-spheres, or a discretisation error), added to the bound.
      msg: prefix for the failure message.

    Example:
      >>> from ulam import Estimate
      >>> assert_within_stderr(Estimate(1.02, 0.01, 100), 1.0)      # 2 standard errors: passes
      >>> assert_within_stderr(Estimate(1.10, 0.01, 100), 1.0)      # doctest: +ELLIPSIS
      Traceback (most recent call last):
      ...
      AssertionError: estimate 1.1 ± 0.01 is 10.00 standard errors from the truth 1 ...
    """
    means, errs = _leaves(estimate.mean), _leaves(estimate.stderr)
    truths = _leaves(truth) if jax.tree_util.tree_leaves(truth) else [np.asarray(truth, dtype=float)]
    if len(truths) == 1 and len(means) > 1:
        truths = truths * len(means)
    bias = _leaves(extra_bias) if jax.tree_util.tree_leaves(extra_bias) else [np.asarray(0.0)]
    if len(bias) == 1 and len(means) > 1:
        bias = bias * len(means)
    for m, s, t, b in zip(means, errs, truths, bias):
        if not (np.all(np.isfinite(m)) and np.all(np.isfinite(s))):
            raise AssertionError(f"{msg}estimate is not finite: mean={m}, stderr={s}")
        dev = np.abs(m - t)
        bound = z * s + b
        bad = dev > bound
        if np.any(bad):
            worst = int(np.argmax(np.ravel(dev - bound)))
            raise AssertionError(
                f"{msg}estimate {np.ravel(m)[worst]:.6g} ± {np.ravel(s)[worst]:.3g} is "
                f"{np.ravel(dev)[worst] / max(np.ravel(s)[worst], 1e-300):.2f} standard errors from the truth "
                f"{np.ravel(np.broadcast_to(t, m.shape))[worst]:.6g} (allowed z={z}, bias allowance "
                f"{np.ravel(np.broadcast_to(b, m.shape))[worst]:.3g}); {int(np.sum(bad))} of {bad.size} coordinates fail"
            )


def variance_ratio(baseline: Estimate, improved: Estimate) -> float:
    r"""Variance-reduction factor at equal cost: :math:`\mathrm{se}_0^2 n_0 / (\mathrm{se}_1^2 n_1)`.

    Both variances are scaled to one draw so that estimators run with different
    ``n`` compare fairly; for array-valued estimates the smallest coordinate
    ratio is returned.

    Example:
      >>> from ulam import Estimate
      >>> variance_ratio(Estimate(0.0, 0.2, 100), Estimate(0.0, 0.1, 100))
      4.0
    """
    ratios = []
    for s0, s1 in zip(_leaves(baseline.stderr), _leaves(improved.stderr)):
        v0 = s0**2 * float(np.asarray(baseline.n))
        v1 = s1**2 * float(np.asarray(improved.n))
        ratios.append(np.min(v0 / np.maximum(v1, 1e-300)))
    return float(min(ratios))


def assert_variance_reduced(baseline: Estimate, improved: Estimate, factor: float = 1.0, *, msg: str = "") -> None:
    """Assert that ``improved`` has at least ``factor`` times lower per-draw variance than ``baseline``.

    Example:
      >>> from ulam import Estimate
      >>> assert_variance_reduced(Estimate(0.0, 0.2, 100), Estimate(0.0, 0.1, 100), factor=3.0)
    """
    ratio = variance_ratio(baseline, improved)
    if not ratio >= factor:
        raise AssertionError(f"{msg}variance reduced only {ratio:.3g}x, expected at least {factor:.3g}x")


def assert_unbiased(
    estimator: Callable[[jax.Array], Estimate],
    key: jax.Array,
    truth,
    num_replicates: int = 64,
    z: float = 4.0,
    *,
    msg: str = "",
) -> Estimate:
    """Run ``estimator(key_i)`` on independent keys and test the average against ``truth``.

    The standard error of the average comes from the spread of the replicates, not
    from the estimator's own ``stderr``, so this test also catches an estimator
    whose reported standard error is wrong. Returns the pooled :class:`Estimate`.

    Example:
      >>> import jax
      >>> from ulam import Estimate
      >>> pooled = assert_unbiased(lambda k: Estimate.from_samples(jax.random.normal(k, (16,))),
      ...                          jax.random.key(0), 0.0, num_replicates=32)
      >>> pooled.n
      32
    """
    checks.prng_key(key)
    checks.count("num_replicates", num_replicates, 2)
    keys = jax.random.split(key, num_replicates)
    means = jax.vmap(lambda k: estimator(k).mean)(keys)
    pooled = Estimate.from_samples(means)
    assert_within_stderr(pooled, truth, z=z, msg=msg)
    return pooled


def assert_close(actual, desired, rtol: float = 1e-6, atol: float = 0.0, *, msg: str = "") -> None:
    """Deterministic closeness for every leaf of two pytrees (``numpy.testing`` semantics).

    Example:
      >>> assert_close({"a": 1.0, "b": [2.0]}, {"a": 1.0 + 1e-9, "b": [2.0]})
    """
    for a, d in zip(_leaves(actual), _leaves(desired)):
        np.testing.assert_allclose(a, d, rtol=rtol, atol=atol, err_msg=msg)


def z_for_family(num_tests: int, false_alarm: float = 1e-4) -> float:
    """Two-sided z that keeps the family-wise false-alarm rate at ``false_alarm`` (Bonferroni).

    Example:
      >>> round(z_for_family(1, 0.05), 2)
      1.96
    """
    from scipy.stats import norm

    return float(norm.ppf(1.0 - false_alarm / (2.0 * max(1, num_tests))))



class CompilationCount:
    """The number of XLA compilations seen so far inside a :func:`count_compilations` block."""

    def __init__(self) -> None:
        self.count = 0

    def __repr__(self) -> str:
        return f"CompilationCount({self.count})"


@contextlib.contextmanager
def count_compilations():
    """Count XLA backend compilations inside a ``with`` block (``jax.monitoring`` compile events).

    What a "nothing recompiles on a second call" test needs (:mod:`ulam.jit_cache`).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> f = jax.jit(lambda x: x + 1)
      >>> _ = f(jnp.ones(3))
      >>> with count_compilations() as compiled:
      ...     _ = f(jnp.zeros(3))       # same shapes: no compilation
      >>> compiled.count
      0
    """
    counter = CompilationCount()

    def listener(event: str, duration: float, **kwargs) -> None:
        if event == _COMPILE_EVENT:
            counter.count += 1

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield counter
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def assert_jit_vmap_deterministic(
    fn: Callable[[jax.Array], object], key: jax.Array, *, num_replicates: int = 3, rtol: float = 1e-5, atol: float = 0.0,
    msg: str = "",
) -> None:
    """Check an estimator or kernel ``fn(key) -> pytree`` under the three rules every ulam routine keeps.

    1. same key, same bits: ``fn(key)`` twice gives identical leaves;
    2. ``jax.jit(fn)(key)`` equals ``fn(key)`` (to ``rtol``/``atol``: XLA may fuse differently);
    3. ``jax.vmap(fn)`` over ``num_replicates`` split keys equals ``fn`` on each key, and different
       keys give different results.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam import Estimate
      >>> assert_jit_vmap_deterministic(lambda k: Estimate.from_samples(jax.random.normal(k, (64,))),
      ...                               jax.random.key(0))
    """
    first, again = fn(key), fn(key)
    for a, b in zip(_leaves(first), _leaves(again)):
        np.testing.assert_array_equal(a, b, err_msg=f"{msg}same key gave different results")
    jitted = jax.jit(fn)(key)
    assert_close(jitted, first, rtol=rtol, atol=atol, msg=f"{msg}jit(fn)(key) differs from fn(key)")
    keys = jax.random.split(key, num_replicates)
    batched = jax.vmap(fn)(keys)
    for i in range(num_replicates):
        one = fn(keys[i])
        picked = jax.tree_util.tree_map(lambda x: x[i], batched)
        assert_close(picked, one, rtol=rtol, atol=atol, msg=f"{msg}vmap(fn)(keys)[{i}] differs from fn(keys[{i}])")
    means = [np.concatenate([np.ravel(x) for x in _leaves(jax.tree_util.tree_map(lambda x: x[i], batched))])
             for i in range(num_replicates)]
    if num_replicates > 1 and all(np.array_equal(means[0], m) for m in means[1:]):
        raise AssertionError(f"{msg}different keys gave identical results: is the key used?")
