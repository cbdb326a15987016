"""Variational objectives on models with exact answers: conjugate Gaussian, enumerable binary model."""

import math

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
import optax
import pytest

from ulam import vi
from ulam.grad import enum, reinforce
from ulam.testing import assert_close, assert_variance_reduced, assert_within_stderr

K0 = jax.random.key(5)
X = 1.0


def log_joint(z, theta):  # z ~ N(theta, 1), x | z ~ N(z, 1), x = 1
    return dist.Normal(theta, 1.0).log_prob(z) + dist.Normal(z, 1.0).log_prob(X)


def guide(phi):
    return dist.Normal(phi[0], jnp.exp(phi[1]))


THETA = jnp.asarray(0.0)
LOG_EVIDENCE = float(dist.Normal(0.0, math.sqrt(2.0)).log_prob(X))
POSTERIOR = jnp.array([0.5, 0.5 * math.log(0.5)])


def test_elbo_gradient_matches_closed_form():
    phi = jnp.array([0.2, -0.3])
    value, grad = vi.elbo(log_joint, guide).grad_estimate((THETA, phi), K0, 4000)
    s2 = math.exp(2 * -0.3)
    # ELBO(m, s) = const - (m^2 + s^2)/2 - ((1 - m)^2 + s^2)/2 + log s  (theta = 0)
    assert_within_stderr(grad, (jnp.asarray(0.2), jnp.array([1 - 2 * 0.2, 1 - 2 * s2])), z=3)


def test_bounds_at_exact_posterior_and_ordering():
    v_elbo, _ = vi.elbo(log_joint, guide).grad_estimate((THETA, POSTERIOR), K0, 200)
    assert_close(v_elbo.mean, LOG_EVIDENCE, rtol=1e-5)
    phi = jnp.array([-0.5, 0.3])
    e, _ = vi.elbo(log_joint, guide).grad_estimate((THETA, phi), K0, 4000)
    i5, _ = vi.iwae(log_joint, guide, 5).grad_estimate((THETA, phi), K0, 4000)
    assert float(e.mean + 3 * e.stderr) < float(i5.mean - 3 * i5.stderr) < LOG_EVIDENCE


def test_dreg_unbiased_for_iwae_gradient_with_lower_variance():
    phi = jnp.array([-0.5, 0.3])
    _, g_iwae = vi.iwae(log_joint, guide, 10).grad_estimate((THETA, phi), K0, 2000)
    _, g_dreg = vi.iwae_dreg(log_joint, guide, 10).grad_estimate((THETA, phi), jax.random.key(6), 2000)
    diff_se = jnp.sqrt(g_iwae.stderr[1] ** 2 + g_dreg.stderr[1] ** 2)
    assert bool(jnp.all(jnp.abs(g_iwae.mean[1] - g_dreg.mean[1]) < 4 * diff_se))
    assert_within_stderr(type(g_dreg)(g_dreg.mean[0], g_dreg.stderr[0], g_dreg.n),
                         g_iwae.mean[0], z=4, extra_bias=4 * g_iwae.stderr[0])
    assert_variance_reduced(type(g_iwae)(g_iwae.mean[1], g_iwae.stderr[1], g_iwae.n),
                            type(g_dreg)(g_dreg.mean[1], g_dreg.stderr[1], g_dreg.n), 2.0)


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


def test_hierarchical_ordering_at_fixed_parameters():
    hg = vi.HierarchicalGuide(aux=lambda phi: dist.Normal(0.0, 1.0),
                              conditional=lambda u, phi: dist.Normal(phi[0] + u, jnp.exp(phi[1])),
                              reverse=lambda z, phi: dist.Normal(0.0, 1.0))
    p = (THETA, jnp.array([0.3, -1.0]))
    vals = [vi.hierarchical_elbo(log_joint, hg, num_inner=n, num_outer=k).grad_estimate(p, K0, 1500)[0]
            for n, k in ((1, 1), (5, 1), (5, 5))]
    for a, b in zip(vals, vals[1:]):
        assert float(a.mean + 3 * a.stderr) < float(b.mean - 3 * b.stderr)
    assert float(vals[-1].mean - 3 * vals[-1].stderr) < LOG_EVIDENCE


def test_fit_elbo_recovers_posterior():
    fixed_prior = lambda z, theta: log_joint(z, 0.0)  # noqa: E731  (only the guide is fitted)
    res = vi.fit(vi.elbo(fixed_prior, guide), ((), jnp.zeros(2)), K0, num_steps=600,
                 optimizer=optax.adam(0.05), num_samples=8, progress=False)
    assert_close(res.params[1], POSTERIOR, atol=0.12)
    assert res.values.shape == (600,)


def test_bad_inputs():
    with pytest.raises(ValueError, match="K must be at least 1"):
        vi.iwae(log_joint, guide, 0)
    with pytest.raises(ValueError, match="K must be at least 1"):
        vi.diwhvi(log_joint, None, 5, 0)
    with pytest.raises(ValueError, match="VIMCO needs K >= 2"):
        vi.vimco(log_joint, guide, 1)
    with pytest.raises(ValueError, match="pair \\(theta, phi\\)"):
        vi.elbo(log_joint, guide).grad_estimate(jnp.zeros(2), K0, 10)
    with pytest.raises(ValueError, match="sample site 'z': strategy 'reparam'"):
        vi.elbo(log_joint_binary, guide_binary).grad_estimate(((), PHI_B), K0, 10)
