r"""Data Banzhaf values (Wang & Jia, AISTATS 2023) by uniform subset sampling.

.. math:: \beta_i = \frac{1}{2^{G-1}}\sum_{S\subseteq D\setminus\{i\}} [V(S\cup\{i\}) - V(S)]
           = \mathbb{E}_{S}\,[\,2\,(V(S) - b)\,(2\,[i\in S] - 1)\,],

with :math:`S` containing each player independently with probability 1/2. Every
sampled subset informs every player (the maximum-sample-reuse idea of Wang & Jia);
the constant :math:`b = (V(D) + V(\varnothing))/2` is fixed before sampling, so it
leaves the estimator unbiased (:math:`\mathbb{E}[2[i\in S]-1] = 0`) while cutting
its variance. A baseline semivalue beside Data Shapley (Ghorbani & Zou, ICML 2019).
"""

from __future__ import annotations

from functools import partial
from typing import Optional

import jax
import numpy as np

import warnings

from ulam import checks
from ulam.estimate import Estimate
from ulam.valuation.exact import _check_utility
from ulam.valuation.runner import Stopping, ValuationResult, run_valuation
from ulam.valuation.utility import Utility

__all__ = ["banzhaf", "exact_banzhaf"]


def _banzhaf_round(utility, key, num):
    degenerate_before = utility.num_degenerate
    masks = np.asarray(jax.random.bernoulli(key, 0.5, (num, utility.num_players)))
    values = utility.scores(masks)
    b = 0.5 * (utility.full_score + utility.empty_score)
    rows = 2.0 * (values - b)[:, None] * (2.0 * masks - 1.0)
    return rows, {"fits": float(num), "computed_fits": float(num),
                  "degenerate": float(utility.num_degenerate - degenerate_before)}


def banzhaf(
    utility: Utility,
    key: jax.Array,
    *,
    max_subsets: int = 2000,
    target_stderr: Optional[float] = None,
    max_seconds: Optional[float] = None,
    stopping: Optional[Stopping] = None,
    batch_size: int = 256,
    backend=None,
    checkpoint=None,
    force: bool = False,
    progress=None,
    max_samples: Optional[int] = None,
) -> ValuationResult:
    """Monte Carlo Data Banzhaf values with standard errors (one fit per sampled subset).

    Draws exactly ``max_subsets`` subsets unless ``target_stderr`` or ``max_seconds`` stops it
    first (``info["num_subsets"]`` says how many); ``max_samples`` is a deprecated alias of
    ``max_subsets``. Checkpoint, progress, Ray and ``force`` as in :func:`~ulam.valuation.tmc_shapley`.

    Example:
      >>> import jax, numpy as np
      >>> from ulam.valuation import banzhaf, jax_utility, knn
      >>> X = np.array([[0.0], [1.0], [3.0], [4.0]]); y = np.array([0, 0, 1, 1])
      >>> est = banzhaf(jax_utility(knn(k=1), X, y, X, y), jax.random.key(0), max_subsets=256)
      >>> est.mean.shape
      (4,)
    """
    _check_utility(utility)
    checks.prng_key(key)
    batch_size = checks.count("batch_size", batch_size)
    if max_samples is not None:
        warnings.warn("banzhaf: max_samples is deprecated, use max_subsets", DeprecationWarning, stacklevel=2)
        max_subsets = max_samples
    if stopping is None:
        max_subsets = checks.count("max_subsets", max_subsets, minimum=2)
        stopping = Stopping(max_draws=max_subsets, target_stderr=target_stderr, max_seconds=max_seconds)
    fn = partial(_banzhaf_round, utility)
    return run_valuation(fn, key, utility, unit=1, batch=batch_size, stopping=stopping, kind="banzhaf",
                         backend=backend, checkpoint=checkpoint, force=force, progress=progress,
                         count_name="num_subsets")


def exact_banzhaf(utility: Utility, max_players: int = 20) -> Estimate:
    """Exact Banzhaf values by enumeration of all ``2**G`` subsets (the test oracle)."""
    from ulam.valuation.exact import all_subset_scores

    values = all_subset_scores(utility, max_players)
    G = utility.num_players
    codes = np.arange(2**G, dtype=np.int64)
    beta = np.array([np.mean(values[codes[(codes >> i) & 1 == 0] | (1 << i)] - values[codes[(codes >> i) & 1 == 0]])
                     for i in range(G)])
    return Estimate(beta, np.zeros(G), 2**G, 2**G, {"utilities": values})
