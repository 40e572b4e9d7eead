"""Stage 05: the paper's tables from the run, paired statistics, cost and region summaries.

:mod:`~emolib.results.study` (what stages 01 to 04 wrote, read and checked),
:mod:`~emolib.results.tables` (Tables 1 to 7, SVMs, cost), :mod:`~emolib.results.statistics`
(paired tests across seeds), :mod:`~emolib.results.stage` (every table written under results/).
"""
from emolib._deprecated import module_getattr as _module_getattr
from emolib.results.stage import Report, build_report, check_report
from emolib.results.study import Study, load_study

__all__ = ["Study", "load_study", "Report", "build_report", "check_report"]

# Names of the flat ``emolib.results`` module before 0.2 (deprecated; see emolib._deprecated).
__getattr__ = _module_getattr(__name__, {
    **{n: "emolib.results.study" for n in ("REQUIRED_FILES", "required_files", "require_stage_outputs")},
    **{n: "emolib.results.tables" for n in ("TABLE_NUMBER", "HYPER_TABLE_NUMBER", "HYPER_LABELS", "accuracy_summary",
                                            "paper_accuracy", "format_mean_std", "accuracy_table",
                                            "chosen_hyperparameters", "hyperparameter_table", "hyperparameter_caption",
                                            "svm_table", "cost_summary")},
    **{n: "emolib.results.statistics" for n in ("MIN_WILCOXON_PAIRS", "paired_test", "holm_adjust", "study_statistics",
                                                "statistics_display")},
    "region_importance": "emolib.regions", "ground_truth_recovery": "emolib.rankings",
    "to_markdown": "emolib.report.html", "choices_table": "emolib._compat:results_choices_table",
    "VARIANT_LABELS": "emolib.vocab", "RANKING_COLUMNS": "emolib.vocab", "SVM_COLUMNS": "emolib.vocab",
    "HYPER_COLUMNS": "emolib.vocab",
})
