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

A trained model is saved as a *unit* (:func:`save_unit`): the tf-keras model file, its input
scaling (``.npz`` beside it) and its JSON record (metrics, learning curve, the key of everything
that shaped it), the record written last so that its presence marks the unit finished.
:class:`TrainedModel` is a loaded unit, and :func:`model_inputs` feeds it landmarks exactly as
training did (:func:`reference_inputs`, then :func:`scale_inputs`). Where units live in a run
folder is :mod:`emolib.run_folder`'s business.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, get_args

import numpy as np

from emolib import io
from emolib.errors import DataError, ParamsError
from emolib.keras_files import save_model
from emolib.landmarks import LandmarkSet
from emolib.vocab import VARIANTS, FcActivation

FC_ACTIVATIONS: tuple[str, ...] = get_args(FcActivation)
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


# --------------------------------------------------------------------------------------------
# TensorFlow set-up
# --------------------------------------------------------------------------------------------
def configure_tensorflow(threads: int = 0) -> None:
    """Deterministic ops (the same seed gives the same model), and TensorFlow's CPU threads.

    Threads can only be set before TensorFlow starts its runtime; when it already has (a model
    was built earlier in this process), the setting is left as it is.

    Args:
        threads: intra- and inter-op threads; 0 leaves TensorFlow's default (one per core).
    """
    import tensorflow as tf

    if threads:
        try:
            tf.config.threading.set_intra_op_parallelism_threads(int(threads))
            tf.config.threading.set_inter_op_parallelism_threads(int(threads))
        except RuntimeError:
            pass  # runtime already initialised: keep its thread pools
    tf.config.experimental.enable_op_determinism()
    # On an Ampere or newer GPU, TensorFlow would run float32 products in TF32 (10-bit
    # mantissas): off, so that a GPU run computes what the CPU computes, to float32 rounding.
    tf.config.experimental.enable_tensor_float_32_execution(False)
    # With op determinism on, a random op refuses to run without a global seed; every model
    # here is seeded explicitly, but other code in the same process (a notebook) may not be.
    try:
        tf.random.uniform(())
    except RuntimeError:
        tf.random.set_seed(0)


# ---- inputs --------------------------------------------------------------------------------------

def reference_inputs(X: np.ndarray, reference: str) -> np.ndarray:
    """Landmark positions as the model reads them, before scaling.

    Args:
        X: (N, P, 2, K) positions.
        reference: ``none`` (absolute coordinates, the paper's input) or ``first_frame`` (each
            landmark's displacement from its position in the sequence's first frame).

    Returns:
        (N, P, 2, K) float32.
    """
    X = np.asarray(X, np.float32)
    if reference == "none":
        return X
    if reference == "first_frame":
        return X - X[:, :1]
    raise ParamsError(f"data.reference {reference!r} is unknown; expected none or first_frame")


def scale_inputs(X: np.ndarray, mean: np.ndarray, std: np.ndarray, reference: str = "none") -> np.ndarray:
    """(N, P, 2, K) landmarks -> (N, P, 2, K, 1) float32 model inputs (reference, then scaling)."""
    return (((reference_inputs(X, reference) - mean) / std)[..., None]).astype(np.float32)


# ---- saved units -----------------------------------------------------------------------------------

# --------------------------------------------------------------------------------------------
# Units: one (variant, emotion, seed, landmark subset, hyperparameters)
# --------------------------------------------------------------------------------------------
@dataclass
class TrainedModel:
    """A trained model with what is needed to feed it (see :func:`model_inputs`).

    Attributes:
        model: the tf-keras model, (N, P, 2, K, 1) -> (N, 2) probabilities.
        landmark_ids: (K,) MediaPipe ids of its input columns, in order.
        mean, std: (2, K) input scaling (training-part statistics).
        hyper: (F, Q, R): filters, LSTM units, FC1 units.
        reference: ``none`` or ``first_frame`` (see :func:`reference_inputs`), applied before
            the scaling.
        variant, emotion, n_landmarks, selection, seed: which model this is.
        record: its JSON record (metrics, learning curve, cache key).
    """

    model: Any
    landmark_ids: np.ndarray
    mean: np.ndarray
    std: np.ndarray
    hyper: tuple[int, int, int]
    reference: str = "none"
    variant: str = ""
    emotion: str = ""
    n_landmarks: int = 0
    selection: str = ""
    seed: int = 0
    record: dict = field(default_factory=dict, repr=False)


def unit_files(path: Path) -> tuple[Path, Path, Path]:
    """The three files of a saved unit: the model, its scaler (.npz) and its record (.json)."""
    path = Path(path)
    return path, path.with_suffix(".npz"), path.with_suffix(".json")


