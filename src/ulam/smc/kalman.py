r"""Linear-Gaussian state-space models: exact Kalman filter and RTS smoother.

The model is :math:`X_0\sim\mathcal N(m_0, P_0)`,
:math:`X_t = A X_{t-1} + \varepsilon_t`, :math:`\varepsilon_t\sim\mathcal N(0,Q)`,
:math:`Y_t = C X_t + \nu_t`, :math:`\nu_t\sim\mathcal N(0,R)`. The Kalman filter
(Kalman 1960) gives :math:`p(y_{0:T-1})` and the filtering laws exactly; the
Rauch–Tung–Striebel smoother (1965) gives the smoothing laws
:math:`X_t\mid y_{0:T-1}\sim\mathcal N(m_{t|T}, P_{t|T})` and the lag-one
covariances :math:`\mathrm{Cov}(X_t, X_{t+1}\mid y) = J_t P_{t+1|T}`,
:math:`J_t = P_{t|t}A^\top P_{t+1|t}^{-1}`. They are the ground truth of the
particle methods' tests and reproductions.

Missing observations: a NaN entry of :math:`y_t` marks that component as not observed.
The update then uses only the observed components (the rows of :math:`C` and the
block of :math:`R` that remain), which is exactly the Kalman filter of the model with
those observations removed; a row that is all NaN skips the update and adds nothing
to the log-likelihood. Infinite observations and non-finite model matrices raise a
``ValueError``, and so do covariances :math:`Q, R, P_0` that are not symmetric positive
semi-definite (checked when the matrices are concrete, i.e. outside ``jit``).

Example:
  >>> import jax
  >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm, simulate, kalman_filter
  >>> lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
  >>> _, y = simulate(jax.random.key(0), linear_gaussian_ssm(lg), 30)
  >>> kf = kalman_filter(lg, y)
  >>> kf.filtered_means.shape
  (30,)
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ulam import checks
from ulam.smc.models import StateSpaceModel
from ulam.smc.reporting import describe_array, result_repr, table

__all__ = [
    "LinearGaussianModel",
    "KalmanResult",
    "SmootherResult",
    "kalman_filter",
    "rts_smoother",
    "linear_gaussian_ssm",
    "check_model",
]


class LinearGaussianModel(NamedTuple):
    """Matrices of a linear-Gaussian state-space model (see module doc).

    ``is_scalar=True`` (from :meth:`scalar`) means one-dimensional states and
    observations handled as scalars: particles of shape ``()``, observations ``(T,)``.

    Example:
      >>> from ulam.smc import LinearGaussianModel
      >>> lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
      >>> lg.transition_cov.shape, round(float(lg.initial_cov[0, 0]), 4)
      ((1, 1), 1.8947)
    """

    transition_matrix: jax.Array  # A (dx, dx)
    transition_cov: jax.Array  # Q (dx, dx)
    observation_matrix: jax.Array  # C (dy, dx)
    observation_cov: jax.Array  # R (dy, dy)
    initial_mean: jax.Array  # m0 (dx,)
    initial_cov: jax.Array  # P0 (dx, dx)
    is_scalar: bool = False

    @classmethod
    def scalar(cls, a, sigma_x, c, sigma_y, m0=0.0, p0=None):
        r"""The scalar model :math:`x_t = a x_{t-1} + \sigma_x u_t`, :math:`y_t = c x_t + \sigma_y v_t`.

        ``p0`` defaults to the stationary variance :math:`\sigma_x^2/(1-a^2)` when :math:`|a|<1`.
        """
        if p0 is None:
            if not abs(float(a)) < 1:
                raise ValueError(f"p0: no stationary variance for |a| >= 1 (a={a}); pass p0")
            p0 = sigma_x**2 / (1.0 - a**2)
        m = lambda v: jnp.reshape(jnp.asarray(v, dtype=jnp.result_type(float)), (1, 1))  # noqa: E731
        return cls(m(a), m(sigma_x**2), m(c), m(sigma_y**2), jnp.reshape(jnp.asarray(m0, m(a).dtype), (1,)), m(p0), True)


class KalmanResult(NamedTuple):
    """Kalman filter output: ``log_likelihood`` (exact, shape ``()``), filtered and predicted
    means ``(T,)``/``(T, dx)`` and covariances ``(T,)``/``(T, dx, dx)``.

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.smc import LinearGaussianModel, kalman_filter
      >>> kf = kalman_filter(LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0), jnp.zeros(4))
      >>> kf.predicted_covs.shape
      (4,)
    """

    log_likelihood: jax.Array
    filtered_means: jax.Array
    filtered_covs: jax.Array
    predicted_means: jax.Array
    predicted_covs: jax.Array

    def __repr__(self) -> str:
        return result_repr(
            "KalmanResult",
            {"log_likelihood": describe_array(self.log_likelihood), "filtered_means": describe_array(self.filtered_means)},
        )

    def summary(self, plain: bool = False):
        """Per time step: filtered mean and standard deviation of the first state coordinate."""
        m = np.asarray(self.filtered_means, dtype=float).reshape(self.filtered_means.shape[0], -1)[:, 0]
        P = np.asarray(self.filtered_covs, dtype=float).reshape(self.filtered_covs.shape[0], -1)[:, 0]
        return table([{"t": t, "filtered mean": m[t], "filtered sd": float(np.sqrt(P[t]))} for t in range(m.size)], plain=plain)


class SmootherResult(NamedTuple):
    """RTS output: smoothed means/covs (leading axis T) and lag-one covariances ``Cov(x_t, x_{t+1} | y)`` (T-1).

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.smc import LinearGaussianModel, rts_smoother
      >>> rts_smoother(LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0), jnp.zeros(4)).smoothed_covs.shape
      (4,)
    """

    smoothed_means: jax.Array
    smoothed_covs: jax.Array
    lag_one_covs: jax.Array

    def __repr__(self) -> str:
        return result_repr(
            "SmootherResult",
            {"smoothed_means": describe_array(self.smoothed_means), "smoothed_covs": describe_array(self.smoothed_covs)},
        )

    def summary(self, plain: bool = False):
        """Per time step: smoothed mean and standard deviation of the first state coordinate."""
        m = np.asarray(self.smoothed_means, dtype=float).reshape(self.smoothed_means.shape[0], -1)[:, 0]
        P = np.asarray(self.smoothed_covs, dtype=float).reshape(self.smoothed_covs.shape[0], -1)[:, 0]
        return table([{"t": t, "smoothed mean": m[t], "smoothed sd": float(np.sqrt(P[t]))} for t in range(m.size)], plain=plain)


def check_model(lg: LinearGaussianModel) -> LinearGaussianModel:
    """Raise a ``ValueError`` for non-finite matrices or covariances that are not PSD (no-op under tracing).

    Example:
      >>> import jax.numpy as jnp
      >>> from ulam.smc import LinearGaussianModel
      >>> from ulam.smc.kalman import check_model
      >>> check_model(LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)._replace(transition_cov=-jnp.eye(1)))
      Traceback (most recent call last):
      ...
      ValueError: lg.transition_cov: expected a positive semi-definite matrix, got one with smallest eigenvalue -1
    """
    if not isinstance(lg, LinearGaussianModel):
        raise TypeError(checks.message("lg", "a LinearGaussianModel", type(lg).__name__))
    dx = jnp.shape(lg.transition_matrix)[0]
    dy = jnp.shape(lg.observation_matrix)[0]
    shapes = {
        "transition_matrix": (dx, dx),
        "transition_cov": (dx, dx),
        "observation_matrix": (dy, dx),
        "observation_cov": (dy, dy),
        "initial_mean": (dx,),
        "initial_cov": (dx, dx),
    }
    for name, shape in shapes.items():
        value = getattr(lg, name)
        checks.array(f"lg.{name}", value, shape=shape)
        checks.finite(f"lg.{name}", value)
    for name in ("transition_cov", "observation_cov", "initial_cov"):
        checks.positive_semidefinite(f"lg.{name}", getattr(lg, name))
    return lg


def _as_obs(lg, y):
    check_model(lg)
    y = jnp.asarray(y)
    dy = lg.observation_matrix.shape[0]
    if lg.is_scalar:
        if y.ndim != 1:
            raise ValueError(f"y: a scalar model takes observations of shape (T,), got {y.shape}")
        return y[:, None]
    if y.ndim != 2 or y.shape[1] != dy:
        raise ValueError(f"y: expected observations of shape (T, {dy}), got {y.shape}")
    if checks.is_concrete(y) and np.any(np.isinf(np.asarray(y))):
        raise ValueError(
            checks.message("y", "finite observations (NaN marks a missing one)", "an infinite entry", "drop or mask it")
        )
    return y


def kalman_filter(lg: LinearGaussianModel, y) -> KalmanResult:
    r"""Exact filtering and log-likelihood :math:`\log p(y_{0:T-1})` of a :class:`LinearGaussianModel`.

    ``y``: ``(T,)`` for a scalar model, else ``(T, dy)``. NaN entries are missing observations
    (see the module doc): the update uses the observed components only.

    Example:
      >>> from ulam.smc import LinearGaussianModel, kalman_filter
      >>> import jax.numpy as jnp
      >>> lg = LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0)
      >>> kf = kalman_filter(lg, jnp.array([0.3, jnp.nan, -0.2]))
      >>> kf.filtered_means.shape, bool(kf.log_likelihood < 0)
      ((3,), True)
    """
    ys = _as_obs(lg, y)
    A, Q, C, R = lg.transition_matrix, lg.transition_cov, lg.observation_matrix, lg.observation_cov
    eye = jnp.eye(C.shape[0], dtype=R.dtype)

    def update(m, P, yt):
        # Observed components only: a missing one gets a zero row of C and a unit, uncorrelated
        # noise, so its residual is 0 and it adds -log(2 pi)/2, which is taken back out.
        obs = ~jnp.isnan(yt)
        missing = ~jnp.any(obs)
        mask = obs.astype(R.dtype)
        Cm = C * mask[:, None]
        Rm = R * mask[:, None] * mask[None, :] + eye * (1.0 - mask)
        yt = jnp.where(obs, yt, 0.0)
        S = Cm @ P @ Cm.T + Rm
        resid = yt - Cm @ m
        chol = jnp.linalg.cholesky(S)
        sol = jax.scipy.linalg.cho_solve((chol, True), resid)
        ll = -0.5 * (resid @ sol) - jnp.sum(jnp.log(jnp.diag(chol))) - 0.5 * jnp.sum(mask) * math.log(2 * math.pi)
        K = jax.scipy.linalg.cho_solve((chol, True), Cm @ P).T
        m_new = m + K @ resid
        P_new = P - K @ S @ K.T
        P_new = 0.5 * (P_new + P_new.T)
        return jnp.where(missing, m, m_new), jnp.where(missing, P, P_new), jnp.where(missing, 0.0, ll)

    def step(carry, yt):
        m, P, first = carry
        mp = jnp.where(first, m, A @ m)
        Pp = jnp.where(first, P, A @ P @ A.T + Q)
        mf, Pf, ll = update(mp, Pp, yt)
        return (mf, Pf, False), (mf, Pf, mp, Pp, ll)

    _, (mf, Pf, mp, Pp, lls) = lax.scan(step, (lg.initial_mean, lg.initial_cov, True), ys)
    if lg.is_scalar:
        mf, Pf, mp, Pp = mf[:, 0], Pf[:, 0, 0], mp[:, 0], Pp[:, 0, 0]
    return KalmanResult(jnp.sum(lls), mf, Pf, mp, Pp)


def rts_smoother(lg: LinearGaussianModel, y) -> SmootherResult:
    """Rauch–Tung–Striebel smoothing means, covariances and lag-one covariances (NaN = missing, as in
    :func:`kalman_filter`).

    Example:
      >>> from ulam.smc import LinearGaussianModel, rts_smoother
      >>> import jax.numpy as jnp
      >>> sm = rts_smoother(LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0), jnp.array([0.3, 0.1, -0.2]))
      >>> sm.smoothed_means.shape, sm.lag_one_covs.shape
      ((3,), (2,))
    """
    kf = kalman_filter(lg, y)
    A = lg.transition_matrix
    mf, Pf, mp, Pp = kf.filtered_means, kf.filtered_covs, kf.predicted_means, kf.predicted_covs
    if lg.is_scalar:
        mf, mp = mf[:, None], mp[:, None]
        Pf, Pp = Pf[:, None, None], Pp[:, None, None]

    def step(carry, inputs):
        ms, Ps = carry
        m, P, m_next_pred, P_next_pred = inputs
        J = jnp.linalg.solve(P_next_pred.T, (P @ A.T).T).T  # P A^T (P_{t+1|t})^{-1}
        m_s = m + J @ (ms - m_next_pred)
        P_s = P + J @ (Ps - P_next_pred) @ J.T
        return (m_s, 0.5 * (P_s + P_s.T)), (m_s, P_s, J @ Ps)

    _, (ms, Ps, cross) = lax.scan(step, (mf[-1], Pf[-1]), (mf[:-1], Pf[:-1], mp[1:], Pp[1:]), reverse=True)
    ms = jnp.concatenate([ms, mf[-1:]], 0)
    Ps = jnp.concatenate([Ps, Pf[-1:]], 0)
    if lg.is_scalar:
        return SmootherResult(ms[:, 0], Ps[:, 0, 0], cross[:, 0, 0])
    return SmootherResult(ms, Ps, cross)


def linear_gaussian_ssm(lg: LinearGaussianModel, batched: bool = False) -> StateSpaceModel:
    """The :class:`StateSpaceModel` of a linear-Gaussian model (transition densities and bound included).

    ``batched=True`` gives the hand-vectorized version (one key per step, whole particle arrays).

    Example:
      >>> import jax
      >>> from ulam.smc import LinearGaussianModel, linear_gaussian_ssm
      >>> ssm = linear_gaussian_ssm(LinearGaussianModel.scalar(0.9, 0.6, 1.0, 1.0))
      >>> ssm.observation_shape
      ()
    """
    check_model(lg)
    return _lg_ssm(lg, batched)


def _lg_ssm(lg: LinearGaussianModel, batched: bool) -> StateSpaceModel:
    A, Q, C, R, m0, P0 = (
        lg.transition_matrix,
        lg.transition_cov,
        lg.observation_matrix,
        lg.observation_cov,
        lg.initial_mean,
        lg.initial_cov,
    )
    dx, dy = A.shape[0], C.shape[0]
    LQ, LR, L0 = jnp.linalg.cholesky(Q), jnp.linalg.cholesky(R), jnp.linalg.cholesky(P0)
    log_bound = -0.5 * dx * math.log(2 * math.pi) - jnp.sum(jnp.log(jnp.diag(LQ)))

    def mvn_logpdf(x, mean, L):
        z = jax.scipy.linalg.solve_triangular(L, (x - mean)[..., None], lower=True)[..., 0]
        return -0.5 * jnp.sum(z**2, -1) - jnp.sum(jnp.log(jnp.diag(L))) - 0.5 * L.shape[0] * math.log(2 * math.pi)

    if lg.is_scalar:
        a, q, c, r, m, p = A[0, 0], jnp.sqrt(Q[0, 0]), C[0, 0], jnp.sqrt(R[0, 0]), m0[0], jnp.sqrt(P0[0, 0])
        norm = jax.scipy.stats.norm.logpdf
        if batched:
            return StateSpaceModel(
                initial_sample=lambda k, n: m + p * jax.random.normal(k, (n,)),
                transition_sample=lambda k, x: a * x + q * jax.random.normal(k, x.shape),
                observation_log_prob=lambda x, y: norm(y, c * x, r),
                transition_log_prob=lambda xp, x: norm(x, a * xp, q),
                initial_log_prob=lambda x: norm(x, m, p),
                observation_sample=lambda k, x: c * x + r * jax.random.normal(k, x.shape),
                observation_shape=(),
                transition_log_bound=float(log_bound) if not isinstance(log_bound, jax.core.Tracer) else None,
                batched=True,
            )
        return StateSpaceModel(
            initial_sample=lambda k: m + p * jax.random.normal(k),
            transition_sample=lambda k, x: a * x + q * jax.random.normal(k),
            observation_log_prob=lambda x, y: norm(y, c * x, r),
            transition_log_prob=lambda xp, x: norm(x, a * xp, q),
            initial_log_prob=lambda x: norm(x, m, p),
            observation_sample=lambda k, x: c * x + r * jax.random.normal(k),
            observation_shape=(),
            transition_log_bound=float(log_bound) if not isinstance(log_bound, jax.core.Tracer) else None,
        )
    if batched:
        raise ValueError("batched: the hand-vectorized version exists for scalar models only")
    return StateSpaceModel(
        initial_sample=lambda k: m0 + L0 @ jax.random.normal(k, (dx,)),
        transition_sample=lambda k, x: A @ x + LQ @ jax.random.normal(k, (dx,)),
        observation_log_prob=lambda x, y: mvn_logpdf(y, C @ x, LR),
        transition_log_prob=lambda xp, x: mvn_logpdf(x, A @ xp, LQ),
        initial_log_prob=lambda x: mvn_logpdf(x, m0, L0),
        observation_sample=lambda k, x: C @ x + LR @ jax.random.normal(k, (dy,)),
        observation_shape=(dy,),
        transition_log_bound=float(log_bound) if not isinstance(log_bound, jax.core.Tracer) else None,
    )
