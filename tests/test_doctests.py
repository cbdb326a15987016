"""Every runnable example in every module under src/ulam stays true: one doctest runner for the library.

Modules are found with ``pkgutil.walk_packages`` (so a new module is checked without editing this
file); ``ulam.reproduce`` (long paper reproductions, run by ``ulam reproduce``) and ``ulam.cli`` are not
walked. Every example of every other module must pass: there is no list of expected failures.
"""

import doctest
import importlib
import pkgutil

import pytest

import ulam

SKIP = ("ulam.reproduce", "ulam.cli")


def _modules():
    names = ["ulam"]
    for info in pkgutil.walk_packages(ulam.__path__, "ulam."):
        if not info.name.startswith(SKIP):
            names.append(info.name)
    return sorted(names)


def _param(name):
    return pytest.param(name, id=name)


@pytest.mark.parametrize("name", [_param(n) for n in _modules()])
def test_docstring_examples(name):
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder(exclude_empty=True)
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    for test in finder.find(module, name):  # globals: a copy of the module's own
        if test.examples and _belongs_to(test, module):
            runner.run(test)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def _belongs_to(test, module) -> bool:
    """Only the examples written in this module's file (re-exported names are checked where they live)."""
    return test.filename is None or test.filename == getattr(module, "__file__", None)


# Areas where every public callable carries a runnable example (the runner above executes them);
# an area joins this list once it is complete, and a new public name without an example fails.
COMPLETE = [
    "ulam.pde", "ulam.pde.domains", "ulam.pde.green", "ulam.pde.walk_on_spheres",
    "ulam.transport", "ulam.transport.directions", "ulam.transport.flow", "ulam.transport.sliced",
    "ulam.transport.wasserstein_1d", "ulam.transport.checks", "ulam.sorting",
    "ulam.smc",
]


@pytest.mark.parametrize("name", COMPLETE)
def test_module_docstring_and_an_example_per_public_name(name):
    module = importlib.import_module(name)
    assert module.__doc__ and len(module.__doc__.strip()) > 40, f"{name} needs a module docstring"
    missing = [n for n in module.__all__
               if callable(getattr(module, n)) and ">>>" not in (getattr(module, n).__doc__ or "")]
    assert not missing, f"{name}: no runnable example in the docstring of {missing}"
