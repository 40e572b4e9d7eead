"""Stage 03: the paper's global landmark importance (section 3.2) on a run folder.

For each emotion e: a typical training video of every emotion (:mod:`emolib.explain.typical`);
the IG of e's selected training samples under e's all-landmark model against the typical video
of each of the other emotions (:mod:`emolib.explain.attribute`); the masks averaged over the
samples first, then over the baselines (:func:`emolib.ig.aggregate_masks`); the landmarks ranked.
Figure 2 (:func:`path_curves`) and a completeness study against m (:func:`completeness_study`)
look at the same models and baselines.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np
import pandas as pd

from emolib import io
from emolib.errors import DataError, ParamsError
from emolib.explain.attribute import attribute, explanation_pairs, ig_cache_key
from emolib.explain.typical import (
    TypicalBaseline,
    check_typical_strategy,
    choose_typical,
    typical_inputs,
    write_typical,
)
from emolib.ig import aggregate_masks, alpha_curve, completeness_by_steps, landmark_mask, model_outputs
from emolib.models import model_inputs
from emolib.regions import region_of
from emolib.vocab import ALL_LANDMARKS, EMOTIONS, PAPER_VARIANT, VARIANTS

if TYPE_CHECKING:
    from emolib.config import Params
    from emolib.landmarks import LandmarkSet
    from emolib.models import TrainedModel
    from emolib.run_folder import RunFolder


@dataclass
class GlobalImportance:
    """Stage 03's results (also on disk: see :func:`global_landmark_importance`).

    Attributes:
        variant: ``t-emo`` or ``r-emo``.
        typical: one row per emotion: emotion, sample, sequence, strategy, score (the table of
            ``attributions/typical.csv``; sample is -1 for a centroid).
        masks: emotion -> dict with per_baseline (5, L), baseline_emotions (5,), global (L,),
            landmark_ids (L,), n_samples, gaps (5, n), deltas (5, n), samples (n,).
        ranking: the landmark_ranking table (emotion, rank, landmark, importance, region).
        completeness: the completeness table.
        baselines: emotion -> its :class:`TypicalBaseline` (what IG starts from; see
            :func:`typical_inputs`).
    """

    variant: str
    typical: pd.DataFrame
    masks: dict[str, dict[str, np.ndarray]]
    ranking: pd.DataFrame
    completeness: pd.DataFrame
    computed: list[str] = field(default_factory=list)
    trained: dict[str, Any] = field(default_factory=dict, repr=False)
    explained: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    baselines: dict[str, TypicalBaseline] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.baselines and len(self.typical):  # built from the table: real videos only
            for _, row in self.typical.iterrows():
                if int(row["sample"]) < 0:
                    raise ValueError(f"typical baseline of {row['emotion']} is a centroid: pass its rows "
                                      f"as ``baselines`` (see load_typical)")
                self.baselines[str(row["emotion"])] = TypicalBaseline(
                    str(row["emotion"]), str(row.get("strategy", "most_confident")),
                    np.array([int(row["sample"])], dtype=np.int64), float(row.get("score", float("nan"))))

    @property
    def typical_of(self) -> dict[str, int]:
        """Emotion -> its typical sample (row of data/landmarks.npz; -1 for a centroid, which is
        no single video: use ``baselines``)."""
        return {e: b.sample for e, b in self.baselines.items()}

    def order(self, emotion: str) -> np.ndarray:
        """Landmark ids of ``emotion``, most important first."""
        rows = self.ranking[self.ranking["emotion"] == emotion].sort_values("rank")
        return rows["landmark"].to_numpy(dtype=int)


def global_landmark_importance(run: RunFolder, params: Params, data: LandmarkSet | None = None, *,
                               variant: str = PAPER_VARIANT, emotions: Sequence[str] | None = None,
                               progress: bool = True,
                               trained: Mapping[str, TrainedModel] | None = None) -> GlobalImportance:
    """The paper's global IG for every emotion on a run folder; writes and returns the results.

    Reads stage 02's 468-landmark models (``selection="all"``) of seed ``params.ig_seed`` and its
    splits. Writes ``attributions/<emotion>.npz`` (per_baseline, baseline_emotions, global,
    landmark_ids, n_samples, plus gaps, deltas, samples and the cache key),
    ``attributions/typical.csv`` and ``attributions/typical_rows.json`` (each emotion's typical
    baseline, see :func:`~emolib.explain.typical.write_typical`), ``results/landmark_ranking.csv``
    and ``results/completeness.csv`` (R-EMO: ``attributions/r-emo/`` and ``*_r-emo.*``: see
    :mod:`emolib.run_folder`). An emotion whose npz holds the same cache key (same parameters,
    same typical baselines, same model) is not recomputed.

    The typical baseline of each emotion (``ig.typical``) is chosen among its training samples
    of seed ``ig_seed``: ``most_confident`` and ``medoid`` pick one of them, ``centroid`` takes
    the mean of their model inputs (under the explaining model).

    Args:
        run: the RunFolder.
        params: the run's Params.
        data: the LandmarkSet (default: read ``data/landmarks.npz``).
        variant: ``t-emo`` (the paper's) or ``r-emo``.
        emotions: the emotions to explain (default: ``params.emotions``).
        progress: tqdm bars.
        trained: emotion -> an already loaded TrainedModel of this variant and seed (e.g. the
            ``trained`` of an earlier result), reused instead of loading it again; the compiled
            IG functions of a model are kept with it, so a reused model is not traced again.

    Returns:
        A :class:`GlobalImportance`.

    Raises:
        ParamsError: an unknown variant, emotion or ``ig.typical``.
        DataError: the landmark file, the splits or a model is missing, or an emotion has no
            training sample.
    """
    all_emotions = list(params.emotions)
    emotions = _check_request(params, variant, emotions)
    data = data if data is not None else run.read_landmarks()
    per_emotion_train, train_idx = _training_samples(run, params, data)
    # Load every model up front: a missing model fails here, before the long work.
    given = dict(trained or {})
    models = {e: given[e] if e in given else run.load_trained(variant, e, data.n_landmarks, ALL_LANDMARKS,
                                                               params.ig_seed)
              for e in all_emotions}
    baselines = _typical_baselines(params, data, models, per_emotion_train)
    typical = write_typical(run, variant, list(baselines.values()), data)

    masks: dict[str, dict[str, np.ndarray]] = {}
    computed = []
    bar: Any = emotions
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(emotions, desc=f"global IG ({variant})", unit="emotion")
    for e in bar:
        candidates = train_idx if params.ig.inputs == "all" else per_emotion_train[e]
        masks[e], fresh = _emotion_masks(run, params, data, variant, e, models[e], candidates, baselines, progress)
        if fresh:
            computed.append(e)

    ranking = pd.DataFrame([row for e in emotions for row in _ranking_rows(e, masks[e])])
    completeness = pd.DataFrame([row for e in emotions for row in _completeness_rows(e, masks[e], params.ig.steps)])
    # Explaining some emotions only must not drop the others' rows from the shared tables.
    _write_emotion_rows(run.ranking(variant), ranking, all_emotions, ["rank"])
    _write_emotion_rows(run.completeness(variant), completeness, all_emotions, [])
    return GlobalImportance(variant, typical, masks, ranking, completeness, computed, models,
                            {e: masks[e]["samples"].astype(int) for e in emotions}, baselines)


def _check_request(params: Params, variant: str, emotions: Sequence[str] | None) -> list[str]:
    """The emotions to explain, after refusing an unknown variant, emotion or strategy."""
    if variant not in VARIANTS:
        raise ParamsError(f"variant {variant!r} is unknown; expected one of {list(VARIANTS)}")
    check_typical_strategy(params.ig.typical)
    all_emotions = list(params.emotions)
    emotions = list(emotions) if emotions is not None else all_emotions
    unknown = [e for e in emotions if e not in all_emotions]
    if unknown:
        raise ParamsError(f"emotion(s) {unknown} are not in params.emotions {all_emotions}")
    if len(all_emotions) < 2:
        raise ParamsError("global IG needs at least two emotions (the baselines are the other ones)")
    return emotions


def _training_samples(run: RunFolder, params: Params, data: LandmarkSet,
                      seed: int | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(emotion -> its training rows, all training rows) of ``seed``'s partition (default ``ig_seed``)."""
    return seed_samples(run, params, data, "train", seed)


def seed_samples(run: RunFolder, params: Params, data: LandmarkSet, part: str = "train",
                 seed: int | None = None) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """The rows of one part of a seed's partition, per emotion and all together.

    Args:
        run: the run folder (its splits, stage 02).
        params: the run's parameters.
        data: the landmark set the splits index.
        part: ``train``, ``val`` or ``test``.
        seed: the seed (default ``params.ig_seed``).

    Returns:
        (emotion -> its rows of the part, every row of the part).

    Raises:
        DataError: the splits lack the seed or the part, refer to rows the data does not hold,
            or (``train`` only) an emotion has no training sample.
    """
    seed = params.ig_seed if seed is None else int(seed)
    parts = run.split_parts(run.read_splits(), seed)
    if part not in parts:
        raise DataError(f"{run.root}: the splits of seed {seed} have no {part!r} part")
    train_idx = np.asarray(parts[part], dtype=int)
    if len(train_idx) and (train_idx.max() >= len(data) or train_idx.min() < 0):
        raise DataError(f"{run.root}: the splits of seed {seed} refer to sample {train_idx.max()} but "
                        f"{run.landmarks} holds {len(data)} samples; rerun stage 02")
    per_emotion = {e: train_idx[data.emotion[train_idx] == e] for e in params.emotions}
    empty = [e for e, idx in per_emotion.items() if len(idx) == 0]
    if empty and part == "train":
        raise DataError(f"{run.root}: seed {seed} has no training sample of {empty}")
    return per_emotion, train_idx


def _typical_baselines(params: Params, data: LandmarkSet, models: Mapping[str, TrainedModel],
                       per_emotion_train: Mapping[str, np.ndarray]) -> dict[str, TypicalBaseline]:
    return choose_typical_baselines(params, data, models, per_emotion_train)


def choose_typical_baselines(params: Params, data: LandmarkSet, models: Mapping[str, TrainedModel],
                      per_emotion_train: Mapping[str, np.ndarray],
                      strategy: str | None = None) -> dict[str, TypicalBaseline]:
    """Each emotion's typical baseline among its own training samples, chosen and scored in its
    own model's input space (each explaining model then sees it through its own scaling).

    Args:
        params: the run's parameters (``ig.typical``, ``ig.batch_size``).
        data: the landmark set.
        models: emotion -> its all-landmark model (of the seed whose samples these are).
        per_emotion_train: emotion -> its training rows.
        strategy: the ``ig.typical`` strategy (default the run's).

    Returns:
        emotion -> :class:`TypicalBaseline`.
    """
    strategy = check_typical_strategy(strategy or params.ig.typical)
    baselines = {}
    for e, idx in per_emotion_train.items():
        inputs = model_inputs(data.subset(idx), models[e])
        probs = None
        if strategy == "most_confident":
            probs = model_outputs(models[e].model, inputs, params.ig.batch_size)[:, 1]
        baselines[e] = choose_typical(e, idx, inputs, strategy, probs)
    return baselines


def _emotion_masks(run: RunFolder, params: Params, data: LandmarkSet, variant: str, emotion: str,
                   trained: TrainedModel, candidates: np.ndarray, baselines: Mapping[str, TypicalBaseline],
                   progress: bool) -> tuple[dict[str, np.ndarray], bool]:
    """One emotion's masks, from its cached npz when the key matches; (masks, computed now)."""
    others = [b for b in params.emotions if b != emotion]
    chosen = select_explained(candidates, params.ig.max_samples, params.ig_seed, emotion)
    key = ig_cache_key(params, "03_global_ig", {
        "variant": variant, "emotion": emotion, "typical": {e: b.key for e, b in baselines.items()},
        "samples": chosen.tolist(), "model": (getattr(trained, "record", None) or {}).get("key")})
    path = run.attribution(emotion, variant)
    cached = _load_cached(path, key)
    fresh = cached is None
    if fresh:
        cached = _explain_emotion(trained, data, chosen, [baselines[b] for b in others], params, progress)
        cached.update(baseline_emotions=np.array(others), cache_key=np.array(key))
        io.write_npz(path, **cached)
    return {k: v for k, v in cached.items() if k != "cache_key"}, fresh


def _explain_emotion(trained: TrainedModel, data: LandmarkSet, samples: np.ndarray,
                     baselines: Sequence[TypicalBaseline], params: Params, progress: bool) -> dict[str, np.ndarray]:
    """IG of ``samples`` under one emotion's model against each typical baseline, in one batched
    call, and the paper's masks of it."""
    n, n_base = len(samples), len(baselines)
    res = attribute(trained, data, samples, baselines, params, progress=progress)
    per_sample = landmark_mask(res.attributions).reshape(n_base, n, -1)
    per_baseline, global_mask = aggregate_masks(list(per_sample))
    return {
        "per_baseline": per_baseline,
        "global": global_mask,
        "landmark_ids": np.asarray(trained.landmark_ids, dtype=np.int64),
        "n_samples": np.array(n),
        "samples": np.asarray(samples, dtype=np.int64),
        "gaps": res.gaps.reshape(n_base, n),
        "deltas": res.deltas.reshape(n_base, n),
        "steps": np.array(params.ig.steps),
        "rule": np.array(params.ig.rule),
    }


def _ranking_rows(emotion: str, masks: Mapping[str, np.ndarray]) -> list[dict]:
    ids = masks["landmark_ids"].astype(int)
    order = np.argsort(-masks["global"], kind="stable")
    regions = region_of(ids[order])
    return [{"emotion": emotion, "rank": rank, "landmark": int(ids[pos]),
             "importance": float(masks["global"][pos]), "region": str(region)}
            for rank, (pos, region) in enumerate(zip(order, regions), start=1)]


def _completeness_rows(emotion: str, masks: Mapping[str, np.ndarray], steps: int) -> list[dict]:
    return [{"emotion": emotion, "baseline_emotion": str(b), "steps": steps,
             "mean_abs_gap": float(np.mean(np.abs(masks["gaps"][j]))),
             "max_abs_gap": float(np.max(np.abs(masks["gaps"][j]))),
             "mean_abs_delta": float(np.mean(np.abs(masks["deltas"][j])))}
            for j, b in enumerate(masks["baseline_emotions"])]


def _write_emotion_rows(path, new: pd.DataFrame, all_emotions: Sequence[str], order: Sequence[str]) -> None:
    """Write ``new`` (the explained emotions' rows) into the table at ``path``, keeping the rows of
    the run's other emotions already there; rows of emotions no longer studied are dropped."""
    rank = {e: i for i, e in enumerate(all_emotions)}
    io.upsert_csv(path, new, ["emotion"], keep=lambda old: old["emotion"].isin(all_emotions),
                  order=lambda t: t.sort_values(["emotion", *order],
                                                key=lambda c: c.map(rank) if c.name == "emotion" else c,
                                                kind="stable", ignore_index=True))


def _load_cached(path, key: str) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            if "cache_key" not in f.files or str(f["cache_key"]) != key:
                return None
            return {k: f[k] for k in f.files}
    except Exception:  # unreadable: recompute (it is rewritten atomically)
        return None


def select_explained(candidates: np.ndarray, max_samples: int | None, seed: int, emotion: str) -> np.ndarray:
    """The samples IG explains: all candidates, or a seeded choice of ``max_samples`` of them.

    Args:
        candidates: rows of the landmark file (the training samples ``ig.inputs`` names).
        max_samples: ``ig.max_samples`` (None: no cap).
        seed: the seed of the choice (the IG seed).
        emotion: the explained emotion; the choice is seeded by (seed, emotion), so each
            emotion's draw is reproducible on its own.

    Returns:
        Sorted rows.
    """
    candidates = np.sort(np.asarray(candidates, dtype=int))
    if max_samples is None or len(candidates) <= max_samples:
        return candidates
    rng = np.random.default_rng([int(seed), EMOTIONS.index(emotion) if emotion in EMOTIONS else 0])
    return np.sort(rng.choice(candidates, size=int(max_samples), replace=False))


def path_curves(result: GlobalImportance, data: LandmarkSet, steps: int = 50
                ) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Figure 2 for every emotion e: e's model along the path from the typical video of each
    other emotion (alpha = 0) to e's own typical video (alpha = 1). With ``ig.typical:
    centroid`` both ends are centroids (mean inputs under e's model), not real videos.

    Args:
        result: stage 03's results (models and typical baselines).
        data: the landmark set.
        steps: points per curve minus one.

    Returns:
        emotion -> baseline emotion -> ``(alphas, probabilities)``.
    """
    typical = result.baselines
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for e in result.masks:
        trained = result.trained[e]
        others = [str(b) for b in result.masks[e]["baseline_emotions"]]
        scaled = typical_inputs([typical[e]] + [typical[b] for b in others], data, trained)
        curves[e] = {b: alpha_curve(trained.model, scaled[0], scaled[j + 1], steps=steps)
                     for j, b in enumerate(others)}
    return curves


def completeness_study(result: GlobalImportance, data: LandmarkSet, params: Params, samples_per_emotion: int = 2,
                       factors: Sequence[float] = (0.25, 0.5, 1.0, 2.0), progress: bool = True,
                       run: RunFolder | None = None) -> pd.DataFrame:
    """Completeness gaps at several m for a few explained samples of each emotion (all baselines).

    Args:
        result: stage 03's results (models, explained samples, typical baselines).
        data: the landmark set.
        params: the run's parameters (ig.steps, ig.rule, ig.batch_size).
        samples_per_emotion: how many of each emotion's explained samples (the first ones).
        factors: m = max(1, round(factor * ig.steps)) for each factor.
        progress: tqdm bar over the emotions.
        run: when given, each emotion's rows are cached in ``cache/ig/`` keyed by everything
            that changes them, and not recomputed on a re-run.

    Returns:
        One row per emotion and m: emotion, steps, mean_abs_gap, max_abs_gap, mean_abs_delta,
        relative_gap, pairs (sample x baseline pairs measured).
    """
    steps_list = sorted({max(1, int(round(f * params.ig.steps))) for f in factors})
    typical = result.baselines
    tables = []
    emotions: Any = list(result.masks)
    if progress:
        from tqdm.auto import tqdm

        emotions = tqdm(emotions, desc="completeness against m", unit="emotion")
    for e in emotions:
        trained = result.trained[e]
        chosen = result.explained[e][:samples_per_emotion]
        others = [str(b) for b in result.masks[e]["baseline_emotions"]]
        cache = None
        if run is not None:
            key = ig_cache_key(params, "03_global_ig", {
                "what": "completeness_study", "variant": result.variant, "emotion": e,
                "samples": [int(v) for v in chosen], "baselines": [typical[b].key for b in others],
                "steps": steps_list, "model": (getattr(trained, "record", None) or {}).get("key")})
            cache = run.ig_cache / f"completeness_{result.variant}_{e}_{key}.csv"
            if cache.is_file():
                try:
                    tables.append(pd.read_csv(cache))
                    continue
                except (pd.errors.ParserError, pd.errors.EmptyDataError):
                    pass  # unreadable: recompute and rewrite it
        inputs, baselines = explanation_pairs(trained, data, chosen, [typical[b] for b in others])
        table = completeness_by_steps(trained.model, inputs, baselines, steps_list, target=1,
                                      batch_size=params.ig.batch_size, rule=params.ig.rule,
                                      engine=params.ig.engine)
        table = table.assign(emotion=e, pairs=len(inputs))
        if cache is not None:
            io.write_csv(cache, table)
        tables.append(table)
    out = pd.concat(tables, ignore_index=True)
    return out[["emotion", "steps", "mean_abs_gap", "max_abs_gap", "mean_abs_delta", "relative_gap", "pairs"]]

