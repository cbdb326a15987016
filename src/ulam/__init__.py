"""ulam: Monte Carlo methods for machine learning, on JAX.

Every estimator returns an :class:`Estimate` (mean, standard error, n, ess), which
behaves like a number (``float(est)``, ``a * est + b``, ``est1 - est2``, :func:`difference`).
The integration estimators (:mod:`ulam.integrate`) are available at the top level; the
core modules are :mod:`ulam.streaming` (the streaming estimation engine), :mod:`ulam.jit_cache`
(the compile-cache rule; :func:`enable_compilation_cache`), :mod:`ulam.diagnostics`,
:mod:`ulam.checks` and :mod:`ulam.testing`. Subpackages load on first use: ``ulam.grad``,
``ulam.mcmc``, ``ulam.smc``, ``ulam.vi``, ``ulam.transport``, ``ulam.pde``, ``ulam.valuation``.
"""

from __future__ import annotations

import importlib

from ulam.estimate import Estimate, difference, pool

__version__ = "0.1.0"

from ulam.jit_cache import enable_compilation_cache

__all__ = ["Estimate", "pool", "difference", "enable_compilation_cache", "__version__"]

try:  # the integration layer; absent only while the package is being assembled
    from ulam.integrate import *  # noqa: F401,F403
    from ulam.integrate import __all__ as _integrate_all

    __all__ += list(_integrate_all)
except ImportError as _err:  # pragma: no cover
    if "ulam.integrate" not in str(_err):
        raise


def __getattr__(name: str):
    # Subpackages are imported lazily so `import ulam` stays fast.
    try:
        module = importlib.import_module(f"ulam.{name}")
    except ModuleNotFoundError as err:
        if err.name == f"ulam.{name}":
            raise AttributeError(f"module 'ulam' has no attribute {name!r}") from None
        raise
    globals()[name] = module
    return module
