r"""Exact gradients by enumerating a finite support.

.. math::
   \nabla_\theta \mathbb E_{p_\theta}[f(x,\theta)] = \nabla_\theta \sum_{v} p_\theta(v)\, f(v,\theta)

(the ``flip_enum`` / ``categorical_enum`` strategies of ADEV, Lew et al. POPL 2023; Becker et al. PLDI 2024).
"""

from __future__ import annotations

import itertools
import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ulam.estimate import Estimate
from ulam import checks
from ulam.grad import common as C

__all__ = ["enumeration_gradient", "support_values"]


def support_values(d) -> np.ndarray:
    """The finite support of one coordinate of ``d`` as a host array (Bernoulli, Categorical, Binomial).

    Example:
      >>> import jax.numpy as jnp, numpyro.distributions as dist
      >>> from ulam.grad import support_values
      >>> support_values(dist.Categorical(logits=jnp.zeros(3))).tolist()
      [0, 1, 2]
    """
    while type(d).__name__ in ("ExpandedDistribution", "Independent", "MaskedDistribution") and hasattr(d, "base_dist"):
        d = d.base_dist
    name = type(d).__name__
    if name.startswith("Bernoulli"):
        return np.array([0, 1])
    if name.startswith("Categorical"):
        return np.arange(d.probs.shape[-1] if hasattr(d, "probs") else d.logits.shape[-1])
    if name.startswith("Binomial"):
        total = np.asarray(d.total_count)
        if total.ndim and not np.all(total == total.flat[0]):
            raise ValueError("distribution: enumeration needs the same total_count for every coordinate")
        return np.arange(int(total.flat[0]) + 1)
    if hasattr(d, "enumerate_support") and getattr(d, "has_enumerate_support", False):
        try:
            return np.asarray(d.enumerate_support(expand=False)).reshape(-1)
        except Exception:
            pass
    raise TypeError(f"distribution: {name} has no finite support to enumerate")


@C.compiled
def enumeration_gradient(
    f: Callable,
    distribution: Callable,
    params,
    *,
    max_configurations: int = 1 << 16,
) -> Estimate:
    r"""Exact :math:`\nabla_\theta E_{p_\theta}[f(x,\theta)]` by summing over every configuration.

    For a batch of ``K`` independent coordinates with ``S`` values each, the sum has ``S**K`` terms
    (refused above ``max_configurations``). The returned Estimate has zero standard error, ``n`` =
    the number of configurations and the exact expectation in ``info['value']``.

    Example:
      >>> import jax, jax.numpy as jnp, numpyro.distributions as dist
      >>> from ulam.grad import enumeration_gradient
      >>> est = enumeration_gradient(lambda b, th: (b - 0.45) ** 2, lambda th: dist.Bernoulli(logits=th), 0.0)
      >>> float(est.mean)  # 0.1 * s (1 - s) at s = 1/2
      0.025...
    """
    checks.function("f", f, "a function f(x, params) -> scalar")
    checks.count("max_configurations", max_configurations)
    C.check_params(params)
    d = C.make_distribution(distribution, params)
    if tuple(d.event_shape) != ():
        raise ValueError(f"distribution: enumeration needs a univariate family (event_shape ()), got {d.event_shape}")
    sup = support_values(d)
    batch = tuple(d.batch_shape)
    K = math.prod(batch)
    total = len(sup) ** K
    if total > max_configurations:
        raise ValueError(
            f"distribution: enumerating {len(sup)}^{K} = {total} configurations exceeds max_configurations="
            f"{max_configurations}; use a Monte Carlo estimator or raise the limit"
        )
    idx = np.array(list(itertools.product(range(len(sup)), repeat=K)), dtype=np.int32).reshape(total, K)
    sample_dtype = jax.eval_shape(lambda k: d.sample(k), jax.random.key(0)).dtype
    grid = jnp.asarray(sup[idx].reshape((total,) + batch), dtype=sample_dtype)

    def expectation(th):
        dd = distribution(th)
        logp = jax.vmap(lambda x: jnp.sum(C.log_prob(dd, x)))(grid)
        fv = jax.vmap(lambda x: C.scalar_value(f, x, th))(grid)
        return jnp.sum(jnp.exp(logp) * fv)

    value, grad = jax.value_and_grad(expectation)(params)
    est = C.zero_estimate(grad, total)
    est.info = {"value": value, "value_stderr": jnp.zeros_like(value)}
    return est
