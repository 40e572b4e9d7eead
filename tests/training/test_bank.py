"""The model bank (emolib.training.bank) gives the models that training one at a time gives.

Reference: :func:`emolib.training.fit.fit_model`, tf-keras' own layers and Adam in a traced loop.
Tolerance: the bank computes the same arithmetic in another order (the LSTM's input projection
over all frames at once, BatchNorm folded into it, batched products), so float32 rounding
differs from the first step on (about 1e-7 relative). Adam divides each gradient by its running
RMS, which turns rounding in near-zero gradients into differences of up to a step size, so
after a few epochs at a learning rate of 0.01 the weights differ by up to about 1e-3 of each
weight's largest entry (measured: at most 2e-4 after 12 epochs on these data). The bound used is
5e-3 of each weight's largest entry; stopping epochs, best epochs and the frozen convolution
must be exactly equal.
"""
from __future__ import annotations

import numpy as np
import pytest

import emolib  # noqa: F401  (selects tf-keras before TensorFlow loads)
from emolib.config import parse_params
from emolib.models import configure_tensorflow, initial_weights
from emolib.training import bank
from emolib.training._philox import uniform_draws
from emolib.training.fit import POOL, fit_model

configure_tensorflow(threads=1)

FRAMES, K, HYPER = 4, 12, (3, 4, 4)
RTOL = 5e-3


def params(**train):
    raw = {"name": "bank", "frames": FRAMES, "emotions": ["anger", "happiness"], "seeds": [0],
           "train": {"epochs": 12, "patience": 2, "learning_rate": 0.01, "threads": 1, **train},
           "model": {"filters": HYPER[0], "lstm_units": HYPER[1], "fc_units": HYPER[2], "dropout": 0.3}}
    return parse_params(raw, "<test>")


def jobs(sizes=((40, 10), (33, 7), (50, 12)), seed=0) -> list[bank.BankJob]:
    """Units with different seeds and part sizes (so the bank pads); the second one is noise
    only, so it stops early while the others learn."""
    rng = np.random.default_rng(seed)
    out = []
    for i, (n, nv) in enumerate(sizes):
        x = rng.normal(size=(n + nv, FRAMES, 2, K, 1)).astype(np.float32)
        y = (rng.random(n + nv) < 0.4).astype(np.int32)
        if i != 1:
            x[y == 1, 2:, 1, :3] += 1.5
        out.append(bank.BankJob(x[:n], y[:n], x[n:], y[n:], seed=3 * i + 1))
    return out


def test_philox_reproduces_tensorflows_generator():
    import tensorflow as tf

    for seed in (0, 7, 2 ** 31 - 1):
        gen = tf.random.Generator.from_seed(seed, alg=tf.random.Algorithm.AUTO_SELECT)
        state = tuple(int(v) for v in gen.state.numpy())
        sizes = [64, 12, 37, 1, 250]
        want = [gen.uniform((n,)).numpy() for n in sizes]
        got, after = uniform_draws(state, sizes)
        assert all(np.array_equal(a, b) for a, b in zip(got, want))
        assert after == tuple(int(v) for v in gen.state.numpy())


@pytest.mark.parametrize("variant", ["t-emo", "r-emo"])
def test_bank_equals_units_trained_alone(variant):
    p = params()
    units = jobs()
    done_at = {}
    fits = bank.train_bank(units, variant=variant, frames=FRAMES, n_landmarks=K, hyper=HYPER, params=p,
                           on_done=lambda i, fit: done_at.setdefault(i, len(done_at)))
    epochs = []
    for job, got in zip(units, fits):
        trainer = POOL.get(variant, FRAMES, K, HYPER, p)
        want = fit_model(trainer, job.x_train, job.y_train, job.x_val, job.y_val, seed=job.seed, params=p)
        assert got.epochs == want.epochs and got.best_epoch == want.best_epoch
        for a, b in zip(got.weights, trainer.model.get_weights()):
            assert a.shape == b.shape
            np.testing.assert_allclose(a, b, rtol=0, atol=RTOL * max(np.abs(b).max(), 1e-6))
        np.testing.assert_allclose(got.history.to_numpy(), want.history.to_numpy(), rtol=1e-3, atol=1e-4)
        epochs.append(got.epochs)
        if variant == "r-emo":
            start = initial_weights(trainer.model, job.seed)
            assert np.array_equal(got.weights[0], start[0]) and np.array_equal(got.weights[1], start[1])
        else:
            assert not np.array_equal(got.weights[0], initial_weights(trainer.model, job.seed)[0])
    # One unit stopped early while the others trained on, and it was handed back first.
    assert min(epochs) < max(epochs)
    assert done_at[int(np.argmin(epochs))] == 0


