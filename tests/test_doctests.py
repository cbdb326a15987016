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
