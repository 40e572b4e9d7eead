"""Stage 03: typical baselines, the global landmark importance on a run folder, its diagnostics and
the ground-truth scores of its ranking."""
from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import tensorflow as tf

import emolib  # noqa: F401  (selects tf-keras before TensorFlow loads)

try:  # keep TensorFlow light on a shared 2-core machine; fails once TF is already running
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
except RuntimeError:
    pass

from emolib import ig, rankings
from emolib.errors import DataError, ParamsError
from emolib.explain import diagnostics as D
from emolib.explain import global_importance as G
from emolib.explain import typical as T
from emolib.regions import region_importance
from emolib.report.html import save_figure

P, L = 3, 6  # frames, landmarks of the tiny test models

def test_rank_select_and_typical():
    np.testing.assert_array_equal(ig.rank_landmarks(np.array([0.1, 0.5, 0.1, 0.9]), [10, 11, 12, 13]),
                                  [13, 11, 10, 12])
    cand = np.arange(100, 140)
    a = G.select_explained(cand, 5, seed=0, emotion="anger")
    assert len(a) == 5 and set(a) <= set(cand) and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(a, G.select_explained(cand[::-1], 5, seed=0, emotion="anger"))
    assert not np.array_equal(a, G.select_explained(cand, 5, seed=1, emotion="anger"))
    np.testing.assert_array_equal(G.select_explained(cand, None, 0, "anger"), cand)
    inputs = np.array([[0.0, 0.0], [1.0, 1.0], [10.0, 10.0], [1.2, 1.0]])
    assert T.typical_sample(inputs, "most_confident", np.array([0.2, 0.9, 0.5, 0.1])) == (1, 0.9)
    pos, dist = T.typical_sample(inputs, "medoid")  # mean is (3.05, 3.0): (1.2, 1.0) is closest
    assert pos == 3 and math.isclose(dist, math.hypot(1.85, 2.0))
    with pytest.raises(ParamsError, match="centroid"):
        T.typical_sample(inputs, "centroid")
    with pytest.raises(ParamsError, match=r"ig.typical 'mean' is unknown.*centroid"):
        T.typical_sample(inputs, "mean")
    with pytest.raises(ParamsError, match="ig.typical 'mean' is unknown"):
        T.choose_typical("anger", np.arange(4), inputs, "mean")


def test_centroid_baseline_is_the_mean_input_under_the_explaining_model():
    """A centroid averages the candidates' inputs under whichever model is explained (each
    model scales with its own statistics); a real video's baseline is its own input."""
    from emolib.landmarks import LandmarkSet
    from emolib.models import TrainedModel, model_inputs

    r = np.random.default_rng(5)
    n = 7
    data = LandmarkSet(r.normal(size=(n, 3, 2, 4)).astype(np.float32), np.array(["anger"] * 4 + ["fear"] * 3),
                       np.array(["s"] * n), np.arange(n).astype(str), np.zeros(n, bool), np.arange(4))

    def scaled(d, trained):  # per-model scaling, by hand
        return ((d.X - trained.mean) / trained.std)[..., None].astype(np.float32)

    ids = np.arange(4)
    m1 = TrainedModel(model=None, landmark_ids=ids, mean=np.float32(0.5), std=np.float32(2.0), hyper=(1, 1, 1))
    m2 = TrainedModel(model=None, landmark_ids=ids, mean=np.float32(-1.0), std=np.float32(0.25), hyper=(1, 1, 1))
    np.testing.assert_array_equal(model_inputs(data, m1), scaled(data, m1))
    rows = np.array([6, 4, 5])
    own = scaled(data.subset(rows), m2)
    centroid = T.choose_typical("fear", rows, own, "centroid")
    assert not centroid.is_video and centroid.sample == -1
    np.testing.assert_array_equal(centroid.rows, [4, 5, 6])
    flat = own.reshape(3, -1).astype(np.float64)
    assert math.isclose(centroid.score, np.linalg.norm(flat - flat.mean(axis=0), axis=1).mean(), rel_tol=1e-6)
    assert centroid.describe(data) == "centroid of 3 samples"
    video = T.choose_typical("anger", np.arange(4), scaled(data.subset(np.arange(4)), m1),
                             "most_confident", np.array([0.1, 0.2, 0.9, 0.3]))
    assert video.is_video and video.sample == 2 and video.score == 0.9 and video.describe(data) == "2"
    for trained in (m1, m2):
        bases = T.typical_inputs([centroid, video], data, trained)
        assert bases.shape == (2, 3, 2, 4, 1) and bases.dtype == np.float32
        np.testing.assert_allclose(bases[0], scaled(data.subset(rows), trained).mean(axis=0), rtol=1e-6)
        np.testing.assert_array_equal(bases[1], scaled(data.subset(np.array([2])), trained)[0])
    assert not np.allclose(T.typical_inputs([centroid], data, m1), T.typical_inputs([centroid], data, m2))
    # the cache key: a real video's row (as before), a centroid's strategy, count and rows
    assert video.key == 2
    assert centroid.key["strategy"] == "centroid" and centroid.key["n"] == 3
    other = T.TypicalBaseline("fear", "centroid", np.array([4, 5]))
    assert other.key != centroid.key


