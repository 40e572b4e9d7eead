"""Stage 03's faithfulness checks on a run folder, without retraining (ROAR, which retrains, is
stage 04's ``roar`` rule):

* :func:`deletion_study`: each seed's all-landmark model of each emotion on its own test positives
  (held out), landmarks replaced by the other emotions' typical baselines in the order of stage
  03's ranking and in random orders; the area under each deletion and insertion curve, per seed,
  so that stage 05 pairs the ranking with the random orders over seeds.
* :func:`randomisation_check`: the model-parameter randomisation check (Adebayo et al. 2018): the
  rankings of the same model with its layers re-initialised from the top down, against the
  trained model's ranking.
* :func:`frame_attributions`: one test video per emotion, its attribution frame by frame (the
  animation of the results page).

Each study's tables are cached in ``cache/ig/`` under a key of everything that shapes them, so a
re-run with the same parameters recomputes nothing.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Mapping

import numpy as np
import pandas as pd

from emolib import io
from emolib.checks.agreement import ranking_agreement
from emolib.checks.perturbation import CURVES, perturbation_curves, random_orders
from emolib.checks.randomisation import cascading_randomisation
from emolib.explain.attribute import explanation_pairs, ig_cache_key
from emolib.explain.explainer import Explainer, cached_tables, stream_seed
from emolib.ig import integrated_gradients, model_outputs
from emolib.io import content_key
from emolib.vocab import DELETION_COLUMNS, DELETION_CURVE_COLUMNS, RANDOMISATION_COLUMNS

if TYPE_CHECKING:
    from emolib.run_folder import RunFolder


def _ranking_key(ranking: Mapping[str, np.ndarray]) -> str:
    return content_key({e: [int(i) for i in ids] for e, ids in ranking.items()})


def ranking_positions(ranking_ids: np.ndarray, landmark_ids: np.ndarray) -> np.ndarray:
    """A ranking (landmark ids, most important first) as column positions of a model's input,
    the landmarks it does not rank appended last in id order.

    Args:
        ranking_ids: ids, most important first.
        landmark_ids: the model's input columns (ids).

    Returns:
        (L,) a permutation of ``range(len(landmark_ids))``.
    """
    where = {int(i): pos for pos, i in enumerate(np.asarray(landmark_ids, dtype=int))}
    ranked = [where[int(i)] for i in ranking_ids if int(i) in where]
    rest = [p for p in range(len(where)) if p not in set(ranked)]
    return np.asarray(ranked + rest, dtype=int)


def deletion_study(explainer: Explainer, ranking: Mapping[str, np.ndarray], *,
                   progress: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Deletion and insertion curves of the ranking against random orders, per emotion and seed.

    For each of the first ``checks.deletion.seeds`` seeds (default: all) and each emotion e: e's
    all-landmark model of that seed, up to ``checks.deletion.samples`` of its test positives, each
    paired with the seed's typical baseline of every other emotion (``ig.typical``); their
    landmarks replaced in the order of ``ranking[e]`` (stage 03's, the one stage 04 prunes with) and
    in ``checks.deletion.random_orders`` random orders, ``checks.deletion.points`` points each.

    Args:
        explainer: the run's :class:`Explainer`.
        ranking: emotion -> landmark ids, most important first.
        progress: a tqdm bar over seeds.

    Returns:
        ``(areas, curves)``: the tables of ``results/deletion.csv`` (:data:`DELETION_COLUMNS`: the
        mean area over the seed's pairs; for ``random``, also over the orders) and
        ``results/deletion_curves.csv`` (:data:`DELETION_CURVE_COLUMNS`). An emotion with no test
        positive for a seed has no rows for it.
    """
    params = explainer.params
    settings = params.checks.deletion
    seeds = list(params.seeds[: settings.seeds or len(params.seeds)])
    key = ig_cache_key(params, "03_global_ig", {"what": "deletion", "settings": settings.model_dump(mode="json"),
                                               "typical": params.ig.typical, "seeds": seeds,
                                               "ranking": _ranking_key(ranking), "variant": explainer.variant})

    def compute() -> tuple[pd.DataFrame, pd.DataFrame]:
        areas, curves = [], []
        bar: Any = seeds
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(seeds, desc="deletion and insertion curves", unit="seed")
        for seed in bar:
            for emotion in params.emotions:
                rows = explainer.samples(seed, emotion, "test", settings.samples)
                if len(rows) == 0:
                    continue
                trained = explainer.models(seed)[emotion]
                inputs, bases = explanation_pairs(trained, explainer.data, rows,
                                                  explainer.other_baselines(seed, emotion))
                n_lm = inputs.shape[3]
                orders = np.concatenate([ranking_positions(ranking[emotion], trained.landmark_ids)[None],
                                         random_orders(n_lm, settings.random_orders,
                                                       stream_seed(0xDE1, seed, emotion))])
                res = perturbation_curves(trained.model, inputs, bases, orders, points=settings.points,
                                          batch_size=params.ig.batch_size)
                counts = res["counts"]
                for curve in CURVES:
                    area, probs = res[f"{curve}_area"], res[curve]
                    for order, a, p in (("ig", area[:, 0], probs[:, 0]), ("random", area[:, 1:], probs[:, 1:])):
                        areas.append({"emotion": emotion, "seed": int(seed), "curve": curve, "order": order,
                                      "area": float(np.mean(a)), "n_samples": int(len(rows)),
                                      "n_pairs": int(len(inputs))})
                        mean_curve = p.reshape(-1, len(counts)).mean(axis=0)
                        curves += [{"emotion": emotion, "seed": int(seed), "curve": curve, "order": order,
                                    "replaced": int(c), "share": float(c / counts[-1]), "probability": float(v)}
                                   for c, v in zip(counts, mean_curve)]
        return (pd.DataFrame(areas, columns=list(DELETION_COLUMNS)),
                pd.DataFrame(curves, columns=list(DELETION_CURVE_COLUMNS)))

    areas, curves = cached_tables(explainer.run, "deletion", key, ("areas", "curves"), compute)
    return areas, curves


