"""Integrated Gradients engine (equation 2) and the global landmark importance of stage 03."""
from __future__ import annotations

import math
import os

import numpy as np
import pytest
import tensorflow as tf

import emolib  # noqa: F401  (selects tf-keras before TensorFlow loads)

try:  # keep TensorFlow light on a shared 2-core machine; fails once TF is already running
    tf.config.threading.set_intra_op_parallelism_threads(1)
    tf.config.threading.set_inter_op_parallelism_threads(1)
except RuntimeError:
    pass
import tf_keras as keras

from emolib import ig
from emolib.errors import DataError, EmolibError, ParamsError
from emolib.ig import _cache
from emolib.ig import structured as ig_structured

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
    alphas, weights = ig.quadrature("riemann_right", 4)
    np.testing.assert_allclose(alphas, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(weights, [0.25] * 4)
    for rule in ig.RULES:
        _, w = ig.quadrature(rule, 7)
        assert math.isclose(w.sum(), 1.0)
    a, w = ig.quadrature("trapezoid", 2)
    np.testing.assert_allclose(a, [0, 0.5, 1])
    np.testing.assert_allclose(w, [0.25, 0.5, 0.25])


def test_quadrature_refuses_bad_rule_and_steps():
    with pytest.raises(ParamsError, match="simpson"):
        ig.quadrature("simpson", 5)
    with pytest.raises(ParamsError, match="steps"):
        ig.quadrature("riemann_right", 0)


# ---- the engine ---------------------------------------------------------------------------------

def test_linear_model_ig_equals_difference_times_weight(rng):
    model = linear_model()
    x, base = _data(rng, 4), _data(rng, 1)[0]
    for target in (0, 1):
        w = model.layers[-1].get_weights()[0][:, target].reshape(SHAPE).astype(np.float64)
        res = ig.integrated_gradients(model, x, base, steps=5, target=target)
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
        res = ig.integrated_gradients(model, x, base, steps=m, rule=rule)
        np.testing.assert_allclose(res.attributions, exact, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(res.gaps, 0.0, atol=1e-4)
    # Equation (2), right Riemann sum over alphas k/m, k = 1..m: overshoots by (x - x')^2 / m.
    # (A left sum, k = 0..m-1, would undershoot by the same amount.)
    res = ig.integrated_gradients(model, x, base, steps=m)
    np.testing.assert_allclose(res.attributions, exact + (x64 - b64) ** 2 / m, rtol=1e-5, atol=1e-5)
    expected_gap = ((x64 - b64) ** 2).reshape(3, -1).sum(axis=1) / m
    np.testing.assert_allclose(res.gaps, expected_gap, rtol=1e-4)
    np.testing.assert_allclose(res.deltas, (x64 ** 2 - b64 ** 2).reshape(3, -1).sum(axis=1), rtol=1e-5)


def test_gap_shrinks_as_steps_grow_on_the_paper_model(rng):
    model = tiny_paper_model()
    x, base = _data(rng, 3), _data(rng, 1)[0]
    table = ig.completeness_by_steps(model, x, base, [2, 8, 64], batch_size=256)
    gaps = table["mean_abs_gap"].to_numpy()
    assert gaps[2] < gaps[0]
    assert gaps[2] < 0.05 * max(table["mean_abs_delta"].iloc[0], 1e-3) + 1e-4
    assert list(table.columns) == ["steps", "mean_abs_gap", "max_abs_gap", "mean_abs_delta", "relative_gap"]


def test_chunked_equals_unchunked(rng):
    model = tiny_paper_model()
    x, base = _data(rng, 5), _data(rng, 5)
    whole = ig.integrated_gradients(model, x, base, steps=9, batch_size=None)
    assert whole.model_calls == 1
    for bs in (4, 7, 1000):  # chunks straddling samples, padding, one oversize chunk
        part = ig.integrated_gradients(model, x, base, steps=9, batch_size=bs)
        # Same quadrature sum; only float32 rounding inside the model's batch-size-dependent
        # kernels differs (about 1e-9 here on values of about 1e-3).
        np.testing.assert_allclose(part.attributions, whole.attributions, rtol=1e-5, atol=1e-8)
        # A gap is a sum over the sample's attributions minus F(x) - F(x'): its rounding scales
        # with their L1 mass (a few float32 ulps of it, measured up to 3e-7 of it on an AMD EPYC,
        # whose kernels round differently from the Intel machines this bound was first set on).
        mass = np.abs(whole.attributions).reshape(len(x), -1).sum(axis=1)
        bound = 1e-5 * np.abs(whole.gaps) + 16 * np.finfo(np.float32).eps * mass
        assert np.all(np.abs(part.gaps - whole.gaps) <= bound)
    assert ig.integrated_gradients(model, x, base, steps=9, batch_size=7).model_calls == math.ceil(45 / 7)


def test_one_baseline_broadcast_equals_it_repeated(rng):
    model = tiny_paper_model()
    x, base = _data(rng, 4), _data(rng, 1)
    one = ig.integrated_gradients(model, x, base[0], steps=6, batch_size=5)
    one_batched = ig.integrated_gradients(model, x, base, steps=6, batch_size=5)
    repeated = ig.integrated_gradients(model, x, np.repeat(base, 4, axis=0), steps=6, batch_size=5)
    np.testing.assert_allclose(one.attributions, repeated.attributions, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(one_batched.attributions, repeated.attributions, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(one.f_baselines, repeated.f_baselines)


def test_result_unpacks_and_reports_outputs(rng):
    model = tiny_paper_model()
    x, base = _data(rng, 2), _data(rng, 1)[0]
    res = ig.integrated_gradients(model, x, base, steps=4)
    attributions, gaps = res
    assert attributions is res.attributions and gaps is res.gaps
    probs = model(x, training=False).numpy()[:, 1]
    np.testing.assert_allclose(res.f_inputs, probs, rtol=1e-5)
    np.testing.assert_allclose(res.gaps, attributions.reshape(2, -1).sum(axis=1) - res.deltas, atol=1e-9)


def test_bad_baseline_shape_is_a_clear_error(rng):
    model = tiny_paper_model()
    x = _data(rng, 3)
    with pytest.raises(DataError, match=r"baselines have shape \(2, 3, 2, 6, 1\)"):
        ig.integrated_gradients(model, x, _data(rng, 2))
    with pytest.raises(DataError, match="baselines have shape"):
        ig.integrated_gradients(model, x, np.zeros((P, 2, L)))
    bad = _data(rng, 1)
    bad[0, 0, 0, 0, 0] = np.nan
    with pytest.raises(DataError, match="NaN"):
        ig.integrated_gradients(model, x, bad)
    with pytest.raises(DataError, match="non-empty"):
        ig.integrated_gradients(model, x[:0], bad)


def test_unknown_target_is_a_clear_error(rng):
    model = tiny_paper_model()
    x = _data(rng, 2)
    for target in (2, -1, "1", 1.0):
        with pytest.raises(EmolibError, match="not a class of this model: it has 2 outputs"):
            ig.integrated_gradients(model, x, x, target=target)
    with pytest.raises(ParamsError, match="batch_size"):
        ig.integrated_gradients(model, x, x, batch_size=0)


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
        res = ig.integrated_gradients(model, x, base, steps=steps, batch_size=chunk)
        calls = int(counter.calls.numpy()) - before["calls"]
        rows = int(counter.rows.numpy()) - before["rows"]
        grad_calls = math.ceil(4 * steps / chunk)
        assert res.model_calls == grad_calls
        # gradient chunks + one forward call for F(x) (4 rows) + one for F(x') (1 row)
        assert calls == grad_calls + 2
        assert rows == grad_calls * chunk + 4 + 1
        assert int(counter.largest.numpy()) == chunk
    # One trace serves every chunk and every later call of the same chunk shape.
    fn = _cache._COMPILED[model][("gradients", chunk, SHAPE)]
    assert fn.experimental_get_tracing_count() == 1
    ig.integrated_gradients(model, _data(rng, 7), base, steps=3, batch_size=chunk)
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
    assert ig.structured_backend() == request.param
    return request.param


@pytest.mark.parametrize("variant,n_landmarks,kernel", [("t-emo", 9, (2, 3)), ("r-emo", 9, (2, 5)),
                                                         ("t-emo", 1, (2, 3))])
@pytest.mark.parametrize("rule", ig.RULES)
def test_structured_engine_equals_generic(rng, variant, n_landmarks, kernel, rule, backend):
    """Same attributions, gaps and outputs as pushing every interpolated sample through the model,
    with units switching on and off along the path, units that never move (x = x' on a frame),
    and both one baseline for all and one per input."""
    model = emolib_model(variant, n_landmarks, kernel)
    assert ig_structured._conv_lstm_plan(model) is not None
    shape = (P, 2, n_landmarks, 1)
    x = rng.normal(size=(5,) + shape).astype(np.float32)
    per_input = rng.normal(size=(5,) + shape).astype(np.float32)
    per_input[:, 1] = x[:, 1]  # one frame identical: its convolution slope is exactly 0
    for baselines in (per_input, per_input[0]):
        generic = ig.integrated_gradients(model, x, baselines, steps=12, rule=rule, engine="generic")
        structured = ig.integrated_gradients(model, x, baselines, steps=12, rule=rule, engine="structured")
        scale = np.abs(generic.attributions).max()
        np.testing.assert_allclose(structured.attributions, generic.attributions, atol=1e-5 * scale)
        np.testing.assert_allclose(structured.gaps, generic.gaps, atol=1e-5 * scale)
        np.testing.assert_allclose(structured.f_inputs, generic.f_inputs)
        auto = ig.integrated_gradients(model, x, baselines, steps=12, rule=rule)
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
    whole = ig.integrated_gradients(model, x, base, steps=10, batch_size=None, engine="structured")
    assert whole.model_calls == 1
    for bs in (1, 25, 30):  # one sample a chunk (also below one sample's alphas), 2, 3 samples a chunk
        part = ig.integrated_gradients(model, x, base, steps=10, batch_size=bs, engine="structured")
        assert part.model_calls == math.ceil(7 / max(1, bs // 10))
        # Chunks change how the float32 sums split over threads: equal to float32 rounding of the
        # attributions' scale (an absolute 1e-9 failed on an AVX-512 machine by 3.7e-9 in 2 of 378).
        scale = float(np.abs(whole.attributions).max())
        np.testing.assert_allclose(part.attributions, whole.attributions, rtol=1e-6, atol=1e-6 * scale)
    # Completeness: the gaps shrink towards zero as m grows, as the generic engine's do.
    gaps = [np.abs(ig.integrated_gradients(model, x, base, steps=m, engine="structured").gaps).mean()
            for m in (4, 64, 1024)]
    assert gaps[2] < gaps[1] < gaps[0]
    assert gaps[2] < 0.02 * np.abs(ig.integrated_gradients(model, x, base, steps=4).deltas).mean() + 1e-6


def test_structured_engine_sees_weights_changed_after_a_call(rng, backend):
    """The compiled engine is cached per model; weights changed after a first call (more
    training, set_weights) must still be the ones explained."""
    model = emolib_model()
    x, base = _data_k(rng, 3, 9), _data_k(rng, 1, 9)
    ig.integrated_gradients(model, x, base, steps=8, engine="structured")
    model.set_weights([w * 1.3 for w in model.get_weights()])
    structured = ig.integrated_gradients(model, x, base, steps=8, engine="structured").attributions
    generic = ig.integrated_gradients(model, x, base, steps=8, engine="generic").attributions
    np.testing.assert_allclose(structured, generic, atol=1e-5 * np.abs(generic).max())


@pytest.mark.parametrize("rule,steps", [("riemann_right", 50), ("trapezoid", 7), ("gauss_legendre", 33),
                                        ("riemann_right", 1)])
def test_numba_on_ranges_follow_the_sign_test(rng, rule, steps):
    """The kernels' on-range of each unit is where c0 + alpha c1 > 0, for every rule's alphas,
    units that never switch, switch inside the path, or have no slope at all."""
    from emolib.ig import _kernels as K

    alphas = ig.quadrature(rule, steps)[0].astype(np.float32)
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
import tests.ig.test_ig as T
from emolib import ig
rng = np.random.default_rng(0)
x, base = T._data_k(rng, 3, 9), T._data_k(rng, 1, 9)
r = ig.integrated_gradients(T.emolib_model(), x, base, steps=16, engine="structured")
print("HASH", hashlib.sha256(r.attributions.tobytes()).hexdigest())
"""


def test_numba_kernels_give_the_same_bits_fresh_or_from_the_cache(tmp_path):
    """A run that compiles the kernels and one that loads them from numba's cache compute the
    same attributions, bit for bit (a resumed run must reproduce a clean one)."""
    import subprocess
    import sys
    from pathlib import Path

    root = str(Path(__file__).resolve().parents[2])
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
    assert ig.structured_backend() == ("tensorflow" if gpu else "numba")   # numba is a dependency
    monkeypatch.setenv("EMOLIB_IG_BACKEND", "cuda")
    with pytest.raises(ParamsError, match="EMOLIB_IG_BACKEND='cuda' is unknown"):
        ig.structured_backend()


def test_engine_choice(rng):
    """auto picks the structured engine only for the architecture it is exact for."""
    assert ig_structured._conv_lstm_plan(emolib_model()) is not None
    assert ig_structured._conv_lstm_plan(tiny_paper_model()) is None   # BatchNorm not per frame
    assert ig_structured._conv_lstm_plan(linear_model()) is None
    x = _data(rng, 2)
    with pytest.raises(ParamsError, match="structured.*build_model"):
        ig.integrated_gradients(tiny_paper_model(), x, x, engine="structured")
    with pytest.raises(ParamsError, match="engine 'fast' is unknown"):
        ig.integrated_gradients(tiny_paper_model(), x, x, engine="fast")
    generic = ig.integrated_gradients(tiny_paper_model(), x, x[::-1], steps=3)        # auto -> generic
    forced = ig.integrated_gradients(tiny_paper_model(), x, x[::-1], steps=3, engine="generic")
    np.testing.assert_array_equal(generic.attributions, forced.attributions)


def test_plain_callable_models_work(rng):
    w = rng.normal(size=SHAPE).astype(np.float32)

    def f(t):
        s = tf.reduce_sum(tf.reshape(t * w, (tf.shape(t)[0], -1)), axis=1, keepdims=True)
        return tf.concat([tf.sigmoid(-s), tf.sigmoid(s)], axis=1)

    x, base = _data(rng, 2), np.zeros(SHAPE, np.float32)
    res = ig.integrated_gradients(f, x, base, steps=200, rule="gauss_legendre")
    np.testing.assert_allclose(res.gaps, 0.0, atol=1e-6)


# ---- masks, curves ------------------------------------------------------------------------------

def test_landmark_mask_sums_abs_over_frames_and_coordinates(rng):
    a = rng.normal(size=(2,) + SHAPE)
    mask = ig.landmark_mask(a)
    assert mask.shape == (2, L)
    np.testing.assert_allclose(mask[1, 3], np.abs(a[1, :, :, 3, 0]).sum())
    np.testing.assert_allclose(ig.landmark_mask(a[0]), mask[0])
    np.testing.assert_allclose(ig.landmark_mask(a[..., 0]), mask)
    with pytest.raises(DataError, match="attributions must be shaped"):
        ig.landmark_mask(rng.normal(size=(2, 3, 4)))


def test_alpha_curve_runs_from_baseline_to_input(rng):
    model = tiny_paper_model()
    x, base = _data(rng, 1)[0], _data(rng, 1)[0]
    alphas, probs = ig.alpha_curve(model, x, base, steps=10)
    assert alphas.shape == probs.shape == (11,)
    assert alphas[0] == 0 and alphas[-1] == 1
    out = model(np.stack([base, x]), training=False).numpy()[:, 1]
    np.testing.assert_allclose(probs[[0, -1]], out, rtol=1e-5)
    with pytest.raises(DataError, match="baseline shape"):
        ig.alpha_curve(model, x, base[:2], steps=3)


# ---- global aggregation -------------------------------------------------------------------------

def test_aggregation_averages_samples_first_then_baselines():
    b1 = np.array([[1.0, 0.0], [3.0, 0.0]])        # 2 samples: mean (2, 0)
    b2 = np.array([[0.0, 6.0], [0.0, 0.0], [0.0, 0.0], [0.0, 0.0]])  # 4 samples: mean (0, 1.5)
    per_baseline, global_mask = ig.aggregate_masks([b1, b2])
    np.testing.assert_allclose(per_baseline, [[2.0, 0.0], [0.0, 1.5]])
    np.testing.assert_allclose(global_mask, [1.0, 0.75])
    pooled = np.concatenate([b1, b2]).mean(axis=0)  # the other order would give (2/3, 1)
    assert not np.allclose(global_mask, pooled)
    with pytest.raises(ValueError):
        ig.aggregate_masks([])


