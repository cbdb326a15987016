"""vi.fit on the harness training loop: exact budgets, non-finite stops, the final objective as an
Estimate, the still-improving warning, short repr/summary, checkpoint/resume."""

import math
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
import pytest

from ulam import harness, vi

TARGET = lambda z, th: dist.Normal(3.0, 1.0).log_prob(z)  # noqa: E731
GUIDE = lambda phi: dist.Normal(phi[0], jnp.exp(phi[1]))  # noqa: E731
OBJ = vi.elbo(TARGET, GUIDE)
P0 = ((), jnp.zeros(2))


def _exact_elbo(m, log_s):
    s2 = math.exp(2 * log_s)
    return -0.5 * math.log(2 * math.pi) - 0.5 * ((m - 3.0) ** 2 + s2) + 0.5 * math.log(2 * math.pi * math.e * s2)


@pytest.mark.filterwarnings("ignore:fit. the elbo was still improving")
def test_budget_is_exact_and_keys_are_a_prefix(key):
    short = vi.fit(OBJ, P0, key, num_steps=25, optimizer=optax.adam(0.05), num_samples=4, progress=False)
    long = vi.fit(OBJ, P0, key, num_steps=40, optimizer=optax.adam(0.05), num_samples=4, progress=False)
    assert short.values.shape == (25,) and short.num_steps == 25  # 25 steps, not 40
    # step t uses split(key, num_steps)[t]: the first 25 steps of both runs are the same steps
    np.testing.assert_array_equal(np.asarray(short.values), np.asarray(long.values[:25]))
    params, values, opt_state = short  # still unpacks like the old NamedTuple
    assert values.shape == (25,)


def test_final_objective_is_an_estimate_of_the_elbo(key):
    res = vi.fit(OBJ, P0, key, num_steps=300, optimizer=optax.adam(0.05), num_samples=4, progress=False,
                 num_eval_samples=512)
    m, log_s = (float(v) for v in res.params[1])
    est = res.objective
    assert est.n == 512 and float(est.stderr) > 0
    assert abs(float(est.mean) - _exact_elbo(m, log_s)) < 4 * float(est.stderr)


def test_warns_when_still_improving_and_not_when_converged(key):
    # the case: the default Adam(1e-3) leaves this toy problem far from its optimum
    msg = r"still improving.*increase num_steps \(now 1000\) or the optimizer's learning rate"
    with pytest.warns(RuntimeWarning, match=msg):
        res = vi.fit(OBJ, P0, key, num_steps=1000, num_samples=16, progress=False)
    assert res.still_improving
    with warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        res = vi.fit(OBJ, P0, key, num_steps=600, optimizer=optax.adam(0.05), num_samples=8, progress=False)
    assert not res.still_improving


def test_nan_log_joint_and_diverging_rate_stop_with_the_step(key):
    bad = vi.elbo(lambda z, th: jnp.log(z - 1e6), GUIDE)  # log of a negative: NaN from the first step
    with pytest.raises(harness.NonFiniteError, match=r"elbo: went non-finite at step 1 of 30 \(the elbo itself"):
        vi.fit(bad, P0, key, num_steps=30, progress=False)
    steep = vi.elbo(lambda z, th: -1e4 * z**4, GUIDE)
    with pytest.raises(harness.NonFiniteError, match=r"went non-finite at step \d+ of 300 .*lower the learning rate"):
        vi.fit(steep, P0, key, num_steps=300, optimizer=optax.sgd(10.0), progress=False)


def test_repr_short_and_summary(key):
    res = vi.fit(OBJ, P0, key, num_steps=50, optimizer=optax.adam(0.05), num_samples=2, progress=False)
    text = repr(res)
    assert len(text.splitlines()) < 15 and "mu" not in text and "ScaleByAdamState" not in text
    assert "50 steps" in text
    table = res.summary()
    assert list(table["num_steps"]) == [50] and {"mean", "stderr", "still_improving"} <= set(table.columns)


def test_checkpoint_resume_bit_identical_and_refuses_other_objective(key, tmp_path):
    path = tmp_path / "fit.npz"
    opt = optax.adam(0.05)
    vi.fit(OBJ, P0, key, num_steps=20, num_chunks=10, optimizer=opt, progress=False, checkpoint=path)
    resumed = vi.fit(OBJ, P0, key, num_steps=40, num_chunks=20, optimizer=opt, progress=False, checkpoint=path)
    straight = vi.fit(OBJ, P0, key, num_steps=40, num_chunks=20, optimizer=opt, progress=False)
    np.testing.assert_array_equal(np.asarray(resumed.values), np.asarray(straight.values))
    np.testing.assert_array_equal(np.asarray(resumed.params[1]), np.asarray(straight.params[1]))
    other = vi.elbo(lambda z, th: dist.Normal(2.0, 1.0).log_prob(z), GUIDE)
    with pytest.raises(harness.CheckpointMismatch, match="function:objective"):
        vi.fit(other, P0, key, num_steps=40, num_chunks=20, optimizer=opt, progress=False, checkpoint=path)
    with pytest.raises(harness.CheckpointMismatch, match="function:optimizer"):
        vi.fit(OBJ, P0, key, num_steps=40, num_chunks=20, optimizer=optax.adam(0.1), progress=False, checkpoint=path)


def test_bad_inputs(key):
    with pytest.raises(ValueError, match="num_steps: expected an integer >= 1, got 0"):
        vi.fit(OBJ, P0, key, num_steps=0)
    with pytest.raises(TypeError, match="key"):
        vi.fit(OBJ, P0, 0, num_steps=5)
    with pytest.raises(ValueError, match="num_eval_samples: expected an integer >= 2"):
        vi.fit(OBJ, P0, key, num_steps=5, num_eval_samples=1)


def test_docstring_examples():
    import doctest

    import importlib

    result = doctest.testmod(importlib.import_module("ulam.vi.fitting"), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0 and result.attempted > 0


@pytest.mark.filterwarnings("ignore:fit. the elbo was still improving")
def test_same_bits_as_before_the_harness():
    """fit(num_steps=40) ran 20 chunks of 2 steps before the move onto the harness and does now:
    the parameters are bit-identical to those pinned from the old loop (same machine)."""
    res = vi.fit(OBJ, P0, jax.random.key(0), num_steps=40, optimizer=optax.adam(0.05), num_samples=4,
                 progress=False)
    assert np.asarray(res.params[1], np.float32).view(np.uint32).tolist() == [1072124807, 3168146940]
