"""Training protocol: partitions, checks before training, resume, seed reproducibility, grid
search, the frozen R-EMO convolution after a real fit, model inputs for stage 03, SVM baselines.

Everything runs at a tiny size (3 emotions, 6 subjects, 3 frames, 24 landmarks, a model of a few
hundred weights, a few epochs) so that the file takes well under a minute.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import emolib  # noqa: F401  (selects tf-keras before TensorFlow loads)
from emolib import training, vocab
from emolib.config import parse_params, set_dotted
from emolib.errors import DataError, EmolibError, ParamsError
from emolib.landmarks import LandmarkSet
from emolib.models import configure_tensorflow, conv_weights, initial_weights, model_inputs, scale_inputs
from emolib.results.tables import cost_summary
from emolib.run_folder import RunFolder
from emolib.training import fit
from emolib.training import inputs as training_inputs
from tests.synthetic import make_landmark_set, planted_landmarks

configure_tensorflow(threads=1)

EMOTIONS = ["anger", "happiness", "surprise"]
FRAMES = 3


def tiny_params(**overrides):
    raw = {
        "name": "tiny", "frames": FRAMES, "emotions": EMOTIONS, "seeds": [0],
        "split": "subject", "test_fraction": 0.25, "val_fraction": 0.25,
        "model": {"filters": 2, "lstm_units": 3, "fc_units": 3},
        "train": {"epochs": 3, "patience": 2, "learning_rate": 0.01, "threads": 1},
        "grid": {"enabled": False, "filters": [2, 3], "lstm_units": [3], "fc_units": [3]},
    }
    for key, value in overrides.items():
        set_dotted(raw, key.split("__"), value)
    return parse_params(raw, "<test>")


def easy_data(subjects=6, amplitude=0.08, n_landmarks=None, seed=0) -> LandmarkSet:
    """Synthetic set whose emotions move their planted landmarks in a consistent direction, kept
    to those landmarks plus a few others (small inputs, an easy signal)."""
    data = make_landmark_set(subjects=subjects, frames=FRAMES, emotions=EMOTIONS, seed=seed)
    planted = planted_landmarks()
    ramp = np.linspace(0.0, 1.0, FRAMES)[:, None]
    for i, e in enumerate(data.emotion):
        data.X[i][:, 1, planted[e]] += amplitude * ramp
    ids = np.sort(np.concatenate([planted[e][:6] for e in EMOTIONS] + [np.arange(6)]))
    if n_landmarks is not None:
        ids = ids[:n_landmarks]
    return data.select_landmarks(ids)


@pytest.fixture(scope="module")
def data() -> LandmarkSet:
    return easy_data()


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory, data):
    """One finished stage-02 call (2 seeds, both variants), shared by the read-only tests."""
    run = RunFolder(tmp_path_factory.mktemp("trained")).ensure()
    params = tiny_params(seeds=[0, 1])
    table = training.train_models(run, params, data, progress=False)
    return run, params, table


# ---- partitions -----------------------------------------------------------------------------
def test_subject_split_is_subject_disjoint_and_stratified(data):
    params = tiny_params(seeds=[0, 1, 2])
    splits = training.make_splits(data, params)
    assert list(splits.columns) == list(vocab.SPLIT_COLUMNS)
    for seed in (0, 1, 2):
        rows = splits[splits["seed"] == seed]
        assert len(rows) == len(data)
        assert rows.groupby("subject")["part"].nunique().max() == 1
        assert rows.groupby("sequence")["part"].nunique().max() == 1  # flipped copy with original
        for part in vocab.PARTS:
            assert set(rows.loc[rows["part"] == part, "emotion"]) == set(EMOTIONS)
        # 6 subjects: test 25% -> 2 subjects (rounded from 1.5 the closer way), val 1, train 3
        counts = rows.groupby("part")["subject"].nunique()
        assert counts["test"] in (1, 2) and counts["val"] >= 1 and counts["train"] >= 3
    parts = {s: RunFolder.split_parts(splits, s)["test"].tolist() for s in (0, 1, 2)}
    assert len({tuple(v) for v in parts.values()}) > 1  # seeds draw their own partitions
    again = training.make_splits(data, params)
    pd.testing.assert_frame_equal(splits, again)  # and the same seed draws the same one


def test_random_split_keeps_flipped_copies_together(data):
    params = tiny_params(split="random", seeds=[0])
    rows = training.make_splits(data, params)
    assert rows.groupby("sequence")["part"].nunique().max() == 1
    # by sequence, not by subject: some subject lands in more than one part
    assert rows.groupby("subject")["part"].nunique().max() > 1
    test_share = (rows["part"] == "test").mean()
    assert 0.15 <= test_share <= 0.35


def test_emotion_with_too_few_samples_is_refused(tmp_path, data):
    keep = ~((data.emotion == "anger") & ~np.isin(data.subject, ["S000", "S001"]))
    few = data.subset(keep)
    run = RunFolder(tmp_path).ensure()
    with pytest.raises(DataError, match="'anger'.*too few samples"):
        training.train_models(run, tiny_params(), few, progress=False)
    assert not any(run.models.iterdir()) and not (run.results / "training.csv").exists()


def test_too_few_subjects_for_subject_split(tmp_path, data):
    two = data.subset(np.isin(data.subject, ["S000", "S001"]))
    with pytest.raises(DataError, match="at least 3 subjects"):
        training.train_models(RunFolder(tmp_path).ensure(), tiny_params(), two, progress=False)
    # three subjects are enough
    three = data.subset(np.isin(data.subject, ["S000", "S001", "S002"]))
    rows = training.make_splits(three, tiny_params())
    assert rows.groupby("part")["subject"].nunique().to_dict() == {"test": 1, "train": 1, "val": 1}


def test_impossible_grid_value_is_refused(tmp_path, data):
    params = tiny_params(grid__enabled=True)
    bad = params.model_copy(update={"grid": params.grid.model_copy(update={"lstm_units": [3, 0]})})
    run = RunFolder(tmp_path).ensure()
    with pytest.raises(ParamsError, match=r"grid.lstm_units: \[0\] impossible"):
        training.train_models(run, bad, data, progress=False)
    assert not any(run.models.iterdir())


def test_landmark_id_out_of_range_is_refused(tmp_path, data):
    ids = {e: data.landmark_ids[:4] for e in EMOTIONS}
    ids["happiness"] = np.array([data.landmark_ids[0], 467, 999, data.landmark_ids[1]])
    run = RunFolder(tmp_path).ensure()
    with pytest.raises(DataError, match="'happiness'.*out of range"):
        training.train_models(run, tiny_params(), data, landmark_ids=ids, progress=False)
    with pytest.raises(ParamsError, match="same number K"):
        training.train_models(run, tiny_params(), data, progress=False,
                              landmark_ids={e: data.landmark_ids[:4 + i] for i, e in enumerate(EMOTIONS)})
    with pytest.raises(ParamsError, match="no subset for emotion 'surprise'"):
        training.train_models(run, tiny_params(), data, progress=False,
                              landmark_ids={e: data.landmark_ids[:4] for e in EMOTIONS[:2]})
    assert not any(run.models.iterdir())


def test_frames_mismatch_is_refused(tmp_path, data):
    with pytest.raises(DataError, match="frames"):
        training.train_models(RunFolder(tmp_path).ensure(), tiny_params(frames=4), data, progress=False)


# ---- scaling, class weights, metrics ---------------------------------------------------------
def test_scaler_uses_training_statistics(data):
    train = data.X[:20]
    mean, std = training_inputs.fit_scaler(train, "standardize")
    assert mean.shape == std.shape == (2, data.n_landmarks)
    scaled = scale_inputs(train, mean, std)
    assert scaled.shape == train.shape + (1,) and scaled.dtype == np.float32
    np.testing.assert_allclose(scaled.mean(axis=(0, 1, 4)), 0, atol=1e-4)
    np.testing.assert_allclose(scaled.std(axis=(0, 1, 4)), 1, atol=1e-3)
    mean0, std0 = training_inputs.fit_scaler(train, "none")
    np.testing.assert_array_equal(scale_inputs(train, mean0, std0)[..., 0], train)


def test_global_scaler_keeps_the_features_relative_sizes(data):
    """``global``: per-feature means, one pooled standard deviation; a feature that moves ten
    times more than another still does after scaling (``standardize`` would make them equal)."""
    train = np.asarray(data.X[:20], np.float64).copy()
    train[:, :, 0, 1] = train[:, :, 0, 0] * 10.0
    mean, std = training_inputs.fit_scaler(train, "global")
    np.testing.assert_allclose(mean, train.mean(axis=(0, 1)), rtol=1e-5, atol=1e-6)
    assert np.all(std == std.flat[0])
    np.testing.assert_allclose(std.flat[0], np.sqrt((train.std(axis=(0, 1)) ** 2).mean()), rtol=1e-5)
    scaled = scale_inputs(train, mean, std)[..., 0]
    np.testing.assert_allclose(scaled.std(axis=(0, 1))[0, 1] / scaled.std(axis=(0, 1))[0, 0], 10.0, rtol=1e-4)
    np.testing.assert_allclose((scaled.std(axis=(0, 1)) ** 2).mean(), 1.0, rtol=1e-4)
    with pytest.raises(ParamsError, match="global"):
        training_inputs.fit_scaler(train, "pooled")


def test_balanced_class_weights_equalise_totals():
    y = np.array([0] * 10 + [1] * 2)
    w = training_inputs.class_weights(y, "balanced")
    assert w[0] * 10 == pytest.approx(w[1] * 2)
    np.testing.assert_array_equal(training_inputs.class_weights(y, "none"), [1, 1])


def test_binary_metrics():
    m = fit.binary_metrics(np.array([0, 0, 0, 1]), np.array([0.1, 0.2, 0.9, 0.8]))
    assert m["accuracy"] == 0.75 and m["majority_accuracy"] == 0.75
    assert m["balanced_accuracy"] == pytest.approx((2 / 3 + 1) / 2)
    assert m["roc_auc"] == pytest.approx(2 / 3)
    assert np.isnan(fit.binary_metrics(np.zeros(3), np.full(3, 0.2))["roc_auc"])


# ---- training ---------------------------------------------------------------------------------
def test_train_models_writes_the_contract(trained_run, data):
    run, params, table = trained_run
    assert set(vocab.RESULT_COLUMNS) <= set(table.columns)
    assert len(table) == 2 * len(EMOTIONS) * 2
    assert set(table["n_landmarks"]) == {data.n_landmarks} and set(table["selection"]) == {"all"}
    for col in ("accuracy", "balanced_accuracy", "f1", "majority_accuracy"):
        assert table[col].between(0, 1).all()
    assert (table["epochs"] >= 1).all() and (table["epochs"] <= params.train.epochs).all()
    assert (table["trainable_params"] < table["params"]).all()
    r = table[table["variant"] == "r-emo"]["trainable_params"].iloc[0]
    t = table[table["variant"] == "t-emo"]["trainable_params"].iloc[0]
    assert t - r == 2 * 3 * 2 + 2  # R-EMO does not train the conv kernel and bias
    history = run.read_history()
    assert set(vocab.HISTORY_COLUMNS) <= set(history.columns)
    assert len(history) == table["epochs"].sum()
    splits = run.read_splits()
    assert set(splits["seed"]) == {0, 1}
    assert training.check_training_outputs(run, params.model_copy(update={"svm": params.svm.model_copy(
        update={"enabled": False})}), data).shape[0] == len(table)
    for _, row in table.iterrows():
        path = run.model(row["variant"], row["emotion"], row["n_landmarks"], "all", row["seed"])
        assert path.is_file() and path.with_suffix(".npz").is_file() and path.with_suffix(".json").is_file()


def test_model_inputs_rebuild_the_exact_test_predictions(trained_run, data):
    run, params, table = trained_run
    splits = run.read_splits()
    row = table[(table["variant"] == "t-emo") & (table["emotion"] == "happiness") & (table["seed"] == 1)].iloc[0]
    trained = run.load_trained("t-emo", "happiness", data.n_landmarks, "all", 1)
    assert trained.hyper == (2, 3, 3) and list(trained.landmark_ids) == list(data.landmark_ids)
    parts = RunFolder.split_parts(splits, 1)
    # the scaler holds the training part's statistics
    mean, std = training_inputs.fit_scaler(data.X[parts["train"]], "standardize")
    np.testing.assert_allclose(trained.mean, mean, rtol=1e-6)
    x = model_inputs(data.subset(parts["test"]), trained)
    assert x.shape == (len(parts["test"]), FRAMES, 2, data.n_landmarks, 1) and x.dtype == np.float32
    prob = trained.model.predict(x, verbose=0)[:, 1]
    y = data.emotion[parts["test"]] == "happiness"
    assert fit.binary_metrics(y, prob)["accuracy"] == pytest.approx(row["accuracy"])
    with pytest.raises(DataError, match="not found"):
        run.load_trained("t-emo", "happiness", data.n_landmarks, "all", 7)


def test_first_frame_reference_reaches_the_inputs_of_stage_03(tmp_path, data):
    run = RunFolder(tmp_path).ensure()
    params = tiny_params(data__reference="first_frame")
    training.train_models(run, params, data, variants=("r-emo",), progress=False)
    trained = run.load_trained("r-emo", "anger", data.n_landmarks, "all", 0)
    assert trained.reference == "first_frame"
    parts = RunFolder.split_parts(run.read_splits(), 0)
    moves = data.X - data.X[:, :1]
    mean, std = training_inputs.fit_scaler(moves[parts["train"]], "standardize")
    np.testing.assert_allclose(trained.mean, mean, rtol=1e-5, atol=1e-7)
    x = model_inputs(data, trained)
    np.testing.assert_allclose(x[..., 0], (moves - mean) / std, rtol=1e-5, atol=1e-6)
    # the first frame is the reference: every sample starts from the same (scaled) zero
    np.testing.assert_allclose(x[:, 0], np.broadcast_to(x[:1, 0], x[:, 0].shape))


def test_r_emo_convolution_unchanged_after_training(trained_run, data):
    run, _, table = trained_run
    for seed in (0, 1):
        r = run.load_trained("r-emo", "anger", data.n_landmarks, "all", seed)
        t = run.load_trained("t-emo", "anger", data.n_landmarks, "all", seed)
        start = initial_weights(r.model, seed)[:2]  # conv kernel and bias come first
        assert all(np.array_equal(a, b) for a, b in zip(conv_weights(r.model), start))
        assert not np.array_equal(conv_weights(t.model)[0], start[0])


def test_resume_skips_finished_models_and_redoes_changed_ones(trained_run, data):
    run, params, table = trained_run
    path = run.model("t-emo", "anger", data.n_landmarks, "all", 0)
    stamp = path.stat().st_mtime_ns
    again = training.train_models(run, params, data, progress=False)
    assert path.stat().st_mtime_ns == stamp
    pd.testing.assert_frame_equal(again, table)
    # A half-finished unit (record missing) fails the stage's check, and is trained again;
    # the others are kept.
    path.with_suffix(".json").unlink()
    no_svm = params.model_copy(update={"svm": params.svm.model_copy(update={"enabled": False})})
    with pytest.raises(EmolibError, match="missing"):
        training.check_training_outputs(run, no_svm, data)
    training.train_models(run, params, data, variants=("t-emo",), progress=False)
    assert path.stat().st_mtime_ns != stamp
    other = run.model("t-emo", "anger", data.n_landmarks, "all", 1)
    stamp_other = other.stat().st_mtime_ns
    # A parameter that shapes the model (dropout) redoes it.
    changed = tiny_params(seeds=[0, 1], model__dropout=0.2)
    training.train_models(run, changed, data, variants=("t-emo",), progress=False)
    assert other.stat().st_mtime_ns != stamp_other
    training.train_models(run, params, data, progress=False)  # leave the fixture as it was


def test_same_seed_same_model_whatever_ran_before(tmp_path, data):
    """Seed 1 trained alone in a new folder equals seed 1 trained after seed 0 and other emotions,
    bit for bit, with banks of one unit (in a larger bank the last bits depend on the bank's other
    units: tests/training/test_bank.py)."""
    run = RunFolder(tmp_path / "both").ensure()
    training.train_models(run, tiny_params(seeds=[0, 1], train__bank_size=1), data, progress=False)
    alone = RunFolder(tmp_path / "alone").ensure()
    params1 = tiny_params(seeds=[1], train__bank_size=1)
    training.train_models(alone, params1, data, variants=("r-emo", "t-emo"), progress=False)
    for variant in ("t-emo", "r-emo"):
        a = run.load_trained(variant, "surprise", data.n_landmarks, "all", 1)
        b = alone.load_trained(variant, "surprise", data.n_landmarks, "all", 1)
        assert all(np.array_equal(x, y) for x, y in zip(a.model.get_weights(), b.model.get_weights()))
        assert a.record["history"] == b.record["history"]
        assert a.record["row"]["accuracy"] == b.record["row"]["accuracy"]
    # and another seed gives another model
    c = run.load_trained("t-emo", "surprise", data.n_landmarks, "all", 0)
    assert not np.array_equal(c.model.get_weights()[0], a.model.get_weights()[0])


def test_landmark_subsets_per_emotion_and_per_seed(tmp_path, data):
    run = RunFolder(tmp_path).ensure()
    params = tiny_params(seeds=[0, 1])
    ids = data.landmark_ids
    chosen = {e: ids[i:i + 5] for i, e in enumerate(EMOTIONS)}
    table = training.train_models(run, params, data, selection="ig", landmark_ids=chosen,
                                  variants=("t-emo",), results_csv=run.results / "pruning.csv",
                                  progress=False)
    assert set(table["n_landmarks"]) == {5} and set(table["selection"]) == {"ig"}
    assert (run.results / "pruning_history.csv").is_file()
    loaded = run.load_trained("t-emo", "happiness", 5, "ig", 1)
    np.testing.assert_array_equal(loaded.landmark_ids, chosen["happiness"])
    assert model_inputs(data, loaded).shape[3] == 5

    def per_seed(emotion, seed):
        return np.random.default_rng(seed).choice(ids, 5, replace=False)

    table = training.train_models(run, params, data, selection="random", landmark_ids=per_seed,
                                  variants=("t-emo",), results_csv=run.results / "pruning.csv",
                                  progress=False)
    assert set(table["selection"]) == {"ig", "random"}  # rows of both calls kept
    a = run.load_trained("t-emo", "anger", 5, "random", 0).landmark_ids
    b = run.load_trained("t-emo", "anger", 5, "random", 1).landmark_ids
    np.testing.assert_array_equal(a, per_seed("anger", 0))
    assert not np.array_equal(np.sort(a), np.sort(b))


def test_grid_search_picks_best_validation_accuracy_and_r_emo_reuses_it(tmp_path, data):
    run = RunFolder(tmp_path).ensure()
    params = tiny_params(seeds=[0], grid__enabled=True, grid__seed=0)
    table = training.train_models(run, params, data, progress=False)
    grid = pd.read_csv(run.results / "grid_search.csv")
    hyper = pd.read_csv(run.results / "hyperparameters.csv")
    assert list(hyper.columns) == list(vocab.HYPER_COLUMNS)
    assert len(grid) == 2 * len(EMOTIONS) and len(hyper) == len(EMOTIONS)
    for e in EMOTIONS:
        g = grid[grid["emotion"] == e]
        assert g["chosen"].sum() == 1
        best = g[g["chosen"]].iloc[0]
        assert best["val_accuracy"] == g["val_accuracy"].max()
        h = hyper[hyper["emotion"] == e].iloc[0]
        assert h["filters"] == best["filters"] and h["n_landmarks"] == data.n_landmarks
        for variant in ("t-emo", "r-emo"):
            row = table[(table["variant"] == variant) & (table["emotion"] == e)].iloc[0]
            assert (row["filters"], row["lstm_units"], row["fc_units"]) == (
                best["filters"], best["lstm_units"], best["fc_units"])
        # the grid seed's T-EMO model is the grid's own run of the chosen values (not retrained)
        t_row = table[(table["variant"] == "t-emo") & (table["emotion"] == e)].iloc[0]
        assert t_row["val_accuracy"] == pytest.approx(best["val_accuracy"])


def test_models_beat_the_majority_on_an_easy_signal(tmp_path):
    data = easy_data(subjects=8, amplitude=0.15)
    params = tiny_params(seeds=[0], train__epochs=25, train__patience=8, model__lstm_units=4)
    table = training.train_models(RunFolder(tmp_path).ensure(), params, data, progress=False)
    assert table["balanced_accuracy"].mean() > 0.75
    assert (table["accuracy"] > table["majority_accuracy"]).mean() >= 0.5


# ---- SVM baselines ----------------------------------------------------------------------------
def test_svm_baselines(tmp_path, data):
    run = RunFolder(tmp_path).ensure()
    params = tiny_params(seeds=[0, 1])
    svm = training.train_svms(run, params, data, progress=False)
    on_disk = pd.read_csv(run.results / "svm.csv")
    assert set(vocab.SVM_COLUMNS) <= set(on_disk.columns) and "paper_accuracy" in on_disk
    assert len(svm) == 2 * len(EMOTIONS) * 2
    assert set(svm["kernel"]) == {"linear", "rbf"}
    assert svm["accuracy"].between(0, 1).all()
    # same partitions as the networks: train + val for fitting, the test part for scoring
    parts = RunFolder.split_parts(run.read_splits(), 0)
    assert (svm[svm["seed"] == 0]["n_test"] == len(parts["test"])).all()
    linear = svm[svm["kernel"] == "linear"]
    assert linear["balanced_accuracy"].mean() > 0.7  # the planted signal is linear
    rbf_surprise = (on_disk["kernel"] == "rbf") & (on_disk["emotion"] == "surprise")
    assert on_disk.loc[rbf_surprise, "paper_accuracy"].iloc[0] == 1.0


def test_summaries(trained_run):
    _, _, table = trained_run
    from emolib.results import accuracy_summary  # what stages 04 and 05 summarise with

    summary = accuracy_summary(table, "balanced_accuracy")
    assert set(summary.columns) >= {"variant", "emotion", "mean", "std", "n_seeds"}
    assert (summary["n_seeds"] == 2).all() and len(summary) == 2 * len(EMOTIONS)
    cost = cost_summary(table)
    assert set(cost["variant"]) == {"t-emo", "r-emo"}
    assert (cost["seconds_per_epoch"] > 0).all()
