"""The Ray backend against the local one: stage 02's units per second, and Ray's cost per task.

    .venv/bin/python benchmarks/ray_backend.py                      # starts a Ray with 2 CPUs in this process
    .venv/bin/python benchmarks/ray_backend.py --address 127.0.0.1:6379   # a cluster `ray start --head` runs
    .venv/bin/python benchmarks/ray_backend.py --quick              # fewer seeds and epochs

Needs ``pip install 'emolib[ray]'``. Measured side by side in one run, in one process (the driver):

(a) stage 02 (:func:`emolib.training.train_models`: the grid search and both variants) at the
    demo's sizes (params/demo.yaml: 6 emotions, its seeds, F, Q, R = 8, 16, 16 and a grid of two,
    P = 10, K = 468, about 170 training and 30 validation samples per unit from a subject split
    of a synthetic set shaped like the demo's), a fixed number of epochs (patience larger than
    the epochs, so both backends do the same work), each into a fresh run folder: units per
    second on the local backend and on Ray with two workers (each task 1 CPU), first cold (a
    fresh process's tracing; on Ray, the workers' TensorFlow import too) and then warm; the
    ratio Ray / local (target: at least 0.9). The models of both are checked equal, bit for bit.
(b) Ray's overhead per task in milliseconds: the round trip of a task that does nothing (one at a
    time, and many in flight), and of one that returns a bank's worth of weights (the result
    of a bank of 60 demo units at K = 468, about 60 MB) against its size.
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

import emolib  # noqa: F401  (selects tf-keras before TensorFlow is imported)
from emolib.config import load_params
from emolib.landmarks import LandmarkSet
from emolib.run_folder import RunFolder
from emolib.training import train_models

REPO = Path(__file__).resolve().parents[1]


def demo_like_data(subjects: int = 12, per_emotion: int = 2, frames: int = 10, seed: int = 0) -> LandmarkSet:
    """Random landmarks shaped like the demo's landmark file (flipped copies included)."""
    rng = np.random.default_rng(seed)
    emotions = ("anger", "disgust", "fear", "happiness", "sadness", "surprise")
    rows = [(s, e, q, f) for s in range(subjects) for e in emotions for q in range(per_emotion) for f in (0, 1)]
    X = rng.normal(0.5, 0.05, size=(len(rows), frames, 2, 468)).astype(np.float32)
    for i, (_, e, _, _) in enumerate(rows):  # a little signal: each emotion moves its own landmarks
        k = emotions.index(e)
        X[i, :, 1, k * 20:(k + 1) * 20] += np.linspace(0, 0.03, frames)[:, None]
    return LandmarkSet(X, np.array([r[1] for r in rows]), np.array([f"S{r[0]:03d}" for r in rows]),
                       np.array([f"S{r[0]:03d}_{r[1]}_{r[2]}" for r in rows]), np.array([bool(r[3]) for r in rows]),
                       np.arange(468))


def stage_02(data: LandmarkSet, root: Path, overrides: list[str]) -> tuple[float, int]:
    """Seconds and units of one stage-02 call into a fresh run folder."""
    shutil.rmtree(root, ignore_errors=True)
    run = RunFolder(root).ensure()
    params = load_params(REPO / "params" / "demo.yaml", overrides=overrides)
    start = time.perf_counter()
    table = train_models(run, params, data, progress=False)
    seconds = time.perf_counter() - start
    n_grid = len(params.emotions) * len(params.grid.filters) * len(params.grid.lstm_units) * len(params.grid.fc_units)
    return seconds, len(table) + n_grid


def same_models(a: Path, b: Path) -> bool:
    import tf_keras as keras

    names = sorted(p.relative_to(a) for p in a.joinpath("models").rglob("*.keras"))
    if names != sorted(p.relative_to(b) for p in b.joinpath("models").rglob("*.keras")):
        return False
    for name in names:
        wa = keras.models.load_model(a / name, compile=False).get_weights()
        wb = keras.models.load_model(b / name, compile=False).get_weights()
        if not all(np.array_equal(x, y) for x, y in zip(wa, wb)):
            return False
    return True


def _noop(_shared=None):
    return None


def _weights(_shared, n_floats: int):
    return [np.ones(n_floats // 60, np.float32) for _ in range(60)]


def task_overhead(ray) -> dict[str, float]:
    """Milliseconds per task: a no-op one at a time, many in flight, and a bank-sized result."""
    noop = ray.remote(num_cpus=1)(_noop)
    ray.get([noop.remote() for _ in range(4)])  # workers up
    start = time.perf_counter()
    for _ in range(50):
        ray.get(noop.remote())
    serial = (time.perf_counter() - start) / 50 * 1e3
    start = time.perf_counter()
    ray.get([noop.remote() for _ in range(400)])
    batch = (time.perf_counter() - start) / 400 * 1e3
    big = ray.remote(num_cpus=1)(_weights)
    n = 60 * 238_000  # 60 demo units' weights at K = 468 (float32): about 57 MB
    ray.get(big.remote(None, n))
    start = time.perf_counter()
    for _ in range(5):
        ray.get(big.remote(None, n))
    return {"serial": serial, "in_flight": batch, "bank_result": (time.perf_counter() - start) / 5 * 1e3,
            "bank_result_mb": n * 4 / 1e6}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", help="a running Ray cluster (default: start one in this process, 2 CPUs)")
    parser.add_argument("--quick", action="store_true", help="3 seeds, 4 epochs")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--bank-size", default="auto", help="train.bank_size (smaller: more banks, more tasks)")
    args = parser.parse_args()
    import ray

    epochs = 4 if args.quick else args.epochs
    seeds = "[0, 1, 2]" if args.quick else "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9]"
    common = [f"train.epochs={epochs}", f"train.patience={epochs + 1}", f"seeds={seeds}",
              f"train.bank_size={args.bank_size}"]
    on_ray = ["execution.backend=ray"] + ([f"execution.address={args.address}"] if args.address else [])
    if args.address:
        ray.init(address=args.address, include_dashboard=False, log_to_driver=False)
    else:
        ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=500 * 1024 ** 2,
                 log_to_driver=False)
    print(f"Ray {ray.__version__}: {ray.cluster_resources().get('CPU', 0):g} CPU(s); "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    data = demo_like_data()
    tmp = Path(tempfile.mkdtemp(prefix="emolib-bench-ray-"))
    try:
        print(f"(a) stage 02 at demo sizes: {epochs} epochs per unit, seeds {seeds}, train.bank_size {args.bank_size}")
        for when in ("cold", "warm"):
            t_local, n = stage_02(data, tmp / f"local-{when}", common)
            t_ray, _ = stage_02(data, tmp / f"ray-{when}", common + on_ray)
            same = same_models(tmp / f"local-{when}", tmp / f"ray-{when}")
            print(f"    {when}: {n} units; local {n / t_local:6.2f} units/s ({t_local:5.1f} s), "
                  f"ray {n / t_ray:6.2f} units/s ({t_ray:5.1f} s): ratio ray/local {t_local / t_ray:.2f} "
                  f"(target >= 0.9); models bit for bit equal: {same}")
        o = task_overhead(ray)
        print(f"(b) Ray per task: {o['serial']:.1f} ms round trip one at a time, {o['in_flight']:.2f} ms each "
              f"with 400 in flight; a bank-sized result ({o['bank_result_mb']:.0f} MB) {o['bank_result']:.0f} ms")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        ray.shutdown()


if __name__ == "__main__":
    main()
