"""The one training loop: Optax-style updates run by :func:`~ulam.harness.run_chunks`, with
exact budgets, progress, checkpoint/resume and a stop at the first non-finite step.

``update_fn(params, opt_state, key, *args) -> (params, opt_state, value, grads)`` is one step
of any Optax ``GradientTransformation`` (VI fitting, operator-learning training, stochastic
optimization). Step ``t`` uses ``jax.random.split(key, num_steps)[t]``. After every chunk the
loop checks the value, every gradient leaf and every parameter leaf, and stops with a
:class:`NonFiniteError` naming the first step and what went non-finite, instead of
returning NaN parameters.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Optional

import jax
import jax.numpy as jnp
import numpy as np

from ulam import checks
from ulam.harness.chunks import run_chunks
from ulam.harness.rounds import _table

__all__ = ["NonFiniteError", "TrainResult", "train"]


class NonFiniteError(FloatingPointError):
    """A training step produced a NaN or infinity; the message names the step and the quantity."""


@dataclasses.dataclass
class TrainResult:
    """What :func:`train` returns: final ``params`` and ``opt_state``, per-step ``values``, and how it ended."""

    params: Any
    opt_state: Any
    values: np.ndarray
    num_steps: int
    stop_reason: str
    seconds: float

    def summary(self):
        """A one-row table: steps, how it ended, the mean value over the last 10% of steps."""
        w = max(1, len(self.values) // 10)
        last = float(np.mean(self.values[-w:])) if len(self.values) else float("nan")
        return _table({"num_steps": self.num_steps, "stop_reason": self.stop_reason, "seconds": self.seconds,
                       "last_window_mean": last})

    def __repr__(self) -> str:
        return f"TrainResult({self.num_steps} steps, stopped by {self.stop_reason!r}, {self.seconds:.3g} s)"


def _leaf_names(tree) -> list[str]:
    return [jax.tree_util.keystr(p) or "<root>" for p, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def _all_finite(tree) -> jax.Array:
    leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree_util.tree_leaves(tree)
              if jnp.issubdtype(jnp.asarray(x).dtype, jnp.inexact)]
    return jnp.stack(leaves) if leaves else jnp.ones((0,), bool)


def train(
    update_fn: Callable,
    params: Any,
    opt_state: Any,
    key: jax.Array,
    num_steps: int,
    *,
    chunk_size: Optional[int] = None,
    args: tuple = (),
    max_seconds: Optional[float] = None,
    checkpoint=None,
    fingerprint: Optional[Mapping[str, str]] = None,
    force: bool = False,
    progress: Any = None,
    desc: str = "train",
    value_name: str = "loss",
) -> TrainResult:
    """Run exactly ``num_steps`` steps of ``update_fn`` (see module doc); stop at a non-finite step.

    ``chunk_size`` defaults to ``ceil(num_steps / 20)`` (20 host round-trips for progress and
    checkpoints). The error for a non-finite step reads, e.g.,
    ``loss: went non-finite at step 12 of 25 (gradient leaf [1]); ...``.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> opt = optax.sgd(0.1)
      >>> def update(p, s, k, target):
      ...     v, g = jax.value_and_grad(lambda q: jnp.sum((q - target) ** 2))(p)
      ...     u, s = opt.update(g, s, p)
      ...     return optax.apply_updates(p, u), s, v, g
      >>> p0 = jnp.zeros(2)
      >>> res = train(update, p0, opt.init(p0), jax.random.key(0), 25, args=(jnp.ones(2),), progress=False)
      >>> res.values.shape, bool(jnp.allclose(res.params, 1.0, atol=1e-2))
      ((25,), True)
    """
    checks.prng_key(key)
    checks.function("update_fn", update_fn)
    num_steps = checks.count("num_steps", num_steps)
    chunk_size = checks.count("chunk_size", chunk_size) if chunk_size is not None else -(-num_steps // 20)
    param_names = _leaf_names(params)

    def step(carry, k, *a):
        p, s = carry
        p, s, value, grads = update_fn(p, s, k, *a)
        flags = (jnp.isfinite(value).all(), _all_finite(grads), _all_finite(p))
        return (p, s), (value, flags)

    grad_names: list[str] = []

    def check(state, outputs, done):
        value, (v_ok, g_ok, p_ok) = outputs
        bad = ~(v_ok & g_ok.all(axis=-1) & p_ok.all(axis=-1))
        if not bad.any():
            return None
        t = int(np.argmax(bad))
        step_no = done - len(bad) + t + 1
        if not g_ok[t].all():
            what = f"gradient leaf {_names(grad_names, g_ok[t])}"
        elif not v_ok[t]:
            what = f"the {value_name} itself ({float(np.asarray(value[t]).ravel()[0])})"
        else:
            what = f"parameter leaf {_names(param_names, p_ok[t])}"
        raise NonFiniteError(
            f"{value_name}: went non-finite at step {step_no} of {num_steps} ({what}); check the model for NaN "
            "(log of a negative, overflow) or lower the learning rate"
        )

    if not grad_names:
        out_shape = jax.eval_shape(lambda: update_fn(params, opt_state, key, *args))
        if not (isinstance(out_shape, (tuple, list)) and len(out_shape) == 4):
            got = f"a {len(out_shape)}-tuple" if isinstance(out_shape, (tuple, list)) else type(out_shape).__name__
            raise TypeError(checks.message("update_fn", "its output to be (params, opt_state, value, grads)", got,
                                           "return the gradients too (ulam.vi.make_update has this form)"))
        grads_shape = out_shape[3]
        grad_names.extend(n for n, leaf in zip(_leaf_names(grads_shape), jax.tree_util.tree_leaves(grads_shape))
                          if jnp.issubdtype(leaf.dtype, jnp.inexact))
    param_names = [n for n, leaf in zip(param_names, jax.tree_util.tree_leaves(params))
                   if jnp.issubdtype(jnp.asarray(leaf).dtype, jnp.inexact)]
    keys = jax.random.split(key, num_steps)
    res = run_chunks(
        step, (params, opt_state), num_steps, chunk_size=chunk_size, xs=keys, args=args, stop=check,
        max_seconds=max_seconds, checkpoint=checkpoint, fingerprint=fingerprint, force=force, progress=progress,
        postfix=lambda out: {value_name: float(np.mean(out[0]))}, desc=desc,
    )
    (params, opt_state) = res.state
    return TrainResult(params, opt_state, res.outputs[0], res.num_steps, res.stop_reason, res.seconds)


def _names(names: list[str], ok: np.ndarray) -> str:
    bad = [n for n, good in zip(names, ok) if not good]
    return ", ".join(bad) if bad else "?"
