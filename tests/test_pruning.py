"""Stage 04: selection rules produce the right subsets, bad settings are refused before training,
results tables are read per model, and (with the training stage) the pruning study runs and
resumes on a tiny synthetic run."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from emolib import pruning as P
from emolib.config import parse_params
from emolib.errors import DataError, ParamsError
from emolib.vocab import EMOTIONS, N_LANDMARKS, RESULT_COLUMNS, VARIANTS
from tests.synthetic import make_landmark_set

ALL_IDS = np.arange(N_LANDMARKS)


def ranking_for(emotions=EMOTIONS, seed=3) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {e: rng.permutation(N_LANDMARKS) for e in emotions}


def small_params(**pruning):
    pruning.setdefault("roar", {"k": []})
    return parse_params({"name": "p", "seeds": [0, 1], "pruning": {"k": [64, 16], **pruning}}, "test")


# ---- the registry ---------------------------------------------------------------------------------

def test_registry_holds_ig_and_random():
    assert set(P.SELECTION_RULES) >= {"ig", "random"}
    assert not P.SELECTION_RULES["ig"].per_seed and P.SELECTION_RULES["ig"].needs_ranking
    assert P.SELECTION_RULES["random"].per_seed and not P.SELECTION_RULES["random"].needs_ranking


def test_a_new_rule_is_one_registration_away():
    @P.register_selection("lowest_ids", "the K smallest ids", per_seed=False, needs_ranking=False)
    def lowest(emotion, k, seed, ranking, available):
        return np.sort(available)[:k][::-1]

    try:
        ids = P.select_landmarks("lowest_ids", "anger", 5, 0, available_ids=ALL_IDS)
        assert ids.tolist() == [0, 1, 2, 3, 4]  # sorted by id whatever order the rule returned
        with pytest.raises(ValueError, match="already registered"):
            P.register_selection("lowest_ids", "again", per_seed=False, needs_ranking=False)
    finally:
        del P.SELECTION_RULES["lowest_ids"]
    with pytest.raises(ValueError, match="reserved"):
        P.register_selection("all", "the full set", per_seed=False, needs_ranking=False)


def test_unknown_rule_is_refused():
    with pytest.raises(ParamsError, match=r"unknown landmark selection rule 'shap'"):
        P.select_landmarks("shap", "anger", 5, 0, available_ids=ALL_IDS)


def test_a_rule_returning_too_few_landmarks_is_caught():
    @P.register_selection("broken", "repeats a landmark", per_seed=False, needs_ranking=False)
    def broken(emotion, k, seed, ranking, available):
        return np.zeros(k, dtype=int)

    try:
        with pytest.raises(ValueError, match="returned 1 distinct landmarks"):
            P.select_landmarks("broken", "anger", 4, 0, available_ids=ALL_IDS)
    finally:
        del P.SELECTION_RULES["broken"]


# ---- ig ------------------------------------------------------------------------------------------

def test_ig_keeps_the_top_k_of_each_emotion():
    ranking = ranking_for()
    for e in EMOTIONS:
        ids = P.select_landmarks("ig", e, 16, seed=5, ranking=ranking, available_ids=ALL_IDS)
        assert ids.tolist() == sorted(ranking[e][:16].tolist())
    # the same subset for every seed
    assert np.array_equal(P.select_landmarks("ig", "fear", 32, 0, ranking=ranking, available_ids=ALL_IDS),
                          P.select_landmarks("ig", "fear", 32, 9, ranking=ranking, available_ids=ALL_IDS))


def test_ig_skips_ranked_landmarks_the_data_lacks():
    ranking = {"anger": np.array([5, 400, 7, 3, 2])}
    ids = P.select_landmarks("ig", "anger", 3, 0, ranking=ranking, available_ids=np.arange(10))
    assert ids.tolist() == [3, 5, 7]
    with pytest.raises(DataError, match="holds 4 landmarks present in the data; K=5"):
        P.select_landmarks("ig", "anger", 5, 0, ranking=ranking, available_ids=np.arange(10))
    with pytest.raises(DataError, match="no landmark ranking for 'fear'"):
        P.select_landmarks("ig", "fear", 3, 0, ranking=ranking, available_ids=np.arange(10))


# ---- random ----------------------------------------------------------------------------------------

def test_random_subsets_are_valid_reproducible_and_differ_per_emotion_k_and_seed():
    draws = {}
    for e in EMOTIONS:
        for k in (64, 16):
            for seed in (0, 1, 2):
                ids = P.select_landmarks("random", e, k, seed, available_ids=ALL_IDS)
                assert ids.size == k and np.unique(ids).size == k and np.isin(ids, ALL_IDS).all()
                assert np.array_equal(ids, P.select_landmarks("random", e, k, seed, available_ids=ALL_IDS))
                draws[(e, k, seed)] = tuple(ids)
    assert len(set(draws.values())) == len(draws)


def test_random_subsets_draw_only_from_available_landmarks():
    available = np.arange(100, 200)
    ids = P.select_landmarks("random", "anger", 50, 3, available_ids=available)
    assert np.isin(ids, available).all()
    with pytest.raises(ParamsError, match="cannot draw 120 random landmarks from 100"):
        P.select_landmarks("random", "anger", 120, 3, available_ids=available)


def test_random_subsets_are_the_same_in_another_process():
    """The resumed or reporting process must see the subsets the training process used."""
    here = P.select_landmarks("random", "sadness", 32, 4, available_ids=ALL_IDS).tolist()
    code = ("from emolib.pruning import select_landmarks; import numpy as np; "
            "print(select_landmarks('random', 'sadness', 32, 4, available_ids=np.arange(468)).tolist())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                         env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(here)


def test_random_ignores_the_ranking():
    a = P.select_landmarks("random", "anger", 16, 1, ranking=ranking_for(seed=1), available_ids=ALL_IDS)
    b = P.select_landmarks("random", "anger", 16, 1, ranking=ranking_for(seed=2), available_ids=ALL_IDS)
    assert np.array_equal(a, b)


# ---- what train_models receives -----------------------------------------------------------------

def test_landmark_choice_is_a_dict_for_ig_and_a_function_for_random():
    ranking = ranking_for()
    ig = P.landmark_choice("ig", 16, list(EMOTIONS), ranking=ranking, available_ids=ALL_IDS)
    assert isinstance(ig, dict) and set(ig) == set(EMOTIONS)
    assert ig["happiness"].tolist() == sorted(ranking["happiness"][:16].tolist())
    rnd = P.landmark_choice("random", 16, list(EMOTIONS), ranking=ranking, available_ids=ALL_IDS)
    assert callable(rnd)
    assert np.array_equal(rnd("anger", 2), P.select_landmarks("random", "anger", 16, 2, available_ids=ALL_IDS))
    assert not np.array_equal(rnd("anger", 2), rnd("anger", 3))


def test_selections_follow_the_random_control_switch():
    assert P.pruning_selections(small_params()) == ["ig", "random"]
    assert P.pruning_selections(small_params(random_control=False)) == ["ig"]


# ---- checks before training -------------------------------------------------------------------------

def test_k_not_below_the_landmarks_in_the_data_is_refused():
    data = make_landmark_set(subjects=1, frames=3, n_landmarks=40, flip=False)
    with pytest.raises(ParamsError, match=r"pruning.k: K=\[64\] is not below the 40 landmarks"):
        P.check_pruning_inputs(small_params(), data, ranking_for(), ["ig"])
    # K = 468 on the full landmark set is refused with the parameters, before any data is read.
    with pytest.raises(ParamsError, match=r"pruning.k: .*every K must lie in 1..467"):
        parse_params({"pruning": {"k": [468, 16]}})


def test_bad_rankings_are_refused_naming_the_file_and_emotion():
    data = make_landmark_set(subjects=1, frames=3, flip=False)
    params = small_params()
    ranking = ranking_for()
    P.check_pruning_inputs(params, data, ranking, ["ig", "random"])  # fine
    with pytest.raises(DataError, match=r"landmark_ranking.csv: no ranking for emotion 'surprise'"):
        P.check_pruning_inputs(params, data, {e: r for e, r in ranking.items() if e != "surprise"}, ["ig"])
    short = dict(ranking, fear=ranking["fear"][:20])
    with pytest.raises(DataError, match=r"the ranking of 'fear' holds 20 landmarks .* pruning.k needs 64"):
        P.check_pruning_inputs(params, data, short, ["ig"])
    repeated = dict(ranking, anger=np.concatenate([ranking["anger"], ranking["anger"][:1]]))
    with pytest.raises(DataError, match="repeats landmarks"):
        P.check_pruning_inputs(params, data, repeated, ["ig"])
    with pytest.raises(DataError, match="no landmark ranking"):
        P.check_pruning_inputs(params, data, None, ["ig"])
    P.check_pruning_inputs(params, data, None, ["random"])  # the control alone needs no ranking
    with pytest.raises(ParamsError, match="unknown landmark selection rule"):
        P.check_pruning_inputs(params, data, ranking, ["ig", "shap"])


# ---- results tables --------------------------------------------------------------------------------

def rows(**over):
    base = {c: 0.5 for c in RESULT_COLUMNS}
    base.update(variant="t-emo", emotion="anger", n_landmarks=16, selection="ig", seed=0)
    base.update(over)
    return base


def test_check_pruning_results_finds_missing_models_and_bad_metrics():
    params = parse_params({"emotions": ["anger", "fear"], "seeds": [0], "pruning": {"k": [16], "roar": {"k": []}}},
                          "t")
    full = pd.DataFrame([rows(variant=v, emotion=e, selection=s, accuracy=0.8) for v in VARIANTS
                         for e in ("anger", "fear") for s in ("ig", "random")])
    P.check_pruning_results(full, params)
    with_roar = params.model_copy(update={"pruning": params.pruning.model_copy(
        update={"roar": params.pruning.roar.model_copy(update={"k": [64]})})})
    with pytest.raises(DataError, match="lacks 4 model.*'n_landmarks': 404, 'selection': 'roar'"):
        P.check_pruning_results(full, with_roar)
    roar = pd.DataFrame([rows(variant="t-emo", emotion=e, selection=s, accuracy=0.8, n_landmarks=404)
                         for e in ("anger", "fear") for s in ("roar", "roar_random")])
    P.check_pruning_results(pd.concat([full, roar]), with_roar)
    with pytest.raises(DataError, match="lacks 1 model"):
        P.check_pruning_results(full.iloc[1:], params)
    broken = full.copy()
    broken.loc[0, "accuracy"] = np.nan
    with pytest.raises(DataError, match="NaN"):
        P.check_pruning_results(broken, params)
    broken.loc[0, "accuracy"] = 1.5
    with pytest.raises(DataError, match="outside"):
        P.check_pruning_results(broken, params)


# ---- what the notebook shows ---------------------------------------------------------------------

def test_plan_counts_every_model():
    plan = P.pruning_plan(small_params())
    assert plan[["n_landmarks", "selection"]].to_numpy().tolist() == [[64, "ig"], [64, "random"], [16, "ig"],
                                                                      [16, "random"]]
    assert (plan["models"] == 2 * 6 * 2).all()


def test_subset_regions_count_each_subset_and_its_overlap_with_ig():
    from emolib.regions import REGIONS, region_of

    ranking = ranking_for()
    table = P.subset_regions(small_params(), ranking, ALL_IDS)
    assert len(table) == 6 * 2 * 2
    assert (table[list(REGIONS)].sum(axis=1) == table["n_landmarks"]).all()
    ig = table[(table["selection"] == "ig")]
    assert (ig["overlap_with_ig"] == ig["n_landmarks"]).all()
    row = ig[(ig["emotion"] == "anger") & (ig["n_landmarks"] == 16)].iloc[0]
    regions = region_of(ranking["anger"][:16])
    assert all(row[r] == (regions == r).sum() for r in REGIONS)


def test_load_runs_and_ig_minus_random(tmp_path):
    from emolib.results.tables import accuracy_summary
    from tests.results.test_results import IG_GAIN, RANDOM_LOSS, write_fake_study

    run, params = write_fake_study(tmp_path / "run")
    runs = P.load_runs(run, params)
    assert set(runs["selection"]) == {"all", "ig", "random"}
    table = P.ig_minus_random(accuracy_summary(runs))
    assert len(table) == 2 * 6 * 2
    assert np.allclose(table["ig_minus_random"], IG_GAIN + RANDOM_LOSS)
    assert np.allclose(table["ig"] - table["all"], IG_GAIN)
    no_control = accuracy_summary(runs[runs["selection"] != "random"])
    assert P.ig_minus_random(no_control).empty


# ---- the study, with the training stage (real, tiny models) -------------------------------------

@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    """A run folder with synthetic landmarks of two emotions and a ranking that puts each
    emotion's moving landmarks first; the pruning study trained once (tiny models, 2 epochs)."""
    import emolib  # noqa: F401  (selects tf-keras before TensorFlow loads)
    from emolib.landmarks import save_landmarks
    from emolib.run_folder import RunFolder
    from tests.synthetic import planted_landmarks

    params = parse_params({"name": "tiny", "frames": 3, "emotions": ["happiness", "surprise"], "seeds": [0],
                           "test_fraction": 0.25, "val_fraction": 0.25,
                           "model": {"filters": 2, "lstm_units": 3, "fc_units": 3},
                           "train": {"epochs": 2, "patience": 1, "threads": 1},
                           "grid": {"enabled": False},
                           "pruning": {"k": [8], "roar": {"k": [8], "variants": ["t-emo"]}}}, "tiny")
    run = RunFolder(tmp_path_factory.mktemp("pruning") / "run").ensure()
    data = make_landmark_set(subjects=4, frames=3, emotions=("happiness", "surprise"))
    save_landmarks(run.landmarks, data)
    planted = planted_landmarks()
    ranking = {e: np.concatenate([planted[e], np.setdiff1d(ALL_IDS, planted[e])]) for e in params.emotions}
    table = P.run_pruning(run, params, data, ranking=ranking, progress=False)
    return run, params, data, ranking, table


