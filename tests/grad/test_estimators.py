"""Gradient estimators against exact gradients: unbiasedness within standard errors, exactness, variance."""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ulam import grad as G
from ulam.testing import assert_close, assert_variance_reduced, assert_within_stderr

K0 = jax.random.key(7)
NORMAL = lambda th: dist.Normal(th, 1.0)  # noqa: E731
NORMAL2 = lambda th: dist.Normal(th[0], th[1])  # noqa: E731
BERN = lambda th: dist.Bernoulli(logits=th)  # noqa: E731
SQUARE = lambda x, th: x**2  # noqa: E731
FB = lambda b, th: jnp.sum((b - 0.45) ** 2)  # noqa: E731
THETA = 0.3
S = float(jax.nn.sigmoid(THETA))
BERN_TRUTH = 0.1 * S * (1 - S)  # d/dθ E[(b - 0.45)^2], b ~ Bernoulli(sigmoid θ)


@pytest.mark.parametrize("baseline", [None, "leave_one_out", "optimal", 1.5])
def test_score_function_gaussian_square(baseline):
    est = G.score_function_gradient(SQUARE, NORMAL, 1.0, K0, 4000, baseline=baseline)
    assert_within_stderr(est, 2.0, z=3)


def test_pathwise_and_mvd_gaussian_mean_and_scale():
    th = jnp.array([1.0, 2.0])  # d/dμ E[x²] = 2μ, d/dσ E[x²] = 2σ
    for est in (G.pathwise_gradient(SQUARE, NORMAL2, th, K0, 4000), G.measure_valued_gradient(SQUARE, NORMAL2, th, K0, 4000)):
        assert_within_stderr(est, jnp.array([2.0, 4.0]), z=3)


def test_baselines_and_reparam_reduce_variance():
    plain = G.score_function_gradient(SQUARE, NORMAL, 1.0, K0, 4000)
    for b in ("leave_one_out", "optimal"):
        assert_variance_reduced(plain, G.score_function_gradient(SQUARE, NORMAL, 1.0, K0, 4000, baseline=b), 1.3)
    assert_variance_reduced(plain, G.pathwise_gradient(SQUARE, NORMAL, 1.0, K0, 4000), 5.0)


def test_ema_baseline_unbiased_and_reduces_variance():
    ema = G.ema_baseline(0.8)
    state = ema.init()
    ests = []
    for i in range(8):
        est = G.score_function_gradient(SQUARE, NORMAL, 1.0, jax.random.fold_in(K0, i), 4000, baseline=ema.value(state))
        state = ema.update(state, est.info["value"])
        ests.append(est)
    # after warm-up the baseline sits near E[f] = 2 and the estimate stays unbiased
    assert abs(float(ema.value(state)) - 2.0) < 0.3
    pooled = __import__("ulam").pool(ests[2:])
    assert_within_stderr(pooled, 2.0, z=3)
    plain = G.score_function_gradient(SQUARE, NORMAL, 1.0, jax.random.fold_in(K0, 99), 4000)
    assert_variance_reduced(plain, ests[-1], 1.3)


def test_optimal_baseline_ema_running_average():
    init, update, value = G.optimal_baseline_ema(0.5)
    a = jnp.array([0.4, -0.4])
    state = init(a)
    loss = lambda h, a: jnp.sum((h - 0.3) ** 2)  # noqa: E731
    for i in range(4):
        est = G.score_function_gradient(loss, BERN, a, jax.random.fold_in(K0, i), 2000, baseline=value(state))
        state = update(state, est)
    # one unit: E[(h-p)^2 L]/E[(h-p)^2] = (1-p) L(1) + p L(0), plus the other unit's mean loss
    p = jax.nn.sigmoid(a)
    own = (1 - p) * 0.49 + p * 0.09
    other = (p * 0.49 + (1 - p) * 0.09)[::-1]
    exact = own + other
    assert_close(value(state), jnp.full(2, exact), atol=0.05)


