"""Stage 05: the paper's tables from our runs, paired statistics, cost and region summaries.

Reads what stages 01 to 04 wrote (see :data:`REQUIRED_FILES`) and writes, under ``results/``:

    accuracy_summary.csv        mean, std, n per (variant, emotion, K, selection)
    table6_t-emo.csv/.md        Table 6 in the paper's layout (mean +- std per emotion and K)
    table7_r-emo.csv/.md        Table 7 (R-EMO)
    hyperparameters_chosen.csv  Tables 1 to 5 (F, Q, R per emotion and K) in one long table
    tables1-5_hyperparameters.md
    svm_baselines.csv/.md       our SVMs and the numbers the paper quotes, beside T-EMO / R-EMO
    statistics.csv              paired tests across seeds: "K beats all", "IG beats random"
    cost.csv                    training time and parameters against K
    region_importance.csv       importance and top-K share per facial region
    tables.md                   every Markdown table above, in one file

When the data is CK+ (``params.data.source == "ckplus"``) the paper's values stand beside ours;
on other data they would compare different datasets, so they are left out (the SVM numbers the
paper quotes are always shown, labelled as quoted CK+ numbers).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import pandas as pd

from emolib import paper
from emolib.config import Params
from emolib.errors import EmolibError
from emolib.io import write_csv, write_text
from emolib.pruning import RESULT_COLUMNS, VARIANTS, current_rows, read_results_csv
from emolib.regions import REGIONS
from emolib.run_folder import RunFolder

# What stage 05 reads, with the stage that writes it (for the error message when one is absent).
REQUIRED_FILES: dict[str, tuple[str, str]] = {
    "landmarks": ("data/landmarks.npz", "01_data_prep"),
    "training": ("results/training.csv", "02_training"),
    "svm": ("results/svm.csv", "02_training"),
    "hyperparameters": ("results/hyperparameters.csv", "02_training"),
    "ranking": ("results/landmark_ranking.csv", "03_global_ig"),
    "pruning": ("results/pruning.csv", "04_pruning"),
}
RANKING_COLUMNS = ("emotion", "rank", "landmark", "importance", "region")
SVM_COLUMNS = ("kernel", "emotion", "seed", "accuracy")
HYPER_COLUMNS = ("emotion", "n_landmarks", "selection", "filters", "lstm_units", "fc_units", "val_accuracy")
VARIANT_LABELS = {"t-emo": "T-EMO", "r-emo": "R-EMO"}
TABLE_NUMBER = {"t-emo": 6, "r-emo": 7}
# The paper numbers its hyperparameter tables by K.
HYPER_TABLE_NUMBER = {234: 1, 128: 2, 64: 3, 32: 4, 16: 5}
HYPER_LABELS = {"filters": "Convolutional Filters (F)", "lstm_units": "LSTM Units (Q)", "fc_units": "FC1 Neurons (R)"}
# Below this many non-zero paired differences the Wilcoxon signed-rank test cannot reach
# p < 0.05 two-sided (its smallest exact p-value is 2 / 2**n: 0.0625 at n = 5, 0.031 at n = 6),
# so the paired t-test is the primary test there.
MIN_WILCOXON_PAIRS = 6


def required_files(params: Params) -> dict[str, Path]:
    """The files stage 05 needs for these parameters, relative to the run folder.

    Args:
        params: the run's parameters (the SVM table is needed only when ``svm.enabled``; the
            grid-search table only when a grid search ran).

    Returns:
        name -> relative path.
    """
    names = ["landmarks", "training", "ranking", "pruning"]
    if params.svm.enabled:
        names.append("svm")
    if params.grid.enabled or params.pruning.grid_search:
        names.append("hyperparameters")
    return {n: Path(REQUIRED_FILES[n][0]) for n in names}


def require_stage_outputs(run: RunFolder, params: Params) -> dict[str, Path]:
    """Check that stages 01 to 04 left what stage 05 reads.

    Args:
        run: the run folder.
        params: the run's parameters.

    Returns:
        name -> absolute path of each required file.

    Raises:
        EmolibError: one or more files are absent; the message names each with its stage.
    """
    paths = {n: run.root / p for n, p in required_files(params).items()}
    missing = [f"{paths[n]} (written by stage {REQUIRED_FILES[n][1]})" for n in paths if not paths[n].is_file()]
    if missing:
        raise EmolibError("stage 05 needs the outputs of stages 01 to 04; missing:\n  " + "\n  ".join(missing))
    return paths


@dataclass
class Study:
    """Everything stage 05 reads, filtered to the run's parameters.

    Attributes:
        training: stage 02's rows (all landmarks), ``selection`` set to ``all``.
        pruning: stage 04's rows (K in ``pruning.k``).
        ranking: stage 03's ranking (emotion, rank, landmark, importance, region).
        svm: stage 02's SVM rows, or None when the SVMs were off.
        hyperparameters: the grid-search table, or None when no grid search ran.
        full_k: the number of landmarks of the full set (468 for MediaPipe).
        xy: (L, 2) mean landmark positions over the original (not mirrored) videos, for the
            face figures.
        landmark_ids: (L,) ids of the rows of ``xy``.
        ground_truth: emotion -> landmark ids each emotion moves, when the data knows (demo data).
        grid: every combination the grid searches tried (results/grid_search.csv), when present.
    """

    training: pd.DataFrame
    pruning: pd.DataFrame
    ranking: pd.DataFrame
    svm: Optional[pd.DataFrame]
    hyperparameters: Optional[pd.DataFrame]
    full_k: int
    xy: np.ndarray
    landmark_ids: np.ndarray
    ground_truth: Optional[dict[str, np.ndarray]] = None
    grid: Optional[pd.DataFrame] = None

    @property
    def runs(self) -> pd.DataFrame:
        """Training and pruning rows together: one row per trained model."""
        return pd.concat([self.training, self.pruning], ignore_index=True)

    def ranking_ids(self) -> dict[str, np.ndarray]:
        """Emotion -> landmark ids, most important first."""
        ordered = self.ranking.sort_values(["emotion", "rank"])
        return {e: g["landmark"].to_numpy(int) for e, g in ordered.groupby("emotion", sort=False)}


def load_study(run: RunFolder, params: Params) -> Study:
    """Read every input of stage 05 and check it covers what the parameters ask for.

    Args:
        run: the run folder.
        params: the run's parameters.

    Returns:
        The :class:`Study`.

    Raises:
        EmolibError: a file is missing or malformed, or lacks rows the parameters need (an
            emotion, a K, a variant).
    """
    from emolib.landmarks import load_landmarks
    from emolib.plots.face import mean_face

    paths = require_stage_outputs(run, params)
    data = load_landmarks(paths["landmarks"])
    training = current_rows(read_results_csv(paths["training"], RESULT_COLUMNS), params)
    # Stage 02 trains on every landmark; whatever it calls that, here it is the "all" selection.
    training = training.assign(selection="all")
    full_k = int(data.n_landmarks)
    pruning = current_rows(read_results_csv(paths["pruning"], RESULT_COLUMNS), params, n_landmarks=params.pruning.k)
    ranking = read_results_csv(paths["ranking"], RANKING_COLUMNS)
    svm = read_results_csv(paths["svm"], SVM_COLUMNS) if "svm" in paths else None
    if svm is not None:
        svm = svm[svm["emotion"].isin(params.emotions) & svm["seed"].isin(params.seeds)].reset_index(drop=True)
    hyper = read_results_csv(paths["hyperparameters"], HYPER_COLUMNS) if "hyperparameters" in paths else None

    for name, table in (("training", training), ("pruning", pruning)):
        path = paths[name]
        for variant in VARIANTS:
            for emotion in params.emotions:
                if not ((table["variant"] == variant) & (table["emotion"] == emotion)).any():
                    raise EmolibError(f"{path}: no {variant} rows for {emotion!r}; rerun its stage")
    missing_k = sorted(set(params.pruning.k) - set(pruning.loc[pruning["selection"] == "ig", "n_landmarks"]))
    if missing_k:
        raise EmolibError(f"{paths['pruning']}: no ig rows for K={missing_k}; rerun stage 04")
    missing_e = sorted(set(params.emotions) - set(ranking["emotion"]))
    if missing_e:
        raise EmolibError(f"{paths['ranking']}: no ranking for {missing_e}; rerun stage 03")

    truth = None
    truth_path = run.data / "ground_truth.json"
    if truth_path.is_file():
        try:
            raw = json.loads(truth_path.read_text()).get("landmarks", {})
            truth = {e: np.asarray(v, dtype=int) for e, v in raw.items() if e in params.emotions}
        except (json.JSONDecodeError, AttributeError, TypeError, ValueError):
            truth = None  # an unreadable ground truth only loses one optional table
    # The face is drawn from the original videos: a mirrored copy's x is 1 - x, and averaging
    # both (when the flip does not swap left and right ids) would fold the face onto its midline.
    originals = ~data.flipped if (~data.flipped).any() else np.ones(len(data), dtype=bool)
    grid = None
    grid_path = run.results / "grid_search.csv"
    if grid_path.is_file():  # optional: only counts the combinations each choice was made among
        grid = read_results_csv(grid_path, ("emotion", "n_landmarks", "selection", "filters"))
    return Study(training=training, pruning=pruning, ranking=ranking, svm=svm, hyperparameters=hyper,
                 full_k=full_k, xy=mean_face(data.X[originals]), landmark_ids=data.landmark_ids,
                 ground_truth=truth or None,
                 grid=grid)


# ---- accuracy tables (Tables 6 and 7) -----------------------------------------------------------

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
            sel = "all" if k == full_k else selection
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


# ---- hyperparameters (Tables 1 to 5) --------------------------------------------------------

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
    runs = runs[(runs["variant"] == "t-emo") & runs["selection"].isin(["all", "ig"])]
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

            def rows_of(table: pd.DataFrame) -> pd.DataFrame:
                table = table[(table["emotion"] == emotion) & (table["n_landmarks"] == k)]
                if k != study.full_k:  # the full set has one selection, whatever stage 02 names it
                    table = table[table["selection"] == "ig"]
                return table[(table["filters"] == f) & (table["lstm_units"] == q) & (table["fc_units"] == r)]

            if study.hyperparameters is not None:
                match = rows_of(study.hyperparameters)
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


# ---- SVM baselines --------------------------------------------------------------------------

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
            all_row = rows[rows["selection"] == "all"]
            full.append(format_mean_std(float(all_row["mean"].iloc[0]), float(all_row["std"].iloc[0]), digits)
                        if len(all_row) else "–")
            pruned = rows[rows["selection"].isin(["all", "ig"])]
            top = pruned.loc[pruned["mean"].idxmax()] if len(pruned) else None
            best.append("–" if top is None else
                        f"{format_mean_std(float(top['mean']), float(top['std']), digits)} (K={int(top['n_landmarks'])})")
        table[f"{label} all {study.full_k}"] = full
        table[f"{label} best K"] = best
    for kernel, values in paper.SVM_ACCURACY.items():
        table[f"{kernel} SVM (quoted, CK+)"] = [f"{values[e]:.2f}" if e in values else "–" for e in params.emotions]
    return table


# ---- paired statistics ----------------------------------------------------------------------

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
        (mean / sd of the differences; NaN when undefined), wilcoxon_statistic, wilcoxon_p,
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
           "cohens_dz": np.nan, "wilcoxon_statistic": np.nan, "wilcoxon_p": np.nan,
           "ttest_statistic": np.nan, "ttest_p": np.nan, "primary_test": "none", "p_value": np.nan, "note": ""}
    notes = []
    sd = out["sd_difference"]
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
    model. ``ig_vs_random``: the ranking's subset against the random subset, same K and seed.
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
        if selection == "all":
            continue
        refs = [("k_vs_all", (variant, emotion, full_k, "all"), f"all {full_k}")]
        if selection != "random":
            refs.append(("ig_vs_random" if selection == "ig" else f"{selection}_vs_random",
                         (variant, emotion, k, "random"), "random"))
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
    order = {"k_vs_all": 0, "ig_vs_random": 1}
    table["_order"] = table["comparison"].map(order).fillna(2)
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

    labels = {"ig": "IG", "random": "random"}
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


# ---- cost, regions, ground truth ------------------------------------------------------------

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


def region_importance(ranking: pd.DataFrame, k_values: Sequence[int] = ()) -> pd.DataFrame:
    """Importance per facial region and emotion, and how many of the top-K each region holds.

    Args:
        ranking: stage 03's ranking (emotion, rank, landmark, importance, region).
        k_values: K values whose top-K share is added as ``top<K>_share``.

    Returns:
        Per (emotion, region): n_landmarks, mean_importance, importance_share (the region's
        sum over the emotion's total), and per K the fraction of the top-K in the region.
    """
    rows = []
    for emotion, part in ranking.groupby("emotion", sort=False):
        part = part.sort_values("rank")
        total = float(part["importance"].sum()) or 1.0
        for region in REGIONS:
            in_region = part["region"] == region
            row = {"emotion": emotion, "region": region, "n_landmarks": int(in_region.sum()),
                   "mean_importance": float(part.loc[in_region, "importance"].mean()) if in_region.any() else 0.0,
                   "importance_share": float(part.loc[in_region, "importance"].sum()) / total}
            for k in k_values:
                top = part.head(k)
                row[f"top{k}_share"] = float((top["region"] == region).mean()) if len(top) else np.nan
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
            hits = len(moved_set & set(int(i) for i in ranking_ids[emotion][:k]))
            rows.append({"emotion": emotion, "n_landmarks": int(k), "hits": hits, "precision": hits / k,
                         "recall": hits / max(len(moved_set), 1),
                         "chance_precision": len(moved_set) / n_landmarks})
    return pd.DataFrame(rows)


# ---- the open choices ------------------------------------------------------------------------

def choices_table(params: Params) -> pd.DataFrame:
    """The choices the paper leaves open (DESIGN.md), with this run's values and the paper's.

    Args:
        params: the run's parameters.

    Returns:
        Columns question, parameter, this run, paper.
    """
    p = params
    rows = [
        ("frames per video (P)", "frames", f"{p.frames}, resampled uniformly in time", "not stated"),
        ("convolution kernel (coordinates x landmarks)", "model.kernel_size", str(tuple(p.model.kernel_size)),
         "not stated"),
        ("dropout rate", "model.dropout", str(p.model.dropout), "not stated"),
        ("FC1 activation", "model.fc_activation", p.model.fc_activation, "not stated"),
        ("which samples IG explains", "ig.inputs",
         "the training samples of emotion e" if p.ig.inputs == "positives" else "every training sample",
         "the training samples"),
        ("what a typical video is", "ig.typical",
         {"most_confident": "the one its own model is most sure of", "medoid": "the medoid",
          "centroid": "the centroid (mean input of its training samples, not a real video)"}.get(
             p.ig.typical, p.ig.typical),
         "not defined"),
        ("IG quadrature, steps", "ig.rule, ig.steps", f"{p.ig.rule}, m = {p.ig.steps}", "right Riemann sum, m not stated"),
        ("flip augmentation", "data.flip", "mirror horizontally" if p.data.flip else "off", "'vertically'"),
        ("how data is split", "split", "by subject" if p.split == "subject" else "random partitions",
         "random partitions"),
        ("class imbalance", "train.class_weight", p.train.class_weight, "not addressed"),
        ("input scaling", "data.normalize", p.data.normalize, "not stated"),
        ("seeds (runs)", "seeds", str(len(p.seeds)), "10"),
        ("pruned K", "pruning.k", ", ".join(map(str, p.pruning.k)), "234, 128, 64, 32, 16"),
        ("grid search per K", "pruning.grid_search", "yes" if p.pruning.grid_search else "no (model.* for every K)",
         "yes (Tables 1 to 5)"),
        ("random-subset control", "pruning.random_control", "yes" if p.pruning.random_control else "no", "none"),
    ]
    return pd.DataFrame(rows, columns=["question", "parameter", "this run", "paper"])


# ---- Markdown and writing -------------------------------------------------------------------

def to_markdown(table: pd.DataFrame, caption: str = "") -> str:
    """A DataFrame as a GitHub Markdown table (index as the first column), caption below.

    Args:
        table: the table.
        caption: a line printed under the table in italics.

    Returns:
        Markdown text ending with a newline.
    """
    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    header = [table.index.name or ""] + [cell(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for idx, row in table.iterrows():
        lines.append("| " + " | ".join([cell(idx)] + [cell(v) for v in row.tolist()]) + " |")
    if caption:
        lines += ["", f"*{caption}*"]
    return "\n".join(lines) + "\n"


@dataclass
class Report:
    """What stage 05 computed (tables shown in the notebook, all written under results/)."""

    summary: pd.DataFrame
    accuracy_tables: dict[str, pd.DataFrame]
    hyperparameters: pd.DataFrame
    hyperparameter_tables: dict[int, pd.DataFrame]
    svm: pd.DataFrame
    statistics: pd.DataFrame
    cost: pd.DataFrame
    regions: pd.DataFrame
    recovery: Optional[pd.DataFrame]
    files: dict[str, Path]


def build_report(run: RunFolder, params: Params, study: Optional[Study] = None) -> Report:
    """Compute every table of stage 05 and write them under ``results/`` (atomically).

    Args:
        run: the run folder.
        params: the run's parameters.
        study: the loaded study (default: :func:`load_study`).

    Returns:
        The :class:`Report`, with the paths written.

    Raises:
        EmolibError: a required input is missing or incomplete (see :func:`load_study`).
    """
    study = study or load_study(run, params)
    ckplus = params.data.source == "ckplus"
    runs = study.runs
    summary = accuracy_summary(runs)
    files: dict[str, Path] = {}
    md: list[str] = [f"# Results of run {params.name}\n"]

    def save_csv(name: str, frame: pd.DataFrame, index: bool = False) -> None:
        path = run.results / name
        write_csv(path, frame.reset_index() if index else frame)
        files[name] = path

    def save_md(name: str, text: str) -> None:
        path = run.results / name
        write_text(path, text)
        files[name] = path

    save_csv("accuracy_summary.csv", summary)
    accuracy_tables = {}
    for variant in VARIANTS:
        number = TABLE_NUMBER[variant]
        table = accuracy_table(summary, variant, params.emotions, params.pruning.k, full_k=study.full_k,
                               with_paper=ckplus)
        accuracy_tables[variant] = table
        caption = (f"Table {number}: classification accuracy for binary {VARIANT_LABELS[variant]} network "
                   f"(mean ± std over {len(params.seeds)} seeds; K < {study.full_k}: top-K landmarks by IG)")
        save_csv(f"table{number}_{variant}.csv", table, index=True)
        text = to_markdown(table, caption)
        save_md(f"table{number}_{variant}.md", text)
        md.append(text)

    chosen = chosen_hyperparameters(study, params, with_paper=ckplus)
    save_csv("hyperparameters_chosen.csv", chosen)
    hyper_tables, hyper_md = {}, []
    for k in sorted(chosen["n_landmarks"].unique(), reverse=True):
        k = int(k)
        hyper_tables[k] = hyperparameter_table(chosen, k)
        searched = params.grid.enabled if k == study.full_k else params.pruning.grid_search
        hyper_md.append(to_markdown(hyper_tables[k], hyperparameter_caption(k, study.full_k, searched)))
    save_md("tables1-5_hyperparameters.md", "\n".join(hyper_md))
    md += hyper_md

    svm = svm_table(study, params)
    save_csv("svm_baselines.csv", svm, index=True)
    svm_md = to_markdown(svm, "SVM baselines (ours on this data; quoted: Kumar et al. 2016 on CK+, as the paper "
                              "quotes them) beside T-EMO and R-EMO")
    save_md("svm_baselines.md", svm_md)
    md.append(svm_md)

    statistics = study_statistics(runs, full_k=study.full_k)
    save_csv("statistics.csv", statistics)
    cost = cost_summary(runs)
    save_csv("cost.csv", cost)
    regions = region_importance(study.ranking, params.report.top_k_figure)
    save_csv("region_importance.csv", regions)
    recovery = None
    if study.ground_truth:
        ks = sorted(set(params.pruning.k) | {k for k in params.report.top_k_figure if k < study.full_k}, reverse=True)
        recovery = ground_truth_recovery(study.ranking_ids(), study.ground_truth, ks, study.full_k)
        save_csv("ground_truth_recovery.csv", recovery)
    save_md("tables.md", "\n".join(md))
    return Report(summary=summary, accuracy_tables=accuracy_tables, hyperparameters=chosen,
                  hyperparameter_tables=hyper_tables, svm=svm, statistics=statistics, cost=cost,
                  regions=regions, recovery=recovery, files=files)


def check_report(report: Report, params: Params) -> None:
    """Check what stage 05 wrote: files present, no NaN where a value must be, values in range.

    Args:
        report: from :func:`build_report`.
        params: the run's parameters.

    Raises:
        EmolibError: a file is missing, a table has the wrong shape, or a value is out of range.
    """
    for name, path in report.files.items():
        if not path.is_file() or path.stat().st_size == 0:
            raise EmolibError(f"{path}: not written")
    for variant, table in report.accuracy_tables.items():
        if table.shape != (len(params.emotions), len(params.pruning.k) + 1):
            raise EmolibError(f"table of {variant} has shape {table.shape}, expected "
                              f"({len(params.emotions)}, {len(params.pruning.k) + 1})")
        if (table == "–").any().any():
            raise EmolibError(f"table of {variant} has an empty cell")
    s = report.summary
    if s["mean"].isna().any() or ((s["mean"] < 0) | (s["mean"] > 1)).any():
        raise EmolibError("accuracy_summary: a mean accuracy is NaN or outside [0, 1]")
    st = report.statistics
    if st.empty:
        raise EmolibError("statistics.csv is empty")
    p = st["p_value"].dropna()
    if ((p < 0) | (p > 1)).any():
        raise EmolibError("statistics.csv: a p-value lies outside [0, 1]")
    if not set(st["comparison"]) >= {"k_vs_all"}:
        raise EmolibError("statistics.csv lacks the K-against-all comparisons")
    if params.pruning.random_control and "ig_vs_random" not in set(st["comparison"]):
        raise EmolibError("statistics.csv lacks the IG-against-random comparisons")
    share = report.regions.groupby("emotion")["importance_share"].sum()
    if not np.allclose(share, 1.0, atol=1e-6):
        raise EmolibError("region_importance.csv: region shares do not sum to 1 per emotion")
