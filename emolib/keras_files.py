"""Writing tf-keras ``.keras`` files fast: the archive Keras writes, without Keras' walk over the model.

``model.save(path)`` spends 25-32 ms on a demo model (``benchmarks/saving.py``, 2-core CPU; stage
04 saves 600 of them), most of it in Keras' generic search for the model's state: every attribute
of every layer is visited, its JSON metadata built. The archive it writes is always the same three
members, ``metadata.json`` (Keras' version, the date), ``config.json`` (the architecture) and
``model.weights.h5`` (the variables), and for one model object only the variables' values change
from one save to the next.

:func:`save_model` therefore has Keras save a model once (per model object and layout) with marked
variables, learns from that file which HDF5 dataset holds which variable, and from then on
writes the archive itself: the same members in the same order, the same ``config.json`` bytes, the
HDF5 file of that first save with the current values written into its datasets in place (so its
layout, groups and attributes are Keras' own), a fresh ``metadata.json``. The file is the one
``model.save`` writes for the same model, byte for byte but for the date
(``tests/test_keras_files.py``); ``keras.models.load_model`` reads it unchanged. A model whose
layout or settings do not match what was learnt (a variable added, a layer frozen, a learning
rate changed) is learnt again; one whose file this shortcut cannot map is saved by ``model.save``.
What is not looked at: a layer's other settings changed on the built layer (its activation, a
dropout rate), which Keras' config would show; emolib saves the models of its trainer pool,
which are built once and never reconfigured.
"""
from __future__ import annotations

import datetime
import io
import json
import tempfile
import weakref
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import numpy as np

_METADATA, _CONFIG, _WEIGHTS = "metadata.json", "config.json", "model.weights.h5"


@dataclass(frozen=True)
class _Template:
    """What one Keras save of a model taught: its config, its HDF5 file and which dataset holds
    which variable."""

    keras_version: str
    config: bytes
    weights_h5: bytes
    datasets: tuple  # (dataset path, index into _variables(model)), one per dataset


# model -> (the signature it was learnt under, its template or None when it could not be mapped)
_LEARNT: "weakref.WeakKeyDictionary[Any, tuple[tuple, Optional[_Template]]]" = weakref.WeakKeyDictionary()


def _variables(model) -> list:
    """The model's variables, then its optimizer's (Keras saves both)."""
    optimizer = getattr(model, "optimizer", None)
    extra = list(optimizer.variables()) if optimizer is not None and hasattr(optimizer, "variables") else []
    return list(model.weights) + extra


def _settings(model) -> str:
    """The compile settings and the optimizer's, as config.json holds them (a learning rate set
    after compiling shows only in the optimizer's)."""
    compiled = model.get_compile_config() if hasattr(model, "get_compile_config") else None
    optimizer = getattr(model, "optimizer", None)
    current = optimizer.get_config() if optimizer is not None and hasattr(optimizer, "get_config") else None
    return json.dumps([compiled, current], sort_keys=True, default=str)


def _signature(model) -> tuple:
    """What the archive depends on besides the values: the variables' names, shapes, dtypes and
    trainability, the layers' names and trainability, the compile and optimizer settings."""
    return (tuple((v.name, tuple(v.shape), v.dtype.name, bool(getattr(v, "trainable", False)))
                  for v in _variables(model)),
            tuple((layer.name, bool(layer.trainable)) for layer in model.layers), bool(model.trainable),
            _settings(model))


def _learn(model) -> Optional[_Template]:
    """Save ``model`` once through Keras with every variable set to its own constant, map each
    HDF5 dataset to the variable it holds; restore the values. None when a dataset matches no
    variable, or more than one."""
    import h5py

    variables = _variables(model)
    saved = [v.numpy() for v in variables]
    try:
        for i, v in enumerate(variables):
            v.assign(np.full(tuple(v.shape), i + 1, dtype=v.dtype.as_numpy_dtype))
        with tempfile.TemporaryDirectory(prefix="emolib-keras-") as folder:
            tmp = Path(folder) / "template.keras"  # Keras insists on the suffix
            model.save(str(tmp))
            raw = tmp.read_bytes()
    finally:
        for v, value in zip(variables, saved):
            v.assign(value)
    with zipfile.ZipFile(io.BytesIO(raw)) as archive:
        if archive.namelist() != [_METADATA, _CONFIG, _WEIGHTS]:
            return None
        config = archive.read(_CONFIG)
        metadata = json.loads(archive.read(_METADATA))
        weights_h5 = archive.read(_WEIGHTS)
    datasets = []
    with h5py.File(io.BytesIO(weights_h5), "r") as h5:
        found: list[tuple[str, Any]] = []
        h5.visititems(lambda name, obj: found.append((name, obj[()])) if isinstance(obj, h5py.Dataset) else None)
        for name, value in found:
            value = np.asarray(value)
            matches = [i for i, v in enumerate(variables)
                       if tuple(v.shape) == value.shape and value.size and np.all(value == i + 1)]
            if len(matches) != 1:
                return None
            datasets.append((name, matches[0]))
    if sorted(i for _, i in datasets) != list(range(len(variables))):
        return None
    return _Template(str(metadata.get("keras_version")), config, weights_h5, tuple(datasets))


def _template(model) -> Optional[_Template]:
    """The model's template, learnt again whenever its signature changed; None: not mappable."""
    signature = _signature(model)
    learnt = _LEARNT.get(model)
    if learnt is None or learnt[0] != signature:
        learnt = _LEARNT[model] = (signature, _learn(model))
    return learnt[1]


def save_model(model, path: str | Path) -> None:
    """Write ``model`` to ``path`` as the ``.keras`` archive ``model.save(path)`` writes.

    Args:
        model: a built tf-keras model.
        path: the file to write (a ``.keras`` name); written in place, so give it a temporary
            path when the write must be atomic (:func:`emolib.io.atomic_path`).
    """
    import h5py

    template = _template(model)
    if template is None:
        model.save(str(path))
        return
    variables = _variables(model)
    buffer = io.BytesIO(template.weights_h5)
    with h5py.File(buffer, "r+") as h5:
        for name, i in template.datasets:
            h5[name][...] = variables[i].numpy()
    metadata = json.dumps({"keras_version": template.keras_version,
                           "date_saved": datetime.datetime.now().strftime("%Y-%m-%d@%H:%M:%S")})
    # As Keras writes it: the first two members through ZipFile.open (dated 1980), the weights
    # through writestr (dated now), nothing compressed.
    with zipfile.ZipFile(path, "w") as archive:
        with archive.open(_METADATA, "w") as fh:
            fh.write(metadata.encode())
        with archive.open(_CONFIG, "w") as fh:
            fh.write(template.config)
        archive.writestr(_WEIGHTS, buffer.getvalue())
