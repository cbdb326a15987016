"""The multi-chain driver: moments within MCSE, R-hat, adaptation, caching, streaming, checkpoints."""

import importlib.util
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from ulam import mcmc
from ulam.mcmc import driver
from ulam.testing import assert_within_stderr

_spec = importlib.util.spec_from_file_location("mcmc_targets", pathlib.Path(__file__).with_name("targets.py"))
T = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(T)

KEY = jax.random.key(7)


def _x0(num_chains, dim=2, seed=0):
    return jax.random.normal(jax.random.key(seed), (num_chains, dim))


@pytest.fixture(scope="module")
def nuts_banana():
    return mcmc.sample(T.banana_logdensity, KEY, _x0(4), num_warmup=400, num_draws=1000)


def test_nuts_banana_moments_and_rhat(nuts_banana):
    res = nuts_banana
    assert res.flat_draws.shape == (4, 1000, 2)
    est = res.expectation(T.banana_stats)
    assert_within_stderr(est, T.BANANA_TRUTH, z=4.0)
    summary = res.summary()
    assert np.all(summary["r_hat"] < 1.01), summary
    assert np.all(summary["ess_bulk"] > 400), summary
    # The banana's curvature varies, so a handful of divergences can occur; not more than 1%.
    assert int(np.sum(res.num_divergent)) <= 40
    # Dual averaging hits its target on average (Stan's statistic, target 0.8).
    assert 0.7 < float(np.mean(res.stats["acceptance_rate"])) < 0.97


def test_estimate_stderr_is_the_mcse(nuts_banana):
    est = nuts_banana.expectation()
    s = nuts_banana.summary()
    np.testing.assert_allclose(np.asarray(est.stderr), s["mcse_mean"], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(est.mean), s["mean"], rtol=1e-5, atol=1e-7)


def test_second_call_compiles_nothing_and_same_key_same_draws(nuts_banana):
    sampler = mcmc.Sampler(T.banana_logdensity, num_warmup=400, num_draws=1000)
    sampler.init(KEY, _x0(4))
    program = driver._program(sampler.cfg)  # the cached runner of the fixture's call
    compiled_before = program._cache_size()
    programs_before = driver._program.cache_info().currsize
    assert compiled_before >= 1
    again = mcmc.sample(T.banana_logdensity, KEY, _x0(4), num_warmup=400, num_draws=1000)
    assert program._cache_size() == compiled_before
    assert driver._program.cache_info().currsize == programs_before
    np.testing.assert_array_equal(again.flat_draws, nuts_banana.flat_draws)


def test_to_arviz(nuts_banana):
    idata = nuts_banana.to_arviz()
    assert idata.posterior["x"].shape == (4, 1000, 2)
    assert int(idata.sample_stats["diverging"].sum()) == int(np.sum(nuts_banana.num_divergent))
    assert "tree_depth" in idata.sample_stats


@pytest.mark.slow
def test_mala_pooled_dense_correlated_gaussian():
    res = mcmc.sample(T.gauss_logdensity, KEY, _x0(4), kernel="mala", metric="dense", adapt="pooled",
        num_warmup=600, num_draws=3000,
    )
    # Pooled adaptation: one step size and one metric for every chain.
    assert np.all(res.step_size == res.step_size[0])
    np.testing.assert_allclose(res.inverse_mass_matrix[0], T.COV, rtol=0.5, atol=0.3)
    assert_within_stderr(res.expectation(T.gauss_stats), T.GAUSS_TRUTH, z=4.0)
    assert np.all(res.summary()["r_hat"] < 1.01)


@pytest.mark.slow
def test_hmc_and_rwm_on_banana():
    for kernel in ("hmc", "rwm"):
        res = mcmc.sample(T.banana_logdensity, KEY, _x0(4), num_warmup=500,
                          num_draws=4000 if kernel == "rwm" else 1500,
                          kernel=mcmc.hmc_kernel(num_integration_steps=8) if kernel == "hmc" else kernel,
                          adapt="per_chain")
        assert len(np.unique(res.step_size)) == 4, "per-chain adaptation: each chain its own step size"
        assert_within_stderr(res.expectation(T.banana_stats), T.BANANA_TRUTH, z=4.0, msg=f"{kernel}: ")
        assert np.all(res.summary()["r_hat"] < 1.01), kernel


def test_thinning_and_custom_kernel_elliptical_slice():
    y = jnp.array([1.0, -0.5])
    loglik = lambda x: -0.5 * jnp.sum((y - x) ** 2) / 0.25
    kernel = mcmc.elliptical_slice_kernel(loglik, 0.0, jnp.ones(2))
    res = mcmc.sample(kernel, KEY, _x0(4), num_warmup=100, num_draws=1000, thin=2)
    assert res.flat_draws.shape == (4, 1000, 2)
    est = res.expectation(lambda x: jnp.concatenate([x, (x - y / 1.25) ** 2]))
    assert_within_stderr(est, np.array([0.8, -0.4, 0.2, 0.2]), z=4.0)


@pytest.fixture(scope="module")
def rwm_sampler():
    return mcmc.Sampler(T.gauss_logdensity, kernel="rwm", num_chains=3, num_warmup=150, num_draws=300, thin=2,
                        chunk_size=64)