def test_a_unit_in_a_bank_is_within_rounding_of_the_unit_alone():
    """Which other units share a bank changes a unit's last bits only."""
    p = params()
    units = jobs(((40, 10), (33, 7), (50, 12), (21, 5), (45, 11)), seed=1)
    together = bank.train_bank(units, variant="t-emo", frames=FRAMES, n_landmarks=K, hyper=HYPER, params=p)
    for i in (0, 3):
        alone = bank.train_bank([units[i]], variant="t-emo", frames=FRAMES, n_landmarks=K, hyper=HYPER,
                                params=p)[0]
        assert alone.epochs == together[i].epochs and alone.best_epoch == together[i].best_epoch
        for a, b in zip(together[i].weights, alone.weights):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * max(np.abs(b).max(), 1e-6))


def test_time_is_shared_out_among_the_units():
    p = params(epochs=3, patience=5)
    fits = bank.train_bank(jobs(), variant="t-emo", frames=FRAMES, n_landmarks=K, hyper=HYPER, params=p)
    assert all(f.seconds > 0 and f.epochs == 3 for f in fits)
    # Units with more training batches get a larger share of each epoch.
    assert fits[2].seconds > fits[1].seconds


def test_bank_size_from_a_memory_budget():
    p = params()
    small = bank.Architecture.of("t-emo", 10, 16, (8, 16, 16), p)
    large = bank.Architecture.of("t-emo", 10, 468, (50, 68, 74), p)
    assert bank.unit_bytes(large, 470, 50) > 50 * bank.unit_bytes(small, 170, 30)
    assert bank.bank_size(7, small, 170, 30) == 7
    auto_small, auto_large = bank.bank_size("auto", small, 170, 30), bank.bank_size("auto", large, 470, 50)
    assert 1 <= auto_large < auto_small <= bank.MAX_AUTO_BANK
    assert auto_large * bank.unit_bytes(large, 470, 50) <= bank.AUTO_BUDGET_BYTES


@pytest.mark.parametrize("variant", ["t-emo", "r-emo"])
def test_the_numba_engine_trains_the_same_units_as_the_tensorflow_bank(variant, monkeypatch):
    """EMOLIB_BANK_BACKEND=numba (fused CPU kernels) against the default TensorFlow bank: the same
    stopping and best epochs, the frozen convolution untouched, weights within float32 rounding
    grown by Adam over 12 epochs (measured: at most 1e-5 of each weight's largest entry; the
    bound is 1e-4), and the learning curves to 1e-5."""
    from emolib.training import _bank_kernels

    if not _bank_kernels.AVAILABLE:
        pytest.skip("numba is not installed")
    p = params()
    units = jobs()
    fits = {}
    for engine in ("numba", "tensorflow"):
        monkeypatch.setenv("EMOLIB_BANK_BACKEND", engine)
        assert bank.backend() == engine
        fits[engine] = bank.train_bank(units, variant=variant, frames=FRAMES, n_landmarks=K, hyper=HYPER, params=p)
    for got, want in zip(fits["numba"], fits["tensorflow"]):
        assert got.epochs == want.epochs and got.best_epoch == want.best_epoch
        for a, b in zip(got.weights, want.weights):
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-4 * max(np.abs(b).max(), 1e-6))
        np.testing.assert_allclose(got.history.to_numpy(), want.history.to_numpy(), rtol=0, atol=1e-5)
        if variant == "r-emo":
            assert np.array_equal(got.weights[0], want.weights[0])
    assert len({f.epochs for f in fits["numba"]}) > 1  # one unit stopped early in both engines


def test_an_unknown_bank_engine_is_refused(monkeypatch):
    from emolib.errors import ParamsError

    monkeypatch.setenv("EMOLIB_BANK_BACKEND", "cuda")
    with pytest.raises(ParamsError, match="EMOLIB_BANK_BACKEND"):
        bank.backend()
    monkeypatch.delenv("EMOLIB_BANK_BACKEND")
    assert bank.backend() == "tensorflow"
