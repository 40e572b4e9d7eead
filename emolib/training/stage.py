"""Stage 02: train T-EMO and R-EMO for every (emotion, seed) on a landmark subset, the grid search.

One binary model per emotion (that emotion against the others), per variant and per seed; each
seed its own partition (:mod:`emolib.training.splits`), input scaling, initial weights, dropout
masks and batch order. The grid search (``grid.enabled``) trains every (F, Q, R) of
``params.grid`` as T-EMO on the partition of ``grid.seed`` and scores it on its validation part
(accuracy, ties broken by the lower validation loss, then the smaller model); R-EMO reuses
T-EMO's choice, as in the paper. Stage 04 calls :func:`train_models` for each K and selection.

Resume: a finished model is saved under ``models/<variant>/<emotion>/`` with its scaler and a
JSON record (metrics, learning curve, and the key of everything that shapes it); a model whose
record holds the same key is not trained again. Files are written atomically, the record last,
so an interrupted run never leaves a half-written model that passes for a finished one.

Banks: the units still to train are grouped by architecture and trained in banks
(:func:`train_pending`, :mod:`emolib.training.bank`); a unit is saved the moment it stops, so an
interrupted bank loses only its unfinished units. Which units share a bank changes a unit's
weights in the last bits only (float32 rounding; ``tests/training/test_bank.py``): a run is
reproducible bit for bit, but a resumed one can differ from a clean one at that level. With
``train.bank_size: 1`` every unit trains alone and is the same whatever else is trained.

Where the banks run is ``params.execution`` (:mod:`emolib.execution`): in this process, or each
bank as a Ray task; the banks are formed here the same way for both, and this process saves
every unit, so both give the same numbers and the same run folder.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Optional, Sequence, Union

import numpy as np
import pandas as pd

from emolib import io
from emolib.config import GridSettings
from emolib.errors import DataError, ParamsError
from emolib.execution import backend_for
from emolib.models import configure_tensorflow, copy_unit, read_record
from emolib.run_folder import RunFolder
from emolib.training.bank import Architecture, BankFit, bank_size, train_bank
from emolib.training.fit import POOL, TrainerPool
from emolib.training.splits import check_splittable, ensure_splits
from emolib.training.units import (
    LandmarkChoice,
    Unit,
    UnitInputs,
    data_fingerprint,
    history_rows,
    resolve_landmarks,
    save_trained,
    unit_inputs,
    unit_key,
)
from emolib.vocab import (
    ALL_LANDMARKS,
    GRID_COLUMNS,
    HISTORY_COLUMNS,
    HYPER_COLUMNS,
    HYPER_KEY,
    PAPER_VARIANT,
    RESULT_COLUMNS,
    RESULT_KEY,
    VARIANTS,
)

if TYPE_CHECKING:
    from emolib.config import Params
    from emolib.landmarks import LandmarkSet

_SELECTION_RE = re.compile(r"^[A-Za-z0-9_.-]+$")


def check_grid(grid: GridSettings) -> None:
    """Refuse a grid with an impossible value (also when it bypassed validation).

    Raises:
        ParamsError: an empty axis, a value that is not a positive integer, a negative seed.
    """
    for axis in ("filters", "lstm_units", "fc_units"):
        values = list(getattr(grid, axis))
        if not values:
            raise ParamsError(f"grid.{axis}: needs at least one value")
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1]
        if bad:
            raise ParamsError(f"grid.{axis}: {bad} impossible; every value must be a positive integer")
    if isinstance(grid.seed, bool) or not isinstance(grid.seed, (int, np.integer)) or grid.seed < 0:
        raise ParamsError(f"grid.seed must be a non-negative integer, got {grid.seed!r}")


def _check_call(params: Params, data: LandmarkSet, selection: str, variants: Sequence[str]) -> None:
    if not _SELECTION_RE.match(selection or ""):
        raise ParamsError(f"selection {selection!r}: use letters, digits, '_', '.' or '-' (it names files)")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown or not variants:
        raise ParamsError(f"variants {list(variants)}: expected some of {list(VARIANTS)}")
    bad_seeds = [s for s in params.seeds if s < 0]
    if bad_seeds:
        raise ParamsError(f"seeds must be non-negative, got {bad_seeds}")
    if data.frames != params.frames:
        raise DataError(f"the landmark data holds {data.frames} frames per sample but params.frames "
                        f"is {params.frames}; rerun stage 01")


# --------------------------------------------------------------------------------------------
# Banks
# --------------------------------------------------------------------------------------------
Planned = tuple  # (Unit, model path, key, parts)


def train_bank_task(data: LandmarkSet, chunk: Sequence[tuple[Unit, Mapping[str, np.ndarray]]], variant: str,
                    hyper: tuple[int, int, int], params: Params, *, inputs: Optional[Sequence[UnitInputs]] = None,
                    on_done=None, on_epoch=None) -> list[BankFit]:
    """Train one bank: the units of ``chunk`` (one architecture), each with its parts.

    Runs wherever the backend sends it (this process, or a Ray worker that has only its
    arguments): it reads no file and writes none; the caller saves what it returns.
    ``inputs``, ``on_done``, ``on_epoch``: given in this process only (the units' inputs already
    made for saving; save a unit as it stops; progress).
    """
    configure_tensorflow(params.train.threads)
    if inputs is None:
        inputs = [unit_inputs(u, data=data, parts=p, params=params) for u, p in chunk]
    return train_bank([x.job(u.seed) for x, (u, _) in zip(inputs, chunk)], variant=variant, frames=data.frames,
                      n_landmarks=len(chunk[0][0].landmark_ids), hyper=hyper, params=params, on_done=on_done,
                      on_epoch=on_epoch)


def train_pending(planned: Sequence[Planned], *, data: LandmarkSet, params: Params, selection: str,
                  pool: TrainerPool, bar, what: str) -> dict[Path, dict]:
    """Train the planned units not yet finished, in banks; return model path -> record, for all.

    A unit whose record holds its key is finished and not trained again. The others are grouped
    by architecture (variant and F, Q, R) and trained in banks of ``train.bank_size`` units
    (:func:`emolib.training.bank.bank_size`), each bank a call of :func:`train_bank_task` on the
    backend of ``params.execution`` (:mod:`emolib.execution`). The banks are the same on every
    backend, so are the numbers. This process saves every unit: locally the moment it stops (an
    interrupted bank keeps its finished units), from a Ray task when its bank comes back.
    """
    records: dict[Path, dict] = {}
    groups: dict[tuple, list] = {}
    for unit, path, key, parts in planned:
        record = read_record(path)
        if record is not None and record.get("key") == key:
            records[path] = record
            bar.update(1)
        else:
            groups.setdefault((VARIANTS.index(unit.variant), unit.hyper), []).append((unit, path, key, parts))
    banks: list[list] = []
    for (_, hyper), todo in sorted(groups.items()):
        arch = Architecture.of(todo[0][0].variant, data.frames, len(todo[0][0].landmark_ids), hyper, params)
        size = bank_size(params.train.bank_size, arch, max(len(p["train"]) for *_, p in todo),
                         max(len(p["val"]) for *_, p in todo))
        banks.extend(todo[start:start + size] for start in range(0, len(todo), size))
    if not banks:
        return records
    backend = backend_for(params.execution)
    made: dict[int, list[UnitInputs]] = {}

    def inputs_of(b: int) -> list[UnitInputs]:
        if b not in made:
            made[b] = [unit_inputs(u, data=data, parts=p, params=params) for u, _, _, p in banks[b]]
        return made[b]

    def save(b: int, i: int, fit: BankFit) -> None:
        unit, path, key, parts = banks[b][i]
        if path in records:
            return
        records[path] = save_trained(unit, path, fit, inputs_of(b)[i], n_parts={k: len(v) for k, v in parts.items()},
                                     params=params, selection=selection, key=key, pool=pool)
        bar.update(1)

    def label(b: int) -> str:
        unit = banks[b][0][0]
        return (f"{what} bank of {len(banks[b])} {unit.variant} F={unit.hyper[0]} Q={unit.hyper[1]} "
                f"R={unit.hyper[2]}")

    def local_kwargs(b: int) -> dict:
        def show(epoch: int, left: int) -> None:
            bar.set_postfix_str(f"{label(b)}: epoch {epoch}, {left} training")

        return {"inputs": inputs_of(b), "on_done": lambda i, fit: save(b, i, fit), "on_epoch": show}

    def finished(b: int, fits: list[BankFit]) -> None:
        for i, fit in enumerate(fits):
            save(b, i, fit)
        made.pop(b, None)
        if backend.name != "local":
            bar.set_postfix_str(f"{what}: {label(b)} done ({backend.name})")

    calls = [([(u, p) for u, _, _, p in bank], bank[0][0].variant, bank[0][0].hyper, params) for bank in banks]
    backend.run(train_bank_task, calls, finished, shared=data, local_kwargs=local_kwargs)
    return records


# --------------------------------------------------------------------------------------------
# Grid search
# --------------------------------------------------------------------------------------------
def _grid_search(run: RunFolder, params: Params, data: LandmarkSet, grid: GridSettings, *,
                 selection: str, subsets: Mapping[tuple[str, int], np.ndarray], splits: pd.DataFrame,
                 data_fp: str, pool: TrainerPool, bar) -> dict[str, tuple[int, int, int]]:
    """T-EMO over the grid on ``grid.seed``'s partition; return emotion -> chosen (F, Q, R)."""
    seed = int(grid.seed)
    parts = RunFolder.split_parts(splits, seed)
    combos = [(int(f), int(q), int(r)) for f in grid.filters for q in grid.lstm_units for r in grid.fc_units]
    grid_rows, chosen = [], {}
    planned = {}
    for e in params.emotions:
        ids = subsets[(e, seed)]
        for hyper in combos:
            key = unit_key(variant=PAPER_VARIANT, emotion=e, seed=seed, landmark_ids=ids, hyper=hyper,
                            params=params, data_fp=data_fp, parts=parts)
            planned[(e, hyper)] = (Unit(PAPER_VARIANT, e, seed, ids, hyper),
                                   run.grid_model(e, len(ids), selection, seed, hyper), key, parts)
    records = train_pending(list(planned.values()), data=data, params=params, selection=selection,
                            pool=pool, bar=bar, what="grid")
    for e in params.emotions:
        scored = [(hyper, records[run.grid_model(e, len(subsets[(e, seed)]), selection, seed, hyper)]["row"])
                  for hyper in combos]
        # Highest validation accuracy; ties: lower validation loss, then the smaller model.
        best_hyper, best_row = min(scored, key=lambda hr: (-hr[1]["val_accuracy"], hr[1]["val_loss"],
                                                           hr[1]["params"]))
        chosen[e] = best_hyper
        for hyper, row in scored:
            grid_rows.append({"emotion": e, "n_landmarks": len(subsets[(e, seed)]), "selection": selection,
                              "filters": hyper[0], "lstm_units": hyper[1], "fc_units": hyper[2],
                              "val_accuracy": row["val_accuracy"], "val_loss": row["val_loss"],
                              "epochs": row["epochs"], "train_seconds": row["train_seconds"],
                              "chosen": hyper == best_hyper})
    grid_table = pd.DataFrame(grid_rows, columns=list(GRID_COLUMNS))
    io.upsert_csv(run.grid_search, grid_table, HYPER_KEY + ("filters", "lstm_units", "fc_units"),
                  columns=GRID_COLUMNS)
    picked = grid_table[grid_table["chosen"]][list(HYPER_COLUMNS)]
    io.upsert_csv(run.hyperparameters, picked, HYPER_KEY, columns=HYPER_COLUMNS)
    return chosen


