"""Stage 05: tables in the paper's layout, paired statistics on known inputs, region and cost
summaries, and the figures, on a run folder whose stage 01-04 outputs are written here (real
tables of the contract's shape with planted effects; no training)."""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from emolib import rankings
from emolib import results as R
from emolib.config import parse_params, set_dotted
from emolib.errors import EmolibError
from emolib.io import write_csv
from emolib.regions import REGIONS, region_importance, region_of
from emolib.report.html import to_markdown
from emolib.results import statistics as rstats
from emolib.results import tables
from emolib.run_folder import RunFolder
from emolib.vocab import EMOTIONS, N_LANDMARKS
from tests.synthetic import planted_landmarks, write_synthetic_run

SEEDS = [0, 1, 2, 3, 4, 5]
K_VALUES = [64, 16]
BASE = {"anger": 0.80, "disgust": 0.85, "fear": 0.82, "happiness": 0.95, "sadness": 0.78, "surprise": 0.97}
IG_GAIN = 0.02      # ig - all, every seed
RANDOM_LOSS = 0.03  # all - random, every seed
R_EMO_LOSS = 0.04


def make_params(**overrides):
    raw = {"name": "fake", "seeds": SEEDS, "frames": 3,
           "grid": {"enabled": True, "filters": [2, 3], "lstm_units": [4], "fc_units": [4]},
           "pruning": {"k": K_VALUES, "random_control": True, "grid_search": True},
           "report": {"top_k_figure": [468, 64, 16]}}
    for key, value in overrides.items():
        set_dotted(raw, key.split("."), value)
    return parse_params(raw, "test")


def seed_noise(seed: int) -> float:
    return 0.01 * ((seed * 7) % 5 - 2)  # -0.02 .. 0.02, the same for every model of a seed


def result_row(variant, emotion, k, selection, seed, accuracy):
    filters = 3 if emotion in ("anger", "fear") else 2
    return {"variant": variant, "emotion": emotion, "n_landmarks": k, "selection": selection, "seed": seed,
            "accuracy": accuracy, "balanced_accuracy": accuracy - 0.01, "f1": accuracy - 0.1, "roc_auc": 0.9,
            "majority_accuracy": 5 / 6, "epochs": 3, "train_seconds": 0.01 * k + (1.0 if variant == "t-emo" else 0.5),
            "seconds_per_epoch": 0.001 * k + 0.1, "params": 10 * k + 100,
            "trainable_params": (10 * k + 100) if variant == "t-emo" else (9 * k + 100),
            "filters": filters, "lstm_units": 4, "fc_units": 4, "n_train": 40, "n_val": 8, "n_test": 12,
            "best_epoch": 2, "val_accuracy": accuracy, "val_loss": 0.3}


def accuracy_of(variant, emotion, k, selection, seed):
    acc = BASE[emotion] + seed_noise(seed) - (R_EMO_LOSS if variant == "r-emo" else 0.0)
    if selection == "ig":
        acc += IG_GAIN
    elif selection == "random":
        acc -= RANDOM_LOSS
    return round(acc, 6)


def fake_ranking() -> dict[str, np.ndarray]:
    """Each emotion's planted landmarks first, then the rest in a seeded order."""
    planted = planted_landmarks()
    rng = np.random.default_rng(7)
    out = {}
    for e in EMOTIONS:
        rest = np.array([i for i in rng.permutation(N_LANDMARKS) if i not in set(planted[e])])
        out[e] = np.concatenate([planted[e], rest])
    return out


