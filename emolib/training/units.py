"""Training units: one (variant, emotion, seed, landmark subset, hyperparameters), its key, its fit.

A unit's key holds everything that shapes its model (and nothing that does not, such as the
thread count); a finished unit is saved with its key in its record (:func:`emolib.models.save_unit`),
and a unit whose record holds the same key is not trained again.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Mapping, Sequence, Union

import numpy as np
import pandas as pd

from emolib.errors import DataError, ParamsError
from emolib.io import content_key
from emolib.models import count_params, reference_inputs, save_unit, scale_inputs
from emolib.training.bank import BankFit, BankJob
from emolib.training.fit import TrainerPool, binary_metrics
from emolib.training.inputs import fit_scaler
from emolib.vocab import HISTORY_COLUMNS, RESULT_KEY

if TYPE_CHECKING:
    from pathlib import Path

    from emolib.config import Params
    from emolib.landmarks import LandmarkSet

# Bump when the training procedure changes in a way that changes models: cached ones are redone.
TRAINING_VERSION = 2  # 2: trained in banks (emolib.training.bank)

# What ``train_models`` takes as ``landmark_ids``: None (all of the data's landmarks), one subset
# per emotion, or a function (emotion, seed) -> subset.
LandmarkChoice = Union[None, Mapping[str, Sequence[int]], Callable[[str, int], Sequence[int]]]


@dataclass
class Unit:
    variant: str
    emotion: str
    seed: int
    landmark_ids: np.ndarray
    hyper: tuple[int, int, int]


def data_fingerprint(data: LandmarkSet) -> str:
    h = hashlib.sha256()
    for arr in (np.ascontiguousarray(data.X, np.float32), data.emotion.astype(str),
                data.landmark_ids.astype(np.int64)):
        h.update(np.ascontiguousarray(arr).tobytes() if arr.dtype.kind != "U" else "|".join(arr).encode())
    return h.hexdigest()[:16]


def unit_key(*, variant: str, emotion: str, seed: int, landmark_ids: np.ndarray,
              hyper: tuple[int, int, int], params: Params, data_fp: str,
              parts: Mapping[str, np.ndarray]) -> str:
    """Everything that shapes one model (and nothing that does not, such as the thread count)."""
    return content_key({
        "version": TRAINING_VERSION, "variant": variant, "emotion": emotion, "seed": int(seed),
        "landmark_ids": [int(i) for i in landmark_ids], "hyper": [int(v) for v in hyper],
        "model": params.model.model_dump(mode="json", exclude={"filters", "lstm_units", "fc_units"}),
        "train": params.train.model_dump(mode="json", exclude={"threads", "bank_size"}),
        "normalize": params.data.normalize, "reference": params.data.reference, "data": data_fp,
        "parts": {p: hashlib.sha256(np.asarray(v, np.int64).tobytes()).hexdigest()[:16]
                  for p, v in parts.items()},
    })


@dataclass
class UnitInputs:
    """One unit's scaled parts, labels and input scaling, ready for the bank."""

    x: dict[str, np.ndarray]  # part -> (n, P, 2, K, 1)
    y: dict[str, np.ndarray]  # part -> (n,) 0/1
    mean: np.ndarray
    std: np.ndarray

    def job(self, seed: int) -> BankJob:
        return BankJob(self.x["train"], self.y["train"], self.x["val"], self.y["val"], int(seed))


def unit_inputs(unit: Unit, *, data: LandmarkSet, parts: Mapping[str, np.ndarray], params: Params) -> UnitInputs:
    """The unit's landmarks, referenced and scaled with its training part's statistics."""
    sub = data.select_landmarks(unit.landmark_ids)
    y = (sub.emotion == unit.emotion).astype(np.int32)
    reference = params.data.reference
    mean, std = fit_scaler(reference_inputs(sub.X[parts["train"]], reference), params.data.normalize)
    x = {p: scale_inputs(sub.X[idx], mean, std, reference) for p, idx in parts.items()}
    return UnitInputs(x, {p: y[idx] for p, idx in parts.items()}, mean, std)