TH3 = jnp.array([0.3, -1.0, 0.5])
S3 = jax.nn.sigmoid(TH3)
BERN3_TRUTH = 0.1 * S3 * (1 - S3)  # FB on three independent coordinates: the same closed form per coordinate


def test_bernoulli_unbiased_estimators():
    for fn in (G.score_function_gradient, G.arm_gradient, G.disarm_gradient, G.rebar_gradient):
        est = fn(FB, BERN, TH3, K0, 4000)
        assert_within_stderr(est, BERN3_TRUTH, z=3, msg=f"{fn.__name__}: ")
    relax = G.relax_gradient(FB, BERN, TH3, K0, 4000, control=lambda z, psi: psi * jnp.sum(jax.nn.sigmoid(z)),
                             control_params=jnp.asarray(0.3))
    assert_within_stderr(relax, BERN3_TRUTH, z=3)
    assert jnp.isfinite(relax.info["control_params_grad"])


def test_disarm_beats_arm_and_score_function():
    # same f, distribution and sample count as above: the compiled estimators are reused
    arm = G.arm_gradient(FB, BERN, TH3, jax.random.key(8), 4000)
    disarm = G.disarm_gradient(FB, BERN, TH3, jax.random.key(8), 4000)
    sf = G.score_function_gradient(FB, BERN, TH3, jax.random.key(8), 4000)
    exact = G.enumeration_gradient(FB, BERN, TH3)
    assert_close(exact.mean, BERN3_TRUTH, rtol=1e-5)
    for est in (arm, disarm, sf):
        assert_within_stderr(est, exact.mean, z=3)
    assert_variance_reduced(arm, disarm, 1.0)
    assert_variance_reduced(sf, disarm, 2.0)


def test_enumeration_and_mvd_exact_bernoulli():
    enum = G.enumeration_gradient(FB, BERN, THETA)
    assert_close(enum.mean, BERN_TRUTH, rtol=1e-5)
    assert float(enum.stderr) == 0.0
    mvd = G.measure_valued_gradient(FB, BERN, THETA, K0, 16)
    assert_close(mvd.mean, BERN_TRUTH, rtol=1e-5)
    assert float(mvd.stderr) < 1e-7  # both branches are evaluated: deterministic


def test_categorical_mvd_and_enumeration_exact():
    th = jnp.array([0.2, -0.5, 1.0])
    f = lambda x, th: (x.astype(jnp.float32) - 0.7) ** 2  # noqa: E731
    values = (jnp.arange(3.0) - 0.7) ** 2
    truth = jax.grad(lambda t: jnp.sum(jax.nn.softmax(t) * values))(th)
    cat = lambda t: dist.Categorical(logits=t)  # noqa: E731
    assert_close(G.enumeration_gradient(f, cat, th).mean, truth, rtol=1e-5)
    assert_close(G.measure_valued_gradient(f, cat, th, K0, 8).mean, truth, rtol=1e-5, atol=1e-6)


def test_poisson_mvd():
    est = G.measure_valued_gradient(lambda x, th: x.astype(jnp.float32) ** 2, lambda lam: dist.Poisson(lam), 2.0, K0, 4000)
    assert_within_stderr(est, 5.0, z=3)  # d/dλ (λ + λ²) = 1 + 2λ


def test_implicit_reparameterization_gamma():
    g = G.implicit_pathwise_gradient(lambda x, a: x**2, lambda a: dist.Gamma(a, 1.0), 2.0, K0, 3000)
    assert_within_stderr(g, 5.0, z=3)  # E[x²] = a + a², derivative 1 + 2a


@pytest.mark.slow  # compiling numpyro's Beta sampler (two Gamma rejection loops) and its implicit gradient
def test_implicit_reparameterization_beta():
    b = G.implicit_pathwise_gradient(lambda x, a: x, lambda a: dist.Beta(a, 3.0), 2.0, K0, 3000)
    assert_within_stderr(b, 3.0 / 25.0, z=3)  # d/da a/(a+b) = b/(a+b)²


