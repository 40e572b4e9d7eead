"""T-EMO and R-EMO: the paper's binary emotion classifiers (section 3.3, Figure 1).

One sample is a video of P frames, each frame the x/y coordinates of K landmarks, fed as a
(P, 2, K, 1) tensor. The network, per the paper::

    per-frame Conv2D (F filters, ReLU)  ->  BatchNorm  ->  Flatten  ->  LSTM (Q units)
    ->  Dropout  ->  Dense FC1 (R units)  ->  Dense FC2 (2 units, softmax)

``t-emo`` trains every weight. ``r-emo`` keeps the convolution's random initial weights for the
whole training (the layer is built with ``trainable=False``); everything after it is trained.

Choices the paper leaves open, settled here (``params.model.*``; defaults in brackets):

* conv kernel [(2, 3)]: spans both coordinates and 3 neighbouring landmark columns, valid
  padding; the width is clipped to K so that K=16 (or fewer) still works.
* dropout rate [0.3], FC1 activation [ReLU].
* loss: sparse categorical cross-entropy on the 2-way softmax with integer labels 0/1. With two
  classes this is exactly the paper's binary cross-entropy, equation (3), with
  y_hat = softmax output 1.
* BatchNorm normalises each conv feature map (statistics over batch, frames and positions). It is
  wrapped in TimeDistributed only so that TensorFlow runs its fused 4-D kernel (3-4x faster on
  CPU than the 5-D path); the statistics, and so the model, are the same.
* the LSTM is unrolled when P <= 32 (a plain graph instead of a while loop: faster for the short
  sequences used here; numerically the same recurrence).

Initial weights are drawn by :func:`initial_weights` with NumPy from the seed (Keras' own default
distributions: Glorot-uniform kernels, orthogonal recurrent kernel, zero biases with the LSTM
forget-gate bias at 1), so the same seed gives the same network on any machine, and a model can
be reset to its initial state without being rebuilt (see :mod:`emolib.training`).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np

from emolib.errors import ParamsError

VARIANTS: tuple[str, ...] = ("t-emo", "r-emo")
FC_ACTIVATIONS: tuple[str, ...] = ("relu", "tanh", "sigmoid", "elu")
# Sequences up to this many frames get an unrolled LSTM (see the module docstring).
MAX_UNROLLED_FRAMES = 32
# Layer names (IG and the tests find layers by these).
CONV_LAYER = "conv"


def conv_kernel(kernel_size: Sequence[int], n_landmarks: int) -> tuple[int, int]:
    """The convolution kernel actually used: ``kernel_size`` with its width clipped to K.

    Args:
        kernel_size: (height over the 2 coordinates, width over landmarks).
        n_landmarks: K, the number of landmark columns of the input.

    Returns:
        (height, min(width, K)).
    """
    return int(kernel_size[0]), int(min(int(kernel_size[1]), int(n_landmarks)))


def _check_architecture(variant: str, frames: int, n_landmarks: int, filters: int, lstm_units: int,
                        fc_units: int, kernel_size: Sequence[int], dropout: float,
                        fc_activation: str, learning_rate: float) -> None:
    if variant not in VARIANTS:
        raise ParamsError(f"model variant {variant!r} is unknown; expected one of {list(VARIANTS)}")
    for name, value in (("frames", frames), ("n_landmarks", n_landmarks), ("filters", filters),
                        ("lstm_units", lstm_units), ("fc_units", fc_units)):
        if isinstance(value, bool) or int(value) != value or value < 1:
            raise ParamsError(f"model {name} must be a positive integer, got {value!r}")
    if len(kernel_size) != 2 or kernel_size[0] not in (1, 2) or int(kernel_size[1]) < 1:
        raise ParamsError(f"model kernel_size must be [1 or 2, >= 1] (coordinates x landmarks), "
                          f"got {list(kernel_size)}")
    if not 0.0 <= dropout < 1.0:
        raise ParamsError(f"model dropout must lie in [0, 1), got {dropout}")
    if fc_activation not in FC_ACTIVATIONS:
        raise ParamsError(f"model fc_activation {fc_activation!r} is unknown; expected one of "
                          f"{list(FC_ACTIVATIONS)}")
    if not learning_rate > 0:
        raise ParamsError(f"learning_rate must be > 0, got {learning_rate}")


def build_model(variant: str, frames: int, n_landmarks: int, filters: int, lstm_units: int,
                fc_units: int, kernel_size: Sequence[int] = (2, 3), dropout: float = 0.3,
                fc_activation: str = "relu", learning_rate: float = 1e-4,
                seed: Optional[int] = None):
    """Build and compile a T-EMO or R-EMO model.

    Args:
        variant: ``"t-emo"`` (every weight trained) or ``"r-emo"`` (random, frozen convolution).
        frames: P, frames per sample.
        n_landmarks: K, landmark columns per frame.
        filters: F, convolution filters.
        lstm_units: Q, LSTM units.
        fc_units: R, FC1 units.
        kernel_size: conv kernel (coordinates, landmarks); the width is clipped to K.
        dropout: dropout rate after the LSTM.
        fc_activation: FC1 activation.
        learning_rate: Adam's learning rate (the paper: 1e-4).
        seed: seed of the initial weights and of the dropout masks (None: a random draw).

    Returns:
        A compiled ``tf_keras.Model`` taking (N, P, 2, K, 1) float32 and returning (N, 2) class
        probabilities (column 1: "is this emotion"); Adam, sparse categorical cross-entropy
        (= binary cross-entropy on the softmax), accuracy metric.

    Raises:
        ParamsError: an unknown variant or activation, or a non-positive size.
    """
    _check_architecture(variant, frames, n_landmarks, filters, lstm_units, fc_units, kernel_size,
                        dropout, fc_activation, learning_rate)
    import tf_keras as keras

    L = keras.layers
    if seed is None:
        seed = int(np.random.SeedSequence().generate_state(1)[0] % (2**31 - 1))
    frames, n_landmarks = int(frames), int(n_landmarks)
    inputs = L.Input(shape=(frames, 2, n_landmarks, 1), name="landmarks")
    conv = L.TimeDistributed(
        L.Conv2D(int(filters), conv_kernel(kernel_size, n_landmarks), activation="relu",
                 padding="valid"),
        name=CONV_LAYER)
    if variant == "r-emo":
        # R-EMO: the random kernels are never updated (Adam never sees them).
        conv.trainable = False
    h = conv(inputs)
    h = L.TimeDistributed(L.BatchNormalization(), name="batchnorm")(h)
    h = L.TimeDistributed(L.Flatten(), name="flatten")(h)
    h = L.LSTM(int(lstm_units), unroll=frames <= MAX_UNROLLED_FRAMES, name="lstm")(h)
    # rng_type="stateful": the masks come from a tf.random.Generator whose state training resets
    # per seed (see emolib.training), so a reused model draws the same masks as a fresh one.
    h = L.Dropout(float(dropout), seed=int(seed), rng_type="stateful", name="dropout")(h)
    h = L.Dense(int(fc_units), activation=fc_activation, name="fc1")(h)
    outputs = L.Dense(2, activation="softmax", name="fc2")(h)
    model = keras.Model(inputs, outputs, name=variant.replace("-", "_"))
    model.set_weights(initial_weights(model, seed))
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=float(learning_rate)),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    return model


def _glorot_uniform(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    # Keras' fans: a conv kernel (kh, kw, in, out) has receptive field kh*kw.
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape)


def _orthogonal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    rows, cols = int(np.prod(shape[:-1])), shape[-1]
    a = rng.normal(size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(a)
    q *= np.sign(np.diag(r))
    if rows < cols:
        q = q.T
    return q.reshape(shape)


def initial_weights(model, seed: int) -> list[np.ndarray]:
    """The initial weights of a model built by :func:`build_model`, drawn from ``seed``.

    Keras' default distributions, drawn with NumPy in the order of ``model.weights`` so that the
    result depends on nothing but the seed and the architecture.

    Args:
        model: a model from :func:`build_model`.
        seed: the seed.

    Returns:
        Arrays in the order of ``model.get_weights()``.
    """
    rng = np.random.default_rng([int(seed), 20240611])
    out = []
    for weight in model.weights:
        name = weight.name.split("/")[-1].split(":")[0]
        shape = tuple(int(d) for d in weight.shape)
        if name == "kernel":
            value = _glorot_uniform(rng, shape)
        elif name == "recurrent_kernel":
            value = _orthogonal(rng, shape)
        elif name == "bias" and "lstm" in weight.name:
            # unit_forget_bias: the forget gate starts open (gates ordered i, f, c, o).
            value = np.zeros(shape)
            units = shape[0] // 4
            value[units:2 * units] = 1.0
        elif name in ("bias", "beta", "moving_mean"):
            value = np.zeros(shape)
        elif name in ("gamma", "moving_variance"):
            value = np.ones(shape)
        else:  # a weight this module does not create: keep what Keras drew
            value = weight.numpy()
        out.append(np.asarray(value, dtype=np.float32))
    return out


def conv_weights(model) -> list[np.ndarray]:
    """Copies of the convolution's kernel and bias (what R-EMO keeps frozen)."""
    return [np.array(w) for w in model.get_layer(CONV_LAYER).get_weights()]


def count_params(model) -> tuple[int, int]:
    """(all parameters, trainable parameters) of a model.

    BatchNorm's moving statistics count as parameters but not as trainable ones, as in Keras'
    summary.
    """
    trainable = int(sum(np.prod(w.shape) for w in model.trainable_weights))
    total = int(sum(np.prod(w.shape) for w in model.weights))
    return total, trainable
