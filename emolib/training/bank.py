"""The model bank: many units of one architecture trained as one computation.

A demo model is small: a training step of one batch of 16 is mostly fixed cost (a graph call,
a dozen small kernels), so training 200 of them one after another spends most of its time on
overhead, and a GPU would sit idle. The bank stacks B units along a leading axis and runs one
traced step for all of them: every weight, Adam moment and BatchNorm statistic has shape
``(B, ...)``, the convolution and the LSTM become batched matrix products, and one gradient of
the sum of the units' losses gives each unit its own gradient (the units share nothing).

What each unit keeps, exactly as :func:`emolib.training.fit.fit_model` trains it alone:

* its own training and validation parts and class weights; parts of different sizes are padded
  with zero-weight samples that are masked out of the loss *and* of BatchNorm's batch
  statistics (never duplicated), and a unit with fewer batches in an epoch skips the extra steps
  (no Adam step, no moving-statistics update);
* its initial weights (:func:`emolib.models.initial_weights` of its seed), its batch order (the
  same NumPy generator, one permutation per epoch), and its dropout masks: the values its own
  stateful ``tf.random.Generator`` would draw, reproduced by :mod:`emolib.training._philox`;
* Adam as tf-keras computes it (its own step counter per unit), BatchNorm's batch statistics
  and moving averages as tf-keras' fused kernel computes them (biased variance for the
  normalisation, the moving variance through Bessel's correction and back);
* early stopping on its own weighted validation loss with its own patience, and the restore of
  its best epoch. A unit that has stopped leaves the bank (the bank is compacted), so the
  others go on without computing it.

The LSTM's input projection is one matrix product over all frames (instead of one per frame);
the recurrence then multiplies only the hidden state. The weights stay in Keras' layout, so a
unit is handed back as the list ``model.get_weights()`` expects and saved as the same tf-keras
model file as before. The numbers equal single training up to float32 rounding (the products are
summed in another order): ``tests/training/test_bank.py`` checks the stopping epoch and the
final weights against :func:`fit_model`.

Memory: :func:`unit_bytes` estimates what one unit costs (its data, weights and Adam moments,
the activations of one step kept for the gradient) and :func:`bank_size` turns
``train.bank_size`` (``auto``: a quarter of the memory available, at most 2 GiB, divided by
that estimate) into a number of units; a larger set of units is split into banks.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Optional, Sequence

import numpy as np
import pandas as pd

from emolib.models import build_model, conv_kernel, initial_weights
from emolib.training._philox import many_uniform_draws
from emolib.training.inputs import class_weights

if TYPE_CHECKING:
    from emolib.config import Params

# Weights of a model from build_model, in the order of model.get_weights().
WEIGHT_NAMES = ("conv_kernel", "conv_bias", "bn_gamma", "bn_beta", "bn_mean", "bn_variance",
                "lstm_kernel", "lstm_recurrent", "lstm_bias", "fc1_kernel", "fc1_bias", "fc2_kernel",
                "fc2_bias")
_CONV = (0, 1)
_BN_STATS = (4, 5)
_BN_MOMENTUM = 0.99
_BN_EPSILON = 1e-3
_ADAM = (0.9, 0.999, 1e-7)
# train.bank_size: auto spends at most this much memory on one bank ...
AUTO_BUDGET_BYTES = 2 * 2 ** 30
# ... and never more than this fraction of the memory the system reports available.
AUTO_BUDGET_FRACTION = 0.25
MAX_AUTO_BANK = 256


@dataclass
class BankJob:
    """One unit's inputs: scaled (N, P, 2, K, 1) samples and 0/1 labels, and its seed."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    seed: int


@dataclass
class BankFit:
    """What the bank returns for one unit (the same fields as :class:`~emolib.training.fit.FitResult`,
    plus the restored weights in ``model.get_weights()`` order)."""

    history: pd.DataFrame
    best_epoch: int
    epochs: int
    seconds: float  # this unit's share of the bank's time (see train_bank)
    weights: list[np.ndarray]


