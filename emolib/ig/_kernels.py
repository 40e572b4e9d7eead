"""The structured IG engine's binning, as fused CPU kernels (numba).

The structured engine (see :mod:`emolib.ig.structured`) needs, for every (sample, frame) row and
every convolution unit ``u`` with pre-activation ``c0 + alpha * c1``, the range of alphas at
which the unit is on, and then

- forward: the LSTM's input projection at every alpha, ``z_k = sum over units on at alpha_k of
  (c0 + alpha_k c1) * W_u`` (``W_u``: the unit's row of the BatchNorm-folded input kernel);
- backward: each unit's gradient, ``W_u . sum over alphas it is on at of dF/dz_k``.

A unit's on-range is a prefix or a suffix of the ascending alphas, so both are a scatter into
"bins" (one per switching index) followed by prefix sums. Written with TensorFlow ops, that
scatter and its gather materialise one 4Q-wide row per unit and pass (the memory traffic is what
costs); here each unit is one fused multiply-add into a bin that stays in cache, and each
gradient one dot product. The TensorFlow version remains for GPUs, where it is launch-bound
rather than traffic-bound, and where numba is missing.

One kernel classifies the units (:func:`_codes`); the forward and the backward both read its
codes, so they agree on every unit. The convolution (:func:`_convolve`) and its transpose (the
end of :func:`_backward`) run here too, so only the recurrence and the head go to TensorFlow.
The rule is the TensorFlow version's: a unit is on where
``c0 + alpha * c1 > 0`` (at an exact tie float rounding may decide either way, as it may in any
engine).
"""
from __future__ import annotations

import functools
from typing import Any

import numpy as np

try:  # pragma: no branch
    import numba
except ImportError:  # pragma: no cover - numba is a dependency; the TensorFlow path remains
    numba = None

AVAILABLE = numba is not None

_FASTMATH = {"reassoc"}  # lets the bin updates and dot products vectorise. Not "contract": with
# it a freshly compiled kernel and the same kernel loaded from numba's cache round differently
# (measured), and a run must not depend on whether the cache was warm.


