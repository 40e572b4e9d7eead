"""Stage 05's inputs: everything stages 01 to 04 wrote, read through the run folder and checked."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import pandas as pd

from emolib.errors import DataError
from emolib.plots.face import mean_face
from emolib.vocab import ALL_LANDMARKS, HYPER_COLUMNS, RANKING_COLUMNS, SVM_COLUMNS, VARIANTS

if TYPE_CHECKING:
    from emolib.config import Params
    from emolib.run_folder import RunFolder


# What stage 05 reads: name -> (the RunFolder path, the stage that writes it).
REQUIRED_FILES: dict[str, tuple[str, str]] = {
    "landmarks": ("landmarks", "01_data_prep"),
    "training": ("training_results", "02_training"),
    "svm": ("svm_results", "02_training"),
    "hyperparameters": ("hyperparameters", "02_training"),
    "ranking": ("ranking", "03_global_ig"),
    "pruning": ("pruning_results", "04_pruning"),
}


def required_files(params: Params) -> list[str]:
    """The names (in :data:`REQUIRED_FILES`) of the files stage 05 needs for these parameters.

    Args:
        params: the run's parameters (the SVM table is needed only when ``svm.enabled``; the
            grid-search table only when a grid search ran).
    """
    names = ["landmarks", "training", "ranking", "pruning"]
    if params.svm.enabled:
        names.append("svm")
    if params.grid.enabled or params.pruning.grid_search:
        names.append("hyperparameters")
    return names


def require_stage_outputs(run: RunFolder, params: Params) -> dict[str, Path]:
    """Check that stages 01 to 04 left what stage 05 reads.

    Args:
        run: the run folder.
        params: the run's parameters.

    Returns:
        name -> path of each required file.

    Raises:
        DataError: one or more files are absent; the message names each with its stage.
    """
    paths = {}
    for name in required_files(params):
        where = getattr(run, REQUIRED_FILES[name][0])
        paths[name] = where() if callable(where) else where
    missing = [f"{paths[n]} (written by stage {REQUIRED_FILES[n][1]})" for n in paths if not paths[n].is_file()]
    if missing:
        raise DataError("stage 05 needs the outputs of stages 01 to 04; missing:\n  " + "\n  ".join(missing))
    return paths


@dataclass
class Study:
    """Everything stage 05 reads, filtered to the run's parameters.

    Attributes:
        training: stage 02's rows (all landmarks), ``selection`` set to ``all``.
        pruning: stage 04's rows (K in ``pruning.k``).
        ranking: stage 03's ranking (emotion, rank, landmark, importance, region).
        svm: stage 02's SVM rows, or None when the SVMs were off.
        hyperparameters: the grid-search table, or None when no grid search ran.
        full_k: the number of landmarks of the full set (468 for MediaPipe).
        xy: (L, 2) mean landmark positions over the original (not mirrored) videos, for the
            face figures.
        landmark_ids: (L,) ids of the rows of ``xy``.
        ground_truth: emotion -> landmark ids each emotion moves, when the data knows (demo data).
        grid: every combination the grid searches tried (results/grid_search.csv), when present.
        checks: stage 03's checks that ran (:meth:`RunFolder.read_checks`: deletion,
            deletion_curves, randomisation, stability).
        frames: one test video per emotion with its per-frame attribution
            (:meth:`RunFolder.read_frame_attributions`), when stage 03 wrote it.
    """

    training: pd.DataFrame
    pruning: pd.DataFrame
    ranking: pd.DataFrame
    svm: Optional[pd.DataFrame]
    hyperparameters: Optional[pd.DataFrame]
    full_k: int
    xy: np.ndarray
    landmark_ids: np.ndarray
    ground_truth: Optional[dict[str, np.ndarray]] = None
    grid: Optional[pd.DataFrame] = None
    checks: dict = field(default_factory=dict)
    frames: Optional[dict] = None

    @property
    def runs(self) -> pd.DataFrame:
        """Training and pruning rows together: one row per trained model."""
        return pd.concat([self.training, self.pruning], ignore_index=True)

    def ranking_ids(self) -> dict[str, np.ndarray]:
        """Emotion -> landmark ids, most important first."""
        ordered = self.ranking.sort_values(["emotion", "rank"])
        return {e: g["landmark"].to_numpy(int) for e, g in ordered.groupby("emotion", sort=False)}


def load_study(run: RunFolder, params: Params) -> Study:
    """Read every input of stage 05 and check it covers what the parameters ask for.

    Args:
        run: the run folder.
        params: the run's parameters.

    Returns:
        The :class:`Study`.

    Raises:
        DataError: a file is missing or malformed, or lacks rows the parameters need (an emotion,
            a K, a variant).
    """
    paths = require_stage_outputs(run, params)
    data = run.read_landmarks()
    # Stage 02 trains on every landmark; whatever it calls that, here it is the "all" selection.
    training = run.read_results(paths["training"], params).assign(selection=ALL_LANDMARKS)
    full_k = int(data.n_landmarks)
    pruning = run.read_pruning(params, full_k)
    ranking = run.read_table(paths["ranking"], RANKING_COLUMNS)
    svm = run.read_table(paths["svm"], SVM_COLUMNS) if "svm" in paths else None
    if svm is not None:
        svm = svm[svm["emotion"].isin(params.emotions) & svm["seed"].isin(params.seeds)].reset_index(drop=True)
    hyper = run.read_table(paths["hyperparameters"], HYPER_COLUMNS) if "hyperparameters" in paths else None

    for name, table in (("training", training), ("pruning", pruning)):
        path = paths[name]
        for variant in VARIANTS:
            for emotion in params.emotions:
                if not ((table["variant"] == variant) & (table["emotion"] == emotion)).any():
                    raise DataError(f"{path}: no {variant} rows for {emotion!r}; rerun its stage")
    missing_k = sorted(set(params.pruning.k) - set(pruning.loc[pruning["selection"] == "ig", "n_landmarks"]))
    if missing_k:
        raise DataError(f"{paths['pruning']}: no ig rows for K={missing_k}; rerun stage 04")
    missing_e = sorted(set(params.emotions) - set(ranking["emotion"]))
    if missing_e:
        raise DataError(f"{paths['ranking']}: no ranking for {missing_e}; rerun stage 03")

    truth = run.read_ground_truth(params.emotions)
    # The face is drawn from the original videos: a mirrored copy's x is 1 - x, and averaging
    # both (when the flip does not swap left and right ids) would fold the face onto its midline.
    originals = ~data.flipped if (~data.flipped).any() else np.ones(len(data), dtype=bool)
    grid = None
    if run.grid_search.is_file():  # optional: only counts the combinations each choice was made among
        grid = run.read_table(run.grid_search, ("emotion", "n_landmarks", "selection", "filters"))
    return Study(training=training, pruning=pruning, ranking=ranking, svm=svm, hyperparameters=hyper,
                 full_k=full_k, xy=mean_face(data.X[originals]), landmark_ids=data.landmark_ids,
                 ground_truth=truth or None,
                 grid=grid, checks=run.read_checks() if params.checks.enabled else {},
                 frames=run.read_frame_attributions() if params.checks.enabled else None)

