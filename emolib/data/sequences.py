"""Time along a sequence: frames without a face filled from their neighbours, and resampling to P frames."""
from __future__ import annotations

import numpy as np


def fill_missing_frames(X: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Fill frames without a face by linear interpolation between the nearest frames with one.

    Frames before the first (after the last) found frame copy that frame.

    Args:
        X: (n, 2, L) landmarks; rows where ``found`` is False are ignored.
        found: (n,) bool.

    Returns:
        (n, 2, L) float32 with every frame filled.

    Raises:
        ValueError: no frame has a face.
    """
    found = np.asarray(found, dtype=bool)
    if not found.any():
        raise ValueError("no frame has a face: nothing to fill from")
    X = np.asarray(X, dtype=np.float32)
    if found.all():
        return X.copy()
    t = np.arange(len(found))
    flat = X.reshape(len(found), -1)
    filled = np.empty_like(flat)
    for j in range(flat.shape[1]):
        filled[:, j] = np.interp(t, t[found], flat[found, j])
    return filled.reshape(X.shape)


def resample_sequence(X: np.ndarray, frames: int) -> np.ndarray:
    """Resample a sequence to ``frames`` frames, uniformly in time, by linear interpolation.

    The first and last frames (neutral and peak in CK+) are kept exactly.

    Args:
        X: (n, ...) with n >= 1 (a single frame is repeated).
        frames: the number of frames wanted (>= 1).

    Returns:
        (frames, ...) float32.
    """
    X = np.asarray(X, dtype=np.float32)
    n = X.shape[0]
    if n == frames:
        return X.copy()
    if n == 1:
        return np.repeat(X, frames, axis=0)
    position = np.linspace(0.0, n - 1, frames)
    low = np.floor(position).astype(int).clip(0, n - 2)
    weight = (position - low).reshape((-1,) + (1,) * (X.ndim - 1)).astype(np.float32)
    return (1.0 - weight) * X[low] + weight * X[low + 1]

