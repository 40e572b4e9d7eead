"""The explorer: it builds over a run folder, its controls redraw the panels, its one output
carries both the live widget and the static plotly HTML, the static Figure 3 has its K slider
and emotion menu, and one video's attribution is computed with IG and cached."""
from __future__ import annotations

import os
from types import SimpleNamespace

import numpy as np
import pytest

from emolib import EMOTIONS, N_LANDMARKS
from emolib.errors import DataError, EmolibError
from emolib import explore as X
from emolib.plots.results import top_k_faces_figure
from tests.test_results import fake_ranking, write_fake_study

WIDGET = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    return write_fake_study(tmp_path_factory.mktemp("explore") / "run")


@pytest.fixture(scope="module")
def explorer(fake_run):
    run, params = fake_run
    return X.open_explorer(run, params)


# ---- the static Figure 3 -----------------------------------------------------------------------

def visible_traces(fig, mask=None):
    mask = mask if mask is not None else [bool(t.visible) for t in fig.data]
    return [t for t, v in zip(fig.data, mask) if v]


def test_figure3_has_an_emotion_menu_and_a_k_slider_that_select_the_right_landmarks():
    ranking = fake_ranking()
    xy = np.random.default_rng(0).random((N_LANDMARKS, 2))
    importance = {e: np.linspace(1, 0, N_LANDMARKS) for e in EMOTIONS}
    ks = [468, 64, 16]
    fig = top_k_faces_figure(xy, np.arange(N_LANDMARKS), ranking, importance, ks, list(EMOTIONS))
    menu = fig.layout.updatemenus[0]
    assert [b.label for b in menu.buttons] == [e.capitalize() for e in EMOTIONS]
    slider = fig.layout.sliders[0]
    assert [s.label for s in slider.steps] == ["468", "64", "16"]
    # initially: the first emotion's importance and its top 468
    shown = visible_traces(fig)
    assert len(shown) == 2 and len(shown[1].x) == 468
    # each slider step shows that emotion's dots and its top-K ring, the ring on exactly its top K
    for step, k in zip(slider.steps, ks):
        dots, ring = visible_traces(fig, step.args[0]["visible"])
        assert dots.name == "anger: importance" and len(ring.x) == k
        ringed = {tuple(p) for p in zip(ring.x, ring.y)}
        assert ringed == {tuple(xy[i]) for i in ranking["anger"][:k]}
    # each menu button shows its emotion and swaps in that emotion's slider
    for button, emotion in zip(menu.buttons, EMOTIONS):
        vis, layout = button.args
        dots, ring = visible_traces(fig, vis["visible"])
        assert dots.name == f"{emotion}: importance" and ring.name == f"{emotion}: top 468"
        steps = layout["sliders"][0]["steps"]
        dots, ring = visible_traces(fig, steps[2]["args"][0]["visible"])
        assert ring.name == f"{emotion}: top 16"
        assert {tuple(p) for p in zip(ring.x, ring.y)} == {tuple(xy[i]) for i in ranking[emotion][:16]}


def test_figure3_controls_survive_the_html_export():
    import plotly.io as pio

    ranking = fake_ranking()
    fig = top_k_faces_figure(np.random.default_rng(0).random((N_LANDMARKS, 2)), np.arange(N_LANDMARKS), ranking,
                             {e: np.ones(N_LANDMARKS) for e in EMOTIONS}, [64, 16], ["anger", "fear"])
    html = pio.to_html(fig, include_plotlyjs=False, full_html=False)
    assert '"updatemenus"' in html and '"sliders"' in html and '"method":"update"' in html


# ---- the explorer ---------------------------------------------------------------------------------

def test_explorer_output_holds_the_widget_and_the_static_html(explorer):
    bundle = explorer._repr_mimebundle_()
    assert WIDGET in bundle and bundle[WIDGET]["model_id"] == explorer.widget().model_id
    html = bundle["text/html"]
    assert html.count('class="plotly-graph-div"') == 3
    assert "cdn.plot.ly" not in html
    assert len(html) < 3_000_000  # plotly.js (about 4.6 MB) is not repeated in the explorer's output
    assert '"sliders"' in html and '"updatemenus"' in html


