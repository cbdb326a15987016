"""The public surface of ulam.mcmc: input checks, kernel objects and the adaptation transform,
robust pooling, resume fingerprints, result printing, progress without recompilation."""

import ast
import importlib
import inspect
import pathlib
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import ulam.mcmc
from ulam import mcmc
from ulam.mcmc import driver

KEY = jax.random.key(5)
X0 = jnp.zeros((2, 2))


def logp(x):
    return -0.5 * jnp.sum(x**2)


# -- 1. bad inputs give clear errors ---------------------------------------------------------------


@pytest.mark.parametrize("eps", [-0.1, 0.0, float("nan")])
def test_step_size_must_be_positive(eps):
    with pytest.raises(ValueError, match=r"step_size: expected a finite number > 0, got"):
        mcmc.sample(logp, KEY, X0, num_chains=2, step_size=eps)
    s = mcmc.nuts_init(jnp.zeros(2), logp)
    with pytest.raises(ValueError, match=r"step_size: expected a finite number > 0"):
        mcmc.nuts_step(KEY, s, logp, eps)
    with pytest.raises(ValueError, match=r"step_size: expected a finite number > 0"):
        mcmc.mala_step(KEY, s, logp, eps)  # MALA with step size 0 would never move
    with pytest.raises(ValueError, match=r"step_size: expected a finite number > 0"):
        mcmc.rwm_kernel().bind(logp, eps)


@pytest.mark.parametrize(
    "inv, match",
    [
        (jnp.array([1.0, 0.0]), r"inverse_mass_matrix: expected entries that are all finite numbers > 0"),
        (jnp.array([1.0, -2.0]), r"inverse_mass_matrix: expected entries that are all finite numbers > 0"),
        (jnp.array([[1.0, 2.0], [2.0, 1.0]]), r"inverse_mass_matrix: expected a positive definite matrix"),
    ],
)
def test_inverse_mass_matrix_must_be_positive(inv, match):
    metric = "dense" if inv.ndim == 2 else "diag"
    with pytest.raises(ValueError, match=match):
        mcmc.sample(logp, KEY, X0, num_chains=2, inverse_mass_matrix=inv, metric=metric)
    with pytest.raises(ValueError, match=match):
        mcmc.metric(inv)
    s = mcmc.hmc_init(jnp.zeros(2), logp)
    with pytest.raises(ValueError, match=match):
        mcmc.hmc_step(KEY, s, logp, 0.1, inv)


def test_max_tree_depth_must_be_at_least_one():
    with pytest.raises(ValueError, match=r"max_tree_depth: expected an integer >= 1, got 0"):
        mcmc.nuts_kernel(max_tree_depth=0)
    with pytest.raises(ValueError, match=r"max_tree_depth: expected an integer >= 1, got 0"):
        mcmc.nuts_step(KEY, mcmc.nuts_init(jnp.zeros(2), logp), logp, 0.1, max_tree_depth=0)
    with pytest.raises(ValueError, match=r"max_tree_depth: expected an integer >= 1, got -1"):
        with pytest.warns(DeprecationWarning, match="kernel_options is deprecated"):
            mcmc.sample(logp, KEY, X0, num_chains=2, kernel="nuts", kernel_options={"max_tree_depth": -1})


def test_key_must_be_a_key():
    with pytest.raises(TypeError, match=r"key: expected a jax.random key, got the int 0; pass jax.random.key"):
        mcmc.sample(logp, 0, X0, num_chains=2)
    with pytest.raises(TypeError, match=r"key: expected a jax.random key"):
        mcmc.run_kernel(mcmc.rwm_kernel().bind(logp, 1.0), 3, mcmc.rwm_init(jnp.zeros(2), logp), 10)


def test_legacy_and_new_keys_give_the_same_draws():
    kw = dict(kernel="rwm", num_chains=2, num_warmup=20, num_draws=20, progress=False)
    a = mcmc.sample(logp, jax.random.key(9), X0, **kw)
    b = mcmc.sample(logp, jax.random.PRNGKey(9), X0, **kw)
    np.testing.assert_array_equal(a.flat_draws, b.flat_draws)
    # The old order (key first) works for one release, with a DeprecationWarning.
    with pytest.warns(DeprecationWarning, match="the key comes after what is sampled"):
        c = mcmc.sample(jax.random.key(9), logp, X0, **kw)
    np.testing.assert_array_equal(a.flat_draws, c.flat_draws)


