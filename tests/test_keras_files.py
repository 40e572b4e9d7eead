"""emolib.keras_files: the .keras archive written without Keras' walk is the one model.save writes."""
from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest

import emolib  # noqa: F401  (selects tf-keras before TensorFlow loads)
from emolib.keras_files import save_model
from emolib.models import build_model, configure_tensorflow

configure_tensorflow(threads=1)

FRAMES, K = 3, 10
SMALL = dict(frames=FRAMES, n_landmarks=K, filters=2, lstm_units=3, fc_units=4)


def _members(path):
    with zipfile.ZipFile(path) as archive:
        info = [(i.filename, i.compress_type, i.date_time[:3] == (1980, 1, 1)) for i in archive.infolist()]
        return info, {name: archive.read(name) for name in archive.namelist()}


def _assert_same_file(model, tmp_path, name):
    ours, keras_own = tmp_path / f"{name}-fast.keras", tmp_path / f"{name}-keras.keras"
    save_model(model, ours)
    model.save(keras_own)
    (info_a, a), (info_b, b) = _members(ours), _members(keras_own)
    assert info_a == info_b  # same members, order, compression, 1980 dates where Keras puts them
    assert a["config.json"] == b["config.json"]
    assert a["model.weights.h5"] == b["model.weights.h5"]  # byte for byte
    meta_a, meta_b = json.loads(a["metadata.json"]), json.loads(b["metadata.json"])
    assert meta_a.keys() == meta_b.keys() and meta_a["keras_version"] == meta_b["keras_version"]
    import tf_keras as keras

    loaded = keras.models.load_model(ours, compile=False)
    for got, want in zip(loaded.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("variant", ["t-emo", "r-emo"])
def test_same_archive_as_model_save_across_weights_and_training(variant, tmp_path):
    model = build_model(variant, **SMALL, learning_rate=1e-2, seed=0)
    _assert_same_file(model, tmp_path, "fresh")
    rng = np.random.default_rng(1)
    model.set_weights([rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()])
    _assert_same_file(model, tmp_path, "new-weights")  # the learnt layout, new values
    x = rng.normal(size=(8, FRAMES, 2, K, 1)).astype(np.float32)
    model.fit(x, np.tile([0, 1], 4), epochs=1, verbose=0)  # Adam's slots appear: a new layout
    _assert_same_file(model, tmp_path, "trained")


def test_a_frozen_layer_changes_the_layout_and_is_followed(tmp_path):
    model = build_model("t-emo", **SMALL, seed=0)
    _assert_same_file(model, tmp_path, "before")
    model.get_layer("fc1").trainable = False
    _assert_same_file(model, tmp_path, "frozen")


def test_keeps_the_models_values(tmp_path):
    model = build_model("t-emo", **SMALL, seed=3)
    before = model.get_weights()
    save_model(model, tmp_path / "m.keras")  # learning the layout marks every variable, then restores
    for got, want in zip(model.get_weights(), before):
        np.testing.assert_array_equal(got, want)


def test_a_changed_learning_rate_is_followed(tmp_path):
    # config.json holds the compile settings, the optimizer's learning rate among them.
    model = build_model("t-emo", **SMALL, learning_rate=1e-3, seed=0)
    _assert_same_file(model, tmp_path, "before")
    model.optimizer.learning_rate = 0.5
    _assert_same_file(model, tmp_path, "new-rate")
