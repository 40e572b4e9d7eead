"""IG of samples under one emotion's model against typical baselines: the one computation that the
global procedure, its completeness study and the explorer's per-video view all make, and the key
that caches its results."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import numpy as np

from emolib.explain.typical import TypicalBaseline, typical_inputs
from emolib.ig import integrated_gradients
from emolib.io import content_key
from emolib.models import model_inputs

if TYPE_CHECKING:
    from emolib.config import Params
    from emolib.ig import IGResult
    from emolib.landmarks import LandmarkSet
    from emolib.models import TrainedModel


def explanation_pairs(trained: TrainedModel, data: LandmarkSet, samples: np.ndarray,
                      baselines: Sequence[TypicalBaseline]) -> tuple[np.ndarray, np.ndarray]:
    """(input, baseline) pairs: every sample against every baseline, baseline-major.

    Args:
        trained: the explained model (its input scaling is applied to samples and baselines).
        data: the full landmark set (``samples`` and the baselines' rows index it).
        samples: (n,) rows of ``data``.
        baselines: B typical baselines.

    Returns:
        ``(inputs, baseline_inputs)``, each (B * n, P, 2, K, 1): row ``j * n + i`` pairs sample
        ``i`` with baseline ``j``.
    """
    x = model_inputs(data.subset(np.asarray(samples, dtype=int)), trained)
    bases = typical_inputs(baselines, data, trained)
    return np.concatenate([x] * len(bases)), np.repeat(bases, len(x), axis=0)


def attribute(trained: TrainedModel, data: LandmarkSet, samples: np.ndarray,
              baselines: Sequence[TypicalBaseline], params: Params, *, progress: bool = False) -> IGResult:
    """IG of ``samples`` under ``trained`` against each baseline (``params.ig``'s steps, rule, engine).

    Returns:
        The :class:`~emolib.ig.IGResult` of the pairs of :func:`explanation_pairs` (B * n rows,
        baseline-major): reshape its arrays to (B, n, ...).
    """
    inputs, bases = explanation_pairs(trained, data, samples, baselines)
    ig = params.ig
    return integrated_gradients(trained.model, inputs, bases, steps=ig.steps, target=1,
                                batch_size=ig.batch_size, rule=ig.rule, progress=progress, engine=ig.engine)


def ig_cache_key(params: Params, stage: str, what: Any, length: int = 16) -> str:
    """The key of a cached IG result: the parameters of ``stage`` and what was explained.

    ``ig.batch_size`` is left out (it changes how the sums are chunked, not their values), and so
    is the ``checks`` section (each check's cache puts the settings it uses in ``what``).

    Args:
        params: the run's parameters.
        stage: the stage whose sections shape the explained models (``03_global_ig`` for the
            all-landmark models, ``04_pruning`` for pruned ones).
        what: everything else that changes the numbers (emotion, samples, baselines, the model's
            own record key, ...).
        length: hex digits.
    """
    sections = params.sections_of(stage)
    sections["ig"] = {k: v for k, v in sections["ig"].items() if k != "batch_size"}
    # The checks' settings shape only the checks' own results, which put what they use in ``what``.
    sections.pop("checks", None)
    return content_key({"sections": sections, "what": what}, length)
