"""Every public name in ulam.pde (but operator_learning, owned elsewhere) has a runnable example, and the examples hold."""

import doctest
import importlib

import pytest

MODULES = ["ulam.pde", "ulam.pde.domains", "ulam.pde.green", "ulam.pde.walk_on_spheres"]


@pytest.mark.parametrize("name", MODULES)
def test_module_docstring_and_public_examples(name):
    module = importlib.import_module(name)
    assert module.__doc__ and len(module.__doc__.strip()) > 40, f"{name} needs a module docstring"
    missing = [n for n in module.__all__ if ">>>" not in (getattr(module, n).__doc__ or "")
               and callable(getattr(module, n))]
    assert not missing, f"{name}: no runnable example in the docstring of {missing}"


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
