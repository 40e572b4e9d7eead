"""Stage 02's SVM baselines: linear and RBF SVMs on the same features and partitions as the networks."""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from emolib import io
from emolib.models import reference_inputs
from emolib.run_folder import RunFolder
from emolib.training.fit import binary_metrics
from emolib.training.splits import ensure_splits

if TYPE_CHECKING:
    from emolib.config import Params
    from emolib.landmarks import LandmarkSet


# --------------------------------------------------------------------------------------------
# SVM baselines
# --------------------------------------------------------------------------------------------
def svm_features(X: np.ndarray, train_rows: np.ndarray, reference: str = "none") -> np.ndarray:
    """Flattened samples (N, P*2*K) after ``reference`` (as the networks see them),
    standardised with the statistics of ``train_rows``."""
    flat = np.asarray(reference_inputs(X, reference), np.float64).reshape(len(X), -1)
    mean = flat[train_rows].mean(axis=0)
    std = flat[train_rows].std(axis=0)
    std[std < 1e-8] = 1.0
    return (flat - mean) / std


def train_svms(run: RunFolder, params: Params, data: LandmarkSet, *, progress: bool = True) -> pd.DataFrame:
    """Linear- and RBF-SVM baselines on the same features and partitions as the networks.

    The features are the flattened landmark tensors (after ``data.reference``, as the networks
    see them), standardised per feature with training
    statistics; scikit-learn's SVC with ``class_weight="balanced"`` and C = ``svm.c``, RBF with
    ``gamma="scale"``. An SVM needs no early stopping, so it trains on the training and
    validation parts together (the data the networks saw) and is tested on the same test part.
    Writes ``results/svm.csv`` (plus the paper's quoted accuracy as ``paper_accuracy``).

    Args:
        run: the run folder.
        params: ``seeds``, ``emotions``, ``svm.c`` and the split settings.
        data: the landmark set.
        progress: show a progress bar.

    Returns:
        The table of :data:`SVM_COLUMNS` plus ``paper_accuracy``.
    """
    from sklearn.svm import SVC
    from tqdm.auto import tqdm

    from emolib.paper import SVM_ACCURACY

    splits = ensure_splits(run, params, data)
    rows = []
    jobs = [(s, e, k) for s in params.seeds for e in params.emotions for k in ("linear", "rbf")]
    features_of: dict[int, tuple[np.ndarray, dict]] = {}
    for seed, emotion, kernel in tqdm(jobs, desc="SVM baselines", unit="model", disable=not progress):
        if seed not in features_of:
            parts = RunFolder.split_parts(splits, seed)
            fit_rows = np.concatenate([parts["train"], parts["val"]])
            features_of[seed] = (svm_features(data.X, fit_rows, params.data.reference), parts)
        feats, parts = features_of[seed]
        fit_rows = np.concatenate([parts["train"], parts["val"]])
        y = (data.emotion == emotion).astype(int)
        clf = SVC(kernel=kernel, C=params.svm.c, gamma="scale", class_weight="balanced")
        clf.fit(feats[fit_rows], y[fit_rows])
        pred = clf.predict(feats[parts["test"]]).astype(float)
        metrics = binary_metrics(y[parts["test"]], pred)
        rows.append({"kernel": kernel, "emotion": emotion, "seed": int(seed),
                     "accuracy": metrics["accuracy"], "balanced_accuracy": metrics["balanced_accuracy"],
                     "f1": metrics["f1"], "majority_accuracy": metrics["majority_accuracy"],
                     "n_train": len(fit_rows), "n_test": len(parts["test"]),
                     "paper_accuracy": SVM_ACCURACY[kernel].get(emotion, float("nan"))})
    table = pd.DataFrame(rows)
    io.write_csv(run.svm_results, table)
    return table

