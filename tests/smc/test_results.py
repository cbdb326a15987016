"""Every SMC result prints in under 15 lines, has a .summary() table, and reports ess only where it means something."""

import jax
import jax.numpy as jnp
import pandas as pd
import pytest

from ulam.smc import (
    Bootstrap,
    LinearGaussianModel,
    kalman_filter,
    linear_gaussian_ssm,
    paris,
    ppg,
    rts_smoother,
    run_filter,
    simulate,
    tempered_smc,
)

LG = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
SSM = linear_gaussian_ssm(LG)
_, Y = simulate(jax.random.key(0), SSM, 10)
ADD = lambda xp, x, y: xp * x  # noqa: E731


def _results():
    k = jax.random.key(1)
    f = run_filter(k, Bootstrap(SSM), Y, 64, keep_history=True)
    return {
        "filter": f,
        "history": f.history,
        "paris": paris(k, SSM, Y, 32, ADD),
        "paris_replicates": paris(k, SSM, Y, 32, ADD, num_replicates=3),
        "ppg": ppg(k, SSM, Y, 16, ADD, num_iterations=3, burn_in=1),
        "kalman": kalman_filter(LG, Y),
        "rts": rts_smoother(LG, Y),
        "tempered": tempered_smc(
            k, lambda x: -0.5 * jnp.sum(x**2), lambda x: -0.5 * jnp.sum((x - 1.0) ** 2), jax.random.normal(k, (64, 2)),
            max_steps=10, num_mcmc_steps=1,
        ),
    }


@pytest.fixture(scope="module")
def results():
    return _results()


@pytest.mark.parametrize("name", ["filter", "history", "paris", "paris_replicates", "ppg", "kalman", "rts", "tempered"])
def test_repr_is_short(results, name):
    text = repr(results[name])
    assert len(text.splitlines()) < 15, text
    assert "Array(" not in text and "[[" not in text


@pytest.mark.parametrize("name", ["filter", "paris", "paris_replicates", "ppg", "kalman", "rts", "tempered"])
def test_summary_is_a_table(results, name):
    df = results[name].summary()
    assert isinstance(df, pd.DataFrame) and len(df) >= 1
    text = results[name].summary(plain=True)
    assert isinstance(text, str) and len(text.splitlines()) == len(df) + 1


def test_filter_summary_values(results):
    f = results["filter"]
    df = f.summary().set_index("quantity")
    assert df.loc["log_likelihood", "value"] == pytest.approx(float(f.log_likelihood.mean))
    assert df.loc["min ess", "value"] == pytest.approx(float(jnp.min(f.ess)))


@pytest.mark.parametrize("name", ["filter", "paris", "paris_replicates", "tempered"])
def test_no_meaningless_ess(results, name):
    r = results[name]
    est = {"filter": lambda: r.log_likelihood, "tempered": lambda: r.log_normalizer}.get(name, lambda: r.estimate)()
    assert est.ess is None
    if name == "filter":
        assert r.filtering_mean.ess is None
