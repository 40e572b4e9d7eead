"""Training speed: the model bank against one model at a time, and the paper's protocol's cost.

    .venv/bin/python benchmarks/training.py             # about 10 minutes on 2 CPU cores
    .venv/bin/python benchmarks/training.py --quick     # a smaller run (a few minutes)

Measured side by side in one run, in one process:

(a) units trained per second, the bank (emolib.training.bank.train_bank) against one at a time
    (emolib.training.fit.fit_model, the traced single-model loop), at the demo's sizes (F, Q, R =
    8, 16, 16; P = 10; 96 training and 12 validation samples per unit, as demo stage 02's
    subject split gives: `n_train`, `n_val` in a demo run's results/training.csv) for K = 16, 64
    and 468; and the same bank on the numba engine (EMOLIB_BANK_BACKEND=numba, fused CPU
    kernels). All run the same fixed number of epochs (patience larger than the epochs: no early
    stop, so both do the same work). Targets: 5x at
    K = 16 and 64, 1.3x at K = 468.
(b) the paper-sized model (F, Q, R = 50, 68, 74; K = 468; 470 training samples, batch 16): the
    bank's seconds per epoch per unit against the time of its dominant floating-point work, the
    LSTM's input projection and the convolution as matrix products, forward and backward (3x the
    forward's multiply-adds), at the float32 GEMM speed measured in the same process (target: at
    least 0.8 of that roofline);
(c) the CK+ protocol of params/ckplus.yaml (10 seeds, 6 emotions, T-EMO and R-EMO, K = 468 and
    five smaller K with a random control, grid searches of 64 configurations at every K), in
    hours on this machine from (b)'s measured bank throughput per K, with about 470 training
    samples per model (309 labelled CK+ sequences without contempt, flipped, less the test and
    validation parts) and an assumed number of epochs per model (--epochs-per-model).
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np

import emolib  # noqa: F401  (selects tf-keras before TensorFlow is imported)
from emolib.config import load_params
from emolib.models import configure_tensorflow
from emolib.training.bank import BankJob, train_bank
from emolib.training.fit import POOL, fit_model

FRAMES = 10
DEMO_TRAIN, DEMO_VAL = 96, 12  # a demo unit's parts (results/training.csv: n_train, n_val)


def _jobs(n_units: int, k: int, n_train: int, n_val: int, seed0: int = 0) -> list[BankJob]:
    rng = np.random.default_rng(seed0)
    jobs = []
    for u in range(n_units):
        n_t = n_train - (u % 3)  # parts of slightly different sizes, as seeds' partitions are
        x = rng.normal(size=(n_t + n_val, FRAMES, 2, k, 1)).astype(np.float32)
        y = (rng.random(n_t + n_val) < 1 / 6).astype(np.int32)
        jobs.append(BankJob(x[:n_t], y[:n_t], x[n_t:], y[n_t:], seed=seed0 + u))
    return jobs


def _params(epochs: int):
    return load_params("params/demo.yaml", overrides=[f"train.epochs={epochs}", f"train.patience={epochs + 1}"])


def units_per_second(k: int, n_units: int, n_single: int, epochs: int) -> tuple[float, float, float]:
    params = _params(epochs)
    hyper = (params.model.filters, params.model.lstm_units, params.model.fc_units)
    jobs = _jobs(n_units, k, DEMO_TRAIN, DEMO_VAL)
    # warm-up (traces) for both
    train_bank(jobs[:2], variant="t-emo", frames=FRAMES, n_landmarks=k, hyper=hyper, params=_params(1))
    trainer = POOL.get("t-emo", FRAMES, k, hyper, params)
    start = time.perf_counter()
    for j in jobs[:n_single]:
        fit_model(trainer, j.x_train, j.y_train, j.x_val, j.y_val, seed=j.seed, params=params)
    single = n_single / (time.perf_counter() - start)
    start = time.perf_counter()
    train_bank(jobs, variant="t-emo", frames=FRAMES, n_landmarks=k, hyper=hyper, params=params)
    bank = n_units / (time.perf_counter() - start)
    # The same bank on the numba engine (EMOLIB_BANK_BACKEND=numba), compiled first.
    os.environ["EMOLIB_BANK_BACKEND"] = "numba"
    try:
        train_bank(jobs[:2], variant="t-emo", frames=FRAMES, n_landmarks=k, hyper=hyper, params=_params(1))
        start = time.perf_counter()
        train_bank(jobs, variant="t-emo", frames=FRAMES, n_landmarks=k, hyper=hyper, params=params)
        fused = n_units / (time.perf_counter() - start)
    finally:
        os.environ.pop("EMOLIB_BANK_BACKEND")
    return single, bank, fused


def gemm_flops(n: int = 2048, repeats: int = 5) -> float:
    import tensorflow as tf

    a = tf.random.normal((n, n))
    b = tf.random.normal((n, n))
    tf.matmul(a, b).numpy()
    start = time.perf_counter()
    for _ in range(repeats):
        tf.matmul(a, b).numpy()
    return 2 * n ** 3 * repeats / (time.perf_counter() - start)


def paper_epoch(n_units: int, n_train: int, epochs: int, k: int = 468,
                hyper: tuple[int, int, int] = (50, 68, 74)) -> tuple[float, float]:
    """(seconds per epoch per unit in a bank, multiply-adds of one epoch's dominant work)."""
    params = _params(epochs)
    jobs = _jobs(n_units, k, n_train, 40)
    train_bank(jobs[:1], variant="t-emo", frames=FRAMES, n_landmarks=k, hyper=hyper, params=_params(1))
    start = time.perf_counter()
    train_bank(jobs, variant="t-emo", frames=FRAMES, n_landmarks=k, hyper=hyper, params=params)
    per_epoch = (time.perf_counter() - start) / (n_units * epochs)
    f, q, _ = hyper
    wo = k - 2
    macs_per_sample = FRAMES * (wo * f * q * 4 + wo * 6 * f)  # LSTM input projection + convolution
    return per_epoch, 3 * macs_per_sample * n_train  # forward + two backward products


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="fewer units and epochs")
    ap.add_argument("--epochs-per-model", type=int, default=100,
                    help="(c): assumed epochs per model before early stopping")
    args = ap.parse_args()
    configure_tensorflow(0)
    units, single_units, epochs = (24, 4, 5) if args.quick else (60, 6, 10)
    print(f"(a) units per second, demo sizes (F,Q,R = 8,16,16; P={FRAMES}; {DEMO_TRAIN} train / {DEMO_VAL} val "
          "samples; "
          f"{epochs} epochs each; bank of {units}, {single_units} alone), {os.cpu_count()} CPU cores:")
    ratios = {}
    for k in (16, 64, 468):
        single, bank, fused = units_per_second(k, units, single_units, epochs)
        ratios[k] = bank / single
        target = 1.3 if k == 468 else 5.0
        print(f"    K={k:3d}: one at a time {single:6.2f}/s, bank {bank:6.2f}/s: {bank / single:5.1f}x "
              f"(target {target}x: {'met' if bank / single >= target else 'NOT met'}); the numba engine's bank "
              f"{fused:6.2f}/s: {fused / single:5.1f}x")

    flops = gemm_flops()
    n_units_b, epochs_b = (2, 1) if args.quick else (4, 2)
    per_epoch, macs = paper_epoch(n_units_b, 470, epochs_b)
    roofline = 2 * macs / flops
    print(f"\n(b) paper-sized model (F,Q,R = 50,68,74; K=468; 470 samples; bank of {n_units_b}): "
          f"{per_epoch:.2f} s per epoch per unit;\n    its LSTM input projection and convolution, forward and "
          f"backward, take {roofline:.2f} s at the measured GEMM speed ({flops / 1e9:.0f} GFLOP/s): "
          f"{roofline / per_epoch:.2f} of the roofline (target 0.8: "
          f"{'met' if roofline / per_epoch >= 0.8 else 'NOT met'})")

    p = load_params("params/ckplus.yaml")
    ks = [468, *p.pruning.k]
    grid = len(p.grid.filters) * len(p.grid.lstm_units) * len(p.grid.fc_units)
    n_e, n_s = len(p.emotions), len(p.seeds)
    sel = 2 if p.pruning.random_control else 1
    total = 0.0
    for k in ks:
        # The work of an epoch scales with K (the LSTM's input width); (b) measured K=468.
        sec = per_epoch * (k - 2) / 466
        n_models = 2 * n_e * n_s * (1 if k == 468 else sel)
        n_grid = n_e * grid * (1 if k == 468 else sel) if (k == 468 or p.pruning.grid_search) else 0
        total += (n_models + n_grid) * sec * args.epochs_per_model
    print(f"\n(c) params/ckplus.yaml on this machine: about {total / 3600:,.0f} hours "
          f"({args.epochs_per_model} epochs per model, 470 training samples, the bank's measured time per "
          f"epoch scaled by K; the paper-sized model F,Q,R = 50,68,74 for every model, an upper bound)")


if __name__ == "__main__":
    main()
