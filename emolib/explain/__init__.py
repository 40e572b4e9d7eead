"""Stage 03: explain the all-landmark models with the paper's global Integrated Gradients.

:mod:`~emolib.explain.typical` (the typical videos, IG's baselines),
:mod:`~emolib.explain.attribute` (IG of samples against them, one implementation for every use),
:mod:`~emolib.explain.global_importance` (the stage: masks, ranking, Figure 2, completeness),
:mod:`~emolib.explain.diagnostics` (agreement, comparisons, the check of the stage's outputs),
:mod:`~emolib.explain.samples` (one video over its frames, for the explorer). The IG engine itself
is :mod:`emolib.ig`; scores against a ground truth are in :mod:`emolib.rankings`.
"""
from emolib.explain.global_importance import (
    GlobalImportance,
    completeness_study,
    global_landmark_importance,
    path_curves,
)

__all__ = ["GlobalImportance", "global_landmark_importance", "path_curves", "completeness_study"]
