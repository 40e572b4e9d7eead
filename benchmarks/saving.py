"""Saving a trained unit's model file: Keras' ``model.save`` against :func:`emolib.keras_files.save_model`.

    .venv/bin/python benchmarks/saving.py

Side by side in one process, for the demo's architectures (F, Q, R = 8, 16, 16; P = 10) at K = 16,
64 and 468, both variants: milliseconds per save, each way, the same model with new weights before
every save (as stage 04 saves its units), and whether the two files hold the same bytes (all
members but ``metadata.json``, whose date differs).
"""
from __future__ import annotations

import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

import emolib  # noqa: F401  (selects tf-keras before TensorFlow is imported)
from emolib.config import load_params
from emolib.keras_files import save_model
from emolib.models import configure_tensorflow
from emolib.training.fit import POOL

FRAMES, SAVES = 10, 30


def _members(path: Path) -> dict:
    with zipfile.ZipFile(path) as archive:
        return {n: archive.read(n) for n in archive.namelist() if n != "metadata.json"}


def main() -> None:
    configure_tensorflow(2)
    params = load_params("params/demo.yaml")
    hyper = (params.model.filters, params.model.lstm_units, params.model.fc_units)
    rng = np.random.default_rng(0)
    print(f"ms per save ({SAVES} saves each, new weights before each), demo architectures F,Q,R = {hyper}:")
    with tempfile.TemporaryDirectory() as tmp:
        keras_path, ours_path = Path(tmp) / "keras.keras", Path(tmp) / "ours.keras"
        for variant in ("t-emo", "r-emo"):
            for k in (16, 64, 468):
                model = POOL.get(variant, FRAMES, k, hyper, params, training=False).model
                weights = [[rng.normal(size=w.shape).astype(w.dtype) for w in model.get_weights()]
                           for _ in range(SAVES)]
                save_model(model, ours_path)  # learns the layout once per model, as a stage does
                times = {}
                for name, write, path in (("keras", model.save, keras_path),
                                          ("emolib", lambda p, m=model: save_model(m, p), ours_path)):
                    start = time.perf_counter()
                    for w in weights:
                        model.set_weights(w)
                        write(path)
                    times[name] = (time.perf_counter() - start) / SAVES * 1e3
                same = _members(keras_path) == _members(ours_path)  # both hold the last weights
                print(f"  {variant} K={k:3d}: model.save {times['keras']:5.1f} ms, emolib.keras_files "
                      f"{times['emolib']:5.1f} ms: {times['keras'] / times['emolib']:4.1f}x; same bytes: {same}")


if __name__ == "__main__":
    main()
