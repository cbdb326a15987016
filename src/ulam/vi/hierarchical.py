r"""Hierarchical variational families with approximate marginalisation: HVI, IWHVI, DIWHVI.

A hierarchical guide draws an auxiliary :math:`u\sim q_\phi(u)` and then :math:`z\sim q_\phi(z\mid u)`;
its marginal :math:`q_\phi(z)` is intractable. With a reverse model :math:`r_\phi(u\mid z)` and
:math:`u_0` the auxiliary value that produced :math:`z`, :math:`u_{1..N-1}\sim r(u\mid z)`,

.. math::
   \log\hat q(z) = \log\frac1N\sum_{i=0}^{N-1}\frac{q(u_i)\,q(z\mid u_i)}{r(u_i\mid z)},\qquad
   E[\log \hat q(z)] \ge \log q(z),

so :math:`\log p(x,z) - \log\hat q(z)` is still a lower bound on :math:`\log p(x)` (Ranganath, Tran &
Blei 2016 for N = 1, "HVI"; Sobolev & Vetrov 2019 for N > 1, "IWHVI"). Averaging K such weights
inside a log gives the doubly importance-weighted bound (DIWHVI). In Becker et al. (PLDI 2024)
this is ``vi.marginal(selection, q_aux, lambda: vi.sir(N))``: the density estimate is an
approximate marginalisation. Written as a :mod:`ulam.grad` program, so every choice has a strategy.
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

from ulam import checks
from ulam.grad.program import Strategy, reparam
from ulam.vi.objectives import (
    Objective,
    check_num_importance_samples,
    log_mean_exp,
    objective_from_program,
    summed_log_prob,
)

__all__ = ["HierarchicalGuide", "hierarchical_elbo", "hvi", "iwhvi", "diwhvi"]


class HierarchicalGuide(NamedTuple):
    """``aux(phi, *data)`` -> q(u); ``conditional(u, phi, *data)`` -> q(z|u); ``reverse(z, phi, *data)`` -> r(u|z).

    Example (a Normal location mixture, with the prior of ``u`` as its reverse model):
      >>> import jax.numpy as jnp, numpyro.distributions as dist
      >>> from ulam.vi import HierarchicalGuide
      >>> hg = HierarchicalGuide(aux=lambda phi: dist.Normal(0.0, 1.0),
      ...                        conditional=lambda u, phi: dist.Normal(phi[0] + u, jnp.exp(phi[1])),
      ...                        reverse=lambda z, phi: dist.Normal(0.0, 1.0))
      >>> hg
      HierarchicalGuide(aux, conditional, reverse)
    """

    aux: Callable
    conditional: Callable
    reverse: Callable

    def __repr__(self) -> str:
        return "HierarchicalGuide(aux, conditional, reverse)"


def hierarchical_elbo(
    log_joint: Callable,
    guide: HierarchicalGuide,
    *,
    num_inner: int = 1,
    num_importance_samples: int | None = None,
    aux_strategy: Strategy = reparam,
    strategy: Strategy = reparam,
    num_outer: int | None = None,
) -> Objective:
    r"""The doubly importance-weighted hierarchical bound with ``N = num_inner``, ``K = num_importance_samples``.

    ``N = K = 1`` is HVI; ``K = 1`` is IWHVI(N); both > 1 is DIWHVI(N, K). ``N`` counts the
    reverse-model draws inside the density estimate of :math:`q(z)`; ``K`` the IWAE-type outer
    importance samples (``num_outer`` is its deprecated name, one release). Sites are named
    ``u{k}``, ``z{k}`` and ``r{k}_{i}`` (inner draws from the reverse model, reparameterized).

    Example:
      >>> import jax, jax.numpy as jnp, numpyro.distributions as dist
      >>> from ulam.vi import hierarchical_elbo
      >>> from ulam.vi import HierarchicalGuide
      >>> hg = HierarchicalGuide(lambda phi: dist.Normal(0., 1.), lambda u, phi: dist.Normal(phi[0] + u, 1.),
      ...                        lambda z, phi: dist.Normal(0., 1.))
      >>> lj = lambda z, th: dist.Normal(0., 1.).log_prob(z)
      >>> obj = hierarchical_elbo(lj, hg, num_inner=2, num_importance_samples=2)
      >>> obj
      Objective('hvi(N=2,K=2)')
      >>> float(obj.value(((), jnp.zeros(2)), jax.random.key(0))) < 0.5
      True
    """
    checks.function("log_joint", log_joint, "a function log_joint(z, theta, *data) -> scalar")
    if not isinstance(guide, HierarchicalGuide):
        raise TypeError(checks.message("guide", "a HierarchicalGuide(aux, conditional, reverse)", type(guide).__name__))
    N = checks.count("num_inner", num_inner)
    if num_importance_samples is None and num_outer is None:
        num_importance_samples = 1
    K = check_num_importance_samples(num_importance_samples, num_particles=num_outer, fn="hierarchical_elbo")

    def program_of(*data):
        def program(t, params):
            theta, phi = params
            log_ws = []
            q_u = guide.aux(phi, *data)
            for k in range(K):
                u0 = t.sample(f"u{k}", q_u, aux_strategy)
                q_z = guide.conditional(u0, phi, *data)
                z = t.sample(f"z{k}", q_z, strategy)
                r = guide.reverse(z, phi, *data)
                terms = [summed_log_prob(q_u, u0) + summed_log_prob(q_z, z) - summed_log_prob(r, u0)]
                for i in range(1, N):
                    ui = t.sample(f"r{k}_{i}", r, reparam)
                    terms.append(summed_log_prob(q_u, ui) + summed_log_prob(guide.conditional(ui, phi, *data), z) - summed_log_prob(r, ui))
                log_qhat = log_mean_exp(jnp.stack(terms)) if N > 1 else terms[0]
                log_ws.append(log_joint(z, theta, *data) - log_qhat)
            return log_mean_exp(jnp.stack(log_ws)) if K > 1 else log_ws[0]

        return program

    return objective_from_program(f"hvi(N={N},K={K})", program_of)


def hvi(log_joint, guide, **kw) -> Objective:
    """Hierarchical VI ELBO (N = K = 1; Ranganath, Tran & Blei, ICML 2016).

    Example:
      >>> import jax, jax.numpy as jnp, numpyro.distributions as dist
      >>> from ulam.vi import hvi
      >>> from ulam.vi import HierarchicalGuide
      >>> hg = HierarchicalGuide(lambda phi: dist.Normal(0., 1.), lambda u, phi: dist.Normal(phi[0] + u, 1.),
      ...                        lambda z, phi: dist.Normal(0., 1.))
      >>> hvi(lambda z, th: dist.Normal(0., 1.).log_prob(z), hg)
      Objective('hvi(N=1,K=1)')
    """
    return hierarchical_elbo(log_joint, guide, num_inner=1, num_importance_samples=1, **kw)


def iwhvi(log_joint, guide, num_inner: int, **kw) -> Objective:
    """Importance-weighted HVI with ``num_inner`` inner draws, one outer (Sobolev & Vetrov, NeurIPS 2019).

    Example:
      >>> import jax, jax.numpy as jnp, numpyro.distributions as dist
      >>> from ulam.vi import iwhvi
      >>> from ulam.vi import HierarchicalGuide
      >>> hg = HierarchicalGuide(lambda phi: dist.Normal(0., 1.), lambda u, phi: dist.Normal(phi[0] + u, 1.),
      ...                        lambda z, phi: dist.Normal(0., 1.))
      >>> iwhvi(lambda z, th: dist.Normal(0., 1.).log_prob(z), hg, 5)
      Objective('hvi(N=5,K=1)')
    """
    return hierarchical_elbo(log_joint, guide, num_inner=num_inner, num_importance_samples=1, **kw)


def diwhvi(log_joint, guide, num_inner: int, num_importance_samples: int | None = None, *,
           num_outer: int | None = None, **kw) -> Objective:
    """Doubly importance-weighted HVI: ``num_inner`` inner draws and ``num_importance_samples`` outer ones
    (Sobolev & Vetrov 2019); ``num_outer`` is the deprecated name of the latter.

    Example:
      >>> import jax, jax.numpy as jnp, numpyro.distributions as dist
      >>> from ulam.vi import diwhvi
      >>> from ulam.vi import HierarchicalGuide
      >>> hg = HierarchicalGuide(lambda phi: dist.Normal(0., 1.), lambda u, phi: dist.Normal(phi[0] + u, 1.),
      ...                        lambda z, phi: dist.Normal(0., 1.))
      >>> diwhvi(lambda z, th: dist.Normal(0., 1.).log_prob(z), hg, 5, 3)
      Objective('hvi(N=5,K=3)')
    """
    if num_importance_samples is None and num_outer is None:
        raise TypeError(checks.message("num_importance_samples", "an integer >= 1", "nothing", "pass diwhvi(..., num_inner, K)"))
    return hierarchical_elbo(log_joint, guide, num_inner=num_inner, num_importance_samples=num_importance_samples,
                             num_outer=num_outer, **kw)
