"""From attributions to landmarks: the paper's mask, its aggregation over samples and baselines, the ranking."""
from __future__ import annotations

from typing import Sequence

import numpy as np

from emolib.errors import DataError


def landmark_mask(attributions: np.ndarray) -> np.ndarray:
    """The paper's attribution mask: sum of |IG| over frames and coordinates, one value per landmark.

    Args:
        attributions: (P, 2, L) or (N, P, 2, L), each optionally with a trailing channel axis of
            size 1 (the model input layout (N, P, 2, L, 1)).

    Returns:
        (L,) for one sample, (N, L) for a batch.

    Raises:
        DataError: the array does not have the (.., P, 2, L[, 1]) layout.
    """
    a = np.asarray(attributions)
    if a.ndim >= 4 and a.shape[-1] == 1 and a.shape[-3] == 2:
        a = a[..., 0]
    if a.ndim not in (3, 4) or a.shape[-2] != 2:
        raise DataError(f"attributions must be shaped (P, 2, L) or (N, P, 2, L) (optionally with "
                        f"a trailing axis of 1), got {np.asarray(attributions).shape}")
    return np.abs(a).sum(axis=(-3, -2))


def aggregate_masks(masks_by_baseline: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The paper's order: average over the samples first, then over the baselines.

    Args:
        masks_by_baseline: one (n_b, L) array of per-sample masks per baseline (the sample counts
            may differ: each baseline's mean still weighs 1 / B in the result).

    Returns:
        ``(per_baseline (B, L), global (L,))``.
    """
    if len(masks_by_baseline) == 0:
        raise ValueError("no baselines to aggregate")
    per_baseline = []
    for i, masks in enumerate(masks_by_baseline):
        masks = np.asarray(masks, dtype=np.float64)
        if masks.ndim != 2 or masks.shape[0] == 0:
            raise ValueError(f"baseline {i}: expected a non-empty (samples, landmarks) array, got {masks.shape}")
        per_baseline.append(masks.mean(axis=0))
    per_baseline_arr = np.stack(per_baseline)
    return per_baseline_arr, per_baseline_arr.mean(axis=0)


def rank_landmarks(importance: np.ndarray, landmark_ids: Sequence[int]) -> np.ndarray:
    """Landmark ids sorted by decreasing importance.

    Args:
        importance: (L,) one value per landmark.
        landmark_ids: (L,) the landmarks' MediaPipe ids, in the order of ``importance``.

    Returns:
        (L,) ids, most important first; ties keep their order in ``landmark_ids``.

    Raises:
        ValueError: the two arrays differ in shape.
    """
    importance = np.asarray(importance, dtype=np.float64)
    ids = np.asarray(landmark_ids, dtype=int)
    if importance.shape != ids.shape:
        raise ValueError(f"importance {importance.shape} and landmark ids {ids.shape} differ in shape")
    return ids[np.argsort(-importance, kind="stable")]