def test_gumbel_softmax_is_biased_and_straight_through_sign():
    gs = G.gumbel_softmax_gradient(FB, BERN, THETA, K0, 4000, temperature=0.5)
    assert abs(float(gs.mean) - BERN_TRUTH) > 4 * float(gs.stderr)  # it estimates the relaxed objective
    cat = lambda t: dist.Categorical(logits=t)  # noqa: E731
    w = jnp.array([0.0, 1.0, 3.0])
    st = G.gumbel_softmax_gradient(lambda y, th: jnp.sum(y * w), cat, jnp.zeros(3), K0, 5000, straight_through=True)
    truth = jax.grad(lambda t: jnp.sum(jax.nn.softmax(t) * w))(jnp.zeros(3))
    assert np.all(np.sign(np.asarray(st.mean)) == np.sign(np.asarray(truth)))


def test_jit_compatible_and_deterministic():
    f = jax.jit(lambda th, k: G.pathwise_gradient(SQUARE, NORMAL, th, k, 256).mean)
    assert_close(f(1.0, K0), G.pathwise_gradient(SQUARE, NORMAL, 1.0, K0, 256).mean, rtol=1e-5)
    g = jax.jit(lambda th, k: G.score_function_gradient(FB, BERN, th, k, 256, baseline="optimal"))
    e = g(THETA, K0)
    assert e.mean.shape == () and float(e.stderr) > 0


def test_pytree_params():
    params = {"loc": jnp.array([0.5, -1.0]), "log_scale": jnp.zeros(2)}
    d = lambda p: dist.Normal(p["loc"], jnp.exp(p["log_scale"]))  # noqa: E731
    f = lambda x, p: jnp.sum(x**2)  # noqa: E731
    truth = {"loc": 2 * params["loc"], "log_scale": 2 * jnp.ones(2)}  # d/d log σ E[x²] = 2σ²
    for fn in (G.pathwise_gradient, G.measure_valued_gradient, G.score_function_gradient):
        est = fn(f, d, params, K0, 4000)
        assert jax.tree_util.tree_structure(est.mean) == jax.tree_util.tree_structure(params)
        assert_within_stderr(est, truth, z=3, msg=f"{fn.__name__}: ")


# -- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize("f", [lambda x, th: jnp.round(x), lambda x, th: jnp.where(x > 0, 1.0, 0.0),
                               lambda x, th: jax.lax.stop_gradient(x) ** 2])
def test_pathwise_rejects_non_differentiable_f(f):
    with pytest.raises(ValueError, match="derivative with respect to the sample x is zero"):
        G.pathwise_gradient(f, NORMAL, 1.0, K0, 10)


def test_pathwise_rejects_integer_valued_f_and_discrete_distribution():
    with pytest.raises(TypeError, match="no derivative"):
        G.pathwise_gradient(lambda x, th: (x > 0).astype(jnp.int32), NORMAL, 1.0, K0, 10)
    with pytest.raises(ValueError, match="discrete"):
        G.pathwise_gradient(FB, BERN, THETA, K0, 10)


def test_wrong_parameter_structure():
    d = lambda p: dist.Normal(p["loc"], 1.0)  # noqa: E731
    with pytest.raises(ValueError, match="structure this function expects"):
        G.score_function_gradient(SQUARE, d, jnp.array([1.0]), K0, 10)
    with pytest.raises(ValueError, match="pytree structure"):
        G.score_function_gradient(SQUARE, d, {"loc": 1.0}, K0, 10, baseline={"scale": 1.0})
    with pytest.raises(TypeError, match="floating-point"):
        G.score_function_gradient(SQUARE, NORMAL, 1, K0, 10)
    with pytest.raises(ValueError, match="baseline: expected one of 'leave_one_out', 'rloo', 'optimal', got 'best'"):
        G.score_function_gradient(SQUARE, NORMAL, 1.0, K0, 10, baseline="best")


