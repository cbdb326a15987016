"""WoS-NO pieces: the running-mean label cache, the DeepONet and the physics-informed residual."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from ulam import Estimate
from ulam.pde.operator_learning import (
    LabelCache,
    deeponet,
    init_deeponet,
    label_cache_update,
    physics_informed_loss,
    physics_informed_step,
    relative_l2,
    train_physics_informed,
    train_weak_supervision,
    weak_supervision_loss,
    weak_supervision_step,
)
from ulam.testing import assert_within_stderr


def test_label_cache_is_the_running_mean_of_every_draw():
    draws = jax.random.normal(jax.random.key(0), (7, 5))
    cache = LabelCache.empty(5)
    for d in draws:
        cache = label_cache_update(cache, d)
    np.testing.assert_allclose(np.asarray(cache.mean), np.asarray(draws.mean(0)), rtol=1e-5, atol=1e-6)
    assert int(cache.count) == 7


def test_label_cache_variance_falls_like_one_over_epochs():
    # Unbiased unit-variance labels: after e epochs the cache error has variance 1/e.
    key = jax.random.key(1)
    truth = jnp.linspace(-1, 1, 20_000)
    cache = LabelCache.empty(truth.shape)
    for e in range(16):
        cache = label_cache_update(cache, truth + jax.random.normal(jax.random.fold_in(key, e), truth.shape))
    scaled_sq = (4.0 * (cache.mean - truth)) ** 2  # sqrt(16) * error has unit variance
    assert_within_stderr(Estimate.from_samples(scaled_sq), 1.0)


def test_physics_informed_residual_matches_finite_differences():
    params = init_deeponet(jax.random.key(2), num_sensors=4, width=16, basis=8)
    sensors = jax.random.normal(jax.random.key(3), (1, 4))
    x = jnp.array([[0.2, -0.3]])
    boundary = jnp.array([[1.0, 0.0]])
    with jax.enable_x64(True):
        p64 = jax.tree_util.tree_map(lambda a: a.astype(jnp.float64), params)
        s64, x64 = sensors.astype(jnp.float64), x.astype(jnp.float64)

        @jax.jit
        def both(p, s, x, b):
            h = 1e-4
            u = lambda y: deeponet(p, s[0], y)  # noqa: E731
            fd = sum((u(x[0] + h * e) - 2 * u(x[0]) + u(x[0] - h * e)) / h**2 for e in jnp.eye(2, dtype=x.dtype))
            g = jnp.array([u(b[0])])  # zero boundary misfit, so the loss is the squared Laplacian
            return fd, physics_informed_loss(p, s, x, b, g)

        fd, loss = both(p64, s64, x64, boundary.astype(jnp.float64))
        assert float(loss) == pytest.approx(float(fd) ** 2, rel=1e-4)


def test_weak_supervision_with_noisy_labels_learns_the_operator():
    # Family u_a(x) = a0 x0 + a1 x1 (harmonic); labels = u + unit noise, as single WoS walks would be.
    key = jax.random.key(4)
    coef = jax.random.normal(key, (64, 2))
    sensors = coef
    points = jax.random.uniform(jax.random.fold_in(key, 1), (64, 16, 2), minval=-0.7, maxval=0.7)
    truth = jnp.einsum("ik,ipk->ip", coef, points)

    def noisy(k):
        return truth + 0.5 * jax.random.normal(k, truth.shape)

    test_pts = jax.random.uniform(jax.random.fold_in(key, 2), (32, 2), minval=-0.7, maxval=0.7)
    test_coef = jax.random.normal(jax.random.fold_in(key, 3), (32, 2))

    def evaluate(params):
        pred = jax.vmap(deeponet, in_axes=(None, 0, 0))(params, test_coef, test_pts)
        return relative_l2(pred, jnp.sum(test_coef * test_pts, axis=1))

    params = init_deeponet(jax.random.key(5), num_sensors=2, width=32, basis=8)
    start = float(evaluate(params))
    _, hist = train_weak_supervision(
        jax.random.key(6), params, optax.adam(3e-3), sensors, points, noisy,
        num_epochs=4, steps_per_epoch=60, batch_size=128, evaluate=evaluate, checkpoints=(4,),
    )
    assert hist.errors[-1] < 0.2 < start


def _tiny_problem():
    sensors = jax.random.normal(jax.random.key(1), (3, 4))
    points = 0.5 * jax.random.uniform(jax.random.key(2), (3, 5, 2))
    labels = jax.random.normal(jax.random.key(3), (3, 5))
    return init_deeponet(jax.random.key(0), num_sensors=4, width=16, basis=8), sensors, points, labels


def test_weak_supervision_step_is_the_step_the_training_loop_takes():
    params, sensors, points, labels = _tiny_problem()
    opt = optax.adam(1e-2)
    key = jax.random.key(7)
    trained, _ = train_weak_supervision(key, params, opt, sensors, points, lambda k: labels, num_epochs=1,
                                        steps_per_epoch=1, batch_size=6)
    _, k_train = jax.random.split(jax.random.fold_in(key, 0))
    stepped, _, loss = jax.jit(weak_supervision_step(opt, sensors, points, 6))(
        params, opt.init(params), labels, jax.random.split(k_train, 1)[0])
    for a, b in zip(jax.tree_util.tree_leaves(trained), jax.tree_util.tree_leaves(stepped)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    # the loss it returns is the weak-supervision loss on the pairs it drew, before the update
    idx = jax.random.randint(jax.random.split(k_train, 1)[0], (6,), 0, 15)
    expected = weak_supervision_loss(params, sensors[idx // 5], points.reshape(15, 2)[idx], labels.reshape(-1)[idx])
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)


def test_physics_informed_step_is_the_step_the_training_loop_takes():
    params, sensors, _, _ = _tiny_problem()
    opt = optax.adam(1e-2)

    def batch(k):
        theta = jax.random.uniform(k, (4,), maxval=6.28)
        boundary = jnp.stack([jnp.cos(theta), jnp.sin(theta)], 1)
        return sensors[jnp.array([0, 1, 2, 0])], 0.3 * boundary, boundary, jnp.sin(theta), None

    key = jax.random.key(8)
    trained, _ = train_physics_informed(key, params, opt, batch, num_epochs=1, steps_per_epoch=1)
    k = jax.random.split(jax.random.fold_in(key, 0), 1)[0]
    stepped, _, loss = jax.jit(physics_informed_step(opt, batch))(params, opt.init(params), k)
    for a, b in zip(jax.tree_util.tree_leaves(trained), jax.tree_util.tree_leaves(stepped)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert float(loss) == pytest.approx(float(physics_informed_loss(params, *batch(k))), rel=1e-5)


def test_weak_supervision_step_refuses_a_bad_batch_size():
    params, sensors, points, _ = _tiny_problem()
    with pytest.raises(ValueError, match="batch_size: expected"):
        weak_supervision_step(optax.adam(1e-3), sensors, points, 0)


@pytest.mark.slow  # each example compiles its own step
def test_docstring_examples():
    import doctest

    import ulam.pde.operator_learning as module

    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.attempted > 0 and result.failed == 0
