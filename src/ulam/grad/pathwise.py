r"""Pathwise (reparameterization) gradients, explicit and implicit.

.. math::
   \nabla_\theta \mathbb E_{p_\theta}[f(x,\theta)]
   = \mathbb E_{\epsilon}\big[\nabla_\theta f(g(\epsilon,\theta),\theta)\big],\qquad x = g(\epsilon,\theta)

(Kingma & Welling 2014; Rezende et al. 2014). For Gamma, Beta and Dirichlet the sampler is not an
explicit ``g``; JAX differentiates ``jax.random.gamma`` implicitly,
:math:`\nabla_\theta x = -\nabla_\theta F(x;\theta)/p_\theta(x)` (implicit reparameterization,
Figurnov, Mohamed & Mnih 2018), and numpyro's Gamma/Beta/Dirichlet samplers are built on it.
"""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from ulam.estimate import Estimate
from ulam.grad import common as C

__all__ = ["pathwise_gradient", "implicit_pathwise_gradient", "IMPLICIT_FAMILIES"]

IMPLICIT_FAMILIES = ("Gamma", "Beta", "Dirichlet", "Chi2", "StudentT", "InverseGamma")


def _check_continuous(d, what: str = "distribution"):
    if C.is_discrete(d):
        raise ValueError(
            f"{what}: pathwise (reparameterization) gradients need a continuous distribution, but "
            f"{type(d).__name__} is discrete; use score_function_gradient, measure_valued_gradient, "
            "enumeration_gradient or a relaxation (gumbel_softmax_gradient)"
        )
    if getattr(d, "has_rsample", True) is False:
        raise ValueError(f"{what}: {type(d).__name__} has no reparameterized sampler (has_rsample is False)")


@C.compiled
def pathwise_gradient(
    f: Callable,
    distribution: Callable,
    params,
    key: jax.Array,
    num_samples: int,
    *,
    check_differentiable: bool = True,
) -> Estimate:
    r"""Reparameterization estimate of :math:`\nabla_\theta E_{p_\theta}[f(x,\theta)]`.

    Per sample :math:`g_i = \nabla_\theta f(g(\epsilon_i,\theta),\theta)`; mean and per-coordinate
    standard error over ``num_samples`` draws. Works with implicitly reparameterized samplers
    (Gamma, Beta, Dirichlet via ``jax.random.gamma``).

    Raises ``ValueError`` for a discrete distribution, and (with ``check_differentiable``) when
    ``f``'s derivative in ``x`` is identically zero (a step or rounding), which would make the
    estimate a silent, biased zero.

    Example:
      >>> import jax, numpyro.distributions as dist
      >>> from ulam.grad import pathwise_gradient
      >>> est = pathwise_gradient(lambda x, th: x**2, lambda th: dist.Normal(th, 1.0), 1.0,
      ...                         jax.random.key(0), 10_000)
      >>> bool(abs(est.mean - 2.0) < 4 * est.stderr)
      True
    """
    n = C.check_estimator_args(f, distribution, key, num_samples)
    C.check_params(params)
    d = C.make_distribution(distribution, params)
    _check_continuous(d)
    C.scalar_value(lambda x, th: jax.eval_shape(f, x, th), jax.eval_shape(lambda k: d.sample(k), key), params,
                   allow_int=False)
    if check_differentiable:
        x_spec = jax.eval_shape(lambda k: d.sample(k), key)
        C.check_differentiable_in_x(f, x_spec, params)
    keys = jax.random.split(key, n)

    def one(k):
        def obj(th):
            dd = distribution(th)
            x = dd.rsample(k) if hasattr(dd, "rsample") else dd.sample(k)
            return C.scalar_value(f, x, th)

        return jax.value_and_grad(obj)(params)

    vals, terms = jax.vmap(one)(keys)
    return C.estimate_from_terms(terms, vals)


@C.compiled
def implicit_pathwise_gradient(f, distribution, params, key, num_samples, **kwargs) -> Estimate:
    r"""Implicit-reparameterization gradient (Figurnov, Mohamed & Mnih, NeurIPS 2018).

    :math:`\nabla_\theta x = -\nabla_\theta F_\theta(x) / p_\theta(x)` for a sampler without an explicit
    inverse CDF. For the families in ``IMPLICIT_FAMILIES`` JAX's gamma sampler already carries this
    derivative, so this is :func:`pathwise_gradient` with a check that the family is one of them.

    Example:
      >>> import jax, numpyro.distributions as dist
      >>> from ulam.grad import implicit_pathwise_gradient
      >>> est = implicit_pathwise_gradient(lambda x, a: x, lambda a: dist.Gamma(a, 1.0), 2.0,
      ...                                  jax.random.key(0), 10_000)   # d/da E[x] = 1
      >>> bool(abs(est.mean - 1.0) < 4 * est.stderr)
      True
    """
    d = C.make_distribution(distribution, params)
    if type(d).__name__ not in IMPLICIT_FAMILIES:
        raise ValueError(
            f"distribution: implicit reparameterization is wired for {IMPLICIT_FAMILIES}, got {type(d).__name__}; "
            "use pathwise_gradient for explicitly reparameterized families"
        )
    return pathwise_gradient(f, distribution, params, key, num_samples, **kwargs)
