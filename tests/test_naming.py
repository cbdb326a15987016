"""One name per idea: every count-like parameter of every public signature follows the naming scheme.

The scheme (COMMON.md; to be written into docs/architecture.md):

* ``num_samples``   i.i.d. draws of an estimator;  ``num_chains``, ``num_warmup``, ``num_draws`` (MCMC);
* ``num_particles`` SMC particles only; an IWAE-type inner count is ``num_importance_samples``;
* ``num_steps`` optimizer / time steps; ``num_walks``, ``num_directions``, ``num_randomizations``,
  ``num_permutations``, ``num_replicates``; ``batch_size`` the chunk size for bounded memory;
* a budget ``num_X`` is exact; a cap that a stopping rule may undercut is ``max_X`` (same noun:
  ``max_samples``, ``max_permutations``, ``max_steps``).

Domain words that say what they count (``num_strata``, ``num_classes``, ...) and names that are
not counts of draws at all (``step_size``, ``max_tree_depth``) are listed in ``DOMAIN``. Any other
name matching ``n``, ``num``, ``n_*``, ``num_*``, ``max_*``, ``*_size`` or ``*_count`` fails.
``KNOWN_VIOLATIONS`` lists the old names not yet renamed (strict xfail: renaming one without
removing its entry fails the test, so the list can only shrink).
"""

import importlib
import inspect
import pkgutil
import re
import warnings

import pytest

import ulam

SCHEME = {
    "num_samples", "num_chains", "num_warmup", "num_draws", "num_particles", "num_importance_samples",
    "num_steps", "num_walks", "num_directions", "num_randomizations", "num_permutations", "num_replicates",
    "batch_size",
}
SCHEME |= {"max_" + name[len("num_"):] for name in SCHEME if name.startswith("num_")}
DOMAIN = {
    # counts of something other than draws, named by what they count
    "num_strata", "num_points", "num_classes", "num_players", "num_units", "num_tests", "num_integration_steps",
    "num_mcmc_steps", "num_newton_steps", "num_epochs", "num_iterations", "num_trajectories", "num_segments",
    "num_sensors", "num_fourier", "num_starts", "num_blocks", "block_size", "num_divergent",
    "num_divergent_warmup", "num_grad_evals", "num_likelihood_evals", "num_batches",
    # the harness counts generic rounds and items (permutations, replicates, evaluations ...)
    "num_rounds", "num_items", "max_items", "chunk_size",
    # Banzhaf values count subsets; vi.fit's final objective its own evaluation draws
    "num_subsets", "max_subsets", "num_eval_samples",
    # not counts at all
    "default_step_size", "adapt_step_size", "max_ratio",
    # bounds and sizes that are not budgets of draws
    "max_tree_depth", "max_energy_error", "max_trials", "max_shrinks", "max_seconds", "max_in_flight",
    "max_players", "max_configurations", "step_size", "log_step_size", "data_size", "pool_size",
}
# (module, public name, parameter): names of other areas outside the scheme today.
KNOWN_VIOLATIONS = {
    ("ulam.valuation", "ValuationResult", "n"),  # the Estimate field n, inherited
    ("ulam.mcmc", "find_reasonable_step_size", "max_iter"),
    ("ulam.smc", "multinomial_resample", "num"),
    ("ulam.smc", "resample_if", "num"),
    ("ulam.smc", "residual_resample", "num"),
    ("ulam.smc", "systematic_resample", "num"),
    ("ulam.smc", "stratified_resample", "num"),
    ("ulam.smc", "killing_resample", "num"),
    ("ulam.smc", "ssp_resample", "num"),
    ("ulam.smc", "initial_reference", "num_backward"),
    ("ulam.smc", "paris", "num_backward"),
    ("ulam.smc", "ppg", "num_backward"),
    ("ulam.smc", "ppg_step", "num_backward"),
    ("ulam.smc", "markov_score_climbing", "num_backward"),
    ("ulam.smc", "score_ascent", "num_backward"),
    ("ulam.vi", "fit", "num_chunks"),
    ("ulam.vi", "diwhvi", "num_inner"),
    ("ulam.vi", "iwhvi", "num_inner"),
    ("ulam.vi", "hierarchical_elbo", "num_inner"),
    ("ulam.vi", "diwhvi", "num_outer"),
    ("ulam.vi", "hierarchical_elbo", "num_outer"),
    ("ulam.pde", "sample_interior", "n"),
    ("ulam.transport", "orthogonal_directions", "num"),
    ("ulam.transport", "random_directions", "num"),
    ("ulam.transport", "sobol_directions", "num"),
    ("ulam.valuation", "choose_learning_rate", "num_runs"),
    ("ulam.grad", "expectation", "max_runs"),
    ("ulam.grad", "program_gradient", "max_runs"),
    ("ulam.grad", "program_surrogate", "max_runs"),
    ("ulam.grad", "program_value", "max_runs"),
    ("ulam.grad", "OptimalBaselineState", "num"),
}
COUNT_LIKE = re.compile(r"^(n|num|n_\w+|num_\w+|max_\w+|\w+_size|\w+_count)$")
SKIP = ("ulam.reproduce", "ulam.cli")


def _public_modules():
    """``ulam``, its subpackages and its top-level modules: where the public API lives."""
    names = ["ulam"]
    for info in pkgutil.iter_modules(ulam.__path__, "ulam."):
        if not info.name.startswith(SKIP):
            names.append(info.name)
    return names


def _signatures():
    cases = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for module_name in _public_modules():
            module = importlib.import_module(module_name)
            for attr in getattr(module, "__all__", []):
                obj = getattr(module, attr, None)
                if not callable(obj):
                    continue
                try:
                    params = inspect.signature(obj).parameters
                except (TypeError, ValueError):
                    continue
                for param in params:
                    if COUNT_LIKE.match(param):
                        cases.append((module_name, attr, param))
    return sorted(set(cases))


# Results carry the count of draws they were built from as the field ``n`` (Estimate.n).
EXEMPT = {("ulam", "Estimate", "n"), ("ulam.estimate", "Estimate", "n")}


def _case(module_name, attr, param):
    marks = []
    if (module_name, attr, param) in KNOWN_VIOLATIONS:
        marks.append(pytest.mark.xfail(reason="old count name, rename pending (issue 26 item 1)", strict=True))
    return pytest.param(module_name, attr, param, marks=marks, id=f"{module_name}.{attr}({param})")


CASES = [_case(*c) for c in _signatures() if c not in EXEMPT]


def test_the_walk_finds_signatures():
    assert len(CASES) > 50


@pytest.mark.parametrize("module_name, attr, param", CASES)
def test_count_like_parameter_follows_the_scheme(module_name, attr, param):
    assert param in SCHEME or param in DOMAIN, (
        f"{module_name}.{attr}: parameter {param!r} is count-like but outside the naming scheme; "
        f"use one of {sorted(SCHEME)} or add a domain word to DOMAIN with a reason"
    )