def write_fake_study(root: Path, params=None) -> tuple[RunFolder, object]:
    """A run folder as stages 01 to 04 leave it (tables of the contract's shape, planted effects)."""
    params = params or make_params()
    root.mkdir(parents=True, exist_ok=True)
    yaml_path = root.parent / f"{root.name}_params.yaml"
    yaml_path.write_text(params.to_yaml())
    write_synthetic_run(root, yaml_path, subjects=2, frames=params.frames, flip=False)
    run = RunFolder(root).ensure()
    training, pruning = [], []
    for v in ("t-emo", "r-emo"):
        for e in params.emotions:
            for s in params.seeds:
                training.append(result_row(v, e, N_LANDMARKS, "all", s, accuracy_of(v, e, N_LANDMARKS, "all", s)))
                for k in params.pruning.k:
                    for sel in ("ig", "random"):
                        pruning.append(result_row(v, e, k, sel, s, accuracy_of(v, e, k, sel, s)))
    write_csv(run.results / "training.csv", pd.DataFrame(training))
    write_csv(run.results / "pruning.csv", pd.DataFrame(pruning))
    svm = [{"kernel": kern, "emotion": e, "seed": s, "accuracy": BASE[e] - (0.05 if kern == "rbf" else 0.06),
            "balanced_accuracy": 0.7, "f1": 0.5, "majority_accuracy": 5 / 6, "n_train": 48, "n_test": 12}
           for kern in ("linear", "rbf") for e in params.emotions for s in params.seeds]
    write_csv(run.results / "svm.csv", pd.DataFrame(svm))
    hyper = []
    for e in params.emotions:
        chosen_f = 3 if e in ("anger", "fear") else 2
        pruned = [(k, sel) for sel in ("ig", "random") for k in params.pruning.k]
        for k, sel in [(N_LANDMARKS, "all")] + sorted(pruned, key=lambda ks: (ks[1] != "ig", -ks[0])):
            for f in (2, 3):
                hyper.append({"emotion": e, "n_landmarks": k, "selection": sel, "filters": f, "lstm_units": 4,
                              "fc_units": 4, "val_accuracy": 0.9 if f == chosen_f else 0.8})
    grid = pd.DataFrame(hyper).assign(chosen=lambda t: t["val_accuracy"] == 0.9)
    write_csv(run.results / "grid_search.csv", grid)
    write_csv(run.results / "hyperparameters.csv", grid[grid["chosen"]].drop(columns="chosen"))
    ranking_rows = []
    for e, order in fake_ranking().items():
        importance = np.linspace(1.0, 0.01, N_LANDMARKS)
        for rank, (lm, imp, reg) in enumerate(zip(order, importance, region_of(order)), start=1):
            ranking_rows.append({"emotion": e, "rank": rank, "landmark": int(lm), "importance": float(imp),
                                 "region": str(reg)})
    write_csv(run.results / "landmark_ranking.csv", pd.DataFrame(ranking_rows))
    write_csv(run.attributions / "typical.csv",
              pd.DataFrame({"emotion": list(EMOTIONS), "sample": list(range(len(EMOTIONS))),
                            "sequence": [f"S000_{e}" for e in EMOTIONS], "strategy": "most_confident",
                            "score": 0.9}))
    return run, params


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    return write_fake_study(tmp_path_factory.mktemp("results") / "run")


@pytest.fixture(scope="module")
def study(fake_run):
    run, params = fake_run
    return R.load_study(run, params)


# ---- inputs ----------------------------------------------------------------------------------

def test_missing_stage_output_is_named_with_its_stage(tmp_path):
    run, params = write_fake_study(tmp_path / "run")
    (run.results / "pruning.csv").unlink()
    (run.results / "landmark_ranking.csv").unlink()
    with pytest.raises(EmolibError) as err:
        R.load_study(run, params)
    msg = str(err.value)
    assert "results/pruning.csv (written by stage 04_pruning)" in msg
    assert "results/landmark_ranking.csv (written by stage 03_global_ig)" in msg


def test_svm_and_grid_tables_only_required_when_those_ran():
    params = make_params(**{"svm.enabled": False, "grid.enabled": False, "pruning.grid_search": False})
    assert set(R.required_files(params)) == {"landmarks", "training", "ranking", "pruning"}
    assert {"svm", "hyperparameters"} <= set(R.required_files(make_params()))


def test_pruning_without_a_planned_k_is_refused(tmp_path):
    run, params = write_fake_study(tmp_path / "run")
    table = pd.read_csv(run.results / "pruning.csv")
    write_csv(run.results / "pruning.csv", table[table["n_landmarks"] != 16])
    with pytest.raises(EmolibError, match=r"pruning.csv: no ig rows for K=\[16\]; rerun stage 04"):
        R.load_study(run, params)


