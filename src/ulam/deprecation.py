"""Deprecated keyword names: one decorator that keeps an old keyword working for a release.

:func:`renamed_keywords` maps old keyword names to new ones: a call with the old name still
works, emits one ``DeprecationWarning`` naming the replacement, and a call that gives both
names raises. The decorated function's signature (``inspect.signature``) shows only the new
names, so the naming-scheme test sees the current API.
"""

from __future__ import annotations

import functools
import warnings
from typing import Callable

__all__ = ["renamed_keywords"]


def renamed_keywords(**old_to_new: str) -> Callable[[Callable], Callable]:
    """Decorator: accept each ``old=value`` keyword as ``new=value``, with a ``DeprecationWarning``.

    Example:
      >>> import warnings
      >>> @renamed_keywords(n="num_samples")
      ... def draws(num_samples=10):
      ...     return num_samples
      >>> with warnings.catch_warnings(record=True) as caught:
      ...     warnings.simplefilter("always")
      ...     draws(n=5), caught[0].category.__name__
      (5, 'DeprecationWarning')
    """

    def decorate(fn: Callable) -> Callable:
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            for old, new in old_to_new.items():
                if old in kwargs:
                    if new in kwargs:
                        raise TypeError(f"{fn.__name__}: got both {old}= (deprecated) and {new}=; pass only {new}=")
                    warnings.warn(
                        f"{fn.__name__}: the keyword {old}= is deprecated and will be removed; use {new}=",
                        DeprecationWarning,
                        stacklevel=2,
                    )
                    kwargs[new] = kwargs.pop(old)
            return fn(*args, **kwargs)

        return wrapper

    return decorate
