"""Old location of :mod:`ulam.vi.fitting` (kept so ``from ulam.vi.fit import ...`` still works).

The module was renamed because the function :func:`ulam.vi.fit` hid it (a function may not
shadow its module); import from :mod:`ulam.vi.fitting`.
"""

from ulam.vi.fitting import FitResult, fit, make_step, make_update

__all__ = ["fit", "FitResult", "make_step", "make_update"]
