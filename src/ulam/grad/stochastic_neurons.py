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

The layer functions (``bernoulli_straight_through``, ``stochastic_times_smooth``, ``noisy_rectifier``,
and :func:`binary_layer`, which picks one of them by name, with :func:`binary_layer_deterministic` for
test time and :func:`reinforce_surrogate` for the REINFORCE unit) are for use inside networks with
``jax.grad``; the ``*_gradient`` functions estimate
:math:`\nabla_a E[L(h)]` for a loss of the layer output and return an :class:`~ulam.Estimate`.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

from ulam import checks
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
    "BINARY_UNITS",
    "binary_layer",
    "binary_layer_deterministic",
    "reinforce_surrogate",
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
    checks.prng_key(key)
    checks.positive("scale", scale, do="the logistic noise scale s must be > 0")
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


#: Names accepted by :func:`binary_layer` and :func:`binary_layer_deterministic`.
BINARY_UNITS = (
    "reinforce",
    "straight_through_identity",
    "straight_through_sigmoid",
    "stochastic_times_smooth",
    "noisy_rectifier",
    "sigmoid",
)


def binary_layer(key, logits, unit: str):
    r"""One layer of stochastic units for use inside a network: returns ``(h, log_prob)``.

    ``unit`` is one of :data:`BINARY_UNITS` (Bengio, Léonard & Courville 2013, arXiv 1308.3432):

    * ``'reinforce'``: a hard sample :math:`h\sim\mathrm{Bern}(\sigma(a))` with no gradient through it,
      and ``log_prob`` :math:`=\sum_i h_i a_i - \mathrm{softplus}(a_i)` summed over the last axis (one
      figure per row), to be fed with the per-row losses to :func:`reinforce_surrogate`;
    * ``'straight_through_identity'`` / ``'straight_through_sigmoid'``: :func:`bernoulli_straight_through`;
    * ``'stochastic_times_smooth'``: :func:`stochastic_times_smooth`;
    * ``'noisy_rectifier'``: :func:`noisy_rectifier`;
    * ``'sigmoid'``: the deterministic :math:`\sigma(a)` (no noise; a reference).

    For every unit but ``'reinforce'``, ``log_prob`` is ``0.0`` and the gradient flows through ``h``.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.grad.stochastic_neurons import binary_layer
      >>> h, logp = binary_layer(jax.random.key(0), jnp.zeros((2, 3)), "reinforce")
      >>> h.shape, logp.shape
      ((2, 3), (2,))
    """
    checks.one_of("unit", unit, BINARY_UNITS)
    logits = _check_logits(logits)
    if unit == "reinforce":
        h = jax.lax.stop_gradient(jax.random.bernoulli(key, jax.nn.sigmoid(logits)).astype(logits.dtype))
        return h, jnp.sum(h * logits - jax.nn.softplus(logits), axis=-1)
    if unit == "straight_through_identity":
        return bernoulli_straight_through(key, logits, "identity"), 0.0
    if unit == "straight_through_sigmoid":
        return bernoulli_straight_through(key, logits, "sigmoid"), 0.0
    if unit == "stochastic_times_smooth":
        return stochastic_times_smooth(key, logits), 0.0
    if unit == "noisy_rectifier":
        return noisy_rectifier(key, logits), 0.0
    return jax.nn.sigmoid(logits), 0.0


def binary_layer_deterministic(logits, unit: str):
    r"""The noise-free version of a :func:`binary_layer` unit, for test time.

    Binary units (REINFORCE, straight-through) threshold at :math:`p = 1/2` (:math:`h = [a > 0]`);
    the noisy rectifier drops its noise (:math:`\max(0, a)`); the stochastic-times-smooth unit and
    the sigmoid return :math:`\sigma(a)` (the STS unit's mean).

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.grad.stochastic_neurons import binary_layer_deterministic
      >>> binary_layer_deterministic(jnp.array([-1.0, 2.0]), "reinforce").tolist()
      [0.0, 1.0]
    """
    checks.one_of("unit", unit, BINARY_UNITS)
    logits = _check_logits(logits)
    if unit == "noisy_rectifier":
        return jnp.maximum(logits, 0.0)
    if unit in ("sigmoid", "stochastic_times_smooth"):
        return jax.nn.sigmoid(logits)
    return (logits > 0).astype(logits.dtype)


def reinforce_surrogate(losses, log_probs):
    r"""Surrogate objective whose gradient is REINFORCE with a leave-one-out baseline (minimise it with ``jax.grad``).

    For a minibatch of :math:`B \ge 2` rows with losses :math:`\ell_j` and log-probabilities
    :math:`\log p(h_j)` of their sampled units (from :func:`binary_layer` with ``'reinforce'``),

    .. math:: S = \frac1B\sum_j \ell_j + \mathrm{sg}(\ell_j - b_j)\,\log p(h_j),\qquad
              b_j = \frac{1}{B-1}\sum_{i\ne j}\ell_i,

    (``sg`` = stop-gradient), so :math:`\nabla S` adds to the pathwise gradient of the losses the score
    term :math:`(\ell_j - b_j)\nabla\log p(h_j)`, unbiased for :math:`\nabla E[\ell]` because
    :math:`b_j` does not depend on :math:`h_j` (Williams 1992; Kool et al. 2019). Only the gradient is
    meaningful: the value is the mean loss plus the (stopped) score term.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.grad.stochastic_neurons import reinforce_surrogate
      >>> jax.grad(lambda lp: reinforce_surrogate(jnp.array([1.0, 3.0]), lp))(jnp.zeros(2)).tolist()
      [-1.0, 1.0]
    """
    losses = jnp.asarray(losses)
    log_probs = jnp.asarray(log_probs)
    if losses.ndim != 1 or losses.shape[0] < 2:
        raise ValueError(checks.message("losses", "a 1-D array of at least 2 per-row losses",
                                        f"shape {losses.shape}", "pass one loss per minibatch row"))
    if log_probs.shape != losses.shape:
        raise ValueError(checks.message("log_probs", f"shape {losses.shape} (one per loss)",
                                        f"shape {log_probs.shape}", "sum the log-probabilities over each row's units"))
    b = (jnp.sum(losses) - losses) / (losses.shape[0] - 1)
    return jnp.mean(losses + jax.lax.stop_gradient(losses - b) * log_probs)