if AVAILABLE:
    @numba.njit(cache=True, parallel=True)
    def _codes(c0, c1, alphas, lut, scale):
        """Each unit's on-range, (rows, U) int32: -1 never on; j in 0..n: rising, on at
        alphas[j:]; n + 1 + j: falling, on at alphas[:j]. A unit is on where c0 + alpha c1 > 0.

        ``lut[t]`` counts the alphas below ``alphas[0] + t / scale``: a first guess of the
        position of tau = -c0 / c1 among the alphas, corrected by a step or two."""
        rows, units = c0.shape
        n = alphas.shape[0]
        first, last = alphas[0], alphas[n - 1]
        n_lut = lut.shape[0]
        code = np.empty((rows, units), dtype=np.int32)
        for r in numba.prange(rows):
            for u in range(units):
                a = c0[r, u]
                s = c1[r, u]
                # the sign test at the path's first and last alpha settles most units
                on_first = a + first * s > 0.0
                on_last = a + last * s > 0.0
                if on_first == on_last:
                    code[r, u] = 0 if on_first else -1
                    continue
                tau = -a / s   # inside the alphas: s is not 0
                t = min(n_lut - 1, max(0, int((tau - first) * scale)))
                j = lut[t]
                if on_last:  # rising, on where alpha > tau: j = the number of alphas <= tau
                    while j > 0 and alphas[j - 1] > tau:
                        j -= 1
                    while j < n and alphas[j] <= tau:
                        j += 1
                    code[r, u] = j if j < n else -1
                else:  # falling, on where alpha < tau: j = the number of alphas < tau
                    while j > 0 and alphas[j - 1] >= tau:
                        j -= 1
                    while j < n and alphas[j] < tau:
                        j += 1
                    code[r, u] = n + 1 + j if j > 0 else -1
        return code

    @numba.njit(cache=True, parallel=True, fastmath=_FASTMATH)
    def _forward(code, c0, c1, alphas, kernel, z_const, frames, block):
        """z: (N, n, P, G), the input projection at every alpha (BatchNorm folded in), laid out
        as the recurrence takes it; row r of c0 / c1 is sample r // P, frame r % P.

        Rows go in blocks of ``block`` so that each kernel row, read once per block, serves all
        the block's rows while their bins stay in cache."""
        rows, units = c0.shape
        n = alphas.shape[0]
        g_width = kernel.shape[1]
        z = np.empty((rows // frames, n, frames, g_width), dtype=np.float32)
        n_blocks = (rows + block - 1) // block
        for b in numba.prange(n_blocks):
            r0 = b * block
            nb = min(rows, r0 + block) - r0
            # bins_*[row, direction, index, :]: a collects c0 * W_u, s collects c1 * W_u
            bins_a = np.zeros((nb, 2, n + 1, g_width), dtype=np.float32)
            bins_s = np.zeros((nb, 2, n + 1, g_width), dtype=np.float32)
            for u in range(units):
                for i in range(nb):
                    c = code[r0 + i, u]
                    if c < 0:
                        continue
                    d = c // (n + 1)
                    j = c - d * (n + 1)
                    a = c0[r0 + i, u]
                    s = c1[r0 + i, u]
                    for g in range(g_width):
                        w = kernel[u, g]
                        bins_a[i, d, j, g] += a * w
                        bins_s[i, d, j, g] += s * w
            for i in range(nb):
                for bins in (bins_a, bins_s):
                    # rising units: on from their index on (running sum upward);
                    # falling ones: on below their index (running sum downward, exclusive)
                    for k in range(1, n):
                        for g in range(g_width):
                            bins[i, 0, k, g] += bins[i, 0, k - 1, g]
                    for k in range(n - 1, -1, -1):
                        for g in range(g_width):
                            bins[i, 1, k, g] += bins[i, 1, k + 1, g]
                sample, frame = (r0 + i) // frames, (r0 + i) % frames
                for k in range(n):
                    alpha = alphas[k]
                    for g in range(g_width):
                        z[sample, k, frame, g] = (z_const[g] + bins_a[i, 0, k, g] + bins_a[i, 1, k + 1, g]
                                                  + alpha * (bins_s[i, 0, k, g] + bins_s[i, 1, k + 1, g]))
        return z

    @numba.njit(cache=True, parallel=True, fastmath=_FASTMATH)
    def _convolve(v, conv_kernel, bias):
        """The convolution's pre-activation, (rows, W * F) in Flatten's order (width-major,
        filters minor), of v (rows, 2, L) under conv_kernel (2, width, F)."""
        rows, landmarks = v.shape[0], v.shape[2]
        width, filters = conv_kernel.shape[1], conv_kernel.shape[2]
        n_fields = landmarks - width + 1
        out = np.empty((rows, n_fields * filters), dtype=np.float32)
        for r in numba.prange(rows):
            for w in range(n_fields):
                base = w * filters
                for f in range(filters):
                    out[r, base + f] = bias[f]
                for a in range(2):
                    for b in range(width):
                        value = v[r, a, w + b]
                        for f in range(filters):
                            out[r, base + f] += value * conv_kernel[a, b, f]
        return out

    @numba.njit(cache=True, parallel=True, fastmath=_FASTMATH)
    def _backward(code, kernel, grad_z, weights, conv_kernel, landmarks, block):
        """(rows, 2, L): dF/dx summed over the weighted alphas, each unit's gradient (summed over
        the alphas it is on at; ``code`` from :func:`_codes`, ``grad_z`` (N, n, P, G) as the
        recurrence gives it) sent back through the convolution (conv_kernel (2, width, F))."""
        rows, units = code.shape
        n, frames = grad_z.shape[1], grad_z.shape[2]
        g_width = kernel.shape[1]
        width, filters = conv_kernel.shape[1], conv_kernel.shape[2]
        out = np.zeros((rows, 2, landmarks), dtype=np.float32)
        n_blocks = (rows + block - 1) // block
        for b in numba.prange(n_blocks):
            r0 = b * block
            nb = min(rows, r0 + block) - r0
            # sums[row, 0, j] = sum_{k >= j} (rising units), sums[row, 1, j] = sum_{k < j}
            # (falling ones); both summed directly (a total minus a prefix would cancel)
            sums = np.zeros((nb, 2, n + 1, g_width), dtype=np.float32)
            unit_grad = np.zeros((nb, units), dtype=np.float32)
            for i in range(nb):
                sample, frame = (r0 + i) // frames, (r0 + i) % frames
                for k in range(n - 1, -1, -1):
                    w = weights[k]
                    for g in range(g_width):
                        sums[i, 0, k, g] = sums[i, 0, k + 1, g] + w * grad_z[sample, k, frame, g]
                for k in range(n):
                    w = weights[k]
                    for g in range(g_width):
                        sums[i, 1, k + 1, g] = sums[i, 1, k, g] + w * grad_z[sample, k, frame, g]
            for u in range(units):
                for i in range(nb):
                    c = code[r0 + i, u]
                    if c < 0:
                        continue
                    d = c // (n + 1)
                    j = c - d * (n + 1)
                    acc = np.float32(0.0)
                    for g in range(g_width):
                        acc += kernel[u, g] * sums[i, d, j, g]
                    unit_grad[i, u] = acc
            # back through the (linear) convolution: each receptive field gets its kernel's share
            for i in range(nb):
                for field in range(units // filters):
                    base = field * filters
                    for row in range(2):
                        for col in range(width):
                            acc = np.float32(0.0)
                            for f in range(filters):
                                acc += unit_grad[i, base + f] * conv_kernel[row, col, f]
                            out[r0 + i, row, field + col] += acc
        return out


def _block(n_alphas: int, width: int) -> int:
    """Rows per block: their forward bins (2 x 2 x (n + 1) x G floats each) within ~1 MiB."""
    per_row = 16 * (n_alphas + 1) * width
    return int(max(1, min(16, (1 << 20) // per_row)))


def _lookup(alphas: np.ndarray) -> tuple[np.ndarray, float]:
    """(lut, scale) for :func:`_codes`: 8 buckets per alpha, evenly over [alphas[0], alphas[-1]]."""
    n_lut = 8 * len(alphas)
    span = float(alphas[-1]) - float(alphas[0])
    scale = n_lut / span if span > 0 else 0.0
    starts = float(alphas[0]) + np.arange(n_lut) / scale if span > 0 else np.full(n_lut, float(alphas[0]))
    return np.searchsorted(alphas.astype(np.float64), starts, side="left").astype(np.int32), scale


def fold_batchnorm(plan: Any) -> tuple[np.ndarray, np.ndarray]:
    """BatchNorm (inference) per filter, s * relu + t, folded into the LSTM's input kernel:
    (kernel (U, 4Q), constant (4Q,)), float32, U = width * filters in Flatten's order
    (width-major, filters minor); from the model's variables as they are now."""
    norm, cell = plan.norm, plan.cell
    gamma, beta = norm.gamma.numpy(), norm.beta.numpy()
    mean, var = norm.moving_mean.numpy(), norm.moving_variance.numpy()
    scale = gamma / np.sqrt(var + norm.epsilon)
    shift = beta - mean * scale
    lstm_kernel = cell.kernel.numpy()
    reps = lstm_kernel.shape[0] // scale.shape[0]
    kernel = np.ascontiguousarray(lstm_kernel * np.tile(scale, reps)[:, None], dtype=np.float32)
    return kernel, (np.tile(shift, reps) @ lstm_kernel + cell.bias.numpy()).astype(np.float32)


class HostStructured:
    """The structured engine for one model with the binning on the CPU (numba); the LSTM
    recurrence and head run in TensorFlow (``recurrence_grad``)."""

    def __init__(self, plan: Any, recurrence_grad: Any) -> None:
        self.plan, self.recurrence_grad = plan, recurrence_grad

    def bind(self) -> Any:
        """The engine with the model's weights as they are now: read once per IG call, not once
        per model (a model's weights may change between calls, by more training or set_weights).
        Returns a function (x, x', alphas, weights, target) -> sum_k weight_k * dF/dx at
        x' + alpha_k (x - x'), shaped like x, for a chunk of samples."""
        conv = self.plan.conv
        conv_kernel = np.ascontiguousarray(conv.kernel.numpy()[:, :, 0, :], dtype=np.float32)  # (2, width, F)
        conv_bias = conv.bias.numpy().astype(np.float32)
        return functools.partial(self._run, conv_kernel, conv_bias, *fold_batchnorm(self.plan))

    def _run(self, conv_kernel: np.ndarray, conv_bias: np.ndarray, kernel: np.ndarray, z_const: np.ndarray,
             x: np.ndarray, x0: np.ndarray, alphas: np.ndarray, weights: np.ndarray, target: Any) -> np.ndarray:
        import tensorflow as tf

        frames, landmarks = self.plan.frames, self.plan.landmarks
        n_samples, n = x.shape[0], len(alphas)
        rows = n_samples * frames
        d = (x - x0).reshape(rows, 2, landmarks)
        c0 = _convolve(np.ascontiguousarray(x0.reshape(rows, 2, landmarks)), conv_kernel, conv_bias)
        c1 = _convolve(d, conv_kernel, np.zeros_like(conv_bias))              # (rows, W * F)
        alphas32 = np.ascontiguousarray(alphas, dtype=np.float32)
        block = _block(n, kernel.shape[1])
        code = _codes(c0, c1, alphas32, *_lookup(alphas32))
        z = _forward(code, c0, c1, alphas32, kernel, z_const, frames, block)
        grad_z = self.recurrence_grad(tf.constant(z.reshape(n_samples * n, frames, -1)), target).numpy()
        grad = _backward(code, kernel, grad_z.reshape(z.shape), np.ascontiguousarray(weights, dtype=np.float32),
                         conv_kernel, landmarks, block)
        return grad.reshape(x.shape)
