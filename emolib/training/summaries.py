"""Stage 02's summaries for its notebook: the partitions, and accuracy beside the baselines and the paper."""
from __future__ import annotations

from typing import Optional

import pandas as pd

from emolib.vocab import EMOTIONS, VARIANTS


def comparison_table(table: pd.DataFrame, svm: Optional[pd.DataFrame] = None, metric: str = "accuracy",
                     paper: bool = True) -> pd.DataFrame:
    """Per emotion, "mean ± std" over seeds of T-EMO, R-EMO, the majority answer and the SVMs,
    with the paper's CK+ accuracies beside them (accuracy only).

    Args:
        table: results rows (one K, one selection).
        svm: results/svm.csv rows (optional).
        metric: accuracy, balanced_accuracy or f1.
        paper: add the paper's columns (when ``metric`` is accuracy).

    Returns:
        One row per emotion, string cells.
    """
    from emolib.paper import ACCURACY, SVM_ACCURACY

    def fmt(values: pd.Series) -> str:
        return f"{values.mean():.3f} ± {values.std():.3f}" if len(values) > 1 else f"{values.mean():.3f}"

    rows = []
    for e in [x for x in EMOTIONS if x in set(table["emotion"])]:
        r = {"emotion": e}
        for variant in VARIANTS:
            sel = table[(table["variant"] == variant) & (table["emotion"] == e)]
            if not sel.empty:
                r[variant.upper()] = fmt(sel[metric])
        maj = table.loc[table["emotion"] == e, "majority_accuracy"]
        r["majority"] = fmt(maj) if metric == "accuracy" else "0.500"
        if svm is not None and not svm.empty:
            for kernel in ("linear", "rbf"):
                sel = svm[(svm["kernel"] == kernel) & (svm["emotion"] == e)]
                if not sel.empty:
                    r[f"{kernel} SVM"] = fmt(sel[metric])
        if paper and metric == "accuracy":
            for variant in VARIANTS:
                mean, std = ACCURACY[variant][e][0]
                r[f"paper {variant.upper()} (CK+)"] = f"{mean:.3f} ± {std:.3f}"
            for kernel in ("linear", "rbf"):
                r[f"paper {kernel} SVM (CK+)"] = f"{SVM_ACCURACY[kernel][e]:.2f}"
        rows.append(r)
    return pd.DataFrame(rows).set_index("emotion")

