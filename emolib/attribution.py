"""Integrated Gradients (paper, equation 2) and the paper's global landmark importance (stage 03).

The engine
----------
:func:`integrated_gradients` approximates equation (1) of the paper,

    IG_i(x) = (x_i - x'_i) * integral_0^1 dF(x' + a (x - x')) / dx_i da,

by a quadrature over the straight path from the baseline ``x'`` to the input ``x``. The default
is the paper's equation (2), the right Riemann sum with alphas k/m, k = 1..m, each weighted 1/m;
the trapezoid rule and Gauss-Legendre nodes are offered as options. ``F`` is the probability the
model gives class ``target``.

Every (sample, alpha) pair is one row of a single flattened batch axis. The rows are cut into
chunks of a fixed size (the last one padded with zero-weight rows) and each chunk goes through one
compiled function that interpolates, differentiates, weights and sums its rows per sample. A
running sum over the chunks is kept on the host, so memory is bounded by one chunk whatever m is,
and the quadrature is the same sum as the unchunked one (only the order of the float additions
differs).

For emolib's own Conv2D + LSTM models a second, exact engine is used (``engine="structured"``,
picked by ``"auto"``). Along the straight path the convolution's pre-activation is linear in
alpha, ``c0 + alpha * c1``, so each ReLU unit switches at most once, and BatchNorm (inference) and
the LSTM's input projection are affine. The input projection at every alpha is then the projection
of the units that are always on (one matrix product per frame) plus, for the units that switch,
a sum over the alpha at which they switch (one sparse product); the gradient flows back the same
way (prefix sums of the per-alpha gradients, gathered at each unit's switching alpha) and through
the convolution once. Only the small LSTM recurrence and the dense head run once per alpha. The
result equals the generic engine's up to float rounding (the tests check it); it saves the m
passes over the convolution's feature maps and the m large input-projection products. On a CPU
the binning (which units are on at which alpha, the scatter into bins, the gather back) runs in
fused numba kernels (:mod:`emolib._ig_kernels`); as TensorFlow ops it would move one 4Q-wide row
per unit through memory and cost about three times as much. On a GPU the TensorFlow ops are
used (:func:`structured_backend`).

Global importance
-----------------
:func:`global_landmark_importance` runs the paper's section 3.2 procedure on a run folder: a
typical training video per emotion, then for each emotion e the IG of its selected training
samples under e's model against the typical video of each of the five other emotions; masks are
averaged over the samples first, then over the five baselines, and the landmarks ranked.
"""
from __future__ import annotations

import json
import logging
import math
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence, get_args

import numpy as np
import pandas as pd

from emolib import EMOTIONS, io
from emolib.config import IgEngine, IgRule, IgTypical
from emolib.errors import DataError, EmolibError, ParamsError

if TYPE_CHECKING:
    from emolib.config import Params
    from emolib.landmarks import LandmarkSet
    from emolib.run_folder import RunFolder

RULES: tuple[str, ...] = get_args(IgRule)
ENGINES: tuple[str, ...] = get_args(IgEngine)
VARIANTS: tuple[str, ...] = ("t-emo", "r-emo")


# ================================================================================================
# The engine
# ================================================================================================

