r"""Gradients through stochastic binary neurons: the four families of Bengio, Léonard & Courville (2013).

*Estimating or Propagating Gradients Through Stochastic Neurons for Conditional Computation*
(arXiv 1308.3432). A binary stochastic neuron fires :math:`h\sim\mathrm{Bern}(p)`, :math:`p=\sigma(a)`.

1. REINFORCE-type, unbiased: :math:`\hat g = (h - p)(L - \bar L)`, with the variance-minimising
   per-unit baseline :math:`\bar L = E[(h-p)^2 L]/E[(h-p)^2]`
   (:func:`binary_neuron_reinforce_gradient`).
2. Decomposition / stochastic-times-smooth (STS): :math:`h = b\sqrt{p}`, :math:`b\sim\mathrm{Bern}(\sqrt p)`,
   backprop through the smooth factor :math:`\sqrt p` only (a first-order approximation; biased in
   general) (:func:`stochastic_times_smooth`, :func:`decomposition_gradient`).
3. Noise injection: :math:`h = \max(0, a + z)` with logistic :math:`z` (the noisy rectifier),
   differentiated pathwise (:func:`noisy_rectifier`, :func:`noise_injection_gradient`).
4. Straight-through (ST): forward the hard sample, backward as if :math:`h = a` (identity) or
   :math:`h = \sigma(a)` (sigmoid-adjusted) (:func:`bernoulli_straight_through`,
   :func:`straight_through_gradient`). Biased.

The layer functions (``bernoulli_straight_through``, ``stochastic_times_smooth``, ``noisy_rectifier``)
are for use inside networks with ``jax.grad``; the ``*_gradient`` functions estimate
:math:`\nabla_a E[L(h)]` for a loss of the layer output and return an :class:`~ulam.Estimate`.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from ulam.estimate import Estimate
from ulam.grad import _common as C
from ulam.grad.score_function import score_function_gradient

__all__ = [
    "bernoulli_straight_through",
    "stochastic_times_smooth",
    "noisy_rectifier",
    "binary_neuron_reinforce_gradient",
    "straight_through_gradient",
    "decomposition_gradient",
    "noise_injection_gradient",
]


def bernoulli_straight_through(key, logits, variant: str = "sigmoid"):
    """Hard ``h ~ Bernoulli(sigmoid(logits))`` forward; backward ``dh/da = 1`` (``'identity'``) or ``sigmoid'(a)``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.grad import bernoulli_straight_through
      >>> h = bernoulli_straight_through(jax.random.key(0), jnp.zeros(4))
      >>> bool(jnp.all((h == 0) | (h == 1)))
      True
    """
    p = jax.nn.sigmoid(logits)
    h = jax.random.bernoulli(key, jax.lax.stop_gradient(p)).astype(p.dtype)
    if variant == "identity":
        return logits + jax.lax.stop_gradient(h - logits)
    if variant == "sigmoid":
        return p + jax.lax.stop_gradient(h - p)
    raise ValueError(f"variant: expected 'identity' or 'sigmoid', got {variant!r}")


def stochastic_times_smooth(key, logits):
    r"""STS unit: :math:`h = b\sqrt{p}`, :math:`b\sim\mathrm{Bern}(\sqrt p)`, so :math:`E[h] = p = \sigma(a)`.

    The gradient flows through :math:`\sqrt p` only (Bengio et al. 2013, §4).
    """
    sp = jnp.sqrt(jax.nn.sigmoid(logits))
    b = jax.random.bernoulli(key, jax.lax.stop_gradient(sp)).astype(sp.dtype)
    return b * sp


def noisy_rectifier(key, logits, scale: float = 1.0):
    r"""Noisy rectifier :math:`h = \max(0, a + z)`, :math:`z\sim\mathrm{Logistic}(0, s)`: fires with prob :math:`\sigma(a/s)`."""
    return jax.nn.relu(logits + scale * jax.random.logistic(key, jnp.shape(logits)))


class _BernoulliLogits(dist.BernoulliLogits):
    # numpyro's BernoulliLogits.log_prob has a wrong gradient at logits == 0 exactly (a kink in its
    # clip/abs formulation gives d/da = h instead of h - 1/2); softplus is smooth there.
    def log_prob(self, value):
        return value * self.logits - jax.nn.softplus(self.logits)


def _check_logits(logits):
    logits = jnp.asarray(logits)
    if not jnp.issubdtype(logits.dtype, jnp.floating):
        raise TypeError(f"logits: must be floating point, got {logits.dtype}")
    return logits


def _per_sample(layer, loss, logits, key, n):
    keys = jax.random.split(key, n)

    def one(k):
        return jax.value_and_grad(lambda a: C.scalar_value(loss, layer(k, a), name="loss"))(logits)

    vals, terms = jax.vmap(one)(keys)
    return C.estimate_from_terms(terms, vals)


@C.compiled
def binary_neuron_reinforce_gradient(
    loss: Callable, logits, key: jax.Array, num_samples: int, *, baseline="optimal"
) -> Estimate:
    r"""Unbiased :math:`\nabla_a E_{h\sim\mathrm{Bern}(\sigma(a))}[L(h)]`: :math:`\hat g = (h-p)(L - \bar L)`.

    ``baseline='optimal'`` is the paper's variance-minimising per-unit baseline (estimated
    leave-one-out from the batch; use :func:`~ulam.grad.optimal_baseline_ema` for the running
    average). Any baseline accepted by :func:`~ulam.grad.score_function_gradient` works.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.grad import binary_neuron_reinforce_gradient
      >>> est = binary_neuron_reinforce_gradient(lambda h: jnp.sum((h - 0.3) ** 2), jnp.zeros(2),
      ...                                        jax.random.key(0), 1000)
    """
    logits = _check_logits(logits)
    return score_function_gradient(
        lambda h, a: C.scalar_value(loss, h, name="loss"),
        lambda a: _BernoulliLogits(logits=a),
        logits,
        key,
        num_samples,
        baseline=baseline,
    )


@C.compiled
def straight_through_gradient(loss: Callable, logits, key: jax.Array, num_samples: int, *, variant="sigmoid") -> Estimate:
    """Straight-through estimate of :math:`\\nabla_a E[L(h)]` (biased; ``variant`` 'identity' or 'sigmoid')."""
    logits = _check_logits(logits)
    if variant not in ("identity", "sigmoid"):
        raise ValueError(f"variant: expected 'identity' or 'sigmoid', got {variant!r}")
    return _per_sample(lambda k, a: bernoulli_straight_through(k, a, variant), loss, logits, key, C.check_num_samples(num_samples))


@C.compiled
def decomposition_gradient(loss: Callable, logits, key: jax.Array, num_samples: int) -> Estimate:
    """Stochastic-times-smooth estimate: backprop of ``L(b sqrt(p))`` through ``sqrt(p)`` (gradient of the STS unit's loss, biased in general)."""
    logits = _check_logits(logits)
    return _per_sample(stochastic_times_smooth, loss, logits, key, C.check_num_samples(num_samples))


@C.compiled
def noise_injection_gradient(loss: Callable, logits, key: jax.Array, num_samples: int, *, scale: float = 1.0) -> Estimate:
    """Pathwise gradient of ``E[L(max(0, a + z))]`` for the noisy rectifier (unbiased for its own objective)."""
    logits = _check_logits(logits)
    return _per_sample(lambda k, a: noisy_rectifier(k, a, scale), loss, logits, key, C.check_num_samples(num_samples))