@dataclass(frozen=True)
class Architecture:
    """What the bank's traced step depends on (one trace per architecture and process)."""

    variant: str
    frames: int
    n_landmarks: int
    hyper: tuple[int, int, int]
    kernel: tuple[int, int]
    dropout: float
    fc_activation: str
    learning_rate: float
    batch_size: int

    @classmethod
    def of(cls, variant: str, frames: int, n_landmarks: int, hyper: Sequence[int], params: Params):
        m, t = params.model, params.train
        return cls(variant, int(frames), int(n_landmarks), tuple(int(h) for h in hyper),
                   conv_kernel(m.kernel_size, n_landmarks), float(m.dropout), m.fc_activation,
                   float(t.learning_rate), int(t.batch_size))


# --------------------------------------------------------------------------------------------
# Memory
# --------------------------------------------------------------------------------------------
def unit_bytes(arch: Architecture, n_train: int, n_val: int) -> int:
    """An estimate of one unit's memory in a bank, in bytes (float32 throughout)."""
    P, K = arch.frames, arch.n_landmarks
    F, Q, R = arch.hyper
    kh, kw = arch.kernel
    ho, wo = 3 - kh, K - kw + 1
    d = ho * wo * F
    n_weights = kh * kw * F + F + 4 * F + (d + Q + 1) * 4 * Q + Q * R + R + 2 * R + 2
    data = (n_train + n_val) * P * 2 * K
    bs = arch.batch_size
    # One step's activations kept for the gradient: patches, conv output (pre/post ReLU and BN),
    # the LSTM's projected inputs and gates, and their gradients (x2).
    activations = 2 * bs * P * (ho * wo * (kh * kw + 4 * F) + 12 * Q)
    # weights, best weights, Adam's two moments, the gradient and the update's temporaries
    return int(4 * (data + 7 * n_weights + activations))


