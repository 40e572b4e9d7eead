"""Integrated Gradients engine (equation 2) and the global landmark importance of stage 03."""
from __future__ import annotations

import math
import os

import numpy as np
import pandas as pd
import pytest

import emolib  # noqa: F401  (selects tf-keras before TensorFlow loads)
import tensorflow as tf

try:  # keep TensorFlow light on a shared 2-core machine; fails once TF is already running
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
except RuntimeError:
    pass
import tf_keras as keras

from emolib import attribution as A
from emolib.errors import DataError, EmolibError, ParamsError

P, L = 3, 6  # frames, landmarks of the tiny test models
SHAPE = (P, 2, L, 1)


def tiny_paper_model(seed: int = 0) -> keras.Model:
    """The paper's layer stack at toy size: Conv2D per frame -> BN -> Flatten -> LSTM -> FC -> 2."""
    keras.utils.set_random_seed(seed)
    inp = keras.layers.Input(SHAPE)
    h = keras.layers.TimeDistributed(keras.layers.Conv2D(2, (2, 3), activation="relu"))(inp)
    h = keras.layers.BatchNormalization()(h)
    h = keras.layers.TimeDistributed(keras.layers.Flatten())(h)
    h = keras.layers.LSTM(4)(h)
    h = keras.layers.Dropout(0.3)(h)
    h = keras.layers.Dense(4, activation="relu")(h)
    out = keras.layers.Dense(2, activation="softmax")(h)
    return keras.Model(inp, out)


def linear_model(seed: int = 0) -> keras.Model:
    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.layers.Input(SHAPE), keras.layers.Flatten(),
                             keras.layers.Dense(2, bias_initializer="glorot_uniform")])


def quadratic_model() -> keras.Model:
    """Output column 1 is F(x) = sum(x^2): IG_i = x_i^2 - x'_i^2 exactly (integral known)."""
    inp = keras.layers.Input(SHAPE)
    s = keras.layers.Lambda(lambda t: tf.reduce_sum(tf.reshape(t * t, (tf.shape(t)[0], -1)), axis=1,
                                                    keepdims=True))(inp)
    out = keras.layers.Concatenate()([-s, s])
    return keras.Model(inp, out)


class CountingLayer(keras.layers.Layer):
    """Identity that counts, in graph variables, how often and on how many rows it runs."""

    def build(self, input_shape):
        self.calls = self.add_weight(name="calls", shape=(), dtype="int64", initializer="zeros", trainable=False)
        self.rows = self.add_weight(name="rows", shape=(), dtype="int64", initializer="zeros", trainable=False)
        self.largest = self.add_weight(name="largest", shape=(), dtype="int64", initializer="zeros",
                                       trainable=False)

    def call(self, x):
        n = tf.cast(tf.shape(x)[0], tf.int64)
        with tf.control_dependencies([self.calls.assign_add(1), self.rows.assign_add(n),
                                      self.largest.assign(tf.maximum(self.largest, n))]):
            return tf.identity(x)


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(0)


def _data(rng, n):
    return rng.normal(size=(n,) + SHAPE).astype(np.float32)


# ---- quadrature ---------------------------------------------------------------------------------

