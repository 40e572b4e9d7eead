"""The structured IG engine: exact and cheap Integrated Gradients for emolib's Conv2D + LSTM models.

Along the straight path from x' to x, the convolution's pre-activation is linear in alpha,
``c0 + alpha * c1``, so each ReLU unit switches at most once, and BatchNorm (inference) and the
LSTM's input projection are affine. The input projection at every alpha is then the projection
of the units that are always on (one matrix product per frame) plus, for the units that switch,
a sum over the alpha at which they switch (one sparse product); the gradient flows back the same
way (prefix sums of the per-alpha gradients, gathered at each unit's switching alpha) and through
the convolution once. Only the small LSTM recurrence and the dense head run once per alpha. The
result equals the generic engine's (:mod:`emolib.ig.engine`) up to float rounding. On a CPU the
binning runs in fused numba kernels (:mod:`emolib.ig._kernels`); on a GPU, as TensorFlow ops
(:func:`structured_backend`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, get_args

import numpy as np

from emolib.errors import ParamsError
from emolib.ig._cache import compiled
from emolib.vocab import IgEngine

ENGINES: tuple[str, ...] = get_args(IgEngine)


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
    return _recurrence(z, target, plan.cell.recurrent_kernel, _head_weights(plan), _recurrence_spec(plan))


def _head_weights(plan: _ConvLstmPlan) -> list:
    """The head's weights in order (each dense layer's kernel, then its bias); dropout layers
    are the identity at inference and hold none."""
    import tf_keras as keras

    weights = []
    for layer in plan.head:
        if isinstance(layer, keras.layers.Dense):
            weights += [layer.kernel] + ([layer.bias] if layer.use_bias else [])
    return weights


def _recurrence_spec(plan: _ConvLstmPlan) -> tuple:
    """What the recurrence and the head compute, apart from their weights' values: the frames,
    the LSTM's units and activations, each dense layer's activation, bias and kernel shape. Two
    models with the same spec share one compiled recurrence (:func:`_shared_recurrence`)."""
    import tf_keras as keras

    cell = plan.cell
    head = tuple((layer.activation, bool(layer.use_bias), tuple(int(d) for d in layer.kernel.shape))
                 for layer in plan.head if isinstance(layer, keras.layers.Dense))
    return (plan.frames, int(cell.units), cell.recurrent_activation, cell.activation, head)


def _recurrence(z: Any, target: Any, recurrent_kernel: Any, head_weights: list, spec: tuple) -> Any:
    """The recurrence and head of :func:`_recurrence_gradient` with the weights as arguments:
    the ops Keras' LSTM cell (implementation 2, from its input projection on) and Dense layers
    run, in their order, so the result is theirs to the bit."""
    import tensorflow as tf

    frames, units, recurrent_activation, activation, head = spec
    with tf.GradientTape() as tape:
        tape.watch(z)
        h = tf.zeros((tf.shape(z)[0], units))
        c = tf.zeros((tf.shape(z)[0], units))
        for p in range(frames):
            gates = z[:, p] + tf.matmul(h, recurrent_kernel)
            i, f, g, o = tf.split(gates, 4, axis=1)
            c = recurrent_activation(f) * c + recurrent_activation(i) * activation(g)
            h = recurrent_activation(o) * activation(c)
        out, at = h, 0
        for dense_activation, use_bias, _ in head:
            out = tf.matmul(a=out, b=head_weights[at])
            at += 1
            if use_bias:
                out = tf.nn.bias_add(out, head_weights[at])
                at += 1
            out = dense_activation(out)
        prob = tf.gather(out, target, axis=-1)
    return tape.gradient(prob, z)


# Compiled recurrences by spec (weights are arguments): every model of one architecture, whatever
# its weights, reuses one trace (tracing costs a second or more per model on a small CPU, more
# than explaining a demo model).
_SHARED_RECURRENCE: dict[tuple, Callable] = {}


def _shared_recurrence(plan: _ConvLstmPlan) -> Callable:
    """(z, target, recurrent_kernel, *head_weights) -> dF/dz, compiled once per spec."""
    import tensorflow as tf

    spec = _recurrence_spec(plan)
    if spec not in _SHARED_RECURRENCE:
        frames, units, _, _, head = spec
        weight_specs = [tf.TensorSpec((units, 4 * units), tf.float32)]
        for _, use_bias, shape in head:
            weight_specs.append(tf.TensorSpec(shape, tf.float32))
            if use_bias:
                weight_specs.append(tf.TensorSpec((shape[1],), tf.float32))

        @tf.function(input_signature=[tf.TensorSpec((None, frames, 4 * units), tf.float32),
                                      tf.TensorSpec((), tf.int32), *weight_specs])
        def recurrence_grad(z, target, recurrent_kernel, *head_weights):
            return _recurrence(z, target, recurrent_kernel, list(head_weights), spec)

        _SHARED_RECURRENCE[spec] = recurrence_grad
    return _SHARED_RECURRENCE[spec]


def _host_structured_fn(plan: _ConvLstmPlan) -> Callable:
    """The structured engine with its binning in numba kernels (:mod:`emolib.ig._kernels`);
    only the recurrence and the head run in TensorFlow, in a function compiled once per
    architecture (:func:`_shared_recurrence`) that takes the model's weights as arguments."""
    from emolib.ig._kernels import HostStructured

    shared = _shared_recurrence(plan)

    def recurrence_grad(z, target):
        weights = [plan.cell.recurrent_kernel] + _head_weights(plan)
        return shared(z, target, *weights)

    return HostStructured(plan, recurrence_grad)


def _structured_fn(plan: _ConvLstmPlan, sample_shape: tuple[int, ...]) -> Callable:
    """The structured engine for one model, compiled (cached per model by :func:`emolib.ig._cache.compiled`):
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
        grad_z = tf.reshape(_recurrence_gradient(plan, z, target), (n_samples, n, frames, -1))
        grad_z = grad_z * weights[None, :, None, None]
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


def engine_plan(model: Any, engine: str, sample_shape: tuple[int, ...]) -> _ConvLstmPlan | None:
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
    from emolib.ig import _kernels as _ig_kernels

    if asked == "numba" and not _ig_kernels.AVAILABLE:
        raise ParamsError("EMOLIB_IG_BACKEND=numba, but numba is not installed")
    if asked != "auto":
        return asked
    if not _ig_kernels.AVAILABLE:
        return "tensorflow"
    import tensorflow as tf

    return "tensorflow" if tf.config.list_physical_devices("GPU") else "numba"


def structured_sums(model: Any, x: np.ndarray, b: np.ndarray, alphas: np.ndarray,
                     weights: np.ndarray, target_t: Any, chunk: int, progress: bool) -> tuple[np.ndarray, int]:
    """The structured engine over chunks of ``chunk // len(alphas)`` samples (at least one)."""
    import tensorflow as tf

    if np.any(np.diff(alphas) <= 0):  # pragma: no cover - every rule gives ascending nodes
        raise RuntimeError("the structured engine needs ascending alphas")
    if structured_backend() == "numba":   # numpy arrays in and out
        fn = compiled(model, ("structured-host",), lambda: _host_structured_fn(_conv_lstm_plan(model))).bind()
        alphas32, weights32 = np.asarray(alphas, np.float32), np.asarray(weights, np.float32)

        def run(xc: np.ndarray, x0: np.ndarray) -> np.ndarray:
            return fn(xc, x0, alphas32, weights32, target_t)
    else:
        shape = tuple(x.shape[1:])
        fn = compiled(model, ("structured", shape), lambda: _structured_fn(_conv_lstm_plan(model), shape))
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