def test_malformed_table_names_file_and_column(tmp_path):
    run, params = write_fake_study(tmp_path / "run")
    write_csv(run.results / "training.csv", pd.read_csv(run.results / "training.csv").drop(columns="accuracy"))
    with pytest.raises(EmolibError, match=r"training.csv: missing column\(s\) \['accuracy'\]"):
        R.load_study(run, params)


def test_study_filters_to_the_parameters(study):
    assert set(study.training["selection"]) == {"all"}
    assert study.full_k == N_LANDMARKS and study.xy.shape == (N_LANDMARKS, 2)
    assert len(study.runs) == 2 * 6 * len(SEEDS) * (1 + 2 * len(K_VALUES))
    assert set(study.ground_truth) == set(EMOTIONS)


def test_rows_of_other_seeds_and_repeated_models_do_not_count(tmp_path):
    run, params = write_fake_study(tmp_path / "run")
    table = pd.read_csv(run.results / "training.csv")
    stale = table.iloc[[0]].assign(seed=99, accuracy=0.0)                 # a seed not in params
    retrained = table.iloc[[0]].assign(accuracy=table.iloc[0]["accuracy"] + 0.1)  # same model, later row
    write_csv(run.results / "training.csv", pd.concat([table, stale, retrained]))
    s = R.load_study(run, params)
    assert 99 not in set(s.training["seed"])
    first = table.iloc[0]
    hit = s.training[(s.training["variant"] == first["variant"]) & (s.training["emotion"] == first["emotion"])
                     & (s.training["seed"] == first["seed"])]
    assert len(hit) == 1 and hit["accuracy"].iloc[0] == pytest.approx(first["accuracy"] + 0.1)


# ---- Tables 6 and 7 ---------------------------------------------------------------------------

def test_accuracy_table_has_the_papers_layout_and_our_numbers(study):
    summary = tables.accuracy_summary(study.runs)
    table = tables.accuracy_table(summary, "t-emo", list(EMOTIONS), K_VALUES, full_k=N_LANDMARKS)
    assert list(table.index) == [e.capitalize() for e in EMOTIONS] and table.index.name == "Emotion"
    assert list(table.columns) == ["468", "64", "16"]
    assert all(re.fullmatch(r"0\.\d{3} ± 0\.\d{3}", c) for c in table.to_numpy().ravel())
    accs = [accuracy_of("t-emo", "anger", 64, "ig", s) for s in SEEDS]
    assert table.loc["Anger", "64"] == f"{np.mean(accs):.3f} ± {np.std(accs, ddof=1):.3f}"
    accs = [accuracy_of("t-emo", "anger", 468, "all", s) for s in SEEDS]
    assert table.loc["Anger", "468"] == f"{np.mean(accs):.3f} ± {np.std(accs, ddof=1):.3f}"


def test_accuracy_table_puts_the_papers_values_beside_ours(study):
    summary = tables.accuracy_summary(study.runs)
    table = tables.accuracy_table(summary, "r-emo", list(EMOTIONS), K_VALUES, full_k=N_LANDMARKS, with_paper=True)
    assert table.loc["Anger", "468"].endswith("(paper 0.889 ± 0.018)")
    assert table.loc["Surprise", "64"].endswith("(paper 0.981 ± 0.017)")


def test_one_seed_gives_the_mean_alone():
    assert tables.format_mean_std(0.9, float("nan")) == "0.900"
    assert tables.format_mean_std(float("nan"), float("nan")) == "–"
    assert tables.format_mean_std(0.91234, 0.0156) == "0.912 ± 0.016"


def test_paper_accuracy_is_complete():
    paper = tables.paper_accuracy()
    assert len(paper) == 2 * 6 * 6
    row = paper[(paper["variant"] == "t-emo") & (paper["emotion"] == "fear") & (paper["n_landmarks"] == 128)]
    assert row[["paper_mean", "paper_std"]].to_numpy().tolist() == [[0.974, 0.020]]