def test_pruning_trains_each_rule_on_its_subsets(tiny_study):

    run, params, data, ranking, table = tiny_study
    kar = table[table["selection"].isin(["ig", "random"])]
    assert len(kar) == 2 * 2 * 2 * 1  # variants x emotions x rules x seeds
    assert set(kar["n_landmarks"]) == {8}
    # ROAR: T-EMO only, every landmark but 8
    roar = table[~table["selection"].isin(["ig", "random"])]
    assert len(roar) == 1 * 2 * 2 * 1 and set(roar["selection"]) == {"roar", "roar_random"}
    assert set(roar["n_landmarks"]) == {data.n_landmarks - 8} and set(roar["variant"]) == {"t-emo"}
    P.check_pruning_results(table, params, n_available=data.n_landmarks)
    on_disk = pd.read_csv(run.results / "pruning.csv")
    assert len(on_disk) == 12 and not (run.results / "training.csv").exists()  # stage 02's table untouched
    for emotion in params.emotions:
        ig = run.load_trained("r-emo", emotion, 8, "ig", 0)
        assert ig.landmark_ids.tolist() == sorted(ranking[emotion][:8].tolist())
        rnd = run.load_trained("t-emo", emotion, 8, "random", 0)
        assert rnd.landmark_ids.tolist() == P.select_landmarks("random", emotion, 8, 0, available_ids=ALL_IDS).tolist()
        kept = data.n_landmarks - 8
        removed_top = run.load_trained("t-emo", emotion, kept, "roar", 0)
        assert set(removed_top.landmark_ids.tolist()) == set(ALL_IDS.tolist()) - set(ranking[emotion][:8].tolist())
        removed_random = run.load_trained("t-emo", emotion, kept, "roar_random", 0)
        assert set(removed_random.landmark_ids.tolist()) == set(ALL_IDS.tolist()) - set(rnd.landmark_ids.tolist())


