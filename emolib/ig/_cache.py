"""Compiled functions per model, so that a model keeps its traces across calls.

Keyed by (kind, chunk, sample shape): the 30 IG calls of the global procedure reuse one trace per
model, and the traces die with the model (a weak reference).
"""
from __future__ import annotations

import logging
import weakref
from typing import Any, Callable

_COMPILED: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


class _NoRetracingWarning(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warning. Each model gets its own
    compiled functions (a new trace per model is expected, not a bug: the global procedure
    explains six models), which TensorFlow would otherwise report as excessive retracing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


_RETRACING_FILTER = _NoRetracingWarning()



def compiled(model: Any, key: tuple, build: Callable[[], Callable]) -> Callable:
    """The function ``build()`` made for ``model`` under ``key``, built on first use.

    Args:
        model: the model the function belongs to (a weak key: its functions die with it).
        key: what else identifies the function (kind, chunk size, sample shape).
        build: makes the function (traces nothing yet: tf.function traces on first call).

    Returns:
        The cached (or new) function.
    """
    logging.getLogger("tensorflow").addFilter(_RETRACING_FILTER)
    try:
        per_model = _COMPILED.setdefault(model, {})
    except TypeError:  # an object that cannot be weakly referenced: compile without caching
        per_model = {}
    if key not in per_model:
        per_model[key] = build()
    return per_model[key]
