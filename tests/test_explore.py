"""The explorer: it builds over a run folder, its controls redraw the panels, its one output
carries both the live widget and the static plotly HTML, the static Figure 3 has its K slider
and emotion menu, and one video's attribution is computed with IG and cached."""
from __future__ import annotations

import numpy as np
import pytest

from emolib import explore as X
from emolib.errors import DataError
from emolib.plots.results import top_k_faces_figure
from emolib.run_folder import RunFolder
from emolib.vocab import EMOTIONS, N_LANDMARKS, VARIANTS
from tests.results.test_results import fake_ranking, write_fake_study

WIDGET = "application/vnd.jupyter.widget-view+json"


@pytest.fixture(scope="module")
def fake_run(tmp_path_factory):
    run, params = write_fake_study(tmp_path_factory.mktemp("explore") / "run")
    save_tiny_models(run, params)
    return run, params


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

    from emolib.report.html import drop_dead_widget_outputs

    bundle = explorer._repr_mimebundle_()
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("explorer")
    cell.outputs = [nbformat.v4.new_output("display_data", data=bundle)]
    nb.cells.append(cell)
    drop_dead_widget_outputs(nb)
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

def save_tiny_models(run, params, ks=(16, 64, N_LANDMARKS), emotions=EMOTIONS):
    """Stand-ins for stage 02's and 04's models, saved as real units in the run folder: a tiny,
    untrained Keras model per (variant, emotion, K) of seed ``ig_seed``, reading the first K
    landmarks with the training stage's input layout (N, P, 2, K, 1), scaled as x - 0.5."""
    import tf_keras as keras

    from emolib.models import save_unit

    for k in ks:
        selection = "all" if k == N_LANDMARKS else "ig"
        for variant in VARIANTS:
            for emotion in emotions:
                keras.utils.set_random_seed(0)
                model = keras.Sequential([keras.layers.Input((params.frames, 2, k, 1)), keras.layers.Flatten(),
                                          keras.layers.Dense(2, activation="softmax")])
                save_unit(run.model(variant, emotion, k, selection, params.ig_seed), model,
                          np.full((2, k), 0.5, np.float32), np.ones((2, k), np.float32), np.arange(k),
                          {"key": "tiny", "hyper": [1, 1, 1], "reference": "none"})


class LoadRecorder:
    """Records which models are loaded from the run folder (the real :meth:`RunFolder.load_trained`)."""

    def __init__(self, monkeypatch):
        self.loaded = []
        real = RunFolder.load_trained

        def load_trained(run, variant, emotion, n_landmarks, selection, seed):
            self.loaded.append((variant, emotion, n_landmarks, selection, seed))
            return real(run, variant, emotion, n_landmarks, selection, seed)

        monkeypatch.setattr(RunFolder, "load_trained", load_trained)


@pytest.fixture(scope="module")
def tf_few_threads():
    import tensorflow as tf

    import emolib  # noqa: F401  (selects tf-keras)

    try:
        tf.config.threading.set_intra_op_parallelism_threads(1)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # already initialised by another test module


def test_explain_sample_runs_ig_against_the_other_emotions_typical_videos_and_caches(fake_run, tf_few_threads,
                                                                                      monkeypatch):
    run, params = fake_run
    data = run.read_landmarks()
    api = LoadRecorder(monkeypatch)
    sample = 8  # S001, fear
    out = X.explain_sample(run, params, data, sample, variant="r-emo", n_landmarks=16)
    assert api.loaded == [("r-emo", "fear", 16, "ig", params.ig_seed)]
    assert out["attribution"].shape == (params.frames, 16) and np.isfinite(out["attribution"]).all()
    assert (out["attribution"] >= 0).all() and out["attribution"].sum() > 0
    assert sorted(out["baseline_emotions"].tolist()) == sorted(set(EMOTIONS) - {"fear"})
    assert 0.0 <= float(out["probability"]) <= 1.0
    cached = list(run.explore_cache.glob("*.npz"))
    assert len(cached) == 1
    again = X.explain_sample(run, params, data, sample, variant="r-emo", n_landmarks=16)
    assert len(api.loaded) == 1  # read from the cache, no model loaded
    assert np.array_equal(again["attribution"], out["attribution"])
    X.explain_sample(run, params, data, sample, variant="t-emo", n_landmarks=16)
    assert len(api.loaded) == 2 and len(list(run.explore_cache.glob("*.npz"))) == 2


