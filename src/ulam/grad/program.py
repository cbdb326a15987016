r"""Programs whose random choices each pick their own gradient estimator, composed into one unbiased estimate.

A *program* is a plain Python function ``program(t, params) -> scalar`` that draws its random
choices through ``t.sample(name, distribution, strategy)``. The strategy says how the gradient
flows through that choice (the per-choice design of ADEV, Lew et al., POPL 2023, as used by
genjax.vi, Becker et al., PLDI 2024):

============  ==========================================  =====================================
strategy      what it does                                 applies to
============  ==========================================  =====================================
reparam       pathwise: the sample is a differentiable     continuous families (implicitly for
              function of the parameters                   Gamma/Beta/Dirichlet)
reinforce     score function, with an optional             any family with a ``log_prob``
              ``baseline(...)`` (constant or leave-one-out)
enum          exact sum over the (joint) finite support   Bernoulli, Categorical, Binomial
mvd           measure-valued: every other value of each    Bernoulli, Categorical
              coordinate is run as a coupled branch
============  ==========================================  =====================================

``t.sample_with_log_prob(name, distribution, strategy)`` returns the choice and its log-density
(what a variational objective needs of its guide); for a reparameterised Normal the density comes
from the standard draw behind the sample, which saves work without changing value or gradient.

``program_gradient`` turns the program into one *surrogate* whose ordinary ``jax.grad`` is the
unbiased estimator (the stochastic-computation-graph / DiCE construction: Schulman et al. 2015;
Foerster et al. 2018). Enumerated and measure-valued choices are run as branches under ``vmap``:
every branch replays the program with the same per-site random numbers (sites are keyed by name),
so branches are coupled. With :math:`w_g` the probability of enumerated assignment ``g``,

.. math::
   S = \sum_g w_g\Big[f_g + \sum_{s\in\text{reinforce}} \bot(f_g - b_s)\,(\ell_{g,s} - \bot\ell_{g,s})\Big]
     + \sum_g\sum_{s\in\text{mvd}}\sum_{j,v} \big(p_{g,s,j}(v) - \bot p_{g,s,j}(v)\big)\,\bot\big(w^{(s,j,v)}_g f^{(s,j,v)}_g\big)

where :math:`\bot` is ``stop_gradient``, :math:`\ell` a site's log-probability and :math:`f^{(s,j,v)}`
the branch with coordinate ``j`` of site ``s`` forced to ``v``. :math:`S` equals the program's value
(its enumerated mean) and :math:`E[\nabla S] = \nabla E[\text{program}]`.

Costs: ``prod`` of the enumerated supports times ``1 + sum(K_s S_s)`` branch runs per particle.
Names must be unique per run; Python control flow must not depend on sampled values (JAX rule).
"""

from __future__ import annotations

import itertools
import math
import zlib
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist

from ulam.estimate import Estimate
from ulam import checks
from ulam.grad import common as C
from ulam.grad.enumeration import support_values

__all__ = [
    "Strategy",
    "reparam",
    "reinforce",
    "enum",
    "mvd",
    "baseline",
    "Choice",
    "normal_reparam",
    "normal_reinforce",
    "flip_enum",
    "flip_mvd",
    "flip_reinforce",
    "categorical_enum",
    "categorical_mvd",
    "categorical_reinforce",
    "beta_implicit",
    "gamma_implicit",
    "uniform_reparam",
    "program_gradient",
    "program_value",
    "program_surrogate",
    "expectation",
]


class Strategy(NamedTuple):
    """How the gradient passes through one random choice: ``kind`` and, for ``reinforce``, a ``baseline``.

    The four ready-made strategies are ``reparam``, ``reinforce``, ``enum`` and ``mvd`` (see the module
    table); ``baseline(...)`` makes a REINFORCE strategy with a baseline.

    Example:
      >>> import jax, numpyro.distributions as dist
      >>> from ulam.grad import enum, program_gradient, reparam
      >>> def prog(t, th):  # E[x + b] with x ~ N(th, 1), b ~ Bernoulli(logits=th)
      ...     return t.sample("x", dist.Normal(th, 1.0), reparam) + t.sample("b", dist.Bernoulli(logits=th), enum)
      >>> est = program_gradient(prog, 0.0, jax.random.key(0), 100)
      >>> round(float(est.mean), 4)  # 1 + sigmoid'(0) = 1.25, exactly: both choices have zero variance here
      1.25
    """

    kind: str
    baseline: Any = None


