"""Data valuation: Data Shapley and its relatives, every value an :class:`~ulam.Estimate`.

Ghorbani & Zou (ICML 2019), *Data Shapley: Equitable Valuation of Data for Machine
Learning*: exact Shapley (enumeration), TMC-Shapley (truncated Monte Carlo with the
paper's convergence test), G-Shapley (one SGD epoch per permutation) and
leave-one-out; plus Beta Shapley (Kwon & Zou 2022), Data Banzhaf (Wang & Jia 2023),
group values (``groups=``), antithetic, position-stratified and Neyman-allocated permutations,
stopping on a target standard error; exact budgets, progress, checkpoint/resume with a run
fingerprint, graceful Ctrl-C and Ray come from the long-run harness (:mod:`ulam.harness`).
Every Monte Carlo value is a :class:`ValuationResult` (an Estimate with ``summary()``).

Example:
  >>> import jax, numpy as np
  >>> from ulam.valuation import exact_shapley, jax_utility, knn, tmc_shapley
  >>> rng = np.random.default_rng(0)
  >>> X = rng.normal(size=(8, 2)); y = (X[:, 0] > 0).astype(int)
  >>> u = jax_utility(knn(k=1), X, y, X, y)
  >>> exact = exact_shapley(u)
  >>> est = tmc_shapley(u, jax.random.key(0), max_permutations=256, truncation=None)
  >>> bool(abs(est.mean - exact.mean).max() < 5 * est.stderr.max() + 1e-6)
  True
"""

from ulam.valuation.banzhaf import banzhaf, exact_banzhaf
from ulam.valuation.exact import all_subset_scores, exact_shapley, leave_one_out
from ulam.valuation.gradient_shapley import PAPER_LEARNING_RATES, choose_learning_rate, g_shapley
from ulam.valuation.learners import Learner, knn, logistic_regression, mlp
from ulam.valuation.permutation import (
    Truncation,
    beta_position_weights,
    beta_shapley,
    neyman_inclusion,
    permutation_marginals,
    sample_permutations,
    tmc_shapley,
)
from ulam.valuation.runner import RayBackend, Stopping, ValuationResult, history_deviation
from ulam.valuation.utility import JaxUtility, SklearnUtility, Utility, accuracy, jax_utility, sklearn_utility

__all__ = [
    "Learner", "logistic_regression", "mlp", "knn",
    "Utility", "JaxUtility", "SklearnUtility", "jax_utility", "sklearn_utility", "accuracy",
    "exact_shapley", "leave_one_out", "all_subset_scores",
    "Truncation", "tmc_shapley", "beta_shapley", "beta_position_weights", "sample_permutations",
    "permutation_marginals", "neyman_inclusion",
    "g_shapley", "choose_learning_rate", "PAPER_LEARNING_RATES",
    "banzhaf", "exact_banzhaf",
    "Stopping", "RayBackend", "history_deviation", "ValuationResult",
]