def test_bad_sample_counts_and_families():
    with pytest.raises(ValueError, match="num_samples: expected an integer >= 2, got 1"):
        G.score_function_gradient(SQUARE, NORMAL, 1.0, K0, 1)
    with pytest.raises(TypeError, match="measure-valued gradients are implemented"):
        G.measure_valued_gradient(SQUARE, lambda a: dist.Gamma(a, 1.0), 1.0, K0, 10)
    with pytest.raises(TypeError, match="ARM/DisARM need a Bernoulli"):
        G.disarm_gradient(SQUARE, NORMAL, 1.0, K0, 10)
    with pytest.raises(ValueError, match="exceeds max_configurations"):
        G.enumeration_gradient(FB, BERN, jnp.zeros(20))


# -- categorical ARM (ARSM) --------------------------------------------------------------

CAT = lambda t: dist.Categorical(logits=t)  # noqa: E731
W_CAT = jnp.array([[0.3, -1.0, 2.0, 0.5], [1.0, 0.0, -0.5, 0.2]])
TH_CAT = jnp.array([[0.2, -0.5, 1.0, 0.1], [0.0, 0.7, -0.3, 0.4]])


def f_cat(z, th):  # couples the two categorical coordinates, and depends on th directly
    return (W_CAT[0, z[0]] * W_CAT[1, z[1]] + W_CAT[1, z[1]]) ** 2 + 0.1 * jnp.sum(th**2)


def test_arsm_unbiased_against_enumeration():
    exact = G.enumeration_gradient(f_cat, CAT, TH_CAT)
    est = G.arsm_gradient(f_cat, CAT, TH_CAT, K0, 3000)
    assert est.mean.shape == TH_CAT.shape
    assert_within_stderr(est, exact.mean, z=3)


def test_arsm_two_categories_and_bad_input():
    # C = 2 is a binary choice: d/dθ E[(b - 0.45)^2] with logits (0, θ)
    th = jnp.array([0.0, THETA])
    est = G.arsm_gradient(lambda z, t: (z - 0.45) ** 2, CAT, th, K0, 3000)
    assert_within_stderr(est, jnp.array([-BERN_TRUTH, BERN_TRUTH]), z=3)
    with pytest.raises(TypeError, match="ARSM needs a Categorical"):
        G.arsm_gradient(SQUARE, NORMAL, 1.0, K0, 10)


def test_decomposition_is_first_order_only_half_the_gradient_for_a_linear_loss():
    # Bengio et al. 2013's STS unit backprops through sqrt(p) only: for L = w.h its mean is w p'/2, not w p'
    a, w = jnp.array([0.4, -1.0]), jnp.array([1.0, -2.0])
    p = jax.nn.sigmoid(a)
    est = G.decomposition_gradient(lambda h: jnp.sum(w * h), a, K0, 4000)
    assert_within_stderr(est, 0.5 * w * p * (1 - p), z=3)


def test_rebar_unbiased_at_logits_exactly_zero():
    # regression: numpyro's BernoulliLogits.log_prob has a wrong gradient at logits == 0 (REBAR gave 0.079)
    assert_within_stderr(G.rebar_gradient(FB, BERN, 0.0, K0, 4000), 0.025, z=3)


# -- categorical DisARM (stick-breaking) and categorical RELAX ----------------------------


@pytest.mark.parametrize("sort", [True, False])
def test_categorical_disarm_unbiased_against_enumeration(sort):
    exact = G.enumeration_gradient(f_cat, CAT, TH_CAT)
    est = G.categorical_disarm_gradient(f_cat, CAT, TH_CAT, K0, 3000, sort=sort)
    assert est.mean.shape == TH_CAT.shape
    assert_within_stderr(est, exact.mean, z=3)


