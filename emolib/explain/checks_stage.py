"""Stage 03's checks in one call: deletion and insertion curves, the randomisation check, the
stability of the ranking and the per-frame attributions of the results page, written to the run
folder (``results/deletion.csv``, ``deletion_curves.csv``, ``randomisation.csv``,
``stability.csv``, ``attributions/frames.npz``) and checked."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Mapping, Optional

import numpy as np
import pandas as pd

from emolib import io
from emolib.errors import DataError
from emolib.explain.explainer import Explainer
from emolib.explain.faithfulness import (
    deletion_study,
    frame_attributions,
    randomisation_check,
    write_frame_attributions,
)
from emolib.explain.stability import stability_study

if TYPE_CHECKING:
    from emolib.config import Params
    from emolib.landmarks import LandmarkSet
    from emolib.run_folder import RunFolder


@dataclass
class Checks:
    """What :func:`run_checks` computed (also on disk).

    Attributes:
        deletion: per (emotion, seed, curve, order) the mean area under the curve.
        deletion_curves: the mean curves.
        randomisation: per (emotion, seed, level) the agreement with the trained model's ranking.
        stability: per (factor, emotion, a, b) the agreement of two rankings, with intervals.
        frames: emotion -> one test video's per-frame attribution.
        seconds: wall time of each part.
    """

    deletion: pd.DataFrame
    deletion_curves: pd.DataFrame
    randomisation: pd.DataFrame
    stability: pd.DataFrame
    frames: dict = field(repr=False, default_factory=dict)
    seconds: dict = field(default_factory=dict)


def run_checks(run: RunFolder, params: Params, data: LandmarkSet, ranking: Optional[Mapping[str, np.ndarray]] = None,
               *, progress: bool = True) -> Checks:
    """Every check of ``params.checks`` on T-EMO's all-landmark models; writes and returns them.

    Args:
        run: the run folder (stage 02's models and splits; stage 03's ranking).
        params: the run's parameters.
        data: the landmark set.
        ranking: emotion -> ids most important first (default: ``results/landmark_ranking.csv``).
        progress: tqdm bars.

    Returns:
        The :class:`Checks`.

    Raises:
        DataError: a model, the splits or the ranking is missing.
    """
    ranking = ranking if ranking is not None else run.read_ranking()
    explainer = Explainer(run, params, data)
    seconds = {}
    start = time.perf_counter()
    deletion, curves = deletion_study(explainer, ranking, progress=progress)
    seconds["deletion"] = time.perf_counter() - start
    start = time.perf_counter()
    randomisation = randomisation_check(explainer, progress=progress)
    seconds["randomisation"] = time.perf_counter() - start
    start = time.perf_counter()
    stability = stability_study(explainer, progress=progress)
    seconds["stability"] = time.perf_counter() - start
    start = time.perf_counter()
    frames = frame_attributions(explainer)
    seconds["frames"] = time.perf_counter() - start
    io.write_csv(run.deletion, deletion)
    io.write_csv(run.deletion_curves, curves)
    io.write_csv(run.randomisation, randomisation)
    io.write_csv(run.stability, stability)
    write_frame_attributions(run, frames)
    return Checks(deletion, curves, randomisation, stability, frames, seconds)


def check_checks(checks: Checks, params: Params) -> None:
    """Check the checks' tables: every emotion present, values finite and in range.

    Raises:
        DataError: an emotion lacks rows, an area lies outside [0, 1], a correlation outside
            [-1, 1], an interval does not hold its bounds in order.
    """
    for name, table in (("deletion.csv", checks.deletion), ("randomisation.csv", checks.randomisation),
                        ("stability.csv", checks.stability)):
        missing = sorted(set(params.emotions) - set(table["emotion"]))
        if missing:
            raise DataError(f"results/{name} lacks {missing}")
    area = checks.deletion["area"]
    if area.isna().any() or ((area < 0) | (area > 1)).any():
        raise DataError("results/deletion.csv: an area is NaN or outside [0, 1]")
    for col in ("spearman_rho", "kendall_tau"):
        v = checks.randomisation[col].dropna()
        if ((v < -1 - 1e-9) | (v > 1 + 1e-9)).any():
            raise DataError(f"results/randomisation.csv: {col} outside [-1, 1]")
    st = checks.stability
    for m in ("kendall_tau", "spearman_rho", "top_k_overlap"):
        bad = st[f"{m}_low"] > st[f"{m}_high"] + 1e-12
        if bad.any():
            raise DataError(f"results/stability.csv: {m}'s interval is reversed")
