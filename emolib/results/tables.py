"""The study's tables: accuracy over seeds (the paper's Tables 6 and 7), the hyperparameters
(Tables 1 to 5), the SVM baselines beside the networks, and what training cost."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Sequence

import numpy as np
import pandas as pd

from emolib import paper
from emolib.vocab import ALL_LANDMARKS, VARIANT_LABELS, VARIANTS

if TYPE_CHECKING:
    from emolib.config import Params
    from emolib.results.study import Study

TABLE_NUMBER = {"t-emo": 6, "r-emo": 7}


# The paper numbers its hyperparameter tables by K.
HYPER_TABLE_NUMBER = {234: 1, 128: 2, 64: 3, 32: 4, 16: 5}


HYPER_LABELS = {"filters": "Convolutional Filters (F)", "lstm_units": "LSTM Units (Q)", "fc_units": "FC1 Neurons (R)"}



def accuracy_summary(runs: pd.DataFrame, metric: str = "accuracy") -> pd.DataFrame:
    """Mean and standard deviation of ``metric`` over seeds.

    Args:
        runs: one row per model (columns variant, emotion, n_landmarks, selection, seed, metric).
        metric: the column to summarise.

    Returns:
        Columns variant, emotion, n_landmarks, selection, n_seeds, mean, std (sample standard
        deviation, ddof=1; NaN for one seed), sorted by variant, emotion, K descending.
    """
    keys = ["variant", "emotion", "n_landmarks", "selection"]
    grouped = runs.groupby(keys)[metric]
    out = pd.DataFrame({"n_seeds": grouped.count(), "mean": grouped.mean(), "std": grouped.std(ddof=1)}).reset_index()
    return out.sort_values(["variant", "emotion", "n_landmarks", "selection"],
                           ascending=[True, True, False, True]).reset_index(drop=True)


def paper_accuracy() -> pd.DataFrame:
    """The paper's Tables 6 and 7 as a long table.

    Returns:
        Columns variant, emotion, n_landmarks, paper_mean, paper_std.
    """
    rows = [(v, e, k, m, s) for v, table in paper.ACCURACY.items() for e, cells in table.items()
            for k, (m, s) in zip(paper.K_VALUES, cells)]
    return pd.DataFrame(rows, columns=["variant", "emotion", "n_landmarks", "paper_mean", "paper_std"])


def format_mean_std(mean: float, std: float, digits: int = 3) -> str:
    """``0.924 ± 0.016``; the mean alone when the std is undefined (one seed); ``–`` when empty.

    Args:
        mean: the mean (NaN: no value).
        std: the standard deviation (NaN: undefined).
        digits: decimals.

    Returns:
        The formatted cell.
    """
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def accuracy_table(summary: pd.DataFrame, variant: str, emotions: Sequence[str], k_values: Sequence[int],
                   *, full_k: int, selection: str = "ig", with_paper: bool = False,
                   digits: int = 3) -> pd.DataFrame:
    """Table 6 (T-EMO) or 7 (R-EMO) in the paper's layout: emotions down, K across.

    Args:
        summary: from :func:`accuracy_summary`.
        variant: ``t-emo`` or ``r-emo``.
        emotions: row order.
        k_values: the pruned K values (the full set ``full_k`` comes first, from stage 02).
        full_k: the number of landmarks of the full set.
        selection: the rule whose rows fill the pruned columns.
        with_paper: add the paper's value in each cell ("ours (paper x ± y)").
        digits: decimals.

    Returns:
        String cells ``mean ± std``; index ``Emotion`` (capitalised), columns the K values as text.
    """
    ks = [full_k] + [k for k in k_values if k != full_k]
    paper_rows = paper_accuracy().set_index(["variant", "emotion", "n_landmarks"])
    cells = {}
    for emotion in emotions:
        row = {}
        for k in ks:
            sel = ALL_LANDMARKS if k == full_k else selection
            hit = summary[(summary["variant"] == variant) & (summary["emotion"] == emotion)
                          & (summary["n_landmarks"] == k) & (summary["selection"] == sel)]
            text = format_mean_std(float(hit["mean"].iloc[0]), float(hit["std"].iloc[0]), digits) if len(hit) else "–"
            if with_paper:
                key = (variant, emotion, k)
                ref = (format_mean_std(*paper_rows.loc[key, ["paper_mean", "paper_std"]].astype(float), digits)
                       if key in paper_rows.index else "–")
                text = f"{text} (paper {ref})"
            row[str(k)] = text
        cells[emotion.capitalize()] = row
    table = pd.DataFrame.from_dict(cells, orient="index")
    table.index.name = "Emotion"
    return table


def chosen_hyperparameters(study: Study, params: Params, *, with_paper: bool = False) -> pd.DataFrame:
    """F, Q, R of the T-EMO models per emotion and K (R-EMO reuses them), as Tables 1 to 5.

    The values are those the models were trained with (read from the results rows, so the table
    is right whether or not a grid search ran); the grid search's validation accuracy of that
    choice is added from results/hyperparameters.csv, and the number of combinations it was
    chosen among from results/grid_search.csv, when they have them.

    Args:
        study: the loaded study.
        params: the run's parameters.
        with_paper: add the paper's F, Q, R (CK+ only makes sense).

    Returns:
        Columns n_landmarks, emotion, filters, lstm_units, fc_units, val_accuracy, grid_points
        (and paper_filters, paper_lstm_units, paper_fc_units); K descending, then emotion order.
    """
    runs = study.runs
    runs = runs[(runs["variant"] == VARIANTS[0]) & runs["selection"].isin([ALL_LANDMARKS, "ig"])]
    rows = []
    for k in [study.full_k] + list(params.pruning.k):
        for emotion in params.emotions:
            hit = runs[(runs["n_landmarks"] == k) & (runs["emotion"] == emotion)]
            if hit.empty:
                continue
            # One choice per (emotion, K) serves every seed; the mode guards against a stray row.
            f, q, r = (int(hit[c].mode().iloc[0]) for c in ("filters", "lstm_units", "fc_units"))
            row = {"n_landmarks": k, "emotion": emotion, "filters": f, "lstm_units": q, "fc_units": r,
                   "val_accuracy": np.nan, "grid_points": 0}

            if study.hyperparameters is not None:
                match = _rows_of_choice(study.hyperparameters, emotion, k, study.full_k, (f, q, r))
                if len(match):
                    row["val_accuracy"] = float(match["val_accuracy"].max())
            if study.grid is not None:
                grid = study.grid[(study.grid["emotion"] == emotion) & (study.grid["n_landmarks"] == k)]
                row["grid_points"] = int(len(grid if k == study.full_k else grid[grid["selection"] == "ig"]))
            if with_paper:
                ref = paper.HYPERPARAMETERS.get(k, {}).get(emotion)
                row.update(paper_filters=ref[0] if ref else np.nan, paper_lstm_units=ref[1] if ref else np.nan,
                           paper_fc_units=ref[2] if ref else np.nan)
            rows.append(row)
    return pd.DataFrame(rows)


def _rows_of_choice(table: pd.DataFrame, emotion: str, k: int, full_k: int,
                    hyper: tuple[int, int, int]) -> pd.DataFrame:
    """The rows of a grid-search table for one (emotion, K) and one (F, Q, R)."""
    f, q, r = hyper
    table = table[(table["emotion"] == emotion) & (table["n_landmarks"] == k)]
    if k != full_k:  # the full set has one selection, whatever stage 02 names it
        table = table[table["selection"] == "ig"]
    return table[(table["filters"] == f) & (table["lstm_units"] == q) & (table["fc_units"] == r)]


def hyperparameter_table(chosen: pd.DataFrame, k: int) -> pd.DataFrame:
    """One of Tables 1 to 5 in the paper's layout: emotions down, F, Q, R across.

    Args:
        chosen: from :func:`chosen_hyperparameters`.
        k: the number of landmarks.

    Returns:
        Index ``Emotion``; columns the paper's headings (with ``(paper)`` columns when
        ``chosen`` has them) and the validation accuracy when known.
    """
    part = chosen[chosen["n_landmarks"] == k]
    table = pd.DataFrame(index=pd.Index([e.capitalize() for e in part["emotion"]], name="Emotion"))
    for col, label in HYPER_LABELS.items():
        table[label] = part[col].to_numpy()
        if f"paper_{col}" in part:
            table[f"{label} (paper)"] = [("–" if pd.isna(v) else str(int(v))) for v in part[f"paper_{col}"]]
    if part["val_accuracy"].notna().any():
        table["validation accuracy"] = [("–" if pd.isna(v) else f"{v:.3f}") for v in part["val_accuracy"]]
    return table


def hyperparameter_caption(k: int, full_k: int, grid_search: bool) -> str:
    """Caption of the hyperparameter table for ``k`` (names the paper's table where it has one)."""
    number = HYPER_TABLE_NUMBER.get(k)
    base = f"T-EMO hyperparameters with {k} input landmarks"
    if number:
        base = f"Table {number}: " + base
    if k == full_k:
        base += " (stage 02; the paper takes these from its reference [15])"
    if not grid_search:
        base += " (no grid search: the model section of the parameters for every emotion)"
    return base


def svm_table(study: Study, params: Params, digits: int = 3) -> pd.DataFrame:
    """Our SVM baselines, T-EMO and R-EMO beside them, and the SVM numbers the paper quotes.

    Args:
        study: the loaded study (``svm`` may be None when the SVMs were off).
        params: the run's parameters.
        digits: decimals.

    Returns:
        Index ``Emotion``; columns ``<kernel> SVM (ours)`` for each kernel run, ``T-EMO all``,
        ``T-EMO best K``, ``R-EMO all``, ``R-EMO best K`` (ours, mean ± std) and
        ``<kernel> SVM (quoted, CK+)`` from the paper.
    """
    summary = accuracy_summary(study.runs)
    table = pd.DataFrame(index=pd.Index([e.capitalize() for e in params.emotions], name="Emotion"))
    if study.svm is not None and len(study.svm):
        svm_summary = study.svm.groupby(["kernel", "emotion"])["accuracy"].agg(["mean", "std"])
        for kernel in sorted(study.svm["kernel"].unique()):
            table[f"{kernel} SVM (ours)"] = [
                format_mean_std(*svm_summary.loc[(kernel, e)].astype(float), digits)
                if (kernel, e) in svm_summary.index else "–" for e in params.emotions]
    for variant in VARIANTS:
        label = VARIANT_LABELS[variant]
        part = summary[summary["variant"] == variant]
        full, best = [], []
        for e in params.emotions:
            rows = part[part["emotion"] == e]
            all_row = rows[rows["selection"] == ALL_LANDMARKS]
            full.append(format_mean_std(float(all_row["mean"].iloc[0]), float(all_row["std"].iloc[0]), digits)
                        if len(all_row) else "–")
            pruned = rows[rows["selection"].isin([ALL_LANDMARKS, "ig"])]
            top = pruned.loc[pruned["mean"].idxmax()] if len(pruned) else None
            best.append("–" if top is None else
                        f"{format_mean_std(float(top['mean']), float(top['std']), digits)} "
                        f"(K={int(top['n_landmarks'])})")
        table[f"{label} all {study.full_k}"] = full
        table[f"{label} best K"] = best
    for kernel, values in paper.SVM_ACCURACY.items():
        table[f"{kernel} SVM (quoted, CK+)"] = [f"{values[e]:.2f}" if e in values else "–" for e in params.emotions]
    return table


def cost_summary(runs: pd.DataFrame) -> pd.DataFrame:
    """Training cost against K: time and parameters, T-EMO against R-EMO.

    Args:
        runs: one row per model.

    Returns:
        Per (variant, n_landmarks, selection): n_models, mean train_seconds,
        seconds_per_epoch, epochs, params, trainable_params.
    """
    keys = ["variant", "n_landmarks", "selection"]
    cols = ["train_seconds", "seconds_per_epoch", "epochs", "params", "trainable_params"]
    out = runs.groupby(keys)[cols].mean()
    out.insert(0, "n_models", runs.groupby(keys).size())
    return out.reset_index().sort_values(["variant", "n_landmarks", "selection"],
                                         ascending=[True, False, True]).reset_index(drop=True)

