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


def _blocks(counter: np.ndarray, key: np.ndarray) -> np.ndarray:
    """Philox4x32-10 of 128-bit counters (given as uint64 low halves; high halves 0), each with
    its key (uint64, one per counter)."""
    c0 = counter & _MASK32
    c1 = counter >> np.uint64(32)
    c2 = np.zeros_like(counter)
    c3 = np.zeros_like(counter)
    k0, k1 = key & _MASK32, (key >> np.uint64(32)) & _MASK32
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
    draws, states = many_uniform_draws([state], [sizes])
    return draws[0], states[0]


def many_uniform_draws(states: list[tuple[int, int, int]], sizes: list[list[int]]):
    """:func:`uniform_draws` for several generators at once (one vectorised Philox call).

    Returns:
        (per generator, its list of draws; per generator, its state after the draws).
    """
    counters, keys, spans, after = [], [], [], []
    for state, sz in zip(states, sizes):
        lo, hi, key = (int(v) & 0xFFFFFFFFFFFFFFFF for v in state)
        c = lo
        mine = []
        for n in sz:
            blocks = (int(n) + 3) // 4
            counters.append(np.arange(c, c + blocks, dtype=np.uint64))
            keys.append(np.full(blocks, key, np.uint64))
            mine.append((blocks, int(n)))
            c += RESERVED_PER_VALUE * int(n)
        if hi or c >= 2 ** 64:
            raise RuntimeError("Philox counter beyond 64 bits: not reproduced here")
        spans.append(mine)
        after.append((c, hi, key))
    if not counters:
        return [[] for _ in states], after
    bits = _blocks(np.concatenate(counters), np.concatenate(keys))
    floats = ((bits & np.uint32(0x7FFFFF)) | np.uint32(0x3F800000)).view(np.float32) - np.float32(1.0)
    out, at = [], 0
    for mine in spans:
        draws = []
        for blocks, n in mine:
            draws.append(floats[at:at + blocks].reshape(-1)[:n])
            at += blocks
        out.append(draws)
    return out, after
