"""The choices the paper leaves open (DESIGN.md), with this run's values beside the paper's.

One table, :func:`choices_table`: each stage's notebook shows its own rows, and stage 05 shows
every stage's rows together.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import pandas as pd

from emolib.vocab import PAPER_VARIANT, STAGES, TYPICAL_DESCRIPTIONS

if TYPE_CHECKING:
    from emolib.config import Params

COLUMNS = ["question", "parameter", "this run", "paper"]
Row = tuple[str, str, object, str]


def choices_table(params: Params, stage: str, *, variant: str = PAPER_VARIANT) -> pd.DataFrame:
    """The open choices of ``stage`` (``05_results``: of every stage), with this run's values.

    Args:
        params: the run's parameters.
        stage: one of :data:`~emolib.vocab.STAGES`.
        variant: the variant stage 03 explains (its first row names it).

    Returns:
        Columns question, parameter, this run, paper.

    Raises:
        ValueError: an unknown stage.
    """
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; expected one of {list(STAGES)}")
    stages = [s for s in _ROWS if s != "05_results"] if stage == "05_results" else [stage]
    rows: list[Row] = []
    for s in stages:
        rows += _ROWS[s](params, variant)
    return pd.DataFrame(rows, columns=COLUMNS)


def _data_rows(params: Params, variant: str) -> list[Row]:
    d = params.data
    fill = ("interpolated from the nearest frames with a face" if d.missing_face.fill == "neighbours"
            else "the sequence is dropped")
    return [
        ("frames per video (P)", "frames", f"{params.frames}, resampled uniformly in time", "not stated"),
        ("face crop", "data.crop_size", f"{d.crop_size} x {d.crop_size} grey, one box per sequence",
         "300 x 300 grey"),
        ("frames without a face", "data.missing_face",
         f"{fill}; a sequence with more than {d.missing_face.max_missing_fraction:g} of them is dropped",
         "not stated"),
        ("flip augmentation", "data.flip", "mirror horizontally" if d.flip else "off", "'vertically'"),
    ]


def _training_rows(params: Params, variant: str) -> list[Row]:
    m, t, g = params.model, params.train, params.grid
    grid = (f"F in {g.filters}, Q in {g.lstm_units}, R in {g.fc_units}; T-EMO on seed {g.seed}'s "
            "validation part; R-EMO reuses the choice" if g.enabled else
            f"off: F={m.filters}, Q={m.lstm_units}, R={m.fc_units} (params.model)")
    return [
        ("how data is split", "split", f"{params.split} (a flipped copy always with its original)",
         "random partitions (the same subject can be in train and test)"),
        ("test / validation share", "test_fraction, val_fraction",
         f"{params.test_fraction:g} of all; {params.val_fraction:g} of the rest",
         "87 of 574 tested; 10% of the training set for validation"),
        ("seeds", "seeds", f"{list(params.seeds)}: each its own partition, initial weights, batch order",
         "10 seeds, each its own partition"),
        ("input scaling", "data.normalize",
         f"{params.data.normalize}" + {"standardize": " (per coordinate and landmark, training-part statistics)",
                                       "global": " (per-feature means, one pooled standard deviation; "
                                                 "training-part statistics)"}.get(params.data.normalize, ""),
         "raw landmark coordinates"),
        ("input reference", "data.reference",
         {"none": "none (absolute coordinates)",
          "first_frame": "first_frame (movement from the first, neutral frame)"}[params.data.reference],
         "absolute coordinates"),
        ("class imbalance", "train.class_weight", t.class_weight, "not stated"),
        ("loss", "(fixed)", "cross-entropy on the 2-way softmax, class-weighted "
         "(= binary cross-entropy, equation 3)", "binary cross-entropy"),
        ("optimiser", "train.learning_rate, train.batch_size", f"Adam, lr {t.learning_rate:g}, batch {t.batch_size}",
         "Adam, lr 1e-4, batch 16"),
        ("when to stop", "train.epochs, train.patience",
         f"at most {t.epochs} epochs; stop after {t.patience} without a lower (class-weighted) "
         "validation loss; the best epoch's weights are restored", "not stated"),
        ("conv kernel", "model.kernel_size", f"{list(m.kernel_size)} (width clipped to K)", "not stated"),
        ("dropout rate, FC1 activation", "model.dropout, model.fc_activation", f"{m.dropout:g}, {m.fc_activation}",
         "not stated"),
        ("hyperparameters F, Q, R", "grid.*", grid, "grid search for T-EMO (Tables 1-5); R-EMO reuses them"),
    ]


def _ig_rows(params: Params, variant: str) -> list[Row]:
    ig = params.ig
    return [
        ("which models are explained", "variant, ig.seed", f"{variant.upper()}, all-landmark models of seed "
         f"{params.ig_seed}", "T-EMO (the fully trained network)"),
        ("which samples IG explains", "ig.inputs", ig.inputs, "training samples (of emotion e)"),
        ("cap on explained samples", "ig.max_samples", "none" if ig.max_samples is None else ig.max_samples,
         "none (the whole training set)"),
        ("what a typical video is", "ig.typical", f"{ig.typical} ({TYPICAL_DESCRIPTIONS.get(ig.typical, '?')})",
         "left open"),
        ("steps m of equation (2)", "ig.steps", ig.steps, "left open"),
        ("quadrature", "ig.rule", ig.rule, "right Riemann sum, alphas k/m, k = 1..m"),
        ("F, the explained output", "(fixed)", "probability of class 1 (the emotion)", "the binary classifier"),
        ("input space of IG", "data.normalize, data.reference",
         f"model inputs ({params.data.normalize}, reference "
         f"{getattr(params.data, 'reference', 'none')}), baselines too", "raw landmarks"),
        ("interpolated samples per model call", "ig.batch_size", ig.batch_size, "(speed only)"),
        ("how the integral is computed", "ig.engine", ig.engine,
         "(speed only: structured = exact rewrite for this architecture, equal to generic up to rounding)"),
    ]


def _pruning_rows(params: Params, variant: str) -> list[Row]:
    p = params.pruning
    return [
        ("pruned K", "pruning.k", ", ".join(map(str, p.k)), "234, 128, 64, 32, 16"),
        ("grid search per K", "pruning.grid_search", "yes" if p.grid_search else "no (model.* for every K)",
         "yes (Tables 1 to 5)"),
        ("random-subset control", "pruning.random_control", "yes" if p.random_control else "no", "none"),
    ]


_ROWS: dict[str, Callable[[Params, str], list[Row]]] = {
    "01_data_prep": _data_rows, "02_training": _training_rows, "03_global_ig": _ig_rows,
    "04_pruning": _pruning_rows, "05_results": lambda params, variant: [],
}