def test_the_runner_keeps_only_the_static_view_in_the_report(explorer):
    import nbformat

    from emolib.runner import _drop_dead_widget_outputs

    bundle = explorer._repr_mimebundle_()
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("explorer")
    cell.outputs = [nbformat.v4.new_output("display_data", data=bundle)]
    nb.cells.append(cell)
    _drop_dead_widget_outputs(nb)
    data = nb.cells[0].outputs[0]["data"]
    assert WIDGET not in data and "plotly-graph-div" in data["text/html"]


def test_explorer_controls_redraw_the_panels(explorer):
    explorer.widget()
    assert explorer.k.options == (468, 64, 16)
    explorer.emotion.value = "surprise"
    explorer.k.value = 16
    assert explorer.figures["face"].layout.title.text == "Surprise: top 16 landmarks"
    assert len(explorer.figures["face"].data[1].x) == 16
    explorer.variant.value = "r-emo"
    assert {t.opacity for t in explorer.figures["accuracy"].data if t.name.startswith("T-EMO")} == {0.35}
    assert [label for label, _ in explorer.sample.options][0].startswith("S000_surprise")
    face = explorer.face_figure("surprise", 16)
    assert len(face.data[1].x) == 16
    regions = explorer.region_figure("surprise", 16)
    assert sum(regions.data[0].y) == pytest.approx(1.0)
    acc = explorer.accuracy_figure("surprise", 16, "r-emo")
    assert {t.opacity for t in acc.data if t.name.startswith("T-EMO")} == {0.35}
    assert explorer.model_for(16) == (16, "ig") and explorer.model_for(468) == (468, "all")


# ---- one video's attribution -----------------------------------------------------------------------

class TinyTraining:
    """A stand-in for stage 02's model files: a real (tiny, untrained) Keras model per request,
    with the training stage's input layout (N, P, 2, K, 1)."""

    def __init__(self):
        self.loaded = []

    def load_trained(self, run, variant, emotion, n_landmarks, selection, seed):
        import tf_keras as keras

        self.loaded.append((variant, emotion, n_landmarks, selection, seed))
        ids = np.arange(n_landmarks)
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.layers.Input((3, 2, n_landmarks, 1)), keras.layers.Flatten(),
                                  keras.layers.Dense(2, activation="softmax")])
        return SimpleNamespace(model=model, landmark_ids=ids)

    def model_inputs(self, data, trained):
        return (data.select_landmarks(trained.landmark_ids).X - 0.5)[..., None].astype(np.float32)


@pytest.fixture(scope="module")
def tf_few_threads():
    import emolib  # noqa: F401  (selects tf-keras)
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised by another test module


def test_explain_sample_runs_ig_against_the_other_emotions_typical_videos_and_caches(fake_run, tf_few_threads):
    from emolib.landmarks import load_landmarks

    run, params = fake_run
    data = load_landmarks(run.landmarks)
    api = TinyTraining()
    sample = 8  # S001, fear
    out = X.explain_sample(run, params, data, sample, variant="r-emo", n_landmarks=16, training_api=api)
    assert api.loaded == [("r-emo", "fear", 16, "ig", params.ig_seed)]
    assert out["attribution"].shape == (params.frames, 16) and np.isfinite(out["attribution"]).all()
    assert (out["attribution"] >= 0).all() and out["attribution"].sum() > 0
    assert sorted(out["baseline_emotions"].tolist()) == sorted(set(EMOTIONS) - {"fear"})
    assert 0.0 <= float(out["probability"]) <= 1.0
    cached = list((run.cache / "explore").glob("*.npz"))
    assert len(cached) == 1
    again = X.explain_sample(run, params, data, sample, variant="r-emo", n_landmarks=16, training_api=api)
    assert len(api.loaded) == 1  # read from the cache, no model loaded
    assert np.array_equal(again["attribution"], out["attribution"])
    X.explain_sample(run, params, data, sample, variant="t-emo", n_landmarks=16, training_api=api)
    assert len(api.loaded) == 2 and len(list((run.cache / "explore").glob("*.npz"))) == 2


