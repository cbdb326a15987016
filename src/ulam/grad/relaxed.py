r"""Continuous relaxations of discrete choices: Gumbel-softmax / Concrete, and straight-through Gumbel.

Gumbel-softmax (Jang, Gu & Poole 2017) = Concrete (Maddison, Mnih & Teh 2017):
:math:`y = \mathrm{softmax}((\ell + G)/\tau)`, :math:`G_k \sim \mathrm{Gumbel}(0,1)`; as
:math:`\tau\to 0` it tends to the one-hot of a Categorical(softmax ℓ) draw. Binary Concrete:
:math:`y = \sigma((\ell + \log u - \log(1-u))/\tau)`. Straight-through Gumbel uses the hard
one-hot forward and the relaxed sample's gradient backward. All are *biased* estimators of the
discrete objective's gradient (they differentiate the relaxed objective).
"""

from __future__ import annotations

import warnings
from typing import Callable

import jax
import jax.numpy as jnp

from ulam.estimate import Estimate
from ulam import checks
from ulam.grad import common as C

__all__ = [
    "gumbel_softmax_sample",
    "straight_through_gumbel_sample",
    "relaxed_bernoulli_sample",
    "straight_through_relaxed_bernoulli_sample",
    "gumbel_softmax_gradient",
]


def _looks_like_key(x) -> bool:
    dtype = getattr(x, "dtype", None)
    return dtype is not None and (jnp.issubdtype(dtype, jax.dtypes.prng_key) or (dtype == jnp.uint32 and jnp.shape(x) == (2,)))


def _logits_key(logits, key, fn: str):
    """Accept the old order ``fn(key, logits, ...)`` for one release, with a DeprecationWarning."""
    if _looks_like_key(logits) and not _looks_like_key(key):
        warnings.warn(f"{fn}(key, logits, ...) is deprecated: the key now comes after the logits, "
                      f"{fn}(logits, key, ...)", DeprecationWarning, stacklevel=3)
        logits, key = key, logits
    checks.prng_key(key)
    return jnp.asarray(logits), key


def _gumbel(logits, key, temperature):
    g = jax.random.gumbel(key, jnp.shape(logits))
    return jax.nn.softmax((logits + g) / temperature, axis=-1)


def _st_gumbel(logits, key, temperature):
    y = _gumbel(logits, key, temperature)
    hard = jax.nn.one_hot(jnp.argmax(y, axis=-1), y.shape[-1], dtype=y.dtype)
    return y + jax.lax.stop_gradient(hard - y)


def _concrete(logits, key, temperature):
    return jax.nn.sigmoid((logits + jax.random.logistic(key, jnp.shape(logits))) / temperature)


def _st_concrete(logits, key, temperature):
    y = _concrete(logits, key, temperature)
    return y + jax.lax.stop_gradient(jnp.round(y) - y)


def gumbel_softmax_sample(logits, key, temperature: float = 0.5):
    """A relaxed one-hot sample ``softmax((logits + Gumbel)/temperature)`` over the last axis (Jang et al. 2017).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> y = gumbel_softmax_sample(jnp.zeros(3), jax.random.key(0), 0.5)
      >>> y.shape, bool(jnp.isclose(y.sum(), 1.0))
      ((3,), True)
    """
    logits, key = _logits_key(logits, key, "gumbel_softmax_sample")
    return _gumbel(logits, key, checks.positive("temperature", temperature))


def straight_through_gumbel_sample(logits, key, temperature: float = 0.5):
    """Hard one-hot forward, Gumbel-softmax gradient backward (Jang et al. 2017, §2.2).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> straight_through_gumbel_sample(jnp.array([0.0, 5.0, 0.0]), jax.random.key(0)).tolist()
      [0.0, 1.0, 0.0]
    """
    logits, key = _logits_key(logits, key, "straight_through_gumbel_sample")
    return _st_gumbel(logits, key, checks.positive("temperature", temperature))


def relaxed_bernoulli_sample(logits, key, temperature: float = 0.5):
    """Binary Concrete sample in (0, 1): ``sigmoid((logits + logistic noise)/temperature)`` (Maddison et al. 2017).

    Example:
      >>> import jax, jax.numpy as jnp
      >>> y = relaxed_bernoulli_sample(jnp.zeros(4), jax.random.key(0))
      >>> bool(jnp.all((y > 0) & (y < 1)))
      True
    """
    logits, key = _logits_key(logits, key, "relaxed_bernoulli_sample")
    return _concrete(logits, key, checks.positive("temperature", temperature))


def straight_through_relaxed_bernoulli_sample(logits, key, temperature: float = 0.5):
    """Hard 0/1 forward, binary-Concrete gradient backward.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> straight_through_relaxed_bernoulli_sample(jnp.array([-9.0, 9.0]), jax.random.key(0)).tolist()
      [0.0, 1.0]
    """
    logits, key = _logits_key(logits, key, "straight_through_relaxed_bernoulli_sample")
    return _st_concrete(logits, key, checks.positive("temperature", temperature))


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
    n = C.check_estimator_args(f, distribution, key, num_samples)
    C.check_params(params)
    checks.positive("temperature", temperature)
    d = C.make_distribution(distribution, params)
    name = type(d).__name__
    if name.startswith("Bernoulli"):
        sampler = _st_concrete if straight_through else _concrete
    elif name.startswith("Categorical"):
        sampler = _st_gumbel if straight_through else _gumbel
    else:
        raise TypeError(checks.message("distribution", "a Bernoulli or Categorical (Gumbel-softmax)", name))
    keys = jax.random.split(key, n)

    def one(k):
        def obj(th):
            y = sampler(distribution(th).logits, k, temperature)
            return C.scalar_value(f, y, th)

        return jax.value_and_grad(obj)(params)

    vals, terms = jax.vmap(one)(keys)
    return C.estimate_from_terms(terms, vals, info={"biased": jnp.asarray(True)})
