r"""Operator learning from walk-on-spheres weak labels (WoS-NO), and a physics-informed baseline.

Viswanath, Nam, Deng, Berner, Anandkumar & Bera (2026), *Operator learning using
weak supervision from walk-on-spheres* (arXiv 2603.01193): regress a neural operator
:math:`\mathcal G_\theta(a)(x)` on cheap, unbiased, noisy walk-on-spheres estimates
:math:`\hat u_a(x)`. Because

.. math:: \mathbb E\big[(\mathcal G_\theta(a)(x) - \hat u)^2\big]
          = (\mathcal G_\theta(a)(x) - u_a(x))^2 + \mathrm{Var}\,\hat u,

the minimiser is the true solution operator. Labels live in a running-mean cache
over epochs, :math:`c_e = (p_e + e\,c_{e-1})/(e+1)`, so the walks behind each label
grow linearly with epochs (:func:`label_cache_update`). The physics-informed
baseline (:func:`physics_informed_loss`) penalises the autodiff residual
:math:`\Delta\mathcal G_\theta + f` inside and the misfit to :math:`g` on the boundary.

The model is a small DeepONet (Lu et al. 2021): a linear branch of the boundary data
at ``num_sensors`` points and a trunk MLP of random Fourier features of ``x``,
:math:`\mathcal G_\theta(a)(x) = \sum_j b_j(a)\,t_j(x) + b_0`.

Example:
  >>> import jax, jax.numpy as jnp
  >>> from ulam.pde.operator_learning import init_deeponet, deeponet, LabelCache, label_cache_update
  >>> params = init_deeponet(jax.random.key(0), num_sensors=8)
  >>> float(deeponet(params, jnp.zeros(8), jnp.array([0.1, 0.2]))) == float(params["bias"])
  True
  >>> cache = label_cache_update(LabelCache.empty(3), jnp.array([1.0, 2.0, 3.0]))
  >>> cache = label_cache_update(cache, jnp.array([3.0, 2.0, 1.0]))
  >>> cache.mean.tolist(), int(cache.count)
  ([2.0, 2.0, 2.0], 2)
"""

from __future__ import annotations

import math
import time
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ulam import checks

__all__ = [
    "LabelCache",
    "label_cache_update",
    "init_deeponet",
    "deeponet",
    "relative_l2",
    "weak_supervision_loss",
    "physics_informed_loss",
    "weak_supervision_step",
    "physics_informed_step",
    "train_weak_supervision",
    "train_physics_informed",
    "TrainingHistory",
    "step_memory_bytes",
]


class LabelCache(NamedTuple):
    """Running mean of WoS labels: ``mean`` (any shape) and ``count`` (epochs averaged so far)."""

    mean: jax.Array
    count: jax.Array

    @classmethod
    def empty(cls, shape, dtype=jnp.float32) -> "LabelCache":
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        return cls(jnp.zeros(shape, dtype), jnp.zeros((), jnp.int32))


def label_cache_update(cache: LabelCache, labels) -> LabelCache:
    r"""Fold fresh labels into the cache: :math:`c_e = (p_e + e\,c_{e-1})/(e+1)` (WoS-NO, ``wos_trainer.py``)."""
    e = cache.count.astype(cache.mean.dtype)
    return LabelCache((labels + e * cache.mean) / (e + 1.0), cache.count + 1)


def init_deeponet(
    key,
    num_sensors: int,
    dim: int = 2,
    *,
    basis: int = 32,
    width: int = 64,
    depth: int = 2,
    num_fourier: int = 16,
    fourier_scale: float = 1.0,
) -> dict:
    """Parameters of a DeepONet with a linear branch and a Fourier-feature trunk MLP (fixed features)."""
    keys = jax.random.split(key, depth + 3)
    sizes = [2 * num_fourier] + [width] * depth + [basis]
    trunk = []
    for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
        w = jax.random.normal(keys[i], (n_in, n_out)) * math.sqrt(2.0 / n_in)
        trunk.append((w, jnp.zeros(n_out)))
    return {
        "fourier": fourier_scale * jax.random.normal(keys[-3], (dim, num_fourier)),
        "trunk": trunk,
        "branch": jax.random.normal(keys[-2], (num_sensors, basis)) / math.sqrt(num_sensors * basis),
        "bias": jnp.zeros(()),
    }


def deeponet(params: dict, sensors, x):
    """The operator's value at one point ``x`` for one instance with boundary data ``sensors``."""
    proj = x @ jax.lax.stop_gradient(params["fourier"])
    h = jnp.concatenate([jnp.sin(proj), jnp.cos(proj)])
    trunk = params["trunk"]
    for w, b in trunk[:-1]:
        h = jnp.tanh(h @ w + b)
    w, b = trunk[-1]
    t = h @ w + b
    return jnp.dot(sensors @ params["branch"], t) + params["bias"]


