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

from ulam.grad.program import Strategy, reparam
from ulam.vi.objectives import Objective, _as_program_objective, _sum_lp, check_num_particles, log_mean_exp

__all__ = ["HierarchicalGuide", "hierarchical_elbo", "hvi", "iwhvi", "diwhvi"]


class HierarchicalGuide(NamedTuple):
    """``aux(phi, *data)`` -> q(u); ``conditional(u, phi, *data)`` -> q(z|u); ``reverse(z, phi, *data)`` -> r(u|z)."""

    aux: Callable
    conditional: Callable
    reverse: Callable


def hierarchical_elbo(
    log_joint: Callable,
    guide: HierarchicalGuide,
    *,
    num_inner: int = 1,
    num_outer: int = 1,
    aux_strategy: Strategy = reparam,
    strategy: Strategy = reparam,
) -> Objective:
    r"""The doubly importance-weighted hierarchical bound with ``N = num_inner``, ``K = num_outer``.

    ``N = K = 1`` is HVI; ``K = 1`` is IWHVI(N); both > 1 is DIWHVI(N, K). Sites are named
    ``u{k}``, ``z{k}`` and ``r{k}_{i}`` (inner draws from the reverse model, reparameterized).
    """
    N = check_num_particles(num_inner, "num_inner")
    K = check_num_particles(num_outer, "num_outer")

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
                terms = [_sum_lp(q_u, u0) + _sum_lp(q_z, z) - _sum_lp(r, u0)]
                for i in range(1, N):
                    ui = t.sample(f"r{k}_{i}", r, reparam)
                    terms.append(_sum_lp(q_u, ui) + _sum_lp(guide.conditional(ui, phi, *data), z) - _sum_lp(r, ui))
                log_qhat = log_mean_exp(jnp.stack(terms)) if N > 1 else terms[0]
                log_ws.append(log_joint(z, theta, *data) - log_qhat)
            return log_mean_exp(jnp.stack(log_ws)) if K > 1 else log_ws[0]

        return program

    return _as_program_objective(f"hvi(N={N},K={K})", program_of)


def hvi(log_joint, guide, **kw) -> Objective:
    """Hierarchical VI ELBO (N = K = 1; Ranganath, Tran & Blei 2016)."""
    return hierarchical_elbo(log_joint, guide, num_inner=1, num_outer=1, **kw)


def iwhvi(log_joint, guide, num_inner: int, **kw) -> Objective:
    """Importance-weighted HVI with ``num_inner`` inner particles, one outer (Sobolev & Vetrov 2019)."""
    return hierarchical_elbo(log_joint, guide, num_inner=num_inner, num_outer=1, **kw)


def diwhvi(log_joint, guide, num_inner: int, num_outer: int, **kw) -> Objective:
    """Doubly importance-weighted HVI: ``num_inner`` inner and ``num_outer`` outer particles."""
    return hierarchical_elbo(log_joint, guide, num_inner=num_inner, num_outer=num_outer, **kw)
