"""Facial regions of the 468 FaceMesh landmarks, from MediaPipe's own index sets."""
from __future__ import annotations

from functools import lru_cache
from typing import Sequence

import numpy as np
import pandas as pd

from emolib.vocab import N_LANDMARKS

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


def region_importance(ranking: pd.DataFrame, k_values: Sequence[int] = (), *, wide: bool = False) -> pd.DataFrame:
    """Importance per facial region and emotion, and how many of the top-K each region holds.

    Args:
        ranking: stage 03's ranking (emotion, rank, landmark, importance, region).
        k_values: K values whose top-K share is added as ``top<K>_share``.
        wide: return only the mean importance, one row per emotion and one column per region
            (what stage 03's notebook shows as a heatmap).

    Returns:
        Per (emotion, region): n_landmarks, mean_importance, importance_share (the region's
        sum over the emotion's total), and per K the fraction of the top-K in the region.
    """
    rows = []
    for emotion, part in ranking.groupby("emotion", sort=False):
        part = part.sort_values("rank")
        total = float(part["importance"].sum()) or 1.0
        for region in REGIONS:
            in_region = part["region"] == region
            row = {"emotion": emotion, "region": region, "n_landmarks": int(in_region.sum()),
                   "mean_importance": float(part.loc[in_region, "importance"].mean()) if in_region.any() else 0.0,
                   "importance_share": float(part.loc[in_region, "importance"].sum()) / total}
            for k in k_values:
                top = part.head(k)
                row[f"top{k}_share"] = float((top["region"] == region).mean()) if len(top) else np.nan
            rows.append(row)
    table = pd.DataFrame(rows)
    if wide:
        emotions = list(dict.fromkeys(table["emotion"]))
        table = table.pivot(index="emotion", columns="region", values="mean_importance").reindex(
            index=emotions, columns=list(REGIONS))
        table.index.name, table.columns.name = None, None
    return table

