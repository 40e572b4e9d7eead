"""Does the explanation hold up? Stage 03's checks and stage 04's retrainings as paired tests over
seeds, one forest of differences per emotion, and one sentence of verdict per emotion written from
the numbers.

Every measure is put as "the ranking minus its control", paired on the seed (same seed: same
split, same model): KAR (keep the top K, :mod:`emolib.pruning`) and ROAR (remove the top K) against
random subsets of the same K, the areas under the deletion and insertion curves against random
orders, and the randomisation check (the correlation of the fully randomised model's ranking with
the trained model's). Which sign supports the ranking is part of each row (:data:`GOOD_SIGN`).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import pandas as pd

from emolib.results.statistics import holm_adjust, paired_test
from emolib.vocab import PAPER_VARIANT

# The sign of "ranking minus control" that supports the ranking, per comparison.
GOOD_SIGN: dict[str, int] = {"k_vs_all": +1, "ig_vs_random": +1, "roar_vs_random": -1,
                             "deletion_vs_random": -1, "insertion_vs_random": +1, "randomisation": -1}
# The randomisation check passes when the fully randomised model's ranking keeps less than this
# Spearman correlation with the trained model's (upper end of its 95% interval over seeds): the
# ranking then depends on what the model learned more than on the input alone. A convention,
# fixed here before looking at any run, not fitted.
RANDOMISATION_PASS = 0.5
ALPHA = 0.05
FAITHFULNESS: tuple[str, ...] = ("ig_vs_random", "roar_vs_random", "deletion_vs_random", "insertion_vs_random",
                                 "randomisation")
FOREST_COLUMNS: tuple[str, ...] = ("emotion", "comparison", "label", "n_landmarks", "k", "estimate", "ci_low",
                                   "ci_high", "p_value", "p_holm", "n_pairs", "good_sign", "outcome")


def checks_statistics(deletion: Optional[pd.DataFrame], randomisation: Optional[pd.DataFrame]) -> pd.DataFrame:
    """Paired tests over seeds of stage 03's checks, per emotion (Holm within each comparison).

    ``deletion_vs_random`` / ``insertion_vs_random``: the area under the curve in the ranking's
    order minus the mean area in random orders, paired on the seed. ``randomisation``: the
    Spearman correlation of the fully randomised model's ranking with the trained model's, one
    value per seed, tested against 0.

    Args:
        deletion: ``results/deletion.csv`` (or None when not run).
        randomisation: ``results/randomisation.csv`` (or None).

    Returns:
        One row per (comparison, emotion): comparison, emotion, metric, the columns of
        :func:`~emolib.results.statistics.paired_test`, p_holm.
    """
    rows = []
    if deletion is not None and len(deletion):
        for curve in ("deletion", "insertion"):
            part = deletion[deletion["curve"] == curve]
            for emotion, rows_e in part.groupby("emotion", sort=False):
                wide = rows_e.pivot_table(index="seed", columns="order", values="area").dropna()
                if {"ig", "random"} <= set(wide.columns):
                    rows.append({"comparison": f"{curve}_vs_random", "emotion": emotion, "metric": f"{curve} area",
                                 **paired_test(wide["ig"].to_numpy(), wide["random"].to_numpy())})
    if randomisation is not None and len(randomisation):
        full = randomisation[randomisation["level"] == randomisation.groupby("emotion")["level"].transform("max")]
        for emotion, rows_e in full.groupby("emotion", sort=False):
            rho = rows_e["spearman_rho"].dropna().to_numpy()
            rows.append({"comparison": "randomisation", "emotion": emotion, "metric": "spearman_rho",
                         **paired_test(rho, np.zeros_like(rho))})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["p_holm"] = np.nan
    for _, idx in table.groupby("comparison").groups.items():
        table.loc[idx, "p_holm"] = holm_adjust(table.loc[idx, "p_value"].to_numpy())
    return table


def _outcome(comparison: str, estimate: float, low: float, high: float, p: float) -> str:
    """``supports``, ``against`` or ``inconclusive`` (``keeps``/``loses`` for K against all)."""
    if any(np.isnan(v) for v in (estimate, low, high)):
        return "inconclusive"
    if comparison == "randomisation":
        return "supports" if high < RANDOMISATION_PASS else ("against" if low >= RANDOMISATION_PASS else "inconclusive")
    significant = (p < ALPHA) if not np.isnan(p) else (low > 0 or high < 0)
    sign = GOOD_SIGN[comparison] * np.sign(estimate)
    if comparison == "k_vs_all":
        return "loses" if significant and sign < 0 else ("gains" if significant and sign > 0 else "keeps")
    if not significant:
        return "inconclusive"
    return "supports" if sign > 0 else "against"


def forest_table(statistics: pd.DataFrame, checks: pd.DataFrame, emotions: Sequence[str], *,
                 full_k: int, variant: str = PAPER_VARIANT) -> pd.DataFrame:
    """The rows of the forest plots: for each emotion, every paired difference with its 95% CI.

    Args:
        statistics: :func:`~emolib.results.statistics.study_statistics` (K vs all, IG vs random,
            ROAR vs random).
        checks: :func:`checks_statistics`.
        emotions: the emotions, in order.
        full_k: the number of landmarks of the full set.
        variant: the variant of the retraining rows (stage 03's checks explain T-EMO).

    Returns:
        :data:`FOREST_COLUMNS`; ``outcome`` is ``supports``, ``against`` or ``inconclusive`` for a
        faithfulness measure (Holm-adjusted p < 0.05 in the supporting or the other direction;
        the randomisation check against :data:`RANDOMISATION_PASS`), ``keeps``, ``loses`` or
        ``gains`` for K against all.
    """
    rows = []

    def add(emotion, comparison, label, n, r, k=np.nan):
        p = r.get("p_holm", np.nan)
        p = float(p) if p is not None and not pd.isna(p) else np.nan
        rows.append({"emotion": emotion, "comparison": comparison, "label": label, "n_landmarks": n, "k": k,
                     "estimate": r["mean_difference"] if comparison != "randomisation" else r["mean_a"],
                     "ci_low": r["ci_low"], "ci_high": r["ci_high"], "p_value": r["p_value"], "p_holm": p,
                     "n_pairs": int(r["n_pairs"]), "good_sign": GOOD_SIGN[comparison]})

    st = statistics[statistics["variant"] == variant] if len(statistics) else statistics
    for emotion in emotions:
        part = st[st["emotion"] == emotion] if len(st) else st
        for _, r in part[(part["comparison"] == "k_vs_all") & (part["selection"] == "ig")].iterrows():
            add(emotion, "k_vs_all", f"IG top {r['n_landmarks']} − all {full_k} (accuracy)", int(r["n_landmarks"]), r,
                int(r["n_landmarks"]))
        for _, r in part[part["comparison"] == "ig_vs_random"].iterrows():
            add(emotion, "ig_vs_random", f"KAR: IG top {r['n_landmarks']} − random {r['n_landmarks']} (accuracy)",
                int(r["n_landmarks"]), r, int(r["n_landmarks"]))
        for _, r in part[part["comparison"] == "roar_vs_random"].iterrows():
            removed = full_k - int(r["n_landmarks"])
            add(emotion, "roar_vs_random", f"ROAR: without IG top {removed} − without random {removed} (accuracy)",
                int(r["n_landmarks"]), r, removed)
        cpart = checks[checks["emotion"] == emotion] if len(checks) else checks
        labels = {"deletion_vs_random": "deletion area: IG order − random orders",
                  "insertion_vs_random": "insertion area: IG order − random orders",
                  "randomisation": "randomisation: ρ(trained, randomised ranking)"}
        for comparison, label in labels.items():
            for _, r in (cpart[cpart["comparison"] == comparison] if len(cpart) else cpart).iterrows():
                add(emotion, comparison, label, full_k, r)
    table = pd.DataFrame(rows, columns=[c for c in FOREST_COLUMNS if c != "outcome"])
    table["outcome"] = [_outcome(r.comparison, float(r.estimate), float(r.ci_low), float(r.ci_high), float(r.p_holm))
                        for r in table.itertuples()]
    return table[list(FOREST_COLUMNS)]


def _fmt(r) -> str:
    p = "" if np.isnan(r.p_holm) else f", p(Holm) {r.p_holm:.3f}"
    return f"{r.estimate:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]{p}"


def verdict_sentences(forest: pd.DataFrame, emotions: Sequence[str]) -> pd.DataFrame:
    """One sentence per emotion, written from the forest's numbers (nothing else).

    Args:
        forest: :func:`forest_table`.
        emotions: the emotions, in order.

    Returns:
        Columns emotion, supports, against, inconclusive (counts over the faithfulness measures),
        tested, verdict (the sentence).
    """
    out = []
    for emotion in emotions:
        part = forest[forest["emotion"] == emotion]
        faith = part[part["comparison"].isin(FAITHFULNESS)]
        counts = faith["outcome"].value_counts()
        s, a, i = (int(counts.get(k, 0)) for k in ("supports", "against", "inconclusive"))
        clauses = []
        kar = part[part["comparison"] == "ig_vs_random"]
        if len(kar):
            wins = kar[kar["outcome"] == "supports"]
            best = kar.loc[kar["estimate"].idxmax()]
            clauses.append(f"keeping IG's top K beats K random landmarks at {len(wins)} of {len(kar)} K"
                           + (f" ({', '.join(str(int(k)) for k in wins['k'])})" if len(wins) else "")
                           + f" (largest difference at K = {int(best.k)}: {_fmt(best)})")
        for r in part[part["comparison"] == "roar_vs_random"].itertuples():
            clauses.append(f"removing IG's top {int(r.k)} and retraining, against removing {int(r.k)} random "
                           f"landmarks: {_fmt(r)} ({r.outcome})")
        for comparison, what in (("deletion_vs_random", "deleting landmarks in IG's order, against random orders "
                                                        "(area under the probability)"),
                                 ("insertion_vs_random", "inserting landmarks in IG's order, against random orders")):
            for r in part[part["comparison"] == comparison].itertuples():
                clauses.append(f"{what}: {_fmt(r)} ({r.outcome})")
        for r in part[part["comparison"] == "randomisation"].itertuples():
            verb = {"supports": "changes", "against": "survives", "inconclusive": "may or may not survive"}[r.outcome]
            clauses.append(f"the ranking {verb} when the model's weights are randomised "
                           f"(Spearman ρ {r.estimate:.2f} [{r.ci_low:.2f}, {r.ci_high:.2f}])")
        lost = part[(part["comparison"] == "k_vs_all") & (part["outcome"] == "loses")]
        k_all = part[part["comparison"] == "k_vs_all"]
        if len(k_all):
            clauses.append(f"the pruned model loses accuracy against all landmarks at {len(lost)} of {len(k_all)} K")
        tested = s + a + i
        head = (f"{emotion.capitalize()}: {s} of {tested} faithfulness tests support the ranking, {a} go against "
                f"it, {i} are inconclusive")
        out.append({"emotion": emotion, "supports": s, "against": a, "inconclusive": i, "tested": tested,
                    "verdict": head + (": " + "; ".join(clauses) if clauses else "") + "."})
    return pd.DataFrame(out, columns=["emotion", "supports", "against", "inconclusive", "tested", "verdict"])


def verdicts_markdown(verdicts: pd.DataFrame, forest: pd.DataFrame, run_name: str) -> str:
    """``results/verdicts.md``: the sentences, then the forest's numbers as a table."""
    lines = [f"# Does the explanation hold up? Run {run_name}", "",
             "Paired over seeds (same seed: same split); differences are the ranking minus its control, "
             "with 95% t-intervals; p-values Holm-adjusted across emotions within each measure. "
             f"The randomisation check passes when the upper end of ρ's interval lies below {RANDOMISATION_PASS}.",
             ""]
    lines += [f"- {v}" for v in verdicts["verdict"]]
    lines += ["", "| emotion | measure | estimate | 95% CI | p (Holm) | n | outcome |", "|---|---|---|---|---|---|---|"]
    for r in forest.itertuples():
        p = "–" if np.isnan(r.p_holm) else f"{r.p_holm:.3f}"
        lines.append(f"| {r.emotion} | {r.label} | {r.estimate:+.3f} | [{r.ci_low:+.3f}, {r.ci_high:+.3f}] | {p} | "
                     f"{r.n_pairs} | {r.outcome} |")
    return "\n".join(lines) + "\n"