def test_displacement_ranking_finds_what_moves_and_scores_beside_ig():
    """The model-free reference: landmarks that move most between first and last frame first,
    in face units (so a bigger face does not move more), scored in the recovery table."""
    from emolib.landmarks import LandmarkSet

    r = np.random.default_rng(3)
    n, frames, ids = 6, 4, np.arange(300)
    X = np.repeat(r.uniform(0.2, 0.8, size=(n, 1, 2, 300)), frames, axis=1)
    X[:, :, 0, 263] = X[:, :, 0, 33] + 0.2                     # eye corners 0.2 apart ...
    X[3:] *= 2.0                                              # ... or 0.4 on a bigger face
    X[:3, -1, 1, [10, 11, 12]] += 0.02                       # anger moves 10-12, fear 20-21
    X[3:, -1, 1, [20, 21]] += np.array([0.04, 0.02])         # on the 2x face: 0.1 and 0.05 face units
    emotion = np.array(["anger"] * 3 + ["fear"] * 3)
    data = LandmarkSet(X.astype(np.float32), emotion, np.array(["s"] * n), np.arange(n).astype(str),
                       np.zeros(n, bool), ids)
    ranked = rankings.displacement_ranking(data, ["anger", "fear", "sadness"])
    assert set(ranked) == {"anger", "fear"}                 # no sadness samples: left out
    assert set(ranked["anger"][:3].tolist()) == {10, 11, 12}
    assert ranked["fear"][:2].tolist() == [20, 21]
    table = rankings.planted_recovery({"anger": ids[::-1], "fear": ids}, {"anger": np.array([10, 11, 12, 13])},
                               reference=ranked).set_index("emotion")
    assert list(table.index) == ["anger"]
    assert table.loc["anger", "reference_hits_top_planted"] == 3   # 10, 11, 12 of the top 4
    assert math.isclose(table.loc["anger", "reference_recall"], 0.75)
    assert table.loc["anger", "hits_top_planted"] == 0


def test_planted_recovery_and_agreement():
    ranking = {"anger": np.array([5, 1, 7, 2, 9, 0, 3, 4, 6, 8]), "fear": np.arange(10)}
    truth = {"anger": np.array([1, 2, 3]), "fear": np.array([8, 9])}
    table = rankings.planted_recovery(ranking, truth, top=4).set_index("emotion")
    assert table.loc["anger", "planted"] == 3
    assert table.loc["anger", "hits_top_planted"] == 1   # top 3 = 5, 1, 7
    assert table.loc["anger", "hits_top4"] == 2          # top 4 adds 2
    assert math.isclose(table.loc["anger", "chance_top_planted"], 0.9)
    assert math.isclose(table.loc["anger", "chance_top4"], 1.2)
    assert table.loc["fear", "hits_top_planted"] == 0
    masks = np.array([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0], [4.0, 3.0, 2.0, 1.0]])
    rho = D.baseline_agreement(masks)
    np.testing.assert_allclose(rho[0, 1], 1.0)
    np.testing.assert_allclose(rho[0, 2], -1.0)
    table = D.agreement_table({"anger": {"per_baseline": masks}})
    assert math.isclose(table.loc[0, "mean_spearman"], (1 - 1 - 1) / 3)