def test_categorical_disarm_two_categories_is_binary_disarm_and_bad_input():
    # C = 2: one stick-breaking node with logit -θ (category 0 first), i.e. binary DisARM exactly
    th = jnp.array([0.0, THETA])
    est = G.categorical_disarm_gradient(lambda z, t: (z - 0.45) ** 2, CAT, th, K0, 3000, sort=False)
    assert_within_stderr(est, jnp.array([-BERN_TRUTH, BERN_TRUTH]), z=3)
    bin_est = G.disarm_gradient(FB, BERN, THETA, K0, 3000)
    assert_close(float(est.stderr[1]), float(bin_est.stderr), rtol=0.15)
    with pytest.raises(TypeError, match="categorical DisARM needs a Categorical"):
        G.categorical_disarm_gradient(SQUARE, NORMAL, 1.0, K0, 10)


def f_onehot(o, th):  # f_cat on one-hot vectors, so it can also be evaluated at relaxed one-hots
    return ((o[0] @ W_CAT[0]) * (o[1] @ W_CAT[1]) + o[1] @ W_CAT[1]) ** 2 + 0.1 * jnp.sum(th**2)


def test_categorical_relax_unbiased_and_control_reduces_variance():
    exact = G.enumeration_gradient(f_cat, CAT, TH_CAT)
    control = G.rebar_control(f_onehot, TH_CAT, categorical=True)  # the objective at the relaxed one-hot, scaled
    psi = lambda eta: {"eta": jnp.asarray(eta), "log_temperature": jnp.asarray(0.0)}  # noqa: E731
    plain = G.relax_gradient(f_cat, CAT, TH_CAT, K0, 3000, control=control, control_params=psi(0.0))
    relax = G.relax_gradient(f_cat, CAT, TH_CAT, K0, 3000, control=control, control_params=psi(1.0))
    assert_within_stderr(relax, exact.mean, z=3)
    assert_within_stderr(plain, exact.mean, z=3)
    # a fixed, untrained relaxed control already lowers the total variance a little (about 1.22x here; RELAX's
    # gains come from training the control with info['control_params_grad'])
    total = lambda e: float(jnp.sum(e.stderr**2))  # noqa: E731
    assert total(plain) > 1.05 * total(relax), (total(plain), total(relax))


def test_categorical_rebar_unbiased_against_enumeration():
    exact = G.enumeration_gradient(f_cat, CAT, TH_CAT)
    rebar = G.rebar_gradient(f_onehot, CAT, TH_CAT, K0, 3000)
    assert_within_stderr(rebar, exact.mean, z=3)
    assert all(jnp.isfinite(v) for v in jax.tree_util.tree_leaves(rebar.info["control_params_grad"]))
    with pytest.raises(TypeError, match="REBAR needs a Bernoulli or Categorical"):
        G.rebar_gradient(SQUARE, NORMAL, 1.0, K0, 10)


def test_enumeration_and_enum_choice_exact_at_logits_exactly_zero():
    # regression: numpyro's BernoulliLogits.log_prob has a wrong gradient at logits == 0 (enumeration gave 0.15125)
    assert_close(float(G.enumeration_gradient(FB, BERN, 0.0).mean), 0.025, rtol=1e-5)
    est = G.program_gradient(lambda t, th: (t.sample("b", G.flip_enum(logits=th)) - 0.45) ** 2, 0.0, K0, 2)
    assert_close(float(est.mean), 0.025, rtol=1e-5)


# -- one input-check vocabulary (ulam.checks): name the argument, say what fits -------------------


