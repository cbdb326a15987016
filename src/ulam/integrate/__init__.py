r"""Monte Carlo integration of :math:`\mathbb{E}_p[f(X)]`, with variance reduction.

Every function here returns an :class:`~ulam.Estimate` and draws its samples in
chunks of ``batch_size`` (a ``lax.scan`` over chunks with exactly merged running
moments), so memory stays bounded for any ``n``.

* ``f`` maps ONE draw (any pytree) to a pytree of arrays; it is vectorised with
  ``vmap``. The estimate has the structure of ``f``'s output.
* ``p`` is a distribution (anything with ``sample(key, sample_shape)``, e.g. a
  numpyro distribution) or a sampling function ``p(key, num) -> draws`` whose
  leading axis is ``num``. The estimators that need uniforms (antithetic through
  the inverse CDF, quasi-Monte Carlo, stratified) push ``[0, 1)^d`` points through
  ``p``'s inverse CDF; :func:`from_uniform` wraps any other map from uniforms.

Same key, same ``n`` and same ``batch_size`` give the same result bit for bit.
Each public function caches its compiled body per ``(f, n, batch_size, ...)``;
pass the same ``f`` object to reuse it (a fresh ``lambda`` recompiles).

Layout (one idea per file): :mod:`~ulam.integrate.plain` (plain MC),
:mod:`~ulam.integrate.antithetic_variates`, :mod:`~ulam.integrate.uniform` (maps from
uniforms), :mod:`~ulam.integrate.sobol` (scrambled Sobol' nets), :mod:`~ulam.integrate.qmc`,
:mod:`~ulam.integrate.stratification`, :mod:`~ulam.integrate.control`,
:mod:`~ulam.integrate.importance`, :mod:`~ulam.integrate.stopping` (sequential) and
:mod:`~ulam.integrate.args` (argument helpers); the running moments live in
:mod:`ulam.streaming`.

References: Owen, *Monte Carlo theory, methods and examples* (2013), chapters 8-10
(antithetics, stratification, control variates) and 17 (randomized QMC);
Chan, Golub & LeVeque (1979) for the pairwise merge of running moments.
"""

from __future__ import annotations

from ulam.integrate.antithetic_variates import antithetic
from ulam.integrate.args import DEFAULT_BATCH_SIZE
from ulam.integrate.control import control_variate_coefficients, control_variates
from ulam.integrate.importance import importance_sampling
from ulam.integrate.plain import monte_carlo
from ulam.integrate.qmc import quasi_monte_carlo
from ulam.integrate.sobol import sobol_points
from ulam.integrate.stopping import sequential
from ulam.integrate.stratification import stratified
from ulam.integrate.uniform import UniformTransform, draw_flat, from_uniform
from ulam.streaming import Moments, chunk_moments, merge_moments, stream_moments

# Names other modules imported from the single-file ``ulam.integrate`` before it became a
# package; kept so those imports still work. New code imports them from where they live
# (``ulam.integrate.uniform.draw_flat``, ``ulam.streaming.*``, ``ulam.integrate.sobol.sobol_directions``).
from ulam.integrate.sobol import sobol_directions as _sobol_directions  # noqa: F401

__all__ = [
    "monte_carlo",
    "antithetic",
    "quasi_monte_carlo",
    "stratified",
    "importance_sampling",
    "control_variates",
    "control_variate_coefficients",
    "sequential",
    "from_uniform",
    "UniformTransform",
    "sobol_points",
]
