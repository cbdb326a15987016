"""Fitting a variational objective with Optax on the harness's training loop (:func:`ulam.harness.train`).

:func:`make_step` builds one pure ascent step; :func:`fit` runs exactly ``num_steps`` of them in
jitted chunks, with progress, checkpoint/resume, a stop at the first non-finite step, and a
final objective returned as an :class:`~ulam.Estimate` from fresh draws, with a warning when the
objective was still improving at the end.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ulam import checks
from ulam.estimate import Estimate
from ulam.harness import fingerprint, train
from ulam.vi.objectives import Objective, check_vi_params

__all__ = ["fit", "FitResult", "make_step", "make_update"]


class FitResult:
    """What :func:`fit` returns.

    Attributes:
      params: the fitted ``(theta, phi)``.
      values: the objective's value at every step (mean over that step's ``num_samples`` draws).
      opt_state: the final optimizer state.
      objective: the objective at the final parameters, an :class:`~ulam.Estimate` over
        ``num_eval_samples`` fresh i.i.d. draws (not the training draws; see :func:`fit`).
      num_steps: steps done; stop_reason: ``"budget"`` or ``"max_seconds"``; seconds: wall time.
      still_improving: True when the objective's trend over the last half of the steps was still
        rising by more than 3 standard errors of its slope (a warning was raised).

    ``params, values, opt_state = result`` still unpacks as before.

    Example:
      >>> import jax, jax.numpy as jnp, numpyro.distributions as dist, optax
      >>> from ulam.vi import elbo, fit
      >>> obj = elbo(lambda z, th: dist.Normal(3.0, 1.0).log_prob(z), lambda phi: dist.Normal(phi[0], jnp.exp(phi[1])))
      >>> res = fit(obj, ((), jnp.zeros(2)), jax.random.key(0), num_steps=300, optimizer=optax.adam(0.05),
      ...           num_samples=4, progress=False)
      >>> len(repr(res).splitlines()) < 15
      True
    """

    def __init__(self, params, values, opt_state, objective=None, num_steps=0, stop_reason="budget", seconds=0.0,
                 still_improving=False, name="objective"):
        self.params, self.values, self.opt_state = params, values, opt_state
        self.objective, self.num_steps, self.stop_reason = objective, num_steps, stop_reason
        self.seconds, self.still_improving, self.name = seconds, still_improving, name

    def __iter__(self):
        return iter((self.params, self.values, self.opt_state))

    def __getitem__(self, i):
        return (self.params, self.values, self.opt_state)[i]

    def __repr__(self) -> str:
        leaves = jax.tree_util.tree_leaves(self.params)
        size = sum(int(np.size(x)) for x in leaves)
        lines = [f"FitResult({self.name}, {self.num_steps} steps, stopped by {self.stop_reason!r}, "
                 f"{self.seconds:.3g} s)",
                 f"  final {self.name}: {self.objective!r}",
                 f"  params: {len(leaves)} arrays, {size} values"]
        if self.still_improving:
            lines.append("  still improving at the last step: more steps or a larger learning rate may help")
        return "\n".join(lines)

    def plot(self, ax=None):
        """The objective trace with its running mean (:func:`ulam.plots.plot_trace`); returns the Axes."""
        from ulam.plots import plot_trace

        return plot_trace(self.values, label=self.name, ax=ax)

    def summary(self):
        """A one-row table: final objective (mean, stderr, draws), steps, last-window mean, still improving."""
        values = np.asarray(self.values, np.float64)
        w = max(1, len(values) // 10)
        row = {"objective": self.name,
               "mean": float(np.asarray(self.objective.mean)) if self.objective is not None else math.nan,
               "stderr": float(np.asarray(self.objective.stderr)) if self.objective is not None else math.nan,
               "num_eval_samples": int(self.objective.n) if self.objective is not None else 0,
               "num_steps": int(self.num_steps),
               "last_window_mean": float(values[-w:].mean()) if len(values) else math.nan,
               "still_improving": bool(self.still_improving), "stop_reason": self.stop_reason}
        try:
            import pandas as pd
        except ImportError:  # pragma: no cover
            return "\n".join(f"{k:>18}  {v}" for k, v in row.items())
        return pd.DataFrame([row])


def _check_objective_and_optimizer(objective, optimizer) -> None:
    if not isinstance(objective, Objective):
        raise TypeError(checks.message("objective", "a ulam.vi Objective (elbo(...), iwae(...), ...)",
                                       type(objective).__name__, "wrap a log-joint and guide: vi.elbo(log_joint, guide)"))
    if optimizer is not None and not (hasattr(optimizer, "init") and hasattr(optimizer, "update")):
        raise TypeError(checks.message("optimizer", "an optax GradientTransformation (init and update)",
                                       f"{type(optimizer).__name__} {optimizer!r}"[:80], "e.g. optax.adam(1e-2)"))


def make_update(objective: Objective, optimizer, num_samples: int = 1, batch_size: int | None = None):
    """One ascent step that also returns the gradients: ``update(params, opt_state, key, *data) ->
    (params, opt_state, value, grads)`` (the form :func:`ulam.harness.train` runs).

    The gradient is the mean of ``num_samples`` independent surrogate gradients; with
    ``batch_size`` every step uses a random minibatch of rows of each data array and rescales the
    objective by ``num_rows / batch_size`` (an unbiased minibatch estimate).

    Example:
      >>> import jax, jax.numpy as jnp, numpyro.distributions as dist, optax
      >>> from ulam.vi import elbo
      >>> from ulam.vi.fitting import make_update
      >>> obj = elbo(lambda z, th: dist.Normal(0.0, 1.0).log_prob(z), lambda phi: dist.Normal(phi[0], 1.0))
      >>> opt = optax.sgd(0.1); p = ((), jnp.zeros(1))
      >>> p, s, value, grads = make_update(obj, opt)(p, opt.init(p), jax.random.key(0))
      >>> grads[1].shape
      (1,)
    """
    _check_objective_and_optimizer(objective, optimizer)
    num_samples = checks.count("num_samples", num_samples)
    if batch_size is not None:
        batch_size = checks.count("batch_size", batch_size)

    def update(params, opt_state, key, *data):
        # no key splitting that the step does not use: each split is a serial threefry hash
        ks = key
        if batch_size is not None:
            kb, ks = jax.random.split(key)
            num_rows = data[0].shape[0]
            idx = jax.random.choice(kb, num_rows, (batch_size,), replace=False)
            data = tuple(jnp.take(x, idx, axis=0) for x in data)
            scale = num_rows / batch_size
        else:
            scale = 1.0
        keys = jax.random.split(ks, num_samples) if num_samples > 1 else None

        def loss(p):
            if num_samples == 1:  # no vmap: batched model code keeps its plain matmuls
                s, v = objective.surrogate(p, ks, *data)
            else:
                s, v = jax.vmap(lambda k: objective.surrogate(p, k, *data))(keys)
            return -scale * jnp.mean(s), scale * jnp.mean(v)

        grads, value = jax.grad(loss, has_aux=True)(params)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, value, grads

    return update


def make_step(objective: Objective, optimizer, num_samples: int = 1, batch_size: int | None = None):
    """One ascent step ``step(params, opt_state, key, *data) -> (params, opt_state, value)`` (pure, jit-able).

    :func:`make_update` without the gradients in the output. Jit it with the parameters and
    optimizer state donated, ``jax.jit(step, donate_argnums=(0, 1))``, so that XLA updates them in
    place instead of allocating and copying a new state every step (10-20% of a small VAE step
    on CPU); :func:`fit` runs the step inside ``lax.scan``, which needs no donation.

    Example:
      >>> import jax, jax.numpy as jnp, numpyro.distributions as dist, optax
      >>> from ulam.vi import elbo, make_step
      >>> obj = elbo(lambda z, th: dist.Normal(0.0, 1.0).log_prob(z), lambda phi: dist.Normal(phi[0], 1.0))
      >>> opt = optax.sgd(0.1); p = ((), jnp.zeros(1))
      >>> p, s, value = make_step(obj, opt)(p, opt.init(p), jax.random.key(0))
      >>> value.shape
      ()
    """
    update = make_update(objective, optimizer, num_samples, batch_size)

    def step(params, opt_state, key, *data):
        params, opt_state, value, _ = update(params, opt_state, key, *data)
        return params, opt_state, value

    return step


def _still_improving(values: np.ndarray) -> tuple[bool, float, float, int]:
    """Least-squares trend of the objective over the last half of the steps: (improving, gain, z, window).

    Improving when the slope is positive by more than 3 of its standard errors (residual
    spread around the line); ``gain`` is the fitted rise over the window.
    """
    n = len(values)
    w = n - n // 2
    if n < 20:
        return False, 0.0, 0.0, w
    y = values[n // 2:]
    t = np.arange(w, dtype=np.float64) - (w - 1) / 2
    slope = float(np.dot(t, y - y.mean()) / np.dot(t, t))
    resid = y - y.mean() - slope * t
    se = math.sqrt(np.dot(resid, resid) / (w - 2) / np.dot(t, t))
    z = slope / se if se > 0 else (math.inf if slope > 0 else 0.0)
    return bool(z > 3.0), slope * w, z, w


def fit(
    objective: Objective,
    params,
    key: jax.Array,
    *,
    num_steps: int,
    optimizer=None,
    num_samples: int = 1,
    data: tuple = (),
    batch_size: int | None = None,
    progress: Any = None,
    num_chunks: int = 20,
    checkpoint=None,
    force: bool = False,
    max_seconds: Optional[float] = None,
    num_eval_samples: int = 256,
) -> FitResult:
    """Maximise ``objective`` over ``params = (theta, phi)`` with an Optax optimizer (default Adam 1e-3).

    Runs exactly ``num_steps`` steps (step ``t`` on ``jax.random.split(key, num_steps)[t]``) in
    ``num_chunks`` jitted ``lax.scan`` chunks through :func:`ulam.harness.train`: progress on by
    default in a terminal (``progress``), ``checkpoint=path`` to save after every chunk and resume
    (refusing a different objective, optimizer, data shapes or key unless ``force=True``),
    ``max_seconds`` to cap the time. A NaN or infinity in the objective, a gradient or a
    parameter stops the fit with :class:`ulam.harness.NonFiniteError` naming the step and leaf.

    The returned ``objective`` is a fresh evaluation at the final parameters: the mean and
    standard error over ``num_eval_samples`` i.i.d. draws of the objective (on all the data),
    from keys independent of the training keys. A ``RuntimeWarning`` naming ``num_steps`` and the
    learning rate is raised when the objective's least-squares trend over the last half of the
    steps rises by more than 3 standard errors of its slope (the objective was still improving).

    Example:
      >>> import jax, jax.numpy as jnp, numpyro.distributions as dist, optax
      >>> from ulam.vi import elbo, fit
      >>> obj = elbo(lambda z, th: dist.Normal(3.0, 1.0).log_prob(z), lambda phi: dist.Normal(phi[0], jnp.exp(phi[1])))
      >>> res = fit(obj, ((), jnp.zeros(2)), jax.random.key(0), num_steps=500, optimizer=optax.adam(0.05),
      ...           num_samples=4, progress=False)
      >>> bool(abs(res.params[1][0] - 3.0) < 0.3), res.values.shape
      (True, (500,))
    """
    _check_objective_and_optimizer(objective, optimizer)
    check_vi_params(params)
    checks.finite("params", params, "start from finite parameters")
    checks.prng_key(key)
    num_samples = checks.count("num_samples", num_samples)
    num_steps = checks.count("num_steps", num_steps)
    num_chunks = checks.count("num_chunks", num_chunks)
    num_eval_samples = checks.count("num_eval_samples", num_eval_samples, minimum=2)
    if batch_size is not None and (not data or batch_size < 1 or batch_size > data[0].shape[0]):
        raise ValueError(f"batch_size: must lie in [1, number of data rows] and needs data, got {batch_size}")
    optimizer = optax.adam(1e-3) if optimizer is None else optimizer
    opt_state = optimizer.init(params)
    update = make_update(objective, optimizer, num_samples, batch_size)
    chunk_size = math.ceil(num_steps / max(1, min(num_chunks, num_steps)))
    fp = None
    if checkpoint is not None:
        fp = fingerprint(
            functions={"objective": (lambda p, *d: objective.surrogate(p, key, *d), (params, *data)),
                       "optimizer": (lambda g, s, p: optimizer.update(g, s, p), (params, opt_state, params))},
            inputs=(params, data), key=key,
            settings={"num_samples": num_samples, "batch_size": batch_size, "chunk_size": chunk_size},
        )
    res = train(update, params, opt_state, key, num_steps, chunk_size=chunk_size, args=tuple(data),
                checkpoint=checkpoint, fingerprint=fp, force=force, progress=progress, max_seconds=max_seconds,
                desc=f"fit {objective.name}", value_name=objective.name)
    eval_keys = jax.random.split(jax.random.fold_in(key, 0x0E7A1), num_eval_samples)
    # lax.map in batches: bounded memory when the objective touches a large data set
    draws = jax.jit(lambda ks, *d: jax.lax.map(lambda k: objective.surrogate(res.params, k, *d)[1], ks,
                                               batch_size=min(32, num_eval_samples)))(eval_keys, *data)
    final = Estimate.from_samples(jnp.asarray(draws, jnp.float32).reshape(num_eval_samples, -1).mean(axis=1),
                                  info={"what": "fresh draws of the objective at the final parameters"})
    values = jnp.asarray(res.values)
    improving, gain, z, w = _still_improving(np.asarray(res.values, np.float64))
    if improving and res.stop_reason == "budget":
        warnings.warn(
            f"fit: the {objective.name} was still improving at the last step (+{gain:.3g} over the last {w} steps, "
            f"{z:.1f} standard errors); increase num_steps (now {num_steps}) or the optimizer's learning rate",
            RuntimeWarning, stacklevel=2,
        )
    return FitResult(res.params, values, res.opt_state, final, res.num_steps, res.stop_reason, res.seconds,
                     improving, objective.name)
