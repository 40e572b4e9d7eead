"""Scoring landmark rankings against what the data knows, and a model-free reference ranking.

On the demo data the generator knows which landmarks each emotion moves (``ground_truth.json``):
:func:`planted_recovery` (stage 03) and :func:`ground_truth_recovery` (stage 05, at each K) count
how many of them a ranking puts at its top, with one counting rule (:func:`hits_at`), and
:func:`displacement_ranking` is the yardstick: the landmarks ranked by how far they are measured
to move, with no model at all.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd

from emolib.ig.masks import rank_landmarks

if TYPE_CHECKING:
    from emolib.landmarks import LandmarkSet


def hits_at(order: Sequence[int], truth: set[int], k: int) -> int:
    """How many of ``truth`` the first ``k`` landmarks of ``order`` hold."""
    return len(truth & {int(i) for i in np.asarray(order, dtype=int)[:k]})


EYE_CORNERS = (33, 263)  # MediaPipe's outer eye corners: their distance is the demo's face unit


def displacement_ranking(data: LandmarkSet, emotions: Sequence[str]) -> dict[str, np.ndarray]:
    """A model-free reference ranking: each emotion's landmarks by how far they move on average,
    |mean over its samples of (last frame - first frame)|, in face units (the first frame's
    outer-eye-corner distance; raw units when those landmarks are not in the data).

    It says what the measured landmarks themselves show. On the demo it is the fair yardstick for
    :func:`planted_recovery`: FaceMesh measures only part of the motion the generator planted and
    spreads some of it to landmarks the program leaves still, so even this ranking misses many
    planted landmarks. Unlike IG it ignores what tells the emotions apart.

    Args:
        data: the landmark set (frames must be in time order; first and last frame are used).
        emotions: the emotions to rank; one with no samples is left out.

    Returns:
        emotion -> landmark ids, most displaced first.
    """
    X = np.asarray(data.X, dtype=np.float64)
    ids = np.asarray(data.landmark_ids, dtype=int)
    scale = np.ones(len(X))
    where = {int(i): pos for pos, i in enumerate(ids)}
    if all(c in where for c in EYE_CORNERS):
        a, b = (where[c] for c in EYE_CORNERS)
        scale = np.linalg.norm(X[:, 0, :, a] - X[:, 0, :, b], axis=1)
        scale[scale <= 0] = 1.0
    moved = (X[:, -1] - X[:, 0]) / scale[:, None, None]        # (N, 2, L)
    out = {}
    for e in emotions:
        rows = np.asarray(data.emotion) == e
        if rows.any():
            out[e] = rank_landmarks(np.linalg.norm(moved[rows].mean(axis=0), axis=0), ids)
    return out


def planted_recovery(ranking: Mapping[str, np.ndarray], ground_truth: Mapping[str, np.ndarray],
                     n_landmarks: int | None = None, top: int = 64,
                     reference: Mapping[str, np.ndarray] | None = None) -> pd.DataFrame:
    """How many of the landmarks each emotion really moves the ranking puts at its top.

    Args:
        ranking: emotion -> landmark ids, most important first.
        ground_truth: emotion -> the planted (really moved) landmark ids.
        n_landmarks: how many landmarks were ranked (default: the ranking's length).
        top: the second cut-off (the first is the planted count itself).
        reference: emotion -> another ranking scored the same way (e.g.
            :func:`displacement_ranking`), for the columns ``reference_hits_top_planted`` and
            ``reference_recall``.

    Returns:
        One row per emotion present in both: planted, hits_top_planted (hits in the top
        |planted|), chance_top_planted (expected hits of a random ranking, |planted|^2 / L),
        hits_top<top>, chance_top<top> (top * |planted| / L), recall_top_planted, and the
        reference's columns when given.
    """
    rows = []
    for e, order in ranking.items():
        if e not in ground_truth:
            continue
        order = np.asarray(order, dtype=int)
        planted = set(np.asarray(ground_truth[e], dtype=int).tolist()) & set(order.tolist())
        n_lm = n_landmarks or len(order)
        k = len(planted)
        if k == 0:
            continue
        hits_k = hits_at(order, planted, k)
        hits_top = hits_at(order, planted, top)
        row = {"emotion": e, "planted": k, "hits_top_planted": hits_k,
               "chance_top_planted": k * k / n_lm, f"hits_top{top}": hits_top,
               f"chance_top{top}": min(top, n_lm) * k / n_lm,
               "recall_top_planted": hits_k / k}
        if reference is not None and e in reference:
            ref = np.asarray(reference[e], dtype=int)
            ref = ref[np.isin(ref, order)]  # the same landmarks as the ranking scored
            ref_hits = hits_at(ref, planted, k)
            row.update(reference_hits_top_planted=ref_hits, reference_recall=ref_hits / k)
        rows.append(row)
    return pd.DataFrame(rows)



def ground_truth_recovery(ranking_ids: dict[str, np.ndarray], truth: dict[str, np.ndarray],
                          k_values: Sequence[int], n_landmarks: int) -> pd.DataFrame:
    """How many of the landmarks each emotion really moves (demo data) the ranking puts in its top K.

    Args:
        ranking_ids: emotion -> ids, most important first.
        truth: emotion -> ids the data's generator moves.
        k_values: the K values.
        n_landmarks: the number of landmarks ranked (for the chance level).

    Returns:
        Per (emotion, K): hits, precision (hits / K), recall (hits / moved), chance_precision
        (moved / n_landmarks: what a random top-K gets on average).
    """
    rows = []
    for emotion, moved in truth.items():
        if emotion not in ranking_ids:
            continue
        moved_set = set(int(i) for i in moved)
        for k in k_values:
            hits = hits_at(ranking_ids[emotion], moved_set, k)
            rows.append({"emotion": emotion, "n_landmarks": int(k), "hits": hits, "precision": hits / k,
                         "recall": hits / max(len(moved_set), 1),
                         "chance_precision": len(moved_set) / n_landmarks})
    return pd.DataFrame(rows)

