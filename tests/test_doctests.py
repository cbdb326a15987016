"""The runnable examples in the core modules' docstrings stay true."""

import doctest
import importlib

import pytest

CORE = ["ulam.estimate", "ulam.integrate", "ulam.diagnostics", "ulam.testing", "ulam.checks"]


@pytest.mark.parametrize("name", CORE)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