def test_bad_inputs_name_the_argument_and_what_fits():
    with pytest.raises(TypeError, match="key: expected a jax.random key, got the int 0; pass jax.random.key"):
        G.score_function_gradient(SQUARE, NORMAL, 1.0, 0, 10)
    with pytest.raises(TypeError, match="key: expected a jax.random key, got the int 3"):
        G.pathwise_gradient(SQUARE, NORMAL, 1.0, 3, 10)
    with pytest.raises(TypeError, match="num_samples: expected an integer, got float 100.0"):
        G.arm_gradient(FB, BERN, THETA, K0, 100.0)
    with pytest.raises(TypeError, match="distribution: expected a function params -> distribution, got Normal; "
                                        "a distribution was given: pass a function that builds it from the parameters"):
        G.score_function_gradient(SQUARE, dist.Normal(0.0, 1.0), 1.0, K0, 10)
    with pytest.raises(TypeError, match="f: expected a function f\\(x, params\\) -> scalar, got Normal"):
        G.pathwise_gradient(dist.Normal(0.0, 1.0), NORMAL, 1.0, K0, 10)
    with pytest.raises(TypeError, match="distribution: expected a function returning a distribution .*got one returning float"):
        G.score_function_gradient(SQUARE, lambda th: 1.0, 1.0, K0, 10)
    with pytest.raises(ValueError, match=r"f: expected its output to be a scalar of shape \(\), got shape \(3,\); sum or average"):
        G.score_function_gradient(lambda x, th: jnp.zeros(3) + x, NORMAL, 1.0, K0, 10)
    with pytest.raises(ValueError, match="baseline: expected one of 'leave_one_out', got 'leave-one-out'"):
        G.baseline("leave-one-out")
    with pytest.raises(ValueError, match="temperature: expected a finite number > 0, got 0"):
        G.gumbel_softmax_gradient(FB, BERN, THETA, K0, 10, temperature=0.0)
    with pytest.raises(ValueError, match=r"decay: expected a finite value in \[0, 1\), got 1"):
        G.ema_baseline(1.0)


def test_misspelt_strategy_lists_what_is_accepted():
    def prog(t, th):
        return t.sample("x", dist.Normal(th, 1.0), G.Strategy("reparm"))

    with pytest.raises(ValueError, match="strategy: expected one of 'reparam', 'reinforce', 'enum', 'mvd', "
                                         "got 'reparm'; did you mean 'reparam'"):
        G.program_gradient(prog, 1.0, K0, 10)


def test_program_returning_a_vector_names_the_program_and_the_shape():
    def prog(t, th):
        return t.sample("x", dist.Normal(th, 1.0), G.reparam) * jnp.ones(3)

    with pytest.raises(ValueError, match=r"program: expected its output to be a floating-point scalar of shape \(\), "
                                         r"got shape \(3,\) and dtype float32"):
        G.program_gradient(prog, 1.0, K0, 10)
    with pytest.raises(TypeError, match="key: expected a jax.random key, got the int 0"):
        G.program_value(lambda t, th: t.sample("x", dist.Normal(th, 1.0), G.reparam), 1.0, 0, 10)


def test_relaxed_samplers_take_the_key_after_the_logits():
    logits = jnp.array([0.3, -0.2, 0.1])
    for sampler in (G.gumbel_softmax_sample, G.straight_through_gumbel_sample, G.relaxed_bernoulli_sample,
                    G.straight_through_relaxed_bernoulli_sample):
        y = sampler(logits, K0, 0.5)
        with pytest.warns(DeprecationWarning, match="key now comes after the logits"):
            y_old = sampler(K0, logits, 0.5)
        np.testing.assert_array_equal(np.asarray(y), np.asarray(y_old))  # same key, same bits
    with pytest.raises(TypeError, match="key: expected a jax.random key, got the int 1"):
        G.gumbel_softmax_sample(logits, 1)


def test_common_is_public_and_private_path_aliases_it():
    import ulam.grad._common as old
    from ulam.grad import common

    assert old is common
    assert "compiled" in common.__all__ and "check_estimator_args" in common.__all__


@settings(max_examples=30, deadline=None)
@given(st.lists(st.floats(-8.0, 8.0, width=32), min_size=2, max_size=6))
def test_stick_breaking_logits_reconstruct_the_categorical(logits):
    # stopping at node k with prob sigmoid(eta_k), after passing nodes 0..k-1, gives softmax(logits)_k
    l = jnp.asarray(logits, jnp.float32)
    stop = jax.nn.sigmoid(G.stick_breaking_logits(l))
    passed = jnp.concatenate([jnp.ones(1), jnp.cumprod(1.0 - stop)])
    probs = jnp.concatenate([stop, jnp.ones(1)]) * passed
    np.testing.assert_allclose(np.asarray(probs), np.asarray(jax.nn.softmax(l)), atol=2e-5)