def test_explain_sample_with_centroid_baselines(tmp_path, tf_few_threads, monkeypatch):
    """With ig.typical: centroid, each baseline is the mean input (under the explained model) of
    the rows stage 03 averaged, read from typical_rows.json; typical.csv has sample -1."""
    from emolib import ig
    from emolib.explain import typical as T
    from emolib.models import model_inputs
    from tests.results.test_results import make_params, write_fake_study

    run, params = write_fake_study(tmp_path / "run", make_params(**{"ig.typical": "centroid"}))
    save_tiny_models(run, params, ks=(16,), emotions=("fear",))
    data = run.read_landmarks()
    rows = {e: np.where(data.emotion == e)[0] for e in params.emotions}
    assert all(len(r) >= 2 for r in rows.values())
    table = T.write_typical(run, "t-emo", [T.choose_typical(e, r, data.X[r], "centroid") for e, r in rows.items()],
                            data)
    assert (table["sample"] == -1).all() and (table["strategy"] == "centroid").all()
    assert table["sequence"].tolist() == [f"centroid of {len(r)} samples" for r in rows.values()]
    api = LoadRecorder(monkeypatch)
    sample = 8  # S001, fear
    out = X.explain_sample(run, params, data, sample, n_landmarks=16)
    assert api.loaded == [("t-emo", "fear", 16, "ig", params.ig_seed)]
    # by hand: IG of the sample against each other emotion's mean input under the same model
    trained = run.load_trained("t-emo", "fear", 16, "ig", params.ig_seed)
    others = [e for e in params.emotions if e != "fear"]
    bases = np.stack([model_inputs(data.subset(rows[e]), trained).mean(axis=0) for e in others])
    x = np.repeat(model_inputs(data.subset(np.array([sample])), trained), len(others), axis=0)
    attributions = ig.integrated_gradients(trained.model, x, bases, steps=params.ig.steps, target=1).attributions
    np.testing.assert_allclose(out["attribution"], np.abs(attributions[..., 0]).sum(axis=2).mean(axis=0), rtol=1e-5,
                               atol=1e-9)
    assert out["baseline_emotions"].tolist() == others
    # the centroid's rows are needed: without typical_rows.json, a clear error (no stale cache hit:
    # a different ig.typical keys another cache file)
    run.typical()[1].unlink()
    with pytest.raises(DataError, match="typical_rows.json: no rows for the centroid baseline"):
        X.explain_sample(run, params, data, 9, n_landmarks=16)


def test_explain_sample_errors_are_clear(fake_run, tmp_path):
    run, params = fake_run
    data = run.read_landmarks()
    with pytest.raises(DataError, match="sample 999 is not a row"):
        X.explain_sample(run, params, data, 999)
    empty = RunFolder(tmp_path / "empty").ensure()
    with pytest.raises(DataError, match="typical.csv: no typical videos"):
        X.explain_sample(empty, params, data, 0)


def test_the_explorer_draws_the_selected_videos_attribution(fake_run, tf_few_threads, monkeypatch):
    run, params = fake_run
    api = LoadRecorder(monkeypatch)
    explorer = X.open_explorer(run, params)
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


def test_the_explorer_reports_a_missing_model_in_its_status_line(tmp_path):
    from tests.results.test_results import write_fake_study

    run, params = write_fake_study(tmp_path / "run")  # stage 03's files, no model saved
    explorer = X.open_explorer(run, params)
    explorer.widget()
    explorer.sample.value = explorer.sample.options[1][1]
    assert explorer.show_sample() is None
    missing = run.model("t-emo", explorer.emotion.value, int(explorer.k.value), "ig", params.ig_seed)
    assert f"{missing}: not found" in explorer.status.value
