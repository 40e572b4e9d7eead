"""Stage 05: the paper's tables from our runs, paired statistics, cost and region summaries.

Reads what stages 01 to 04 wrote (:func:`emolib.results.study.load_study`) and writes, under ``results/``:

    accuracy_summary.csv        mean, std, n per (variant, emotion, K, selection)
    table6_t-emo.csv/.md        Table 6 in the paper's layout (mean +- std per emotion and K)
    table7_r-emo.csv/.md        Table 7 (R-EMO)
    hyperparameters_chosen.csv  Tables 1 to 5 (F, Q, R per emotion and K) in one long table
    tables1-5_hyperparameters.md
    svm_baselines.csv/.md       our SVMs and the numbers the paper quotes, beside T-EMO / R-EMO
    statistics.csv              paired tests across seeds: "K beats all", "IG beats random"
    cost.csv                    training time and parameters against K
    region_importance.csv       importance and top-K share per facial region
    ground_truth_recovery.csv   planted landmarks in the top K (demo data only)
    checks_statistics.csv       stage 03's checks as paired tests over seeds (deletion, insertion
                                areas against random orders; the randomisation check)
    forest.csv                  per emotion every paired difference with its 95% CI and outcome
    verdicts.csv, verdicts.md   one sentence of verdict per emotion, written from forest.csv
    tables.md                   every Markdown table above, in one file

When the data is CK+ (``params.data.source == "ckplus"``) the paper's values stand beside ours;
on other data they would compare different datasets, so they are left out (the SVM numbers the
paper quotes are always shown, labelled as quoted CK+ numbers).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Optional

import numpy as np
import pandas as pd

from emolib.errors import DataError
from emolib.io import write_csv, write_text
from emolib.rankings import ground_truth_recovery
from emolib.regions import region_importance
from emolib.report.html import to_markdown
from emolib.results.statistics import study_statistics
from emolib.results.study import Study, load_study
from emolib.results.tables import (
    TABLE_NUMBER,
    accuracy_summary,
    accuracy_table,
    chosen_hyperparameters,
    cost_summary,
    hyperparameter_caption,
    hyperparameter_table,
    svm_table,
)
from emolib.results.verdicts import checks_statistics, forest_table, verdict_sentences, verdicts_markdown
from emolib.vocab import VARIANT_LABELS, VARIANTS

if TYPE_CHECKING:
    from emolib.config import Params
    from emolib.run_folder import RunFolder


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
    checks: Optional[pd.DataFrame] = None
    forest: Optional[pd.DataFrame] = None
    verdicts: Optional[pd.DataFrame] = None


def build_report(run: RunFolder, params: Params, study: Optional[Study] = None) -> Report:
    """Compute every table of stage 05 and write them under ``results/`` (atomically).

    Args:
        run: the run folder.
        params: the run's parameters.
        study: the loaded study (default: :func:`load_study`).

    Returns:
        The :class:`Report`, with the paths written.

    Raises:
        DataError: a required input is missing or incomplete (see :func:`load_study`).
    """
    study = study or load_study(run, params)
    ckplus = params.data.source == "ckplus"
    runs = study.runs
    summary = accuracy_summary(runs)
    files: dict[str, Path] = {}
    md: list[str] = [f"# Results of run {params.name}\n"]

    def save_csv(name: str, frame: pd.DataFrame, index: bool = False) -> None:
        path = run.result(name)
        write_csv(path, frame.reset_index() if index else frame)
        files[name] = path

    def save_md(name: str, text: str) -> None:
        path = run.result(name)
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
    checks = checks_statistics(study.checks.get("deletion"), study.checks.get("randomisation"))
    save_csv("checks_statistics.csv", checks)
    forest = forest_table(statistics, checks, params.emotions, full_k=study.full_k)
    save_csv("forest.csv", forest)
    verdicts = verdict_sentences(forest, params.emotions)
    save_csv("verdicts.csv", verdicts)
    verdicts_md = verdicts_markdown(verdicts, forest, params.name)
    save_md("verdicts.md", verdicts_md)
    md.append(verdicts_md)
    save_md("tables.md", "\n".join(md))
    return Report(summary=summary, accuracy_tables=accuracy_tables, hyperparameters=chosen,
                  hyperparameter_tables=hyper_tables, svm=svm, statistics=statistics, cost=cost,
                  regions=regions, recovery=recovery, files=files, checks=checks, forest=forest,
                  verdicts=verdicts)


def check_report(report: Report, params: Params) -> None:
    """Check what stage 05 wrote: files present, no NaN where a value must be, values in range.

    Args:
        report: from :func:`build_report`.
        params: the run's parameters.

    Raises:
        DataError: a file is missing, a table has the wrong shape, or a value is out of range.
    """
    for path in report.files.values():
        if not path.is_file() or path.stat().st_size == 0:
            raise DataError(f"{path}: not written")
    for variant, table in report.accuracy_tables.items():
        if table.shape != (len(params.emotions), len(params.pruning.k) + 1):
            raise DataError(f"table of {variant} has shape {table.shape}, expected "
                              f"({len(params.emotions)}, {len(params.pruning.k) + 1})")
        if (table == "–").any().any():
            raise DataError(f"table of {variant} has an empty cell")
    s = report.summary
    if s["mean"].isna().any() or ((s["mean"] < 0) | (s["mean"] > 1)).any():
        raise DataError("accuracy_summary: a mean accuracy is NaN or outside [0, 1]")
    st = report.statistics
    if st.empty:
        raise DataError("statistics.csv is empty")
    p = st["p_value"].dropna()
    if ((p < 0) | (p > 1)).any():
        raise DataError("statistics.csv: a p-value lies outside [0, 1]")
    if not set(st["comparison"]) >= {"k_vs_all"}:
        raise DataError("statistics.csv lacks the K-against-all comparisons")
    if params.pruning.random_control and "ig_vs_random" not in set(st["comparison"]):
        raise DataError("statistics.csv lacks the IG-against-random comparisons")
    if report.verdicts is not None and len(report.verdicts) != len(params.emotions):
        raise DataError("verdicts.csv does not hold one verdict per emotion")
    if report.forest is not None and len(report.forest):
        f = report.forest
        bad = f["ci_low"] > f["ci_high"] + 1e-12
        if bad.any():
            raise DataError("forest.csv: an interval is reversed")
    share = report.regions.groupby("emotion")["importance_share"].sum()
    if not np.allclose(share, 1.0, atol=1e-6):
        raise DataError("region_importance.csv: region shares do not sum to 1 per emotion")