# ---- Tables 1 to 5 ----------------------------------------------------------------------------

def test_chosen_hyperparameters_are_those_trained_with_and_their_grid_score(study, fake_run):
    _, params = fake_run
    chosen = tables.chosen_hyperparameters(study, params, with_paper=True)
    assert sorted(chosen["n_landmarks"].unique(), reverse=True) == [468, 64, 16]
    anger64 = chosen[(chosen["emotion"] == "anger") & (chosen["n_landmarks"] == 64)].iloc[0]
    assert (anger64["filters"], anger64["lstm_units"], anger64["fc_units"]) == (3, 4, 4)
    assert anger64["val_accuracy"] == pytest.approx(0.9) and anger64["grid_points"] == 2
    assert (anger64["paper_filters"], anger64["paper_lstm_units"], anger64["paper_fc_units"]) == (25, 31, 54)
    table = tables.hyperparameter_table(chosen, 64)
    assert list(table.columns[:2]) == ["Convolutional Filters (F)", "Convolutional Filters (F) (paper)"]
    assert table.loc["Happiness", "Convolutional Filters (F) (paper)"] == "16"
    assert "Table 3" in tables.hyperparameter_caption(64, 468, True)
    assert "Table" not in tables.hyperparameter_caption(50, 468, True)


# ---- SVM --------------------------------------------------------------------------------------

def test_svm_table_has_ours_models_and_the_quoted_numbers(study, fake_run):
    _, params = fake_run
    table = tables.svm_table(study, params)
    assert list(table.columns) == ["linear SVM (ours)", "rbf SVM (ours)", "T-EMO all 468", "T-EMO best K",
                                   "R-EMO all 468", "R-EMO best K", "linear SVM (quoted, CK+)",
                                   "rbf SVM (quoted, CK+)"]
    assert table.loc["Disgust", "linear SVM (quoted, CK+)"] == "0.78"
    assert table.loc["Anger", "linear SVM (ours)"] == "0.740 ± 0.000"
    best = table.loc["Anger", "T-EMO best K"]
    assert best.endswith("(K=64)") or best.endswith("(K=16)")


# ---- statistics --------------------------------------------------------------------------------

def test_paired_test_on_known_differences():
    b = np.array([0.80, 0.82, 0.79, 0.85, 0.81, 0.83])
    diff = np.array([0.01, 0.02, 0.03, 0.04, 0.05, 0.06])
    out = rstats.paired_test(b + diff, b)
    assert out["n_pairs"] == 6 and out["mean_difference"] == pytest.approx(0.035)
    sd = np.std(diff, ddof=1)
    assert out["sd_difference"] == pytest.approx(sd)
    assert out["cohens_dz"] == pytest.approx(0.035 / sd)
    # all six differences positive: the exact two-sided Wilcoxon p is 2 / 2**6
    assert out["primary_test"] == "wilcoxon" and out["wilcoxon_p"] == pytest.approx(2 / 64)
    assert out["wilcoxon_statistic"] == 0
    t = 0.035 / (sd / np.sqrt(6))
    assert out["ttest_statistic"] == pytest.approx(t)
    assert out["ttest_p"] == pytest.approx(2 * stats.t.sf(t, df=5))
    assert out["p_value"] == out["wilcoxon_p"]


def test_paired_test_with_few_pairs_falls_back_to_the_t_test():
    out = rstats.paired_test([0.9, 0.8, 0.85], [0.8, 0.78, 0.8])
    assert out["primary_test"] == "t-test" and np.isnan(out["wilcoxon_p"])
    assert out["p_value"] == pytest.approx(stats.ttest_rel([0.9, 0.8, 0.85], [0.8, 0.78, 0.8]).pvalue)
    assert "too few for Wilcoxon" in out["note"]


def test_paired_test_with_constant_differences_has_no_effect_size():
    out = rstats.paired_test([0.9, 0.8, 0.7], [0.8, 0.7, 0.6])
    assert out["mean_difference"] == pytest.approx(0.1)
    assert np.isnan(out["cohens_dz"]) and out["primary_test"] == "none" and "constant" in out["note"]
    assert rstats.paired_test([0.9], [0.8])["note"].startswith("fewer than 2 pairs")
    with pytest.raises(ValueError):
        rstats.paired_test([0.9, 0.8], [0.8])


