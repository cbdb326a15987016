r"""Continuous relaxations of discrete choices: Gumbel-softmax / Concrete, and straight-through Gumbel.

Gumbel-softmax (Jang, Gu & Poole 2017) = Concrete (Maddison, Mnih & Teh 2017):
:math:`y = \mathrm{softmax}((\ell + G)/\tau)`, :math:`G_k \sim \mathrm{Gumbel}(0,1)`; as
:math:`\tau\to 0` it tends to the one-hot of a Categorical(softmax ℓ) draw. Binary Concrete:
:math:`y = \sigma((\ell + \log u - \log(1-u))/\tau)`. Straight-through Gumbel uses the hard
one-hot forward and the relaxed sample's gradient backward. All are *biased* estimators of the
discrete objective's gradient (they differentiate the relaxed objective).
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from ulam.estimate import Estimate
from ulam.grad import _common as C

__all__ = [
    "gumbel_softmax_sample",
    "straight_through_gumbel_sample",
    "relaxed_bernoulli_sample",
    "straight_through_relaxed_bernoulli_sample",
    "gumbel_softmax_gradient",
]


def gumbel_softmax_sample(key, logits, temperature: float = 0.5):
    """A relaxed one-hot sample ``softmax((logits + Gumbel)/temperature)`` over the last axis."""
    g = jax.random.gumbel(key, jnp.shape(logits))
    return jax.nn.softmax((logits + g) / temperature, axis=-1)


def straight_through_gumbel_sample(key, logits, temperature: float = 0.5):
    """Hard one-hot forward, Gumbel-softmax gradient backward (Jang et al. 2017, §2.2)."""
    y = gumbel_softmax_sample(key, logits, temperature)
    hard = jax.nn.one_hot(jnp.argmax(y, axis=-1), y.shape[-1], dtype=y.dtype)
    return y + jax.lax.stop_gradient(hard - y)


def relaxed_bernoulli_sample(key, logits, temperature: float = 0.5):
    """Binary Concrete sample in (0, 1): ``sigmoid((logits + logistic noise)/temperature)``."""
    return jax.nn.sigmoid((logits + jax.random.logistic(key, jnp.shape(logits))) / temperature)


def straight_through_relaxed_bernoulli_sample(key, logits, temperature: float = 0.5):
    """Hard 0/1 forward, binary-Concrete gradient backward."""
    y = relaxed_bernoulli_sample(key, logits, temperature)
    return y + jax.lax.stop_gradient(jnp.round(y) - y)


@C.compiled
def gumbel_softmax_gradient(
    f: Callable,
    distribution: Callable,
    params,
    key: jax.Array,
    num_samples: int,
    *,
    temperature: float = 0.5,
    straight_through: bool = False,
) -> Estimate:
    r"""Gumbel-softmax / Concrete (optionally straight-through) gradient estimate. Biased.

    ``distribution(params)`` must be a Bernoulli or Categorical with logits. ``f(y, params)``
    receives the relaxed sample: a value in [0, 1] per Bernoulli coordinate, or a (relaxed)
    one-hot vector on a new last axis for a Categorical. With ``straight_through=True`` ``f`` sees
    exact 0/1 values (one-hot), and the gradient is the relaxed one.

    Example:
      >>> import jax, numpyro.distributions as dist
      >>> from ulam.grad import gumbel_softmax_gradient
      >>> est = gumbel_softmax_gradient(lambda y, th: (y - 0.45) ** 2, lambda th: dist.Bernoulli(logits=th),
      ...                               0.0, jax.random.key(0), 1000, temperature=0.5)
    """
    n = C.check_num_samples(num_samples)
    C.check_params(params)
    if not temperature > 0:
        raise ValueError(f"temperature: must be positive, got {temperature}")
    d = C.make_distribution(distribution, params)
    name = type(d).__name__
    if name.startswith("Bernoulli"):
        sampler = straight_through_relaxed_bernoulli_sample if straight_through else relaxed_bernoulli_sample
    elif name.startswith("Categorical"):
        sampler = straight_through_gumbel_sample if straight_through else gumbel_softmax_sample
    else:
        raise TypeError(f"distribution: Gumbel-softmax needs a Bernoulli or Categorical, got {name}")
    keys = jax.random.split(key, n)

    def one(k):
        def obj(th):
            y = sampler(k, distribution(th).logits, temperature)
            return C.scalar_value(f, y, th)

        return jax.value_and_grad(obj)(params)

    vals, terms = jax.vmap(one)(keys)
    return C.estimate_from_terms(terms, vals, info={"biased": jnp.asarray(True)})