def test_logdensity_output_shape_and_dtype():
    with pytest.raises(ValueError, match=r"logdensity_fn: expected a scalar log-density of shape \(\), got shape \(2,\)"):
        mcmc.sample(lambda x: -0.5 * x**2, KEY, X0, num_chains=2)
    with pytest.raises(TypeError, match=r"logdensity_fn: expected a scalar log-density to be real numbers, got dtype complex"):
        mcmc.sample(lambda x: jnp.sum(x) * 1j, KEY, X0, num_chains=2)
    with pytest.raises(ValueError, match=r"logdensity_fn: expected a scalar log-density of shape \(\)"):
        mcmc.nuts_init(jnp.zeros(2), lambda x: x)


def test_wrong_kind_of_object_lists_what_is_accepted():
    dist = pytest.importorskip("numpyro.distributions")
    with pytest.raises(TypeError, match=r"logdensity_fn: expected a function .*a distribution was given: pass its log-density"):
        mcmc.sample(dist.Normal(0.0, 1.0), KEY, X0, num_chains=2)
    with pytest.raises(ValueError, match=r"kernel: expected one of 'nuts', 'hmc', 'mala', 'rwm', 'ula', got 'nutz'; did you mean 'nuts'\?"):
        mcmc.sample(logp, KEY, X0, num_chains=2, kernel="nutz")
    with pytest.raises(TypeError, match=r"kernel: expected one of .* an MCMCKernel .*, got int"):
        mcmc.sample(logp, KEY, X0, num_chains=2, kernel=3)
    with pytest.raises(TypeError, match=r"target: expected a log-density function, a NumPyro model or a ready Kernel, got an MCMCKernel"):
        mcmc.sample(mcmc.nuts_kernel(), KEY, X0, num_chains=2)
    with pytest.raises(TypeError, match=r"kernel: expected a ready Kernel"):
        mcmc.run_kernel(mcmc.nuts_kernel(), KEY, None, 10)


# -- 3. kernels are objects; adaptation is one transform over any of them --------------------------


def test_no_function_shadows_its_module_and_all_is_a_literal():
    package = pathlib.Path(ulam.mcmc.__file__).parent
    for path in package.glob("*.py"):
        if path.stem.startswith("_"):
            continue
        module = importlib.import_module(f"ulam.mcmc.{path.stem}")
        assert getattr(ulam.mcmc, path.stem) is module, path.stem
    tree = ast.parse((package / "__init__.py").read_text())
    (assign,) = [n for n in tree.body if isinstance(n, ast.Assign) and n.targets[0].id == "__all__"]
    assert isinstance(assign.value, ast.List) and all(isinstance(e, ast.Constant) for e in assign.value.elts)
    for name in mcmc.__all__:
        obj = getattr(mcmc, name)
        assert inspect.getdoc(obj), f"{name} has no docstring"


def test_user_kernel_gets_the_same_adaptation_as_the_builtin():
    def my_mala_step(key, state, logdensity_fn, step_size, inverse_mass_matrix):
        return mcmc.mala_step(key, state, logdensity_fn, step_size, inverse_mass_matrix)

    mine = mcmc.MCMCKernel(mcmc.langevin_init, my_mala_step, target_acceptance=0.574,
                           default_step_size=mcmc.mala_kernel().default_step_size, name="my_mala")
    kw = dict(num_chains=2, num_warmup=150, num_draws=30, progress=False)
    a = mcmc.sample(logp, KEY, X0, kernel="mala", **kw)
    b = mcmc.sample(logp, KEY, X0, kernel=mine, **kw)
    np.testing.assert_array_equal(a.step_size, b.step_size)
    np.testing.assert_array_equal(a.inverse_mass_matrix, b.inverse_mass_matrix)
    np.testing.assert_array_equal(a.flat_draws, b.flat_draws)
    assert not np.allclose(a.step_size, mcmc.mala_kernel().default_step_size(2))  # it was adapted