def _batched(params, sensors, points):
    """Model values for sensors (B, m) and points (B, d)."""
    return jax.vmap(deeponet, in_axes=(None, 0, 0))(params, sensors, points)


def relative_l2(prediction, truth):
    r""":math:`\|\hat u - u\|_2 / \|u\|_2` over every entry."""
    return jnp.sqrt(jnp.sum((prediction - truth) ** 2) / jnp.sum(truth**2))


def weak_supervision_loss(params, sensors, points, labels):
    """Mean squared error of the operator against (noisy, unbiased) labels; batch of (B, m), (B, d), (B,)."""
    return jnp.mean((_batched(params, sensors, points) - labels) ** 2)


def physics_informed_loss(
    params, sensors, interior, boundary, boundary_values, source_values=None, boundary_weight: float = 1.0
):
    r"""PINN loss :math:`\overline{(\Delta\mathcal G_\theta + f)^2} + \lambda\,\overline{(\mathcal G_\theta - g)^2}` (autodiff Laplacian)."""

    def laplacian(s, x):
        return jnp.trace(jax.hessian(lambda y: deeponet(params, s, y))(x))

    lap = jax.vmap(laplacian)(sensors, interior)
    residual = lap if source_values is None else lap + source_values
    misfit = _batched(params, sensors, boundary) - boundary_values
    return jnp.mean(residual**2) + boundary_weight * jnp.mean(misfit**2)


class TrainingHistory(NamedTuple):
    """Test error at checkpoints, with wall time split into labelling and optimisation."""

    steps: list
    errors: list
    label_seconds: float
    train_seconds: float
    compile_seconds: float


def _timed(fn, *args):
    start = time.perf_counter()
    out = jax.block_until_ready(fn(*args))
    return out, time.perf_counter() - start


def weak_supervision_step(optimizer: optax.GradientTransformation, sensors, points, batch_size: int) -> Callable:
    r"""One WoS-NO optimisation step, ``step(params, opt_state, labels, key) -> (params, opt_state, loss)``.

    The step draws ``batch_size`` (instance, point) pairs uniformly with ``key``, takes the gradient of
    :func:`weak_supervision_loss` against the current labels (``labels``: shape ``(I, P)``, the label
    cache's mean) and applies one ``optimizer`` update. :func:`train_weak_supervision` scans it; it is
    public so that its cost (time, :func:`step_memory_bytes`) can be measured on its own.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> from ulam.pde.operator_learning import init_deeponet, weak_supervision_step
      >>> params = init_deeponet(jax.random.key(0), num_sensors=4)
      >>> opt = optax.adam(1e-3)
      >>> step = weak_supervision_step(opt, jnp.ones((2, 4)), jnp.zeros((2, 3, 2)), batch_size=4)
      >>> params, state, loss = step(params, opt.init(params), jnp.zeros((2, 3)), jax.random.key(1))
      >>> loss.shape
      ()
    """
    checks.count("batch_size", batch_size)
    num_instances, num_points, _ = points.shape
    flat_points = points.reshape(num_instances * num_points, -1)

    def loss_on(params, labels, idx):
        inst = idx // num_points
        return weak_supervision_loss(params, sensors[inst], flat_points[idx], labels.reshape(-1)[idx])

    def step(params, opt_state, labels, key):
        idx = jax.random.randint(key, (batch_size,), 0, num_instances * num_points)
        loss, grads = jax.value_and_grad(loss_on)(params, labels, idx)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def physics_informed_step(
    optimizer: optax.GradientTransformation, sample_batch: Callable, *, boundary_weight: float = 1.0
) -> Callable:
    r"""One physics-informed optimisation step, ``step(params, opt_state, key) -> (params, opt_state, loss)``.

    ``sample_batch(key)`` returns the arguments of :func:`physics_informed_loss` after ``params``
    (sensors, interior, boundary, boundary_values, source_values); the step takes the loss's gradient
    and applies one ``optimizer`` update. :func:`train_physics_informed` scans it.

    Example:
      >>> import jax, jax.numpy as jnp, optax
      >>> from ulam.pde.operator_learning import init_deeponet, physics_informed_step
      >>> params = init_deeponet(jax.random.key(0), num_sensors=4)
      >>> batch = lambda k: (jnp.ones((3, 4)), jnp.zeros((3, 2)), jnp.ones((3, 2)) / 2, jnp.zeros(3), None)
      >>> opt = optax.adam(1e-3)
      >>> params, state, loss = physics_informed_step(opt, batch)(params, opt.init(params), jax.random.key(1))
      >>> bool(loss >= 0)
      True
    """

    def step(params, opt_state, key):
        loss, grads = jax.value_and_grad(physics_informed_loss)(params, *sample_batch(key),
                                                                boundary_weight=boundary_weight)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def train_weak_supervision(
    key,
    params,
    optimizer: optax.GradientTransformation,
    sensors,
    points,
    label_fn: Callable,
    *,
    num_epochs: int,
    steps_per_epoch: int,
    batch_size: int,
    evaluate: Callable | None = None,
    checkpoints=(),
    running_mean: bool = True,
):
    r"""WoS-NO training: each epoch draws fresh labels, folds them into the cache, then takes Adam steps on it.

    Args:
      key: a JAX key.
      params, optimizer: the model parameters and an Optax transformation.
      sensors: boundary data of each training instance, shape ``(I, m)``.
      points: training points of each instance, shape ``(I, P, d)``.
      label_fn: ``label_fn(key) -> (I, P)`` fresh label estimates (e.g. one WoS walk per point),
        or exact values for the exact-label reference.
      num_epochs, steps_per_epoch, batch_size: the schedule; a step uses ``batch_size``
        (instance, point) pairs drawn uniformly.
      evaluate: ``evaluate(params) -> test error``, recorded after the epochs in ``checkpoints``.
      running_mean: keep the running-mean label cache (the paper's); ``False`` uses
        only the newest labels.

    Returns:
      ``(params, TrainingHistory)``.
    """
    num_instances, num_points, _ = points.shape
    one_step = weak_supervision_step(optimizer, sensors, points, batch_size)

    @jax.jit
    def epoch(params, opt_state, cache_mean, k):
        def step(carry, kk):
            p, s, loss = one_step(*carry, cache_mean, kk)
            return (p, s), loss

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), jax.random.split(k, steps_per_epoch))
        return params, opt_state, losses

    label_jit = jax.jit(label_fn)
    opt_state = optimizer.init(params)
    cache = LabelCache.empty((num_instances, num_points))
    history_steps, history_err = [], []
    label_s = train_s = 0.0
    compile_s = 0.0
    for e in range(num_epochs):
        k_label, k_train = jax.random.split(jax.random.fold_in(key, e))
        labels, dt = _timed(label_jit, k_label)
        if e == 0:
            compile_s += dt
            labels, dt = _timed(label_jit, k_label)
        label_s += dt
        cache = label_cache_update(cache, labels) if running_mean else LabelCache(labels, jnp.ones((), jnp.int32))
        if e == 0:
            _, dt = _timed(epoch, params, opt_state, cache.mean, k_train)
            compile_s += dt
        (params, opt_state, _), dt = _timed(epoch, params, opt_state, cache.mean, k_train)
        train_s += dt
        if evaluate is not None and (e + 1) in checkpoints:
            history_steps.append((e + 1) * steps_per_epoch)
            history_err.append(float(evaluate(params)))
    return params, TrainingHistory(history_steps, history_err, label_s, train_s, compile_s)