def quadrature(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes (alphas) and weights on [0, 1] of a path-integral rule.

    Args:
        rule: ``riemann_right`` (equation 2 of the paper: alphas k/m, k = 1..m, weights 1/m),
            ``trapezoid`` (alphas k/m, k = 0..m; m + 1 gradient evaluations) or
            ``gauss_legendre`` (m Gauss-Legendre nodes mapped to [0, 1]).
        steps: m, the number of steps (intervals for the trapezoid rule, nodes otherwise).

    Returns:
        ``(alphas, weights)``, float64 arrays of equal length whose weights sum to 1.

    Raises:
        ParamsError: an unknown rule or a step count below 1.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ParamsError(f"ig steps must be an integer >= 1, got {steps!r}")
    m = int(steps)
    if rule == "riemann_right":
        return np.arange(1, m + 1, dtype=np.float64) / m, np.full(m, 1.0 / m)
    if rule == "trapezoid":
        weights = np.full(m + 1, 1.0 / m)
        weights[[0, -1]] /= 2.0
        return np.arange(0, m + 1, dtype=np.float64) / m, weights
    if rule == "gauss_legendre":
        nodes, weights = np.polynomial.legendre.leggauss(m)
        return (nodes + 1.0) / 2.0, weights / 2.0
    raise ParamsError(f"ig rule {rule!r} is unknown; expected one of {list(RULES)}")


@dataclass
class IGResult:
    """What :func:`integrated_gradients` returns.

    Unpacks as ``attributions, gaps = integrated_gradients(...)``.

    Attributes:
        attributions: float64, shaped like the inputs: the integrated gradients.
        gaps: (N,) completeness gap of each sample, ``sum(IG) - (F(x) - F(x'))``; it shrinks as
            the number of steps grows (the completeness axiom holds for the exact integral).
        f_inputs: (N,) F(x), the probability of the target class at each input.
        f_baselines: (N,) F(x'), the same at each input's baseline.
        steps: m.
        rule: the quadrature rule.
        model_calls: how many chunks went through the model's gradient (for checking batching).
    """

    attributions: np.ndarray
    gaps: np.ndarray
    f_inputs: np.ndarray
    f_baselines: np.ndarray
    steps: int
    rule: str
    model_calls: int = 0

    @property
    def deltas(self) -> np.ndarray:
        """(N,) F(x) - F(x'): what the attributions of each sample should add up to."""
        return self.f_inputs - self.f_baselines

    def __iter__(self) -> Iterator[np.ndarray]:
        yield self.attributions
        yield self.gaps


def _call_model(model: Any, batch):
    """Call a Keras model in inference mode (BatchNorm statistics, no dropout); any other
    callable (a plain TensorFlow function, say) as it is."""
    import tf_keras as keras

    if isinstance(model, keras.layers.Layer):
        return model(batch, training=False)
    return model(batch)


# Compiled functions per model, keyed by (kind, chunk, sample shape): a model keeps its traces
# across calls (30 IG calls of the global procedure reuse one), and they die with the model.
_COMPILED: "weakref.WeakKeyDictionary[Any, dict]" = weakref.WeakKeyDictionary()


class _NoRetracingWarning(logging.Filter):
    """Drops TensorFlow's "triggered tf.function retracing" warning. Each model gets its own
    compiled functions (a new trace per model is expected, not a bug: the global procedure
    explains six models), which TensorFlow would otherwise report as excessive retracing."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "triggered tf.function retracing" not in record.getMessage()


_RETRACING_FILTER = _NoRetracingWarning()


def _compiled(model: Any, kind: str, chunk: int, sample_shape: tuple[int, ...]) -> Callable:
    import tensorflow as tf

    logging.getLogger("tensorflow").addFilter(_RETRACING_FILTER)

    try:
        per_model = _COMPILED.setdefault(model, {})
    except TypeError:  # an object that cannot be weakly referenced: compile without caching
        per_model = {}
    key = (kind, chunk, sample_shape)
    if key in per_model:
        return per_model[key]
    rows = (chunk,) + sample_shape
    ones = (-1,) + (1,) * len(sample_shape)
    if kind == "gradients":
        @tf.function(input_signature=[
            tf.TensorSpec((None,) + sample_shape, tf.float32),  # all inputs
            tf.TensorSpec((None,) + sample_shape, tf.float32),  # all baselines
            tf.TensorSpec((chunk,), tf.int32),                  # input row of each chunk row
            tf.TensorSpec((chunk,), tf.int32),                  # baseline row of each chunk row
            tf.TensorSpec((chunk,), tf.float32),                # alpha of each chunk row
            tf.TensorSpec((chunk,), tf.float32),                # quadrature weight (0: padding)
            tf.TensorSpec((chunk,), tf.int32),                  # output segment of each row
            tf.TensorSpec((), tf.int32),                        # number of segments
            tf.TensorSpec((), tf.int32),                        # target class
        ])
        def gradients(inputs, baselines, input_row, baseline_row, alpha, weight, segment,
                      n_segments, target):
            x = tf.gather(inputs, input_row)
            x0 = tf.gather(baselines, baseline_row)
            path = x0 + tf.reshape(alpha, ones) * (x - x0)
            path = tf.ensure_shape(path, rows)
            with tf.GradientTape() as tape:
                tape.watch(path)
                prob = tf.gather(_call_model(model, path), target, axis=-1)
            # Padding rows repeat the last real row (same sample, same alpha) with weight 0, so
            # their gradient is finite whenever the real ones are and the product adds nothing.
            # The weighting and the within-chunk sums stay in float32 (one pass over the chunk's
            # gradients: a float64 copy would cost a tenth of a small model's time); the running
            # sum over chunks is float64 on the host.
            weighted = tape.gradient(prob, path) * tf.reshape(weight, ones)
            return tf.math.unsorted_segment_sum(weighted, segment, n_segments)

        fn = gradients
    elif kind == "outputs":
        # Forward passes are cheap next to the gradients: any batch size, one trace per model.
        @tf.function(input_signature=[tf.TensorSpec((None,) + sample_shape, tf.float32)])
        def outputs(batch):
            return _call_model(model, batch)

        fn = outputs
    elif kind == "structured":
        fn = _structured_fn(_conv_lstm_plan(model), sample_shape)
    elif kind == "structured-host":
        fn = _host_structured_fn(_conv_lstm_plan(model))
    else:  # pragma: no cover - internal
        raise ValueError(kind)
    per_model[key] = fn
    return fn


# ------------------------------------------------------------------------------------------------
# The structured engine (emolib's Conv2D + LSTM models)
# ------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class _ConvLstmPlan:
    """The layers of an emolib Conv2D + LSTM model that the structured engine reads."""

    conv: Any        # the Conv2D inside TimeDistributed
    norm: Any        # the BatchNormalization inside TimeDistributed
    cell: Any        # the LSTM's cell
    head: tuple      # the layers after the LSTM (dropout: identity in inference; dense layers)
    frames: int
    landmarks: int


def _conv_lstm_plan(model: Any) -> _ConvLstmPlan | None:
    """The plan of ``model`` when it has exactly the architecture of
    :func:`emolib.models.build_model` (input, TimeDistributed ReLU Conv2D, TimeDistributed
    BatchNorm, TimeDistributed Flatten, LSTM, Dropout, Dense layers), else None."""
    try:
        import tf_keras as keras
    except ImportError:  # pragma: no cover - tf-keras is a dependency
        return None
    if not isinstance(model, keras.Model):
        return None
    L = keras.layers
    layers = [layer for layer in model.layers if not isinstance(layer, L.InputLayer)]
    if len(layers) < 5 or len(model.inputs) != 1 or len(model.outputs) != 1:
        return None
    td_conv, td_norm, td_flat, lstm, *head = layers
    if not (isinstance(td_conv, L.TimeDistributed) and type(td_conv.layer) is L.Conv2D
            and isinstance(td_norm, L.TimeDistributed) and type(td_norm.layer) is L.BatchNormalization
            and isinstance(td_flat, L.TimeDistributed) and type(td_flat.layer) is L.Flatten
            and type(lstm) is L.LSTM and all(type(h) in (L.Dropout, L.Dense) for h in head)):
        return None
    # The graph must be the plain chain of these layers.
    chain = [td_conv, td_norm, td_flat, lstm, *head]
    for before, after in zip(chain, chain[1:]):
        if after.input is not before.output:
            return None
    if model.outputs[0] is not chain[-1].output or td_conv.input is not model.inputs[0]:
        return None
    conv, norm = td_conv.layer, td_norm.layer
    shape = tuple(model.input_shape[1:])
    if (len(shape) != 4 or None in shape or shape[1] != 2 or shape[3] != 1
            or conv.kernel_size[0] != 2 or tuple(conv.strides) != (1, 1)
            or tuple(conv.dilation_rate) != (1, 1) or conv.padding != "valid"
            or conv.data_format != "channels_last" or conv.groups != 1 or not conv.use_bias
            or conv.activation is not keras.activations.relu
            or list(np.atleast_1d(norm.axis)) not in ([3], [-1])
            or not (norm.center and norm.scale)
            or lstm.return_sequences or lstm.go_backwards or lstm.stateful or lstm.time_major
            or not lstm.cell.use_bias):
        return None
    return _ConvLstmPlan(conv=conv, norm=norm, cell=lstm.cell, head=tuple(head),
                         frames=int(shape[0]), landmarks=int(shape[2]))


def _recurrence_gradient(plan: _ConvLstmPlan, z: Any, target: Any) -> Any:
    """dF/dz for the LSTM's input projections z, (B, P, 4Q): Keras' LSTM cell from its input
    projection on, then the head; F the probability of class ``target``."""
    import tensorflow as tf

    cell = plan.cell
    with tf.GradientTape() as tape:
        tape.watch(z)
        h = tf.zeros((tf.shape(z)[0], cell.units))
        c = tf.zeros((tf.shape(z)[0], cell.units))
        for p in range(plan.frames):
            gates = z[:, p] + tf.matmul(h, cell.recurrent_kernel)
            i, f, g, o = tf.split(gates, 4, axis=1)
            c = cell.recurrent_activation(f) * c + cell.recurrent_activation(i) * cell.activation(g)
            h = cell.recurrent_activation(o) * cell.activation(c)
        out = h
        for layer in plan.head:
            out = layer(out, training=False)
        prob = tf.gather(out, target, axis=-1)
    return tape.gradient(prob, z)


def _host_structured_fn(plan: _ConvLstmPlan) -> Callable:
    """The structured engine with its binning in numba kernels (:mod:`emolib._ig_kernels`);
    only the recurrence and the head run in TensorFlow, compiled here."""
    import tensorflow as tf

    from emolib._ig_kernels import HostStructured

    @tf.function(input_signature=[tf.TensorSpec((None, plan.frames, None), tf.float32),
                                  tf.TensorSpec((), tf.int32)])
    def recurrence_grad(z, target):
        return _recurrence_gradient(plan, z, target)

    return HostStructured(plan, recurrence_grad)


def _structured_fn(plan: _ConvLstmPlan, sample_shape: tuple[int, ...]) -> Callable:
    """The structured engine for one model, compiled (:func:`_compiled` caches it per model):
    (x, x', alphas, weights, target) of a chunk of samples -> sum_k weight_k * dF/dx at
    x' + alpha_k (x - x'), shaped like x."""
    import tensorflow as tf

    conv, norm, cell = plan.conv, plan.norm, plan.cell
    frames, landmarks = plan.frames, plan.landmarks
    spec = tf.TensorSpec((None,) + sample_shape, tf.float32)

    def convolve(v, with_bias: bool):
        """The convolution's pre-activation, (N * P, U) with U = width * filters in Flatten's
        order (width-major, filters minor)."""
        out = tf.nn.conv2d(tf.reshape(v, (-1, 2, landmarks, 1)), conv.kernel, 1, "VALID")
        if with_bias:
            out = out + conv.bias
        return tf.reshape(out, (tf.shape(out)[0], -1))

    @tf.function(input_signature=[spec, spec, tf.TensorSpec((None,), tf.float32),
                                  tf.TensorSpec((None,), tf.float32), tf.TensorSpec((), tf.int32)])
    def structured(x, x0, alphas, weights, target):
        n_samples = tf.shape(x)[0]
        rows = n_samples * frames                         # one row per (sample, frame)
        n = tf.shape(alphas)[0]
        d = x - x0
        c0 = convolve(x0, True)                           # pre-activation at alpha = 0
        c1 = convolve(d, False)                           # its slope in alpha
        n_units = tf.shape(c0)[1]
        # BatchNorm (inference) per filter: s * relu + t; folded into the LSTM's input kernel
        # (as in emolib._ig_kernels.fold_batchnorm, here in the graph).
        scale = norm.gamma * tf.math.rsqrt(norm.moving_variance + norm.epsilon)
        shift = norm.beta - norm.moving_mean * scale
        reps = n_units // tf.shape(scale)[0]
        kernel = cell.kernel * tf.tile(scale, [reps])[:, None]                    # (U, 4Q)
        z_const = tf.linalg.matvec(cell.kernel, tf.tile(shift, [reps]), transpose_a=True) + cell.bias

        # How many alphas each unit is on at (c0 + alpha c1 > 0, alphas ascending): units with a
        # rising pre-activation are on from index j = n - count, falling ones up to j = count.
        rising = c1 >= 0
        tau = tf.reshape(-c0 / tf.where(tf.equal(c1, 0.0), tf.ones_like(c1), c1), (1, -1))
        after = tf.reshape(tf.searchsorted(alphas[None], tau, side="right"), tf.shape(c0))
        before = tf.reshape(tf.searchsorted(alphas[None], tau, side="left"), tf.shape(c0))
        count = tf.where(c1 > 0, n - after,
                         tf.where(c1 < 0, before, tf.where(c0 > 0, n, tf.zeros_like(after))))
        switch = tf.where(rising, n - count, count)       # (rows, U) in 0..n
        always = tf.cast(tf.equal(count, n), tf.float32)
        where = tf.where((count > 0) & (count < n))       # the units that switch: (nc, [row, unit])
        row, unit = where[:, 0], where[:, 1]
        j = tf.gather_nd(switch, where)
        up = tf.gather_nd(rising, where)
        # Forward: the projection of the always-on units, then each switching unit's row of the
        # kernel added into the bin of its switching index (one sparse product for c0 and c1).
        base0 = tf.matmul(c0 * always, kernel)            # (rows, 4Q)
        base1 = tf.matmul(c1 * always, kernel)
        bins = rows * 2 * (n + 1)
        bin_of = (tf.cast(row, tf.int32) * 2 + tf.cast(up, tf.int32)) * (n + 1) + j
        bin_of = tf.cast(bin_of, tf.int64)
        sparse = tf.sparse.SparseTensor(
            tf.stack([tf.concat([bin_of, bin_of + tf.cast(bins, tf.int64)], 0),
                      tf.concat([unit, unit], 0)], axis=1),
            tf.concat([tf.gather_nd(c0, where), tf.gather_nd(c1, where)], 0),
            tf.cast(tf.stack([2 * bins, n_units]), tf.int64))
        binned = tf.reshape(tf.sparse.sparse_dense_matmul(sparse, kernel), (2, rows, 2, n + 1, -1))

        def on_at_each_alpha(part):  # (rows, 2, n + 1, 4Q) -> (rows, n, 4Q)
            falling_on = tf.cumsum(part[:, 0], axis=1, exclusive=True, reverse=True)[:, :n]
            rising_on = tf.cumsum(part[:, 1], axis=1)[:, :n]
            return falling_on + rising_on

        z = (z_const + base0[:, None] + on_at_each_alpha(binned[0])
             + alphas[None, :, None] * (base1[:, None] + on_at_each_alpha(binned[1])))    # (rows, n, 4Q)
        z = tf.reshape(tf.transpose(tf.reshape(z, (n_samples, frames, n, -1)), (0, 2, 1, 3)),
                       (n_samples * n, frames, -1))
        grad_z = tf.reshape(_recurrence_gradient(plan, z, target), (n_samples, n, frames, -1)) * weights[None, :, None, None]
        grad_z = tf.reshape(tf.transpose(grad_z, (0, 2, 1, 3)), (rows, n, -1))          # (rows, n, 4Q)
        # Backward: a unit on at alphas k >= j (rising) or k < j (falling) collects the weighted
        # gradient summed over those alphas: a prefix sum read at its switching index.
        # (Suffix sums are summed directly, not as total - prefix, which would cancel.)
        zero = tf.zeros_like(grad_z[:, :1])
        prefix = tf.concat([zero, tf.cumsum(grad_z, axis=1)], axis=1)                   # sum_{k < j}
        suffix = tf.concat([tf.cumsum(grad_z, axis=1, reverse=True), zero], axis=1)     # sum_{k >= j}
        sums = tf.stack([prefix, suffix], axis=1)                                        # (rows, 2, n + 1, 4Q)
        grad_pre = always * tf.matmul(suffix[:, 0], kernel, transpose_b=True)           # (rows, U)
        collected = tf.gather_nd(sums, tf.stack([row, tf.cast(up, tf.int64), tf.cast(j, tf.int64)], axis=1))
        grad_pre = tf.tensor_scatter_nd_add(
            grad_pre, where, tf.reduce_sum(collected * tf.gather(kernel, unit), axis=-1))
        with tf.GradientTape() as back:  # through the (linear) convolution once
            back.watch(d)
            pre = convolve(d, False)
        return back.gradient(pre, d, output_gradients=grad_pre)

    return structured


def _chunk_size(batch_size: int | None, total_rows: int) -> int:
    """Rows per chunk: ``batch_size`` (None: everything in one chunk); a small job gets the next
    power of two instead, so that tiny calls neither pad to a huge chunk nor each retrace."""
    if batch_size is None:
        return max(1, total_rows)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ParamsError(f"ig batch_size must be an integer >= 1 or None, got {batch_size!r}")
    if total_rows >= batch_size:
        return int(batch_size)
    return min(int(batch_size), 1 << max(0, math.ceil(math.log2(max(1, total_rows)))))


def _n_outputs(model: Any, sample: np.ndarray) -> int:
    shape = getattr(model, "output_shape", None)
    if isinstance(shape, tuple) and len(shape) >= 2 and isinstance(shape[-1], int):
        return int(shape[-1])
    out = np.asarray(_call_model(model, sample[None]))
    if out.ndim != 2:
        raise EmolibError(f"the model must return (batch, classes) probabilities, got shape {out.shape}")
    return int(out.shape[-1])


def _check_target(model: Any, target: Any, sample: np.ndarray) -> int:
    n_out = _n_outputs(model, sample)
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or not 0 <= target < n_out:
        raise EmolibError(f"target {target!r} is not a class of this model: it has {n_out} outputs "
                          f"(valid targets: 0..{n_out - 1})")
    return int(target)


def _as_inputs(inputs: Any) -> np.ndarray:
    x = np.asarray(inputs, dtype=np.float32)
    if x.ndim < 2 or x.shape[0] == 0:
        raise DataError(f"inputs must be a non-empty batch (N, ...) of samples, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise DataError("inputs hold NaN or infinite values")
    return x


def _as_baselines(baselines: Any, inputs: np.ndarray) -> np.ndarray:
    """Baselines as an (N, ...) or (1, ...) array; one baseline serves every input."""
    b = np.asarray(baselines, dtype=np.float32)
    sample_shape = inputs.shape[1:]
    if b.shape == sample_shape:
        b = b[None]
    if b.shape[1:] != sample_shape or b.shape[0] not in (1, inputs.shape[0]):
        raise DataError(f"baselines have shape {b.shape}; expected one baseline {sample_shape}, "
                        f"(1, {', '.join(map(str, sample_shape))}) or one per input "
                        f"{inputs.shape}")
    if not np.isfinite(b).all():
        raise DataError("baselines hold NaN or infinite values")
    return b


def model_outputs(model: Any, inputs: Any, batch_size: int | None = 512) -> np.ndarray:
    """The model's outputs (inference mode) for ``inputs``, in chunks of ``batch_size`` rows.

    Args:
        model: a tf-keras model (or a callable) mapping (B, ...) to (B, classes).
        inputs: (N, ...) samples.
        batch_size: rows per chunk (None: all at once).

    Returns:
        (N, classes) float64.
    """
    import tensorflow as tf

    x = _as_inputs(inputs)
    n = x.shape[0]
    chunk = _chunk_size(batch_size, n)
    fn = _compiled(model, "outputs", 0, tuple(x.shape[1:]))
    parts = [np.asarray(fn(tf.constant(x[start:start + chunk])), dtype=np.float64)
             for start in range(0, n, chunk)]
    return np.concatenate(parts)


def integrated_gradients(model: Any, inputs: Any, baselines: Any, steps: int = 50, target: int = 1,
                         batch_size: int | None = None, rule: str = "riemann_right",
                         progress: bool = False, engine: str = "auto") -> IGResult:
    """Integrated Gradients of the probability of class ``target`` (paper, equation 2).

    Args:
        model: a tf-keras model (called with ``training=False``) or a callable mapping a
            (B, ...) float32 tensor to (B, classes) outputs; F is output column ``target``.
        inputs: (N, ...) samples x (for the emotion models: the scaled model inputs
            (N, P, 2, L, 1)).
        baselines: x', either one baseline shaped like one sample (or (1, ...)) for every input,
            or one per input, shaped like ``inputs``.
        steps: m. Equation (2) evaluates the gradient at alphas k/m, k = 1..m.
        target: the output column whose value is explained (1: "is this emotion").
        batch_size: interpolated samples (rows of samples x alphas) per compiled model call;
            None puts all rows in one chunk. Any chunk size gives the same sums.
        rule: ``riemann_right`` (equation 2, the default), ``trapezoid`` or ``gauss_legendre``.
        progress: show a tqdm bar over the chunks.
        engine: ``generic`` (any model: every (sample, alpha) row through the model's gradient),
            ``structured`` (exact and much cheaper, for the Conv2D + LSTM architecture of
            :func:`emolib.models.build_model`; see the module's docstring; a chunk holds
            ``batch_size // len(alphas)`` samples with all their alphas) or ``auto`` (structured
            when the model has that architecture, else generic). Both give the same
            attributions up to float rounding.

    Returns:
        An :class:`IGResult`: ``attributions`` (float64, shaped like ``inputs``), ``gaps`` (the
        completeness gap per sample, sum(IG) - (F(x) - F(x'))), F(x), F(x') and call counts.
        It unpacks as ``attributions, gaps``.

    Raises:
        DataError: inputs empty or not finite; baselines neither one sample nor one per input.
        EmolibError: ``target`` is not an output column of the model.
        ParamsError: an unknown rule or engine, steps / batch_size below 1, or ``structured``
            asked of a model without the architecture it needs.
    """
    import tensorflow as tf

    x = _as_inputs(inputs)
    b = _as_baselines(baselines, x)
    alphas, weights = quadrature(rule, steps)
    target = _check_target(model, target, x[0])
    n, n_alpha = x.shape[0], len(alphas)
    total = n * n_alpha
    chunk = _chunk_size(batch_size, total)
    sample_shape = tuple(x.shape[1:])
    target_t = tf.constant(target, tf.int32)
    if _engine_plan(model, engine, sample_shape) is not None:
        sums, calls = _structured_sums(model, x, b, alphas, weights, target_t, chunk, progress)
        return _finish(model, x, b, sums, target, batch_size, steps, rule, calls)

    fn = _compiled(model, "gradients", chunk, sample_shape)
    x_t, b_t = tf.constant(x), tf.constant(b)
    sums = np.zeros((n,) + sample_shape, dtype=np.float64)  # running sum of weighted gradients
    n_chunks = -(-total // chunk)
    chunks: Any = range(n_chunks)
    if progress:
        from tqdm.auto import tqdm

        chunks = tqdm(chunks, desc=f"IG ({n} samples x {n_alpha} alphas)", unit="chunk", leave=False)
    for c in chunks:
        # Rows are sample-major (row = sample * n_alpha + alpha index), so a chunk covers a
        # contiguous run of samples and its per-sample sums land in one slice of `sums`.
        rows = np.arange(c * chunk, (c + 1) * chunk)
        valid = rows < total
        rows = np.where(valid, rows, total - 1)
        sample = rows // n_alpha
        step = rows % n_alpha
        first = int(sample[0])
        n_seg = int(sample[-1]) - first + 1
        part = fn(x_t, b_t,
                  tf.constant(sample, tf.int32),
                  tf.constant(sample if b.shape[0] > 1 else np.zeros_like(sample), tf.int32),
                  tf.constant(alphas[step], tf.float32),
                  tf.constant(np.where(valid, weights[step], 0.0), tf.float32),
                  tf.constant(sample - first, tf.int32),
                  tf.constant(n_seg, tf.int32), target_t)
        sums[first:first + n_seg] += part.numpy().astype(np.float64)
    return _finish(model, x, b, sums, target, batch_size, steps, rule, n_chunks)


def _engine_plan(model: Any, engine: str, sample_shape: tuple[int, ...]) -> _ConvLstmPlan | None:
    """The structured engine's plan when ``engine`` asks for it (and the model allows it)."""
    if engine not in ENGINES:
        raise ParamsError(f"ig engine {engine!r} is unknown; expected one of {list(ENGINES)}")
    if engine == "generic":
        return None
    plan = _conv_lstm_plan(model)
    if plan is not None and sample_shape != (plan.frames, 2, plan.landmarks, 1):
        plan = None  # inputs of another shape: let the model itself say what is wrong
    if plan is None and engine == "structured":
        raise ParamsError("ig engine 'structured' needs a Conv2D + LSTM model built by "
                          "emolib.models.build_model (inputs (N, P, 2, K, 1)); use 'auto' or 'generic'")
    return plan


BACKENDS: tuple[str, ...] = ("auto", "numba", "tensorflow")


def structured_backend() -> str:
    """Where the structured engine bins its units: ``numba`` (fused CPU kernels, the default on
    a machine without a GPU) or ``tensorflow`` (graph ops: on a GPU, or without numba). The
    environment variable ``EMOLIB_IG_BACKEND`` (auto / numba / tensorflow) overrides the choice;
    both give the same attributions up to float rounding."""
    import os

    asked = os.environ.get("EMOLIB_IG_BACKEND", "auto").strip().lower() or "auto"
    if asked not in BACKENDS:
        raise ParamsError(f"EMOLIB_IG_BACKEND={asked!r} is unknown; expected one of {list(BACKENDS)}")
    from emolib import _ig_kernels

    if asked == "numba" and not _ig_kernels.AVAILABLE:
        raise ParamsError("EMOLIB_IG_BACKEND=numba, but numba is not installed")
    if asked != "auto":
        return asked
    if not _ig_kernels.AVAILABLE:
        return "tensorflow"
    import tensorflow as tf

    return "tensorflow" if tf.config.list_physical_devices("GPU") else "numba"


def _structured_sums(model: Any, x: np.ndarray, b: np.ndarray, alphas: np.ndarray,
                     weights: np.ndarray, target_t: Any, chunk: int, progress: bool) -> tuple[np.ndarray, int]:
    """The structured engine over chunks of ``chunk // len(alphas)`` samples (at least one)."""
    import tensorflow as tf

    if np.any(np.diff(alphas) <= 0):  # pragma: no cover - every rule gives ascending nodes
        raise EmolibError("the structured engine needs ascending alphas")
    if structured_backend() == "numba":   # numpy arrays in and out
        fn = _compiled(model, "structured-host", 0, tuple(x.shape[1:])).bind()   # today's weights
        alphas32, weights32 = np.asarray(alphas, np.float32), np.asarray(weights, np.float32)

        def run(xc: np.ndarray, x0: np.ndarray) -> np.ndarray:
            return fn(xc, x0, alphas32, weights32, target_t)
    else:
        fn = _compiled(model, "structured", 0, tuple(x.shape[1:]))
        alphas_t, weights_t = tf.constant(alphas, tf.float32), tf.constant(weights, tf.float32)

        def run(xc: np.ndarray, x0: np.ndarray) -> np.ndarray:
            return fn(tf.constant(xc), tf.constant(x0), alphas_t, weights_t, target_t).numpy()
    n = x.shape[0]
    per_chunk = max(1, chunk // len(alphas))
    sums = np.zeros(x.shape, dtype=np.float64)
    starts: Any = range(0, n, per_chunk)
    if progress:
        from tqdm.auto import tqdm

        starts = tqdm(starts, desc=f"IG ({n} samples x {len(alphas)} alphas)", unit="chunk", leave=False)
    for start in starts:
        stop = min(n, start + per_chunk)
        x0 = b[start:stop] if b.shape[0] > 1 else np.broadcast_to(b, (stop - start,) + b.shape[1:])
        sums[start:stop] = run(x[start:stop], x0).reshape(sums[start:stop].shape)
    return sums, -(-n // per_chunk)


def _finish(model: Any, x: np.ndarray, b: np.ndarray, sums: np.ndarray, target: int, batch_size: int | None,
            steps: int, rule: str, calls: int) -> IGResult:
    """Attributions (x - x') * sums, and the completeness gaps."""
    n = x.shape[0]
    attributions = (x.astype(np.float64) - b.astype(np.float64)) * sums
    f_x = model_outputs(model, x, batch_size)[:, target]
    f_b = model_outputs(model, b, batch_size)[:, target]
    f_b = np.broadcast_to(f_b, (n,)).copy()
    gaps = attributions.reshape(n, -1).sum(axis=1) - (f_x - f_b)
    return IGResult(attributions, gaps, f_x, f_b, int(steps), rule, model_calls=calls)


def landmark_mask(attributions: np.ndarray) -> np.ndarray:
    """The paper's attribution mask: sum of |IG| over frames and coordinates, one value per landmark.

    Args:
        attributions: (P, 2, L) or (N, P, 2, L), each optionally with a trailing channel axis of
            size 1 (the model input layout (N, P, 2, L, 1)).

    Returns:
        (L,) for one sample, (N, L) for a batch.

    Raises:
        DataError: the array does not have the (.., P, 2, L[, 1]) layout.
    """
    a = np.asarray(attributions)
    if a.ndim >= 4 and a.shape[-1] == 1 and a.shape[-3] == 2:
        a = a[..., 0]
    if a.ndim not in (3, 4) or a.shape[-2] != 2:
        raise DataError(f"attributions must be shaped (P, 2, L) or (N, P, 2, L) (optionally with "
                        f"a trailing axis of 1), got {np.asarray(attributions).shape}")
    return np.abs(a).sum(axis=(-3, -2))


def alpha_curve(model: Any, x: Any, baseline: Any, steps: int = 50, target: int = 1,
                batch_size: int | None = 512) -> tuple[np.ndarray, np.ndarray]:
    """The model's probability along the straight path from the baseline to x (paper, Figure 2).

    Args:
        model: as for :func:`integrated_gradients`.
        x: one sample (no batch axis).
        baseline: one baseline, shaped like ``x``.
        steps: the curve has steps + 1 points, alpha = 0, 1/steps, ..., 1.
        target: the output column plotted.
        batch_size: rows per model call.

    Returns:
        ``(alphas, probabilities)``, both (steps + 1,).
    """
    sample = np.asarray(x, dtype=np.float32)
    base = np.asarray(baseline, dtype=np.float32)
    if base.shape != sample.shape:
        raise DataError(f"baseline shape {base.shape} differs from the sample's {sample.shape}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ParamsError(f"alpha_curve steps must be an integer >= 1, got {steps!r}")
    target = _check_target(model, target, sample)
    alphas = np.linspace(0.0, 1.0, int(steps) + 1)
    path = base[None] + alphas.astype(np.float32).reshape((-1,) + (1,) * sample.ndim) * (sample - base)[None]
    return alphas, model_outputs(model, path, batch_size)[:, target]


def completeness_by_steps(model: Any, inputs: Any, baselines: Any, steps_list: Sequence[int],
                          target: int = 1, batch_size: int | None = 512,
                          rule: str = "riemann_right", engine: str = "auto") -> pd.DataFrame:
    """Completeness gaps of the same samples at several step counts (does m suffice?).

    Returns:
        One row per m: steps, mean_abs_gap, max_abs_gap, mean_abs_delta (mean |F(x) - F(x')|) and
        relative_gap = mean_abs_gap / mean_abs_delta.
    """
    rows = []
    for m in steps_list:
        res = integrated_gradients(model, inputs, baselines, steps=int(m), target=target,
                                   batch_size=batch_size, rule=rule, engine=engine)
        delta = float(np.mean(np.abs(res.deltas)))
        gap = float(np.mean(np.abs(res.gaps)))
        rows.append({"steps": int(m), "mean_abs_gap": gap, "max_abs_gap": float(np.max(np.abs(res.gaps))),
                     "mean_abs_delta": delta, "relative_gap": gap / delta if delta > 0 else float("nan")})
    return pd.DataFrame(rows)


# ================================================================================================
# Global importance (paper, section 3.2)
# ================================================================================================

def aggregate_masks(masks_by_baseline: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The paper's order: average over the samples first, then over the baselines.

    Args:
        masks_by_baseline: one (n_b, L) array of per-sample masks per baseline (the sample counts
            may differ: each baseline's mean still weighs 1 / B in the result).

    Returns:
        ``(per_baseline (B, L), global (L,))``.
    """
    if len(masks_by_baseline) == 0:
        raise EmolibError("no baselines to aggregate")
    per_baseline = []
    for i, masks in enumerate(masks_by_baseline):
        masks = np.asarray(masks, dtype=np.float64)
        if masks.ndim != 2 or masks.shape[0] == 0:
            raise EmolibError(f"baseline {i}: expected a non-empty (samples, landmarks) array, got {masks.shape}")
        per_baseline.append(masks.mean(axis=0))
    per_baseline_arr = np.stack(per_baseline)
    return per_baseline_arr, per_baseline_arr.mean(axis=0)


def rank_landmarks(importance: np.ndarray, landmark_ids: Sequence[int]) -> np.ndarray:
    """Landmark ids sorted by decreasing importance.

    Args:
        importance: (L,) one value per landmark.
        landmark_ids: (L,) the landmarks' MediaPipe ids, in the order of ``importance``.

    Returns:
        (L,) ids, most important first; ties keep their order in ``landmark_ids``.

    Raises:
        EmolibError: the two arrays differ in shape.
    """
    importance = np.asarray(importance, dtype=np.float64)
    ids = np.asarray(landmark_ids, dtype=int)
    if importance.shape != ids.shape:
        raise EmolibError(f"importance {importance.shape} and landmark ids {ids.shape} differ in shape")
    return ids[np.argsort(-importance, kind="stable")]


def select_explained(candidates: np.ndarray, max_samples: int | None, seed: int, emotion: str) -> np.ndarray:
    """The samples IG explains: all candidates, or a seeded choice of ``max_samples`` of them.

    Args:
        candidates: rows of the landmark file (the training samples ``ig.inputs`` names).
        max_samples: ``ig.max_samples`` (None: no cap).
        seed: the seed of the choice (the IG seed).
        emotion: the explained emotion; the choice is seeded by (seed, emotion), so each
            emotion's draw is reproducible on its own.

    Returns:
        Sorted rows.
    """
    candidates = np.sort(np.asarray(candidates, dtype=int))
    if max_samples is None or len(candidates) <= max_samples:
        return candidates
    rng = np.random.default_rng([int(seed), EMOTIONS.index(emotion) if emotion in EMOTIONS else 0])
    return np.sort(rng.choice(candidates, size=int(max_samples), replace=False))


TYPICAL_STRATEGIES: tuple[str, ...] = get_args(IgTypical)
TYPICAL_DESCRIPTIONS: dict[str, str] = {
    "most_confident": "the training sample of that emotion its own model is most sure of",
    "medoid": "the training sample closest to the mean input of that emotion's training samples",
    "centroid": "the mean input of that emotion's training samples, not a real video",
}


def check_typical_strategy(strategy: str) -> str:
    """``strategy`` if it is one of :data:`TYPICAL_STRATEGIES`.

    Raises:
        ParamsError: an unknown strategy.
    """
    if strategy not in TYPICAL_STRATEGIES:
        raise ParamsError(f"ig.typical {strategy!r} is unknown; expected one of {list(TYPICAL_STRATEGIES)}")
    return strategy


def typical_sample(inputs: np.ndarray, strategy: str, probabilities: np.ndarray | None = None) -> tuple[int, float]:
    """Pick the typical sample among one emotion's training samples (the strategies that pick a
    real video; ``centroid`` averages them instead, see :func:`choose_typical`).

    Args:
        inputs: (n, ...) the emotion's training samples (model inputs).
        strategy: ``most_confident`` (highest probability from the emotion's own model) or
            ``medoid`` (closest, in Euclidean distance, to the mean of ``inputs``).
        probabilities: (n,) the emotion's model's probability of the emotion; needed for
            ``most_confident``.

    Returns:
        ``(position in inputs, score)``: the probability (most_confident) or the distance to the
        mean (medoid).

    Raises:
        ParamsError: ``centroid`` (not a sample: the mean of the samples) or an unknown strategy.
        DataError: no samples.
    """
    check_typical_strategy(strategy)
    if strategy == "centroid":
        raise ParamsError("ig.typical 'centroid' is the mean of the samples, not one of them: "
                          "use choose_typical (or typical_inputs) for it")
    if len(inputs) == 0:
        raise DataError("no training samples to pick a typical one from")
    if strategy == "most_confident":
        if probabilities is None:
            raise EmolibError("most_confident needs the model's probabilities")
        p = np.asarray(probabilities, dtype=np.float64)
        i = int(np.argmax(p))
        return i, float(p[i])
    dist = _distances_to_mean(inputs)
    i = int(np.argmin(dist))
    return i, float(dist[i])


def _distances_to_mean(inputs: np.ndarray) -> np.ndarray:
    """(n,) Euclidean distance of each sample to the samples' mean (the medoid's and the
    centroid's score)."""
    flat = np.asarray(inputs, dtype=np.float64).reshape(len(inputs), -1)
    return np.linalg.norm(flat - flat.mean(axis=0, keepdims=True), axis=1)


@dataclass(frozen=True, eq=False)
class TypicalBaseline:
    """One emotion's "typical video", the baseline IG starts from.

    It is the mean model input of ``rows`` (rows of ``data/landmarks.npz``), taken under the
    model being explained (each model scales its inputs with its own statistics). The strategies
    that pick a real video (``most_confident``, ``medoid``) hold one row, so the baseline is
    that video's input; ``centroid`` holds all the emotion's candidate rows (its training
    samples), so the baseline is their mean input: not a real video.

    Attributes:
        emotion: the emotion it stands for.
        strategy: the ``ig.typical`` that chose it.
        rows: (n,) int rows of the landmark file averaged (one for a real video).
        score: the probability its own model gives it (most_confident), its distance to the mean
            (medoid) or the mean distance of the averaged samples to their mean (centroid), in
            the input space of the emotion's own model.
    """

    emotion: str
    strategy: str
    rows: np.ndarray
    score: float = float("nan")

    @property
    def is_video(self) -> bool:
        """Whether the baseline is one real video (``sample`` is then its row)."""
        return self.strategy != "centroid"

    @property
    def sample(self) -> int:
        """The row of the real video, or -1 for a centroid."""
        return int(self.rows[0]) if self.is_video else -1

    @property
    def key(self) -> Any:
        """What identifies it in cache keys: the row of a real video (as before centroids
        existed, so earlier caches stay valid), else the strategy, count and a hash of the rows."""
        if self.is_video:
            return self.sample
        import hashlib

        digest = hashlib.sha256(np.asarray(self.rows, dtype=np.int64).tobytes()).hexdigest()[:16]
        return {"strategy": self.strategy, "n": len(self.rows), "rows": digest}

    def describe(self, data: LandmarkSet | None = None) -> str:
        """The ``sequence`` column of typical.csv: the video's sequence, or "centroid of N samples"."""
        if not self.is_video:
            return f"centroid of {len(self.rows)} samples"
        return str(data.sequence[self.sample]) if data is not None else str(self.sample)


def choose_typical(emotion: str, rows: np.ndarray, inputs: np.ndarray, strategy: str,
                   probabilities: np.ndarray | None = None) -> TypicalBaseline:
    """One emotion's typical baseline among its candidate samples.

    Args:
        emotion: the emotion.
        rows: (n,) the candidates' rows of the landmark file (its training samples).
        inputs: (n, ...) their inputs under the emotion's own model (for the choice and score).
        strategy: ``most_confident``, ``medoid`` (see :func:`typical_sample`) or ``centroid``
            (all candidates; the baseline is their mean input under whichever model is explained).
        probabilities: as for :func:`typical_sample` (most_confident only).

    Returns:
        A :class:`TypicalBaseline`.

    Raises:
        ParamsError: an unknown strategy.
        DataError: no candidates, or ``rows`` and ``inputs`` differ in length.
    """
    check_typical_strategy(strategy)
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        raise DataError(f"{emotion}: no training samples to pick a typical one from")
    if len(rows) != len(inputs):
        raise DataError(f"{emotion}: {len(rows)} rows but {len(inputs)} inputs")
    if strategy == "centroid":
        return TypicalBaseline(emotion, strategy, np.sort(rows), float(_distances_to_mean(inputs).mean()))
    pos, score = typical_sample(inputs, strategy, probabilities)
    return TypicalBaseline(emotion, strategy, rows[pos:pos + 1], score)


def typical_inputs(baselines: Sequence[TypicalBaseline], data: LandmarkSet, trained: Any,
                   training_api: Any = None) -> np.ndarray:
    """The model inputs of typical baselines under one model (the one being explained).

    Args:
        baselines: the baselines, in the order wanted.
        data: the full landmark set (their rows index it).
        trained: the explained model (a TrainedModel, or what ``training_api`` accepts).
        training_api: provides ``model_inputs`` (default :mod:`emolib.training`).

    Returns:
        (B, ...) float32: each baseline's mean model input (a real video's own input).
    """
    api = training_api or _default_training_api()
    if len(baselines) == 0:
        raise EmolibError("no typical baselines")
    rows = [np.asarray(b.rows, dtype=int) for b in baselines]
    if any(len(r) == 0 for r in rows):
        raise DataError("a typical baseline without rows")
    inputs = np.asarray(api.model_inputs(data.subset(np.concatenate(rows)), trained))
    out, start = [], 0
    for r in rows:
        part = inputs[start:start + len(r)]
        start += len(r)
        out.append(part[0] if len(r) == 1 else part.astype(np.float64).mean(axis=0).astype(inputs.dtype))
    return np.stack(out)


TYPICAL_COLUMNS = ("emotion", "sample", "sequence", "strategy", "score")


def typical_paths(run: RunFolder, variant: str = "t-emo") -> tuple[Path, Path]:
    """``attributions/typical.csv`` (one row per emotion) and ``attributions/typical_rows.json``
    (the rows each baseline averages); R-EMO's carry the suffix ``_r-emo``."""
    suffix = "" if variant == "t-emo" else f"_{variant}"
    base = Path(run.attributions)
    return base / f"typical{suffix}.csv", base / f"typical_rows{suffix}.json"


def write_typical(run: RunFolder, variant: str, baselines: Sequence[TypicalBaseline],
                  data: LandmarkSet | None = None) -> pd.DataFrame:
    """Write typical.csv and typical_rows.json of ``variant``; returns the table."""
    table = pd.DataFrame([{"emotion": b.emotion, "sample": b.sample, "sequence": b.describe(data),
                           "strategy": b.strategy, "score": b.score} for b in baselines],
                         columns=list(TYPICAL_COLUMNS))
    csv_path, rows_path = typical_paths(run, variant)
    io.write_json(rows_path, {b.emotion: {"strategy": b.strategy, "rows": [int(r) for r in b.rows]}
                              for b in baselines})
    io.write_csv(csv_path, table)
    return table


def load_typical(run: RunFolder, variant: str = "t-emo") -> dict[str, TypicalBaseline]:
    """Stage 03's typical baselines of ``variant`` (emotion -> :class:`TypicalBaseline`).

    Reads typical.csv; a centroid's rows come from typical_rows.json beside it (a real video's
    row is the csv's ``sample``, so an older run without the json still loads).

    Raises:
        DataError: the csv is missing or malformed, or a centroid's rows are missing.
    """
    csv_path, rows_path = typical_paths(run, variant)
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: no typical videos (stage 03 writes them)")
    table = pd.read_csv(csv_path)
    if not {"emotion", "sample"} <= set(table.columns):
        raise DataError(f"{csv_path}: expected columns emotion, sample")
    stored: dict[str, Any] = {}
    if rows_path.is_file():
        try:
            stored = json.loads(rows_path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{rows_path}: not valid JSON ({exc})") from None
        if not isinstance(stored, dict):
            raise DataError(f"{rows_path}: expected {{emotion: {{strategy, rows}}}}")
    out = {}
    for _, row in table.iterrows():
        e = str(row["emotion"])
        strategy = str(row["strategy"]) if "strategy" in table.columns else "most_confident"
        score = float(row["score"]) if "score" in table.columns else float("nan")
        sample = -1 if pd.isna(row["sample"]) else int(row["sample"])
        if strategy == "centroid" or sample < 0:
            entry = stored.get(e)
            if not isinstance(entry, dict) or not entry.get("rows"):
                raise DataError(f"{rows_path}: no rows for the {strategy} baseline of {e}")
            rows = np.asarray(entry["rows"], dtype=np.int64)
        else:
            rows = np.array([sample], dtype=np.int64)
        out[e] = TypicalBaseline(e, strategy, rows, score)
    return out


def _fingerprint(params: Params, variant: str, extra: Mapping[str, Any]) -> str:
    """Cache key of one unit of stage 03: everything upstream that changes its numbers (the
    sections stage 03 depends on, ig settings but not ig.batch_size, which leaves the sums
    unchanged, and ``extra``: the emotion, the samples, the typical videos, the model's own key)."""
    import hashlib

    from emolib.config import STAGE_SECTIONS

    dumped = params.model_dump(mode="json")
    chosen = {k: dumped[k] for k in STAGE_SECTIONS["03_global_ig"]}
    chosen["ig"] = {k: v for k, v in chosen["ig"].items() if k != "batch_size"}
    chosen["_variant"] = variant
    chosen["_extra"] = extra
    return hashlib.sha256(json.dumps(chosen, sort_keys=True, default=str).encode()).hexdigest()[:16]


def attribution_path(run: RunFolder, emotion: str, variant: str = "t-emo") -> Path:
    """Where one emotion's masks live.

    Args:
        run: the RunFolder.
        emotion: the emotion.
        variant: ``t-emo`` or ``r-emo``.

    Returns:
        ``attributions/<emotion>.npz`` for T-EMO (the paper's), ``attributions/r-emo/<emotion>.npz``
        for R-EMO.
    """
    base = Path(run.attributions)
    return base / f"{emotion}.npz" if variant == "t-emo" else base / variant / f"{emotion}.npz"


def _results_name(name: str, variant: str) -> str:
    return name if variant == "t-emo" else name.replace(".csv", f"_{variant}.csv")


@dataclass
class GlobalImportance:
    """Stage 03's results (also on disk: see :func:`global_landmark_importance`).

    Attributes:
        variant: ``t-emo`` or ``r-emo``.
        typical: one row per emotion: emotion, sample, sequence, strategy, score (the table of
            ``attributions/typical.csv``; sample is -1 for a centroid).
        masks: emotion -> dict with per_baseline (5, L), baseline_emotions (5,), global (L,),
            landmark_ids (L,), n_samples, gaps (5, n), deltas (5, n), samples (n,).
        ranking: the landmark_ranking table (emotion, rank, landmark, importance, region).
        completeness: the completeness table.
        baselines: emotion -> its :class:`TypicalBaseline` (what IG starts from; see
            :func:`typical_inputs`).
    """

    variant: str
    typical: pd.DataFrame
    masks: dict[str, dict[str, np.ndarray]]
    ranking: pd.DataFrame
    completeness: pd.DataFrame
    computed: list[str] = field(default_factory=list)
    trained: dict[str, Any] = field(default_factory=dict, repr=False)
    explained: dict[str, np.ndarray] = field(default_factory=dict, repr=False)
    baselines: dict[str, TypicalBaseline] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if not self.baselines and len(self.typical):  # built from the table: real videos only
            for _, row in self.typical.iterrows():
                if int(row["sample"]) < 0:
                    raise EmolibError(f"typical baseline of {row['emotion']} is a centroid: pass its rows "
                                      f"as ``baselines`` (see load_typical)")
                self.baselines[str(row["emotion"])] = TypicalBaseline(
                    str(row["emotion"]), str(row.get("strategy", "most_confident")),
                    np.array([int(row["sample"])], dtype=np.int64), float(row.get("score", float("nan"))))

    @property
    def typical_of(self) -> dict[str, int]:
        """Emotion -> its typical sample (row of data/landmarks.npz; -1 for a centroid, which is
        no single video: use ``baselines``)."""
        return {e: b.sample for e, b in self.baselines.items()}

    def order(self, emotion: str) -> np.ndarray:
        """Landmark ids of ``emotion``, most important first."""
        rows = self.ranking[self.ranking["emotion"] == emotion].sort_values("rank")
        return rows["landmark"].to_numpy(dtype=int)


def _load_cached(path: Path, key: str) -> dict[str, np.ndarray] | None:
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as f:
            if "cache_key" not in f.files or str(f["cache_key"]) != key:
                return None
            return {k: f[k] for k in f.files}
    except Exception:  # unreadable: recompute (it is rewritten atomically)
        return None


def _default_training_api():
    from emolib import training

    return training


def global_landmark_importance(run: RunFolder, params: Params, data: LandmarkSet | None = None, *,
                               variant: str = "t-emo", emotions: Sequence[str] | None = None,
                               progress: bool = True, training_api: Any = None,
                               trained: Mapping[str, Any] | None = None) -> GlobalImportance:
    """The paper's global IG for every emotion on a run folder; writes and returns the results.

    Reads stage 02's 468-landmark models (``selection="all"``) of seed ``params.ig_seed``.
    Writes ``attributions/<emotion>.npz`` (per_baseline, baseline_emotions, global,
    landmark_ids, n_samples, plus gaps, deltas, samples and the cache key),
    ``attributions/typical.csv`` and ``attributions/typical_rows.json`` (each emotion's typical
    baseline, see :func:`write_typical`), ``results/landmark_ranking.csv`` and
    ``results/completeness.csv`` (R-EMO: ``attributions/r-emo/`` and ``*_r-emo.csv``).
    An emotion whose npz holds the same cache key (same parameters, same typical baselines) is
    not recomputed.

    The typical baseline of each emotion (``ig.typical``) is chosen among its training samples
    of seed ``ig_seed``: ``most_confident`` and ``medoid`` pick one of them, ``centroid`` takes
    the mean of their model inputs (under the explaining model: see :func:`typical_inputs`).

    Args:
        run: the RunFolder.
        params: the run's Params.
        data: the LandmarkSet (default: read ``data/landmarks.npz``).
        variant: ``t-emo`` (the paper's) or ``r-emo``.
        emotions: the emotions to explain (default: ``params.emotions``).
        progress: tqdm bars.
        training_api: the module providing ``load_trained``, ``model_inputs``, ``load_splits``
            and ``split_indices`` (default: :mod:`emolib.training`).
        trained: emotion -> an already loaded TrainedModel of this variant and seed (e.g. the
            ``trained`` of an earlier result), reused instead of loading it again; the compiled
            IG functions of a model are kept with it, so a reused model is not traced again.

    Returns:
        A :class:`GlobalImportance`.

    Raises:
        ParamsError: an unknown variant, emotion or ``ig.typical``.
        DataError: the landmark file, the splits or a model is missing, or an emotion has no
            training sample.
    """
    from emolib.landmarks import load_landmarks
    from emolib.regions import region_of

    if variant not in VARIANTS:
        raise ParamsError(f"variant {variant!r} is unknown; expected one of {list(VARIANTS)}")
    check_typical_strategy(params.ig.typical)
    all_emotions = list(params.emotions)
    emotions = list(emotions) if emotions is not None else all_emotions
    unknown = [e for e in emotions if e not in all_emotions]
    if unknown:
        raise ParamsError(f"emotion(s) {unknown} are not in params.emotions {all_emotions}")
    if len(all_emotions) < 2:
        raise ParamsError("global IG needs at least two emotions (the baselines are the other ones)")
    api = training_api or _default_training_api()
    if data is None:
        data = load_landmarks(run.landmarks)
    seed = params.ig_seed
    splits = api.load_splits(run)
    parts = api.split_indices(splits, seed)
    if "train" not in parts:
        raise DataError(f"{run.root}: the splits of seed {seed} have no 'train' part")
    train_idx = np.asarray(parts["train"], dtype=int)
    if len(train_idx) and (train_idx.max() >= len(data) or train_idx.min() < 0):
        raise DataError(f"{run.root}: the splits of seed {seed} refer to sample {train_idx.max()} but "
                        f"{run.landmarks} holds {len(data)} samples; rerun stage 02")
    per_emotion_train = {e: train_idx[data.emotion[train_idx] == e] for e in all_emotions}
    empty = [e for e, idx in per_emotion_train.items() if len(idx) == 0]
    if empty:
        raise DataError(f"{run.root}: seed {seed} has no training sample of {empty}")

    # Load every model up front: a missing model fails here, before the long work.
    given = dict(trained or {})
    trained = {e: given[e] if e in given else api.load_trained(run, variant, e, data.n_landmarks, "all", seed)
               for e in all_emotions}

    bs = params.ig.batch_size
    # Typical baseline of each emotion, among its own training samples (chosen and scored in its
    # own model's input space; each explaining model then sees it through its own scaling).
    baselines: dict[str, TypicalBaseline] = {}
    for e in all_emotions:
        idx = per_emotion_train[e]
        inputs = api.model_inputs(data.subset(idx), trained[e])
        probs = None
        if params.ig.typical == "most_confident":
            probs = model_outputs(trained[e].model, inputs, bs)[:, 1]
        baselines[e] = choose_typical(e, idx, inputs, params.ig.typical, probs)
    typical = write_typical(run, variant, list(baselines.values()), data)
    typical_keys = {e: b.key for e, b in baselines.items()}

    masks: dict[str, dict[str, np.ndarray]] = {}
    computed = []
    bar: Any = emotions
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(emotions, desc=f"global IG ({variant})", unit="emotion")
    for e in bar:
        others = [b for b in all_emotions if b != e]
        candidates = train_idx if params.ig.inputs == "all" else per_emotion_train[e]
        chosen = select_explained(candidates, params.ig.max_samples, seed, e)
        key = _fingerprint(params, variant, {"emotion": e, "typical": typical_keys,
                                             "samples": chosen.tolist(),
                                             "model": (getattr(trained[e], "record", None) or {}).get("key")})
        path = attribution_path(run, e, variant)
        cached = _load_cached(path, key)
        if cached is None:
            cached = _explain_emotion(trained[e], api, data, chosen, [baselines[b] for b in others],
                                      params, progress)
            cached.update(baseline_emotions=np.array(others), cache_key=np.array(key))
            io.write_npz(path, **cached)
            computed.append(e)
        masks[e] = {k: v for k, v in cached.items() if k != "cache_key"}

    ranking_rows, completeness_rows = [], []
    for e in emotions:
        m = masks[e]
        ids = m["landmark_ids"].astype(int)
        order = np.argsort(-m["global"], kind="stable")
        regions = region_of(ids[order])
        for rank, (pos, region) in enumerate(zip(order, regions), start=1):
            ranking_rows.append({"emotion": e, "rank": rank, "landmark": int(ids[pos]),
                                 "importance": float(m["global"][pos]), "region": str(region)})
        for j, b in enumerate(m["baseline_emotions"]):
            completeness_rows.append({
                "emotion": e, "baseline_emotion": str(b), "steps": params.ig.steps,
                "mean_abs_gap": float(np.mean(np.abs(m["gaps"][j]))),
                "max_abs_gap": float(np.max(np.abs(m["gaps"][j]))),
                "mean_abs_delta": float(np.mean(np.abs(m["deltas"][j])))})
    ranking = pd.DataFrame(ranking_rows)
    completeness = pd.DataFrame(completeness_rows)
    # Explaining some emotions only must not drop the others' rows from the shared tables.
    _upsert_emotion_rows(Path(run.results) / _results_name("landmark_ranking.csv", variant), ranking,
                         emotions, all_emotions, ["rank"])
    _upsert_emotion_rows(Path(run.results) / _results_name("completeness.csv", variant), completeness,
                         emotions, all_emotions, [])
    return GlobalImportance(variant, typical, masks, ranking, completeness, computed, trained,
                            {e: masks[e]["samples"].astype(int) for e in emotions}, baselines)


def _upsert_emotion_rows(path: Path, new: pd.DataFrame, emotions: Sequence[str], all_emotions: Sequence[str],
                         order: Sequence[str]) -> None:
    """Write ``new`` (rows of ``emotions``) into the table at ``path``, keeping the rows of the
    run's other emotions already there; rows of emotions no longer studied are dropped."""
    keep = pd.DataFrame(columns=new.columns)
    if path.is_file():
        try:
            old = pd.read_csv(path)
            if list(old.columns) == list(new.columns):
                keep = old[old["emotion"].isin(all_emotions) & ~old["emotion"].isin(emotions)]
        except (pd.errors.ParserError, pd.errors.EmptyDataError):
            pass  # unreadable: rewritten with this call's rows only
    table = pd.concat([keep, new], ignore_index=True) if len(keep) else new
    rank = {e: i for i, e in enumerate(all_emotions)}
    table = table.sort_values(["emotion", *order], key=lambda c: c.map(rank) if c.name == "emotion" else c,
                              kind="stable", ignore_index=True)
    io.write_csv(path, table)


def _explain_emotion(trained: Any, api: Any, data: LandmarkSet, samples: np.ndarray,
                     baselines: Sequence[TypicalBaseline], params: Params, progress: bool) -> dict[str, np.ndarray]:
    """IG of ``samples`` under one emotion's model against each typical baseline, in one batched
    call (inputs repeated once per baseline, each paired with its baseline)."""
    x = api.model_inputs(data.subset(samples), trained)
    bases = typical_inputs(baselines, data, trained, api)
    n, n_base = len(x), len(bases)
    inputs = np.concatenate([x] * n_base)
    baselines = np.repeat(bases, n, axis=0)
    res = integrated_gradients(trained.model, inputs, baselines, steps=params.ig.steps, target=1,
                               batch_size=params.ig.batch_size, rule=params.ig.rule, progress=progress,
                               engine=params.ig.engine)
    per_sample = landmark_mask(res.attributions).reshape(n_base, n, -1)
    per_baseline, global_mask = aggregate_masks(list(per_sample))
    return {
        "per_baseline": per_baseline,
        "global": global_mask,
        "landmark_ids": np.asarray(trained.landmark_ids, dtype=np.int64),
        "n_samples": np.array(n),
        "samples": np.asarray(samples, dtype=np.int64),
        "gaps": res.gaps.reshape(n_base, n),
        "deltas": res.deltas.reshape(n_base, n),
        "steps": np.array(params.ig.steps),
        "rule": np.array(params.ig.rule),
    }


def path_curves(result: GlobalImportance, data: LandmarkSet, steps: int = 50, training_api: Any = None
                ) -> dict[str, dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Figure 2 for every emotion e: e's model along the path from the typical video of each
    other emotion (alpha = 0) to e's own typical video (alpha = 1). With ``ig.typical:
    centroid`` both ends are centroids (mean inputs under e's model), not real videos.

    Args:
        result: stage 03's results (models and typical baselines).
        data: the landmark set.
        steps: points per curve minus one.
        training_api: as for :func:`global_landmark_importance`.

    Returns:
        emotion -> baseline emotion -> ``(alphas, probabilities)``.
    """
    api = training_api or _default_training_api()
    typical = result.baselines
    curves: dict[str, dict[str, tuple[np.ndarray, np.ndarray]]] = {}
    for e in result.masks:
        trained = result.trained[e]
        others = [str(b) for b in result.masks[e]["baseline_emotions"]]
        scaled = typical_inputs([typical[e]] + [typical[b] for b in others], data, trained, api)
        curves[e] = {b: alpha_curve(trained.model, scaled[0], scaled[j + 1], steps=steps)
                     for j, b in enumerate(others)}
    return curves


def completeness_study(result: GlobalImportance, data: LandmarkSet, params: Params, samples_per_emotion: int = 2,
                       factors: Sequence[float] = (0.25, 0.5, 1.0, 2.0), training_api: Any = None,
                       progress: bool = True, run: RunFolder | None = None) -> pd.DataFrame:
    """Completeness gaps at several m for a few explained samples of each emotion (all baselines).

    Args:
        result: stage 03's results (models, explained samples, typical baselines).
        data: the landmark set.
        params: the run's parameters (ig.steps, ig.rule, ig.batch_size).
        samples_per_emotion: how many of each emotion's explained samples (the first ones).
        factors: m = max(1, round(factor * ig.steps)) for each factor.
        training_api: as for :func:`global_landmark_importance`.
        progress: tqdm bar over the emotions.
        run: when given, each emotion's rows are cached in ``cache/ig/`` keyed by everything
            that changes them, and not recomputed on a re-run.

    Returns:
        One row per emotion and m: emotion, steps, mean_abs_gap, max_abs_gap, mean_abs_delta,
        relative_gap, pairs (sample x baseline pairs measured).
    """
    api = training_api or _default_training_api()
    steps_list = sorted({max(1, int(round(f * params.ig.steps))) for f in factors})
    typical = result.baselines
    tables = []
    emotions: Any = list(result.masks)
    if progress:
        from tqdm.auto import tqdm

        emotions = tqdm(emotions, desc="completeness against m", unit="emotion")
    for e in emotions:
        trained = result.trained[e]
        chosen = result.explained[e][:samples_per_emotion]
        others = [str(b) for b in result.masks[e]["baseline_emotions"]]
        cache = None
        if run is not None:
            key = _fingerprint(params, result.variant, {
                "what": "completeness_study", "emotion": e, "samples": [int(v) for v in chosen],
                "baselines": [typical[b].key for b in others], "steps": steps_list,
                "model": (getattr(trained, "record", None) or {}).get("key")})
            cache = Path(run.cache) / "ig" / f"completeness_{result.variant}_{e}_{key}.csv"
            if cache.is_file():
                try:
                    tables.append(pd.read_csv(cache))
                    continue
                except (pd.errors.ParserError, pd.errors.EmptyDataError):
                    pass  # unreadable: recompute and rewrite it
        x = api.model_inputs(data.subset(chosen), trained)
        bases = typical_inputs([typical[b] for b in others], data, trained, api)
        inputs = np.concatenate([x] * len(bases))
        baselines = np.repeat(bases, len(x), axis=0)
        table = completeness_by_steps(trained.model, inputs, baselines, steps_list, target=1,
                                      batch_size=params.ig.batch_size, rule=params.ig.rule,
                                      engine=params.ig.engine)
        table = table.assign(emotion=e, pairs=len(inputs))
        if cache is not None:
            io.write_csv(cache, table)
        tables.append(table)
    out = pd.concat(tables, ignore_index=True)
    return out[["emotion", "steps", "mean_abs_gap", "max_abs_gap", "mean_abs_delta", "relative_gap", "pairs"]]


def top_landmarks_table(ranking: pd.DataFrame, n: int = 10) -> pd.DataFrame:
    """The ``n`` most important landmarks of each emotion.

    Args:
        ranking: the landmark_ranking table.
        n: how many ranks.

    Returns:
        Index rank, one column per emotion, cells "id (region)".
    """
    top = ranking[ranking["rank"] <= n].assign(
        cell=lambda t: t["landmark"].astype(str) + " (" + t["region"].astype(str) + ")")
    return top.pivot(index="rank", columns="emotion", values="cell")


def region_importance_table(masks: Mapping[str, Mapping[str, np.ndarray]], how: str = "mean") -> pd.DataFrame:
    """Importance per facial region.

    Args:
        masks: emotion -> its stored masks (``global`` and ``landmark_ids`` are used).
        how: ``mean`` or ``sum`` of the region's landmarks.

    Returns:
        Index emotions, columns the regions of :mod:`emolib.regions`.
    """
    from emolib.regions import importance_by_region

    rows = {e: importance_by_region(m["global"], m["landmark_ids"], how=how) for e, m in masks.items()}
    return pd.DataFrame.from_dict(rows, orient="index")


def choices_table(params: Params, variant: str = "t-emo") -> pd.DataFrame:
    """The open choices of the global IG procedure, with this run's values (for the notebook).

    Args:
        params: the run's parameters.
        variant: the explained variant.

    Returns:
        Columns question, parameter, this run, paper.
    """
    ig = params.ig
    rows = [
        ("which models are explained", "variant, ig.seed", f"{variant.upper()}, all-landmark models of seed "
         f"{params.ig_seed}", "T-EMO (the fully trained network)"),
        ("which samples IG explains", "ig.inputs", ig.inputs, "training samples (of emotion e)"),
        ("cap on explained samples", "ig.max_samples", "none" if ig.max_samples is None else ig.max_samples,
         "none (the whole training set)"),
        ("what a typical video is", "ig.typical", f"{ig.typical} ({TYPICAL_DESCRIPTIONS.get(ig.typical, '?')})",
         "left open"),
        ("steps m of equation (2)", "ig.steps", ig.steps, "left open"),
        ("quadrature", "ig.rule", ig.rule, "right Riemann sum, alphas k/m, k = 1..m"),
        ("F, the explained output", "(fixed)", "probability of class 1 (the emotion)", "the binary classifier"),
        ("input space of IG", "data.normalize, data.reference",
         f"model inputs ({params.data.normalize}, reference "
         f"{getattr(params.data, 'reference', 'none')}), baselines too", "raw landmarks"),
        ("interpolated samples per model call", "ig.batch_size", ig.batch_size, "(speed only)"),
        ("how the integral is computed", "ig.engine", ig.engine,
         "(speed only: structured = exact rewrite for this architecture, equal to generic up to rounding)"),
    ]
    return pd.DataFrame(rows, columns=["question", "parameter", "this run", "paper"])


def check_global_importance(run: RunFolder, params: Params, variant: str = "t-emo",
                            emotions: Sequence[str] | None = None) -> None:
    """Check what stage 03 wrote: every file present, shapes, no NaN, rankings complete.

    Args:
        run: the RunFolder.
        params: the run's parameters.
        variant: ``t-emo`` or ``r-emo``.
        emotions: the emotions to check (default: all of ``params.emotions``).

    Raises:
        EmolibError: naming the file and what is wrong.
    """
    emotions = list(emotions) if emotions is not None else list(params.emotions)
    suffix = "" if variant == "t-emo" else f"_{variant}"
    n_base = len(params.emotions) - 1
    n_lm = None
    for e in emotions:
        path = attribution_path(run, e, variant)
        if not path.is_file():
            raise EmolibError(f"{path}: missing")
        m = load_masks(run, e, variant)
        for key in ("per_baseline", "baseline_emotions", "global", "landmark_ids", "n_samples"):
            if key not in m:
                raise EmolibError(f"{path}: no array {key!r}")
        n_lm = len(m["landmark_ids"])
        if m["per_baseline"].shape != (n_base, n_lm) or m["global"].shape != (n_lm,):
            raise EmolibError(f"{path}: per_baseline {m['per_baseline'].shape} / global {m['global'].shape}; "
                              f"expected ({n_base}, {n_lm}) / ({n_lm},)")
        if sorted(m["baseline_emotions"].tolist()) != sorted(x for x in params.emotions if x != e):
            raise EmolibError(f"{path}: baselines {m['baseline_emotions'].tolist()} are not the other emotions")
        for key in ("per_baseline", "global", "gaps", "deltas"):
            if key in m and not np.isfinite(m[key]).all():
                raise EmolibError(f"{path}: {key} holds NaN or infinite values")
        if (m["per_baseline"] < 0).any() or int(m["n_samples"]) < 1:
            raise EmolibError(f"{path}: negative masks or no explained sample")
        if not np.allclose(m["global"], m["per_baseline"].mean(axis=0)):
            raise EmolibError(f"{path}: global is not the mean of the per-baseline masks")
    ranking = pd.read_csv(Path(run.results) / _results_name("landmark_ranking.csv", variant))
    for e in emotions:
        rows = ranking[ranking["emotion"] == e]
        if sorted(rows["rank"]) != list(range(1, n_lm + 1)) or rows["landmark"].nunique() != n_lm:
            raise EmolibError(f"landmark_ranking{suffix}.csv: the ranking of {e} is not a permutation "
                              f"of its {n_lm} landmarks")
        if not rows.sort_values("rank")["importance"].is_monotonic_decreasing:
            raise EmolibError(f"landmark_ranking{suffix}.csv: importance of {e} does not decrease with rank")
        if rows["region"].isna().any():
            raise EmolibError(f"landmark_ranking{suffix}.csv: {e} has landmarks without a region")
    comp = pd.read_csv(Path(run.results) / _results_name("completeness.csv", variant))
    if len(comp[comp["emotion"].isin(emotions)]) != len(emotions) * n_base:
        raise EmolibError(f"completeness{suffix}.csv: expected {len(emotions) * n_base} rows")
    if not np.isfinite(comp[["mean_abs_gap", "max_abs_gap", "mean_abs_delta"]].to_numpy()).all():
        raise EmolibError(f"completeness{suffix}.csv: holds NaN")
    typical = pd.read_csv(Path(run.attributions) / f"typical{suffix}.csv")
    if sorted(typical["emotion"]) != sorted(params.emotions):
        raise EmolibError(f"typical{suffix}.csv: expected one typical video per emotion")
    if list(typical.columns) != list(TYPICAL_COLUMNS):
        raise EmolibError(f"typical{suffix}.csv: columns {list(typical.columns)}; expected {list(TYPICAL_COLUMNS)}")
    if set(typical["strategy"]) != {params.ig.typical}:
        raise EmolibError(f"typical{suffix}.csv: strategy {sorted(set(typical['strategy']))} is not this run's "
                          f"ig.typical {params.ig.typical!r}")
    try:
        baselines = load_typical(run, variant)
    except DataError as exc:
        raise EmolibError(str(exc)) from None
    for e, b in baselines.items():
        if len(b.rows) == 0 or int(np.min(b.rows)) < 0:
            raise EmolibError(f"typical{suffix}.csv: the baseline of {e} has no valid rows")


def variant_available(run: RunFolder, params: Params, variant: str, training_api: Any = None) -> bool:
    """Whether stage 02 left the full-landmark models of ``variant`` (seed ``ig_seed``) for every
    emotion, so that the variant can be explained.

    Args:
        run: the RunFolder.
        params: the run's parameters.
        variant: ``t-emo`` or ``r-emo``.
        training_api: as for :func:`global_landmark_importance`.

    Returns:
        True when every model file exists.
    """
    api = training_api or _default_training_api()
    model_path = getattr(api, "model_path", None)
    if model_path is None:
        return False
    from emolib.landmarks import load_landmarks

    n_lm = load_landmarks(run.landmarks).n_landmarks
    return all(Path(model_path(run, variant, e, n_lm, "all", params.ig_seed)).is_file() for e in params.emotions)


def compare_rankings(a: GlobalImportance, b: GlobalImportance, top: int = 64) -> pd.DataFrame:
    """How alike two global importances are (T-EMO against R-EMO, say), per emotion.

    Args:
        a, b: two results over the same landmarks.
        top: the size of the top sets compared.

    Returns:
        emotion, spearman (rank correlation of the global masks), top_overlap (landmarks the two
        top-``top`` sets share) and chance_overlap (expected for two random sets).
    """
    from scipy.stats import spearmanr

    rows = []
    for e in a.masks:
        if e not in b.masks:
            continue
        ma, mb = a.masks[e], b.masks[e]
        if not np.array_equal(ma["landmark_ids"], mb["landmark_ids"]):
            raise EmolibError(f"{e}: the two results rank different landmark sets")
        n_lm = len(ma["landmark_ids"])
        k = min(top, n_lm)
        shared = len(set(a.order(e)[:k].tolist()) & set(b.order(e)[:k].tolist()))
        rows.append({"emotion": e, "spearman": float(spearmanr(ma["global"], mb["global"]).statistic),
                     f"top{top}_overlap": shared, "chance_overlap": k * k / n_lm})
    return pd.DataFrame(rows)


def load_ranking(run: RunFolder, variant: str = "t-emo") -> dict[str, np.ndarray]:
    """Stage 03's ranking for stage 04: emotion -> landmark ids, most important first.

    Args:
        run: the RunFolder.
        variant: ``t-emo`` (the paper's ranking, the default) or ``r-emo``.

    Returns:
        emotion -> (L,) int array of landmark ids, most important first.

    Raises:
        DataError: ``results/landmark_ranking.csv`` is missing or malformed (run stage 03).
    """
    path = Path(run.results) / _results_name("landmark_ranking.csv", variant)
    if not path.is_file():
        raise DataError(f"{path}: no landmark ranking; run stage 03 (03_global_ig) first")
    table = pd.read_csv(path)
    missing = {"emotion", "rank", "landmark"} - set(table.columns)
    if missing:
        raise DataError(f"{path}: missing column(s) {sorted(missing)}")
    out = {}
    for e, rows in table.groupby("emotion", sort=False):
        out[str(e)] = rows.sort_values("rank")["landmark"].to_numpy(dtype=int)
    return out


def load_masks(run: RunFolder, emotion: str, variant: str = "t-emo") -> dict[str, np.ndarray]:
    """One emotion's stored attribution masks (the npz written by stage 03).

    Args:
        run: the RunFolder.
        emotion: the emotion.
        variant: ``t-emo`` or ``r-emo``.

    Returns:
        name -> array: per_baseline, baseline_emotions, global, landmark_ids, n_samples, samples,
        gaps, deltas, steps, rule, cache_key.

    Raises:
        DataError: the file is missing.
    """
    path = attribution_path(run, emotion, variant)
    if not path.is_file():
        raise DataError(f"{path}: no attributions for {emotion}; run stage 03 (03_global_ig) first")
    with np.load(path, allow_pickle=False) as f:
        return {k: f[k] for k in f.files}


# ================================================================================================
# Summaries shown by the notebook
# ================================================================================================

def baseline_agreement(per_baseline: np.ndarray) -> np.ndarray:
    """Spearman rank correlation between the per-baseline masks.

    Args:
        per_baseline: (B, L) one mask per baseline.

    Returns:
        (B, B) correlation matrix.
    """
    from scipy.stats import spearmanr

    per_baseline = np.asarray(per_baseline, dtype=np.float64)
    if per_baseline.shape[0] < 2:
        return np.ones((per_baseline.shape[0],) * 2)
    rho = spearmanr(per_baseline, axis=1).statistic
    return np.atleast_2d(np.asarray(rho, dtype=np.float64))


def agreement_table(masks: Mapping[str, Mapping[str, np.ndarray]]) -> pd.DataFrame:
    """Per emotion: mean, min and max Spearman correlation over the pairs of baselines.

    Args:
        masks: emotion -> its stored masks (``per_baseline`` is used).

    Returns:
        Columns emotion, mean_spearman, min_spearman, max_spearman.
    """
    rows = []
    for e, m in masks.items():
        rho = baseline_agreement(m["per_baseline"])
        off = rho[~np.eye(len(rho), dtype=bool)]
        rows.append({"emotion": e, "mean_spearman": float(off.mean()), "min_spearman": float(off.min()),
                     "max_spearman": float(off.max())})
    return pd.DataFrame(rows)


def load_ground_truth(run: RunFolder) -> dict[str, np.ndarray] | None:
    """The landmarks each emotion really moves, where the data knows them.

    Args:
        run: the RunFolder.

    Returns:
        emotion -> planted landmark ids from ``data/ground_truth.json`` (demo and synthetic
        data), or None when the run has no such file (real data).

    Raises:
        DataError: the file exists but does not have the expected form.
    """
    path = Path(run.data) / "ground_truth.json"
    if not path.is_file():
        return None
    try:
        raw = json.loads(path.read_text())
        return {str(e): np.asarray(ids, dtype=int) for e, ids in raw["landmarks"].items()}
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise DataError(f"{path}: not a ground-truth file of the form "
                        f"{{\"landmarks\": {{emotion: [ids]}}}} ({exc})") from None


EYE_CORNERS = (33, 263)  # MediaPipe's outer eye corners: their distance is the demo's face unit


def displacement_ranking(data: LandmarkSet, emotions: Sequence[str]) -> dict[str, np.ndarray]:
    """A model-free reference ranking: each emotion's landmarks by how far they move on average,
    |mean over its samples of (last frame - first frame)|, in face units (the first frame's
    outer-eye-corner distance; raw units when those landmarks are not in the data).

    It says what the measured landmarks themselves show. On the demo it is the fair yardstick for
    :func:`planted_recovery`: FaceMesh measures only part of the motion the generator planted and
    spreads some of it to landmarks the program leaves still, so even this ranking misses many
    planted landmarks. Unlike IG it ignores what tells the emotions apart.

    Args:
        data: the landmark set (frames must be in time order; first and last frame are used).
        emotions: the emotions to rank; one with no samples is left out.

    Returns:
        emotion -> landmark ids, most displaced first.
    """
    X = np.asarray(data.X, dtype=np.float64)
    ids = np.asarray(data.landmark_ids, dtype=int)
    scale = np.ones(len(X))
    where = {int(i): pos for pos, i in enumerate(ids)}
    if all(c in where for c in EYE_CORNERS):
        a, b = (where[c] for c in EYE_CORNERS)
        scale = np.linalg.norm(X[:, 0, :, a] - X[:, 0, :, b], axis=1)
        scale[scale <= 0] = 1.0
    moved = (X[:, -1] - X[:, 0]) / scale[:, None, None]        # (N, 2, L)
    out = {}
    for e in emotions:
        rows = np.asarray(data.emotion) == e
        if rows.any():
            out[e] = rank_landmarks(np.linalg.norm(moved[rows].mean(axis=0), axis=0), ids)
    return out


def planted_recovery(ranking: Mapping[str, np.ndarray], ground_truth: Mapping[str, np.ndarray],
                     n_landmarks: int | None = None, top: int = 64,
                     reference: Mapping[str, np.ndarray] | None = None) -> pd.DataFrame:
    """How many of the landmarks each emotion really moves the ranking puts at its top.

    Args:
        ranking: emotion -> landmark ids, most important first.
        ground_truth: emotion -> the planted (really moved) landmark ids.
        n_landmarks: how many landmarks were ranked (default: the ranking's length).
        top: the second cut-off (the first is the planted count itself).
        reference: emotion -> another ranking scored the same way (e.g.
            :func:`displacement_ranking`), for the columns ``reference_hits_top_planted`` and
            ``reference_recall``.

    Returns:
        One row per emotion present in both: planted, hits_top_planted (hits in the top
        |planted|), chance_top_planted (expected hits of a random ranking, |planted|^2 / L),
        hits_top<top>, chance_top<top> (top * |planted| / L), recall_top_planted, and the
        reference's columns when given.
    """
    rows = []
    for e, order in ranking.items():
        if e not in ground_truth:
            continue
        order = np.asarray(order, dtype=int)
        planted = set(np.asarray(ground_truth[e], dtype=int).tolist()) & set(order.tolist())
        n_lm = n_landmarks or len(order)
        k = len(planted)
        if k == 0:
            continue
        hits_k = len(planted & set(order[:k].tolist()))
        hits_top = len(planted & set(order[:top].tolist()))
        row = {"emotion": e, "planted": k, "hits_top_planted": hits_k,
               "chance_top_planted": k * k / n_lm, f"hits_top{top}": hits_top,
               f"chance_top{top}": min(top, n_lm) * k / n_lm,
               "recall_top_planted": hits_k / k}
        if reference is not None and e in reference:
            ref = np.asarray(reference[e], dtype=int)
            ref = ref[np.isin(ref, order)]  # the same landmarks as the ranking scored
            ref_hits = len(planted & set(ref[:k].tolist()))
            row.update(reference_hits_top_planted=ref_hits, reference_recall=ref_hits / k)
        rows.append(row)
    return pd.DataFrame(rows)