def test_run_kernel_is_the_loop_with_fold_in_keys():
    k = mcmc.rwm_kernel().bind(logp, 0.8)
    s0 = k.init(jnp.ones(2))
    final, states, infos = mcmc.run_kernel(k, KEY, s0, 12, thin=3)
    s, manual = s0, []
    for t in range(12):
        s, _ = k.step(jax.random.fold_in(KEY, t), s)
        manual.append(s.position)
    # Same keys, same accept decisions; compiled vs eager arithmetic may differ in the last bit.
    np.testing.assert_allclose(states.position, np.stack(manual)[2::3], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(final.position, manual[-1], rtol=1e-5, atol=1e-6)
    assert infos.acceptance_rate.shape == (4,)


# -- 2. per-chain adaptation is the default; a chain far out spoils no other -----------------------


def quartic(x):
    return -0.5 * jnp.sum(x**2) - 0.25 * jnp.sum(x**4)


def _quartic_second_moment():
    x = np.linspace(-6, 6, 200001)
    w = np.exp(-0.5 * x**2 - 0.25 * x**4)
    return float(np.sum(x**2 * w) / np.sum(w))


@pytest.mark.parametrize("adapt", ["per_chain", "pooled"])
def test_one_chain_far_out_does_not_spoil_the_others(adapt):
    # Chain 0 starts at 30 where the quartic's gradient is ~10^4: MALA cannot move there. Before
    # pooling was made robust, its zero acceptance drove the pooled step size to 1e-3 and its
    # distance put Σ at ~170 for every chain.
    d = 4
    x0 = jnp.zeros((4, d)).at[0].set(30.0) + 0.1 * jax.random.normal(jax.random.key(0), (4, d))
    kw = dict(kernel="mala", num_chains=4, num_warmup=300, num_draws=400, progress=False)
    res = mcmc.sample(quartic, jax.random.key(1), x0, adapt=adapt, **kw)
    if adapt == "per_chain":
        assert mcmc.sample.__kwdefaults__["adapt"] == "per_chain"
    var = _quartic_second_moment()
    good = slice(1, 4)
    assert np.all(res.step_size[good] > 0.3), res.step_size
    inv = res.inverse_mass_matrix[good]
    assert np.all((inv > 0.5 * var) & (inv < 2.0 * var)), inv
    est = mcmc.chain_expectation(res.flat_draws[good] ** 2)
    z = (np.asarray(est.mean) - var) / np.asarray(est.stderr)
    assert np.all(np.abs(z) < 4.0), (est, var)


# -- 4. resume refuses a different run ------------------------------------------------------------


def test_resume_refuses_a_different_target_unless_forced(tmp_path):
    path = tmp_path / "run.pkl"
    y = jnp.array([1.0, 2.0])
    kw = dict(kernel="rwm", num_chains=2, num_warmup=20, num_draws=20, progress=False)
    s = mcmc.Sampler(lambda x: -0.5 * jnp.sum((x - y) ** 2), **kw)
    mcmc.save_checkpoint(path, s.run(s.init(KEY, X0), num_steps=10))
    # Same code and shapes, other data closed over: the jaxpr's constants differ.
    y2 = jnp.array([1.0, 2.5])
    other = mcmc.Sampler(lambda x: -0.5 * jnp.sum((x - y2) ** 2), **kw)
    with pytest.raises(ValueError, match=r"was written by a different run: target differs \(checkpoint jaxpr \w+, now jaxpr \w+\)"):
        mcmc.load_checkpoint(path, other.init(KEY, X0))
    with pytest.raises(ValueError, match=r"target differs"):
        mcmc.load_checkpoint(path, mcmc.Sampler(lambda x: -jnp.sum(jnp.abs(x)), **kw).init(KEY, X0))
    with pytest.raises(ValueError, match=r"kernel differs \(checkpoint rwm \{\}, now mala \{\}\); settings differs"):
        mcmc.load_checkpoint(path, mcmc.Sampler(s._cfg_kwargs["logdensity_fn"], **{**kw, "kernel": "mala"}).init(KEY, X0))
    with pytest.raises(ValueError, match=r"different run: key differs; use another path"):
        mcmc.load_checkpoint(path, s.init(jax.random.key(6), X0))
    run = mcmc.load_checkpoint(path, other.init(KEY, X0), force=True)
    assert run.t == 10
    # The same run resumes; through sample() the Checkpoint carries force and run_id.
    assert mcmc.load_checkpoint(path, s.init(KEY, X0)).t == 10
    a = mcmc.sample(s._cfg_kwargs["logdensity_fn"], KEY, X0, checkpoint=mcmc.Checkpoint(tmp_path / "b.pkl", run_id="v1"), **kw)
    with pytest.raises(ValueError, match=r"target differs \(checkpoint run_id v1, now run_id v2\)"):
        mcmc.sample(s._cfg_kwargs["logdensity_fn"], KEY, X0, checkpoint=mcmc.Checkpoint(tmp_path / "b.pkl", run_id="v2"), **kw)
    b = mcmc.sample(s._cfg_kwargs["logdensity_fn"], KEY, X0, checkpoint=mcmc.Checkpoint(tmp_path / "b.pkl", run_id="v2", force=True), **kw)
    np.testing.assert_array_equal(a.flat_draws, b.flat_draws)


def test_fingerprint_names_its_parts():
    fp = mcmc.run_fingerprint(logp, jnp.zeros(3), kernel=mcmc.nuts_kernel(), settings={"num_draws": 5})
    assert fp["target"].startswith("jaxpr ") and "float32(3,)" in fp["position"]
    assert fp["kernel"].startswith("nuts") and "num_draws" in fp["settings"]
    assert fp == mcmc.run_fingerprint(logp, jnp.zeros(3), kernel=mcmc.nuts_kernel(), settings={"num_draws": 5})
    assert fp["target"] != mcmc.run_fingerprint(lambda x: -jnp.sum(x**2), jnp.zeros(3))["target"]


# -- 7. short printout, summary table, progress without recompiling --------------------------------


def test_repr_is_short_and_summary_is_a_table(monkeypatch):
    pd = pytest.importorskip("pandas")
    kw = dict(kernel="rwm", num_chains=2, num_warmup=30, num_draws=40, progress=False)
    res = mcmc.sample(logp, KEY, X0, **kw)
    text = repr(res)
    assert len(text.splitlines()) < 15
    assert "2 chains x 40 draws" in text and "2 parameters" in text and "divergences: 0" in text
    assert "max r_hat" in text and "min ess_bulk" in text
    table = res.summary()
    assert isinstance(table, pd.DataFrame)
    assert list(table.columns) == ["mean", "sd", "mcse_mean", "ess_bulk", "ess_tail", "r_hat"]
    assert list(table.index) == ["x[0]", "x[1]"]
    # Switching progress on does not recompile: the cached program and its one executable are reused.
    seen = []
    monkeypatch.setattr(driver._Progress, "update", lambda self, t: seen.append(t))
    program = driver._program(driver._Config(**mcmc.Sampler(logp, **kw)._cfg_kwargs, chunk=40))
    misses, size = driver._program.cache_info().misses, program._cache_size()
    again = mcmc.sample(logp, KEY, X0, **{**kw, "progress": 10})
    jax.effects_barrier()
    assert sorted(seen) == list(range(10, 71, 10))
    assert driver._program.cache_info().misses == misses and program._cache_size() == size
    np.testing.assert_array_equal(again.flat_draws, res.flat_draws)


# -- 9. Stan's window schedule ------------------------------------------------------------------------


def _stan_windows(num_warmup, init_buffer=75, term_buffer=50, base_window=25):
    """Window ends as Stan's windowed_adaptation computes them (restart + compute_next_window), 0-based."""
    if init_buffer + base_window + term_buffer > num_warmup:
        init_buffer, term_buffer = int(0.15 * num_warmup), int(0.1 * num_warmup)
        base_window = num_warmup - (init_buffer + term_buffer)
    size, nxt, ends = base_window, init_buffer + base_window - 1, []
    last = num_warmup - term_buffer - 1
    while True:
        ends.append(nxt)
        if nxt == last:
            return ends
        size *= 2
        nxt = nxt + size
        if nxt != last and nxt + 2 * size >= num_warmup - term_buffer:
            nxt = last


@pytest.mark.parametrize("num_warmup", [20, 100, 150, 170, 199, 200, 300, 500, 1000, 1500, 2000])
def test_window_schedule_is_stans(num_warmup):
    slow, end = mcmc.window_schedule(num_warmup)
    assert list(np.flatnonzero(end)) == _stan_windows(num_warmup)
    init = 75 if num_warmup >= 150 else int(0.15 * num_warmup)
    term = 50 if num_warmup >= 150 else int(0.1 * num_warmup)
    assert np.all(slow[init:num_warmup - term]) and not slow[:init].any() and not slow[num_warmup - term:].any()


def test_step_size_heuristic_is_stans():
    # One leapfrog step on N(0, 1) from x with momentum p: Delta H = eps^2 (p^2 - x^2)/2 + O(eps^4) terms;
    # the heuristic returns eps0 * 2^k, the first power whose acceptance crosses 0.8.
    logp1 = lambda x: -0.5 * jnp.sum(x**2)
    state = mcmc.nuts_init(jnp.array([0.7]), logp1)
    energy = lambda k, e: driver._energy_change(logp1, k, state, e, None)
    for eps0 in (1e-3, 1.0, 50.0):
        eps = float(mcmc.find_reasonable_step_size(jax.random.key(2), energy, jnp.float32(eps0)))
        k = np.log2(eps / eps0)
        assert abs(k - round(k)) < 1e-6 and 0.1 < eps < 8.0, (eps0, eps)
