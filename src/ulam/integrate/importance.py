r"""Importance sampling, self-normalised or not, with Kish ESS and streamed PSIS k-hat (:func:`importance_sampling`)."""

from __future__ import annotations

from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ulam.diagnostics import kish_ess_from_sums, pareto_khat_from_tail, psis_tail_length
from ulam import checks, jit_cache
from ulam.deprecation import renamed_keywords
from ulam.estimate import Estimate
from ulam.integrate.args import (
    apply_nonfinite_policy, check_count, check_f, check_nonfinite, draw_from, flat_spec, is_traced, one_draw,
    resolve_batch_size, split_sampler,
)

__all__ = ["importance_sampling"]


class _ISState(NamedTuple):
    log_max: jax.Array  # running maximum log weight
    s0: jax.Array  # sum w (scaled by exp(-log_max))
    s0_sq: jax.Array  # sum w^2 (scaled by exp(-2 log_max))
    s1: jax.Array  # (k,) sum w (f - c)
    s2: jax.Array  # (k,) sum w^2 (f - c)
    s3: jax.Array  # (k,) sum w^2 (f - c)^2
    tail: jax.Array  # the largest log weights seen so far, for Pareto k-hat
    nonfinite: jax.Array  # draws with a nan/+inf log weight, or a non-finite f where the weight is positive


def _is_chunk(state: _ISState, log_w, fv, centre, tail_size):
    finite_f = jnp.all(jnp.isfinite(fv), axis=1)
    bad_log_w = jnp.isnan(log_w) | (log_w == jnp.inf)
    # A zero weight (log w = -inf) makes f irrelevant there: not a non-finite draw.
    dropped = bad_log_w | (~finite_f & (log_w > -jnp.inf))
    bad = ~finite_f | bad_log_w
    log_w = jnp.where(bad, -jnp.inf, log_w)
    fv = jnp.where(bad[:, None], 0.0, fv) - centre
    new_max = jnp.maximum(state.log_max, jnp.max(log_w))
    safe_max = jnp.where(jnp.isfinite(new_max), new_max, 0.0)
    old_scale = jnp.exp(jnp.where(jnp.isfinite(state.log_max), state.log_max - safe_max, -jnp.inf))
    w = jnp.exp(log_w - safe_max)
    tail = jax.lax.top_k(jnp.concatenate([state.tail, log_w]), tail_size)[0]
    return _ISState(
        new_max,
        state.s0 * old_scale + jnp.sum(w),
        state.s0_sq * old_scale**2 + jnp.sum(w * w),
        state.s1 * old_scale + w @ fv,
        state.s2 * old_scale**2 + (w * w) @ fv,
        state.s3 * old_scale**2 + (w * w) @ (fv * fv),
        tail,
        state.nonfinite + jnp.sum(dropped).astype(jnp.int32),
    )


def _tail_size(n: int) -> int:
    # PSIS fits the generalized Pareto to the largest M weights and looks at the (M+1)-th as cutoff.
    return psis_tail_length(n, 1.0) + 1


