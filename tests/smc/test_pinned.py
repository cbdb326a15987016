"""Same key -> same bits: the SMC outputs pinned before the forward scan was restructured.

The reference arrays in ``data/pinned.npz`` were written by this file (``python
tests/smc/test_pinned.py --write``) from the code before the restructuring (commit
0375e9e); every algorithm whose law did not change must reproduce them bit for bit on
the same platform (XLA CPU, float32).
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ulam.smc import (
    Bootstrap,
    LinearGaussianModel,
    conditional_smc,
    linear_gaussian_ssm,
    markov_score_climbing,
    paris,
    particle_gibbs,
    ppg,
    run_filter,
    score_ascent,
    simulate,
)

DATA = Path(__file__).parent / "data" / "pinned.npz"
LG = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
SSM = linear_gaussian_ssm(LG)


def _y():
    return simulate(jax.random.key(0), SSM, 12)[1]


def outputs() -> dict:
    y = _y()
    k = jax.random.key(7)
    out = {}
    f = run_filter(k, Bootstrap(SSM), y, 32, keep_history=True)
    out["filter_ll"] = f.log_likelihood.mean
    out["filter_ll_se"] = f.log_likelihood.stderr
    out["filter_mean"] = f.filtering_mean.mean
    out["filter_mean_se"] = f.filtering_mean.stderr
    out["filter_hist_x"] = f.history.particles
    out["filter_hist_a"] = f.history.ancestors
    f2 = run_filter(k, Bootstrap(SSM), y, 32, resampling="multinomial", ess_threshold=1.0, filtering_stderr=False)
    out["filter2_ll"] = f2.log_likelihood.mean
    out["filter2_ess"] = f2.ess
    add = lambda xp, x, yt: xp * x  # noqa: E731
    p = paris(k, SSM, y, 32, add, keep_history=True, keep_backward=True)
    out["paris_mean"] = p.estimate.mean
    out["paris_tau"] = p.statistics
    out["paris_back"] = p.backward
    out["paris_lagged"] = p.estimate.info["single_run_stderr_lagged"]
    p_big = paris(k, SSM, y, 300, add, initial_fn=lambda x0, y0: x0**2, num_replicates=2)
    out["paris_hybrid_mean"] = p_big.estimate.mean
    out["paris_hybrid_se"] = p_big.estimate.stderr
    ref = simulate(jax.random.key(3), SSM, 12)[0]
    for s in ("genealogy", "ancestor", "backward"):
        out[f"csmc_{s}"] = conditional_smc(k, SSM, y, ref, 16, sampler=s)
    out["pgibbs"] = particle_gibbs(k, SSM, y, 16, 3)
    g = ppg(k, SSM, y, 16, add, num_iterations=4, burn_in=1)
    out["ppg_iterates"] = g.iterates
    out["ppg_reference"] = g.reference

    def model_fn(a):
        return linear_gaussian_ssm(LinearGaussianModel.scalar(a, 0.6, 1.0, 1.0, p0=1.0))

    for est in ("ppg", "paris"):
        r = score_ascent(k, model_fn, 0.5, y, 16, num_steps=3, step_size=0.01, estimator=est)
        out[f"score_{est}"] = r.params
    lq0 = lambda lam, x0, y0: -0.5 * (x0 - lam) ** 2  # noqa: E731
    lqt = lambda lam, xp, x, yt: -0.5 * (x - lam * xp) ** 2  # noqa: E731
    m = markov_score_climbing(k, SSM, lq0, lqt, jnp.asarray(0.3), y, 16, num_steps=3, step_size=0.01)
    out["msc"] = m.params
    return {name: np.asarray(v) for name, v in out.items()}


@pytest.fixture(scope="module")
def current():
    return outputs()


@pytest.mark.slow
def test_same_key_same_bits(current):
    pinned = np.load(DATA)
    assert set(pinned.files) == set(current)
    for name in pinned.files:
        np.testing.assert_array_equal(current[name], pinned[name], err_msg=name)


if __name__ == "__main__" and "--write" in sys.argv:
    np.savez(DATA, **outputs())
