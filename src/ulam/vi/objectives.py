r"""Variational objectives as programs, with unbiased (or, for wake-sleep, consistent) gradient surrogates.

Conventions. A *model* is a log-joint ``log_joint(z, theta, *data) -> scalar``; a *guide* is
``guide(phi, *data) -> distribution`` over ``z`` (``sample``/``rsample``/``log_prob``; numpyro
distributions work, ``log_prob`` is summed over batch dimensions). Parameters are the pair
``params = (theta, phi)``. Every objective is an :class:`Objective`:

* ``value(params, key, *data)``: one draw of the (stochastic) bound;
* ``surrogate(params, key, *data) -> (s, value)``: ``jax.grad`` of ``s`` in ``params`` is the
  gradient estimator of :math:`E[\text{value}]` (ascent direction);
* ``grad_estimate(params, key, num_samples, *data) -> (value Estimate, gradient Estimate)``, with
  per-coordinate standard errors over independent draws.

ELBO, IWAE and the hierarchical family (:mod:`ulam.vi.hierarchical`) are written as
:mod:`ulam.grad` programs, so each random choice takes a strategy (``reparam`` for continuous
guides, ``reinforce``/``baseline(...)``/``enum`` for discrete ones) — the programmable-VI design of
Becker et al. (PLDI 2024). VIMCO, DReG and RWS are their own estimators.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
from jax.scipy.special import logsumexp

import numpyro.distributions as dist

from ulam import checks
from ulam.estimate import Estimate
from ulam.grad import common as C
from ulam.grad.program import Strategy, enum, program_surrogate, reparam

__all__ = [
    "Objective",
    "elbo",
    "iwae",
    "vimco",
    "iwae_dreg",
    "reweighted_wake_sleep",
    "sir_sample",
    "SIRGuide",
    "check_vi_params",
    "check_num_importance_samples",
    "log_mean_exp",
    "summed_log_prob",
    "objective_from_program",
]


class Objective(NamedTuple):
    """A variational objective: ``value``, ``surrogate``, and ``grad_estimate`` (see module docstring).

    Example:
      >>> import jax, jax.numpy as jnp, numpyro.distributions as dist
      >>> from ulam.vi import elbo
      >>> obj = elbo(lambda z, th: dist.Normal(0., 1.).log_prob(z), lambda phi: dist.Normal(phi, 1.0))
      >>> obj
      Objective('elbo')
      >>> s, v = obj.surrogate(((), jnp.asarray(0.0)), jax.random.key(0))   # jax.grad(s) is the ascent direction
      >>> float(v)   # q equals p: every draw of the bound is log 1 = 0
      0.0
    """

    name: str
    value: Callable
    surrogate: Callable

    def __repr__(self) -> str:
        return f"Objective({self.name!r})"

    @C.compiled
    def grad_estimate(self, params, key, num_samples: int, *data):
        """``(value Estimate, gradient Estimate)`` from ``num_samples`` independent draws."""
        n = C.check_num_samples(num_samples)
        checks.prng_key(key)
        check_vi_params(params)
        keys = jax.random.split(key, n)

        def one(k):
            (s, v), g = jax.value_and_grad(lambda p: self.surrogate(p, k, *data), has_aux=True)(params)
            return v, g

        vals, grads = jax.vmap(one)(keys)
        return Estimate.from_samples(vals), Estimate.from_samples(grads)


def check_vi_params(params) -> None:
    """``params`` must be the pair ``(theta, phi)`` of floating-point pytrees (``((), phi)`` for a guide only).

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.vi import check_vi_params
      >>> check_vi_params(((), jnp.zeros(2)))
      >>> check_vi_params(jnp.zeros(2))
      Traceback (most recent call last):
      ...
      ValueError: params: expected the pair (theta, phi) of model and guide parameters, got ...; wrap a guide-only problem as ((), phi)
    """
    if not (isinstance(params, (tuple, list)) and len(params) == 2):
        raise ValueError(checks.message("params", "the pair (theta, phi) of model and guide parameters",
                                        type(params).__name__, "wrap a guide-only problem as ((), phi)"))
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves:
        raise ValueError(checks.message("params", "at least one array to fit in (theta, phi)", "none"))
    C.check_params(params)


def check_num_importance_samples(value, name: str = "num_importance_samples", *, minimum: int = 1,
                                 num_particles=None, fn: str = "") -> int:
    """The IWAE-type count ``K``: an integer ``>= minimum``; returns ``int``.

    ``num_particles`` is its old name, accepted for one release with a ``DeprecationWarning``
    (``num_particles`` now means SMC particles only).

    Example:
      >>> from ulam.vi import check_num_importance_samples
      >>> check_num_importance_samples(4)
      4
    """
    if num_particles is not None:
        if value is not None:
            raise TypeError(checks.message(name, f"either {name} or its deprecated alias num_particles",
                                           "both", f"pass only {name}"))
        where = f"{fn}: " if fn else ""
        warnings.warn(f"{where}num_particles is deprecated for the importance-sample count; pass {name}",
                      DeprecationWarning, stacklevel=3)
        value = num_particles
    if value is None:
        raise TypeError(checks.message(name, f"an integer >= {minimum}", "nothing", f"pass {name}=K"))
    return checks.count(name, value, minimum)


def log_mean_exp(x, axis=0):
    r""":math:`\log\frac1K\sum_k e^{x_k}` along ``axis``, computed stably.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.vi import log_mean_exp
      >>> float(log_mean_exp(jnp.log(jnp.array([1.0, 3.0]))))  # log 2
      0.693...
    """
    return logsumexp(x, axis=axis) - math.log(x.shape[axis])


def summed_log_prob(d, z, lead: int = 0):
    """``log d(z)`` summed over every axis after the first ``lead`` (batch dimensions count as one draw).

    Uses :func:`ulam.grad.common.log_prob`, whose Bernoulli-logits gradient is right at logits 0.

    Example:
      >>> import jax.numpy as jnp, numpyro.distributions as dist
      >>> from ulam.vi import summed_log_prob
      >>> summed_log_prob(dist.Normal(jnp.zeros(3), 1.0), jnp.zeros((2, 3)), lead=1).shape
      (2,)
    """
    lp = C.log_prob(d, z)
    return jnp.sum(lp, axis=tuple(range(lead, jnp.ndim(lp))))


def _particles(d, num_particles):
    return d.expand_by((num_particles,)) if num_particles > 1 else d


def objective_from_program(name: str, program_of: Callable) -> Objective:
    """An :class:`Objective` from ``program_of(*data) -> program(t, params)``, a :mod:`ulam.grad` program
    returning one draw of the bound; every random choice takes its own strategy.

    Example:
      >>> import jax, jax.numpy as jnp, numpyro.distributions as dist
      >>> from ulam.grad import reparam
      >>> from ulam.vi import objective_from_program
      >>> def program_of():
      ...     def program(t, params):  # E_{z ~ N(phi, 1)}[-z^2] = -(phi^2 + 1)
      ...         return -t.sample("z", dist.Normal(params[1], 1.0), reparam) ** 2
      ...     return program
      >>> obj = objective_from_program("toy", program_of)
      >>> v, g = obj.grad_estimate(((), jnp.asarray(1.0)), jax.random.key(0), 1000)
      >>> bool(abs(g.mean[1] + 2.0) < 4 * g.stderr[1])
      True
    """
    if not isinstance(name, str):
        raise TypeError(checks.message("name", "a str naming the objective", type(name).__name__))
    checks.function("program_of", program_of, "a function program_of(*data) -> program(t, params)")

    def surrogate(params, key, *data):
        return program_surrogate(program_of(*data), params, key, 1)

    def value(params, key, *data):
        return surrogate(params, key, *data)[1]

    return Objective(name, value, surrogate)


def _check_model(log_joint, guide):
    checks.function("log_joint", log_joint, "a function log_joint(z, theta, *data) -> scalar")
    if not isinstance(guide, SIRGuide):
        C.check_distribution_function("guide", guide, "a function guide(phi, *data) -> distribution (or a SIRGuide)")


def _log_joint_value(log_joint, z, theta, data):
    out = log_joint(z, theta, *data)
    if jnp.ndim(out) != 0:
        raise ValueError(checks.message("log_joint", "its output to be a scalar of shape ()", f"shape {jnp.shape(out)}",
                                        "sum the log-density over the coordinates of z"))
    return out


def elbo(log_joint: Callable, guide: Callable, *, strategy: Strategy = reparam) -> Objective:
    r"""ELBO, :math:`E_{z\sim q_\phi}[\log p_\theta(z, x) - \log q_\phi(z)]` (a program with one choice ``z``).

    ``guide`` may also be a :class:`SIRGuide` (an approximate-normalisation family): ``log q`` is
    then its density estimate, and the bound stays a lower bound on :math:`\log p(x)`.

    ``strategy`` picks the estimator for ``z``: ``reparam`` (default), ``reinforce``,
    ``baseline(...)``, ``enum`` (finite guides). Becker et al. 2024, §4.3 ``vi.elbo``.

    Example:
      >>> import jax, jax.numpy as jnp, numpyro.distributions as dist
      >>> from ulam.vi import elbo
      >>> obj = elbo(lambda z, th: dist.Normal(0., 1.).log_prob(z), lambda phi: dist.Normal(phi[0], jnp.exp(phi[1])))
      >>> v, g = obj.grad_estimate(((), jnp.array([1.0, 0.0])), jax.random.key(0), 100)
    """
    _check_model(log_joint, guide)
    if not isinstance(strategy, Strategy):
        raise TypeError(checks.message("strategy", "a ulam.grad Strategy (reparam, reinforce, enum, mvd or baseline(...))",
                                       f"{type(strategy).__name__} {strategy!r}", "from ulam.grad import reparam"))

    def program_of(*data):
        def program(t, params):
            theta, phi = params
            z, log_q = _guide_draw(t, "z", guide, log_joint, theta, phi, data, strategy)
            return _log_joint_value(log_joint, z, theta, data) - log_q

        return program

    return objective_from_program("elbo", program_of)


def iwae(log_joint: Callable, guide: Callable, num_importance_samples: int | None = None, *,
         strategy: Strategy = reparam, num_particles: int | None = None) -> Objective:
    r"""IWAE bound :math:`E[\log \frac1K\sum_k p(z_k,x)/q(z_k)]` (Burda et al. 2016); ``K = num_importance_samples >= 1``.

    A program with one vector choice ``z`` of ``K`` particles (``strategy`` as in :func:`elbo`).
    With a :class:`SIRGuide` the ``K`` draws are independent SIR draws ``z0 .. z{K-1}``, each
    weighted with its density estimate (doubly importance-weighted, like DIWHVI).
    ``num_particles`` is the deprecated name of ``num_importance_samples`` (one release).

    Example:
      >>> import jax, jax.numpy as jnp, numpyro.distributions as dist
      >>> from ulam.vi import iwae
      >>> lj = lambda z, th: dist.Normal(0., 1.).log_prob(z) + dist.Normal(z, 1.).log_prob(1.0)
      >>> obj = iwae(lj, lambda phi: dist.Normal(phi, 1.0), num_importance_samples=8)
      >>> obj
      Objective('iwae(8)')
      >>> float(obj.value(((), jnp.asarray(0.5)), jax.random.key(0))) < -1.0   # below log p(x) = -1.52 on average
      True
    """
    _check_model(log_joint, guide)
    K = check_num_importance_samples(num_importance_samples, num_particles=num_particles, fn="iwae")
    if K == 1:  # one particle: the ELBO, program and all
        return elbo(log_joint, guide, strategy=strategy)._replace(name="iwae(1)")

    def program_of(*data):
        def program(t, params):
            theta, phi = params
            if isinstance(guide, SIRGuide):  # K independent SIR draws, each with its own density estimate
                draws = [_guide_draw(t, f"z{k}", guide, log_joint, theta, phi, data, strategy) for k in range(K)]
                log_w = jnp.stack([_log_joint_value(log_joint, z, theta, data) - lq for z, lq in draws])
                return log_mean_exp(log_w)
            q = _guide_output(guide, phi, data)
            zs = t.sample("z", _particles(q, K), strategy)
            log_w = jax.vmap(lambda z: _log_joint_value(log_joint, z, theta, data))(zs) - summed_log_prob(q, zs, lead=1)
            return log_mean_exp(log_w)

        return program

    return objective_from_program(f"iwae({K})", program_of)


def _log_weights(log_joint, guide, params, key, K, data, *, stop_z):
    theta, phi = params
    q = _guide_output(guide, phi, data)
    qK = _particles(q, K)
    zs = qK.sample(key) if stop_z else (qK.rsample(key) if hasattr(qK, "rsample") else qK.sample(key))
    if stop_z:
        zs = jax.lax.stop_gradient(zs)
    if K == 1:
        zs = zs[None]
    lp = jax.vmap(lambda z: _log_joint_value(log_joint, z, theta, data))(zs)
    lq = jax.vmap(lambda z: summed_log_prob(q, z))(zs)
    return zs, lp, lq, q


def vimco(log_joint: Callable, guide: Callable, num_importance_samples: int | None = None, *,
          num_particles: int | None = None) -> Objective:
    r"""VIMCO (Mnih & Rezende 2016): multi-sample score-function gradient of the IWAE bound, for discrete guides.

    With :math:`\hat L = \log\frac1K\sum_k w_k` and :math:`\hat L_{-k}` the same with
    :math:`\log w_k` replaced by the mean of the other log-weights, the surrogate is
    :math:`\sum_k \bot(\hat L - \hat L_{-k})\log q(z_k) + \hat L`. Needs ``K >= 2``.

    Example:
      >>> import jax, jax.numpy as jnp, numpyro.distributions as dist
      >>> from ulam.vi import vimco
      >>> lj = lambda z, th: jnp.sum(dist.Bernoulli(probs=0.3).log_prob(z))
      >>> obj = vimco(lj, lambda phi: dist.Bernoulli(logits=phi), 4)
      >>> v, g = obj.grad_estimate(((), jnp.zeros(2)), jax.random.key(0), 200)
      >>> g.mean[1].shape
      (2,)
    """
    _check_model(log_joint, guide)
    K = check_num_importance_samples(num_importance_samples, num_particles=num_particles, fn="vimco")
    if K < 2:
        raise ValueError(checks.message("num_importance_samples", "an integer >= 2 (VIMCO's leave-one-out baselines)", K))

    def surrogate(params, key, *data):
        zs, lp, lq, q = _log_weights(log_joint, guide, params, key, K, data, stop_z=True)
        log_w = lp - lq
        L = log_mean_exp(log_w)
        mean_others = (jnp.sum(log_w) - log_w) / (K - 1)
        # L_{-k}: log-mean-exp with log w_k replaced by the mean of the others, for every k at once.
        replaced = jnp.where(jnp.eye(K, dtype=bool), mean_others[:, None], log_w[None, :])
        L_minus = jax.vmap(log_mean_exp)(replaced)
        signal = jax.lax.stop_gradient(L - L_minus)
        return jnp.sum(signal * lq) + L, jax.lax.stop_gradient(L)

    return Objective(f"vimco({K})", lambda p, k, *d: surrogate(p, k, *d)[1], surrogate)


def iwae_dreg(log_joint: Callable, guide: Callable, num_importance_samples: int | None = None, *,
              num_particles: int | None = None) -> Objective:
    r"""Doubly-reparameterized IWAE gradient (DReG; Tucker, Lawson, Gu & Maddison, ICLR 2019).

    Guide: :math:`\sum_k \bot(\bar w_k^2)\,\nabla_\phi \log w_k` with the score term of
    :math:`\log q` dropped (``log q`` evaluated at stopped ``phi``); model: the IWAE gradient
    :math:`\sum_k \bot(\bar w_k)\nabla_\theta \log p_\theta(z_k,x)`. Unbiased for the IWAE bound's
    gradient; needs a reparameterizable guide.

    Example:
      >>> import jax, jax.numpy as jnp, numpyro.distributions as dist
      >>> from ulam.vi import iwae_dreg
      >>> lj = lambda z, th: dist.Normal(th, 1.).log_prob(z)
      >>> obj = iwae_dreg(lj, lambda phi: dist.Normal(phi, 1.0), 4)
      >>> s, v = obj.surrogate((jnp.asarray(0.0), jnp.asarray(0.0)), jax.random.key(0))
      >>> round(float(v), 5)   # q equals p: every log-weight is 0
      0.0
    """
    _check_model(log_joint, guide)
    K = check_num_importance_samples(num_importance_samples, num_particles=num_particles, fn="iwae_dreg")

    def surrogate(params, key, *data):
        theta, phi = params
        q_stop = guide(jax.lax.stop_gradient(phi), *data)
        q = _guide_output(guide, phi, data)
        qK = _particles(q, K)
        if not hasattr(qK, "rsample") or getattr(qK, "has_rsample", True) is False:
            raise ValueError("guide: DReG needs a reparameterizable guide (rsample)")
        zs = qK.rsample(key)
        if K == 1:
            zs = zs[None]
        lp_guide_path = jax.vmap(lambda z: _log_joint_value(log_joint, z, jax.lax.stop_gradient(theta), data))(zs)
        lq_stop = jax.vmap(lambda z: summed_log_prob(q_stop, z))(zs)
        log_w = lp_guide_path - lq_stop
        w_bar = jax.lax.stop_gradient(jax.nn.softmax(log_w))
        guide_term = jnp.sum(w_bar**2 * log_w)
        lp_model = jax.vmap(lambda z: _log_joint_value(log_joint, z, theta, data))(jax.lax.stop_gradient(zs))
        model_term = jnp.sum(w_bar * lp_model)
        return guide_term + model_term, jax.lax.stop_gradient(log_mean_exp(log_w))

    return Objective(f"iwae_dreg({K})", lambda p, k, *d: surrogate(p, k, *d)[1], surrogate)


def reweighted_wake_sleep(log_joint: Callable, guide: Callable, num_importance_samples: int | None = None, *,
                          wake_q: bool = True, wake_p: bool = True, num_particles: int | None = None) -> Objective:
    r"""Reweighted wake-sleep (Bornschein & Bengio 2015; Le et al. 2019): wake-p and wake-q updates.

    With SIR weights :math:`\bar w_k \propto p(z_k,x)/q(z_k)` over ``K`` guide draws:
    wake-p ascends :math:`\sum_k \bar w_k \nabla_\theta\log p_\theta(z_k, x)` (the IWAE model gradient),
    wake-q ascends :math:`\sum_k \bar w_k \nabla_\phi \log q_\phi(z_k)` (a self-normalised estimate of
    :math:`-\nabla_\phi KL(p\,\|\,q_\phi)`; consistent, biased for finite K). Works for discrete guides.
    ``value`` is the IWAE bound.

    Example:
      >>> import jax, jax.numpy as jnp, numpyro.distributions as dist
      >>> from ulam.vi import reweighted_wake_sleep
      >>> lj = lambda z, th: dist.Normal(th, 1.).log_prob(z) + dist.Normal(z, 1.).log_prob(1.0)
      >>> obj = reweighted_wake_sleep(lj, lambda phi: dist.Normal(phi, 1.0), 4, wake_p=False)
      >>> obj
      Objective('rws(4)')
    """
    if not (wake_q or wake_p):
        raise ValueError(checks.message("wake_q, wake_p", "at least one of them True", "both False",
                                        "an objective that updates nothing has nothing to fit"))
    _check_model(log_joint, guide)
    K = check_num_importance_samples(num_importance_samples, num_particles=num_particles, fn="reweighted_wake_sleep")

    def surrogate(params, key, *data):
        zs, lp, lq, q = _log_weights(log_joint, guide, params, key, K, data, stop_z=True)
        log_w = jax.lax.stop_gradient(lp - lq)
        w_bar = jax.nn.softmax(log_w)
        s = 0.0
        if wake_p:
            s = s + jnp.sum(w_bar * lp)
        if wake_q:
            s = s + jnp.sum(w_bar * lq)
        return s, log_mean_exp(log_w)

    return Objective(f"rws({K})", lambda p, k, *d: surrogate(p, k, *d)[1], surrogate)


def sir_sample(log_joint: Callable, guide: Callable, params, key, num_importance_samples: int | None = None, *data,
               num_particles: int | None = None):
    r"""Sampling importance resampling (SIR): draw ``K`` from the guide, return one chosen with prob :math:`\propto w_k`.

    An approximate-normalisation "variational family" (Becker et al. 2024 ``vi.sir``): as
    ``K`` grows its law tends to the posterior. Returns ``(z, log_weights)``. The key comes after
    the model, guide and parameters (what is sampled); the old order
    ``sir_sample(key, log_joint, guide, params, K, *data)`` works for one release with a ``DeprecationWarning``.

    Example:
      >>> import jax, jax.numpy as jnp, numpyro.distributions as dist
      >>> from ulam.vi import sir_sample
      >>> lj = lambda z, th: dist.Normal(0., 1.).log_prob(z)
      >>> z, log_w = sir_sample(lj, lambda phi: dist.Normal(phi, 2.0), ((), jnp.asarray(0.0)), jax.random.key(0), 8)
      >>> z.shape, log_w.shape
      ((), (8,))
    """
    if not callable(log_joint) and callable(guide) and callable(params):  # old order (key, log_joint, guide, params, K)
        warnings.warn("sir_sample(key, log_joint, guide, params, K, *data) is deprecated: the key now comes after "
                      "params, sir_sample(log_joint, guide, params, key, K, *data)", DeprecationWarning, stacklevel=2)
        log_joint, guide, params, key = guide, params, key, log_joint
    _check_model(log_joint, guide)
    checks.prng_key(key)
    check_vi_params(params)
    K = check_num_importance_samples(num_importance_samples, num_particles=num_particles, fn="sir_sample")
    k1, k2 = jax.random.split(key)
    zs, lp, lq, _ = _log_weights(log_joint, guide, params, k1, K, data, stop_z=True)
    log_w = lp - lq
    idx = jax.random.categorical(k2, log_w)
    return jax.tree_util.tree_map(lambda a: a[idx], zs), log_w


class _SIRGuideFields(NamedTuple):
    proposal: Callable
    num_importance_samples: int
    target: Callable | None = None
    index_strategy: Strategy = enum


class SIRGuide(_SIRGuideFields):
    r"""SIR(N) as an approximate-normalisation variational family (Becker et al. 2024, ``vi.sir``).

    A draw: :math:`z_{1..N}\sim q_\phi` (``proposal(phi, *data)``), log-weights
    :math:`\log w_k = \log\gamma(z_k) - \log q_\phi(z_k)`, an index :math:`i\sim\mathrm{Cat}(\mathrm{softmax}(\log w))`
    and :math:`z = z_i`. Its marginal density is intractable; the objectives use the estimate

    .. math:: \log\hat q(z) = \log\gamma(z) - \log\tfrac1N\textstyle\sum_k w_k,

    which is the extended-space ratio of Andrieu & Roberts / Domke & Sheldon (2018): with the target
    :math:`P(z_{1:N}, i) = p(x, z_i)\prod_{k\ne i} q(z_k)/N`, :math:`\log p(x,z) - \log\hat q(z) = \log P/Q`,
    so :math:`E[\log p(x,z) - \log\hat q(z)] \le \log p(x)` for any unnormalised target :math:`\gamma`.
    With :math:`\gamma = p_\theta(x,\cdot)` (``target=None``) the ELBO of SIR(N) equals IWAE(N) in expectation.

    ``target(z, theta, phi, *data) -> log gamma(z)``; ``None`` uses the model's log-joint. The
    particles take the objective's ``strategy``; the index takes ``index_strategy`` (``enum``: summed
    exactly over the N particles; ``reinforce``/``baseline(...)`` for large N or many outer draws).

    Example:
      >>> import jax, jax.numpy as jnp, numpyro.distributions as dist
      >>> from ulam.vi import SIRGuide, elbo
      >>> model = lambda z, th: dist.Normal(0., 1.).log_prob(z) + dist.Normal(z, 1.).log_prob(1.0)
      >>> g = SIRGuide(lambda phi: dist.Normal(phi[0], jnp.exp(phi[1])), num_importance_samples=4)
      >>> g
      SIRGuide(num_importance_samples=4, index_strategy='enum')
      >>> v, grad = elbo(model, g).grad_estimate(((), jnp.zeros(2)), jax.random.key(0), 100)

    ``num_particles`` is the deprecated name of ``num_importance_samples`` (one release).
    """

    __slots__ = ()

    def __new__(cls, proposal, num_importance_samples=None, target=None, index_strategy=enum, *, num_particles=None):
        C.check_distribution_function("proposal", proposal, "a function proposal(phi, *data) -> distribution")
        n = check_num_importance_samples(num_importance_samples, num_particles=num_particles, fn="SIRGuide")
        return super().__new__(cls, proposal, n, target, index_strategy)

    @property
    def num_particles(self) -> int:
        """Deprecated name of ``num_importance_samples``."""
        warnings.warn("SIRGuide.num_particles is deprecated; use num_importance_samples", DeprecationWarning, stacklevel=2)
        return self.num_importance_samples

    def __repr__(self) -> str:
        return f"SIRGuide(num_importance_samples={self.num_importance_samples}, index_strategy={self.index_strategy.kind!r})"

    def draw(self, t, name, log_joint, theta, phi, data, strategy: Strategy = reparam):
        """Draw ``z`` at sites ``{name}_particles`` and ``{name}_index``; return ``(z, log q_hat(z))``."""
        N = self.num_importance_samples
        q = self.proposal(phi, *data)
        zs = t.sample(f"{name}_particles", q.expand_by((N,)), strategy)

        def log_gamma(z):
            if self.target is None:
                return _log_joint_value(log_joint, z, theta, data)
            return self.target(z, theta, phi, *data)

        log_g = jax.vmap(log_gamma)(zs)
        log_w = log_g - summed_log_prob(q, zs, lead=1)
        i = t.sample(f"{name}_index", dist.Categorical(logits=log_w), self.index_strategy)
        return zs[i], log_g[i] - log_mean_exp(log_w)


def _guide_output(guide, phi, data):
    """``guide(phi, *data)``, checked to be a distribution (``sample`` and ``log_prob``)."""
    q = guide(phi, *data)
    if not (hasattr(q, "sample") and hasattr(q, "log_prob")):
        raise TypeError(checks.message("guide", "its output to be a distribution with sample and log_prob",
                                       type(q).__name__, "return e.g. dist.Normal(phi[0], jnp.exp(phi[1]))"))
    return q


def _guide_draw(t, name, guide, log_joint, theta, phi, data, strategy):
    """One guide draw and its (exact, or for SIR estimated) log-density."""
    if isinstance(guide, SIRGuide):
        return guide.draw(t, name, log_joint, theta, phi, data, strategy)
    return t.sample_with_log_prob(name, _guide_output(guide, phi, data), strategy)