# ---- the stage on a synthetic run with stage 02's real (tiny) models ---------------------------

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A synthetic run (planted landmarks, ground truth) with tiny T-EMO models of seed 0."""
    import yaml

    from emolib.landmarks import load_landmarks
    from emolib.models import configure_tensorflow
    from emolib.run_folder import open_run
    from emolib.training import train_models
    from tests.synthetic import write_synthetic_run

    root = tmp_path_factory.mktemp("ig_stage")
    raw = {"name": "ig-test", "data": {"source": "demo"}, "frames": 4, "seeds": [0],
           "split": "subject", "test_fraction": 0.25, "val_fraction": 0.2,
           "model": {"filters": 2, "lstm_units": 4, "fc_units": 4},
           "train": {"epochs": 15, "batch_size": 16, "learning_rate": 0.01, "patience": 50, "threads": 1},
           "grid": {"enabled": False}, "svm": {"enabled": False},
           "ig": {"steps": 8, "batch_size": 256}}
    (root / "params.yaml").write_text(yaml.safe_dump(raw))
    run_dir = write_synthetic_run(root / "run", root / "params.yaml", subjects=6, frames=4)
    run, params = open_run(run_dir)
    configure_tensorflow(1)
    data = load_landmarks(run.landmarks)
    train_models(run, params, data, variants=("t-emo",), progress=False)
    result = G.global_landmark_importance(run, params, data, progress=False)
    return run, params, data, result


def test_stage_writes_the_contract(trained_run):
    run, params, data, result = trained_run
    D.check_global_importance(run, params)
    assert result.computed == list(params.emotions)
    for e in params.emotions:
        m = run.read_masks(e)
        assert m["per_baseline"].shape == (5, 468) and m["global"].shape == (468,)
        assert list(m["baseline_emotions"]) == [b for b in params.emotions if b != e]
        np.testing.assert_array_equal(m["landmark_ids"], np.arange(468))
        # positives: the training samples of e (none capped: max_samples is None)
        train = np.asarray(result.explained[e])
        assert int(m["n_samples"]) == len(train) > 0 and set(data.emotion[train]) == {e}
    typical = pd.read_csv(run.attributions / "typical.csv")
    assert list(typical.columns) == ["emotion", "sample", "sequence", "strategy", "score"]
    ranking = pd.read_csv(run.results / "landmark_ranking.csv")
    assert list(ranking.columns) == ["emotion", "rank", "landmark", "importance", "region"]
    comp = pd.read_csv(run.results / "completeness.csv")
    assert list(comp.columns) == ["emotion", "baseline_emotion", "steps", "mean_abs_gap", "max_abs_gap",
                                  "mean_abs_delta"]
    assert len(comp) == 30 and (comp["steps"] == 8).all()
    order = run.read_ranking()
    assert set(order) == set(params.emotions)
    for e, ids in order.items():
        assert sorted(ids) == list(range(468))
        np.testing.assert_array_equal(ids, ig.rank_landmarks(run.read_masks(e)["global"], np.arange(468)))


def test_stage_per_baseline_masks_match_a_hand_computation(trained_run):
    """Stored per-baseline masks = mean over samples of |IG| summed over frames and x/y, with
    the typical video of the other emotion as the baseline; global = their mean."""
    from emolib.models import model_inputs

    run, params, data, result = trained_run
    e = "happiness"
    trained = result.trained[e]
    m = run.read_masks(e)
    typical = result.typical_of
    x = model_inputs(data.subset(m["samples"]), trained)
    for j, b in enumerate(m["baseline_emotions"]):
        base = model_inputs(data.subset(np.array([typical[str(b)]])), trained)[0]
        ig_one = ig.integrated_gradients(trained.model, x, base, steps=params.ig.steps).attributions
        by_hand = np.abs(ig_one[..., 0]).sum(axis=(1, 2)).mean(axis=0)
        np.testing.assert_allclose(m["per_baseline"][j], by_hand, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(m["global"], m["per_baseline"].mean(axis=0))


def test_stage_typical_is_the_most_confident_training_sample(trained_run):
    from emolib.models import model_inputs

    run, params, data, result = trained_run
    train = run.split_parts(run.read_splits(), params.ig_seed)["train"]
    for e in ("anger", "surprise"):
        trained = result.trained[e]
        own = train[data.emotion[train] == e]
        probs = trained.model(model_inputs(data.subset(own), trained), training=False).numpy()[:, 1]
        assert result.typical_of[e] == own[int(np.argmax(probs))]
        row = result.typical.set_index("emotion").loc[e]
        assert math.isclose(row["score"], float(probs.max()), rel_tol=1e-5)
        assert row["sequence"] == data.sequence[result.typical_of[e]]


def test_stage_recovers_planted_landmarks(trained_run):
    """The synthetic data moves 20 known landmarks per emotion: the ranking finds them well
    above chance even with these tiny, briefly trained models."""
    run, params, data, result = trained_run
    truth = run.read_ground_truth()
    table = rankings.planted_recovery({e: result.order(e) for e in params.emotions}, truth, top=64)
    assert len(table) == 6
    assert table["hits_top64"].sum() >= 2.5 * table["chance_top64"].sum()
    assert (table["hits_top64"] > table["chance_top64"]).sum() >= 5


def test_stage_is_cached_and_redone_when_parameters_change(trained_run, tmp_path):
    run, params, data, result = trained_run
    stamp = {e: run.attribution(e).stat().st_mtime_ns for e in params.emotions}
    again = G.global_landmark_importance(run, params, data, progress=False, trained=result.trained)
    assert again.computed == []
    assert {e: run.attribution(e).stat().st_mtime_ns for e in params.emotions} == stamp
    for e in params.emotions:
        np.testing.assert_array_equal(again.masks[e]["global"], result.masks[e]["global"])
    # ig.batch_size does not change the numbers: still cached
    same = params.model_copy(deep=True)
    same.ig.batch_size = 64
    assert G.global_landmark_importance(run, same, data, emotions=["anger"], progress=False,
                                        trained=result.trained).computed == []
    # a cap on the explained samples does: anger is redone with 3 samples (a seeded choice)
    capped = params.model_copy(deep=True)
    capped.ig.max_samples = 3
    capped.ig.inputs = "all"
    redo = G.global_landmark_importance(run, capped, data, emotions=["anger"], progress=False,
                                        trained=result.trained)
    assert redo.computed == ["anger"] and int(redo.masks["anger"]["n_samples"]) == 3
    assert len(set(data.emotion[redo.explained["anger"]])) >= 1
    # the shared tables still hold every emotion, anger's rows replaced
    ranking = pd.read_csv(run.results / "landmark_ranking.csv")
    assert list(ranking["emotion"].unique()) == list(params.emotions) and len(ranking) == 6 * 468
    comp = pd.read_csv(run.results / "completeness.csv")
    assert len(comp) == 30 and list(comp["emotion"].unique()) == list(params.emotions)
    np.testing.assert_array_equal(run.read_ranking()["anger"], redo.order("anger"))
    np.testing.assert_array_equal(run.read_ranking()["fear"], result.order("fear"))
    # restore the cache of the other tests' parameters
    assert G.global_landmark_importance(run, params, data, emotions=["anger"], progress=False,
                                        trained=result.trained).computed == ["anger"]
    D.check_global_importance(run, params)


def test_stage_medoid_typical(trained_run):
    from emolib.models import model_inputs

    run, params, data, result = trained_run
    medoid = params.model_copy(deep=True)
    medoid.ig.typical = "medoid"
    medoid.ig.max_samples = 2
    out = G.global_landmark_importance(run, medoid, data, emotions=["fear"], progress=False,
                                       trained=result.trained)
    train = run.split_parts(run.read_splits(), params.ig_seed)["train"]
    own = train[data.emotion[train] == "fear"]
    trained = result.trained["fear"]
    flat = model_inputs(data.subset(own), trained).reshape(len(own), -1).astype(np.float64)
    expected = own[np.argmin(np.linalg.norm(flat - flat.mean(axis=0), axis=1))]
    assert out.typical_of["fear"] == expected
    assert (out.typical["strategy"] == "medoid").all()
    G.global_landmark_importance(run, params, data, emotions=["fear"], progress=False,
                                 trained=result.trained)  # restore the other tests' cache


def test_stage_centroid_typical(trained_run, tmp_path):
    """ig.typical: centroid end to end (on a copy of the run): each baseline is the mean input of
    the other emotion's training samples under the explaining model; typical.csv keeps one row
    per emotion (sample -1) and typical_rows.json the rows; the cache keys change; Figure 2, the
    completeness study and the checks work."""
    import json
    import shutil

    from emolib.models import model_inputs
    from emolib.run_folder import RunFolder

    run0, params, data, result = trained_run
    run = RunFolder(tmp_path / "run")
    shutil.copytree(run0.root, run.root)
    centroid = params.model_copy(deep=True)
    centroid.ig.typical = "centroid"
    centroid.ig.max_samples = 2
    out = G.global_landmark_importance(run, centroid, data, progress=False, trained=result.trained)
    assert out.computed == list(params.emotions)  # the strategy is in the cache key
    train = run.split_parts(run.read_splits(), params.ig_seed)["train"]
    own = {e: np.sort(train[data.emotion[train] == e]) for e in params.emotions}
    typical = pd.read_csv(run.attributions / "typical.csv")
    assert list(typical.columns) == ["emotion", "sample", "sequence", "strategy", "score"]
    assert typical["emotion"].tolist() == list(params.emotions)
    assert (typical["sample"] == -1).all() and (typical["strategy"] == "centroid").all()
    assert typical["sequence"].tolist() == [f"centroid of {len(own[e])} samples" for e in params.emotions]
    assert (typical["score"] > 0).all()
    stored = json.loads((run.attributions / "typical_rows.json").read_text())
    loaded = T.load_typical(run)
    for e in params.emotions:
        assert stored[e]["rows"] == own[e].tolist()
        np.testing.assert_array_equal(loaded[e].rows, own[e])
        np.testing.assert_array_equal(out.baselines[e].rows, own[e])
    assert out.typical_of == {e: -1 for e in params.emotions}
    # per-baseline masks by hand, the baseline the mean of b's training inputs under e's model
    e = "happiness"
    trained = result.trained[e]
    m = run.read_masks(e)
    assert int(m["n_samples"]) == 2
    x = model_inputs(data.subset(m["samples"]), trained)
    for j, b in enumerate(m["baseline_emotions"]):
        base = model_inputs(data.subset(own[str(b)]), trained).astype(np.float64).mean(axis=0)
        ig_one = ig.integrated_gradients(trained.model, x, base.astype(np.float32), steps=params.ig.steps).attributions
        by_hand = np.abs(ig_one[..., 0]).sum(axis=(1, 2)).mean(axis=0)
        np.testing.assert_allclose(m["per_baseline"][j], by_hand, rtol=1e-5, atol=1e-9)
    assert str(m["cache_key"]) != str(run0.read_masks(e)["cache_key"])
    D.check_global_importance(run, centroid)
    with pytest.raises(DataError, match="strategy"):
        D.check_global_importance(run, params)  # the run's typical.csv is not most_confident's
    again = G.global_landmark_importance(run, centroid, data, progress=False, trained=result.trained)
    assert again.computed == []
    # Figure 2 runs from the other emotions' centroids to the emotion's own centroid
    curves = G.path_curves(out, data, steps=4)
    alphas, probs = curves[e]["anger"]
    own_base = model_inputs(data.subset(own[e]), trained).astype(np.float64).mean(axis=0)
    expected = ig.model_outputs(trained.model, own_base[None].astype(np.float32))[0, 1]
    assert math.isclose(probs[-1], expected, rel_tol=1e-4) and len(curves) == 6
    study = G.completeness_study(out, data, centroid, samples_per_emotion=1, factors=(0.5, 1.0), progress=False,
                                 run=run)
    assert sorted(set(study["steps"])) == [4, 8] and (study["pairs"] == 5).all()
    assert np.isfinite(study[["mean_abs_gap", "mean_abs_delta"]].to_numpy()).all()
    # a centroid needs its rows: a GlobalImportance built from the table alone refuses
    with pytest.raises(ValueError, match="centroid"):
        G.GlobalImportance("t-emo", out.typical, out.masks, out.ranking, out.completeness)


def test_stage_refuses_missing_models_and_bad_arguments(trained_run, tmp_path):
    import shutil

    from emolib.run_folder import RunFolder

    run, params, data, _ = trained_run
    bogus = params.model_copy(deep=True)
    bogus.ig.__dict__["typical"] = "mean"  # past validation (the config refuses it)
    with pytest.raises(ParamsError, match="ig.typical 'mean' is unknown"):
        G.global_landmark_importance(run, bogus, data, progress=False)
    with pytest.raises(ParamsError, match="variant"):
        G.global_landmark_importance(run, params, data, variant="x-emo", progress=False)
    with pytest.raises(ParamsError, match="contempt"):
        G.global_landmark_importance(run, params, data, emotions=["contempt"], progress=False)
    # a run folder with data and splits but without models: a clear error before any IG
    bare = RunFolder(tmp_path / "no_models").ensure()
    shutil.copy(run.params_path, bare.params_path)
    shutil.copytree(run.data, bare.data, dirs_exist_ok=True)
    with pytest.raises(DataError, match="splits.csv"):
        G.global_landmark_importance(bare, params, data, progress=False)
    shutil.copytree(run.results, bare.results, dirs_exist_ok=True)
    with pytest.raises(DataError, match=r"models/t-emo/anger/all_K468_seed0.keras: not found"):
        G.global_landmark_importance(bare, params, data, progress=False)
    with pytest.raises(DataError, match="no landmark ranking"):
        RunFolder(tmp_path / "empty").read_ranking()


def test_notebook_summaries_on_the_stage_result(trained_run):
    run, params, data, result = trained_run
    curves = G.path_curves(result, data, steps=5)
    assert set(curves) == set(params.emotions)
    for e, per in curves.items():
        assert len(per) == 5
        alphas, probs = per[next(iter(per))]
        assert probs.shape == (6,) and np.all((probs >= 0) & (probs <= 1))
        # alpha = 1 is the emotion's typical video, which its model is most sure of
        assert math.isclose(probs[-1], result.typical.set_index("emotion").loc[e, "score"], rel_tol=1e-4)
    study = G.completeness_study(result, data, params, samples_per_emotion=1, factors=(0.25, 1.0), progress=False,
                                 run=run)
    assert sorted(set(study["steps"])) == [2, 8] and (study["pairs"] == 5).all()
    cached = sorted((run.cache / "ig").glob("completeness_t-emo_*.csv"))
    assert len(cached) == 6
    stamps = [p.stat().st_mtime_ns for p in cached]
    again = G.completeness_study(result, data, params, samples_per_emotion=1, factors=(0.25, 1.0), progress=False,
                                 run=run)
    pd.testing.assert_frame_equal(again, study, check_dtype=False)
    assert [p.stat().st_mtime_ns for p in cached] == stamps
    regions = region_importance(result.ranking, wide=True)
    assert list(regions.index) == list(params.emotions) and "lips" in regions.columns
    assert np.isfinite(regions.to_numpy()).all()
    top = D.top_landmarks_table(result.ranking, n=3)
    assert top.shape == (3, 6)
    agreement = D.agreement_table(result.masks)
    assert agreement["mean_spearman"].between(-1, 1).all()
    same = D.compare_rankings(result, result, top=64).set_index("emotion")
    assert (same["top64_overlap"] == 64).all() and np.allclose(same["spearman"], 1.0)
    assert math.isclose(same["chance_overlap"].iloc[0], 64 * 64 / 468)
    assert D.variant_available(run, params, "t-emo") and not D.variant_available(run, params, "r-emo")


def test_figures_of_the_stage(trained_run, tmp_path):
    from emolib.plots import attribution as P
    from emolib.plots.face import mean_face

    run, params, data, result = trained_run
    curves = G.path_curves(result, data, steps=4)
    fig = P.alpha_curves_figure(curves)
    assert len(fig.data) == 30 and sum(t.showlegend for t in fig.data) == 6  # one legend entry per baseline
    ids = result.masks["anger"]["landmark_ids"]
    faces = P.importance_faces_figure(mean_face(data.X), {e: m["global"] for e, m in result.masks.items()}, ids,
                                      top_k=10)
    assert len(faces.data) == 12  # dots + rings per emotion
    buttons = faces.layout.updatemenus[0].buttons
    assert [b.label for b in buttons] == list(params.emotions)
    assert buttons[2].args[0]["visible"] == [j in (4, 5) for j in range(12)]
    assert len(faces.data[1].x) == 10
    matrices = {e: D.baseline_agreement(m["per_baseline"]) for e, m in result.masks.items()}
    agree = P.baseline_agreement_figure(matrices, {e: list(m["baseline_emotions"]) for e, m in result.masks.items()})
    assert len(agree.data) == 6 and agree.data[0].visible and not agree.data[1].visible
    regions = P.region_heatmap_figure(region_importance(result.ranking, wide=True))
    assert np.nanmax(regions.data[0].z) == pytest.approx(1.0)
    path = save_figure(faces, tmp_path / "faces.html")
    html = path.read_text()
    assert "plotly.js" in html or "Plotly" in html
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically, no leftovers
    study = G.completeness_study(result, data, params, samples_per_emotion=1, factors=(0.25, 1.0), progress=False,
                                 run=run)
    gap = P.gap_vs_steps_figure(study)
    assert len(gap.data) == 6 and list(gap.data[0].x) == [2, 8]
    recovery = rankings.planted_recovery({e: result.order(e) for e in params.emotions}, run.read_ground_truth())
    bars = P.planted_recovery_figure(recovery)
    assert len(bars.data) == 5 and list(bars.data[0].y) == recovery["hits_top_planted"].tolist()