def test_roar_rules_keep_all_but_k():
    ranking = ranking_for()
    ids = P.select_landmarks("roar", "anger", 10, 0, ranking=ranking, available_ids=ALL_IDS)
    assert ids.size == ALL_IDS.size - 10 and not set(ids.tolist()) & set(ranking["anger"][:10].tolist())
    rnd = P.select_landmarks("roar_random", "anger", 10, 3, available_ids=ALL_IDS)
    assert set(rnd.tolist()) == set(ALL_IDS.tolist()) - set(P.random_landmarks("anger", 10, 3, None, ALL_IDS).tolist())
    assert P.SELECTION_RULES["roar"].removes and P.SELECTION_RULES["roar_random"].per_seed
    params = small_params(roar={"k": [32], "variants": ["t-emo"]})
    assert P.roar_selections(params) == ["roar", "roar_random"]
    plan = P.pruning_plan(params)
    roar = plan[plan["selection"].str.startswith("roar")]
    assert roar[["n_landmarks", "removed"]].to_numpy().tolist() == [[436, 32], [436, 32]]
    assert (roar["models"] == 1 * 6 * 2).all() and (roar["variants"] == "t-emo").all()
    assert P.roar_selections(small_params()) == []
    with pytest.raises(ParamsError):
        parse_params({"pruning": {"roar": {"k": [468]}}})


