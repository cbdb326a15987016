"""Every runnable example in ulam.smc's docstrings stays true, and every public name has one."""

import doctest
import importlib
import inspect

import pytest

MODULES = [
    "ulam.smc",
    "ulam.smc.resampling",
    "ulam.smc.models",
    "ulam.smc.filtering",
    "ulam.smc.kalman",
    "ulam.smc.backward",
    "ulam.smc.paris",
    "ulam.smc.tempering",
    "ulam.smc.learning",
    "ulam.smc.reporting",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    module = importlib.import_module(name)
    assert module.__doc__ and len(module.__doc__.strip()) > 40, f"{name} needs a module docstring"
    result = doctest.testmod(module, optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"


def test_every_public_name_has_an_example():
    import ulam.smc as smc

    missing = []
    for name in smc.__all__:
        obj = getattr(smc, name)
        if not (inspect.isclass(obj) or inspect.isfunction(obj)):
            continue  # RESAMPLERS (a dict) is shown in the module docstring
        if ">>>" not in (obj.__doc__ or ""):
            missing.append(name)
    assert not missing, f"public names without a runnable example: {missing}"