def test_explain_sample_with_centroid_baselines(tmp_path, tf_few_threads):
    """With ig.typical: centroid, each baseline is the mean input (under the explained model) of
    the rows stage 03 averaged, read from typical_rows.json; typical.csv has sample -1."""
    from emolib import attribution as A
    from emolib.landmarks import load_landmarks
    from tests.test_results import make_params, write_fake_study

    run, params = write_fake_study(tmp_path / "run", make_params(**{"ig.typical": "centroid"}))
    data = load_landmarks(run.landmarks)
    rows = {e: np.where(data.emotion == e)[0] for e in params.emotions}
    assert all(len(r) >= 2 for r in rows.values())
    table = A.write_typical(run, "t-emo", [A.choose_typical(e, r, data.X[r], "centroid") for e, r in rows.items()],
                            data)
    assert (table["sample"] == -1).all() and (table["strategy"] == "centroid").all()
    assert table["sequence"].tolist() == [f"centroid of {len(r)} samples" for r in rows.values()]
    api = TinyTraining()
    sample = 8  # S001, fear
    out = X.explain_sample(run, params, data, sample, n_landmarks=16, training_api=api)
    assert api.loaded == [("t-emo", "fear", 16, "ig", params.ig_seed)]
    # by hand: IG of the sample against each other emotion's mean input under the same model
    trained = api.load_trained(run, "t-emo", "fear", 16, "ig", params.ig_seed)
    others = [e for e in params.emotions if e != "fear"]
    bases = np.stack([api.model_inputs(data.subset(rows[e]), trained).mean(axis=0) for e in others])
    x = np.repeat(api.model_inputs(data.subset(np.array([sample])), trained), len(others), axis=0)
    ig = A.integrated_gradients(trained.model, x, bases, steps=params.ig.steps, target=1).attributions
    np.testing.assert_allclose(out["attribution"], np.abs(ig[..., 0]).sum(axis=2).mean(axis=0), rtol=1e-5, atol=1e-9)
    assert out["baseline_emotions"].tolist() == others
    # the centroid's rows are needed: without typical_rows.json, a clear error (no stale cache hit:
    # a different ig.typical keys another cache file)
    A.typical_paths(run)[1].unlink()
    with pytest.raises(EmolibError, match="typical_rows.json: no rows for the centroid baseline"):
        X.explain_sample(run, params, data, 9, n_landmarks=16, training_api=api)


def test_explain_sample_errors_are_clear(fake_run, tmp_path):
    from emolib.landmarks import load_landmarks
    from emolib.run_folder import RunFolder

    run, params = fake_run
    data = load_landmarks(run.landmarks)
    with pytest.raises(DataError, match="sample 999 is not a row"):
        X.explain_sample(run, params, data, 999, training_api=TinyTraining())
    empty = RunFolder(tmp_path / "empty").ensure()
    with pytest.raises(EmolibError, match="typical.csv: no typical videos"):
        X.explain_sample(empty, params, data, 0, training_api=TinyTraining())


def test_the_explorer_draws_the_selected_videos_attribution(fake_run, tf_few_threads):
    run, params = fake_run
    api = TinyTraining()
    explorer = X.open_explorer(run, params, training_api=api)
    explorer.widget()
    explorer.emotion.value = "happiness"
    explorer.k.value = 64
    explorer.variant.value = "r-emo"
    explorer.sample.value = explorer.sample.options[1][1]
    res = explorer.show_sample()
    assert api.loaded == [("r-emo", "happiness", 64, "ig", params.ig_seed)]
    assert res["attribution"].shape == (params.frames, 64)
    assert explorer.status.value.startswith("P(happiness) = ")
    heatmap = explorer.figures["sample"].data[0]
    assert heatmap.type == "heatmap" and np.asarray(heatmap.z).shape == (30, params.frames)
    explorer.k.value = 468
    explorer.show_sample()
    assert api.loaded[-1][2:4] == (468, "all")


def test_the_explorer_reports_a_missing_model_in_its_status_line(fake_run):
    run, params = fake_run

    class NoModels(TinyTraining):
        def load_trained(self, *args):
            raise EmolibError("models/x.keras: not found")

    explorer = X.open_explorer(run, params, training_api=NoModels())
    explorer.widget()
    explorer.sample.value = explorer.sample.options[1][1]
    assert explorer.show_sample() is None
    assert "models/x.keras: not found" in explorer.status.value
