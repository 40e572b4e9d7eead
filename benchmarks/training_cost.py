"""What the paper's protocol costs: time per epoch of T-EMO and R-EMO at the paper's sizes, on this
machine, and the whole CK+ protocol (params/ckplus.yaml) estimated from those measured times.

    .venv/bin/python benchmarks/training_cost.py [--samples 1000] [--epochs-per-model 100]

Measures ``model.fit`` epochs on random inputs of the CK+ shape (about 1000 training samples
after flip augmentation, P = 10 frames) with the paper's largest hyperparameters (F=50, Q=68,
R=74), for K in 468..16. The estimate multiplies by the number of models the protocol trains.
"""
from __future__ import annotations

import argparse
import time

import numpy as np

import emolib  # noqa: F401  (selects tf-keras before TensorFlow is imported)
from emolib.config import load_params
from emolib.models import build_model, count_params


def seconds_per_epoch(variant: str, k: int, samples: int, frames: int, hyper, repeats: int = 2) -> float:
    model = build_model(variant, frames, k, *hyper, seed=0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(samples, frames, 2, k, 1)).astype(np.float32)
    y = rng.integers(0, 2, size=samples)
    model.fit(x, y, batch_size=16, epochs=1, verbose=0)  # warm-up: tracing
    start = time.perf_counter()
    model.fit(x, y, batch_size=16, epochs=repeats, verbose=0)
    per_epoch = (time.perf_counter() - start) / repeats
    params, trainable = count_params(model)
    print(f"  {variant:6s} K={k:3d}: {per_epoch:6.2f} s/epoch  ({trainable:,} of {params:,} weights trained)")
    return per_epoch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--samples", type=int, default=1000, help="training samples per model (CK+ with flips: ~1000)")
    ap.add_argument("--epochs-per-model", type=int, default=100, help="assumed epochs before early stopping")
    ap.add_argument("--params", default="params/ckplus.yaml")
    args = ap.parse_args()
    p = load_params(args.params)
    hyper = (50, 68, 74)
    ks = [468, *p.pruning.k]
    print(f"seconds per epoch, {args.samples} samples, P={p.frames}, F,Q,R={hyper}, batch 16:")
    per_epoch = {(v, k): seconds_per_epoch(v, k, args.samples, p.frames, hyper) for v in ("t-emo", "r-emo") for k in ks}
    n_e, n_s = len(p.emotions), len(p.seeds)
    selections = 2 if p.pruning.random_control else 1
    grid = len(p.grid.filters) * len(p.grid.lstm_units) * len(p.grid.fc_units)
    total = without_grid = 0.0
    for k in ks:
        sel = 1 if k == 468 else selections
        per_k = sum(per_epoch[(v, k)] for v in ("t-emo", "r-emo")) * n_e * n_s * sel
        without_grid += per_k * args.epochs_per_model
        if p.grid.enabled and (k == 468 or p.pruning.grid_search):
            per_k += per_epoch[("t-emo", k)] * n_e * grid * sel
        total += per_k * args.epochs_per_model
    models = n_e * n_s * 2 * (1 + selections * len(p.pruning.k))
    print(f"\n{args.params}: {models} models + grid searches ({grid} configurations per emotion and K), "
          f"{args.epochs_per_model} epochs each")
    print(f"estimated training time on this machine: {total / 3600:.1f} hours "
          f"({without_grid / 3600:.1f} hours of it without the grid searches)")


if __name__ == "__main__":
    main()