def randomisation_check(explainer: Explainer, *, progress: bool = True) -> pd.DataFrame:
    """The model-parameter randomisation check of Adebayo et al. (2018), cascading from the top.

    For each of the first ``checks.randomisation.seeds`` seeds and each emotion e: up to
    ``checks.randomisation.samples`` of e's training positives (the samples the global procedure
    explains) are explained under e's trained model and under copies of it whose top 1, 2, ...
    layers are re-drawn from the model's own initial distributions (a seed of their own per
    (seed, emotion)), against the same typical baselines; each copy's global mask is compared with
    the trained model's by rank correlation. An explanation that tracks the model changes: low
    correlation once the weights are random.

    Args:
        explainer: the run's :class:`Explainer`.
        progress: a tqdm bar over seeds.

    Returns:
        The table of ``results/randomisation.csv`` (:data:`RANDOMISATION_COLUMNS`): one row per
        (emotion, seed, level), level 1 the output layer alone re-drawn, the last every layer. A
        correlation is NaN when a randomised model's mask is constant (e.g. all zero).
    """
    params = explainer.params
    settings = params.checks.randomisation
    seeds = list(params.seeds[: settings.seeds])
    top_k = params.checks.top_k
    key = ig_cache_key(params, "03_global_ig", {"what": "randomisation", "settings": settings.model_dump(mode="json"),
                                               "top_k": top_k, "seeds": seeds, "variant": explainer.variant})

    def compute() -> tuple[pd.DataFrame]:
        rows_out = []
        bar: Any = seeds
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(seeds, desc="randomisation check", unit="seed")
        for seed in bar:
            for emotion in params.emotions:
                samples = explainer.samples(seed, emotion, "train", settings.samples)
                trained = explainer.models(seed)[emotion]
                reference = explainer.per_sample_masks(seed, emotion, samples).mean(axis=0)
                k = min(top_k, reference.size)
                draw = stream_seed(0x5A17, seed, emotion)[-1] % (2**31 - 1)
                for level, (layer, copy) in enumerate(cascading_randomisation(trained.model, seed=draw), start=1):
                    mask = explainer.per_sample_masks(seed, emotion, samples, model=copy,
                                                      tag=f"randomised {level} of {draw}").mean(axis=0)
                    rows_out.append({"emotion": emotion, "seed": int(seed), "level": level, "layer": layer,
                                     **ranking_agreement(reference, mask, k), "n_samples": int(len(samples))})
        return (pd.DataFrame(rows_out, columns=list(RANDOMISATION_COLUMNS)),)

    (table,) = cached_tables(explainer.run, "randomisation", key, ("levels",), compute)
    return table


def frame_attributions(explainer: Explainer, seed: int | None = None) -> dict[str, dict[str, np.ndarray]]:
    """For each emotion, one held-out video and its attribution frame by frame: the test positive
    of ``seed`` (default ``ig_seed``) its emotion's model is most sure of, explained against the
    typical baseline of every other emotion (``ig.steps``), |IG| summed over x and y and
    averaged over the baselines.

    Args:
        explainer: the run's :class:`Explainer`.
        seed: the models' seed.

    Returns:
        emotion -> {sample (row), probability, X (P, 2, L) its landmarks, attribution (P, L),
        landmark_ids (L,)}; an emotion without a test positive is left out. Written by the stage
        to ``attributions/frames.npz`` (:func:`write_frame_attributions`).
    """
    params = explainer.params
    seed = params.ig_seed if seed is None else int(seed)
    out = {}
    for emotion in params.emotions:
        rows = explainer.rows(seed, "test")[emotion]
        if len(rows) == 0:
            continue
        trained = explainer.models(seed)[emotion]
        inputs, _ = explanation_pairs(trained, explainer.data, rows, explainer.other_baselines(seed, emotion)[:1])
        probs = model_outputs(trained.model, inputs, params.ig.batch_size)[:, 1]
        best = int(np.argmax(probs))
        row = int(rows[best])
        bases = explainer.other_baselines(seed, emotion)
        x, b = explanation_pairs(trained, explainer.data, np.array([row]), bases)
        res = integrated_gradients(trained.model, x, b, steps=params.ig.steps, target=1,
                                   batch_size=params.ig.batch_size, rule=params.ig.rule, engine=params.ig.engine)
        attribution = np.abs(np.asarray(res.attributions)[..., 0]).sum(axis=2).mean(axis=0)  # (P, L)
        ids = np.asarray(trained.landmark_ids, dtype=int)
        out[emotion] = {"sample": np.array(row), "probability": np.array(float(probs[best])),
                        "X": explainer.data.subset(np.array([row])).select_landmarks(ids).X[0].astype(np.float32),
                        "attribution": attribution.astype(np.float32), "landmark_ids": ids}
    return out


def write_frame_attributions(run: RunFolder, frames: Mapping[str, Mapping[str, np.ndarray]]) -> None:
    """Write :func:`frame_attributions` to ``attributions/frames.npz`` (keys ``<emotion>__<name>``;
    read back by :meth:`RunFolder.read_frame_attributions`)."""
    io.write_npz(run.frame_attributions, **{f"{e}__{k}": v for e, parts in frames.items() for k, v in parts.items()})