def bank_size(setting, arch: Architecture, n_train: int, n_val: int) -> int:
    """Units per bank for ``train.bank_size`` (``auto`` or a positive number)."""
    if setting != "auto":
        return max(1, int(setting))
    budget = AUTO_BUDGET_BYTES
    try:
        import psutil

        budget = min(budget, int(AUTO_BUDGET_FRACTION * psutil.virtual_memory().available))
    except ImportError:  # psutil comes with jupyter; without it, the fixed budget
        pass
    return int(max(1, min(MAX_AUTO_BANK, budget // max(1, unit_bytes(arch, n_train, n_val)))))


def weight_shapes(arch: Architecture) -> list[tuple[int, ...]]:
    """The shapes of ``model.get_weights()`` for an architecture (one unit)."""
    F, Q, R = arch.hyper
    kh, kw = arch.kernel
    d = (3 - kh) * (arch.n_landmarks - kw + 1) * F
    return [(kh, kw, 1, F), (F,), (F,), (F,), (F,), (F,), (d, 4 * Q), (Q, 4 * Q), (4 * Q,), (Q, R), (R,),
            (R, 2), (2,)]


# --------------------------------------------------------------------------------------------
# The traced computation
# --------------------------------------------------------------------------------------------
_TRACED: dict[Architecture, tuple[Callable, Callable, int]] = {}
_TEMPLATES: dict[Architecture, object] = {}


def _functions(arch: Architecture):
    """(train_epoch, predict) for an architecture, traced once (any bank size, any step count)."""
    if arch in _TRACED:
        return _TRACED[arch]
    import tensorflow as tf
    import tf_keras as keras

    P, K = arch.frames, arch.n_landmarks
    F, Q, R = arch.hyper
    kh, kw = arch.kernel
    ho, wo = 3 - kh, K - kw + 1
    act = keras.activations.get(arch.fc_activation)
    shapes = weight_shapes(arch)
    trainable = [i for i in range(len(WEIGHT_NAMES))
                 if i not in _BN_STATS and not (arch.variant == "r-emo" and i in _CONV)]
    sizes = [int(np.prod(shapes[i])) for i in trainable]
    scale = 1.0 / (1.0 - arch.dropout) if arch.dropout > 0 else 1.0
    lr = tf.constant(arch.learning_rate, tf.float32)
    b1, b2, eps = (tf.constant(v, tf.float32) for v in _ADAM)
    f = tf.constant(1.0 - _BN_MOMENTUM, tf.float32)

    def conv(w, x):
        # x (B, n, P, 2, K) -> (B, n*P, ho, F, wo): the per-frame valid convolution and its ReLU,
        # as one batched product of the unit's kernel (its bias as one more column) with the
        # patch rows (one row per kernel tap, landmarks along the last axis). Products, not
        # tf.nn.depthwise_conv2d with the units as channels: that one's last bits change with
        # the number of channels, so a unit's numbers would depend on which units share its bank.
        shape = tf.shape(x)
        B, n = shape[0], shape[1]
        xr = tf.reshape(x, [B, n * P, 2, K])
        rows = tf.stack([tf.concat([xr[:, :, h + dh:h + dh + 1, dw:dw + wo] for dw in range(kw) for dh in range(kh)]
                                   + [tf.ones([B, n * P, 1, wo])], axis=2) for h in range(ho)], axis=2)
        kernel = tf.reshape(tf.transpose(w[0][:, :, :, 0, :], [0, 3, 2, 1]), [B, F, kw * kh])
        kernel = tf.concat([kernel, w[1][:, :, None]], axis=2)[:, None, None]  # (B, 1, 1, F, taps + 1)
        return tf.nn.relu(tf.matmul(kernel, rows))

    def moments(z, sm):
        # BatchNorm's batch statistics per unit and filter over its real samples (sm: (B, n) 0/1).
        B, n = tf.shape(sm)[0], tf.shape(sm)[1]
        s1 = tf.reduce_sum(tf.reshape(tf.reduce_sum(z, axis=-1), [B, n, P * ho, F]), axis=2)
        s2 = tf.reduce_sum(tf.reshape(tf.reduce_sum(tf.square(z), axis=-1), [B, n, P * ho, F]), axis=2)
        size = tf.reduce_sum(sm, axis=1) * float(P * ho * wo)
        denom = tf.maximum(size, 1.0)[:, None]
        mean = tf.einsum("bn,bnf->bf", sm, s1) / denom
        var = tf.maximum(tf.einsum("bn,bnf->bf", sm, s2) / denom - tf.square(mean), 0.0)
        return mean, var, size

    def head(w, z, mean, var, keep, n):
        # BatchNorm folded into the LSTM's input projection (one product over all frames), the
        # recurrence, dropout, FC1, FC2: -> (B, n, 2) probabilities.
        B = tf.shape(w[2])[0]
        a = w[2] * tf.math.rsqrt(var + _BN_EPSILON)
        c = w[3] - mean * a
        # Keras' kernel rows run (h, w, f); the features here run (h, f, w). The scaling by a is
        # applied with the filter axis first, so that a's gradient is a reduction over one
        # contiguous axis (over two axes its summation order changed with the bank's size).
        kf = tf.transpose(tf.reshape(w[6], [B, ho, wo, F, 4 * Q]), [0, 3, 1, 2, 4])  # (B, F, ho, wo, G)
        bias = tf.einsum("bf,bfg->bg", c, tf.reduce_sum(tf.reshape(kf, [B, F, ho * wo, 4 * Q]), axis=2)) + w[8]
        kf = tf.reshape(tf.reshape(kf, [B, F, ho * wo * 4 * Q]) * a[:, :, None], [B, F, ho, wo, 4 * Q])
        kernel = tf.reshape(tf.transpose(kf, [0, 2, 1, 3, 4]), [B, ho * F * wo, 4 * Q])
        zt = tf.reshape(z, [B, n * P, ho * F * wo])
        xw = tf.reshape(tf.matmul(zt, kernel) + bias[:, None, :], [B, n, P, 4 * Q])
        h = tf.zeros([B, n, Q])
        cell = tf.zeros([B, n, Q])
        for t in range(P):
            gates = xw[:, :, t] + tf.matmul(h, w[7])
            i, fg, g, o = tf.split(gates, 4, axis=-1)
            cell = tf.sigmoid(fg) * cell + tf.sigmoid(i) * tf.tanh(g)
            h = tf.sigmoid(o) * tf.tanh(cell)
        if keep is not None:
            h = tf.where(keep, h * scale, 0.0)
        hidden = act(tf.matmul(h, w[9]) + w[10][:, None, :])
        return tf.nn.softmax(tf.matmul(hidden, w[11]) + w[12][:, None, :], axis=-1)

    n_w = len(WEIGHT_NAMES)
    spec_w = [tf.TensorSpec((None,) + shape, tf.float32) for shape in shapes]
    flat = tf.TensorSpec((None, sum(sizes)), tf.float32)
    x_spec = tf.TensorSpec((None, None, P, 2, K), tf.float32)

    @tf.function(input_signature=[spec_w, flat, flat, tf.TensorSpec((None,), tf.float32), x_spec,
                                  tf.TensorSpec((None, None), tf.int32), tf.TensorSpec((None, None), tf.float32),
                                  tf.TensorSpec((None, None, None), tf.int32),
                                  tf.TensorSpec((None, None, None), tf.float32),
                                  tf.TensorSpec((None, None, None, Q), tf.bool)])
    def train_epoch(w, m, v, steps, x, y, sw, order, mask, keep):
        """One epoch of every unit: ``order``/``mask`` (B, S, bs) index its samples per step;
        ``m``, ``v``: Adam's moments of the trainable weights, flattened and concatenated."""
        B = tf.shape(x)[0]

        def step(s, state):
            w, (m, v, steps, total, hits) = list(state[:n_w]), state[n_w:]
            idx, sm, kp = order[:, s], mask[:, s], keep[:, s]
            xb = tf.gather(x, idx, batch_dims=1)
            yb = tf.gather(y, idx, batch_dims=1)
            wb = tf.gather(sw, idx, batch_dims=1)
            count = tf.reduce_sum(sm, axis=1)
            active = count > 0
            with tf.GradientTape() as tape:
                tape.watch([w[i] for i in trainable])
                z = conv(w, xb)
                mean, var, size = moments(z, sm)
                prob = head(w, z, mean, var, kp, tf.shape(idx)[1])
                p = tf.clip_by_value(tf.gather(prob, yb, axis=2, batch_dims=2), 1e-7, 1.0)
                # Keras' class_weight convention: weighted losses averaged over the batch.
                loss = tf.reduce_sum(-tf.math.log(p) * wb * sm, axis=1) / tf.maximum(count, 1.0)
                objective = tf.reduce_sum(tf.where(active, loss, 0.0))
            grads = tape.gradient(objective, [w[i] for i in trainable])
            g = tf.concat([tf.reshape(gi, [B, -1]) for gi in grads], axis=1)
            # Adam as tf-keras computes it, one step counter per unit; a unit without samples in
            # this step (its epoch has fewer batches) does not step at all.
            steps = steps + tf.cast(active, tf.float32)
            alpha = lr * tf.sqrt(1.0 - tf.pow(b2, steps)) / (1.0 - tf.pow(b1, steps))
            on = active[:, None]
            m_new = m + (g - m) * (1.0 - b1)
            v_new = v + (tf.square(g) - v) * (1.0 - b2)
            update = tf.where(on, (m_new * alpha[:, None]) / (tf.sqrt(v_new) + eps), 0.0)
            m, v = tf.where(on, m_new, m), tf.where(on, v_new, v)
            for i, u in zip(trainable, tf.split(update, sizes, axis=1)):
                w[i] = w[i] - tf.reshape(u, tf.shape(w[i]))
            # BatchNorm's moving statistics, as tf-keras' fused kernel updates them (the moving
            # variance through Bessel's correction and back).
            n = tf.maximum(size, 2.0)[:, None]
            new_mean = (1.0 - f) * w[4] + f * mean
            new_var = ((1.0 - f) * (w[5] * (n / (n - 1.0))) + f * (var * (n / (n - 1.0)))) * ((n - 1.0) / n)
            w[4] = tf.where(on, new_mean, w[4])
            w[5] = tf.where(on, new_var, w[5])
            total = total + loss * count
            hits = hits + tf.reduce_sum(tf.cast(tf.equal(tf.argmax(prob, axis=2, output_type=tf.int32), yb),
                                                tf.float32) * sm, axis=1)
            return s + 1, tuple(w) + (m, v, steps, total, hits)

        state = tuple(w) + (m, v, steps, tf.zeros([B]), tf.zeros([B]))
        _, state = tf.while_loop(lambda s, _: s < tf.shape(order)[1], step, (tf.constant(0), state))
        return (list(state[:n_w]),) + tuple(state[n_w:])

    @tf.function(input_signature=[spec_w, x_spec])
    def predict(w, x):
        return head(w, conv(w, x), w[4], w[5], None, tf.shape(x)[1])

    _TRACED[arch] = (train_epoch, predict, sum(sizes))
    return _TRACED[arch]


# --------------------------------------------------------------------------------------------
# Training a bank
# --------------------------------------------------------------------------------------------
def _pad(arrays: Sequence[np.ndarray], length: int) -> np.ndarray:
    out = np.zeros((len(arrays), max(length, 1)) + arrays[0].shape[1:], arrays[0].dtype)
    for b, a in enumerate(arrays):
        out[b, :len(a)] = a
    return out


def _weighted_ce(y: np.ndarray, prob: np.ndarray, weights: np.ndarray) -> float:
    p = np.clip(prob[np.arange(len(y)), y], 1e-7, 1.0)
    return float(np.mean(weights[y] * -np.log(p)))


def _template(arch: Architecture):
    import tf_keras as keras

    if arch not in _TEMPLATES:
        if len(_TEMPLATES) >= 8:  # the Keras models (used for their weight shapes only) add up
            _TEMPLATES.clear()
            keras.backend.clear_session()
        F, Q, R = arch.hyper
        model = build_model(arch.variant, arch.frames, arch.n_landmarks, F, Q, R,
                            kernel_size=arch.kernel, dropout=arch.dropout,
                            fc_activation=arch.fc_activation, learning_rate=arch.learning_rate, seed=0)
        have = [tuple(int(d) for d in w.shape) for w in model.weights]
        if have != weight_shapes(arch):
            raise RuntimeError(f"the bank expects weights of shapes {weight_shapes(arch)}, the model has {have}")
        _TEMPLATES[arch] = model
    return _TEMPLATES[arch]


# --------------------------------------------------------------------------------------------
# The two engines: TensorFlow's traced step, numba's fused kernels
# --------------------------------------------------------------------------------------------
BACKENDS = ("auto", "numba", "tensorflow")


def backend() -> str:
    """Which engine trains a bank: ``tensorflow`` (the traced step above: the default, on a CPU
    and on a GPU) or ``numba`` (fused CPU kernels, :mod:`emolib.training._bank_kernels`: the same
    numbers, but measured slower on 2 CPU cores so far, 1.3-1.7x the time per unit-epoch; see
    docs/MEASUREMENTS.md). The environment variable ``EMOLIB_BANK_BACKEND`` (auto / numba /
    tensorflow) picks one; ``auto`` is ``tensorflow``."""
    import os

    from emolib.errors import ParamsError
    from emolib.training import _bank_kernels

    asked = os.environ.get("EMOLIB_BANK_BACKEND", "auto").strip().lower() or "auto"
    if asked not in BACKENDS:
        raise ParamsError(f"EMOLIB_BANK_BACKEND={asked!r} is unknown; expected one of {list(BACKENDS)}")
    if asked == "numba" and not _bank_kernels.AVAILABLE:
        raise ParamsError("EMOLIB_BANK_BACKEND=numba, but numba is not installed")
    return "numba" if asked == "numba" else "tensorflow"


class _TfState:
    """The bank's weights, Adam moments and data as TensorFlow tensors; one traced epoch."""

    def __init__(self, arch, weights0, x, y, sw, x_val, n_val):
        import tensorflow as tf

        self.tf = tf
        self.train_epoch, self.predict_fn, n_trainable = _functions(arch)
        B = len(weights0)
        self.w = [tf.constant(np.stack([wi[k] for wi in weights0])) for k in range(len(WEIGHT_NAMES))]
        self.best_w = list(self.w)
        self.m = tf.zeros([B, n_trainable])
        self.v = tf.zeros([B, n_trainable])
        self.steps = tf.zeros([B])
        self.x, self.y, self.sw, self.x_val = (tf.constant(a) for a in (x, y, sw, x_val))

    def epoch(self, order, mask, keep):
        self.w, self.m, self.v, self.steps, total, hits = self.train_epoch(
            self.w, self.m, self.v, self.steps, self.x, self.y, self.sw, order, mask, keep)
        return total.numpy(), hits.numpy()

    def predict(self):
        return self.predict_fn(self.w, self.x_val).numpy()

    def remember(self, improved):
        tf = self.tf
        on = tf.constant(improved)
        self.best_w = [tf.where(tf.reshape(on, [-1] + [1] * (len(a.shape) - 1)), a, bb)
                       for a, bb in zip(self.w, self.best_w)]

    def best(self, rows):
        arrays = [a.numpy() for a in self.best_w]
        return [[a[r].copy() for a in arrays] for r in rows]

    def compact(self, keep_rows):
        tf = self.tf
        idx = tf.constant(keep_rows, tf.int32)
        self.w, self.best_w = ([tf.gather(a, idx) for a in arrs] for arrs in (self.w, self.best_w))
        self.m, self.v, self.steps, self.x, self.y, self.sw, self.x_val = (
            tf.gather(a, idx) for a in (self.m, self.v, self.steps, self.x, self.y, self.sw, self.x_val))


def _one_blas_thread():
    """The kernels split the units over the cores and call BLAS inside: one BLAS thread each
    (measured at K = 468: 36 against 79 ms per unit-epoch with BLAS' own threads on top)."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - comes with scikit-learn
        import contextlib

        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


class _NumbaState:
    """The same state as NumPy arrays, one flat row of weights per unit; numba's fused epoch."""

    def __init__(self, arch, weights0, x, y, sw, x_val, n_val):
        from emolib.training import _bank_kernels

        self.k = _bank_kernels
        self.arch = arch
        shapes = weight_shapes(arch)
        sizes = [int(np.prod(sh)) for sh in shapes]
        self.shapes = shapes
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        self.W = np.ascontiguousarray(np.stack([np.concatenate([np.asarray(a, np.float32).ravel() for a in wi])
                                                for wi in weights0]))
        self.best_W = self.W.copy()
        self.M1 = np.zeros_like(self.W)
        self.M2 = np.zeros_like(self.W)
        self.steps = np.zeros(len(weights0))
        trainable = np.ones(self.W.shape[1], bool)
        for i in _BN_STATS + (_CONV if arch.variant == "r-emo" else ()):
            trainable[self.offsets[i]:self.offsets[i + 1]] = False
        self.trainable = trainable
        self.x, self.y, self.sw = np.ascontiguousarray(x, np.float32), np.ascontiguousarray(y, np.int32), \
            np.ascontiguousarray(sw, np.float32)
        self.x_val, self.n_val = np.ascontiguousarray(x_val, np.float32), np.asarray(n_val, np.int64)
        self.act = self.k.ACTIVATIONS.index(arch.fc_activation)

    def epoch(self, order, mask, keep):
        a = self.arch
        F, Q, R = a.hyper
        kh, kw = a.kernel
        counts = mask.sum(axis=2).astype(np.int64)
        total = np.zeros(len(self.W))
        hits = np.zeros(len(self.W))
        scale = 1.0 / (1.0 - a.dropout) if a.dropout > 0 else 1.0
        with _one_blas_thread():
            self.k.train_epoch(self.W, self.M1, self.M2, self.steps, self.trainable, self.offsets, self.x, self.y,
                               self.sw, order, counts, keep, a.frames, a.n_landmarks, kh, kw, F, Q, R, self.act,
                               scale, a.learning_rate, _ADAM[0], _ADAM[1], _ADAM[2], _BN_MOMENTUM, _BN_EPSILON,
                               a.variant != "r-emo", total, hits)
        return total, hits

    def predict(self):
        a = self.arch
        F, Q, R = a.hyper
        kh, kw = a.kernel
        prob = np.zeros((len(self.W), max(1, self.x_val.shape[1]), 2), np.float32)
        with _one_blas_thread():
            self.k.predict(self.W, self.offsets, self.x_val, self.n_val, a.frames, a.n_landmarks, kh, kw, F, Q, R,
                           self.act, _BN_EPSILON, prob)
        return prob

    def remember(self, improved):
        self.best_W[improved] = self.W[improved]

    def best(self, rows):
        out = []
        for r in rows:
            flat = self.best_W[r]
            out.append([flat[self.offsets[i]:self.offsets[i + 1]].reshape(sh).copy()
                        for i, sh in enumerate(self.shapes)])
        return out

    def compact(self, keep_rows):
        idx = np.asarray(keep_rows)
        for name in ("W", "best_W", "M1", "M2", "steps", "x", "y", "sw", "x_val", "n_val"):
            setattr(self, name, np.ascontiguousarray(getattr(self, name)[idx]))


def train_bank(jobs: Sequence[BankJob], *, variant: str, frames: int, n_landmarks: int,
               hyper: Sequence[int], params: Params,
               on_done: Optional[Callable[[int, BankFit], None]] = None,
               on_epoch: Optional[Callable[[int, int], None]] = None) -> list[BankFit]:
    """Train every job as one bank; the same models as :func:`fit_model` one at a time.

    Args:
        jobs: the units' inputs (same architecture; any sizes of parts).
        variant, frames, n_landmarks, hyper: the architecture.
        params: ``model.*`` and ``train.*``.
        on_done: called with (job index, result) as soon as a unit has stopped, so that it can be
            saved while the others train on (an interrupted bank keeps the finished units).
        on_epoch: called after every epoch with (epoch, units still training).

    Returns:
        One :class:`BankFit` per job, in order. A unit's ``seconds`` is the bank's wall time
        shared out: each epoch's time is split among the units trained in it in proportion to
        their training steps.
    """
    import tensorflow as tf

    if not jobs:
        return []
    t = params.train
    arch = Architecture.of(variant, frames, n_landmarks, hyper, params)
    template = _template(arch)
    F, Q, R = arch.hyper
    bs = arch.batch_size
    B = len(jobs)

    weights0 = [initial_weights(template, j.seed) for j in jobs]
    cw = [class_weights(j.y_train, t.class_weight) for j in jobs]
    n_train = np.array([len(j.y_train) for j in jobs])
    x = _pad([j.x_train[..., 0] for j in jobs], n_train.max())
    y = _pad([np.asarray(j.y_train, np.int32) for j in jobs], n_train.max())
    sw = _pad([c[np.asarray(j.y_train, int)].astype(np.float32) for j, c in zip(jobs, cw)], n_train.max())
    n_val = np.array([len(j.y_val) for j in jobs])
    x_val = _pad([j.x_val[..., 0] for j in jobs], n_val.max())
    y_val = [np.asarray(j.y_val, np.int32) for j in jobs]
    state = (_NumbaState if backend() == "numba" else _TfState)(arch, weights0, x, y, sw, x_val, n_val)

    rngs = [np.random.default_rng([int(j.seed), 11]) for j in jobs]
    states = []
    for j in jobs:  # each unit's dropout generator, reset to its seed as Trainer.reset does
        gen = tf.random.Generator.from_seed(int(j.seed), alg=tf.random.Algorithm.AUTO_SELECT)
        states.append(tuple(int(s) for s in gen.state.numpy()))
    n_steps = -(-n_train // bs)

    alive = list(range(B))  # job index of each bank row
    best_loss = np.full(B, np.inf)
    best_epoch = np.zeros(B, int)
    wait = np.zeros(B, int)
    rows: list[list[tuple]] = [[] for _ in range(B)]
    seconds = np.zeros(B)
    results: list[Optional[BankFit]] = [None] * B

    def finish(done_rows: list[int]) -> None:
        for row, weights in zip(done_rows, state.best(done_rows)):
            job = alive[row]
            fit = BankFit(pd.DataFrame(rows[job], columns=["epoch", "loss", "val_loss", "accuracy", "val_accuracy"]),
                          int(best_epoch[job]), len(rows[job]), float(seconds[job]), weights)
            results[job] = fit
            if on_done is not None:
                on_done(job, fit)

    for epoch in range(1, t.epochs + 1):
        start = time.perf_counter()
        S = int(n_steps[alive].max())
        order = np.zeros((len(alive), S, bs), np.int32)
        mask = np.zeros((len(alive), S, bs), np.float32)
        keep = np.ones((len(alive), S, bs, Q), bool)
        for r, b in enumerate(alive):
            n = int(n_train[b])
            perm = rngs[b].permutation(n).astype(np.int32)
            flat_o, flat_m = order[r].reshape(-1), mask[r].reshape(-1)
            flat_o[:n], flat_m[:n] = perm, 1.0
        if arch.dropout > 0:
            # One draw per training step of each unit, as its Dropout layer draws them.
            sizes = [[min(bs, int(n_train[b]) - s) * Q for s in range(0, int(n_train[b]), bs)] for b in alive]
            draws, after = many_uniform_draws([states[b] for b in alive], sizes)
            for r, b in enumerate(alive):
                states[b] = after[r]
                for s, u in enumerate(draws[r]):
                    keep[r, s, :len(u) // Q] = u.reshape(-1, Q) >= np.float32(arch.dropout)
        total, hits = state.epoch(order, mask, keep)
        prob = state.predict()
        improved, stopped = np.zeros(len(alive), bool), []
        for r, b in enumerate(alive):
            p = prob[r, :len(y_val[b])]
            val_loss = _weighted_ce(y_val[b], p, cw[b])
            val_acc = float(np.mean(p.argmax(axis=1) == y_val[b]))
            rows[b].append((epoch, float(total[r]) / n_train[b], val_loss, float(hits[r]) / n_train[b], val_acc))
            if val_loss < best_loss[b]:
                best_loss[b], best_epoch[b], wait[b] = val_loss, epoch, 0
                improved[r] = True
            else:
                wait[b] += 1
                if wait[b] >= t.patience:
                    stopped.append(r)
        if improved.any():
            state.remember(improved)
        elapsed = time.perf_counter() - start
        share = n_steps[alive] / n_steps[alive].sum()
        seconds[alive] += elapsed * share
        last = epoch == t.epochs
        done = list(range(len(alive))) if last else stopped
        if done:
            finish(done)
        if done and not last:
            keep_rows = [r for r in range(len(alive)) if r not in set(done)]
            if not keep_rows:
                break
            state.compact(keep_rows)
            alive = [alive[r] for r in keep_rows]
        if on_epoch is not None:
            on_epoch(epoch, 0 if last else len(alive))
        if last:
            break
    return results  # type: ignore[return-value]