reparam = Strategy("reparam")
reinforce = Strategy("reinforce")
enum = Strategy("enum")
mvd = Strategy("mvd")


def baseline(value: Any = "leave_one_out", strategy: Strategy = reinforce) -> Strategy:
    """A REINFORCE strategy with a baseline: a constant (number, or an EMA's current value) or ``'leave_one_out'``.

    The leave-one-out baseline of particle ``i`` is the mean program value of the other particles
    (Kool et al. 2019), so the estimate stays unbiased.

    Example:
      >>> from ulam.grad import baseline
      >>> baseline("leave_one_out")
      Strategy(kind='reinforce', baseline='leave_one_out')
      >>> baseline(1.5).baseline
      1.5
    """
    if not isinstance(strategy, Strategy):
        raise TypeError(checks.message("strategy", "a ulam.grad Strategy (reinforce)", type(strategy).__name__))
    if strategy.kind != "reinforce":
        raise ValueError(f"baseline: only a 'reinforce' strategy takes a baseline, got {strategy.kind!r}")
    if isinstance(value, str):
        checks.one_of("baseline", value, ["leave_one_out"])
    return Strategy("reinforce", value)


class Choice(NamedTuple):
    """A distribution paired with its strategy (what ``normal_reparam(...)`` and friends return).

    ``t.sample(name, choice)`` takes it in place of a ``(distribution, strategy)`` pair.

    Example:
      >>> import numpyro.distributions as dist
      >>> from ulam.grad import Choice, reparam
      >>> Choice(dist.Normal(0.0, 1.0), reparam).strategy.kind
      'reparam'
    """

    distribution: Any
    strategy: Strategy


def _flip(p=None, logits=None):
    if (p is None) == (logits is None):
        raise ValueError("flip: give exactly one of p (probability) or logits")
    if p is not None:
        checks.in_interval("p", p, 0.0, 1.0, do="p is a probability; pass logits=... for an unbounded parameter")
    return dist.Bernoulli(probs=p) if p is not None else dist.Bernoulli(logits=logits)


def _categorical(probs=None, logits=None):
    if (probs is None) == (logits is None):
        raise ValueError("categorical: give exactly one of probs or logits")
    if probs is not None:
        checks.in_interval("probs", probs, 0.0, 1.0)
        total = checks.is_concrete(probs) and np.sum(np.asarray(probs, dtype=float), axis=-1)
        if total is not False and not np.allclose(total, 1.0, atol=1e-5):
            raise ValueError(checks.message("probs", "probabilities that sum to 1 along the last axis",
                                            f"sums {np.round(total, 6).tolist()}", "normalise them, or pass logits=..."))
    return dist.Categorical(probs=probs) if probs is not None else dist.Categorical(logits=logits)


def normal_reparam(loc, scale):
    """A Normal choice differentiated pathwise: ``x = loc + scale * eps``.

    Example:
      >>> from ulam.grad import normal_reparam
      >>> normal_reparam(0.0, 1.0).strategy.kind
      'reparam'
    """
    checks.positive("scale", scale)
    return Choice(dist.Normal(loc, scale), reparam)


def normal_reinforce(loc, scale, baseline_value=None):
    """A Normal choice differentiated by REINFORCE (score function), with an optional baseline.

    Example:
      >>> from ulam.grad import normal_reinforce
      >>> normal_reinforce(0.0, 1.0, baseline_value=2.0).strategy
      Strategy(kind='reinforce', baseline=2.0)
    """
    checks.positive("scale", scale)
    return Choice(dist.Normal(loc, scale), Strategy("reinforce", baseline_value))


def flip_enum(p=None, *, logits=None):
    """A coin (Bernoulli, by ``p`` or ``logits``) summed over exactly (both outcomes run as branches).

    Example:
      >>> from ulam.grad import flip_enum
      >>> c = flip_enum(0.3)
      >>> c.strategy.kind, float(c.distribution.probs)
      ('enum', 0.3)
    """
    return Choice(_flip(p, logits), enum)


def flip_mvd(p=None, *, logits=None):
    """A coin differentiated by the measure-valued derivative (the other outcome as a coupled branch).

    Example:
      >>> from ulam.grad import flip_mvd
      >>> flip_mvd(logits=0.0).strategy.kind
      'mvd'
    """
    return Choice(_flip(p, logits), mvd)