def test_quadrature_equation_2_is_right_riemann_sum():
    alphas, weights = A.quadrature("riemann_right", 4)
    np.testing.assert_allclose(alphas, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(weights, [0.25] * 4)
    for rule in A.RULES:
        _, w = A.quadrature(rule, 7)
        assert math.isclose(w.sum(), 1.0)
    a, w = A.quadrature("trapezoid", 2)
    np.testing.assert_allclose(a, [0, 0.5, 1])
    np.testing.assert_allclose(w, [0.25, 0.5, 0.25])


def test_quadrature_refuses_bad_rule_and_steps():
    with pytest.raises(ParamsError, match="simpson"):
        A.quadrature("simpson", 5)
    with pytest.raises(ParamsError, match="steps"):
        A.quadrature("riemann_right", 0)


# ---- the engine ---------------------------------------------------------------------------------

def test_linear_model_ig_equals_difference_times_weight(rng):
    model = linear_model()
    x, base = _data(rng, 4), _data(rng, 1)[0]
    for target in (0, 1):
        w = model.layers[-1].get_weights()[0][:, target].reshape(SHAPE).astype(np.float64)
        res = A.integrated_gradients(model, x, base, steps=5, target=target)
        expected = (x.astype(np.float64) - base.astype(np.float64)) * w
        np.testing.assert_allclose(res.attributions, expected, rtol=1e-6, atol=1e-9)
        assert res.attributions.shape == x.shape
        # Completeness holds exactly for a linear F whatever m (up to float32 model outputs).
        np.testing.assert_allclose(res.gaps, 0.0, atol=1e-5)


def test_completeness_on_a_known_integral(rng):
    model = quadratic_model()
    x, base = _data(rng, 3), _data(rng, 3)
    x64, b64 = x.astype(np.float64), base.astype(np.float64)
    exact = x64 ** 2 - b64 ** 2
    m = 8
    # The integrand is linear in alpha: trapezoid and Gauss-Legendre are exact.
    for rule in ("trapezoid", "gauss_legendre"):
        res = A.integrated_gradients(model, x, base, steps=m, rule=rule)
        np.testing.assert_allclose(res.attributions, exact, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(res.gaps, 0.0, atol=1e-4)
    # Equation (2), right Riemann sum over alphas k/m, k = 1..m: overshoots by (x - x')^2 / m.
    # (A left sum, k = 0..m-1, would undershoot by the same amount.)
    res = A.integrated_gradients(model, x, base, steps=m)
    np.testing.assert_allclose(res.attributions, exact + (x64 - b64) ** 2 / m, rtol=1e-5, atol=1e-5)
    expected_gap = ((x64 - b64) ** 2).reshape(3, -1).sum(axis=1) / m
    np.testing.assert_allclose(res.gaps, expected_gap, rtol=1e-4)
    np.testing.assert_allclose(res.deltas, (x64 ** 2 - b64 ** 2).reshape(3, -1).sum(axis=1), rtol=1e-5)


def test_gap_shrinks_as_steps_grow_on_the_paper_model(rng):
    model = tiny_paper_model()
    x, base = _data(rng, 3), _data(rng, 1)[0]
    table = A.completeness_by_steps(model, x, base, [2, 8, 64], batch_size=256)
    gaps = table["mean_abs_gap"].to_numpy()
    assert gaps[2] < gaps[0]
    assert gaps[2] < 0.05 * max(table["mean_abs_delta"].iloc[0], 1e-3) + 1e-4
    assert list(table.columns) == ["steps", "mean_abs_gap", "max_abs_gap", "mean_abs_delta", "relative_gap"]


def test_chunked_equals_unchunked(rng):
    model = tiny_paper_model()
    x, base = _data(rng, 5), _data(rng, 5)
    whole = A.integrated_gradients(model, x, base, steps=9, batch_size=None)
    assert whole.model_calls == 1
    for bs in (4, 7, 1000):  # chunks straddling samples, padding, one oversize chunk
        part = A.integrated_gradients(model, x, base, steps=9, batch_size=bs)
        # Same quadrature sum; only float32 rounding inside the model's batch-size-dependent
        # kernels differs (about 1e-9 here on values of about 1e-3).
        np.testing.assert_allclose(part.attributions, whole.attributions, rtol=1e-5, atol=1e-8)
        np.testing.assert_allclose(part.gaps, whole.gaps, rtol=1e-5, atol=1e-8)
    assert A.integrated_gradients(model, x, base, steps=9, batch_size=7).model_calls == math.ceil(45 / 7)


def test_one_baseline_broadcast_equals_it_repeated(rng):
    model = tiny_paper_model()
    x, base = _data(rng, 4), _data(rng, 1)
    one = A.integrated_gradients(model, x, base[0], steps=6, batch_size=5)
    one_batched = A.integrated_gradients(model, x, base, steps=6, batch_size=5)
    repeated = A.integrated_gradients(model, x, np.repeat(base, 4, axis=0), steps=6, batch_size=5)
    np.testing.assert_allclose(one.attributions, repeated.attributions, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(one_batched.attributions, repeated.attributions, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(one.f_baselines, repeated.f_baselines)


def test_result_unpacks_and_reports_outputs(rng):
    model = tiny_paper_model()
    x, base = _data(rng, 2), _data(rng, 1)[0]
    res = A.integrated_gradients(model, x, base, steps=4)
    attributions, gaps = res
    assert attributions is res.attributions and gaps is res.gaps
    probs = model(x, training=False).numpy()[:, 1]
    np.testing.assert_allclose(res.f_inputs, probs, rtol=1e-5)
    np.testing.assert_allclose(res.gaps, attributions.reshape(2, -1).sum(axis=1) - res.deltas, atol=1e-9)


def test_bad_baseline_shape_is_a_clear_error(rng):
    model = tiny_paper_model()
    x = _data(rng, 3)
    with pytest.raises(DataError, match=r"baselines have shape \(2, 3, 2, 6, 1\)"):
        A.integrated_gradients(model, x, _data(rng, 2))
    with pytest.raises(DataError, match="baselines have shape"):
        A.integrated_gradients(model, x, np.zeros((P, 2, L)))
    bad = _data(rng, 1)
    bad[0, 0, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        A.integrated_gradients(model, x, bad)
    with pytest.raises(DataError, match="non-empty"):
        A.integrated_gradients(model, x[:0], bad)


def test_unknown_target_is_a_clear_error(rng):
    model = tiny_paper_model()
    x = _data(rng, 2)
    for target in (2, -1, "1", 1.0):
        with pytest.raises(EmolibError, match="not a class of this model: it has 2 outputs"):
            A.integrated_gradients(model, x, x, target=target)
    with pytest.raises(ParamsError, match="batch_size"):
        A.integrated_gradients(model, x, x, batch_size=0)


def test_model_calls_prove_batching(rng):
    """Every compiled call carries a full chunk of (samples x steps) rows, not one sample."""
    inner = tiny_paper_model()
    counter = CountingLayer()
    inp = keras.layers.Input(SHAPE)
    model = keras.Model(inp, inner(counter(inp)))
    x, base = _data(rng, 4), _data(rng, 1)[0]
    chunk = 8
    for steps in (10, 20):
        before = {k: int(getattr(counter, k).numpy()) for k in ("calls", "rows")}
        res = A.integrated_gradients(model, x, base, steps=steps, batch_size=chunk)
        calls = int(counter.calls.numpy()) - before["calls"]
        rows = int(counter.rows.numpy()) - before["rows"]
        grad_calls = math.ceil(4 * steps / chunk)
        assert res.model_calls == grad_calls
        # gradient chunks + one forward call for F(x) (4 rows) + one for F(x') (1 row)
        assert calls == grad_calls + 2
        assert rows == grad_calls * chunk + 4 + 1
        assert int(counter.largest.numpy()) == chunk
    # One trace serves every chunk and every later call of the same chunk shape.
    fn = A._COMPILED[model][("gradients", chunk, SHAPE)]
    assert fn.experimental_get_tracing_count() == 1
    A.integrated_gradients(model, _data(rng, 7), base, steps=3, batch_size=chunk)
    assert fn.experimental_get_tracing_count() == 1


# ---- the structured engine (emolib's Conv2D + LSTM models) -----------------------------------

def emolib_model(variant: str = "t-emo", n_landmarks: int = 9, kernel=(2, 3), seed: int = 0) -> keras.Model:
    """A model of emolib.models.build_model at toy size, with BatchNorm statistics and a bias
    that are not the identity (a fresh BatchNorm would hide a mistake in folding it)."""
    from emolib.models import build_model

    model = build_model(variant, P, n_landmarks, 3, 4, 5, kernel_size=kernel, seed=seed)
    r = np.random.default_rng(seed + 1)
    norm = model.get_layer("batchnorm").layer
    norm.set_weights([r.uniform(0.5, 2.0, 3), r.normal(0, 0.3, 3), r.normal(0, 0.3, 3), r.uniform(0.5, 2.0, 3)])
    conv = model.get_layer("conv").layer
    conv.set_weights([conv.get_weights()[0], r.normal(0, 0.2, 3)])
    return model


@pytest.fixture(params=["numba", "tensorflow"])
def backend(request, monkeypatch):
    """The structured engine's binning: numba kernels (the CPU default) or TF ops (GPUs)."""
    monkeypatch.setenv("EMOLIB_IG_BACKEND", request.param)
    assert A.structured_backend() == request.param
    return request.param


@pytest.mark.parametrize("variant,n_landmarks,kernel", [("t-emo", 9, (2, 3)), ("r-emo", 9, (2, 5)),
                                                         ("t-emo", 1, (2, 3))])
@pytest.mark.parametrize("rule", A.RULES)
def test_structured_engine_equals_generic(rng, variant, n_landmarks, kernel, rule, backend):
    """Same attributions, gaps and outputs as pushing every interpolated sample through the model,
    with units switching on and off along the path, units that never move (x = x' on a frame),
    and both one baseline for all and one per input."""
    model = emolib_model(variant, n_landmarks, kernel)
    assert A._conv_lstm_plan(model) is not None
    shape = (P, 2, n_landmarks, 1)
    x = rng.normal(size=(5,) + shape).astype(np.float32)
    per_input = rng.normal(size=(5,) + shape).astype(np.float32)
    per_input[:, 1] = x[:, 1]  # one frame identical: its convolution slope is exactly 0
    for baselines in (per_input, per_input[0]):
        generic = A.integrated_gradients(model, x, baselines, steps=12, rule=rule, engine="generic")
        structured = A.integrated_gradients(model, x, baselines, steps=12, rule=rule, engine="structured")
        scale = np.abs(generic.attributions).max()
        np.testing.assert_allclose(structured.attributions, generic.attributions, atol=1e-5 * scale)
        np.testing.assert_allclose(structured.gaps, generic.gaps, atol=1e-5 * scale)
        np.testing.assert_allclose(structured.f_inputs, generic.f_inputs)
        auto = A.integrated_gradients(model, x, baselines, steps=12, rule=rule)
        np.testing.assert_array_equal(auto.attributions, structured.attributions)


def test_structured_engine_sees_switching_units(rng):
    """The test above only means something if ReLU units really switch inside the path."""
    model = emolib_model()
    conv = model.get_layer("conv").layer
    x, base = _data_k(rng, 5, 9), _data_k(rng, 1, 9)
    def pre(v):
        return tf.nn.conv2d(v.reshape(-1, 2, 9, 1), conv.kernel, 1, "VALID").numpy() + conv.bias.numpy()
    start, end = pre(np.broadcast_to(base, x.shape)), pre(x)
    switching = np.mean(np.sign(start) != np.sign(end))
    assert 0.2 < switching < 0.8


def _data_k(rng, n, k):
    return rng.normal(size=(n, P, 2, k, 1)).astype(np.float32)


def test_structured_engine_chunks_and_completeness(rng, backend):
    model = emolib_model()
    x, base = _data_k(rng, 7, 9), _data_k(rng, 1, 9)
    whole = A.integrated_gradients(model, x, base, steps=10, batch_size=None, engine="structured")
    assert whole.model_calls == 1
    for bs in (1, 25, 30):  # one sample a chunk (also below one sample's alphas), 2, 3 samples a chunk
        part = A.integrated_gradients(model, x, base, steps=10, batch_size=bs, engine="structured")
        assert part.model_calls == math.ceil(7 / max(1, bs // 10))
        np.testing.assert_allclose(part.attributions, whole.attributions, rtol=1e-6, atol=1e-9)
    # Completeness: the gaps shrink towards zero as m grows, as the generic engine's do.
    gaps = [np.abs(A.integrated_gradients(model, x, base, steps=m, engine="structured").gaps).mean()
            for m in (4, 64, 1024)]
    assert gaps[2] < gaps[1] < gaps[0]
    assert gaps[2] < 0.02 * np.abs(A.integrated_gradients(model, x, base, steps=4).deltas).mean() + 1e-6


def test_structured_engine_sees_weights_changed_after_a_call(rng, backend):
    """The compiled engine is cached per model; weights changed after a first call (more
    training, set_weights) must still be the ones explained."""
    model = emolib_model()
    x, base = _data_k(rng, 3, 9), _data_k(rng, 1, 9)
    A.integrated_gradients(model, x, base, steps=8, engine="structured")
    model.set_weights([w * 1.3 for w in model.get_weights()])
    structured = A.integrated_gradients(model, x, base, steps=8, engine="structured").attributions
    generic = A.integrated_gradients(model, x, base, steps=8, engine="generic").attributions
    np.testing.assert_allclose(structured, generic, atol=1e-5 * np.abs(generic).max())


@pytest.mark.parametrize("rule,steps", [("riemann_right", 50), ("trapezoid", 7), ("gauss_legendre", 33),
                                        ("riemann_right", 1)])
def test_numba_on_ranges_follow_the_sign_test(rng, rule, steps):
    """The kernels' on-range of each unit is where c0 + alpha c1 > 0, for every rule's alphas,
    units that never switch, switch inside the path, or have no slope at all."""
    from emolib import _ig_kernels as K

    alphas = A.quadrature(rule, steps)[0].astype(np.float32)
    c0 = rng.normal(size=(6, 4000)).astype(np.float32)
    c1 = (rng.normal(size=(6, 4000)) * rng.choice([0.0, 0.3, 3.0], size=(6, 4000))).astype(np.float32)
    code = K._codes(c0, c1, alphas, *K._lookup(alphas))
    n = len(alphas)
    k = np.arange(n)
    direction, j = np.divmod(np.where(code < 0, 0, code), n + 1)
    on = np.where(direction[..., None] == 0, k >= j[..., None], k < j[..., None]) & (code[..., None] >= 0)
    value = c0[..., None].astype(np.float64) + alphas.astype(np.float64) * c1[..., None]
    clear = np.abs(value) > 1e-5          # exact ties may round either way, as in any float engine
    np.testing.assert_array_equal(on[clear], (value > 0)[clear])
    assert 0.1 < np.mean(on) < 0.9 and np.mean(code < 0) > 0.05


_FRESH_OR_CACHED = """
import hashlib, os, sys
sys.path.insert(0, {root!r})
import numpy as np
import tests.test_attribution as T
from emolib import attribution as A
rng = np.random.default_rng(0)
x, base = T._data_k(rng, 3, 9), T._data_k(rng, 1, 9)
r = A.integrated_gradients(T.emolib_model(), x, base, steps=16, engine="structured")
print("HASH", hashlib.sha256(r.attributions.tobytes()).hexdigest())
"""


def test_numba_kernels_give_the_same_bits_fresh_or_from_the_cache(tmp_path):
    """A run that compiles the kernels and one that loads them from numba's cache compute the
    same attributions, bit for bit (a resumed run must reproduce a clean one)."""
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "NUMBA_CACHE_DIR": str(tmp_path / "numba"), "EMOLIB_IG_BACKEND": "numba",
           "TF_CPP_MIN_LOG_LEVEL": "3"}
    hashes = []
    for _ in range(2):   # the first compiles and writes the cache, the second loads it
        out = subprocess.run([sys.executable, "-c", _FRESH_OR_CACHED.format(root=root)], env=env,
                             capture_output=True, text=True, timeout=600)
        assert out.returncode == 0, out.stderr[-2000:]
        hashes.append([ln for ln in out.stdout.splitlines() if ln.startswith("HASH")][0])
    assert any((tmp_path / "numba").rglob("*.nbi")), "the first run wrote no cache"
    assert hashes[0] == hashes[1]


def test_structured_backend_choice(monkeypatch):
    monkeypatch.delenv("EMOLIB_IG_BACKEND", raising=False)
    gpu = bool(tf.config.list_physical_devices("GPU"))
    assert A.structured_backend() == ("tensorflow" if gpu else "numba")   # numba is a dependency
    monkeypatch.setenv("EMOLIB_IG_BACKEND", "cuda")
    with pytest.raises(ParamsError, match="EMOLIB_IG_BACKEND='cuda' is unknown"):
        A.structured_backend()


def test_engine_choice(rng):
    """auto picks the structured engine only for the architecture it is exact for."""
    assert A._conv_lstm_plan(emolib_model()) is not None
    assert A._conv_lstm_plan(tiny_paper_model()) is None   # BatchNorm not per frame
    assert A._conv_lstm_plan(linear_model()) is None
    x = _data(rng, 2)
    with pytest.raises(ParamsError, match="structured.*build_model"):
        A.integrated_gradients(tiny_paper_model(), x, x, engine="structured")
    with pytest.raises(ParamsError, match="engine 'fast' is unknown"):
        A.integrated_gradients(tiny_paper_model(), x, x, engine="fast")
    generic = A.integrated_gradients(tiny_paper_model(), x, x[::-1], steps=3)        # auto -> generic
    forced = A.integrated_gradients(tiny_paper_model(), x, x[::-1], steps=3, engine="generic")
    np.testing.assert_array_equal(generic.attributions, forced.attributions)


def test_plain_callable_models_work(rng):
    w = rng.normal(size=SHAPE).astype(np.float32)

    def f(t):
        s = tf.reduce_sum(tf.reshape(t * w, (tf.shape(t)[0], -1)), axis=1, keepdims=True)
        return tf.concat([tf.sigmoid(-s), tf.sigmoid(s)], axis=1)

    x, base = _data(rng, 2), np.zeros(SHAPE, np.float32)
    res = A.integrated_gradients(f, x, base, steps=200, rule="gauss_legendre")
    np.testing.assert_allclose(res.gaps, 0.0, atol=1e-6)


# ---- masks, curves ------------------------------------------------------------------------------

def test_landmark_mask_sums_abs_over_frames_and_coordinates(rng):
    a = rng.normal(size=(2,) + SHAPE)
    mask = A.landmark_mask(a)
    assert mask.shape == (2, L)
    np.testing.assert_allclose(mask[1, 3], np.abs(a[1, :, :, 3, 0]).sum())
    np.testing.assert_allclose(A.landmark_mask(a[0]), mask[0])
    np.testing.assert_allclose(A.landmark_mask(a[..., 0]), mask)
    with pytest.raises(DataError, match="attributions must be shaped"):
        A.landmark_mask(rng.normal(size=(2, 3, 4)))


def test_alpha_curve_runs_from_baseline_to_input(rng):
    model = tiny_paper_model()
    x, base = _data(rng, 1)[0], _data(rng, 1)[0]
    alphas, probs = A.alpha_curve(model, x, base, steps=10)
    assert alphas.shape == probs.shape == (11,)
    assert alphas[0] == 0 and alphas[-1] == 1
    out = model(np.stack([base, x]), training=False).numpy()[:, 1]
    np.testing.assert_allclose(probs[[0, -1]], out, rtol=1e-5)
    with pytest.raises(DataError, match="baseline shape"):
        A.alpha_curve(model, x, base[:2], steps=3)


# ---- global aggregation -------------------------------------------------------------------------

def test_aggregation_averages_samples_first_then_baselines():
    b1 = np.array([[1.0, 0.0], [3.0, 0.0]])        # 2 samples: mean (2, 0)
    b2 = np.array([[0.0, 6.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])  # 4 samples: mean (0, 1.5)
    per_baseline, global_mask = A.aggregate_masks([b1, b2])
    np.testing.assert_allclose(per_baseline, [[2.0, 0.0], [0.0, 1.5]])
    np.testing.assert_allclose(global_mask, [1.0, 0.75])
    pooled = np.concatenate([b1, b2]).mean(axis=0)  # the other order would give (2/3, 1)
    assert not np.allclose(global_mask, pooled)
    with pytest.raises(EmolibError):
        A.aggregate_masks([])


def test_rank_select_and_typical():
    np.testing.assert_array_equal(A.rank_landmarks(np.array([0.1, 0.5, 0.1, 0.9]), [10, 11, 12, 13]),
                                  [13, 11, 10, 12])
    cand = np.arange(100, 140)
    a = A.select_explained(cand, 5, seed=0, emotion="anger")
    assert len(a) == 5 and set(a) <= set(cand) and np.all(np.diff(a) > 0)
    np.testing.assert_array_equal(a, A.select_explained(cand[::-1], 5, seed=0, emotion="anger"))
    assert not np.array_equal(a, A.select_explained(cand, 5, seed=1, emotion="anger"))
    np.testing.assert_array_equal(A.select_explained(cand, None, 0, "anger"), cand)
    inputs = np.array([[0.0, 0.0], [1.0, 1.0], [10.0, 10.0], [1.2, 1.0]])
    assert A.typical_sample(inputs, "most_confident", np.array([0.2, 0.9, 0.5, 0.1])) == (1, 0.9)
    pos, dist = A.typical_sample(inputs, "medoid")  # mean is (3.05, 3.0): (1.2, 1.0) is closest
    assert pos == 3 and math.isclose(dist, math.hypot(1.85, 2.0))
    with pytest.raises(ParamsError, match="centroid"):
        A.typical_sample(inputs, "centroid")
    with pytest.raises(ParamsError, match=r"ig.typical 'mean' is unknown.*centroid"):
        A.typical_sample(inputs, "mean")
    with pytest.raises(ParamsError, match="ig.typical 'mean' is unknown"):
        A.choose_typical("anger", np.arange(4), inputs, "mean")


def test_centroid_baseline_is_the_mean_input_under_the_explaining_model():
    """A centroid averages the candidates' inputs under whichever model is explained (each
    model scales with its own statistics); a real video's baseline is its own input."""
    from types import SimpleNamespace

    from emolib.landmarks import LandmarkSet

    r = np.random.default_rng(5)
    n = 7
    data = LandmarkSet(r.normal(size=(n, 3, 2, 4)).astype(np.float32), np.array(["anger"] * 4 + ["fear"] * 3),
                       np.array(["s"] * n), np.arange(n).astype(str), np.zeros(n, bool), np.arange(4))

    class Api:  # per-model scaling, as training.model_inputs does
        @staticmethod
        def model_inputs(d, trained):
            return ((d.X - trained.mean) / trained.std)[..., None].astype(np.float32)

    m1 = SimpleNamespace(mean=0.5, std=2.0)
    m2 = SimpleNamespace(mean=-1.0, std=0.25)
    rows = np.array([6, 4, 5])
    own = Api.model_inputs(data.subset(rows), m2)
    centroid = A.choose_typical("fear", rows, own, "centroid")
    assert not centroid.is_video and centroid.sample == -1
    np.testing.assert_array_equal(centroid.rows, [4, 5, 6])
    flat = own.reshape(3, -1).astype(np.float64)
    assert math.isclose(centroid.score, np.linalg.norm(flat - flat.mean(axis=0), axis=1).mean(), rel_tol=1e-6)
    assert centroid.describe(data) == "centroid of 3 samples"
    video = A.choose_typical("anger", np.arange(4), Api.model_inputs(data.subset(np.arange(4)), m1),
                             "most_confident", np.array([0.1, 0.2, 0.9, 0.3]))
    assert video.is_video and video.sample == 2 and video.score == 0.9 and video.describe(data) == "2"
    for trained in (m1, m2):
        bases = A.typical_inputs([centroid, video], data, trained, Api)
        assert bases.shape == (2, 3, 2, 4, 1) and bases.dtype == np.float32
        np.testing.assert_allclose(bases[0], Api.model_inputs(data.subset(rows), trained).mean(axis=0), rtol=1e-6)
        np.testing.assert_array_equal(bases[1], Api.model_inputs(data.subset(np.array([2])), trained)[0])
    assert not np.allclose(A.typical_inputs([centroid], data, m1, Api), A.typical_inputs([centroid], data, m2, Api))
    # the cache key: a real video's row (as before), a centroid's strategy, count and rows
    assert video.key == 2
    assert centroid.key["strategy"] == "centroid" and centroid.key["n"] == 3
    other = A.TypicalBaseline("fear", "centroid", np.array([4, 5]))
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
    ranked = A.displacement_ranking(data, ["anger", "fear", "sadness"])
    assert set(ranked) == {"anger", "fear"}                 # no sadness samples: left out
    assert set(ranked["anger"][:3].tolist()) == {10, 11, 12}
    assert ranked["fear"][:2].tolist() == [20, 21]
    table = A.planted_recovery({"anger": ids[::-1], "fear": ids}, {"anger": np.array([10, 11, 12, 13])},
                               reference=ranked).set_index("emotion")
    assert list(table.index) == ["anger"]
    assert table.loc["anger", "reference_hits_top_planted"] == 3   # 10, 11, 12 of the top 4
    assert math.isclose(table.loc["anger", "reference_recall"], 0.75)
    assert table.loc["anger", "hits_top_planted"] == 0


def test_planted_recovery_and_agreement():
    ranking = {"anger": np.array([5, 1, 7, 2, 9, 0, 3, 4, 6, 8]), "fear": np.arange(10)}
    truth = {"anger": np.array([1, 2, 3]), "fear": np.array([8, 9])}
    table = A.planted_recovery(ranking, truth, top=4).set_index("emotion")
    assert table.loc["anger", "planted"] == 3
    assert table.loc["anger", "hits_top_planted"] == 1   # top 3 = 5, 1, 7
    assert table.loc["anger", "hits_top4"] == 2          # top 4 adds 2
    assert math.isclose(table.loc["anger", "chance_top_planted"], 0.9)
    assert math.isclose(table.loc["anger", "chance_top4"], 1.2)
    assert table.loc["fear", "hits_top_planted"] == 0
    masks = np.array([[1.0, 2.0, 3.0, 4.0], [10.0, 20.0, 30.0, 40.0], [4.0, 3.0, 2.0, 1.0]])
    rho = A.baseline_agreement(masks)
    np.testing.assert_allclose(rho[0, 1], 1.0)
    np.testing.assert_allclose(rho[0, 2], -1.0)
    table = A.agreement_table({"anger": {"per_baseline": masks}})
    assert math.isclose(table.loc[0, "mean_spearman"], (1 - 1 - 1) / 3)


# ---- the stage on a synthetic run with stage 02's real (tiny) models ---------------------------

@pytest.fixture(scope="module")
def trained_run(tmp_path_factory):
    """A synthetic run (planted landmarks, ground truth) with tiny T-EMO models of seed 0."""
    import yaml

    from emolib.landmarks import load_landmarks
    from emolib.run_folder import open_run
    from emolib.training import configure_tensorflow, train_models
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
    result = A.global_landmark_importance(run, params, data, progress=False)
    return run, params, data, result


def test_stage_writes_the_contract(trained_run):
    run, params, data, result = trained_run
    A.check_global_importance(run, params)
    assert result.computed == list(params.emotions)
    for e in params.emotions:
        m = A.load_masks(run, e)
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
    order = A.load_ranking(run)
    assert set(order) == set(params.emotions)
    for e, ids in order.items():
        assert sorted(ids) == list(range(468))
        np.testing.assert_array_equal(ids, A.rank_landmarks(A.load_masks(run, e)["global"], np.arange(468)))


def test_stage_per_baseline_masks_match_a_hand_computation(trained_run):
    """Stored per-baseline masks = mean over samples of |IG| summed over frames and x/y, with
    the typical video of the other emotion as the baseline; global = their mean."""
    from emolib import training

    run, params, data, result = trained_run
    e = "happiness"
    trained = result.trained[e]
    m = A.load_masks(run, e)
    typical = result.typical_of
    x = training.model_inputs(data.subset(m["samples"]), trained)
    for j, b in enumerate(m["baseline_emotions"]):
        base = training.model_inputs(data.subset(np.array([typical[str(b)]])), trained)[0]
        ig_one = A.integrated_gradients(trained.model, x, base, steps=params.ig.steps).attributions
        by_hand = np.abs(ig_one[..., 0]).sum(axis=(1, 2)).mean(axis=0)
        np.testing.assert_allclose(m["per_baseline"][j], by_hand, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(m["global"], m["per_baseline"].mean(axis=0))


def test_stage_typical_is_the_most_confident_training_sample(trained_run):
    from emolib import training

    run, params, data, result = trained_run
    train = training.split_indices(training.load_splits(run), params.ig_seed)["train"]
    for e in ("anger", "surprise"):
        trained = result.trained[e]
        own = train[data.emotion[train] == e]
        probs = trained.model(training.model_inputs(data.subset(own), trained), training=False).numpy()[:, 1]
        assert result.typical_of[e] == own[int(np.argmax(probs))]
        row = result.typical.set_index("emotion").loc[e]
        assert math.isclose(row["score"], float(probs.max()), rel_tol=1e-5)
        assert row["sequence"] == data.sequence[result.typical_of[e]]


def test_stage_recovers_planted_landmarks(trained_run):
    """The synthetic data moves 20 known landmarks per emotion: the ranking finds them well
    above chance even with these tiny, briefly trained models."""
    run, params, data, result = trained_run
    truth = A.load_ground_truth(run)
    table = A.planted_recovery({e: result.order(e) for e in params.emotions}, truth, top=64)
    assert len(table) == 6
    assert table["hits_top64"].sum() >= 2.5 * table["chance_top64"].sum()
    assert (table["hits_top64"] > table["chance_top64"]).sum() >= 5


def test_stage_is_cached_and_redone_when_parameters_change(trained_run, tmp_path):
    run, params, data, result = trained_run
    stamp = {e: A.attribution_path(run, e).stat().st_mtime_ns for e in params.emotions}
    again = A.global_landmark_importance(run, params, data, progress=False, trained=result.trained)
    assert again.computed == []
    assert {e: A.attribution_path(run, e).stat().st_mtime_ns for e in params.emotions} == stamp
    for e in params.emotions:
        np.testing.assert_array_equal(again.masks[e]["global"], result.masks[e]["global"])
    # ig.batch_size does not change the numbers: still cached
    same = params.model_copy(deep=True)
    same.ig.batch_size = 64
    assert A.global_landmark_importance(run, same, data, emotions=["anger"], progress=False,
                                        trained=result.trained).computed == []
    # a cap on the explained samples does: anger is redone with 3 samples (a seeded choice)
    capped = params.model_copy(deep=True)
    capped.ig.max_samples = 3
    capped.ig.inputs = "all"
    redo = A.global_landmark_importance(run, capped, data, emotions=["anger"], progress=False,
                                        trained=result.trained)
    assert redo.computed == ["anger"] and int(redo.masks["anger"]["n_samples"]) == 3
    assert len(set(data.emotion[redo.explained["anger"]])) >= 1
    # the shared tables still hold every emotion, anger's rows replaced
    ranking = pd.read_csv(run.results / "landmark_ranking.csv")
    assert list(ranking["emotion"].unique()) == list(params.emotions) and len(ranking) == 6 * 468
    comp = pd.read_csv(run.results / "completeness.csv")
    assert len(comp) == 30 and list(comp["emotion"].unique()) == list(params.emotions)
    np.testing.assert_array_equal(A.load_ranking(run)["anger"], redo.order("anger"))
    np.testing.assert_array_equal(A.load_ranking(run)["fear"], result.order("fear"))
    # restore the cache of the other tests' parameters
    assert A.global_landmark_importance(run, params, data, emotions=["anger"], progress=False,
                                        trained=result.trained).computed == ["anger"]
    A.check_global_importance(run, params)


def test_stage_medoid_typical(trained_run):
    from emolib import training

    run, params, data, result = trained_run
    medoid = params.model_copy(deep=True)
    medoid.ig.typical = "medoid"
    medoid.ig.max_samples = 2
    out = A.global_landmark_importance(run, medoid, data, emotions=["fear"], progress=False,
                                       trained=result.trained)
    train = training.split_indices(training.load_splits(run), params.ig_seed)["train"]
    own = train[data.emotion[train] == "fear"]
    trained = result.trained["fear"]
    flat = training.model_inputs(data.subset(own), trained).reshape(len(own), -1).astype(np.float64)
    expected = own[np.argmin(np.linalg.norm(flat - flat.mean(axis=0), axis=1))]
    assert out.typical_of["fear"] == expected
    assert (out.typical["strategy"] == "medoid").all()
    A.global_landmark_importance(run, params, data, emotions=["fear"], progress=False,
                                 trained=result.trained)  # restore the other tests' cache


def test_stage_centroid_typical(trained_run, tmp_path):
    """ig.typical: centroid end to end (on a copy of the run): each baseline is the mean input of
    the other emotion's training samples under the explaining model; typical.csv keeps one row
    per emotion (sample -1) and typical_rows.json the rows; the cache keys change; Figure 2, the
    completeness study and the checks work."""
    import json
    import shutil

    from emolib import training
    from emolib.run_folder import RunFolder

    run0, params, data, result = trained_run
    run = RunFolder(tmp_path / "run")
    shutil.copytree(run0.root, run.root)
    centroid = params.model_copy(deep=True)
    centroid.ig.typical = "centroid"
    centroid.ig.max_samples = 2
    out = A.global_landmark_importance(run, centroid, data, progress=False, trained=result.trained)
    assert out.computed == list(params.emotions)  # the strategy is in the cache key
    train = training.split_indices(training.load_splits(run), params.ig_seed)["train"]
    own = {e: np.sort(train[data.emotion[train] == e]) for e in params.emotions}
    typical = pd.read_csv(run.attributions / "typical.csv")
    assert list(typical.columns) == ["emotion", "sample", "sequence", "strategy", "score"]
    assert typical["emotion"].tolist() == list(params.emotions)
    assert (typical["sample"] == -1).all() and (typical["strategy"] == "centroid").all()
    assert typical["sequence"].tolist() == [f"centroid of {len(own[e])} samples" for e in params.emotions]
    assert (typical["score"] > 0).all()
    stored = json.loads((run.attributions / "typical_rows.json").read_text())
    loaded = A.load_typical(run)
    for e in params.emotions:
        assert stored[e]["rows"] == own[e].tolist()
        np.testing.assert_array_equal(loaded[e].rows, own[e])
        np.testing.assert_array_equal(out.baselines[e].rows, own[e])
    assert out.typical_of == {e: -1 for e in params.emotions}
    # per-baseline masks by hand, the baseline the mean of b's training inputs under e's model
    e = "happiness"
    trained = result.trained[e]
    m = A.load_masks(run, e)
    assert int(m["n_samples"]) == 2
    x = training.model_inputs(data.subset(m["samples"]), trained)
    for j, b in enumerate(m["baseline_emotions"]):
        base = training.model_inputs(data.subset(own[str(b)]), trained).astype(np.float64).mean(axis=0)
        ig_one = A.integrated_gradients(trained.model, x, base.astype(np.float32), steps=params.ig.steps).attributions
        by_hand = np.abs(ig_one[..., 0]).sum(axis=(1, 2)).mean(axis=0)
        np.testing.assert_allclose(m["per_baseline"][j], by_hand, rtol=1e-5, atol=1e-9)
    assert str(m["cache_key"]) != str(A.load_masks(run0, e)["cache_key"])
    A.check_global_importance(run, centroid)
    with pytest.raises(EmolibError, match="strategy"):
        A.check_global_importance(run, params)  # the run's typical.csv is not most_confident's
    again = A.global_landmark_importance(run, centroid, data, progress=False, trained=result.trained)
    assert again.computed == []
    # Figure 2 runs from the other emotions' centroids to the emotion's own centroid
    curves = A.path_curves(out, data, steps=4)
    alphas, probs = curves[e]["anger"]
    own_base = training.model_inputs(data.subset(own[e]), trained).astype(np.float64).mean(axis=0)
    expected = A.model_outputs(trained.model, own_base[None].astype(np.float32))[0, 1]
    assert math.isclose(probs[-1], expected, rel_tol=1e-4) and len(curves) == 6
    study = A.completeness_study(out, data, centroid, samples_per_emotion=1, factors=(0.5, 1.0), progress=False,
                                 run=run)
    assert sorted(set(study["steps"])) == [4, 8] and (study["pairs"] == 5).all()
    assert np.isfinite(study[["mean_abs_gap", "mean_abs_delta"]].to_numpy()).all()
    # a centroid needs its rows: a GlobalImportance built from the table alone refuses
    with pytest.raises(EmolibError, match="centroid"):
        A.GlobalImportance("t-emo", out.typical, out.masks, out.ranking, out.completeness)


def test_stage_refuses_missing_models_and_bad_arguments(trained_run, tmp_path):
    import shutil

    from emolib.run_folder import RunFolder

    run, params, data, _ = trained_run
    bogus = params.model_copy(deep=True)
    bogus.ig.__dict__["typical"] = "mean"  # past validation (the config refuses it)
    with pytest.raises(ParamsError, match="ig.typical 'mean' is unknown"):
        A.global_landmark_importance(run, bogus, data, progress=False)
    with pytest.raises(ParamsError, match="variant"):
        A.global_landmark_importance(run, params, data, variant="x-emo", progress=False)
    with pytest.raises(ParamsError, match="contempt"):
        A.global_landmark_importance(run, params, data, emotions=["contempt"], progress=False)
    # a run folder with data and splits but without models: a clear error before any IG
    bare = RunFolder(tmp_path / "no_models").ensure()
    shutil.copy(run.params_path, bare.params_path)
    shutil.copytree(run.data, bare.data, dirs_exist_ok=True)
    with pytest.raises(DataError, match="splits.csv"):
        A.global_landmark_importance(bare, params, data, progress=False)
    shutil.copytree(run.results, bare.results, dirs_exist_ok=True)
    with pytest.raises(DataError, match=r"models/t-emo/anger/all_K468_seed0.keras: not found"):
        A.global_landmark_importance(bare, params, data, progress=False)
    with pytest.raises(DataError, match="no landmark ranking"):
        A.load_ranking(RunFolder(tmp_path / "empty"))


def test_notebook_summaries_on_the_stage_result(trained_run):
    run, params, data, result = trained_run
    curves = A.path_curves(result, data, steps=5)
    assert set(curves) == set(params.emotions)
    for e, per in curves.items():
        assert len(per) == 5
        alphas, probs = per[next(iter(per))]
        assert probs.shape == (6,) and np.all((probs >= 0) & (probs <= 1))
        # alpha = 1 is the emotion's typical video, which its model is most sure of
        assert math.isclose(probs[-1], result.typical.set_index("emotion").loc[e, "score"], rel_tol=1e-4)
    study = A.completeness_study(result, data, params, samples_per_emotion=1, factors=(0.25, 1.0), progress=False,
                                 run=run)
    assert sorted(set(study["steps"])) == [2, 8] and (study["pairs"] == 5).all()
    cached = sorted((run.cache / "ig").glob("completeness_t-emo_*.csv"))
    assert len(cached) == 6
    stamps = [p.stat().st_mtime_ns for p in cached]
    again = A.completeness_study(result, data, params, samples_per_emotion=1, factors=(0.25, 1.0), progress=False,
                                 run=run)
    pd.testing.assert_frame_equal(again, study, check_dtype=False)
    assert [p.stat().st_mtime_ns for p in cached] == stamps
    regions = A.region_importance_table(result.masks)
    assert list(regions.index) == list(params.emotions) and "lips" in regions.columns
    assert np.isfinite(regions.to_numpy()).all()
    top = A.top_landmarks_table(result.ranking, n=3)
    assert top.shape == (3, 6)
    agreement = A.agreement_table(result.masks)
    assert agreement["mean_spearman"].between(-1, 1).all()
    same = A.compare_rankings(result, result, top=64).set_index("emotion")
    assert (same["top64_overlap"] == 64).all() and np.allclose(same["spearman"], 1.0)
    assert math.isclose(same["chance_overlap"].iloc[0], 64 * 64 / 468)
    assert A.variant_available(run, params, "t-emo") and not A.variant_available(run, params, "r-emo")


def test_figures_of_the_stage(trained_run, tmp_path):
    from emolib.plots import attribution as P
    from emolib.plots.face import mean_face

    run, params, data, result = trained_run
    curves = A.path_curves(result, data, steps=4)
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
    matrices = {e: A.baseline_agreement(m["per_baseline"]) for e, m in result.masks.items()}
    agree = P.baseline_agreement_figure(matrices, {e: list(m["baseline_emotions"]) for e, m in result.masks.items()})
    assert len(agree.data) == 6 and agree.data[0].visible and not agree.data[1].visible
    regions = P.region_importance_figure(A.region_importance_table(result.masks))
    assert np.nanmax(regions.data[0].z) == pytest.approx(1.0)
    path = P.save_figure(faces, tmp_path / "faces.html")
    html = path.read_text()
    assert "plotly.js" in html or "Plotly" in html
    assert not list(tmp_path.glob(".*tmp*"))  # written atomically, no leftovers
    study = A.completeness_study(result, data, params, samples_per_emotion=1, factors=(0.25, 1.0), progress=False,
                                 run=run)
    gap = P.gap_vs_steps_figure(study)
    assert len(gap.data) == 6 and list(gap.data[0].x) == [2, 8]
    recovery = A.planted_recovery({e: result.order(e) for e in params.emotions}, A.load_ground_truth(run))
    bars = P.planted_recovery_figure(recovery)
    assert len(bars.data) == 5 and list(bars.data[0].y) == recovery["hits_top_planted"].tolist()
