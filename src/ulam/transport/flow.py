r"""Sliced Wasserstein gradient flows of point clouds, with the exact W2 recorded along the way."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import numpy as np

from ulam import checks
from ulam.transport.checks import cloud_pair, power
from ulam.transport.sliced import sliced_wasserstein

__all__ = ["exact_wasserstein", "gradient_flow", "FlowTrace"]

_MAX_ASSIGNMENT_POINTS = 5000


def exact_wasserstein(x, y, *, p: float = 2.0, pth_power: bool = False) -> float:
    r"""Exact :math:`W_p` between two uniform clouds of equal size, by optimal assignment (on the host).

    Returns the distance :math:`W_p` by default (the convention of
    :func:`~ulam.transport.sliced_wasserstein` and of POT's sliced distances), and
    :math:`W_p^p` (what POT's ``ot.emd2`` returns for the cost ``ot.dist(x, y) ** p``
    with ``metric="euclidean"``) with ``pth_power=True``.

    .. math::
        W_p(\mu,\nu) = \Big(\min_{\sigma} \frac1n \sum_i \|x_i - y_{\sigma(i)}\|^p\Big)^{1/p},

    for uniform measures on n points each an optimal plan is a permutation
    (Birkhoff), found by ``scipy.optimize.linear_sum_assignment`` in
    :math:`O(n^3)`; meant for small clouds (n <= 5000). Not differentiable (a float).

    Example:
      >>> import numpy as np
      >>> from ulam.transport import exact_wasserstein
      >>> round(exact_wasserstein(np.zeros((3, 2)), np.ones((3, 2))), 6)  # sqrt(2)
      1.414214
      >>> round(exact_wasserstein(np.zeros((3, 2)), np.ones((3, 2)), pth_power=True), 6)  # W_2^2
      2.0
    """
    from scipy.optimize import linear_sum_assignment
    from scipy.spatial.distance import cdist

    x, y = cloud_pair(x, y)
    if x.shape[0] != y.shape[0]:
        raise ValueError(checks.message("x, y", "clouds of equal size for the exact assignment", f"{x.shape[0]} and {y.shape[0]} points"))
    if x.shape[0] > _MAX_ASSIGNMENT_POINTS:
        raise ValueError(checks.message("x", f"at most {_MAX_ASSIGNMENT_POINTS} points for the O(n^3) assignment", x.shape[0]))
    power(p)
    cost = cdist(np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)) ** p
    rows, cols = linear_sum_assignment(cost)
    value = float(cost[rows, cols].mean())
    return value if pth_power else value ** (1.0 / p)


class FlowTrace(NamedTuple):
    """What :func:`gradient_flow` records: final positions, and per record step the exact W2 and the loss.

    Example:
      >>> import jax
      >>> from ulam.transport import gradient_flow
      >>> k1, k2 = jax.random.split(jax.random.key(0))
      >>> trace = gradient_flow(jax.random.normal(k1, (20, 2)), jax.random.normal(k2, (20, 2)) + 2.0,
      ...                       jax.random.key(1), 20, record_every=10)
      >>> trace.steps.tolist(), trace.wasserstein.shape, trace.positions.shape
      ([0, 10, 20], (3,), (20, 2))
    """

    positions: jax.Array  # (n, d) final source cloud
    steps: np.ndarray  # (R,) step index of each record (0 = start)
    wasserstein: np.ndarray  # (R,) exact W_2 to the target at those steps
    loss: np.ndarray  # (R,) the sliced loss N * SW_p at the step before each record (NaN at step 0)


def gradient_flow(
    source,
    target,
    key,
    num_steps: int,
    *,
    learning_rate: float = 0.01,
    record_every: int = 100,
    num_directions: int = 10,
    p: float = 2.0,
    directions: str = "mc",
    control_variate: str | None = None,
    record_exact: bool = True,
) -> FlowTrace:
    r"""Move ``source`` toward ``target`` by gradient descent on :math:`N\cdot SW_p`, recording exact W2.

    .. math::
        x^{(t+1)} = x^{(t)} - \eta\, \nabla_x \big[N\,\widehat{SW}_p(x^{(t)}, y;\ \theta^{(t)}_{1:L})\big],

    with fresh directions each step (the sliced-Wasserstein flow of Nguyen & Ho,
    *Sliced Wasserstein estimation with control variates*, ICLR 2024, Sec. 4, whose
    official code uses SGD on ``N * SW`` with ``N`` the number of points). The
    estimator is :func:`sliced_wasserstein` (its default :math:`SW_p`) with the given
    ``directions`` / ``control_variate``. Steps run in a jitted ``lax.scan`` of
    ``record_every`` steps; between chunks the exact :math:`W_2` is computed on the
    host by :func:`exact_wasserstein` (equal-size clouds only).

    Example:
      >>> import jax
      >>> from ulam.transport import gradient_flow
      >>> k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
      >>> x, y = jax.random.normal(k1, (50, 2)), jax.random.normal(k2, (50, 2)) + 4.0
      >>> trace = gradient_flow(x, y, k3, 200, record_every=100, control_variate="lower")
      >>> bool(trace.wasserstein[-1] < 0.8 * trace.wasserstein[0])
      True
    """
    source, target = cloud_pair(source, target)
    checks.prng_key(key)
    num_steps = checks.count("num_steps", num_steps)
    record_every = checks.count("record_every", record_every)
    num_directions = checks.count("num_directions", num_directions, minimum=2)
    checks.positive("learning_rate", learning_rate)
    power(p)
    chunk = _chunk_runner(record_every, float(learning_rate), num_directions, float(p), directions, control_variate)
    last_chunk = num_steps % record_every

    def w2(x):
        return exact_wasserstein(x, target) if record_exact else float("nan")

    x = source
    steps, dists, losses = [0], [w2(x)], [float("nan")]
    done = 0
    while done < num_steps:
        size = min(record_every, num_steps - done)
        run = chunk if size == record_every else _chunk_runner(
            last_chunk, float(learning_rate), num_directions, float(p), directions, control_variate
        )
        x, loss = run(x, target, jax.random.fold_in(key, done))
        done += size
        steps.append(done)
        dists.append(w2(x))
        losses.append(float(loss))
    return FlowTrace(x, np.asarray(steps), np.asarray(dists), np.asarray(losses))


@functools.lru_cache(maxsize=32)
def _chunk_runner(length, learning_rate, num_directions, p, directions, control_variate):
    def loss_fn(x, y, key):
        est = sliced_wasserstein(
            x, y, key, num_directions, p=p, directions=directions, control_variate=control_variate
        )
        return x.shape[0] * est.mean

    def step(carry, key):
        x, y = carry
        loss, grad = jax.value_and_grad(loss_fn)(x, y, key)
        return (x - learning_rate * grad, y), loss

    @jax.jit
    def run(x, y, key):
        (x, _), losses = jax.lax.scan(step, (x, y), jax.random.split(key, length))
        return x, losses[-1]

    return run
