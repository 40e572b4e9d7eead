"""Paired statistics across seeds: does a pruned model keep the all-landmark model's accuracy, and
does the ranking's subset beat a random one? (Same seed = same split, so the pairs are matched.)"""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd

from emolib.vocab import ALL_LANDMARKS, SELECTION_CONTROLS, VARIANT_LABELS

# Below this many non-zero paired differences the Wilcoxon signed-rank test cannot reach
# p < 0.05 two-sided (its smallest exact p-value is 2 / 2**n: 0.0625 at n = 5, 0.031 at n = 6),
# so the paired t-test is the primary test there.
MIN_WILCOXON_PAIRS = 6



def paired_test(a: Sequence[float], b: Sequence[float]) -> dict:
    """Compare paired samples ``a`` and ``b`` (same seeds, same splits): is ``a`` better?

    Both tests are two-sided; the sign of ``mean_difference`` says which side won. The primary
    test is the Wilcoxon signed-rank test when at least :data:`MIN_WILCOXON_PAIRS` differences
    are non-zero (it assumes no normality), otherwise the paired t-test.

    Args:
        a: the candidate's scores, one per seed.
        b: the reference's scores, same order.

    Returns:
        n_pairs, mean_a, mean_b, mean_difference (a - b), sd_difference (ddof=1), cohens_dz
        (mean / sd of the differences; NaN when undefined), ci_low and ci_high (the t-based 95%
        confidence interval of the mean difference; NaN below 2 pairs), wilcoxon_statistic, wilcoxon_p,
        ttest_statistic, ttest_p, primary_test (``wilcoxon``, ``t-test`` or ``none``), p_value
        (the primary test's) and note.

    Raises:
        ValueError: ``a`` and ``b`` differ in length.
    """
    from scipy import stats

    a = np.asarray(a, dtype=float)
    b = np.asarray(b, dtype=float)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.size} and {b.size}")
    # Accuracies are ratios of small counts: round away float noise (0.9 - 0.8 != 0.8 - 0.7),
    # which would otherwise make constant differences look variable and ties look non-zero.
    diff = np.round(a - b, 12)
    n = int(diff.size)
    nonzero = int(np.count_nonzero(diff))
    out = {"n_pairs": n, "mean_a": float(a.mean()) if n else np.nan, "mean_b": float(b.mean()) if n else np.nan,
           "mean_difference": float(diff.mean()) if n else np.nan,
           "sd_difference": float(np.round(diff.std(ddof=1), 12)) if n > 1 else np.nan,
           "cohens_dz": np.nan, "ci_low": np.nan, "ci_high": np.nan, "wilcoxon_statistic": np.nan, "wilcoxon_p": np.nan,
           "ttest_statistic": np.nan, "ttest_p": np.nan, "primary_test": "none", "p_value": np.nan, "note": ""}
    notes = []
    sd = out["sd_difference"]
    if n > 1:
        half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
        out["ci_low"], out["ci_high"] = out["mean_difference"] - half, out["mean_difference"] + half
    if n > 1 and sd > 1e-12:
        out["cohens_dz"] = out["mean_difference"] / sd
        t = stats.ttest_rel(a, b)
        out["ttest_statistic"], out["ttest_p"] = float(t.statistic), float(t.pvalue)
    elif n > 1:
        notes.append("differences constant: t-test and d_z undefined")
    else:
        notes.append("fewer than 2 pairs: no test")
    if nonzero >= MIN_WILCOXON_PAIRS:
        w = stats.wilcoxon(a, b, alternative="two-sided")
        out["wilcoxon_statistic"], out["wilcoxon_p"] = float(w.statistic), float(w.pvalue)
        out["primary_test"], out["p_value"] = "wilcoxon", out["wilcoxon_p"]
    else:
        if n > 1:
            notes.append(f"{nonzero} non-zero differences: too few for Wilcoxon (needs {MIN_WILCOXON_PAIRS})")
        if not math.isnan(out["ttest_p"]):
            out["primary_test"], out["p_value"] = "t-test", out["ttest_p"]
    out["note"] = "; ".join(notes)
    return out


