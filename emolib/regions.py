"""Facial regions of the 468 FaceMesh landmarks, from MediaPipe's own index sets."""
from __future__ import annotations

from functools import lru_cache

import numpy as np

from emolib import N_LANDMARKS

# Order matters: a landmark in two sets (a few lie on both the lips and the face oval, say) takes
# the first region listed.
REGIONS: tuple[str, ...] = ("lips", "left eye", "right eye", "left eyebrow", "right eyebrow",
                            "nose", "face oval", "other")
_SETS = {"lips": "FACEMESH_LIPS", "left eye": "FACEMESH_LEFT_EYE", "right eye": "FACEMESH_RIGHT_EYE",
         "left eyebrow": "FACEMESH_LEFT_EYEBROW", "right eyebrow": "FACEMESH_RIGHT_EYEBROW",
         "nose": "FACEMESH_NOSE", "face oval": "FACEMESH_FACE_OVAL"}


@lru_cache(maxsize=1)
def region_indices() -> dict[str, tuple[int, ...]]:
    """Landmark ids per region (every id in exactly one region; ``other`` takes the rest)."""
    from mediapipe.python.solutions import face_mesh_connections as fmc

    taken: set[int] = set()
    out: dict[str, tuple[int, ...]] = {}
    for region, attr in _SETS.items():
        ids = sorted({i for edge in getattr(fmc, attr) for i in edge} - taken)
        taken.update(ids)
        out[region] = tuple(ids)
    out["other"] = tuple(i for i in range(N_LANDMARKS) if i not in taken)
    return out


@lru_cache(maxsize=1)
def landmark_regions() -> np.ndarray:
    """Array of shape (468,) holding each landmark's region name."""
    names = np.empty(N_LANDMARKS, dtype=object)
    for region, ids in region_indices().items():
        names[list(ids)] = region
    return names.astype(str)


def region_of(landmark_ids) -> np.ndarray:
    """Region names for the given landmark ids."""
    return landmark_regions()[np.asarray(landmark_ids, dtype=int)]


def importance_by_region(importance: np.ndarray, landmark_ids=None, how: str = "mean") -> dict[str, float]:
    """Aggregate per-landmark importance by region (``mean`` or ``sum``)."""
    importance = np.asarray(importance, dtype=float)
    ids = np.arange(importance.size) if landmark_ids is None else np.asarray(landmark_ids, dtype=int)
    regions = region_of(ids)
    agg = np.mean if how == "mean" else np.sum
    return {r: float(agg(importance[regions == r])) if np.any(regions == r) else 0.0 for r in REGIONS}