def test_holm_adjustment_on_known_p_values():
    adjusted = rstats.holm_adjust([0.01, 0.04, np.nan, 0.03])
    assert adjusted[0] == pytest.approx(0.03)
    assert adjusted[3] == pytest.approx(0.06) and adjusted[1] == pytest.approx(0.06)
    assert np.isnan(adjusted[2])


def test_study_statistics_measure_the_planted_effects(study):
    table = rstats.study_statistics(study.runs, full_k=N_LANDMARKS)
    n_combos = 2 * 6 * len(K_VALUES)
    assert (table["comparison"] == "k_vs_all").sum() == 2 * n_combos  # ig and random, each against all
    assert (table["comparison"] == "ig_vs_random").sum() == n_combos
    ig_vs_random = table[table["comparison"] == "ig_vs_random"]
    assert np.allclose(ig_vs_random["mean_difference"], IG_GAIN + RANDOM_LOSS)
    assert (ig_vs_random["n_pairs"] == len(SEEDS)).all()
    k_ig = table[(table["comparison"] == "k_vs_all") & (table["selection"] == "ig")]
    assert np.allclose(k_ig["mean_difference"], IG_GAIN)
    k_random = table[(table["comparison"] == "k_vs_all") & (table["selection"] == "random")]
    assert np.allclose(k_random["mean_difference"], -RANDOM_LOSS)
    # constant paired differences: 6 non-zero differences, all positive -> Wilcoxon exact p = 1/32
    assert (ig_vs_random["primary_test"] == "wilcoxon").all()
    assert np.allclose(ig_vs_random["wilcoxon_p"], 2 / 64)
    assert (ig_vs_random["p_holm"] >= ig_vs_random["p_value"]).all()


def test_statistics_pair_by_seed_and_drop_unmatched_seeds(study):
    runs = study.runs
    runs = runs[~((runs["selection"] == "random") & (runs["seed"] == 0))]
    table = rstats.study_statistics(runs, full_k=N_LANDMARKS)
    ig_vs_random = table[table["comparison"] == "ig_vs_random"]
    assert (ig_vs_random["n_pairs"] == len(SEEDS) - 1).all()
    assert np.allclose(ig_vs_random["mean_difference"], IG_GAIN + RANDOM_LOSS)


# ---- cost, regions, ground truth ---------------------------------------------------------------

def test_cost_summary_per_variant_and_k(study):
    cost = tables.cost_summary(study.runs)
    row = cost[(cost["variant"] == "r-emo") & (cost["n_landmarks"] == 16) & (cost["selection"] == "ig")].iloc[0]
    assert row["trainable_params"] == 9 * 16 + 100 and row["n_models"] == 6 * len(SEEDS)
    assert row["train_seconds"] == pytest.approx(0.01 * 16 + 0.5)


def test_region_importance_shares_and_top_k(study):
    regions = region_importance(study.ranking, [16])
    assert set(regions["region"]) == set(REGIONS)
    assert np.allclose(regions.groupby("emotion")["importance_share"].sum(), 1.0)
    anger = study.ranking[study.ranking["emotion"] == "anger"].sort_values("rank").head(16)
    expected = (anger["region"] == "lips").mean()
    got = regions[(regions["emotion"] == "anger") & (regions["region"] == "lips")]["top16_share"].iloc[0]
    assert got == pytest.approx(expected)


def test_ground_truth_recovery_of_a_ranking_that_puts_the_planted_first(study):
    rec = rankings.ground_truth_recovery(study.ranking_ids(), study.ground_truth, [64, 16], N_LANDMARKS)
    assert (rec.loc[rec["n_landmarks"] == 16, "precision"] == 1.0).all()   # 20 planted per emotion
    assert np.allclose(rec.loc[rec["n_landmarks"] == 64, "recall"], 1.0)
    assert np.allclose(rec["chance_precision"], 20 / N_LANDMARKS)