# --------------------------------------------------------------------------------------------
# The entry point
# --------------------------------------------------------------------------------------------
def train_models(run: RunFolder, params: Params, data: LandmarkSet, *, selection: str = ALL_LANDMARKS,
                 landmark_ids: LandmarkChoice = None, variants: Sequence[str] = VARIANTS,
                 grid_search: Union[None, bool, GridSettings] = None,
                 results_csv: Optional[Union[str, Path]] = None, progress: bool = True) -> pd.DataFrame:
    """Train every (variant, emotion, seed) on a landmark subset; resume finished models.

    Args:
        run: the run folder (writes models/, results/splits.csv, the results table, the learning
            curves; with a grid search also results/grid_search.csv and hyperparameters.csv).
        params: the run's parameters.
        data: the landmark set (all samples; every landmark the subsets may pick).
        selection: the name of the landmark choice (``all`` for stage 02; the pruning stage
            passes its rule's name). It names the model files and fills the ``selection`` column.
        landmark_ids: None (all of ``data``'s landmarks), a dict emotion -> ids (each emotion
            its own subset), or a callable (emotion, seed) -> ids; every subset of equal size K.
        variants: which of ``t-emo``, ``r-emo`` to train.
        grid_search: None: ``params.grid.enabled``; True / False; or a GridSettings to search.
        results_csv: the results table (default ``results/training.csv``); rows of the models
            trained here replace earlier rows with the same key, other rows are kept. The
            learning curves go beside it (:meth:`RunFolder.history`).
        progress: show a progress bar.

    Returns:
        The whole results table (every row in ``results_csv``).

    Raises:
        ParamsError: bad arguments or settings (variant, selection name, grid, subsets).
        DataError: data that cannot be split, or a landmark id out of range. Both are raised
            before any training starts.
    """
    from tqdm.auto import tqdm

    _check_call(params, data, selection, variants)
    if grid_search is None:
        grid_search = params.grid.enabled
    grid = grid_search if isinstance(grid_search, GridSettings) else (params.grid if grid_search else None)
    if grid is not None:
        check_grid(grid)
    check_splittable(data, params)
    seeds = [int(s) for s in params.seeds]
    needed_seeds = seeds + ([int(grid.seed)] if grid is not None and grid.seed not in seeds else [])
    subsets = resolve_landmarks(landmark_ids, data, params.emotions, needed_seeds)
    n_landmarks = len(next(iter(subsets.values())))

    configure_tensorflow(params.train.threads)
    splits = ensure_splits(run, params, data, [grid.seed] if grid is not None else [])
    data_fp = data_fingerprint(data)
    results_csv = Path(results_csv) if results_csv is not None else run.training_results
    pool = POOL

    n_grid = (len(params.emotions) * len(grid.filters) * len(grid.lstm_units) * len(grid.fc_units)
              if grid is not None else 0)
    n_units = len(variants) * len(params.emotions) * len(seeds)
    bar = tqdm(total=n_grid + n_units, desc=f"training ({selection}, K={n_landmarks})", unit="model",
               disable=not progress)
    records: list[dict] = []
    try:
        if grid is not None:
            hypers = _grid_search(run, params, data, grid, selection=selection, subsets=subsets,
                                  splits=splits, data_fp=data_fp, pool=pool, bar=bar)
        else:
            m = params.model
            hypers = {e: (m.filters, m.lstm_units, m.fc_units) for e in params.emotions}
        parts_of = {s: RunFolder.split_parts(splits, s) for s in seeds}
        planned = []
        for unit in (Unit(v, e, s, subsets[(e, s)], hypers[e]) for v in variants for e in params.emotions
                     for s in seeds):
            parts = parts_of[unit.seed]
            key = unit_key(variant=unit.variant, emotion=unit.emotion, seed=unit.seed,
                            landmark_ids=unit.landmark_ids, hyper=unit.hyper, params=params,
                            data_fp=data_fp, parts=parts)
            path = run.model(unit.variant, unit.emotion, n_landmarks, selection, unit.seed)
            if grid is not None and unit.variant == PAPER_VARIANT and unit.seed == grid.seed:
                record = read_record(path)
                grid_copy = run.grid_model(unit.emotion, n_landmarks, selection, unit.seed, unit.hyper)
                grid_record = read_record(grid_copy)
                if (record is None or record.get("key") != key) and grid_record is not None \
                        and grid_record.get("key") == key:
                    copy_unit(grid_copy, path, grid_record)  # the grid search trained exactly this model
            planned.append((unit, path, key, parts))
        done = train_pending(planned, data=data, params=params, selection=selection, pool=pool, bar=bar,
                             what="training")
        records.extend(done[path] for _, path, _, _ in planned)
    finally:
        bar.close()
        if records:
            io.upsert_csv(RunFolder.history(results_csv), pd.concat([history_rows(r) for r in records]),
                          RESULT_KEY, columns=HISTORY_COLUMNS)
            io.upsert_csv(results_csv, pd.DataFrame([r["row"] for r in records]), RESULT_KEY, columns=RESULT_COLUMNS)
    return pd.read_csv(results_csv).sort_values(list(RESULT_KEY), ignore_index=True)