def flip_reinforce(p=None, *, logits=None, baseline_value=None):
    """A coin differentiated by REINFORCE, with an optional baseline.

    Example:
      >>> from ulam.grad import flip_reinforce
      >>> flip_reinforce(0.5).strategy.kind
      'reinforce'
    """
    return Choice(_flip(p, logits), Strategy("reinforce", baseline_value))


def categorical_enum(probs=None, *, logits=None):
    """A categorical choice (by ``probs`` or ``logits``) summed over exactly.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.grad import categorical_enum
      >>> categorical_enum(jnp.array([0.2, 0.8])).strategy.kind
      'enum'
    """
    return Choice(_categorical(probs, logits), enum)


def categorical_mvd(probs=None, *, logits=None):
    """A categorical choice differentiated by the measure-valued derivative.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.grad import categorical_mvd
      >>> categorical_mvd(logits=jnp.zeros(3)).strategy.kind
      'mvd'
    """
    return Choice(_categorical(probs, logits), mvd)


def categorical_reinforce(probs=None, *, logits=None, baseline_value=None):
    """A categorical choice differentiated by REINFORCE, with an optional baseline.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.grad import categorical_reinforce
      >>> categorical_reinforce(jnp.array([0.5, 0.5])).strategy.kind
      'reinforce'
    """
    return Choice(_categorical(probs, logits), Strategy("reinforce", baseline_value))


def beta_implicit(a, b):
    """A Beta choice differentiated by implicit reparameterization (Figurnov et al. 2018).

    Example:
      >>> from ulam.grad import beta_implicit
      >>> type(beta_implicit(2.0, 3.0).distribution).__name__
      'Beta'
    """
    checks.positive("a", a)
    checks.positive("b", b)
    return Choice(dist.Beta(a, b), reparam)


def gamma_implicit(concentration, rate=1.0):
    """A Gamma choice differentiated by implicit reparameterization (Figurnov et al. 2018).

    Example:
      >>> from ulam.grad import gamma_implicit
      >>> gamma_implicit(2.0).strategy.kind
      'reparam'
    """
    checks.positive("concentration", concentration)
    checks.positive("rate", rate)
    return Choice(dist.Gamma(concentration, rate), reparam)


def uniform_reparam(low, high):
    """A Uniform choice differentiated pathwise: ``x = low + (high - low) u``.

    Example:
      >>> from ulam.grad import uniform_reparam
      >>> uniform_reparam(0.0, 2.0).strategy.kind
      'reparam'
    """
    checks.finite("low", low)
    checks.finite("high", high)
    if checks.is_concrete((low, high)) and not np.all(np.asarray(high, dtype=float) > np.asarray(low, dtype=float)):
        raise ValueError(checks.message("high", "a value above low", f"low={low}, high={high}"))
    return Choice(dist.Uniform(low, high), reparam)


class _Site(NamedTuple):
    name: str
    kind: str
    baseline: Any
    support: Any  # host array of one coordinate's values (enum/mvd) or None
    batch: tuple
    dtype: Any


_HALF_LOG_2PI = 0.5 * math.log(2 * math.pi)


def _normal_loc_scale(d):
    """``(loc, scale)`` of a numpyro ``Normal`` (bare or in ``Independent``), else None; subclasses excluded."""
    base = d.base_dist if type(d) is dist.Independent else d
    return (base.loc, base.scale) if type(base) is dist.Normal else None


def _site_key(key, name):
    return jax.random.fold_in(key, zlib.crc32(name.encode()) & 0x7FFFFFFF)