def train_physics_informed(
    key,
    params,
    optimizer: optax.GradientTransformation,
    sample_batch: Callable,
    *,
    num_epochs: int,
    steps_per_epoch: int,
    evaluate: Callable | None = None,
    checkpoints=(),
    boundary_weight: float = 1.0,
):
    """Physics-informed baseline with the same schedule: ``sample_batch(key)`` returns the arguments of
    :func:`physics_informed_loss` after ``params`` (sensors, interior, boundary, boundary_values, source_values)."""

    one_step = physics_informed_step(optimizer, sample_batch, boundary_weight=boundary_weight)

    @jax.jit
    def epoch(params, opt_state, k):
        def step(carry, kk):
            p, s, loss = one_step(*carry, kk)
            return (p, s), loss

        (params, opt_state), losses = jax.lax.scan(step, (params, opt_state), jax.random.split(k, steps_per_epoch))
        return params, opt_state, losses

    opt_state = optimizer.init(params)
    history_steps, history_err = [], []
    train_s = compile_s = 0.0
    for e in range(num_epochs):
        k = jax.random.fold_in(key, e)
        if e == 0:
            _, compile_s = _timed(epoch, params, opt_state, k)
        (params, opt_state, _), dt = _timed(epoch, params, opt_state, k)
        train_s += dt
        if evaluate is not None and (e + 1) in checkpoints:
            history_steps.append((e + 1) * steps_per_epoch)
            history_err.append(float(evaluate(params)))
    return params, TrainingHistory(history_steps, history_err, 0.0, train_s, compile_s)


def step_memory_bytes(fn: Callable, *args) -> int:
    """Peak scratch memory XLA plans for one call of ``fn(*args)`` (temporaries plus outputs), in bytes."""
    compiled = jax.jit(fn).lower(*args).compile()
    stats = compiled.memory_analysis()
    if stats is None:  # pragma: no cover - backends without memory analysis
        return int(np.nan)
    return int(stats.temp_size_in_bytes + stats.output_size_in_bytes)
