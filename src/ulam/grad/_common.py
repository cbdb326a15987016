"""Deprecated alias of :mod:`ulam.grad.common` (kept one release): ``import ulam.grad._common`` gives that module."""

import sys

from ulam.grad import common as _common_module

sys.modules[__name__] = _common_module
