"""Stage 03's diagnostics: what the notebook shows beside the ranking, and the check of its outputs.

How the five per-baseline masks agree, how two rankings (T-EMO and R-EMO) agree, the top
landmarks per emotion, and :func:`check_global_importance`, run at the end of the notebook.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np
import pandas as pd

from emolib.errors import DataError
from emolib.explain.typical import load_typical
from emolib.vocab import ALL_LANDMARKS, PAPER_VARIANT, TYPICAL_COLUMNS

if TYPE_CHECKING:
    from emolib.config import Params
    from emolib.explain.global_importance import GlobalImportance
    from emolib.run_folder import RunFolder


def top_landmarks_table(ranking: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The ``n`` most important landmarks of each emotion.

    Args:
        ranking: the landmark_ranking table.
        n: how many ranks.

    Returns:
        Index rank, one column per emotion, cells "id (region)".
    """
    top = ranking[ranking["rank"] <= n].assign(
        cell=lambda t: t["landmark"].astype(str) + " (" + t["region"].astype(str) + ")")
    return top.pivot(index="rank", columns="emotion", values="cell")


def baseline_agreement(per_baseline: np.ndarray) -> np.ndarray:
    """Spearman rank correlation between the per-baseline masks.

    Args:
        per_baseline: (B, L) one mask per baseline.

    Returns:
        (B, B) correlation matrix.
    """
    from scipy.stats import spearmanr

    per_baseline = np.asarray(per_baseline, dtype=np.float64)
    if per_baseline.shape[0] < 2:
        return np.ones((per_baseline.shape[0],) * 2)
    rho = spearmanr(per_baseline, axis=1).statistic
    return np.atleast_2d(np.asarray(rho, dtype=np.float64))


def agreement_table(masks: Mapping[str, Mapping[str, np.ndarray]]) -> pd.DataFrame:
    """Per emotion: mean, min and max Spearman correlation over the pairs of baselines.

    Args:
        masks: emotion -> its stored masks (``per_baseline`` is used).

    Returns:
        Columns emotion, mean_spearman, min_spearman, max_spearman.
    """
    rows = []
    for e, m in masks.items():
        rho = baseline_agreement(m["per_baseline"])
        off = rho[~np.eye(len(rho), dtype=bool)]
        rows.append({"emotion": e, "mean_spearman": float(off.mean()), "min_spearman": float(off.min()),
                     "max_spearman": float(off.max())})
    return pd.DataFrame(rows)


def compare_rankings(a: GlobalImportance, b: GlobalImportance, top: int = 64) -> pd.DataFrame:
    """How alike two global importances are (T-EMO against R-EMO, say), per emotion.

    Args:
        a, b: two results over the same landmarks.
        top: the size of the top sets compared.

    Returns:
        emotion, spearman (rank correlation of the global masks), top_overlap (landmarks the two
        top-``top`` sets share) and chance_overlap (expected for two random sets).
    """
    from scipy.stats import spearmanr

    rows = []
    for e in a.masks:
        if e not in b.masks:
            continue
        ma, mb = a.masks[e], b.masks[e]
        if not np.array_equal(ma["landmark_ids"], mb["landmark_ids"]):
            raise ValueError(f"{e}: the two results rank different landmark sets")
        n_lm = len(ma["landmark_ids"])
        k = min(top, n_lm)
        shared = len(set(a.order(e)[:k].tolist()) & set(b.order(e)[:k].tolist()))
        rows.append({"emotion": e, "spearman": float(spearmanr(ma["global"], mb["global"]).statistic),
                     f"top{top}_overlap": shared, "chance_overlap": k * k / n_lm})
    return pd.DataFrame(rows)


