"""Stage 02: the training protocol for T-EMO and R-EMO, the grid search, the SVM baselines.

One binary model per emotion (that emotion against the others), per variant and per seed:

* **Partition.** Each seed draws its own train / validation / test partition
  (:func:`make_splits`). ``split: subject`` (default) keeps every subject in one part;
  ``split: random`` splits by sequence (the paper's protocol). A flipped copy shares its
  original's subject and sequence, so it always lands in the same part. Parts are stratified by
  emotion. ``test_fraction`` is a fraction of all samples, ``val_fraction`` a fraction of what is
  left for training (the paper: "10% of the training set was reserved for validation").
  Every partition is written to ``results/splits.csv``.
* **Reference.** ``data.reference: first_frame`` subtracts each landmark's position in the
  sequence's first frame (the neutral face) from every frame, so that the input is the movement of
  the expression; ``none`` (default) keeps the paper's absolute coordinates.
* **Scaling.** ``data.normalize: standardize`` standardises each input feature (coordinate x
  landmark) with the mean and standard deviation of that seed's training part (pooled over
  frames); ``global`` subtracts the same means but divides every feature by one standard
  deviation pooled over all features, so that features keep their relative sizes; the
  statistics are saved beside the model, and :func:`model_inputs` rebuilds the exact inputs from
  a LandmarkSet.
* **Fitting.** Adam (``train.learning_rate``), mini-batches of ``train.batch_size`` (the paper:
  16), reshuffled every epoch; the loss is the binary cross-entropy weighted by class
  (``train.class_weight: balanced`` gives each class the same total weight, as scikit-learn's
  ``class_weight="balanced"``). Early stopping watches the validation loss, weighted by the same
  class weights so that it measures what training minimises; after ``train.patience`` epochs
  without improvement, or ``train.epochs``, the weights of the best epoch are restored (also when
  training ran to the last epoch).
* **Seeds.** The seed fixes the partition, the initial weights, the dropout masks and the batch
  order; TensorFlow runs with op determinism, so the same seed gives the same model again on the
  same machine, whatever was trained before it in the same process.
* **Grid search** (``grid.enabled``): every (F, Q, R) of ``params.grid`` is trained as T-EMO on
  the partition of ``grid.seed`` and scored on its validation part (accuracy, ties broken by the
  lower validation loss, then the smaller model); R-EMO reuses T-EMO's choice, as in the paper.
* **Resume.** A finished model is saved under ``models/<variant>/<emotion>/`` with its scaler
  and a JSON record (metrics, learning curve, and the key of everything that shapes it); a model
  whose record holds the same key is not trained again. Files are written atomically, the record
  last, so an interrupted run never leaves a half-written model that passes for a finished one.

Speed: a model of a given architecture is built, compiled and traced once per process and then
reset (weights, optimizer state, dropout generator) for each (emotion, seed), which removes the
per-model tracing cost (1-3 s on a small CPU) from all but the first model of each shape.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union, get_args

import numpy as np
import pandas as pd

from emolib import EMOTIONS as EMOTIONS_ORDER, io
from emolib.config import GridSettings, Normalize, Params
from emolib.errors import DataError, EmolibError, ParamsError
from emolib.landmarks import LandmarkSet
from emolib.models import VARIANTS, build_model, count_params, initial_weights
from emolib.run_folder import RunFolder

# Bump when the training procedure changes in a way that changes models: cached ones are redone.
TRAINING_VERSION = 1

PARTS: tuple[str, ...] = ("train", "val", "test")
SPLIT_COLUMNS: tuple[str, ...] = ("seed", "sample", "sequence", "subject", "emotion", "flipped", "part")
RESULT_KEY: tuple[str, ...] = ("variant", "emotion", "n_landmarks", "selection", "seed")
RESULT_COLUMNS: tuple[str, ...] = RESULT_KEY + (
    "accuracy", "balanced_accuracy", "f1", "roc_auc", "majority_accuracy", "epochs",
    "train_seconds", "seconds_per_epoch", "params", "trainable_params", "filters", "lstm_units",
    "fc_units", "n_train", "n_val", "n_test", "best_epoch", "val_accuracy", "val_loss",
)
HISTORY_COLUMNS: tuple[str, ...] = RESULT_KEY + ("epoch", "loss", "val_loss", "accuracy", "val_accuracy")
HYPER_KEY: tuple[str, ...] = ("emotion", "n_landmarks", "selection")
HYPER_COLUMNS: tuple[str, ...] = HYPER_KEY + ("filters", "lstm_units", "fc_units", "val_accuracy")
GRID_COLUMNS: tuple[str, ...] = HYPER_KEY + ("filters", "lstm_units", "fc_units", "val_accuracy",
                                             "val_loss", "epochs", "train_seconds", "chosen")
SVM_COLUMNS: tuple[str, ...] = ("kernel", "emotion", "seed", "accuracy", "balanced_accuracy", "f1",
                                "majority_accuracy", "n_train", "n_test")
# Every split needs a group (subject or sequence) of each emotion in each of the three parts.
MIN_GROUPS = 3
# Restarts of the randomised greedy partition search (deterministic for a seed).
_SPLIT_TRIES = 64
_SELECTION_RE = re.compile(r"^[A-Za-z0-9_.-]+$")

LandmarkChoice = Union[None, Mapping[str, Sequence[int]], Callable[[str, int], Sequence[int]]]


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
    # With op determinism on, a random op refuses to run without a global seed; every model
    # here is seeded explicitly, but other code in the same process (a notebook) may not be.
    try:
        tf.random.uniform(())
    except RuntimeError:
        tf.random.set_seed(0)


# --------------------------------------------------------------------------------------------
# Partitions
# --------------------------------------------------------------------------------------------
def _groups(data: LandmarkSet, split: str) -> np.ndarray:
    """The unit that must not straddle parts: the subject, or the sequence (original + flip)."""
    if split == "subject":
        return data.subject.astype(str)
    if split == "random":
        return data.sequence.astype(str)
    raise ParamsError(f"split {split!r} is unknown; expected 'subject' or 'random'")


def check_splittable(data: LandmarkSet, params: Params) -> None:
    """Refuse data that cannot give every emotion a place in train, validation and test.

    Args:
        data: the landmark set (all emotions; those outside ``params.emotions`` are ignored).
        params: the run's parameters (``emotions``, ``split``).

    Raises:
        DataError: an emotion of ``params.emotions`` has no sample, or fewer than 3 subjects
            (``split: subject``) or sequences (``split: random``); or fewer than 3 subjects in
            all for a subject split.
    """
    keep = np.isin(data.emotion, params.emotions)
    groups = _groups(data, params.split)[keep]
    emotion = data.emotion[keep]
    unit = "subjects" if params.split == "subject" else "sequences"
    if params.split == "subject" and len(np.unique(groups)) < MIN_GROUPS:
        raise DataError(
            f"split: subject needs at least {MIN_GROUPS} subjects (one per part: train, validation, "
            f"test); the data holds {len(np.unique(groups))} ({sorted(set(groups.tolist()))}). "
            "Use more subjects or split: random")
    for e in params.emotions:
        n_groups = len(np.unique(groups[emotion == e]))
        if n_groups < MIN_GROUPS:
            raise DataError(
                f"emotion {e!r}: too few samples to split: {int((emotion == e).sum())} sample(s) from "
                f"{n_groups} {unit}; train, validation and test each need one, so at least "
                f"{MIN_GROUPS} {unit} are required (or leave {e!r} out of params.emotions)")


def _cut(counts: np.ndarray, fraction: float, rng: np.random.Generator,
         tries: int = _SPLIT_TRIES) -> np.ndarray:
    """Choose groups holding ``fraction`` of every emotion's samples; return a boolean mask.

    A randomised greedy search: groups are visited in random order and taken when that brings
    the per-emotion counts closer (squared error) to their targets; of ``tries`` restarts the best
    is kept, a missing emotion on either side (where avoidable) or an empty side weighing more
    than any count error.

    Args:
        counts: (groups, emotions) samples of each emotion in each group.
        fraction: the share to take.
        rng: the seed's generator.
        tries: restarts.
    """
    n_groups = counts.shape[0]
    total = counts.sum(axis=0)
    target = fraction * total
    present = total > 0
    several = (counts > 0).sum(axis=0) >= 2  # an emotion in one group cannot be on both sides
    big = 1e6
    best_mask, best_score = None, np.inf
    def cost(c: np.ndarray) -> float:
        return float(np.sum((c - target) ** 2))

    for _ in range(tries):
        order = rng.permutation(n_groups)
        # The part is never empty: it starts from one group, then grows greedily.
        mask = np.zeros(n_groups, dtype=bool)
        mask[order[0]] = True
        current = counts[order[0]].astype(float)
        for g in order[1:]:
            if cost(current + counts[g]) < cost(current):
                mask[g] = True
                current = current + counts[g]
        # Repair: give the part each emotion it lacks, where the rest keeps some of it.
        for e in np.flatnonzero(present & several & (current == 0)):
            options = [g for g in order if not mask[g] and counts[g, e] > 0
                       and np.all((total - current - counts[g])[present] > 0)]
            if options:
                g = min(options, key=lambda g: cost(current + counts[g]))
                mask[g] = True
                current = current + counts[g]
        rest = total - current
        score = cost(current)
        score += big * np.sum(present & several & (current == 0))
        score += big * np.sum(present & (rest == 0))
        score += big * (not mask.any()) + big * mask.all()
        if score < best_score:
            best_mask, best_score = mask, score
    return best_mask


def make_splits(data: LandmarkSet, params: Params, seeds: Optional[Iterable[int]] = None) -> pd.DataFrame:
    """Draw the train / validation / test partition of every seed.

    Args:
        data: the landmark set; samples of emotions outside ``params.emotions`` get no row.
        params: ``split``, ``test_fraction``, ``val_fraction``, ``emotions``.
        seeds: the seeds (default: ``params.seeds`` and ``params.grid.seed``).

    Returns:
        The table of :data:`SPLIT_COLUMNS`: one row per (seed, sample); ``sample`` is the row of
        the landmark file.

    Raises:
        DataError: see :func:`check_splittable`.
    """
    check_splittable(data, params)
    if seeds is None:
        seeds = _all_seeds(params)
    rows = np.flatnonzero(np.isin(data.emotion, params.emotions))
    groups = _groups(data, params.split)[rows]
    emotion_pos = {e: i for i, e in enumerate(params.emotions)}
    group_names, group_of = np.unique(groups, return_inverse=True)
    counts = np.zeros((len(group_names), len(params.emotions)))
    np.add.at(counts, (group_of, [emotion_pos[e] for e in data.emotion[rows]]), 1)
    tables = []
    for seed in seeds:
        rng = np.random.default_rng([int(seed), 5])
        part_of_group = np.full(len(group_names), "train", dtype=object)
        test = _cut(counts, params.test_fraction, rng)
        part_of_group[test] = "test"
        rest = np.flatnonzero(~test)
        val = _cut(counts[rest], params.val_fraction, rng)
        part_of_group[rest[val]] = "val"
        tables.append(pd.DataFrame({
            "seed": int(seed), "sample": rows, "sequence": data.sequence[rows],
            "subject": data.subject[rows], "emotion": data.emotion[rows],
            "flipped": data.flipped[rows].astype(bool), "part": part_of_group[group_of]}))
    return pd.concat(tables, ignore_index=True)[list(SPLIT_COLUMNS)]


def _all_seeds(params: Params) -> list[int]:
    seeds = list(params.seeds)
    if params.grid.seed not in seeds:
        seeds.append(int(params.grid.seed))
    return seeds


def splits_path(run: RunFolder) -> Path:
    """``results/splits.csv``."""
    return run.results / "splits.csv"


def ensure_splits(run: RunFolder, params: Params, data: LandmarkSet,
                  extra_seeds: Sequence[int] = ()) -> pd.DataFrame:
    """Compute every seed's partition and write ``results/splits.csv`` when it changed.

    Args:
        run: the run folder.
        params: the run's parameters.
        data: the landmark set.
        extra_seeds: seeds beyond ``params.seeds`` and ``params.grid.seed`` (another grid's).

    Returns:
        The splits table.
    """
    seeds = _all_seeds(params) + [int(s) for s in extra_seeds if int(s) not in _all_seeds(params)]
    splits = make_splits(data, params, seeds)
    path = splits_path(run)
    if path.is_file():
        try:
            if pd.read_csv(path).equals(splits):
                return splits
        except (pd.errors.ParserError, pd.errors.EmptyDataError):
            pass  # unreadable: rewrite it
    io.write_csv(path, splits)
    return splits


def load_splits(run: RunFolder) -> pd.DataFrame:
    """Read ``results/splits.csv``.

    Raises:
        DataError: the file is missing or lacks a column.
    """
    path = splits_path(run)
    if not path.is_file():
        raise DataError(f"{path}: not found; run stage 02 (emolib.training.train_models) first")
    try:
        splits = pd.read_csv(path, dtype={"sequence": str, "subject": str, "emotion": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV ({exc})") from None
    missing = [c for c in SPLIT_COLUMNS if c not in splits.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {missing}")
    return splits


def split_indices(splits: pd.DataFrame, seed: int) -> dict[str, np.ndarray]:
    """The sample rows of each part of one seed's partition.

    Args:
        splits: the splits table (:func:`load_splits`).
        seed: the seed.

    Returns:
        part (``train``, ``val``, ``test``) -> sorted int array of landmark-file rows.

    Raises:
        DataError: the table holds no partition for ``seed``.
    """
    rows = splits[splits["seed"] == int(seed)]
    if rows.empty:
        raise DataError(f"the splits hold no partition for seed {seed} "
                        f"(seeds present: {sorted(set(splits['seed'].tolist()))})")
    return {p: np.sort(rows.loc[rows["part"] == p, "sample"].to_numpy(dtype=int)) for p in PARTS}


# --------------------------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------------------------
def fit_scaler(X: np.ndarray, normalize: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature statistics of the training part.

    Args:
        X: (N, P, 2, K) training samples.
        normalize: ``standardize`` (each feature its own mean and standard deviation), ``global``
            (each feature its own mean, one standard deviation pooled over all features: the
            features keep their relative sizes, so a still landmark's jitter stays small next to
            a moving one's motion) or ``none``.

    Returns:
        mean, std, each (2, K) float32 (zeros and ones for ``none``; a constant feature gets
        std 1 so that it maps to 0 instead of dividing by zero).
    """
    if normalize == "none":
        return np.zeros(X.shape[2:], np.float32), np.ones(X.shape[2:], np.float32)
    if normalize not in get_args(Normalize):
        raise ParamsError(f"data.normalize {normalize!r} is unknown; expected one of {list(get_args(Normalize))}")
    X = np.asarray(X, dtype=np.float64)
    mean = X.mean(axis=(0, 1))
    std = X.std(axis=(0, 1))
    if normalize == "global":
        std = np.full_like(std, np.sqrt(np.mean(std ** 2)))
    std[std < 1e-8] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


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


def class_weights(y: np.ndarray, mode: str) -> np.ndarray:
    """Weights of class 0 and 1: ``balanced`` gives each class the same total weight."""
    if mode == "none":
        return np.ones(2, np.float32)
    counts = np.bincount(np.asarray(y, dtype=int), minlength=2).astype(float)
    weights = len(y) / (2.0 * np.maximum(counts, 1.0))
    return weights.astype(np.float32)


# --------------------------------------------------------------------------------------------
# Fitting one model
# --------------------------------------------------------------------------------------------
def binary_metrics(y_true: np.ndarray, prob: np.ndarray) -> dict[str, float]:
    """Test metrics of one binary model.

    Args:
        y_true: (n,) 0/1 labels.
        prob: (n,) predicted probability of class 1.

    Returns:
        accuracy (the paper's metric), balanced_accuracy, f1 (of class 1), roc_auc (NaN when the
        test part holds one class only), majority_accuracy (always answering the most frequent
        class of this test part).
    """
    from sklearn.metrics import balanced_accuracy_score, f1_score, roc_auc_score

    y_true = np.asarray(y_true, dtype=int)
    pred = (np.asarray(prob) >= 0.5).astype(int)
    both = len(np.unique(y_true)) == 2
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {
            "accuracy": float(np.mean(pred == y_true)),
            "balanced_accuracy": float(balanced_accuracy_score(y_true, pred)),
            "f1": float(f1_score(y_true, pred, zero_division=0)),
            "roc_auc": float(roc_auc_score(y_true, prob)) if both else float("nan"),
            "majority_accuracy": float(max(y_true.mean(), 1 - y_true.mean())),
        }


def _weighted_ce(y: np.ndarray, prob: np.ndarray, weights: np.ndarray) -> float:
    p = np.clip(prob[np.arange(len(y)), y], 1e-7, 1.0)
    return float(np.mean(weights[y] * -np.log(p)))


class _Trainer:
    """One compiled model with its traced train step and predictor, reset for every unit.

    Tracing a tf.function for a new model costs seconds on a small CPU, more than fitting a demo
    model; resetting the weights, the optimizer state and the dropout generator of an existing
    model gives the same starting point as building a new one with the same seed.
    """

    def __init__(self, variant: str, frames: int, n_landmarks: int, hyper: tuple[int, int, int],
                 params: Params):
        import tensorflow as tf

        m = params.model
        self.model = build_model(variant, frames, n_landmarks, *hyper, kernel_size=m.kernel_size,
                                 dropout=m.dropout, fc_activation=m.fc_activation,
                                 learning_rate=params.train.learning_rate, seed=0)
        model, optimizer = self.model, self.model.optimizer
        x_spec = tf.TensorSpec((None, frames, 2, n_landmarks, 1), tf.float32)
        y_spec = tf.TensorSpec((None,), tf.int32)
        w_spec = tf.TensorSpec((None,), tf.float32)

        batch_size = int(params.train.batch_size)
        o_spec = tf.TensorSpec((None,), tf.int32)

        @tf.function(input_signature=[x_spec, y_spec, w_spec, o_spec])
        def train_epoch(x, y, w, order):
            # One call per epoch: the batch loop runs inside the graph, so a small model is not
            # slowed down by a Python round trip per batch.
            n = tf.shape(order)[0]
            total_loss = tf.constant(0.0)
            hits = tf.constant(0.0)
            for start in tf.range(0, n, batch_size):
                idx = order[start:start + batch_size]
                xb, yb, wb = tf.gather(x, idx), tf.gather(y, idx), tf.gather(w, idx)
                with tf.GradientTape() as tape:
                    prob = model(xb, training=True)
                    # Keras' class_weight convention: weighted per-sample losses over the batch size.
                    loss = tf.reduce_mean(_sparse_ce(yb, prob) * wb)
                grads = tape.gradient(loss, model.trainable_variables)
                optimizer.apply_gradients(zip(grads, model.trainable_variables))
                total_loss += loss * tf.cast(tf.shape(idx)[0], tf.float32)
                hits += tf.reduce_sum(tf.cast(
                    tf.equal(tf.argmax(prob, axis=1, output_type=tf.int32), yb), tf.float32))
            return total_loss, hits

        @tf.function(input_signature=[x_spec])
        def predict(x):
            return model(x, training=False)

        self.train_epoch, self.predict = train_epoch, predict
        # Trace both now (and create Adam's slots), so that no unit's timing includes it.
        zeros = np.zeros((1, frames, 2, n_landmarks, 1), np.float32)
        train_epoch(zeros, np.zeros(1, np.int32), np.ones(1, np.float32), np.zeros(1, np.int32))
        predict(zeros)
        self.dropout_generator = _dropout_generator(model)

    def reset(self, seed: int) -> None:
        """Put the model back in the state :func:`build_model` gives it for ``seed``.

        Not ``keras.utils.set_random_seed``: a new global seed makes every tf.function retrace
        (seconds per model), and nothing here draws from the global generators.
        """
        self.model.set_weights(initial_weights(self.model, seed))
        for var in self.model.optimizer.variables():
            var.assign(np.zeros(var.shape, var.dtype.as_numpy_dtype))
        if self.dropout_generator is not None:
            self.dropout_generator.reset_from_seed(int(seed))


def _sparse_ce(y, prob):
    import tensorflow as tf

    p = tf.clip_by_value(tf.gather(prob, y, axis=1, batch_dims=1), 1e-7, 1.0)
    return -tf.math.log(p)


def _dropout_generator(model):
    """The tf.random.Generator behind the dropout layer (None if Keras does not expose it)."""
    layer = model.get_layer("dropout")
    gen = getattr(layer, "_random_generator", None)
    if gen is None:
        return None
    gen._maybe_init()  # pinned tf-keras 2.19: the generator is built lazily
    return getattr(gen, "_generator", None)


class _TrainerPool:
    """A few traced models, keyed by architecture; cleared (with clear_session) when full."""

    def __init__(self, size: int = 4):
        self.size = size
        self.items: "OrderedDict[tuple, _Trainer]" = OrderedDict()

    def get(self, variant: str, frames: int, n_landmarks: int, hyper: tuple[int, int, int],
            params: Params) -> _Trainer:
        m, t = params.model, params.train
        key = (variant, frames, n_landmarks, tuple(hyper), tuple(m.kernel_size), m.dropout,
               m.fc_activation, t.learning_rate, t.batch_size)
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        if len(self.items) >= self.size:
            self.clear()
        trainer = _Trainer(variant, frames, n_landmarks, hyper, params)
        if trainer.dropout_generator is None:
            return trainer  # cannot be reset exactly: never reuse it
        self.items[key] = trainer
        return trainer

    def clear(self) -> None:
        import tf_keras as keras

        self.items.clear()
        keras.backend.clear_session()


_POOL = _TrainerPool()


@dataclass
class FitResult:
    """What :func:`fit_model` returns."""

    history: pd.DataFrame  # epoch, loss, val_loss, accuracy, val_accuracy
    best_epoch: int  # 1-based epoch whose weights were restored
    epochs: int  # epochs run
    seconds: float  # wall time of the epochs


def fit_model(trainer: _Trainer, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
              y_val: np.ndarray, *, seed: int, params: Params) -> FitResult:
    """Train from the seed's initial state with early stopping; restore the best epoch.

    Args:
        trainer: the model to train (reset here to ``seed``'s initial state).
        x_train, y_train: training inputs (N, P, 2, K, 1) and 0/1 labels.
        x_val, y_val: validation inputs and labels.
        seed: seed of the initial weights, dropout masks and batch order.
        params: ``train.*``.

    Returns:
        A :class:`FitResult`.
    """
    import tensorflow as tf

    t = params.train
    trainer.reset(seed)
    weights = class_weights(y_train, t.class_weight)
    y_train = np.asarray(y_train, np.int32)
    y_val = np.asarray(y_val, np.int32)
    w_train = tf.constant(weights[y_train])
    # Converted once, not at every epoch's call.
    x_train, x_val, y_train_t = tf.constant(x_train), tf.constant(x_val), tf.constant(y_train)
    rng = np.random.default_rng([int(seed), 11])
    n = len(y_train)
    best_loss, best_weights, best_epoch, wait = np.inf, None, 0, 0
    rows = []
    start = time.perf_counter()
    for epoch in range(1, t.epochs + 1):
        total_loss, hits = trainer.train_epoch(x_train, y_train_t, w_train,
                                               rng.permutation(n).astype(np.int32))
        total_loss, hits = float(total_loss), float(hits)
        prob = trainer.predict(x_val).numpy()
        val_loss = _weighted_ce(y_val, prob, weights)
        val_acc = float(np.mean(prob.argmax(axis=1) == y_val))
        rows.append((epoch, total_loss / n, val_loss, hits / n, val_acc))
        if val_loss < best_loss:
            best_loss, best_epoch, wait = val_loss, epoch, 0
            best_weights = trainer.model.get_weights()
        else:
            wait += 1
            if wait >= t.patience:
                break
    trainer.model.set_weights(best_weights)
    seconds = time.perf_counter() - start
    history = pd.DataFrame(rows, columns=["epoch", "loss", "val_loss", "accuracy", "val_accuracy"])
    return FitResult(history, best_epoch, len(rows), seconds)


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


def model_path(run: RunFolder, variant: str, emotion: str, n_landmarks: int, selection: str,
               seed: int) -> Path:
    """``models/<variant>/<emotion>/<selection>_K<n>_seed<seed>.keras``."""
    return run.models / variant / emotion / f"{selection}_K{int(n_landmarks)}_seed{int(seed)}.keras"


def _grid_path(run: RunFolder, emotion: str, n_landmarks: int, selection: str, seed: int,
               hyper: tuple[int, int, int]) -> Path:
    f, q, r = hyper
    return (run.cache / "grid" / "t-emo" / emotion /
            f"{selection}_K{int(n_landmarks)}_seed{int(seed)}_F{f}_Q{q}_R{r}.keras")


def _sidecars(path: Path) -> tuple[Path, Path]:
    """The scaler (.npz) and the record (.json) beside a model file."""
    return path.with_suffix(".npz"), path.with_suffix(".json")


def _read_record(path: Path) -> Optional[dict]:
    scaler, record = _sidecars(path)
    if not (path.is_file() and scaler.is_file() and record.is_file()):
        return None
    try:
        return json.loads(record.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # rewritten on the next save


def _save_unit(path: Path, model, mean: np.ndarray, std: np.ndarray, landmark_ids: np.ndarray,
               record: dict) -> None:
    scaler, record_path = _sidecars(path)
    with io.atomic_path(path) as tmp:
        model.save(tmp)
    io.write_npz(scaler, mean=mean, std=std, landmark_ids=np.asarray(landmark_ids, np.int64),
                 hyper=np.asarray(record["hyper"], np.int64), reference=np.array(record["reference"]))
    io.write_json(record_path, record)  # last: its presence marks the unit finished


def _copy_unit(source: Path, target: Path, record: dict) -> None:
    for src, dst in ((source, target), (_sidecars(source)[0], _sidecars(target)[0])):
        with io.atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
    io.write_json(_sidecars(target)[1], record)


def _fingerprint(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _data_fingerprint(data: LandmarkSet) -> str:
    h = hashlib.sha256()
    for arr in (np.ascontiguousarray(data.X, np.float32), data.emotion.astype(str),
                data.landmark_ids.astype(np.int64)):
        h.update(np.ascontiguousarray(arr).tobytes() if arr.dtype.kind != "U" else "|".join(arr).encode())
    return h.hexdigest()[:16]


def _unit_key(*, variant: str, emotion: str, seed: int, landmark_ids: np.ndarray,
              hyper: tuple[int, int, int], params: Params, data_fp: str,
              parts: Mapping[str, np.ndarray]) -> str:
    """Everything that shapes one model (and nothing that does not, such as the thread count)."""
    return _fingerprint({
        "version": TRAINING_VERSION, "variant": variant, "emotion": emotion, "seed": int(seed),
        "landmark_ids": [int(i) for i in landmark_ids], "hyper": [int(v) for v in hyper],
        "model": params.model.model_dump(mode="json", exclude={"filters", "lstm_units", "fc_units"}),
        "train": params.train.model_dump(mode="json", exclude={"threads"}),
        "normalize": params.data.normalize, "reference": params.data.reference, "data": data_fp,
        "parts": {p: hashlib.sha256(np.asarray(v, np.int64).tobytes()).hexdigest()[:16]
                  for p, v in parts.items()},
    })


@dataclass
class _Unit:
    variant: str
    emotion: str
    seed: int
    landmark_ids: np.ndarray
    hyper: tuple[int, int, int]


def _train_unit(unit: _Unit, path: Path, *, data: LandmarkSet, parts: Mapping[str, np.ndarray],
                params: Params, selection: str, key: str, pool: _TrainerPool) -> dict:
    """Fit one model, save it at ``path``, return its record."""
    sub = data.select_landmarks(unit.landmark_ids)
    y = (sub.emotion == unit.emotion).astype(np.int32)
    reference = params.data.reference
    mean, std = fit_scaler(reference_inputs(sub.X[parts["train"]], reference), params.data.normalize)
    x = {p: scale_inputs(sub.X[idx], mean, std, reference) for p, idx in parts.items()}
    trainer = pool.get(unit.variant, data.frames, len(unit.landmark_ids), unit.hyper, params)
    fit = fit_model(trainer, x["train"], y[parts["train"]], x["val"], y[parts["val"]],
                    seed=unit.seed, params=params)
    model = trainer.model
    test_prob = trainer.predict(x["test"]).numpy()[:, 1]
    total, trainable = count_params(model)
    best = fit.history.iloc[fit.best_epoch - 1]
    row = {
        "variant": unit.variant, "emotion": unit.emotion, "n_landmarks": len(unit.landmark_ids),
        "selection": selection, "seed": int(unit.seed),
        **binary_metrics(y[parts["test"]], test_prob),
        "epochs": fit.epochs, "train_seconds": fit.seconds, "seconds_per_epoch": fit.seconds / fit.epochs,
        "params": total, "trainable_params": trainable, "filters": unit.hyper[0],
        "lstm_units": unit.hyper[1], "fc_units": unit.hyper[2], "n_train": len(parts["train"]),
        "n_val": len(parts["val"]), "n_test": len(parts["test"]), "best_epoch": fit.best_epoch,
        "val_accuracy": float(best["val_accuracy"]), "val_loss": float(best["val_loss"]),
    }
    record = {"key": key, "hyper": list(unit.hyper), "reference": reference, "row": row,
              "history": fit.history.to_dict(orient="list")}
    _save_unit(path, model, mean, std, unit.landmark_ids, record)
    return record


def _history_rows(record: dict) -> pd.DataFrame:
    hist = pd.DataFrame(record["history"])
    for col in reversed(RESULT_KEY):
        hist.insert(0, col, record["row"][col])
    return hist[list(HISTORY_COLUMNS)]


# --------------------------------------------------------------------------------------------
# Checks of the arguments (before any training)
# --------------------------------------------------------------------------------------------
def resolve_landmarks(landmark_ids: LandmarkChoice, data: LandmarkSet, emotions: Sequence[str],
                      seeds: Sequence[int]) -> dict[tuple[str, int], np.ndarray]:
    """Turn the ``landmark_ids`` argument into one checked subset per (emotion, seed).

    Args:
        landmark_ids: None (all of ``data``'s landmarks), a mapping emotion -> ids, or a callable
            (emotion, seed) -> ids.
        data: the landmark set (its ``landmark_ids`` are the ids available).
        emotions: the emotions to train.
        seeds: the seeds to train.

    Returns:
        (emotion, seed) -> int array of ids (all of the same length K).

    Raises:
        ParamsError: a missing emotion, an empty or repeating subset, subsets of unequal length.
        DataError: an id out of range or absent from the data.
    """
    available = set(int(i) for i in data.landmark_ids)
    out: dict[tuple[str, int], np.ndarray] = {}
    for e in emotions:
        for s in seeds:
            if landmark_ids is None:
                ids = data.landmark_ids
            elif callable(landmark_ids):
                ids = landmark_ids(e, int(s))
            elif isinstance(landmark_ids, Mapping):
                if e not in landmark_ids:
                    raise ParamsError(f"landmark_ids has no subset for emotion {e!r} "
                                      f"(it has {sorted(landmark_ids)})")
                ids = landmark_ids[e]
            else:
                raise ParamsError("landmark_ids must be None, a dict emotion -> ids or a callable "
                                  f"(emotion, seed) -> ids, got {type(landmark_ids).__name__}")
            arr = np.asarray(ids)
            where = f"landmark subset of {e!r} (seed {s})"
            if arr.ndim != 1 or arr.size == 0:
                raise ParamsError(f"{where}: expected a non-empty 1-D list of landmark ids, got shape {arr.shape}")
            if not np.issubdtype(arr.dtype, np.integer):
                if not (np.issubdtype(arr.dtype, np.floating) and np.all(arr == np.round(arr))):
                    raise ParamsError(f"{where}: landmark ids must be integers, got {arr.dtype}")
            arr = arr.astype(int)
            bad = sorted(set(int(i) for i in arr) - available)
            if bad:
                raise DataError(f"{where}: landmark id(s) {bad[:10]} out of range: the data holds "
                                f"{len(available)} landmarks (ids {min(available)}..{max(available)})")
            if len(np.unique(arr)) != len(arr):
                raise ParamsError(f"{where}: landmark ids repeat")
            out[(e, int(s))] = arr
    sizes = sorted({len(v) for v in out.values()})
    if len(sizes) > 1:
        raise ParamsError(f"landmark subsets must all hold the same number K of landmarks; got sizes {sizes}")
    return out


def check_grid(grid: GridSettings) -> None:
    """Refuse a grid with an impossible value (also when it bypassed validation).

    Raises:
        ParamsError: an empty axis, a value that is not a positive integer, a negative seed.
    """
    for axis in ("filters", "lstm_units", "fc_units"):
        values = list(getattr(grid, axis))
        if not values:
            raise ParamsError(f"grid.{axis}: needs at least one value")
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1]
        if bad:
            raise ParamsError(f"grid.{axis}: {bad} impossible; every value must be a positive integer")
    if isinstance(grid.seed, bool) or not isinstance(grid.seed, (int, np.integer)) or grid.seed < 0:
        raise ParamsError(f"grid.seed must be a non-negative integer, got {grid.seed!r}")


def _check_call(params: Params, data: LandmarkSet, selection: str, variants: Sequence[str]) -> None:
    if not _SELECTION_RE.match(selection or ""):
        raise ParamsError(f"selection {selection!r}: use letters, digits, '_', '.' or '-' (it names files)")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ParamsError(f"variants {list(variants)}: expected some of {list(VARIANTS)}")
    bad_seeds = [s for s in params.seeds if s < 0]
    if bad_seeds:
        raise ParamsError(f"seeds must be non-negative, got {bad_seeds}")
    if data.frames != params.frames:
        raise DataError(f"the landmark data holds {data.frames} frames per sample but params.frames "
                        f"is {params.frames}; rerun stage 01")


# --------------------------------------------------------------------------------------------
# Tables on disk
# --------------------------------------------------------------------------------------------
def _upsert(path: Path, new: pd.DataFrame, key: Sequence[str], columns: Sequence[str]) -> pd.DataFrame:
    """Replace the rows of ``path`` that share a key with ``new``, append the others; write."""
    if path.is_file():
        try:
            old = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError):
            old = pd.DataFrame(columns=list(columns))
    else:
        old = pd.DataFrame(columns=list(columns))
    if not new.empty:
        new_keys = new[list(key)].astype(str).agg("|".join, axis=1)
        old_keys = old[list(key)].astype(str).agg("|".join, axis=1) if not old.empty else pd.Series([], dtype=str)
        old = old[~old_keys.isin(set(new_keys))] if not old.empty else old
        table = pd.concat([old, new], ignore_index=True) if not old.empty else new.copy()
    else:
        table = old
    ordered = [c for c in columns if c in table.columns] + [c for c in table.columns if c not in columns]
    table = table[ordered]
    io.write_csv(path, table)
    return table


def history_path(results_csv: Path) -> Path:
    """The learning curves beside a results table: ``history.csv`` for ``training.csv``,
    ``<name>_history.csv`` otherwise."""
    results_csv = Path(results_csv)
    name = "history.csv" if results_csv.name == "training.csv" else f"{results_csv.stem}_history.csv"
    return results_csv.parent / name


# --------------------------------------------------------------------------------------------
# Grid search
# --------------------------------------------------------------------------------------------
def _grid_search(run: RunFolder, params: Params, data: LandmarkSet, grid: GridSettings, *,
                 selection: str, subsets: Mapping[tuple[str, int], np.ndarray], splits: pd.DataFrame,
                 data_fp: str, pool: _TrainerPool, bar) -> dict[str, tuple[int, int, int]]:
    """T-EMO over the grid on ``grid.seed``'s partition; return emotion -> chosen (F, Q, R)."""
    seed = int(grid.seed)
    parts = split_indices(splits, seed)
    combos = [(int(f), int(q), int(r)) for f in grid.filters for q in grid.lstm_units for r in grid.fc_units]
    grid_rows, chosen = [], {}
    for e in params.emotions:
        ids = subsets[(e, seed)]
        scored = []
        for hyper in combos:
            key = _unit_key(variant="t-emo", emotion=e, seed=seed, landmark_ids=ids, hyper=hyper,
                            params=params, data_fp=data_fp, parts=parts)
            path = _grid_path(run, e, len(ids), selection, seed, hyper)
            record = _read_record(path)
            if record is None or record.get("key") != key:
                bar.set_postfix_str(f"grid {e} F={hyper[0]} Q={hyper[1]} R={hyper[2]}")
                record = _train_unit(_Unit("t-emo", e, seed, ids, hyper), path, data=data, parts=parts,
                                     params=params, selection=selection, key=key, pool=pool)
            bar.update(1)
            row = record["row"]
            scored.append((hyper, row))
        # Highest validation accuracy; ties: lower validation loss, then the smaller model.
        best_hyper, best_row = min(scored, key=lambda hr: (-hr[1]["val_accuracy"], hr[1]["val_loss"],
                                                           hr[1]["params"]))
        chosen[e] = best_hyper
        for hyper, row in scored:
            grid_rows.append({"emotion": e, "n_landmarks": len(ids), "selection": selection,
                              "filters": hyper[0], "lstm_units": hyper[1], "fc_units": hyper[2],
                              "val_accuracy": row["val_accuracy"], "val_loss": row["val_loss"],
                              "epochs": row["epochs"], "train_seconds": row["train_seconds"],
                              "chosen": hyper == best_hyper})
    grid_table = pd.DataFrame(grid_rows, columns=list(GRID_COLUMNS))
    _upsert(run.results / "grid_search.csv", grid_table,
            HYPER_KEY + ("filters", "lstm_units", "fc_units"), GRID_COLUMNS)
    picked = grid_table[grid_table["chosen"]][list(HYPER_COLUMNS)]
    _upsert(run.results / "hyperparameters.csv", picked, HYPER_KEY, HYPER_COLUMNS)
    return chosen


# --------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------
def train_models(run: RunFolder, params: Params, data: LandmarkSet, *, selection: str = "all",
                 landmark_ids: LandmarkChoice = None, variants: Sequence[str] = ("t-emo", "r-emo"),
                 grid_search: Union[None, bool, GridSettings] = None,
                 results_csv: Optional[Union[str, Path]] = None, progress: bool = True) -> pd.DataFrame:
    """Train every (variant, emotion, seed) on a landmark subset; resume finished models.

    Args:
        run: the run folder (writes models/, results/splits.csv, the results table, the learning
            curves; with a grid search also results/grid_search.csv and hyperparameters.csv).
        params: the run's parameters.
        data: the landmark set (all samples; every landmark the subsets may pick).
        selection: the name of the landmark choice (``all`` for stage 02; the pruning stage
            passes its rule's name). It names the model files and fills the ``selection`` column.
        landmark_ids: None (all of ``data``'s landmarks), a dict emotion -> ids (each emotion
            its own subset), or a callable (emotion, seed) -> ids; every subset of equal size K.
        variants: which of ``t-emo``, ``r-emo`` to train.
        grid_search: None: ``params.grid.enabled``; True / False; or a GridSettings to search.
        results_csv: the results table (default ``results/training.csv``); rows of the models
            trained here replace earlier rows with the same key, other rows are kept. The
            learning curves go beside it (:func:`history_path`).
        progress: show a progress bar.

    Returns:
        The whole results table (every row in ``results_csv``).

    Raises:
        ParamsError: bad arguments or settings (variant, selection name, grid, subsets).
        DataError: data that cannot be split, or a landmark id out of range. Both are raised
            before any training starts.
    """
    from tqdm.auto import tqdm

    _check_call(params, data, selection, variants)
    if grid_search is None:
        grid_search = params.grid.enabled
    grid = grid_search if isinstance(grid_search, GridSettings) else (params.grid if grid_search else None)
    if grid is not None:
        check_grid(grid)
    check_splittable(data, params)
    seeds = [int(s) for s in params.seeds]
    needed_seeds = seeds + ([int(grid.seed)] if grid is not None and grid.seed not in seeds else [])
    subsets = resolve_landmarks(landmark_ids, data, params.emotions, needed_seeds)
    n_landmarks = len(next(iter(subsets.values())))

    configure_tensorflow(params.train.threads)
    splits = ensure_splits(run, params, data, [grid.seed] if grid is not None else [])
    data_fp = _data_fingerprint(data)
    results_csv = Path(results_csv) if results_csv is not None else run.results / "training.csv"
    pool = _POOL

    n_grid = (len(params.emotions) * len(grid.filters) * len(grid.lstm_units) * len(grid.fc_units)
              if grid is not None else 0)
    n_units = len(variants) * len(params.emotions) * len(seeds)
    bar = tqdm(total=n_grid + n_units, desc=f"training ({selection}, K={n_landmarks})", unit="model",
               disable=not progress)
    records: list[dict] = []
    try:
        if grid is not None:
            hypers = _grid_search(run, params, data, grid, selection=selection, subsets=subsets,
                                  splits=splits, data_fp=data_fp, pool=pool, bar=bar)
        else:
            m = params.model
            hypers = {e: (m.filters, m.lstm_units, m.fc_units) for e in params.emotions}
        parts_of = {s: split_indices(splits, s) for s in seeds}
        # Same-architecture units back to back: each traced model is reused as long as possible.
        units = [_Unit(v, e, s, subsets[(e, s)], hypers[e])
                 for v in variants for e in params.emotions for s in seeds]
        units.sort(key=lambda u: (VARIANTS.index(u.variant), u.hyper))
        for unit in units:
            parts = parts_of[unit.seed]
            key = _unit_key(variant=unit.variant, emotion=unit.emotion, seed=unit.seed,
                            landmark_ids=unit.landmark_ids, hyper=unit.hyper, params=params,
                            data_fp=data_fp, parts=parts)
            path = model_path(run, unit.variant, unit.emotion, n_landmarks, selection, unit.seed)
            record = _read_record(path)
            if record is None or record.get("key") != key:
                grid_copy = None
                if grid is not None and unit.variant == "t-emo" and unit.seed == grid.seed:
                    grid_copy = _grid_path(run, unit.emotion, n_landmarks, selection, unit.seed, unit.hyper)
                    grid_record = _read_record(grid_copy)
                    if grid_record is not None and grid_record.get("key") == key:
                        # The grid search already trained exactly this model.
                        _copy_unit(grid_copy, path, grid_record)
                        record = grid_record
                    else:
                        grid_copy = None
                if grid_copy is None:
                    bar.set_postfix_str(f"{unit.variant} {unit.emotion} seed {unit.seed}")
                    record = _train_unit(unit, path, data=data, parts=parts, params=params,
                                         selection=selection, key=key, pool=pool)
            records.append(record)
            bar.update(1)
    finally:
        bar.close()
        if records:
            _upsert(history_path(results_csv), pd.concat([_history_rows(r) for r in records]),
                    RESULT_KEY, HISTORY_COLUMNS)
            _upsert(results_csv, pd.DataFrame([r["row"] for r in records]), RESULT_KEY, RESULT_COLUMNS)
    return pd.read_csv(results_csv).sort_values(list(RESULT_KEY), ignore_index=True)


# --------------------------------------------------------------------------------------------
# For stage 03 and later: loading a trained model and rebuilding its inputs
# --------------------------------------------------------------------------------------------
def load_trained(run: RunFolder, variant: str, emotion: str, n_landmarks: int, selection: str,
                 seed: int) -> TrainedModel:
    """Load a model saved by :func:`train_models`, with its scaler and landmark ids.

    Args:
        run: the run folder.
        variant: ``t-emo`` or ``r-emo``.
        emotion: the emotion the model recognises.
        n_landmarks: K.
        selection: the landmark choice (``all`` for stage 02's models).
        seed: the seed.

    Returns:
        A :class:`TrainedModel`.

    Raises:
        DataError: the model, its scaler or its record is missing or unreadable.
    """
    import tf_keras as keras

    path = model_path(run, variant, emotion, n_landmarks, selection, seed)
    scaler_path, record_path = _sidecars(path)
    for p in (path, scaler_path, record_path):
        if not p.is_file():
            raise DataError(f"{p}: not found; train the model first (stage 02, "
                            "emolib.training.train_models)")
    try:
        record = json.loads(record_path.read_text())
        with np.load(scaler_path, allow_pickle=False) as f:
            mean, std, ids = f["mean"], f["std"], f["landmark_ids"].astype(int)
            reference = str(f["reference"]) if "reference" in f.files else "none"
        model = keras.models.load_model(path, compile=False)
    except Exception as exc:  # a damaged file: say which
        raise DataError(f"{path}: cannot load the model or its scaler ({exc})") from None
    return TrainedModel(model=model, landmark_ids=ids, mean=mean, std=std,
                        hyper=tuple(int(v) for v in record["hyper"]), reference=reference, variant=variant,
                        emotion=emotion, n_landmarks=int(n_landmarks), selection=selection,
                        seed=int(seed), record=record)


def model_inputs(data: LandmarkSet, trained: TrainedModel) -> np.ndarray:
    """The exact inputs of a trained model: its landmarks, scaled with its training statistics.

    Args:
        data: samples (any landmark set holding the model's landmarks).
        trained: from :func:`load_trained`.

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


# --------------------------------------------------------------------------------------------
# SVM baselines
# --------------------------------------------------------------------------------------------
def svm_features(X: np.ndarray, train_rows: np.ndarray, reference: str = "none") -> np.ndarray:
    """Flattened samples (N, P*2*K) after ``reference`` (as the networks see them),
    standardised with the statistics of ``train_rows``."""
    flat = np.asarray(reference_inputs(X, reference), np.float64).reshape(len(X), -1)
    mean = flat[train_rows].mean(axis=0)
    std = flat[train_rows].std(axis=0)
    std[std < 1e-8] = 1.0
    return (flat - mean) / std


def train_svms(run: RunFolder, params: Params, data: LandmarkSet, *, progress: bool = True) -> pd.DataFrame:
    """Linear- and RBF-SVM baselines on the same features and partitions as the networks.

    The features are the flattened landmark tensors (after ``data.reference``, as the networks
    see them), standardised per feature with training
    statistics; scikit-learn's SVC with ``class_weight="balanced"`` and C = ``svm.c``, RBF with
    ``gamma="scale"``. An SVM needs no early stopping, so it trains on the training and
    validation parts together (the data the networks saw) and is tested on the same test part.
    Writes ``results/svm.csv`` (plus the paper's quoted accuracy as ``paper_accuracy``).

    Args:
        run: the run folder.
        params: ``seeds``, ``emotions``, ``svm.c`` and the split settings.
        data: the landmark set.
        progress: show a progress bar.

    Returns:
        The table of :data:`SVM_COLUMNS` plus ``paper_accuracy``.
    """
    from sklearn.svm import SVC
    from tqdm.auto import tqdm

    from emolib.paper import SVM_ACCURACY

    splits = ensure_splits(run, params, data)
    rows = []
    jobs = [(s, e, k) for s in params.seeds for e in params.emotions for k in ("linear", "rbf")]
    features_of: dict[int, tuple[np.ndarray, dict]] = {}
    for seed, emotion, kernel in tqdm(jobs, desc="SVM baselines", unit="model", disable=not progress):
        if seed not in features_of:
            parts = split_indices(splits, seed)
            fit_rows = np.concatenate([parts["train"], parts["val"]])
            features_of[seed] = (svm_features(data.X, fit_rows, params.data.reference), parts)
        feats, parts = features_of[seed]
        fit_rows = np.concatenate([parts["train"], parts["val"]])
        y = (data.emotion == emotion).astype(int)
        clf = SVC(kernel=kernel, C=params.svm.c, gamma="scale", class_weight="balanced")
        clf.fit(feats[fit_rows], y[fit_rows])
        pred = clf.predict(feats[parts["test"]]).astype(float)
        metrics = binary_metrics(y[parts["test"]], pred)
        rows.append({"kernel": kernel, "emotion": emotion, "seed": int(seed),
                     "accuracy": metrics["accuracy"], "balanced_accuracy": metrics["balanced_accuracy"],
                     "f1": metrics["f1"], "majority_accuracy": metrics["majority_accuracy"],
                     "n_train": len(fit_rows), "n_test": len(parts["test"]),
                     "paper_accuracy": SVM_ACCURACY[kernel].get(emotion, float("nan"))})
    table = pd.DataFrame(rows)
    io.write_csv(run.results / "svm.csv", table)
    return table


# --------------------------------------------------------------------------------------------
# Summaries (notebook 02, stage 05)
# --------------------------------------------------------------------------------------------
def load_results(run: RunFolder, params: Optional[Params] = None,
                 results_csv: Optional[Union[str, Path]] = None) -> pd.DataFrame:
    """The results table, one row per model (the latest), restricted to ``params``' emotions and
    seeds when given.

    Raises:
        EmolibError: the table is missing or lacks a column.
    """
    path = Path(results_csv) if results_csv is not None else run.results / "training.csv"
    if not path.is_file():
        raise EmolibError(f"{path}: not found (stage 02 has not run)")
    table = pd.read_csv(path)
    missing = [c for c in RESULT_COLUMNS if c not in table.columns]
    if missing:
        raise EmolibError(f"{path}: missing column(s) {missing}")
    if params is not None:
        table = table[table["emotion"].isin(params.emotions) & table["seed"].isin(params.seeds)]
    return table.drop_duplicates(list(RESULT_KEY), keep="last").reset_index(drop=True)


def load_history(run: RunFolder, results_csv: Optional[Union[str, Path]] = None) -> pd.DataFrame:
    """The learning curves written beside ``results_csv`` (default: results/history.csv)."""
    path = history_path(Path(results_csv) if results_csv is not None else run.results / "training.csv")
    if not path.is_file():
        raise EmolibError(f"{path}: not found (stage 02 has not run)")
    return pd.read_csv(path)


def cost_summary(table: pd.DataFrame) -> pd.DataFrame:
    """What a model costs, per variant (and K): the paper's "fast" claim, measured.

    Returns:
        Columns variant, n_landmarks, seconds_per_epoch, train_seconds, epochs, params,
        trainable_params (means over emotions and seeds), models.
    """
    return (table.groupby(["variant", "n_landmarks"], sort=False)
            .agg(seconds_per_epoch=("seconds_per_epoch", "mean"), train_seconds=("train_seconds", "mean"),
                 epochs=("epochs", "mean"), params=("params", "mean"),
                 trainable_params=("trainable_params", "mean"), models=("seed", "size"))
            .reset_index())


def check_training_outputs(run: RunFolder, params: Params, data: LandmarkSet,
                           variants: Sequence[str] = VARIANTS) -> pd.DataFrame:
    """Check what stage 02 wrote; raise if anything is missing or out of range.

    Checks: a row per (variant, emotion, seed) at K = all landmarks, metrics finite and in
    [0, 1] (ROC AUC may be NaN when a test part holds one class), a model file per row, the
    splits cover every seed with three non-empty parts (subject-disjoint for ``split:
    subject``; a flipped copy with its original), and the SVM table when enabled.

    Returns:
        The checked results rows.

    Raises:
        EmolibError: the first problem found.
    """
    table = load_results(run, params)
    table = table[(table["selection"] == "all") & (table["n_landmarks"] == data.n_landmarks)]
    expected = {(v, e, s) for v in variants for e in params.emotions for s in params.seeds}
    have = set(zip(table["variant"], table["emotion"], table["seed"]))
    if expected - have:
        raise EmolibError(f"results/training.csv lacks {sorted(expected - have)[:5]}")
    for col in ("accuracy", "balanced_accuracy", "f1", "majority_accuracy"):
        values = table[col].to_numpy(float)
        if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
            raise EmolibError(f"results/training.csv: {col} holds NaN or values outside [0, 1]")
    if (table["epochs"] < 1).any() or (table["trainable_params"] < 1).any():
        raise EmolibError("results/training.csv: a model ran no epoch or has no trainable parameter")
    for _, r in table.iterrows():
        path = model_path(run, r["variant"], r["emotion"], r["n_landmarks"], r["selection"], r["seed"])
        if _read_record(path) is None:
            raise EmolibError(f"{path}: missing (or its scaler/record is)")
    splits = load_splits(run)
    for s in params.seeds:
        parts = split_indices(splits, s)
        if any(len(v) == 0 for v in parts.values()):
            raise EmolibError(f"results/splits.csv: seed {s} has an empty part")
        rows = splits[splits["seed"] == s]
        unit = "subject" if params.split == "subject" else "sequence"
        straddle = rows.groupby(unit)["part"].nunique()
        if (straddle > 1).any():
            raise EmolibError(f"results/splits.csv: seed {s}: {unit} {straddle[straddle > 1].index[0]} "
                              "is in more than one part")
    if params.svm.enabled:
        svm_path = run.results / "svm.csv"
        if not svm_path.is_file():
            raise EmolibError(f"{svm_path}: missing")
        svm = pd.read_csv(svm_path)
        if svm["accuracy"].isna().any() or len(svm) != 2 * len(params.emotions) * len(params.seeds):
            raise EmolibError(f"{svm_path}: NaN accuracy or wrong number of rows ({len(svm)})")
    return table


def choices_table(params: Params) -> pd.DataFrame:
    """The choices of stage 02 the paper leaves open (or that we change), with this run's values.

    Returns:
        Columns question, parameter, this run, paper.
    """
    m, t, g = params.model, params.train, params.grid
    grid = (f"F in {g.filters}, Q in {g.lstm_units}, R in {g.fc_units}; T-EMO on seed {g.seed}'s "
            "validation part; R-EMO reuses the choice" if g.enabled else
            f"off: F={m.filters}, Q={m.lstm_units}, R={m.fc_units} (params.model)")
    rows = [
        ("how data is split", "split", f"{params.split} (a flipped copy always with its original)",
         "random partitions (the same subject can be in train and test)"),
        ("test / validation share", "test_fraction, val_fraction",
         f"{params.test_fraction:g} of all; {params.val_fraction:g} of the rest",
         "87 of 574 tested; 10% of the training set for validation"),
        ("seeds", "seeds", f"{list(params.seeds)}: each its own partition, initial weights, batch order",
         "10 seeds, each its own partition"),
        ("input scaling", "data.normalize",
         f"{params.data.normalize}" + {"standardize": " (per coordinate and landmark, training-part statistics)",
                                       "global": " (per-feature means, one pooled standard deviation; "
                                                 "training-part statistics)"}.get(params.data.normalize, ""),
         "raw landmark coordinates"),
        ("input reference", "data.reference",
         {"none": "none (absolute coordinates)",
          "first_frame": "first_frame (movement from the first, neutral frame)"}[params.data.reference],
         "absolute coordinates"),
        ("class imbalance", "train.class_weight", t.class_weight, "not stated"),
        ("loss", "(fixed)", "cross-entropy on the 2-way softmax, class-weighted "
         "(= binary cross-entropy, equation 3)", "binary cross-entropy"),
        ("optimiser", "train.learning_rate, train.batch_size", f"Adam, lr {t.learning_rate:g}, batch {t.batch_size}",
         "Adam, lr 1e-4, batch 16"),
        ("when to stop", "train.epochs, train.patience",
         f"at most {t.epochs} epochs; stop after {t.patience} without a lower (class-weighted) "
         "validation loss; the best epoch's weights are restored", "not stated"),
        ("conv kernel", "model.kernel_size", f"{list(m.kernel_size)} (width clipped to K)", "not stated"),
        ("dropout rate, FC1 activation", "model.dropout, model.fc_activation", f"{m.dropout:g}, {m.fc_activation}",
         "not stated"),
        ("hyperparameters F, Q, R", "grid.*", grid, "grid search for T-EMO (Tables 1-5); R-EMO reuses them"),
    ]
    return pd.DataFrame(rows, columns=["question", "parameter", "this run", "paper"])


def split_summary(splits: pd.DataFrame, seeds: Optional[Sequence[int]] = None) -> pd.DataFrame:
    """Samples, subjects and samples per emotion in each part of each seed's partition.

    Args:
        splits: the splits table.
        seeds: keep these seeds (default: all).

    Returns:
        One row per (seed, part): samples, subjects, then one column per emotion.
    """
    if seeds is not None:
        splits = splits[splits["seed"].isin(list(seeds))]
    base = splits.groupby(["seed", "part"]).agg(samples=("sample", "size"), subjects=("subject", "nunique"))
    per_emotion = pd.crosstab([splits["seed"], splits["part"]], splits["emotion"])
    per_emotion = per_emotion[[e for e in EMOTIONS_ORDER if e in per_emotion.columns]]
    out = base.join(per_emotion).reset_index()
    out["part"] = pd.Categorical(out["part"], categories=list(PARTS), ordered=True)
    return out.sort_values(["seed", "part"], ignore_index=True)


def comparison_table(table: pd.DataFrame, svm: Optional[pd.DataFrame] = None, metric: str = "accuracy",
                     paper: bool = True) -> pd.DataFrame:
    """Per emotion, "mean ± std" over seeds of T-EMO, R-EMO, the majority answer and the SVMs,
    with the paper's CK+ accuracies beside them (accuracy only).

    Args:
        table: results rows (one K, one selection).
        svm: results/svm.csv rows (optional).
        metric: accuracy, balanced_accuracy or f1.
        paper: add the paper's columns (when ``metric`` is accuracy).

    Returns:
        One row per emotion, string cells.
    """
    from emolib.paper import ACCURACY, SVM_ACCURACY

    def fmt(values: pd.Series) -> str:
        return f"{values.mean():.3f} ± {values.std():.3f}" if len(values) > 1 else f"{values.mean():.3f}"

    rows = []
    for e in [x for x in EMOTIONS_ORDER if x in set(table["emotion"])]:
        r = {"emotion": e}
        for variant in ("t-emo", "r-emo"):
            sel = table[(table["variant"] == variant) & (table["emotion"] == e)]
            if not sel.empty:
                r[variant.upper()] = fmt(sel[metric])
        maj = table.loc[table["emotion"] == e, "majority_accuracy"]
        r["majority"] = fmt(maj) if metric == "accuracy" else "0.500"
        if svm is not None and not svm.empty:
            for kernel in ("linear", "rbf"):
                sel = svm[(svm["kernel"] == kernel) & (svm["emotion"] == e)]
                if not sel.empty:
                    r[f"{kernel} SVM"] = fmt(sel[metric])
        if paper and metric == "accuracy":
            for variant in ("t-emo", "r-emo"):
                mean, std = ACCURACY[variant][e][0]
                r[f"paper {variant.upper()} (CK+)"] = f"{mean:.3f} ± {std:.3f}"
            for kernel in ("linear", "rbf"):
                r[f"paper {kernel} SVM (CK+)"] = f"{SVM_ACCURACY[kernel][e]:.2f}"
        rows.append(r)
    return pd.DataFrame(rows).set_index("emotion")