def read_record(path: Path) -> Optional[dict]:
    """The record of the unit saved at ``path``, or None when the unit is not (completely) there.

    Used to resume: a unit whose record holds the expected key is finished and not trained again.
    A unit whose model or scaler file no longer matches the size and SHA-1 its record wrote down
    (truncated, damaged, replaced) is not finished either, so it is trained again.
    """
    model, scaler, record = unit_files(path)
    if not (model.is_file() and scaler.is_file() and record.is_file()):
        return None
    try:
        saved = json.loads(record.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # rewritten on the next save
    if not isinstance(saved, dict):
        return None
    for name, expected in saved.get("files", {}).items():
        if _file_key(path.parent / name) != expected:
            return None
    return saved


def _file_key(path: Path) -> dict:
    """Size and SHA-1 of one of a unit's files (what its record checks them by)."""
    try:
        return {"size": path.stat().st_size, "sha1": io.file_digest(path)}
    except OSError:
        return {}


def _with_file_keys(path: Path, record: dict) -> dict:
    model, scaler, _ = unit_files(path)
    return {**record, "files": {p.name: _file_key(p) for p in (model, scaler)}}


def save_unit(path: Path, model, mean: np.ndarray, std: np.ndarray, landmark_ids: np.ndarray,
              record: dict) -> None:
    """Save a trained model as a unit at ``path`` (each file atomically, the record last).

    Args:
        path: the model file (``.keras``); the scaler and record go beside it.
        model: the tf-keras model.
        mean, std: (2, K) its input scaling.
        landmark_ids: (K,) its input columns.
        record: JSON-able; must hold ``hyper`` and ``reference``.
    """
    _, scaler, record_path = unit_files(path)
    with io.atomic_path(path) as tmp:
        save_model(model, tmp)  # the file model.save writes, without its cost (emolib.keras_files)
    io.write_npz(scaler, mean=mean, std=std, landmark_ids=np.asarray(landmark_ids, np.int64),
                 hyper=np.asarray(record["hyper"], np.int64), reference=np.array(record["reference"]))
    io.write_json(record_path, _with_file_keys(path, record))  # last: its presence marks the unit finished


def copy_unit(source: Path, target: Path, record: dict) -> None:
    """Copy a saved unit to ``target`` with ``record`` (atomically, the record last)."""
    for src, dst in zip(unit_files(source)[:2], unit_files(target)[:2]):
        with io.atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    io.write_json(unit_files(target)[2], _with_file_keys(target, record))


def load_unit(path: Path, *, variant: str, emotion: str, n_landmarks: int, selection: str,
              seed: int) -> TrainedModel:
    """Load the unit saved at ``path`` (:meth:`emolib.run_folder.RunFolder.load_trained` finds it).

    Args:
        path: the model file.
        variant, emotion, n_landmarks, selection, seed: which model it is (kept on the result).

    Returns:
        A :class:`TrainedModel`.

    Raises:
        DataError: the model, its scaler or its record is missing or unreadable.
    """
    import tf_keras as keras

    for p in unit_files(path):
        if not p.is_file():
            raise DataError(f"{p}: not found; train the model first (stage 02, "
                            "emolib.training.train_models)")
    model_path, scaler_path, record_path = unit_files(path)
    try:
        record = json.loads(record_path.read_text())
        with np.load(scaler_path, allow_pickle=False) as f:
            mean, std, ids = f["mean"], f["std"], f["landmark_ids"].astype(int)
            reference = str(f["reference"]) if "reference" in f.files else "none"
        model = keras.models.load_model(model_path, compile=False)
    except Exception as exc:  # a damaged file: say which
        raise DataError(f"{model_path}: cannot load the model or its scaler ({exc})") from None
    return TrainedModel(model=model, landmark_ids=ids, mean=mean, std=std,
                        hyper=tuple(int(v) for v in record["hyper"]), reference=reference, variant=variant,
                        emotion=emotion, n_landmarks=int(n_landmarks), selection=selection,
                        seed=int(seed), record=record)


def model_inputs(data: LandmarkSet, trained: TrainedModel) -> np.ndarray:
    """The exact inputs of a trained model: its landmarks, scaled with its training statistics.

    Args:
        data: samples (any landmark set holding the model's landmarks).
        trained: a loaded unit (:func:`load_unit`).

    Returns:
        (N, P, 2, K, 1) float32.

    Raises:
        DataError: the data lacks some of the model's landmarks, or has another frame count.
    """
    expected = trained.model.input_shape[1] if trained.model is not None else data.frames
    if expected is not None and data.frames != expected:
        raise DataError(f"the data holds {data.frames} frames per sample; the model expects {expected}")
    sub = data.select_landmarks(trained.landmark_ids)
    return scale_inputs(sub.X, trained.mean, trained.std, trained.reference)
