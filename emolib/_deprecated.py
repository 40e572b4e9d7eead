"""Old names kept importable for one release after the package was laid out anew (0.2).

A module lists its moved names in a mapping ``old name -> "package.module:new_name"`` and
installs :func:`module_getattr`; reading an old name warns with a ``DeprecationWarning`` that
says where it lives now, and returns the new object. Names of functions that became methods of
:class:`emolib.run_folder.RunFolder` map to small wrappers in :mod:`emolib._compat`.

Imported by modules of every layer, so it imports nothing of emolib itself (the old names are
resolved with ``importlib`` when they are read).
"""
from __future__ import annotations

import importlib
import warnings
from typing import Any, Callable, Mapping


def module_getattr(module: str, moved: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` serving the names in ``moved`` (see the module docstring)."""

    def __getattr__(name: str) -> Any:
        if name not in moved:
            raise AttributeError(f"module {module!r} has no attribute {name!r}")
        target = moved[name]
        where, _, attr = target.partition(":")
        warnings.warn(f"{module}.{name} is deprecated; use {where}.{attr or name}", DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(where), attr or name)

    return __getattr__
