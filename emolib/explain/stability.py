"""Stage 03's stability check: how far the global ranking agrees with itself when what the paper
leaves open changes: the seed (another partition, another trained model), the typical-baseline
strategy (``most_confident``, ``medoid``, ``centroid``) and the number of IG steps.

Each ranking is the mean of per-sample IG masks over the same number of explained training
positives (``checks.stability.samples``), so the comparisons are of like with like; agreement is
Kendall's tau, Spearman's rho and the top-K overlap, with bootstrap intervals over the explained
samples (:func:`emolib.checks.agreement.bootstrap_agreement`: paired across strategies and steps,
where both rankings explain the same samples; independent across seeds, where each seed's model
explains its own training samples).
"""
from __future__ import annotations

from itertools import combinations
from typing import Any

import pandas as pd

from emolib.checks.agreement import bootstrap_agreement, chance_overlap
from emolib.explain.attribute import ig_cache_key
from emolib.explain.explainer import Explainer, cached_tables, stream_seed
from emolib.vocab import STABILITY_COLUMNS


def stability_study(explainer: Explainer, *, progress: bool = True) -> pd.DataFrame:
    """Agreement of rankings across seeds, typical-baseline strategies and IG steps, per emotion.

    * ``seeds``: every pair of the first ``checks.stability.seeds`` seeds, each with its own models,
      training positives and typical baselines (``ig.typical``, ``ig.steps``);
    * ``typical``: every pair of ``checks.stability.typical`` on seed ``ig_seed`` (same samples);
    * ``steps``: ``ig.steps`` against each of ``checks.stability.steps`` on ``ig_seed`` (same samples).

    Args:
        explainer: the run's :class:`Explainer`.
        progress: a tqdm bar over the comparisons.

    Returns:
        The table of ``results/stability.csv`` (:data:`STABILITY_COLUMNS`); ``a`` and ``b`` name
        the two settings compared (seed numbers, strategies, step counts, as text).
    """
    params = explainer.params
    settings = params.checks.stability
    top_k = params.checks.top_k
    ig_seed, run_steps = params.ig_seed, params.ig.steps
    seeds = list(params.seeds[: settings.seeds])
    steps = [s for s in dict.fromkeys(settings.steps) if s != run_steps]
    strategies = list(dict.fromkeys(settings.typical))
    key = ig_cache_key(params, "03_global_ig", {"what": "stability", "settings": settings.model_dump(mode="json"),
                                               "top_k": top_k, "variant": explainer.variant})

    def masks(seed: int, emotion: str, strategy: str | None = None, n_steps: int | None = None):
        samples = explainer.samples(seed, emotion, "train", settings.samples)
        return explainer.per_sample_masks(seed, emotion, samples, strategy=strategy, steps=n_steps)

    plan: list[tuple[str, str, str, bool, Any, Any]] = []
    for a, b in combinations(seeds, 2):
        plan.append(("seeds", str(a), str(b), False, dict(seed=a), dict(seed=b)))
    for a, b in combinations(strategies, 2):
        plan.append(("typical", a, b, True, dict(seed=ig_seed, strategy=a), dict(seed=ig_seed, strategy=b)))
    for s in steps:
        plan.append(("steps", str(run_steps), str(s), True, dict(seed=ig_seed, n_steps=run_steps),
                     dict(seed=ig_seed, n_steps=s)))

    def compute() -> tuple[pd.DataFrame]:
        rows = []
        bar: Any = plan
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(plan, desc="stability of the ranking", unit="comparison")
        for factor, a, b, paired, side_a, side_b in bar:
            for emotion in params.emotions:
                ma, mb = masks(emotion=emotion, **side_a), masks(emotion=emotion, **side_b)
                k = min(top_k, ma.shape[1])
                res = bootstrap_agreement(ma, mb, k, paired=paired, n_boot=settings.bootstrap,
                                          seed=stream_seed(factor, a, b, emotion)[-1])
                rows.append({"factor": factor, "emotion": emotion, "a": a, "b": b, **res,
                             "chance_overlap": chance_overlap(k, ma.shape[1]), "top_k": k})
        return (pd.DataFrame(rows, columns=list(STABILITY_COLUMNS)),)

    (table,) = cached_tables(explainer.run, "stability", key, ("pairs",), compute)
    return table