def holm_adjust(p_values: Sequence[float]) -> np.ndarray:
    """Holm's step-down adjustment of a family of p-values (NaN stays NaN, not counted).

    Args:
        p_values: raw p-values.

    Returns:
        Adjusted p-values, same order.
    """
    p = np.asarray(p_values, dtype=float)
    out = np.full_like(p, np.nan)
    idx = np.where(~np.isnan(p))[0]
    m = idx.size
    if m == 0:
        return out
    order = idx[np.argsort(p[idx])]
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def study_statistics(runs: pd.DataFrame, *, full_k: int, metric: str = "accuracy") -> pd.DataFrame:
    """Paired comparisons across seeds, per variant, emotion and K.

    ``k_vs_all``: a pruned model (each selection rule) against the same seed's all-landmark
    model. ``ig_vs_random``: the ranking's subset against the random subset, same K and seed;
    ``roar_vs_random``: every landmark but the ranking's top K against every landmark but K random
    ones (a faithful ranking loses more: a negative difference), and likewise for any rule of
    :data:`~emolib.vocab.SELECTION_CONTROLS`.
    Pairs are matched on the seed (same seed = same split); seeds missing on either side drop
    out. p-values are Holm-adjusted within each (comparison, variant) family (``p_holm``).

    Args:
        runs: one row per model (training rows with selection ``all``, pruning rows).
        full_k: the number of landmarks of the full set.
        metric: the score compared.

    Returns:
        One row per comparison: comparison, variant, emotion, n_landmarks, selection, reference,
        metric, then the columns of :func:`paired_test` and p_holm.
    """
    rows = []
    keys = ["variant", "emotion", "n_landmarks", "selection"]
    deduped = runs.drop_duplicates(subset=keys + ["seed"], keep="last")
    # (variant, emotion, K, selection) -> the metric per seed
    scores = {key: part.set_index("seed")[metric] for key, part in deduped.groupby(keys, sort=True)}
    for (variant, emotion, k, selection), cand in scores.items():
        if selection == ALL_LANDMARKS:
            continue
        refs = [("k_vs_all", (variant, emotion, full_k, ALL_LANDMARKS), f"all {full_k}")]
        if selection in SELECTION_CONTROLS:
            refs.append((f"{selection}_vs_random", (variant, emotion, k, SELECTION_CONTROLS[selection]), "random"))
        for comparison, ref_key, ref_label in refs:
            if ref_key not in scores:
                continue
            ref = scores[ref_key]
            seeds = sorted(set(cand.index) & set(ref.index))
            result = paired_test(cand.loc[seeds].to_numpy(), ref.loc[seeds].to_numpy())
            rows.append({"comparison": comparison, "variant": variant, "emotion": emotion, "n_landmarks": int(k),
                         "selection": selection, "reference": ref_label, "metric": metric, **result})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["p_holm"] = np.nan
    for _, idx in table.groupby(["comparison", "variant"]).groups.items():
        table.loc[idx, "p_holm"] = holm_adjust(table.loc[idx, "p_value"].to_numpy())
    order = {"k_vs_all": 0, "ig_vs_random": 1, "roar_vs_random": 2}
    table["_order"] = table["comparison"].map(order).fillna(3)
    table = table.sort_values(["_order", "variant", "emotion", "n_landmarks", "selection"],
                              ascending=[True, True, True, False, True]).drop(columns="_order")
    return table.reset_index(drop=True)


def statistics_display(statistics: pd.DataFrame, digits: int = 3) -> pd.DataFrame:
    """A compact, readable view of :func:`study_statistics` for reports (the CSV keeps it all).

    Args:
        statistics: from :func:`study_statistics`.
        digits: decimals of means and differences.

    Returns:
        Index (variant, emotion, comparison) with the comparison spelt out ("IG 32 − all 468");
        columns n, candidate, reference, difference, d_z, test, p, p (Holm), as text.
    """
    def num(v, d=digits) -> str:
        return "–" if pd.isna(v) else f"{v:.{d}f}"

    labels = {"ig": "IG", "random": "random", "roar": "ROAR (all but IG top)", "roar_random": "all but random"}
    rows = []
    for _, r in statistics.iterrows():
        cand = f"{labels.get(r['selection'], r['selection'])} {r['n_landmarks']}"
        ref = r["reference"] if r["comparison"] == "k_vs_all" else f"{r['reference']} {r['n_landmarks']}"
        rows.append({"variant": VARIANT_LABELS.get(r["variant"], r["variant"]), "emotion": r["emotion"],
                     "comparison": f"{cand} − {ref}", "n": int(r["n_pairs"]), "candidate": num(r["mean_a"]),
                     "reference": num(r["mean_b"]), "difference": f"{r['mean_difference']:+.{digits}f}",
                     "d_z": num(r["cohens_dz"], 2), "test": r["primary_test"], "p": num(r["p_value"]),
                     "p (Holm)": num(r["p_holm"])})
    return pd.DataFrame(rows).set_index(["variant", "emotion", "comparison"])

