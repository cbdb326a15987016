"""Stochastic binary-neuron layers (Bengio, Léonard & Courville 2013) against exact enumeration.

Covers the network-layer API of ``ulam.grad.stochastic_neurons``: ``binary_layer`` (one of the
paper's units by name), ``binary_layer_deterministic`` and ``reinforce_surrogate``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest

from ulam.grad import enumeration_gradient
from ulam.grad import stochastic_neurons as SN

W = jnp.array([[0.7, -1.2, 0.4], [0.3, 0.9, -0.8]])
Y = jnp.array([0.5, -0.2])
LOGITS = jnp.array([0.4, -0.9, 1.3])


def loss(h):
    return jnp.sum((jnp.tanh(W @ h) - Y) ** 2)


def exact_gradient():
    return np.asarray(enumeration_gradient(lambda h, a: loss(h.astype(jnp.float32)),
                                           lambda a: dist.Bernoulli(logits=a), LOGITS).mean)


def test_reinforce_surrogate_gradient_is_unbiased_against_enumeration():
    rows, reps = 8, 4000

    def one(key):
        def surrogate(a):
            h, logp = SN.binary_layer(key, jnp.broadcast_to(a, (rows, 3)), "reinforce")
            return SN.reinforce_surrogate(jax.vmap(loss)(h), logp)

        return jax.grad(surrogate)(LOGITS)

    g = np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.key(11), reps)), dtype=float)
    mean, se = g.mean(0), g.std(0, ddof=1) / np.sqrt(reps)
    z = np.abs(mean - exact_gradient()) / se
    assert np.all(z <= 3.0), (mean, exact_gradient(), z)


def test_reinforce_surrogate_value_and_log_prob_are_as_documented():
    key = jax.random.key(2)
    a = jnp.broadcast_to(LOGITS, (5, 3))
    h, logp = SN.binary_layer(key, a, "reinforce")
    assert bool(jnp.all((h == 0) | (h == 1)))
    np.testing.assert_allclose(logp, jnp.sum(dist.Bernoulli(logits=a).log_prob(h), -1), rtol=1e-6)
    losses = jax.vmap(loss)(h)
    baseline = (jnp.sum(losses) - losses) / 4
    np.testing.assert_allclose(SN.reinforce_surrogate(losses, logp), jnp.mean(losses + (losses - baseline) * logp),
                               rtol=1e-6)


def test_layer_units_match_the_layer_functions_bit_for_bit():
    key, a = jax.random.key(4), jnp.linspace(-2.0, 2.0, 6)
    same = {
        "straight_through_identity": SN.bernoulli_straight_through(key, a, "identity"),
        "straight_through_sigmoid": SN.bernoulli_straight_through(key, a, "sigmoid"),
        "stochastic_times_smooth": SN.stochastic_times_smooth(key, a),
        "noisy_rectifier": SN.noisy_rectifier(key, a),
        "sigmoid": jax.nn.sigmoid(a),
    }
    for unit, expected in same.items():
        h, logp = SN.binary_layer(key, a, unit)
        assert bool(jnp.array_equal(h, expected)) and logp == 0.0, unit


def test_deterministic_units():
    a = jnp.array([-1.0, 0.5, 2.0])
    assert SN.binary_layer_deterministic(a, "straight_through_sigmoid").tolist() == [0.0, 1.0, 1.0]
    assert SN.binary_layer_deterministic(a, "noisy_rectifier").tolist() == [0.0, 0.5, 2.0]
    np.testing.assert_allclose(SN.binary_layer_deterministic(a, "stochastic_times_smooth"), jax.nn.sigmoid(a))


def test_bad_inputs_are_refused_with_the_checks_message():
    with pytest.raises(ValueError, match=r"unit: expected one of .*'reinforce'.*got 'reinforc'; did you mean 'reinforce'"):
        SN.binary_layer(jax.random.key(0), jnp.zeros(3), "reinforc")
    with pytest.raises(ValueError, match=r"unit: expected one of"):
        SN.binary_layer_deterministic(jnp.zeros(3), "hard")
    with pytest.raises(ValueError, match=r"losses: expected a 1-D array of at least 2 per-row losses, got shape \(1,\)"):
        SN.reinforce_surrogate(jnp.ones(1), jnp.ones(1))
    with pytest.raises(ValueError, match=r"log_probs: expected shape \(3,\) \(one per loss\), got shape \(2,\)"):
        SN.reinforce_surrogate(jnp.ones(3), jnp.ones(2))
