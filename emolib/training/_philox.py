"""TensorFlow's Philox4x32-10 stream in NumPy: the dropout masks of a stateful ``tf.random.Generator``.

A tf-keras Dropout layer with ``rng_type="stateful"`` draws its mask with ``generator.uniform``.
The model bank (:mod:`emolib.training.bank`) needs the masks that each unit's own generator
would have drawn, for many units at once; drawing them one TensorFlow call per unit and step
costs more than the bank's step itself at small sizes, so they are computed here, vectorised,
from the generator's state (verified against TensorFlow in ``tests/training/test_bank.py``).

The rules, read off TensorFlow 2.19's CPU kernels: the state is (counter low, counter high,
key) as three int64; a draw of ``n`` float32 values takes value ``i`` from lane ``i % 4`` of the
Philox block at counter ``c + i // 4`` and then advances the counter by ``256 * n``; a uint32
becomes a float in [0, 1) by filling a float's 23 mantissa bits and subtracting 1.
"""
from __future__ import annotations

import numpy as np

_M0, _M1 = np.uint64(0xD2511F53), np.uint64(0xCD9E8D57)
_W0, _W1 = np.uint64(0x9E3779B9), np.uint64(0xBB67AE85)
_MASK32 = np.uint64(0xFFFFFFFF)
# Counters a stateful draw advances per value (TensorFlow's kReservedSamplesPerOutput).
RESERVED_PER_VALUE = 256


def _blocks(counter: np.ndarray, key: np.uint64) -> np.ndarray:
    """Philox4x32-10 of 128-bit counters (given as uint64 low halves; high halves 0)."""
    c0 = counter & _MASK32
    c1 = counter >> np.uint64(32)
    c2 = np.zeros_like(counter)
    c3 = np.zeros_like(counter)
    k0, k1 = np.uint64(int(key) & 0xFFFFFFFF), np.uint64(int(key) >> 32 & 0xFFFFFFFF)
    for r in range(10):
        p0 = _M0 * c0
        p1 = _M1 * c2
        hi0, lo0 = p0 >> np.uint64(32), p0 & _MASK32
        hi1, lo1 = p1 >> np.uint64(32), p1 & _MASK32
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        if r < 9:
            k0 = (k0 + _W0) & _MASK32
            k1 = (k1 + _W1) & _MASK32
    return np.stack([c0, c1, c2, c3], axis=-1).astype(np.uint32)


def uniform_draws(state: tuple[int, int, int], sizes: list[int]) -> tuple[list[np.ndarray], tuple[int, int, int]]:
    """The float32 values of consecutive ``generator.uniform`` draws of the given sizes.

    Args:
        state: the generator's state (counter low, counter high, key), as ``generator.state``.
        sizes: number of values of each draw, in order.

    Returns:
        (one float32 array per draw, the state after the draws).
    """
    lo, hi, key = (int(v) & 0xFFFFFFFFFFFFFFFF for v in state)
    if hi:
        raise RuntimeError("Philox counter beyond 64 bits: not reproduced here")
    starts, c = [], lo
    for n in sizes:
        starts.append(c)
        c += RESERVED_PER_VALUE * int(n)
    if c >= 2 ** 64:
        raise RuntimeError("Philox counter beyond 64 bits: not reproduced here")
    n_blocks = [(int(n) + 3) // 4 for n in sizes]
    counters = np.concatenate([np.arange(s, s + b, dtype=np.uint64) for s, b in zip(starts, n_blocks)]) \
        if sizes else np.zeros(0, np.uint64)
    bits = _blocks(counters, np.uint64(key))
    floats = ((bits & np.uint32(0x7FFFFF)) | np.uint32(0x3F800000)).view(np.float32) - np.float32(1.0)
    out, at = [], 0
    for n, b in zip(sizes, n_blocks):
        out.append(floats[at:at + b].reshape(-1)[:n])
        at += b
    return out, (c, hi, key)