def test_checkpoint_resume_is_bit_identical(rwm_sampler, tmp_path):
    s = rwm_sampler
    full = s.run(s.init(KEY, _x0(3)))
    part = s.run(s.init(KEY, _x0(3)), num_steps=97)  # stops inside warm-up
    mcmc.save_checkpoint(tmp_path / "run.pkl", part)
    part = s.run(mcmc.load_checkpoint(tmp_path / "run.pkl", s.init(KEY, _x0(3))), num_steps=333)
    mcmc.save_checkpoint(tmp_path / "run.pkl", part)
    resumed = s.run(mcmc.load_checkpoint(tmp_path / "run.pkl", s.init(KEY, _x0(3))))
    a, b = s.result(full), s.result(resumed)
    np.testing.assert_array_equal(a.flat_draws, b.flat_draws)
    for k in a.stats:
        np.testing.assert_array_equal(a.stats[k], b.stats[k])
    np.testing.assert_array_equal(a.step_size, b.step_size)


def test_checkpoint_with_other_settings_is_refused(rwm_sampler, tmp_path):
    s = rwm_sampler
    mcmc.save_checkpoint(tmp_path / "run.pkl", s.run(s.init(KEY, _x0(3)), num_steps=10))
    other = mcmc.Sampler(T.gauss_logdensity, kernel="rwm", num_chains=3, num_warmup=150, num_draws=301, thin=2)
    with pytest.raises(ValueError, match="settings differs"):
        mcmc.load_checkpoint(tmp_path / "run.pkl", other.init(KEY, _x0(3)))


def test_sample_checkpoint_file_resumes(tmp_path):
    path = tmp_path / "ck.pkl"
    kw = dict(kernel="rwm", num_chains=3, num_warmup=150, num_draws=300, thin=2)
    a = mcmc.sample(T.gauss_logdensity, KEY, _x0(3), checkpoint=mcmc.Checkpoint(path, every=128), **kw)
    assert path.exists()
    # Calling again finds the finished run in the file and returns the same draws without sampling.
    b = mcmc.sample(T.gauss_logdensity, KEY, _x0(3), checkpoint=mcmc.Checkpoint(path, every=128), **kw)
    np.testing.assert_array_equal(a.flat_draws, b.flat_draws)


def test_streaming_matches_full_draws(rwm_sampler):
    # The stored-draws run reuses the compiled program of the rwm_sampler fixture (same settings).
    kw = dict(kernel="rwm", num_chains=3, num_warmup=150, num_draws=300, thin=2)
    full = rwm_sampler.result(rwm_sampler.run(rwm_sampler.init(KEY, _x0(3))))
    stream = mcmc.sample(T.gauss_logdensity, KEY, _x0(3), stream=mcmc.Streaming(num_batches=16), **kw)
    a, b = full.summary(), stream.summary()
    # Same key, same chains: the running statistics are those of the stored draws.
    np.testing.assert_allclose(b["mean"], a["mean"], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(b["sd"], a["sd"], rtol=1e-4)
    assert np.all(np.abs(b["r_hat"] - a["r_hat"]) < 0.02)
    ratio = b["ess_bulk"] / a["ess_bulk"]
    assert np.all((ratio > 0.4) & (ratio < 2.5)), ratio
    est = stream.expectation()
    assert_within_stderr(est, np.asarray(T.MU), z=4.0)


def test_streaming_statistics_have_a_size_independent_of_chain_length():
    sizes = []
    for n in (64, 6400):
        res = mcmc.sample(T.gauss_logdensity, KEY, _x0(2), kernel="rwm", num_chains=2, num_warmup=0,
                          step_size=1.0, num_draws=n, stream=mcmc.Streaming(num_batches=8))
        sizes.append(sum(np.asarray(x).nbytes for x in jax.tree_util.tree_leaves(res.stats)))
    assert sizes[0] == sizes[1]


_MEMORY_CHILD = """
import sys
import jax, jax.numpy as jnp
from ulam import mcmc
n, mode = int(sys.argv[1]), sys.argv[2]
res = mcmc.sample(lambda x: -0.5 * jnp.sum(x ** 2), jax.random.key(0), jnp.zeros((4, 50)), kernel="rwm",
                  num_chains=4, num_warmup=0, step_size=0.3, num_draws=n, stream=mode == "stream", progress=False)
res.summary()
print([l for l in open("/proc/self/status") if l.startswith("VmHWM")][0].split()[1])
"""


@pytest.mark.slow
@pytest.mark.skipif(not pathlib.Path("/proc/self/status").exists(), reason="VmHWM is read from /proc (Linux)")
def test_streaming_peak_memory_is_flat_in_the_number_of_draws():
    """Peak resident memory (VmHWM) of the process that sampled, for 10^3, 10^4, 10^5 draws per chain."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))

    def peak_mb(n, mode):
        out = subprocess.run([sys.executable, "-c", _MEMORY_CHILD, str(n), mode], capture_output=True, text=True,
                             check=True, env=env)
        return int(out.stdout.split()[-1]) / 1024

    stream = [peak_mb(n, "stream") for n in (1_000, 10_000, 100_000)]
    # 4 chains x 10^5 draws x 50 coordinates x 4 B = 80 MB of draws if they were kept: flat means far less growth.
    assert max(stream) - min(stream) < 20.0, stream
    # The control: storing the draws does grow (the measurement can see 80 MB).
    stored = peak_mb(100_000, "store")
    assert stored - stream[-1] > 60.0, (stream, stored)


def test_progress_bar_is_fed_from_inside_jit(monkeypatch):
    seen = []
    monkeypatch.setattr(driver._Progress, "update", lambda self, t: seen.append(t))
    mcmc.sample(T.gauss_logdensity, KEY, _x0(2), kernel="rwm", num_chains=2, num_warmup=40, num_draws=60,
                progress=10)
    jax.effects_barrier()
    assert sorted(seen) == list(range(10, 101, 10))