def save_trained(unit: Unit, path: Path, fit: BankFit, inputs: UnitInputs, *, n_parts: Mapping[str, int],
                 params: Params, selection: str, key: str, pool: TrainerPool) -> dict:
    """Put a trained unit's weights into its tf-keras model, test it, save it at ``path``; its record."""
    trainer = pool.get(unit.variant, params.frames, len(unit.landmark_ids), unit.hyper, params, training=False)
    model = trainer.model
    model.set_weights(fit.weights)
    test_prob = trainer.predict(inputs.x["test"]).numpy()[:, 1]
    total, trainable = count_params(model)
    best = fit.history.iloc[fit.best_epoch - 1]
    row = {
        "variant": unit.variant, "emotion": unit.emotion, "n_landmarks": len(unit.landmark_ids),
        "selection": selection, "seed": int(unit.seed),
        **binary_metrics(inputs.y["test"], test_prob),
        "epochs": fit.epochs, "train_seconds": fit.seconds, "seconds_per_epoch": fit.seconds / fit.epochs,
        "params": total, "trainable_params": trainable, "filters": unit.hyper[0],
        "lstm_units": unit.hyper[1], "fc_units": unit.hyper[2], "n_train": n_parts["train"],
        "n_val": n_parts["val"], "n_test": n_parts["test"], "best_epoch": fit.best_epoch,
        "val_accuracy": float(best["val_accuracy"]), "val_loss": float(best["val_loss"]),
    }
    record = {"key": key, "hyper": list(unit.hyper), "reference": params.data.reference, "row": row,
              "history": fit.history.to_dict(orient="list")}
    save_unit(path, model, inputs.mean, inputs.std, unit.landmark_ids, record)
    return record


def history_rows(record: dict) -> pd.DataFrame:
    hist = pd.DataFrame(record["history"])
    for col in reversed(RESULT_KEY):
        hist.insert(0, col, record["row"][col])
    return hist[list(HISTORY_COLUMNS)]


# --------------------------------------------------------------------------------------------
# Checks of the arguments (before any training)
# --------------------------------------------------------------------------------------------
def resolve_landmarks(landmark_ids: LandmarkChoice, data: LandmarkSet, emotions: Sequence[str],
                      seeds: Sequence[int]) -> dict[tuple[str, int], np.ndarray]:
    """Turn the ``landmark_ids`` argument into one checked subset per (emotion, seed).

    Args:
        landmark_ids: None (all of ``data``'s landmarks), a mapping emotion -> ids, or a callable
            (emotion, seed) -> ids.
        data: the landmark set (its ``landmark_ids`` are the ids available).
        emotions: the emotions to train.
        seeds: the seeds to train.

    Returns:
        (emotion, seed) -> int array of ids (all of the same length K).

    Raises:
        ParamsError: a missing emotion, an empty or repeating subset, subsets of unequal length.
        DataError: an id out of range or absent from the data.
    """
    available = set(int(i) for i in data.landmark_ids)
    out: dict[tuple[str, int], np.ndarray] = {}
    for e in emotions:
        for s in seeds:
            if landmark_ids is None:
                ids = data.landmark_ids
            elif callable(landmark_ids):
                ids = landmark_ids(e, int(s))
            elif isinstance(landmark_ids, Mapping):
                if e not in landmark_ids:
                    raise ParamsError(f"landmark_ids has no subset for emotion {e!r} "
                                      f"(it has {sorted(landmark_ids)})")
                ids = landmark_ids[e]
            else:
                raise ParamsError("landmark_ids must be None, a dict emotion -> ids or a callable "
                                  f"(emotion, seed) -> ids, got {type(landmark_ids).__name__}")
            arr = np.asarray(ids)
            where = f"landmark subset of {e!r} (seed {s})"
            if arr.ndim != 1 or arr.size == 0:
                raise ParamsError(f"{where}: expected a non-empty 1-D list of landmark ids, got shape {arr.shape}")
            if not np.issubdtype(arr.dtype, np.integer):
                if not (np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr))):
                    raise ParamsError(f"{where}: landmark ids must be integers, got {arr.dtype}")
            arr = arr.astype(int)
            bad = sorted(set(int(i) for i in arr) - available)
            if bad:
                raise DataError(f"{where}: landmark id(s) {bad[:10]} out of range: the data holds "
                                f"{len(available)} landmarks (ids {min(available)}..{max(available)})")
            if len(np.unique(arr)) != len(arr):
                raise ParamsError(f"{where}: landmark ids repeat")
            out[(e, int(s))] = arr
    sizes = sorted({len(v) for v in out.values()})
    if len(sizes) > 1:
        raise ParamsError(f"landmark subsets must all hold the same number K of landmarks; got sizes {sizes}")
    return out

