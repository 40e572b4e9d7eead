"""Stage 02's input scaling statistics and class weights (applying the scaling is the model's own
input contract: :func:`emolib.models.scale_inputs`)."""
from __future__ import annotations

from typing import get_args

import numpy as np

from emolib.errors import ParamsError
from emolib.vocab import Normalize


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------
def fit_scaler(X: np.ndarray, normalize: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature statistics of the training part.

    Args:
        X: (N, P, 2, K) training samples.
        normalize: ``standardize`` (each feature its own mean and standard deviation), ``global``
            (each feature its own mean, one standard deviation pooled over all features: the
            features keep their relative sizes, so a still landmark's jitter stays small next to
            a moving one's motion) or ``none``.

    Returns:
        mean, std, each (2, K) float32 (zeros and ones for ``none``; a constant feature gets
        std 1 so that it maps to 0 instead of dividing by zero).
    """
    if normalize == "none":
        return np.zeros(X.shape[2:], np.float32), np.ones(X.shape[2:], np.float32)
    if normalize not in get_args(Normalize):
        raise ParamsError(f"data.normalize {normalize!r} is unknown; expected one of {list(get_args(Normalize))}")
    X = np.asarray(X, dtype=np.float64)
    mean = X.mean(axis=(0, 1))
    std = X.std(axis=(0, 1))
    if normalize == "global":
        std = np.full_like(std, np.sqrt(np.mean(std ** 2)))
    std[std < 1e-8] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def class_weights(y: np.ndarray, mode: str) -> np.ndarray:
    """Weights of class 0 and 1: ``balanced`` gives each class the same total weight."""
    if mode == "none":
        return np.ones(2, np.float32)
    counts = np.bincount(np.asarray(y, dtype=int), minlength=2).astype(float)
    weights = len(y) / (2.0 * np.maximum(counts, 1.0))
    return weights.astype(np.float32)

