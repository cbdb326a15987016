"""What the gradient estimators and the variational objectives share: input checks, a log-probability
with a correct Bernoulli-logits gradient, per-sample-terms-to-``Estimate``, small pytree helpers, and
``compiled`` (run an estimator as one cached ``jax.jit`` program).

It is public so that :mod:`ulam.vi` (and any new estimator) builds on it instead of copying it;
``ulam.grad._common`` is kept as an alias of this module for one release.

Example:
  >>> import jax.numpy as jnp, numpyro.distributions as dist
  >>> from ulam.grad import common
  >>> common.check_num_samples(100)
  100
  >>> float(common.log_prob(dist.Bernoulli(logits=jnp.asarray(0.0)), 1.0))  # log(1/2)
  -0.693...
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

from jax.extend.core import Literal as _Literal

from ulam import checks
from ulam.estimate import Estimate

__all__ = [
    "check_num_samples",
    "check_estimator_args",
    "check_distribution_function",
    "check_params",
    "check_same_structure",
    "make_distribution",
    "categorical_logits",
    "log_prob",
    "is_discrete",
    "scalar_value",
    "check_differentiable_in_x",
    "estimate_from_terms",
    "split_keys",
    "stop",
    "tree_map",
    "tree_scale",
    "tree_add",
    "tree_zeros_like",
    "zero_estimate",
    "broadcast",
    "compiled",
]

tree_map = jax.tree_util.tree_map


def check_num_samples(num_samples, name: str = "num_samples", minimum: int = 2) -> int:
    """A static sample count ``>= minimum`` (2 by default: a standard error needs two draws); returns ``int``."""
    return checks.count(name, num_samples, minimum)


def check_estimator_args(f: Callable, distribution: Callable, key, num_samples=None, *, minimum: int = 2):
    """The checks every ``estimator(f, distribution, params, key, num_samples)`` starts with.

    ``f`` and ``distribution`` must be functions (a distribution object passed as either gets a
    message saying what to pass), ``key`` a ``jax.random`` key, ``num_samples`` a count
    ``>= minimum``; returns ``num_samples`` as an ``int`` (``None`` when not given).
    """
    checks.function("f", f, "a function f(x, params) -> scalar")
    check_distribution_function("distribution", distribution, "a function params -> distribution")
    checks.prng_key(key)
    return None if num_samples is None else check_num_samples(num_samples, minimum=minimum)


def check_params(params, name: str = "params") -> None:
    """Every leaf of a parameter pytree must be a floating-point array (gradients need floats)."""
    leaves = jax.tree_util.tree_leaves(params)
    if not leaves:
        raise ValueError(f"{name}: expected at least one array to differentiate, got an empty pytree")
    for leaf in leaves:
        dtype = jnp.result_type(leaf)
        if not jnp.issubdtype(dtype, jnp.floating):
            raise TypeError(
                f"{name}: every leaf must be a floating-point array to take gradients, got dtype {dtype}; "
                "cast it with jnp.asarray(x, jnp.float32)"
            )


def check_same_structure(tree, reference, name: str, reference_name: str = "params") -> None:
    """``tree`` has the pytree structure and leaf shapes of ``reference`` (e.g. a baseline of ``params``)."""
    s, r = jax.tree_util.tree_structure(tree), jax.tree_util.tree_structure(reference)
    if s != r:
        raise ValueError(f"{name}: its pytree structure {s} does not match the structure of {reference_name} {r}")
    for a, b in zip(jax.tree_util.tree_leaves(tree), jax.tree_util.tree_leaves(reference)):
        if jnp.shape(a) != jnp.shape(b):
            raise ValueError(
                f"{name}: leaf shape {jnp.shape(a)} does not match the matching leaf of {reference_name} {jnp.shape(b)}"
            )


def check_distribution_function(name: str, value, expects: str = "a function params -> distribution"):
    """A function that *returns* a distribution; a distribution object passed instead is refused with the fix.

    (``checks.function`` suggests passing ``d.log_prob``, which fits a log-density argument, not this one.)
    """
    if hasattr(value, "log_prob") and hasattr(value, "sample"):
        raise TypeError(checks.message(name, expects, type(value).__name__,
                                       "a distribution was given: pass a function that builds it from the parameters, "
                                       "e.g. `lambda params: dist.Normal(params, 1.0)`"))
    return checks.function(name, value, expects)


def make_distribution(distribution: Callable, params, name: str = "distribution"):
    """``distribution(params)``, checked: a function of ``params`` returning an object with ``sample`` and ``log_prob``."""
    check_distribution_function(name, distribution)
    try:
        d = distribution(params)
    except (TypeError, KeyError, IndexError, AttributeError) as err:
        raise ValueError(
            f"{name}: calling it on params failed ({type(err).__name__}: {err}); check that params has the "
            "structure this function expects"
        ) from err
    if not (hasattr(d, "sample") and hasattr(d, "log_prob")):
        raise TypeError(checks.message(name, "a function returning a distribution (with sample and log_prob)",
                                       f"one returning {type(d).__name__}"))
    return d


def categorical_logits(distribution: Callable, params, estimator: str):
    """``(distribution at params, th -> logits (batch + (C,)))`` for estimators that need a numpyro Categorical."""
    d = make_distribution(distribution, params)
    if not type(d).__name__.startswith("Categorical"):
        raise TypeError(f"distribution: {estimator} needs a Categorical distribution, got {type(d).__name__}")
    return d, lambda th: jnp.asarray(distribution(th).logits)


def log_prob(d, x):
    """``d.log_prob(x)``, with a Bernoulli given by logits computed as ``x l - softplus(l)``.

    numpyro's ``BernoulliLogits.log_prob`` goes through ``|l|``, whose derivative JAX takes as 0 at
    ``l = 0`` exactly, so its gradient there is wrong (0.15 instead of 0.025 for the issue's example);
    every estimator that differentiates a log-probability uses this instead.
    """
    base = d
    while type(base).__name__ == "ExpandedDistribution":
        base = base.base_dist
    if type(base).__name__ == "BernoulliLogits":
        logits = jnp.broadcast_to(base.logits, tuple(d.batch_shape))
        x = jnp.asarray(x, logits.dtype)
        return x * logits - jax.nn.softplus(logits)
    return d.log_prob(x)


def is_discrete(d) -> bool:
    """True when draws of ``d`` are discrete (a discrete support, or non-floating samples)."""
    support = getattr(d, "support", None)
    if support is not None and getattr(support, "is_discrete", False):
        return True
    try:
        probe = jax.eval_shape(lambda k: d.sample(k), jax.random.key(0))
    except Exception:  # pragma: no cover - exotic distributions: assume continuous
        return False
    return any(not jnp.issubdtype(p.dtype, jnp.floating) for p in jax.tree_util.tree_leaves(probe))


def scalar_value(f: Callable, *args, name: str = "f", allow_int: bool = True):
    """``f(*args)`` checked to be a real scalar (the message names ``f`` and the shape it returned)."""
    out = f(*args)
    # (checks.callback_output would do, but it converts its argument with np.asarray, which a tracer refuses)
    if jnp.ndim(out) != 0:
        raise ValueError(checks.message(name, "its output to be a scalar of shape ()", f"shape {jnp.shape(out)}",
                                        "sum or average it first"))
    if not jnp.issubdtype(jnp.result_type(out), jnp.floating):
        if not allow_int:
            raise TypeError(
                f"{name}: returns dtype {jnp.result_type(out)}, which has no derivative; the pathwise estimator needs "
                "a floating-point f that is differentiable in x (use score_function_gradient for a discrete-valued f)"
            )
        out = jnp.asarray(out, jnp.result_type(float))
    return out


def _depends_on(jaxpr, invars) -> list[bool]:
    """Which outputs of a jaxpr depend on ``invars`` (conservative: any input dependence counts)."""
    live = set(id(v) for v in invars)
    for eqn in jaxpr.eqns:
        if any(not isinstance(v, _Literal) and id(v) in live for v in eqn.invars):
            live.update(id(v) for v in eqn.outvars)
    return [not isinstance(v, _Literal) and id(v) in live for v in jaxpr.outvars]


def check_differentiable_in_x(f: Callable, x_example, params, name: str = "f") -> None:
    """Raise if the tangent of ``f(x, params)`` along ``x`` is identically zero (a step, round, comparison).

    Such an ``f`` has a zero pathwise gradient almost everywhere although E[f] moves with the
    parameters, so the reparameterization estimator would silently return a biased zero.
    """
    spec = tree_map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), x_example)

    def tangent(x, t):
        return jax.jvp(lambda xx: f(xx, params), (x,), (t,))[1]

    try:
        closed = jax.make_jaxpr(tangent)(spec, spec)
    except Exception:  # the check is a courtesy; a failure to trace shows up in the real call
        return
    n_x = len(jax.tree_util.tree_leaves(spec))
    t_vars = closed.jaxpr.invars[n_x:]
    if not any(_depends_on(closed.jaxpr, t_vars)):
        raise ValueError(
            f"{name}: its derivative with respect to the sample x is zero everywhere (a step, round, sign, "
            "comparison or stop_gradient), so the pathwise (reparameterization) estimator would be biased. "
            "Use score_function_gradient, measure_valued_gradient or a relaxation instead"
        )


def estimate_from_terms(terms, values, *, info=None) -> Estimate:
    """An Estimate of the gradient from per-sample gradient terms (leading axis = sample)."""
    est = Estimate.from_samples(terms)
    values = jnp.asarray(values)
    n = values.shape[0]
    extra = {
        "value": jnp.mean(values),
        "value_stderr": jnp.std(values, ddof=1) / jnp.sqrt(n),
    }
    if info:
        extra.update(info)
    est.info = extra
    return est


def split_keys(key, num: int):
    """``jax.random.split(key, num)`` after checking that ``key`` is a ``jax.random`` key."""
    return jax.random.split(checks.prng_key(key), num)


def stop(tree: Any):
    """``jax.lax.stop_gradient`` of a pytree."""
    return jax.lax.stop_gradient(tree)


def tree_scale(tree, s):
    """Every leaf times ``s``."""
    return tree_map(lambda a: a * s, tree)


def tree_add(a, b):
    """Leafwise sum of two pytrees of the same structure."""
    return tree_map(jnp.add, a, b)


def tree_zeros_like(tree):
    """Zeros of the shape and dtype of every leaf."""
    return tree_map(jnp.zeros_like, tree)


def zero_estimate(mean_tree, n) -> Estimate:
    """An exact (zero-variance) gradient as an Estimate."""
    return Estimate(mean_tree, tree_zeros_like(mean_tree), n, jnp.inf)


def broadcast(a, shape):
    """``jnp.broadcast_to`` that always returns an array (numpyro may hand back Python floats)."""
    return jnp.asarray(jnp.broadcast_to(jnp.asarray(a), tuple(shape)))


# -- compile once per estimator call instead of dispatching op by op ----------------------------

_JIT_CACHE: dict = {}
_JIT_CACHE_MAX = 256


def _is_static(a) -> bool:
    # Python scalars, strings, None, callables and tuples of them are compile-time constants (options
    # such as a temperature are checked in Python); arrays are data. NamedTuples of constants are static.
    if a is None or isinstance(a, (bool, int, float, str, np.integer, np.floating)):
        return True
    if isinstance(a, tuple):
        return all(_is_static(x) for x in a)
    return callable(a) and not isinstance(a, (jax.Array, np.ndarray))


def _static_type(a):
    return tuple(_static_type(x) for x in a) if isinstance(a, tuple) else type(a)


def _is_data(a) -> bool:
    return all(isinstance(x, (jax.Array, np.ndarray, float, np.floating, int, np.integer)) for x in jax.tree_util.tree_leaves(a))


def compiled(fn: Callable) -> Callable:
    """Run ``fn`` as one ``jax.jit`` computation, its static arguments (functions, ints, strings) baked in.

    Eagerly, a ``vmap`` of ``value_and_grad`` dispatches (and compiles) every primitive on its own,
    which costs seconds for a small estimator; one compiled program costs a fraction of that, and is
    cached per (estimator, static arguments) so repeated calls reuse it. Under an outer trace (inside
    the user's ``jit``/``grad``) the function is called as is. Arguments that are neither static nor
    arrays (e.g. an unhashable object) also fall back to the plain call.
    """
    import functools

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        leaves = jax.tree_util.tree_leaves((args, kwargs))
        if any(isinstance(x, jax.core.Tracer) for x in leaves):
            return fn(*args, **kwargs)
        names = sorted(kwargs)
        values = list(args) + [kwargs[k] for k in names]
        static = tuple((i, v) for i, v in enumerate(values) if _is_static(v))
        dyn_idx = tuple(i for i, v in enumerate(values) if not _is_static(v))
        if not all(_is_data(values[i]) for i in dyn_idx):
            return fn(*args, **kwargs)
        # The key carries each static value's type: 8.0 == 8 and True == 1 hash alike, and a program
        # compiled for num_samples=8 must not serve a call with the (refused) float 8.0.
        cache_key = (fn, len(args), tuple(names), tuple((i, _static_type(v), v) for i, v in static))
        try:
            jf = _JIT_CACHE.get(cache_key)
        except TypeError:  # an unhashable static argument
            return fn(*args, **kwargs)
        if jf is None:
            n_pos, static_map = len(args), dict(static)

            def run(dyn):
                full = dict(static_map)
                full.update(zip(dyn_idx, dyn))
                vals = [full[i] for i in range(len(values))]
                return fn(*vals[:n_pos], **dict(zip(names, vals[n_pos:])))

            jf = jax.jit(run)
            if len(_JIT_CACHE) >= _JIT_CACHE_MAX:
                _JIT_CACHE.clear()
            _JIT_CACHE[cache_key] = jf
        return jf(tuple(values[i] for i in dyn_idx))

    return wrapper
