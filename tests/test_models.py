"""T-EMO / R-EMO architecture: shapes, the frozen convolution, seeded initial weights."""
from __future__ import annotations

import numpy as np
import pytest

import emolib  # noqa: F401  (selects tf-keras before TensorFlow loads)
from emolib.errors import ParamsError
from emolib.models import (
    CONV_LAYER,
    build_model,
    configure_tensorflow,
    conv_kernel,
    conv_weights,
    count_params,
    initial_weights,
)

configure_tensorflow(threads=1)

FRAMES, K = 3, 10
SMALL = dict(frames=FRAMES, n_landmarks=K, filters=2, lstm_units=3, fc_units=4)


def _batch(n=12, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, FRAMES, 2, K, 1)).astype(np.float32)
    y = np.tile([0, 1], n // 2)
    x[y == 1] += 0.5  # something to learn, so that gradients are not all zero
    return x, y


def test_shapes_and_softmax_output():
    model = build_model("t-emo", **SMALL, seed=0)
    assert model.input_shape == (None, FRAMES, 2, K, 1)
    assert model.output_shape == (None, 2)
    out = model.predict(_batch()[0], verbose=0)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)
    names = [layer.name for layer in model.layers]
    assert names == ["landmarks", CONV_LAYER, "batchnorm", "flatten", "lstm", "dropout", "fc1", "fc2"]
    assert model.get_layer("fc1").units == 4 and model.get_layer("lstm").units == 3
    assert model.get_layer(CONV_LAYER).layer.filters == 2
    assert model.get_layer(CONV_LAYER).layer.activation.__name__ == "relu"
    # compiled: Adam at the requested learning rate
    assert model.optimizer.__class__.__name__ == "Adam"


def test_learning_rate_reaches_adam():
    model = build_model("t-emo", **SMALL, learning_rate=3e-3, seed=0)
    assert float(model.optimizer.learning_rate.numpy()) == pytest.approx(3e-3)


def test_kernel_width_clipped_to_landmark_count():
    assert conv_kernel((2, 3), 16) == (2, 3)
    assert conv_kernel((2, 3), 2) == (2, 2)
    model = build_model("t-emo", frames=2, n_landmarks=2, filters=2, lstm_units=2, fc_units=2,
                        kernel_size=(2, 3), seed=0)
    assert model.get_layer(CONV_LAYER).layer.kernel.shape == (2, 2, 1, 2)
    assert model.predict(np.zeros((1, 2, 2, 2, 1), np.float32), verbose=0).shape == (1, 2)


def test_same_seed_same_initial_weights_other_seed_different():
    a = build_model("t-emo", **SMALL, seed=3).get_weights()
    b = build_model("t-emo", **SMALL, seed=3).get_weights()
    c = build_model("t-emo", **SMALL, seed=4).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_initial_weights_follow_keras_defaults():
    model = build_model("t-emo", **SMALL, seed=1)
    by_name = {w.name: v for w, v in zip(model.weights, initial_weights(model, 1))}
    bias = next(v for n, v in by_name.items() if "lstm" in n and n.endswith("bias:0"))
    np.testing.assert_array_equal(bias, np.r_[np.zeros(3), np.ones(3), np.zeros(6)])  # forget gate 1
    rec = next(v for n, v in by_name.items() if n.endswith("recurrent_kernel:0"))
    np.testing.assert_allclose(rec @ rec.T, np.eye(3), atol=1e-5)  # orthogonal rows
    gamma = next(v for n, v in by_name.items() if n.endswith("gamma:0"))
    np.testing.assert_array_equal(gamma, np.ones_like(gamma))
    kernel = next(v for n, v in by_name.items() if "fc1" in n and n.endswith("kernel:0"))
    limit = np.sqrt(6 / (kernel.shape[0] + kernel.shape[1]))
    assert np.abs(kernel).max() <= limit and np.abs(kernel).max() > limit / 2


def test_r_emo_convolution_stays_random_t_emo_convolution_learns():
    x, y = _batch(24)
    frozen = build_model("r-emo", **SMALL, learning_rate=1e-2, seed=0)
    trained = build_model("t-emo", **SMALL, learning_rate=1e-2, seed=0)
    before_r, before_t = conv_weights(frozen), conv_weights(trained)
    # The same seed draws the same random convolution for both variants.
    assert all(np.array_equal(a, b) for a, b in zip(before_r, before_t))
    lstm_before = frozen.get_layer("lstm").get_weights()[0].copy()
    frozen.fit(x, y, epochs=3, batch_size=8, verbose=0)
    trained.fit(x, y, epochs=3, batch_size=8, verbose=0)
    assert all(np.array_equal(a, b) for a, b in zip(before_r, conv_weights(frozen)))
    assert not np.array_equal(before_t[0], conv_weights(trained)[0])
    # ...while the rest of R-EMO does train.
    assert not np.array_equal(lstm_before, frozen.get_layer("lstm").get_weights()[0])


def test_count_params_r_emo_trains_fewer():
    t_total, t_train = count_params(build_model("t-emo", **SMALL, seed=0))
    r_total, r_train = count_params(build_model("r-emo", **SMALL, seed=0))
    conv = 2 * 3 * 1 * 2 + 2  # kernel (2, 3, 1, F=2) + bias
    assert t_total == r_total
    assert t_train - r_train == conv
    assert t_total - t_train == 2 * 2  # BatchNorm's moving mean and variance (F each)


@pytest.mark.parametrize("kwargs, message", [
    (dict(variant="x-emo"), "variant"),
    (dict(filters=0), "filters"),
    (dict(lstm_units=2.5), "lstm_units"),
    (dict(kernel_size=(3, 3)), "kernel_size"),
    (dict(dropout=1.0), "dropout"),
    (dict(fc_activation="softmax"), "fc_activation"),
])
def test_bad_architecture_is_refused(kwargs, message):
    args = dict(variant="t-emo", **SMALL)
    args.update(kwargs)
    with pytest.raises(ParamsError, match=message):
        build_model(**args)


def test_a_damaged_model_file_makes_the_unit_unfinished(tmp_path):
    """A unit is finished only while its files are the ones its record wrote down: a truncated or
    overwritten model file (or scaler) makes read_record answer None, so the model is trained again."""
    from emolib.models import load_unit, read_record, save_unit, unit_files

    path = tmp_path / "models" / "t-emo" / "anger" / "all_K10_seed0.keras"
    model = build_model("t-emo", **SMALL, seed=0)
    mean, std = np.zeros((2, K)), np.ones((2, K))
    save_unit(path, model, mean, std, np.arange(K), {"key": "k1", "hyper": [2, 3, 4], "reference": "none"})
    record = read_record(path)
    assert record is not None and record["key"] == "k1"
    good = path.read_bytes()

    path.write_bytes(good[: len(good) // 2])  # truncated, as by a full disk or a copy cut short
    assert read_record(path) is None
    damaged = bytearray(good)
    damaged[len(damaged) // 2] ^= 0xFF  # same size, other content
    path.write_bytes(bytes(damaged))
    assert read_record(path) is None
    path.write_bytes(good)
    assert read_record(path) is not None
    load_unit(path, variant="t-emo", emotion="anger", n_landmarks=K, selection="all", seed=0)

    scaler = unit_files(path)[1]
    scaler.write_bytes(scaler.read_bytes()[:-7])
    assert read_record(path) is None
