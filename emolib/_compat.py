"""Wrappers that keep the functions of emolib 0.1 working where they became methods of
:class:`emolib.run_folder.RunFolder` or rows of one table (deprecated; reached only through the
old names, see :mod:`emolib._deprecated`)."""
from __future__ import annotations


def load_splits(run):
    return run.read_splits()


def split_indices(splits, seed):
    from emolib.run_folder import RunFolder

    return RunFolder.split_parts(splits, seed)


def splits_path(run):
    return run.splits


def model_path(run, variant, emotion, n_landmarks, selection, seed):
    return run.model(variant, emotion, n_landmarks, selection, seed)


def load_trained(run, variant, emotion, n_landmarks, selection, seed):
    return run.load_trained(variant, emotion, n_landmarks, selection, seed)


def load_results(run, params=None, results_csv=None):
    return run.read_results(results_csv, params)


def load_history(run, results_csv=None):
    return run.read_history(results_csv)


def history_path(results_csv):
    from emolib.run_folder import RunFolder

    return RunFolder.history(results_csv)


def load_ranking(run, variant="t-emo"):
    return run.read_ranking(variant)


def load_masks(run, emotion, variant="t-emo"):
    return run.read_masks(emotion, variant)


def load_ground_truth(run):
    return run.read_ground_truth()


def attribution_path(run, emotion, variant="t-emo"):
    return run.attribution(emotion, variant)


def typical_paths(run, variant="t-emo"):
    return run.typical(variant)


def pruning_csv(run):
    return run.pruning_results


def read_report(run):
    return run.read_extraction_report()


def read_results_csv(path, required=None):
    from emolib.run_folder import RunFolder
    from emolib.vocab import RESULT_COLUMNS

    return RunFolder(".").read_table(path, RESULT_COLUMNS if required is None else required)


def training_choices_table(params):
    from emolib.report.choices import choices_table

    return choices_table(params, "02_training")


def ig_choices_table(params, variant="t-emo"):
    from emolib.report.choices import choices_table

    return choices_table(params, "03_global_ig", variant=variant)


def results_choices_table(params):
    from emolib.report.choices import choices_table

    return choices_table(params, "05_results")


def region_importance_table(masks):
    import pandas as pd

    from emolib.regions import region_importance

    rows = [{"emotion": e, "rank": r + 1, "landmark": int(i), "importance": float(v), "region": ""}
            for e, m in masks.items() for r, (i, v) in enumerate(zip(m["landmark_ids"], m["global"]))]
    table = pd.DataFrame(rows)
    from emolib.regions import region_of

    table["region"] = region_of(table["landmark"].to_numpy())
    return region_importance(table, wide=True)