class _Tracer:
    """What ``program(t, params)`` receives; ``t.sample(name, distribution, strategy)`` draws a choice."""

    def __init__(self, mode, key, sites=None, forced=None):
        self.mode = mode
        self.key = key
        self.sites = {} if sites is None else sites  # discover: filled; run: read
        self.forced = forced or {}
        self.seen = set()
        self.log_weight = 0.0
        self.reinforce_logp = {}
        self.mvd_probs = {}
        self.standard_normals = {}  # reparameterised Normal sites: name -> (standard draw, scale)

    def sample(self, name, distribution, strategy: Strategy | None = None):
        if isinstance(distribution, Choice):
            if strategy is not None:
                raise ValueError(f"sample site {name!r}: a Choice already carries its strategy; drop the third argument")
            distribution, strategy = distribution
        if not isinstance(name, str):
            raise TypeError(f"sample: site name must be a str, got {type(name).__name__}")
        if strategy is None:
            raise ValueError(f"sample site {name!r}: give a strategy (reparam, reinforce, enum, mvd or baseline(...))")
        if not isinstance(strategy, Strategy):
            raise TypeError(f"sample site {name!r}: strategy must be a ulam.grad Strategy, got {type(strategy).__name__}")
        if name in self.seen:
            raise ValueError(f"sample site {name!r}: the name is used twice in one run; names must be unique")
        self.seen.add(name)
        d = distribution
        k = _site_key(self.key, name)
        if self.mode == "discover":
            self.sites[name] = self._check(name, d, strategy)
            return d.sample(k)
        site = self.sites[name]
        kind = site.kind
        if kind == "reparam":
            loc_scale = _normal_loc_scale(d)
            if loc_scale is not None:  # the draws of numpyro's Normal.rsample, with the standard draw kept
                loc, scale = loc_scale
                eps = jax.random.normal(k, tuple(d.batch_shape) + tuple(d.event_shape))
                self.standard_normals[name] = (eps, scale)
                return loc + eps * scale
            return d.rsample(k) if hasattr(d, "rsample") else d.sample(k)
        if kind == "reinforce":
            x = jax.lax.stop_gradient(d.sample(k))
            self.reinforce_logp[name] = jnp.sum(C.log_prob(d, x))
            return x
        if kind == "enum":
            x = self.forced[name].reshape(site.batch).astype(site.dtype)
            self.log_weight = self.log_weight + jnp.sum(C.log_prob(d, x))
            return x
        # mvd: the sampled value, with at most one coordinate forced in this branch
        x = jax.lax.stop_gradient(d.sample(k))
        coord, value = self.forced[name]
        flat = jnp.ravel(x)
        flat = jnp.where(jnp.arange(flat.size) == coord, value.astype(flat.dtype), flat)
        x = flat.reshape(jnp.shape(x))
        sup = jnp.asarray(site.support, dtype=site.dtype)
        per_value = jax.vmap(lambda v: jnp.ravel(jnp.broadcast_to(jnp.exp(C.log_prob(d, v)), site.batch)))(sup)
        self.mvd_probs[name] = per_value  # (S, K)
        return x

    def sample_with_log_prob(self, name, distribution, strategy: Strategy | None = None):
        r"""``(x, log q(x))``: a choice drawn as :meth:`sample` does, and its log-density summed over all axes.

        For a reparameterised Normal (also wrapped in ``Independent``) the density is taken from the
        standard draw :math:`\varepsilon` behind :math:`x = \mu + \sigma\varepsilon`:
        :math:`\log q(x) = \sum -\tfrac12\varepsilon^2 - \log\sigma - \tfrac12\log 2\pi`. As a
        function of the parameters at fixed :math:`\varepsilon` this *is* :math:`\log q_\phi(x(\phi))`,
        so value and gradient are the same, but the step skips recomputing
        :math:`(x-\mu)/\sigma` and differentiating through it (an ELBO step does this once per
        latent coordinate). Any other family or strategy: ``log_prob`` of the draw.
        """
        x = self.sample(name, distribution, strategy)
        standard = self.standard_normals.pop(name, None)
        if standard is not None:
            eps, scale = standard
            return x, jnp.sum(-0.5 * eps**2 - jnp.log(scale) - _HALF_LOG_2PI)
        d = distribution.distribution if isinstance(distribution, Choice) else distribution
        return x, jnp.sum(C.log_prob(d, x))

    @staticmethod
    def _check(name, d, strategy):
        if not (hasattr(d, "sample") and hasattr(d, "log_prob")):
            raise TypeError(f"sample site {name!r}: distribution needs sample and log_prob, got {type(d).__name__}")
        kind = strategy.kind
        spec = jax.eval_shape(lambda k: d.sample(k), jax.random.key(0))
        if kind not in ("reparam", "reinforce", "enum", "mvd"):
            checks.one_of(f"sample site {name!r}: strategy", kind, ["reparam", "reinforce", "enum", "mvd"])
        if kind == "reparam":
            if C.is_discrete(d):
                raise ValueError(
                    f"sample site {name!r}: strategy 'reparam' (pathwise) does not apply to the discrete "
                    f"{type(d).__name__}; use enum, mvd or reinforce for this choice"
                )
            if getattr(d, "has_rsample", True) is False:
                raise ValueError(f"sample site {name!r}: {type(d).__name__} has no reparameterized sampler")
            return _Site(name, kind, None, None, tuple(spec.shape), spec.dtype)
        if kind == "reinforce":
            return _Site(name, kind, strategy.baseline, None, tuple(spec.shape), spec.dtype)
        if tuple(getattr(d, "event_shape", ())) != ():
            raise ValueError(f"sample site {name!r}: strategy {kind!r} needs a univariate family (event_shape ())")
        try:
            sup = support_values(d)
        except TypeError:
            raise ValueError(
                f"sample site {name!r}: strategy {kind!r} needs a finite support, but {type(d).__name__} has none; "
                "use reparam or reinforce for this choice"
            ) from None
        base = d
        while hasattr(base, "base_dist"):
            base = base.base_dist
        if kind == "mvd" and not type(base).__name__.startswith(("Bernoulli", "Categorical")):
            raise ValueError(
                f"sample site {name!r}: strategy 'mvd' in programs is implemented for flip and categorical choices; "
                "for Normal or Poisson use ulam.grad.measure_valued_gradient"
            )
        return _Site(name, kind, None, sup, tuple(spec.shape), spec.dtype)


