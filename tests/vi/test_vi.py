"""Variational objectives on models with exact answers: conjugate Gaussian, enumerable binary model."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
import pytest

from ulam import Estimate, vi
from ulam.grad import enum, reinforce
from ulam.testing import assert_close, assert_within_stderr

K0 = jax.random.key(5)
X = 1.0


def log_joint(z, theta):  # z ~ N(theta, 1), x | z ~ N(z, 1), x = 1
    return dist.Normal(theta, 1.0).log_prob(z) + dist.Normal(z, 1.0).log_prob(X)


def guide(phi):
    return dist.Normal(phi[0], jnp.exp(phi[1]))


THETA = jnp.asarray(0.0)
LOG_EVIDENCE = float(dist.Normal(0.0, math.sqrt(2.0)).log_prob(X))
POSTERIOR = jnp.array([0.5, 0.5 * math.log(0.5)])
N = 2000  # one sample count, and module-level objectives, so each objective compiles once for the whole file
ELBO = vi.elbo(log_joint, guide)
IWAE4 = vi.iwae(log_joint, guide, 4)
SIR4 = vi.SIRGuide(guide, 4)


def test_elbo_gradient_matches_closed_form():
    phi = jnp.array([0.2, -0.3])
    value, grad = ELBO.grad_estimate((THETA, phi), K0, N)
    s2 = math.exp(2 * -0.3)
    # ELBO(m, s) = const - (m^2 + s^2)/2 - ((1 - m)^2 + s^2)/2 + log s  (theta = 0)
    assert_within_stderr(grad, (jnp.asarray(0.2), jnp.array([1 - 2 * 0.2, 1 - 2 * s2])), z=3)


def test_bounds_at_exact_posterior_and_ordering():
    # at the exact posterior every draw of the bound equals log p(x): an exact bound (zero variance),
    # so the tolerance is float32 rounding, not a Monte Carlo error
    v_elbo, _ = ELBO.grad_estimate((THETA, POSTERIOR), K0, N)
    assert float(v_elbo.stderr) < 1e-6
    assert_close(v_elbo.mean, LOG_EVIDENCE, rtol=1e-5)
    phi = jnp.array([-0.5, 0.3])
    e, _ = ELBO.grad_estimate((THETA, phi), K0, N)
    i4, _ = IWAE4.grad_estimate((THETA, phi), K0, N)
    assert float(e.mean + 3 * e.stderr) < float(i4.mean - 3 * i4.stderr) < LOG_EVIDENCE


def _gradient_draws(objective, params, key, n):
    """Per-draw gradients ``(n, 3)``: columns d/dtheta, d/dphi[0], d/dphi[1] (one compiled program)."""

    def one(k):
        g_theta, g_phi = jax.grad(lambda p: objective.surrogate(p, k)[0])(params)
        return jnp.concatenate([jnp.reshape(g_theta, (1,)), g_phi])

    return np.asarray(jax.jit(jax.vmap(one))(jax.random.split(key, n)), dtype=float)


def _log_variance_and_se(x):
    """``log Var(x)`` and its delta-method standard error ``sqrt((m4 / s^4 - 1) / n)`` (any kurtosis)."""
    c = x - x.mean()
    s2 = np.mean(c**2)
    return math.log(s2), math.sqrt(max(np.mean(c**4) / s2**2 - 1.0, 0.0) / len(x))


def test_dreg_unbiased_for_iwae_gradient_with_lower_variance():
    phi = jnp.array([-0.5, 0.3])
    n = 2000
    g_iwae = _gradient_draws(vi.iwae(log_joint, guide, 10), (THETA, phi), K0, n)
    g_dreg = _gradient_draws(vi.iwae_dreg(log_joint, guide, 10), (THETA, phi), jax.random.key(6), n)
    for j in range(3):
        a, b = g_iwae[:, j], g_dreg[:, j]
        # same expectation: the difference of two independent means is 0 within 4 of its own standard errors
        se = math.sqrt(a.var(ddof=1) / n + b.var(ddof=1) / n)
        assert abs(a.mean() - b.mean()) < 4 * se, (j, a.mean(), b.mean(), se)
    for j in (1, 2):  # the guide's gradient: log of the variance ratio exceeds 0 by 4 of its standard errors
        (lv_i, se_i), (lv_d, se_d) = _log_variance_and_se(g_iwae[:, j]), _log_variance_and_se(g_dreg[:, j])
        assert (lv_i - lv_d) - 4 * math.sqrt(se_i**2 + se_d**2) > 0.0, (j, lv_i - lv_d, se_i, se_d)


# discrete latent: z in {0,1}^2, p(z) = Bern(0.3)^2, x | z ~ N(z1 + 2 z2, 1), x = 2.2
def log_joint_binary(z, theta):
    z = z.astype(jnp.float32)
    return jnp.sum(dist.Bernoulli(probs=0.3).log_prob(z)) + dist.Normal(z[0] + 2 * z[1], 1.0).log_prob(2.2)


def guide_binary(phi):
    return dist.Bernoulli(logits=phi)


PHI_B = jnp.array([0.2, -0.4])


def test_vimco_and_reinforce_iwae_unbiased_against_enumeration():
    exact_v, exact_g = vi.iwae(log_joint_binary, guide_binary, 2, strategy=enum).grad_estimate(((), PHI_B), K0, 2)
    assert float(jnp.max(exact_g.stderr[1])) < 1e-5  # enumeration: every draw is the exact gradient
    _, g_vimco = vi.vimco(log_joint_binary, guide_binary, 2).grad_estimate(((), PHI_B), K0, 6000)
    _, g_rf = vi.iwae(log_joint_binary, guide_binary, 2, strategy=reinforce).grad_estimate(((), PHI_B), K0, 6000)
    for g in (g_vimco, g_rf):
        assert_within_stderr(type(g)(g.mean[1], g.stderr[1], g.n), exact_g.mean[1], z=3)


def test_rws_wake_p_is_fisher_identity_at_exact_posterior():
    theta = jnp.asarray(0.4)
    post = jnp.array([(0.4 + X) / 2, 0.5 * math.log(0.5)])
    obj = vi.reweighted_wake_sleep(log_joint, guide, 4, wake_q=False)
    _, g = obj.grad_estimate((theta, post), K0, 4000)
    assert_within_stderr(type(g)(g.mean[0], g.stderr[0], g.n), (X - 0.4) / 2.0, z=3)


@pytest.mark.slow  # DIWHVI(5, 5) unrolls 25 inner draws: the largest compile in this file
def test_hierarchical_ordering_at_fixed_parameters():
    hg = vi.HierarchicalGuide(aux=lambda phi: dist.Normal(0.0, 1.0),
                              conditional=lambda u, phi: dist.Normal(phi[0] + u, jnp.exp(phi[1])),
                              reverse=lambda z, phi: dist.Normal(0.0, 1.0))
    p = (THETA, jnp.array([0.3, -1.0]))
    keys = jax.random.split(K0, 1500)

    def bound(n, k):  # the bound's draws only: no gradient program to compile
        obj = vi.hierarchical_elbo(log_joint, hg, num_inner=n, num_importance_samples=k)
        return Estimate.from_samples(jax.jit(jax.vmap(lambda kk: obj.value(p, kk)))(keys))

    vals = [bound(n, k) for n, k in ((1, 1), (5, 1), (5, 5))]
    for a, b in zip(vals, vals[1:]):
        assert float(a.mean + 3 * a.stderr) < float(b.mean - 3 * b.stderr)
    assert float(vals[-1].mean - 3 * vals[-1].stderr) < LOG_EVIDENCE


def test_fit_elbo_recovers_posterior():
    # Constant-step SGD on the ELBO, which here is separable and quadratic in m (curvature h = 2) and,
    # near the optimum, in log s (h = 4 s^2 = 2). At stationarity the iterate is then centred on the
    # optimum with variance lr * sigma^2 / (h (2 - lr h)), sigma^2 the variance of one step's gradient:
    # (per-draw variance, estimated at the fit) / num_samples. The tolerance is 4 of those standard deviations.
    fixed_prior = lambda z, theta: log_joint(z, 0.0)  # noqa: E731  (only the guide is fitted)
    objective = vi.elbo(fixed_prior, guide)
    lr, num_samples, h = 0.01, 8, 2.0
    res = vi.fit(objective, ((), jnp.zeros(2)), K0, num_steps=600,
                 optimizer=optax.sgd(lr), num_samples=num_samples, progress=False)
    assert res.values.shape == (600,)
    _, g = objective.grad_estimate(res.params, jax.random.key(11), N)
    per_draw_var = np.asarray(g.stderr[1]) ** 2 * N
    sd = np.sqrt(lr * per_draw_var / num_samples / (h * (2 - lr * h)))
    assert float(np.max(sd)) < 0.05  # the test has power
    assert_within_stderr(Estimate(res.params[1], jnp.asarray(sd), 1), POSTERIOR, z=4)


def test_bad_inputs():
    with pytest.raises(ValueError, match="num_importance_samples: expected an integer >= 1, got 0"):
        vi.iwae(log_joint, guide, 0)
    with pytest.raises(TypeError, match="guide: expected a HierarchicalGuide"):
        vi.diwhvi(log_joint, None, 5, 0)
    with pytest.raises(ValueError, match="num_importance_samples: expected an integer >= 1, got 0"):
        vi.diwhvi(log_joint, vi.HierarchicalGuide(guide, guide, guide), 5, 0)
    with pytest.raises(ValueError, match="num_importance_samples: expected an integer >= 2 \\(VIMCO"):
        vi.vimco(log_joint, guide, 1)
    with pytest.raises(ValueError, match="pair \\(theta, phi\\)"):
        vi.elbo(log_joint, guide).grad_estimate(jnp.zeros(2), K0, 10)
    with pytest.raises(ValueError, match="sample site 'z': strategy 'reparam'"):
        vi.elbo(log_joint_binary, guide_binary).grad_estimate(((), PHI_B), K0, 10)


def test_bad_inputs_name_the_argument_and_what_fits():
    p = (THETA, jnp.array([0.2, -0.3]))
    # a plain int where a key belongs
    with pytest.raises(TypeError, match="key: expected a jax.random key, got the int 0; pass jax.random.key"):
        ELBO.grad_estimate(p, 0, 10)
    # counts: a float, a bool
    with pytest.raises(TypeError, match="num_samples: expected an integer, got float 10.0"):
        ELBO.grad_estimate(p, K0, 10.0)
    with pytest.raises(TypeError, match="num_importance_samples: expected an integer, got bool True"):
        vi.iwae(log_joint, guide, True)
    # a distribution where a function belongs
    with pytest.raises(TypeError, match="guide: expected a function guide\\(phi, \\*data\\) -> distribution.*"
                                        "a distribution was given: pass a function that builds it"):
        vi.elbo(log_joint, dist.Normal(0.0, 1.0))
    with pytest.raises(TypeError, match="log_joint: expected a function log_joint"):
        vi.iwae(dist.Normal(0.0, 1.0).log_prob(0.0), guide, 2)
    with pytest.raises(TypeError, match="proposal: expected a function"):
        vi.SIRGuide(dist.Normal(0.0, 1.0), 4)
    # a log-joint returning a vector: the message names the callback and the shape it returned
    with pytest.raises(ValueError, match=r"log_joint: expected its output to be a scalar of shape \(\), got shape \(3,\)"):
        vi.elbo(lambda z, th: jnp.zeros(3) + z, guide).value(p, K0)


def test_num_particles_is_a_deprecated_alias_of_num_importance_samples():
    new = vi.iwae(log_joint, guide, num_importance_samples=3)
    for make in (vi.iwae, vi.iwae_dreg, vi.vimco, vi.reweighted_wake_sleep):
        with pytest.warns(DeprecationWarning, match="num_particles is deprecated.*num_importance_samples"):
            old = make(log_joint, guide, num_particles=3)
        assert old.name == make(log_joint, guide, 3).name
    with pytest.raises(TypeError, match="either num_importance_samples or its deprecated alias"):
        vi.iwae(log_joint, guide, 3, num_particles=3)
    # same key, same bits through the old name
    p = (THETA, jnp.array([0.2, -0.3]))
    with pytest.warns(DeprecationWarning):
        old = vi.iwae(log_joint, guide, num_particles=3)
    assert float(old.value(p, K0)) == float(new.value(p, K0))
    with pytest.warns(DeprecationWarning):
        g = vi.SIRGuide(guide, num_particles=4)
    assert g.num_importance_samples == 4 and g == vi.SIRGuide(guide, 4)
    with pytest.warns(DeprecationWarning):
        assert g.num_particles == 4
    with pytest.warns(DeprecationWarning, match="num_particles is deprecated"):
        assert vi.diwhvi(log_joint, vi.HierarchicalGuide(guide, guide, guide), 2, num_outer=3).name == "hvi(N=2,K=3)"


def test_sir_sample_key_after_params_and_old_order_deprecated():
    p = (THETA, jnp.array([0.2, -0.3]))
    z, log_w = vi.sir_sample(log_joint, guide, p, K0, 8)
    assert log_w.shape == (8,) and jnp.shape(z) == ()
    assert bool(jnp.any(jnp.isclose(log_w, log_joint(z, THETA) - guide(p[1]).log_prob(z))))
    with pytest.warns(DeprecationWarning, match="key now comes after params"):
        z_old, log_w_old = vi.sir_sample(K0, log_joint, guide, p, 8)
    assert float(z_old) == float(z) and bool(jnp.all(log_w_old == log_w))
    with pytest.raises(TypeError, match="key: expected a jax.random key"):
        vi.sir_sample(log_joint, guide, p, 3, 8)


def test_reprs_are_short():
    assert repr(ELBO) == "Objective('elbo')"
    assert repr(SIR4) == "SIRGuide(num_importance_samples=4, index_strategy='enum')"
    assert repr(vi.HierarchicalGuide(guide, guide, guide)) == "HierarchicalGuide(aux, conditional, reverse)"


# -- SIR as an approximate-normalisation guide ---------------------------------------------


def _part(g, i):
    """Component ``i`` of a (theta, phi) gradient Estimate, as an Estimate."""
    return type(g)(g.mean[i], g.stderr[i], g.n)


def _difference(a, b):
    """Estimate of E[a] - E[b] from two independent estimates."""
    return type(a)(a.mean - b.mean, jnp.sqrt(a.stderr**2 + b.stderr**2), a.n)


def test_sir_guide_elbo_is_iwae_in_expectation_and_a_lower_bound():
    phi = jnp.array([-0.5, 0.3])
    p = (THETA, phi)
    v_sir, g_sir = vi.elbo(log_joint, SIR4).grad_estimate(p, K0, N)
    v_iw, g_iw = IWAE4.grad_estimate(p, jax.random.key(6), N)
    # same expectation (value and gradient): the difference of two independent estimates is 0 within its stderr
    for a, b in ((v_sir, v_iw), (_part(g_sir, 1), _part(g_iw, 1))):
        diff = _difference(a, b)
        assert_within_stderr(diff, jnp.zeros_like(diff.mean), z=3)
    assert float(v_sir.mean + 3 * v_sir.stderr) < LOG_EVIDENCE
    # a target other than the model (the prior times a tempered likelihood) keeps a valid, looser bound
    tempered = vi.SIRGuide(guide, 4, target=lambda z, th, ph: dist.Normal(th, 1.0).log_prob(z)
                           + 0.5 * dist.Normal(z, 1.0).log_prob(X))
    v_t, _ = vi.elbo(log_joint, tempered).grad_estimate(p, K0, N)
    assert float(v_t.mean - 3 * v_t.stderr) < LOG_EVIDENCE


@pytest.mark.slow  # three more objectives to compile; the core SIR property is tested above
def test_sir_guide_inside_iwae_and_with_reinforce_index():
    phi = jnp.array([-0.5, 0.3])
    p = (THETA, phi)
    v1, _ = IWAE4.grad_estimate(p, K0, N)
    v2, _ = vi.iwae(log_joint, vi.SIRGuide(guide, 4, index_strategy=reinforce), 2).grad_estimate(p, K0, N)
    assert float(v1.mean + 3 * v1.stderr) < float(v2.mean - 3 * v2.stderr) < LOG_EVIDENCE
    # reinforce on the index: still unbiased for the same gradient as the enumerated index
    _, g_enum = vi.elbo(log_joint, SIR4).grad_estimate(p, K0, N)
    _, g_rf = vi.elbo(log_joint, vi.SIRGuide(guide, 4, index_strategy=reinforce)).grad_estimate(p, jax.random.key(9), N)
    assert_within_stderr(_difference(_part(g_rf, 1), _part(g_enum, 1)), jnp.zeros(2), z=3)


class _GenericNormal(dist.Normal):
    """A Normal that the reparameterised fast path does not recognise (exact-type check): ``log_prob`` of the draw."""


@pytest.mark.parametrize("event", [False, True])
def test_normal_guide_density_from_its_standard_draw_equals_log_prob(event):
    # ulam takes log q of a reparameterised Normal draw from the standard draw eps; value and
    # gradient must equal the generic log_prob path on the same draw, key by key
    def make(cls):
        def g(phi):
            d = cls(phi[:2], jnp.exp(phi[2:]))
            return d.to_event(1) if event else d
        return g

    def lj(z, theta):
        return jnp.sum(dist.Normal(theta, 1.0).log_prob(z) + dist.Normal(z, 1.0).log_prob(X))

    fast, generic = vi.elbo(lj, make(dist.Normal)), vi.elbo(lj, make(_GenericNormal))
    params = (THETA, jnp.array([0.2, -0.4, -0.3, 0.1]))
    for k in jax.random.split(K0, 3):
        (s_f, v_f), g_f = jax.value_and_grad(fast.surrogate, has_aux=True)(params, k)
        (s_g, v_g), g_g = jax.value_and_grad(generic.surrogate, has_aux=True)(params, k)
        assert_close(v_f, v_g, rtol=1e-6)
        assert_close(g_f[1], g_g[1], rtol=1e-5, atol=1e-6)
        assert_close(g_f[0], g_g[0], rtol=1e-5, atol=1e-6)