@jit_cache.jit(static_argnames=("f", "log_target", "static_proposal", "n", "batch_size", "self_normalized"))
def _importance_sampling(proposal, key, *, f, log_target, static_proposal, n, batch_size, self_normalized):
    proposal = static_proposal if proposal is None else proposal
    flat, unravel, k, dtype = flat_spec(f, one_draw(proposal, key))
    tail_size = min(_tail_size(n), n)

    def draw(key_, m):
        x = draw_from(proposal, key_, m)
        log_w = jax.vmap(log_target)(x) - proposal.log_prob(x)
        return jnp.asarray(log_w, dtype), jax.vmap(flat)(x)

    # Centre f at a pilot value so the variance sums below do not cancel catastrophically.
    k_pilot, key = jax.random.split(key)
    pilot_lw, pilot_f = draw(k_pilot, min(n, 256))
    pilot_w = jax.nn.softmax(jnp.where(jnp.isfinite(pilot_lw), pilot_lw, -jnp.inf))
    centre = jnp.where(jnp.all(jnp.isfinite(pilot_w)), jnp.nan_to_num(pilot_w @ jnp.nan_to_num(pilot_f)), 0.0)
    centre = jnp.where(jnp.isfinite(centre), centre, 0.0)

    z = jnp.zeros((k,), dtype)
    state = _ISState(jnp.array(-jnp.inf, dtype), jnp.zeros((), dtype), jnp.zeros((), dtype), z, z, z,
                     jnp.full((tail_size,), -jnp.inf, dtype), jnp.zeros((), jnp.int32))
    num_full, rest = divmod(n, batch_size)
    keys = jax.random.split(key, num_full + (1 if rest else 0))
    if num_full:
        state, _ = jax.lax.scan(lambda s, kk: (_is_chunk(s, *draw(kk, batch_size), centre, tail_size), None),
                                state, keys[:num_full])
    if rest:
        state = _is_chunk(state, *draw(keys[-1], rest), centre, tail_size)

    scale = jnp.exp(state.log_max)
    kish = kish_ess_from_sums(state.s0, state.s0_sq)
    if self_normalized:
        # mu = sum w f / sum w; delta-method variance sum w^2 (f - mu)^2 / (sum w)^2.
        shift = state.s1 / state.s0  # mu - c
        mean = centre + shift
        var_num = state.s3 - 2.0 * shift * state.s2 + shift**2 * state.s0_sq
        stderr = jnp.sqrt(jnp.maximum(var_num, 0.0)) / state.s0
        ess = jnp.broadcast_to(kish, (k,))
    else:
        # Normalised target: mu = (1/n) sum w f, an ordinary mean of the draws w f.
        mean_wf = (state.s1 * scale + centre * state.s0 * scale) / n
        second = (state.s3 + 2.0 * centre * state.s2 + centre**2 * state.s0_sq) * scale**2 / n
        var = jnp.maximum(second - mean_wf**2, 0.0) * n / (n - 1.0)
        mean, stderr = mean_wf, jnp.sqrt(var / n)
        ess = jnp.broadcast_to(kish, (k,))
    info = {
        "num_nonfinite": state.nonfinite,
        "weight_ess": kish,
        "log_max_weight": state.log_max,
        "largest_log_weights": state.tail,
        "log_mean_weight": state.log_max + jnp.log(state.s0 / n),
    }
    return Estimate(unravel(mean), unravel(stderr), n, unravel(ess), info)


@renamed_keywords(n="num_samples")
def importance_sampling(
    f: Callable,
    log_target: Callable,
    proposal: Any,
    key: jax.Array,
    num_samples: int,
    *,
    self_normalized: bool = True,
    batch_size: int | None = None,
    nonfinite: str = "raise",
) -> Estimate:
    r"""Importance sampling of :math:`\mathbb{E}_\pi[f]` with draws from ``proposal`` q.

    Weights :math:`w_i = \pi(X_i)/q(X_i)`, :math:`X_i \sim q`, kept in log space.

    * ``self_normalized=True`` (default; ``log_target`` may be unnormalised):
      :math:`\hat\mu = \sum w_i f_i / \sum w_i`, standard error by the delta method,
      :math:`\widehat{\mathrm{se}}^2 = \sum w_i^2 (f_i - \hat\mu)^2 / (\sum w_i)^2`.
    * ``self_normalized=False`` (``log_target`` must be normalised):
      :math:`\hat\mu = \frac1n\sum w_i f_i`, unbiased.

    ``ess`` is Kish's importance-weight ESS :math:`(\sum w)^2/\sum w^2`;
    ``info["pareto_k"]`` is the PSIS :math:`\hat k` of the weights (Vehtari et al. 2024):
    above 0.7 the estimate is not to be trusted. Only the largest weights are kept
    while streaming, so memory stays O(batch_size + sqrt n).

    Example:
      >>> import jax, jax.numpy as jnp, numpyro.distributions as dist
      >>> target = dist.Normal(1.0, 1.0)
      >>> est = importance_sampling(lambda x: x, target.log_prob, dist.Normal(0.0, 2.0),
      ...                           jax.random.key(0), 20_000)
      >>> abs(float(est.mean) - 1.0) < 4 * float(est.stderr)
      True
    """
    check_f(f)
    checks.prng_key(key)
    check_f(log_target, name="log_target")
    if not (hasattr(proposal, "sample") and hasattr(proposal, "log_prob")):
        raise TypeError(
            "proposal: expected a distribution with `sample(key, shape)` and `log_prob(x)`, "
            f"got {type(proposal).__name__}"
        )
    n = check_count("num_samples", num_samples, 2)
    check_nonfinite(nonfinite)
    batch = resolve_batch_size(n, batch_size)
    dynamic, static = split_sampler(proposal)
    est = _importance_sampling(dynamic, key, f=f, log_target=log_target, static_proposal=static, n=n,
                               batch_size=batch, self_normalized=self_normalized)
    if not is_traced(est.mean):
        if not np.isfinite(np.asarray(est.info["log_max_weight"])):
            raise ValueError(
                "proposal: every importance weight is zero (log weight -inf or nan): the proposal puts no "
                "mass where the target has mass; widen the proposal or check log_target"
            )
    est = apply_nonfinite_policy(est, nonfinite, n, what="f or log_target")
    est.info["pareto_k"] = pareto_khat_from_tail(est.info["largest_log_weights"], n)
    return est

