"""Fitting one model alone: the traced training step, early stopping, the restore of the best epoch.

Stage 02 trains in banks (:mod:`emolib.training.bank`); this module is the one-at-a-time
reference the bank is tested and benchmarked against, and its :class:`TrainerPool` holds the
tf-keras models that trained units are saved from.

Adam (``train.learning_rate``), mini-batches of ``train.batch_size`` (the paper: 16), reshuffled
every epoch; the loss is the binary cross-entropy weighted by class (``train.class_weight:
balanced`` gives each class the same total weight, as scikit-learn's ``class_weight="balanced"``).
Early stopping watches the validation loss, weighted by the same class weights so that it
measures what training minimises; after ``train.patience`` epochs without improvement, or
``train.epochs``, the weights of the best epoch are restored (also when training ran to the last
epoch). The seed fixes the initial weights, the dropout masks and the batch order.

Speed: a model of a given architecture is built, compiled and traced once per process and then
reset (weights, optimizer state, dropout generator) for each unit (:class:`TrainerPool`), which
removes the per-model tracing cost (1-3 s on a small CPU) from all but the first model of each
shape.
"""
from __future__ import annotations

import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from emolib.models import build_model, initial_weights
from emolib.training.inputs import class_weights

if TYPE_CHECKING:
    from emolib.config import Params


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


class Trainer:
    """One compiled model with its traced train step and predictor, reset for every unit.

    Tracing a tf.function for a new model costs seconds on a small CPU, more than fitting a demo
    model; resetting the weights, the optimizer state and the dropout generator of an existing
    model gives the same starting point as building a new one with the same seed.
    """

    def __init__(self, variant: str, frames: int, n_landmarks: int, hyper: tuple[int, int, int],
                 params: Params, *, training: bool = True):
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
        # Trace both now (and create Adam's slots), so that no unit's timing includes it; a
        # model only predicted with (a unit trained in a bank, saved from here) skips the first.
        zeros = np.zeros((1, frames, 2, n_landmarks, 1), np.float32)
        if training:
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


class TrainerPool:
    """A few traced models, keyed by architecture; cleared (with clear_session) when full."""

    def __init__(self, size: int = 4):
        self.size = size
        self.items: "OrderedDict[tuple, Trainer]" = OrderedDict()

    def get(self, variant: str, frames: int, n_landmarks: int, hyper: tuple[int, int, int],
            params: Params, *, training: bool = True) -> Trainer:
        """A Trainer for the architecture; ``training=False``: one to predict with (and save) only."""
        m, t = params.model, params.train
        key = (variant, frames, n_landmarks, tuple(hyper), tuple(m.kernel_size), m.dropout,
               m.fc_activation, t.learning_rate, t.batch_size, training)
        if key in self.items:
            self.items.move_to_end(key)
            return self.items[key]
        if len(self.items) >= self.size:
            self.clear()
        trainer = Trainer(variant, frames, n_landmarks, hyper, params, training=training)
        if trainer.dropout_generator is None:
            return trainer  # cannot be reset exactly: never reuse it
        self.items[key] = trainer
        return trainer

    def clear(self) -> None:
        import tf_keras as keras

        self.items.clear()
        keras.backend.clear_session()


POOL = TrainerPool()


@dataclass
class FitResult:
    """What :func:`fit_model` returns."""

    history: pd.DataFrame  # epoch, loss, val_loss, accuracy, val_accuracy
    best_epoch: int  # 1-based epoch whose weights were restored
    epochs: int  # epochs run
    seconds: float  # wall time of the epochs


def fit_model(trainer: Trainer, x_train: np.ndarray, y_train: np.ndarray, x_val: np.ndarray,
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