def check_global_importance(run: RunFolder, params: Params, variant: str = PAPER_VARIANT,
                            emotions: Sequence[str] | None = None) -> None:
    """Check what stage 03 wrote: every file present, shapes, no NaN, rankings complete.

    Args:
        run: the RunFolder.
        params: the run's parameters.
        variant: ``t-emo`` or ``r-emo``.
        emotions: the emotions to check (default: all of ``params.emotions``).

    Raises:
        DataError: naming the file and what is wrong.
    """
    emotions = list(emotions) if emotions is not None else list(params.emotions)
    n_base = len(params.emotions) - 1
    n_lm = None
    for e in emotions:
        path = run.attribution(e, variant)
        if not path.is_file():
            raise DataError(f"{path}: missing")
        m = run.read_masks(e, variant)
        for key in ("per_baseline", "baseline_emotions", "global", "landmark_ids", "n_samples"):
            if key not in m:
                raise DataError(f"{path}: no array {key!r}")
        n_lm = len(m["landmark_ids"])
        if m["per_baseline"].shape != (n_base, n_lm) or m["global"].shape != (n_lm,):
            raise DataError(f"{path}: per_baseline {m['per_baseline'].shape} / global {m['global'].shape}; "
                              f"expected ({n_base}, {n_lm}) / ({n_lm},)")
        if sorted(m["baseline_emotions"].tolist()) != sorted(x for x in params.emotions if x != e):
            raise DataError(f"{path}: baselines {m['baseline_emotions'].tolist()} are not the other emotions")
        for key in ("per_baseline", "global", "gaps", "deltas"):
            if key in m and not np.isfinite(m[key]).all():
                raise DataError(f"{path}: {key} holds NaN or infinite values")
        if (m["per_baseline"] < 0).any() or int(m["n_samples"]) < 1:
            raise DataError(f"{path}: negative masks or no explained sample")
        if not np.allclose(m["global"], m["per_baseline"].mean(axis=0)):
            raise DataError(f"{path}: global is not the mean of the per-baseline masks")
    ranking_path, completeness_path = run.ranking(variant), run.completeness(variant)
    typical_path = run.typical(variant)[0]
    ranking = pd.read_csv(ranking_path)
    for e in emotions:
        rows = ranking[ranking["emotion"] == e]
        if sorted(rows["rank"]) != list(range(1, n_lm + 1)) or rows["landmark"].nunique() != n_lm:
            raise DataError(f"{ranking_path.name}: the ranking of {e} is not a permutation "
                              f"of its {n_lm} landmarks")
        if not rows.sort_values("rank")["importance"].is_monotonic_decreasing:
            raise DataError(f"{ranking_path.name}: importance of {e} does not decrease with rank")
        if rows["region"].isna().any():
            raise DataError(f"{ranking_path.name}: {e} has landmarks without a region")
    comp = pd.read_csv(completeness_path)
    if len(comp[comp["emotion"].isin(emotions)]) != len(emotions) * n_base:
        raise DataError(f"{completeness_path.name}: expected {len(emotions) * n_base} rows")
    if not np.isfinite(comp[["mean_abs_gap", "max_abs_gap", "mean_abs_delta"]].to_numpy()).all():
        raise DataError(f"{completeness_path.name}: holds NaN")
    typical = pd.read_csv(typical_path)
    if sorted(typical["emotion"]) != sorted(params.emotions):
        raise DataError(f"{typical_path.name}: expected one typical video per emotion")
    if list(typical.columns) != list(TYPICAL_COLUMNS):
        raise DataError(f"{typical_path.name}: columns {list(typical.columns)}; expected {list(TYPICAL_COLUMNS)}")
    if set(typical["strategy"]) != {params.ig.typical}:
        raise DataError(f"{typical_path.name}: strategy {sorted(set(typical['strategy']))} is not this run's "
                          f"ig.typical {params.ig.typical!r}")
    baselines = load_typical(run, variant)
    for e, b in baselines.items():
        if len(b.rows) == 0 or int(np.min(b.rows)) < 0:
            raise DataError(f"{typical_path.name}: the baseline of {e} has no valid rows")


def variant_available(run: RunFolder, params: Params, variant: str) -> bool:
    """Whether stage 02 left the full-landmark models of ``variant`` (seed ``ig_seed``) for every
    emotion, so that the variant can be explained.

    Args:
        run: the RunFolder.
        params: the run's parameters.
        variant: ``t-emo`` or ``r-emo``.

    Returns:
        True when every model file exists.
    """
    n_lm = run.read_landmarks().n_landmarks
    return all(run.model(variant, e, n_lm, ALL_LANDMARKS, params.ig_seed).is_file() for e in params.emotions)

