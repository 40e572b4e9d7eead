"""One video's attribution over its frames: what the explorer's per-video view draws.

IG of the video under its own emotion's model (any variant, K and selection stage 02 or 04
trained), against the typical videos of the other emotions (stage 03's, read from the run
folder), as the global procedure computes it (:func:`emolib.explain.attribute.attribute`); the
per-frame |IG| summed over x and y and averaged over the baselines. Cached in ``cache/explore/``.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np

from emolib import io
from emolib.errors import DataError
from emolib.explain.attribute import attribute, ig_cache_key
from emolib.explain.typical import TypicalBaseline, load_typical
from emolib.vocab import ALL_LANDMARKS, PAPER_VARIANT

if TYPE_CHECKING:
    from emolib.config import Params
    from emolib.landmarks import LandmarkSet
    from emolib.run_folder import RunFolder


def typical_baselines(run: RunFolder, variant: str = PAPER_VARIANT) -> dict[str, TypicalBaseline]:
    """Stage 03's typical baseline of each emotion for explaining ``variant`` (R-EMO is explained
    against T-EMO's typical videos when stage 03 did not explain R-EMO).

    Raises:
        DataError: stage 03's typical videos are missing or malformed.
    """
    if variant != PAPER_VARIANT and not run.typical(variant)[0].is_file():
        variant = PAPER_VARIANT
    path = run.typical(variant)[0]
    if not path.is_file():
        raise DataError(f"{path}: no typical videos (stage 03 writes them); cannot explain a sample")
    try:
        return load_typical(run, variant)
    except DataError as exc:
        raise DataError(f"{exc}; cannot explain a sample") from None


def explanation_cache_path(run: RunFolder, params: Params, *, sample: int, variant: str, n_landmarks: int,
                           selection: str, seed: int, baselines: dict) -> Path:
    """Where one sample's explanation is cached: ``cache/explore/<key>.npz``, keyed by everything
    that changes its numbers (the sections stage 04's models depend on, ``ig``, and which sample,
    model and typical baselines)."""
    key = ig_cache_key(params, "04_pruning", dict(sample=int(sample), variant=variant, n_landmarks=int(n_landmarks),
                                                 selection=selection, seed=int(seed), baselines=baselines), 20)
    return run.explore_cache / f"{key}.npz"


def explain_sample(run: RunFolder, params: Params, data: LandmarkSet, sample: int, *, variant: str = PAPER_VARIANT,
                   n_landmarks: Optional[int] = None, selection: Optional[str] = None,
                   seed: Optional[int] = None) -> dict[str, np.ndarray]:
    """IG of one video under its own emotion's model, per frame and landmark (cached on disk).

    The baselines are stage 03's typical videos of the other emotions (with ``ig.typical:
    centroid``, each the mean input of that emotion's training samples under the explained
    model); the per-frame |IG| (summed over x and y) is averaged over them, as the global
    procedure averages its masks.

    Args:
        run: the run folder.
        params: the run's parameters (``ig.steps``, ``ig.rule``, ``ig.batch_size``).
        data: the full landmark set.
        sample: the row of ``data`` to explain.
        variant: ``t-emo`` or ``r-emo``.
        n_landmarks: K of the model (default: all landmarks).
        selection: the model's selection rule (default: ``all`` for the full set, ``ig`` else).
        seed: the training seed (default: ``params.ig_seed``).

    Returns:
        attribution (P, K) mean |IG| per frame and landmark; landmark_ids (K,); probability (F(x)
        of the sample's emotion); baseline_emotions; emotion.

    Raises:
        DataError: ``sample`` is not a row of ``data``, or the model or stage 03's typical videos
            are missing.
    """
    if not 0 <= int(sample) < len(data):
        raise DataError(f"sample {sample} is not a row of the landmark set (it has {len(data)})")
    sample = int(sample)
    emotion = str(data.emotion[sample])
    k = int(n_landmarks or data.n_landmarks)
    selection = selection or (ALL_LANDMARKS if k == data.n_landmarks else "ig")
    seed = params.ig_seed if seed is None else int(seed)
    typical = {e: b for e, b in typical_baselines(run, variant).items() if e != emotion and e in params.emotions}
    if not typical:
        raise DataError(f"no typical video of another emotion than {emotion!r} to use as a baseline")
    path = explanation_cache_path(run, params, sample=sample, variant=variant, n_landmarks=k,
                                  selection=selection, seed=seed,
                                  baselines={e: b.key for e, b in typical.items()})
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                return {name: f[name] for name in f.files}
        except Exception:  # an unreadable cache is recomputed (and rewritten atomically)
            pass
    trained = run.load_trained(variant, emotion, k, selection, seed)
    result = attribute(trained, data, np.array([sample]), list(typical.values()), params)
    attr = np.abs(np.asarray(result.attributions))
    if attr.ndim == 5:  # (B, P, 2, K, 1): drop the channel axis
        attr = attr[..., 0]
    per_frame = attr.sum(axis=2).mean(axis=0)  # sum over x, y; mean over the baselines
    out = {"attribution": per_frame, "landmark_ids": np.asarray(trained.landmark_ids, dtype=np.int64),
           "probability": np.array(float(result.f_inputs[0])), "baseline_emotions": np.array(list(typical)),
           "emotion": np.array(emotion)}
    io.write_npz(path, **out)
    return out