# ---- Markdown, writing, checks -------------------------------------------------------------------

def test_markdown_table():
    table = pd.DataFrame({"468": ["0.9 ± 0.1"], "a|b": [1]}, index=pd.Index(["Anger"], name="Emotion"))
    text = to_markdown(table, "Table 6: x")
    assert text.splitlines()[:3] == ["| Emotion | 468 | a\\|b |", "|---|---|---|", "| Anger | 0.9 ± 0.1 | 1 |"]
    assert text.rstrip().endswith("*Table 6: x*")


def test_build_report_writes_every_table(tmp_path):
    run, params = write_fake_study(tmp_path / "run", make_params(**{"data.source": "ckplus", "data.path": "/x"}))
    report = R.build_report(run, params)
    R.check_report(report, params)
    names = {"accuracy_summary.csv", "table6_t-emo.csv", "table6_t-emo.md", "table7_r-emo.csv", "table7_r-emo.md",
             "hyperparameters_chosen.csv", "tables1-5_hyperparameters.md", "svm_baselines.csv", "svm_baselines.md",
             "statistics.csv", "cost.csv", "region_importance.csv", "ground_truth_recovery.csv", "tables.md"}
    assert names <= set(report.files) and all((run.results / n).is_file() for n in names)
    md = (run.results / "tables.md").read_text()
    for caption in ("Table 6: classification accuracy for binary T-EMO", "Table 7:", "Table 3: T-EMO hyperparameters",
                    "Table 5:", "SVM baselines"):
        assert caption in md
    assert "(paper 0.924 ± 0.016)" in (run.results / "table6_t-emo.md").read_text()  # CK+: paper beside ours
    t6 = pd.read_csv(run.results / "table6_t-emo.csv", index_col=0)
    assert list(t6.columns) == ["468", "64", "16"] and len(t6) == 6
    statistics = pd.read_csv(run.results / "statistics.csv")
    assert {"comparison", "variant", "emotion", "n_landmarks", "selection", "n_pairs", "mean_difference",
            "cohens_dz", "wilcoxon_p", "ttest_p", "primary_test", "p_value", "p_holm"} <= set(statistics.columns)


def test_demo_report_leaves_the_papers_table_values_out(tmp_path):
    run, params = write_fake_study(tmp_path / "run")
    report = R.build_report(run, params)
    assert "paper" not in (run.results / "table6_t-emo.md").read_text()
    assert "paper" not in " ".join(report.hyperparameter_tables[64].columns)


def test_check_report_catches_a_broken_table(tmp_path):
    run, params = write_fake_study(tmp_path / "run")
    report = R.build_report(run, params)
    report.accuracy_tables["t-emo"].iloc[0, 1] = "–"
    with pytest.raises(EmolibError, match="empty cell"):
        R.check_report(report, params)
    report = R.build_report(run, params)
    report.summary.loc[0, "mean"] = np.nan
    with pytest.raises(EmolibError, match="NaN"):
        R.check_report(report, params)


# ---- figures ------------------------------------------------------------------------------------

def test_accuracy_vs_k_figure_draws_each_rule_from_the_full_set(study):
    from emolib.plots.results import accuracy_vs_k_figure

    summary = tables.accuracy_summary(study.runs)
    fig = accuracy_vs_k_figure(summary, list(EMOTIONS), full_k=N_LANDMARKS, paper=tables.paper_accuracy())
    lines = [t for t in fig.data if t.mode == "lines+markers"]
    assert len(lines) == 6 * 2 * 2  # emotions x variants x (ig, random)
    first = next(t for t in lines if t.name == "T-EMO, IG top-K")
    assert list(first.x) == [16, 64, 468]
    assert first.y[-1] == pytest.approx(np.mean([accuracy_of("t-emo", "anger", 468, "all", s) for s in SEEDS]))
    assert len({t.name for t in fig.data if t.showlegend}) == len({t.name for t in fig.data})