def check_training_outputs(run: RunFolder, params: Params, data: LandmarkSet,
                           variants: Sequence[str] = VARIANTS) -> pd.DataFrame:
    """Check what stage 02 wrote; raise if anything is missing or out of range.

    Checks: a row per (variant, emotion, seed) at K = all landmarks, metrics finite and in
    [0, 1] (ROC AUC may be NaN when a test part holds one class), a model file per row, the
    splits cover every seed with three non-empty parts (subject-disjoint for ``split:
    subject``; a flipped copy with its original), and the SVM table when enabled.

    Returns:
        The checked results rows.

    Raises:
        DataError: the first problem found.
    """
    table = run.read_results(run.training_results, params)
    table = table[(table["selection"] == ALL_LANDMARKS) & (table["n_landmarks"] == data.n_landmarks)]
    expected = {(v, e, s) for v in variants for e in params.emotions for s in params.seeds}
    have = set(zip(table["variant"], table["emotion"], table["seed"]))
    if expected - have:
        raise DataError(f"results/training.csv lacks {sorted(expected - have)[:5]}")
    for col in ("accuracy", "balanced_accuracy", "f1", "majority_accuracy"):
        values = table[col].to_numpy(float)
        if not np.all(np.isfinite(values)) or values.min() < 0 or values.max() > 1:
            raise DataError(f"results/training.csv: {col} holds NaN or values outside [0, 1]")
    if (table["epochs"] < 1).any() or (table["trainable_params"] < 1).any():
        raise DataError("results/training.csv: a model ran no epoch or has no trainable parameter")
    for _, r in table.iterrows():
        path = run.model(r["variant"], r["emotion"], r["n_landmarks"], r["selection"], r["seed"])
        if read_record(path) is None:
            raise DataError(f"{path}: missing (or its scaler/record is)")
    splits = run.read_splits()
    for s in params.seeds:
        parts = run.split_parts(splits, s)
        if any(len(v) == 0 for v in parts.values()):
            raise DataError(f"results/splits.csv: seed {s} has an empty part")
        rows = splits[splits["seed"] == s]
        unit = "subject" if params.split == "subject" else "sequence"
        straddle = rows.groupby(unit)["part"].nunique()
        if (straddle > 1).any():
            raise DataError(f"results/splits.csv: seed {s}: {unit} {straddle[straddle > 1].index[0]} "
                              "is in more than one part")
    if params.svm.enabled:
        svm_path = run.svm_results
        if not svm_path.is_file():
            raise DataError(f"{svm_path}: missing")
        svm = pd.read_csv(svm_path)
        if svm["accuracy"].isna().any() or len(svm) != 2 * len(params.emotions) * len(params.seeds):
            raise DataError(f"{svm_path}: NaN accuracy or wrong number of rows ({len(svm)})")
    return table