def test_pruning_resumes_and_trains_only_what_is_new(tiny_study):
    run, params, data, ranking, table = tiny_study
    models = sorted(p for p in run.models.rglob("*") if p.is_file())
    stamps = {p: p.stat().st_mtime_ns for p in models}
    again = P.run_pruning(run, params, data, ranking=ranking, progress=False)
    assert {p: p.stat().st_mtime_ns for p in models} == stamps  # nothing retrained
    pd.testing.assert_frame_equal(again, table)
    more = params.model_copy(update={"pruning": params.pruning.model_copy(update={"k": [8, 4]})})
    grown = P.run_pruning(run, more, data, ranking=ranking, selections=["ig"], progress=False)
    assert {p: p.stat().st_mtime_ns for p in models} == stamps
    assert sorted(set(grown["n_landmarks"])) == [4, 8] and len(grown[grown["n_landmarks"] == 4]) == 4


def test_pruning_refuses_bad_settings_before_training(tiny_study, tmp_path):
    from emolib.run_folder import RunFolder

    _, params, data, ranking, _ = tiny_study
    empty = RunFolder(tmp_path / "run").ensure()
    with pytest.raises(DataError, match="no ranking for emotion 'surprise'"):
        P.run_pruning(empty, params, data, ranking={"happiness": ranking["happiness"]}, progress=False)
    with pytest.raises(DataError, match="landmark_ranking.csv: no landmark ranking"):
        P.run_pruning(empty, params, data, progress=False)
    assert not any(empty.models.iterdir())
