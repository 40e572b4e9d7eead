"""Integrated Gradients (paper, equation 2): the engine, on any tf-keras model and plain arrays.

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
fused numba kernels (:mod:`emolib.ig._kernels`); as TensorFlow ops it would move one 4Q-wide row
per unit through memory and cost about three times as much. On a GPU the TensorFlow ops are
used (:func:`emolib.ig.structured.structured_backend`).

Nothing here knows the run folder, the parameters file or the stages: inputs, baselines and
models in, attributions out.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from emolib.errors import DataError, ParamsError
from emolib.ig._cache import compiled
from emolib.ig.quadrature import quadrature
from emolib.ig.structured import engine_plan, structured_sums


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


def call_model(model: Any, batch):
    """Call a Keras model in inference mode (BatchNorm statistics, no dropout); any other
    callable (a plain TensorFlow function, say) as it is."""
    import tf_keras as keras

    if isinstance(model, keras.layers.Layer):
        return model(batch, training=False)
    return model(batch)


def _gradients_fn(model: Any, chunk: int, sample_shape: tuple[int, ...]) -> Callable:
    """The generic engine's compiled chunk: interpolate, differentiate, weight, sum per sample."""
    import tensorflow as tf

    rows = (chunk,) + sample_shape
    ones = (-1,) + (1,) * len(sample_shape)

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
            prob = tf.gather(call_model(model, path), target, axis=-1)
        # Padding rows repeat the last real row (same sample, same alpha) with weight 0, so
        # their gradient is finite whenever the real ones are and the product adds nothing.
        # The weighting and the within-chunk sums stay in float32 (one pass over the chunk's
        # gradients: a float64 copy would cost a tenth of a small model's time); the running
        # sum over chunks is float64 on the host.
        weighted = tape.gradient(prob, path) * tf.reshape(weight, ones)
        return tf.math.unsorted_segment_sum(weighted, segment, n_segments)

    return gradients


def _outputs_fn(model: Any, sample_shape: tuple[int, ...]) -> Callable:
    """Forward passes are cheap next to the gradients: any batch size, one trace per model."""
    import tensorflow as tf

    @tf.function(input_signature=[tf.TensorSpec((None,) + sample_shape, tf.float32)])
    def outputs(batch):
        return call_model(model, batch)

    return outputs


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
    out = np.asarray(call_model(model, sample[None]))
    if out.ndim != 2:
        raise ValueError(f"the model must return (batch, classes) probabilities, got shape {out.shape}")
    return int(out.shape[-1])


def _check_target(model: Any, target: Any, sample: np.ndarray) -> int:
    n_out = _n_outputs(model, sample)
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)) or not 0 <= target < n_out:
        raise ParamsError(f"target {target!r} is not a class of this model: it has {n_out} outputs "
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
    shape = tuple(x.shape[1:])
    fn = compiled(model, ("outputs", 0, shape), lambda: _outputs_fn(model, shape))
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
        ParamsError: ``target`` is not an output column of the model, an unknown rule or engine,
            steps / batch_size below 1, or ``structured``
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
    if engine_plan(model, engine, sample_shape) is not None:
        sums, calls = structured_sums(model, x, b, alphas, weights, target_t, chunk, progress)
        return _finish(model, x, b, sums, target, batch_size, steps, rule, calls)

    fn = compiled(model, ("gradients", chunk, sample_shape),
                  lambda: _gradients_fn(model, chunk, sample_shape))
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