def test_other_figures_build(study):
    from emolib.plots import results as P

    cost = P.cost_figure(tables.cost_summary(study.runs), full_k=N_LANDMARKS)
    assert len(cost.data) == 3 * 2
    regions = P.region_importance_figure(region_importance(study.ranking, [64, 16]), list(EMOTIONS), [64, 16])
    assert len(regions.layout.updatemenus[0].buttons) == 4 and sum(t.visible for t in regions.data) == 6
    stats_fig = P.paired_differences_figure(rstats.study_statistics(study.runs, full_k=N_LANDMARKS), list(EMOTIONS))
    assert len(stats_fig.data) == 3 * 2 and sum(bool(t.visible) for t in stats_fig.data) == 1
    rec = rankings.ground_truth_recovery(study.ranking_ids(), study.ground_truth, [64, 16], N_LANDMARKS)
    assert len(P.ground_truth_figure(rec, list(EMOTIONS)).data) == 7
    attribution = np.random.default_rng(0).random((3, 16))
    fig = P.sample_attribution_figure(attribution, np.arange(16), study.xy, study.landmark_ids, top=5)
    assert len(fig.data[0].y) == 5 and fig.data[0].y[0] == str(int(np.argmax(attribution.sum(axis=0))))


def test_choices_table_names_each_open_choice_with_this_runs_value():
    from emolib.report.choices import choices_table
    from emolib.vocab import TYPICAL_DESCRIPTIONS

    table = choices_table(make_params(**{"split": "random", "ig.typical": "medoid"}), "05_results")
    assert {"frames", "ig.inputs", "ig.typical", "data.flip", "split", "train.class_weight", "data.normalize",
            "pruning.random_control"} <= set(table["parameter"])
    row = table.set_index("parameter")
    # stage 05 shows every stage's rows, in the words of the stage's own table
    assert row.loc["split", "this run"] == "random (a flipped copy always with its original)"
    assert row.loc["ig.typical", "this run"] == f"medoid ({TYPICAL_DESCRIPTIONS['medoid']})"
    for stage in ("01_data_prep", "02_training", "03_global_ig", "04_pruning"):
        own = choices_table(make_params(), stage)
        assert len(own) and set(own["question"]) <= set(choices_table(make_params(), "05_results")["question"])


def test_figures_page_embeds_plotly_once():
    import plotly.graph_objects as go

    from emolib.report.html import figures_page

    page = figures_page([go.Figure(go.Bar(y=[1])), go.Figure(go.Bar(y=[2]))], "a <title>")
    assert page.count("plotly.js v") == 1 and page.count('class="plotly-graph-div"') == 2
    assert "a &lt;title&gt;" in page and "<script src=" not in page


def test_statistics_display_spells_out_each_comparison(study):
    table = rstats.study_statistics(study.runs, full_k=N_LANDMARKS)
    view = rstats.statistics_display(table)
    assert len(view) == len(table)
    row = view.loc[("T-EMO", "anger", "IG 64 − random 64")]
    assert row["difference"] == f"+{IG_GAIN + RANDOM_LOSS:.3f}" and row["test"] == "wilcoxon"
    assert row["p"] == f"{2 / 64:.3f}" and row["n"] == len(SEEDS)
    assert ("R-EMO", "fear", "random 16 − all 468") in view.index


def test_the_face_is_drawn_from_the_original_videos(tmp_path):
    from emolib.landmarks import load_landmarks, save_landmarks
    from emolib.plots.face import mean_face

    run, params = write_fake_study(tmp_path / "run")
    data = load_landmarks(run.landmarks)
    mirrored = data.subset(np.arange(len(data)))
    mirrored.X = mirrored.X.copy()
    mirrored.X[:, :, 0] = 1.0 - mirrored.X[:, :, 0]
    mirrored.flipped = np.ones(len(data), dtype=bool)
    both = data.subset(np.arange(len(data)))
    for key in ("X", "emotion", "subject", "sequence", "flipped"):
        setattr(both, key, np.concatenate([getattr(data, key), getattr(mirrored, key)]))
    save_landmarks(run.landmarks, both)
    study = R.load_study(run, params)
    assert np.allclose(study.xy, mean_face(data.X))  # not folded onto x = 0.5
    assert study.xy[:, 0].std() > 0.05