class _Plan(NamedTuple):
    sites: dict
    enum_configs: dict  # name -> (R, K) host array
    mvd_forced: dict  # name -> ((R,) coords, (R,) values)
    num_grid: int
    num_variants: int
    variants: list  # [None, (site, j, v_index), ...]


def _plan(program, params, max_runs: int) -> _Plan:
    t = _Tracer("discover", jax.random.key(0))
    out = jax.eval_shape(lambda p: program(t, p), params)
    if not (hasattr(out, "shape") and out.shape == () and jnp.issubdtype(out.dtype, jnp.floating)):
        got = f"shape {getattr(out, 'shape', None)} and dtype {getattr(out, 'dtype', type(out).__name__)}"
        raise ValueError(checks.message("program", "its output to be a floating-point scalar of shape ()", got))
    sites = t.sites
    enum_sites = [s for s in sites.values() if s.kind == "enum"]
    mvd_sites = [s for s in sites.values() if s.kind == "mvd"]
    per_site_configs = []
    for s in enum_sites:
        K = math.prod(s.batch)
        n_cfg = len(s.support) ** K
        if n_cfg > max_runs:
            raise ValueError(f"sample site {s.name!r}: enumerating {n_cfg} joint values exceeds max_runs={max_runs}")
        idx = np.array(list(itertools.product(range(len(s.support)), repeat=K)), dtype=np.int64).reshape(n_cfg, K)
        per_site_configs.append(s.support[idx])
    grid = list(itertools.product(*[range(len(c)) for c in per_site_configs])) or [()]
    variants = [None] + [(s.name, j, vi) for s in mvd_sites for j in range(math.prod(s.batch)) for vi in range(len(s.support))]
    R = len(grid) * len(variants)
    if R > max_runs:
        raise ValueError(
            f"program: {len(grid)} enumerated assignments x {len(variants)} measure-valued branches = {R} runs "
            f"exceeds max_runs={max_runs}; use reinforce for some choices"
        )
    enum_configs = {}
    for si, s in enumerate(enum_sites):
        rows = [per_site_configs[si][g[si]] for g in grid for _ in variants]
        enum_configs[s.name] = np.stack(rows)
    mvd_forced = {}
    for s in mvd_sites:
        coords, values = [], []
        for _ in grid:
            for v in variants:
                if v is not None and v[0] == s.name:
                    coords.append(v[1])
                    values.append(s.support[v[2]])
                else:
                    coords.append(-1)
                    values.append(s.support[0])
        mvd_forced[s.name] = (np.asarray(coords, np.int32), np.asarray(values))
    return _Plan(sites, enum_configs, mvd_forced, len(grid), len(variants), variants)


