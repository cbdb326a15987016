"""A NumPyro model wherever a log-density is accepted; ArviZ 1.x output (DataTree) with log-likelihood."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ulam import mcmc

numpyro = pytest.importorskip("numpyro")
dist = pytest.importorskip("numpyro.distributions")
from ulam.numpyro_model import numpyro_model  # noqa: E402

Y1 = jnp.array([0.5, 1.2, -0.3, 2.0, 0.8, 1.1])
Y2 = jnp.array([0.9, -1.4, 0.3, 2.2, -0.6, 0.1, 1.5, -0.8])
A, B = 2.0, 1.0


def model(y1=None, y2=None):
    # Two conjugate pieces with closed-form posteriors: mu | y1 is normal, tau | y2 is Gamma.
    mu = numpyro.sample("mu", dist.Normal(0.0, 10.0))
    tau = numpyro.sample("tau", dist.Gamma(A, B))  # positive: sampled unconstrained as log tau
    numpyro.sample("y1", dist.Normal(mu, 1.0), obs=y1)
    numpyro.sample("y2", dist.Normal(0.0, 1.0 / jnp.sqrt(tau)), obs=y2)


def _posterior_means():
    var_mu = 1.0 / (1.0 / 100.0 + len(Y1))
    mean_mu = var_mu * float(jnp.sum(Y1))
    a, b = A + len(Y2) / 2, B + float(jnp.sum(Y2**2)) / 2
    return np.array([mean_mu, a / b, mean_mu**2 + var_mu, a * (a + 1) / b**2])


@pytest.fixture(scope="module")
def result():
    target = numpyro_model(model, y1=Y1, y2=Y2)
    return mcmc.sample(target, jax.random.key(0), num_chains=4, num_warmup=300, num_draws=500, progress=False)


def test_numpyro_model_matches_the_closed_form_posterior(result):
    draws = result.draws
    assert set(draws) == {"mu", "tau"} and draws["tau"].shape == (4, 500)
    assert float(jnp.min(draws["tau"])) > 0  # returned in the constrained space
    est = result.expectation(lambda p: jnp.stack([p["mu"], p["tau"], p["mu"] ** 2, p["tau"] ** 2]))
    z = (np.asarray(est.mean) - _posterior_means()) / np.asarray(est.stderr)
    assert np.all(np.abs(z) < 4.0), (est, _posterior_means())
    assert list(result.summary().index) == ["mu", "tau"]


def test_to_arviz_is_a_datatree_that_loo_and_waic_accept(result):
    pytest.importorskip("arviz_base")
    arviz_stats = pytest.importorskip("arviz_stats")
    import xarray as xr

    dt = result.to_arviz(dims={"y1": ["obs1"], "y2": ["obs2"]}, coords={"obs1": np.arange(6), "obs2": np.arange(8)})
    assert isinstance(dt, xr.DataTree)
    for group in ("posterior", "sample_stats", "log_likelihood", "observed_data"):
        assert group in dt.children, group
    stats = dt["sample_stats"]
    for name in ("lp", "diverging", "tree_depth", "energy", "step_size", "n_steps"):
        assert stats[name].shape == (4, 500), name
    assert int(stats["diverging"].sum()) == int(np.sum(result.num_divergent))
    assert dt["log_likelihood"]["y1"].dims == ("chain", "draw", "obs1")
    np.testing.assert_allclose(dt["observed_data"]["y2"].values, np.asarray(Y2))
    # The pointwise log-likelihood is right: at each draw, sum_i log N(y1_i; mu, 1).
    mu = dt["posterior"]["mu"].values
    expected = -0.5 * (np.asarray(Y1)[None, None, :] - mu[..., None]) ** 2 - 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(dt["log_likelihood"]["y1"].values, expected, rtol=1e-4, atol=1e-5)
    loo = arviz_stats.loo(dt, var_name="y1")
    assert np.isfinite(loo.elpd) and loo.n_data_points == 6
    # arviz-stats 0.8 (the ArviZ 1.x stack) has no WAIC; ArviZ 0.x reads the same DataTree.
    az = pytest.importorskip("arviz")
    if hasattr(az, "InferenceData") and hasattr(az.InferenceData, "from_datatree"):
        waic = az.waic(az.InferenceData.from_datatree(dt), var_name="y1")
        assert abs(float(waic.elpd_waic) - float(loo.elpd)) < 1.0


def test_to_arviz_with_a_user_log_likelihood():
    pytest.importorskip("arviz_base")
    arviz_stats = pytest.importorskip("arviz_stats")
    y = jnp.array([0.3, -0.2, 1.1, 0.4])
    loglik = lambda p: -0.5 * (y - p["m"]) ** 2  # pointwise, one value per observation
    logp = lambda p: jnp.sum(loglik(p)) - 0.5 * p["m"] ** 2 / 100.0
    res = mcmc.sample(logp, jax.random.key(1), {"m": jnp.zeros(2)}, num_chains=2, num_warmup=200, num_draws=200,
                      progress=False)
    dt = res.to_arviz(log_likelihood=loglik, observed_data={"obs": y})
    assert dt["log_likelihood"]["obs"].shape == (2, 200, 4)
    assert np.isfinite(arviz_stats.loo(dt).elpd)
