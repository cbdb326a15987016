"""Run the docstring examples of ulam.grad and ulam.vi (each module's ``Example:`` blocks) as tests."""

import doctest
import importlib

import pytest

MODULES = [
    "ulam.grad",
    "ulam.grad.common",
    "ulam.grad.arm",
    "ulam.grad.categorical_disarm",
    "ulam.grad.enumeration",
    "ulam.grad.measure_valued",
    "ulam.grad.pathwise",
    "ulam.grad.program",
    "ulam.grad.relax",
    "ulam.grad.relaxed",
    "ulam.grad.score_function",
    "ulam.grad.stochastic_neurons",
    "ulam.vi",
    "ulam.vi.fitting",
    "ulam.vi.hierarchical",
    "ulam.vi.objectives",
]


@pytest.mark.slow  # every example compiles its own estimator: about a minute of compilation in all
@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} docstring examples failed in {name}"