def _particle(program, plan: _Plan, params, key):
    """Run every branch of one particle; returns per-run f, log-weights, reinforce log-probs, mvd probs."""

    def run(forced_enum, forced_mvd):
        forced = dict(forced_enum)
        forced.update({k: v for k, v in forced_mvd.items()})
        t = _Tracer("run", key, plan.sites, forced)
        f = program(t, params)
        return f, jnp.asarray(t.log_weight, f.dtype), t.reinforce_logp, t.mvd_probs

    enum_in = {k: jnp.asarray(v) for k, v in plan.enum_configs.items()}
    mvd_in = {k: (jnp.asarray(c), jnp.asarray(v)) for k, (c, v) in plan.mvd_forced.items()}
    if plan.num_grid * plan.num_variants == 1:  # no branches: one run, given a leading axis of 1
        return jax.tree_util.tree_map(lambda a: jnp.asarray(a)[None], run({}, {}))
    return jax.vmap(run)(enum_in, mvd_in)


def _surrogate_of(plan: _Plan, outs, baselines: dict):
    f, logw, lp, probs = outs
    G, V = plan.num_grid, plan.num_variants
    f = f.reshape(G, V)
    logw = logw.reshape(G, V)
    sg = C.stop
    f0, w0 = f[:, 0], jnp.exp(logw[:, 0])
    S_g = f0
    for name, l in lp.items():
        l0 = l.reshape(G, V)[:, 0]
        S_g = S_g + sg(f0 - baselines.get(name, 0.0)) * (l0 - sg(l0))
    total = jnp.sum(w0 * S_g)
    branch_val = sg(jnp.exp(logw) * f)  # (G, V)
    for vi, var in enumerate(plan.variants):
        if var is None:
            continue
        name, j, v_index = var
        P = probs[name].reshape((G, V) + probs[name].shape[1:])[:, 0, v_index, j]  # (G,)
        total = total + jnp.sum((P - sg(P)) * branch_val[:, vi])
    value = jnp.sum(w0 * f0)
    return total, value


def _baseline_values(plan, values, n):
    """Per-particle baseline for every reinforce site: constant, or leave-one-out mean of the other particles."""
    out = {}
    for s in plan.sites.values():
        if s.kind != "reinforce" or s.baseline is None:
            continue
        if isinstance(s.baseline, str):
            out[s.name] = (jnp.sum(values) - values) / (n - 1)
        else:
            out[s.name] = jnp.broadcast_to(jnp.asarray(s.baseline, values.dtype), values.shape)
    return out


def _needs_values(plan):
    return any(s.kind == "reinforce" and isinstance(s.baseline, str) for s in plan.sites.values())


def _check_program(program):
    if not callable(program):
        raise TypeError(checks.message("program", "a function (t, params) -> scalar", type(program).__name__))


def program_surrogate(program: Callable, params, key: jax.Array, num_samples: int, *, max_runs: int = 4096):
    r"""``(surrogate, value)`` over ``num_samples`` particles: ``jax.grad`` of ``surrogate`` in ``params`` is the
    unbiased gradient estimate (mean over particles) and ``value`` the estimate of E[program].

    Use this inside a training step (one backward pass, no per-particle Jacobians);
    use :func:`program_gradient` for an :class:`~ulam.Estimate` with standard errors.

    Example:
      >>> import jax
      >>> from ulam.grad import normal_reparam, program_surrogate
      >>> prog = lambda t, mu: t.sample("x", normal_reparam(mu, 1.0)) ** 2   # E = mu^2 + 1
      >>> g = jax.grad(lambda mu: program_surrogate(prog, mu, jax.random.key(0), 1000)[0])(1.0)
      >>> bool(abs(g - 2.0) < 0.3)   # d/dmu = 2 mu; per-draw sd 2, so 0.3 is > 4 standard errors
      True
    """
    _check_program(program)
    checks.prng_key(key)
    n = C.check_num_samples(num_samples, minimum=1)
    plan = _plan(program, params, max_runs)
    if _needs_values(plan) and n < 2:
        raise ValueError("num_samples: a leave-one-out baseline needs at least 2 particles")
    if n == 1 and not _needs_values(plan):
        # one particle: no vmap, so batched model code keeps its plain (unbatched) matmuls
        surr, value = _surrogate_of(plan, _particle(program, plan, params, key), {})
        return surr, C.stop(value)
    keys = jax.random.split(key, n)
    outs = jax.vmap(lambda k: _particle(program, plan, params, k))(keys)
    values = jax.vmap(lambda o: _surrogate_of(plan, o, {})[1])(outs)
    bl = _baseline_values(plan, C.stop(values), n)
    surr = jax.vmap(lambda o, b: _surrogate_of(plan, o, b)[0])(outs, bl)
    return jnp.mean(surr), C.stop(jnp.mean(values))


@C.compiled
def program_gradient(program: Callable, params, key: jax.Array, num_samples: int, *, max_runs: int = 4096) -> Estimate:
    r"""Unbiased :class:`~ulam.Estimate` of :math:`\nabla_\theta E[\text{program}(\theta)]`, one term per particle.

    Example:
      >>> import jax, jax.numpy as jnp
      >>> from ulam.grad import program_gradient, normal_reparam, flip_enum
      >>> def prog(t, theta):
      ...     x = t.sample("x", normal_reparam(theta[0], 1.0))
      ...     b = t.sample("b", flip_enum(jax.nn.sigmoid(theta[1])))
      ...     return x**2 + (b - 0.45) ** 2
      >>> est = program_gradient(prog, jnp.array([1.0, 0.0]), jax.random.key(0), 4000)
      >>> bool(abs(est.mean[0] - 2.0) < 4 * est.stderr[0]) and abs(float(est.mean[1]) - 0.025) < 1e-6
      True
    """
    _check_program(program)
    checks.prng_key(key)
    n = C.check_num_samples(num_samples)
    C.check_params(params)
    plan = _plan(program, params, max_runs)
    keys = jax.random.split(key, n)
    if _needs_values(plan):
        values = jax.vmap(lambda k: _surrogate_of(plan, _particle(program, plan, C.stop(params), k), {})[1])(keys)
        bl = _baseline_values(plan, C.stop(values), n)
    else:
        bl = {}

    def one(k, b):
        def s(th):
            return _surrogate_of(plan, _particle(program, plan, th, k), b)

        (_, value), g = jax.value_and_grad(s, has_aux=True)(params)
        return value, g

    vals, terms = jax.vmap(one)(keys, bl)
    return C.estimate_from_terms(terms, vals)


@C.compiled
def program_value(program: Callable, params, key: jax.Array, num_samples: int, *, max_runs: int = 4096) -> Estimate:
    """Estimate of E[program] (enumerated choices summed exactly, the rest sampled).

    Example:
      >>> import jax
      >>> from ulam.grad import flip_enum, program_value
      >>> est = program_value(lambda t, p: 2.0 * t.sample("b", flip_enum(p)), 0.3, jax.random.key(0), 10)
      >>> round(float(est.mean), 4)   # exact: the coin is enumerated
      0.6
    """
    _check_program(program)
    checks.prng_key(key)
    n = C.check_num_samples(num_samples)
    plan = _plan(program, params, max_runs)
    keys = jax.random.split(key, n)
    values = jax.vmap(lambda k: _surrogate_of(plan, _particle(program, plan, params, k), {})[1])(keys)
    return Estimate.from_samples(values)


class expectation:
    """A program's expectation as an object: ``.grad_estimate``, ``.estimate`` and ``.surrogate`` (ADEV's ``E``).

    Example:
      >>> import jax
      >>> from ulam.grad import expectation, normal_reparam
      >>> E = expectation(lambda t, mu: t.sample("x", normal_reparam(mu, 1.0)) ** 2)
      >>> est = E.grad_estimate(1.0, jax.random.key(0), 1000)
    """

    def __init__(self, program: Callable, *, max_runs: int = 4096):
        _check_program(program)
        self.program = program
        self.max_runs = max_runs

    def __repr__(self) -> str:
        return f"expectation({getattr(self.program, '__name__', 'program')})"

    def grad_estimate(self, params, key, num_samples) -> Estimate:
        """:func:`program_gradient` of this program."""
        return program_gradient(self.program, params, key, num_samples, max_runs=self.max_runs)

    def estimate(self, params, key, num_samples) -> Estimate:
        """:func:`program_value` of this program."""
        return program_value(self.program, params, key, num_samples, max_runs=self.max_runs)

    def surrogate(self, params, key, num_samples):
        """:func:`program_surrogate` of this program."""
        return program_surrogate(self.program, params, key, num_samples, max_runs=self.max_runs)
