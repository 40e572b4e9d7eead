"""Stage 02's partitions: each seed's train / validation / test split (``results/splits.csv``).

``split: subject`` (default) keeps every subject in one part; ``split: random`` splits by sequence
(the paper's protocol). A flipped copy shares its original's subject and sequence, so it always
lands in the same part. Parts are stratified by emotion. ``test_fraction`` is a fraction of all
samples, ``val_fraction`` a fraction of what is left for training (the paper: "10% of the
training set was reserved for validation").
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Optional, Sequence

import numpy as np
import pandas as pd

from emolib import io
from emolib.errors import DataError, ParamsError
from emolib.vocab import EMOTIONS, PARTS, SPLIT_COLUMNS

if TYPE_CHECKING:
    from emolib.config import Params
    from emolib.landmarks import LandmarkSet
    from emolib.run_folder import RunFolder

# Every split needs a group (subject or sequence) of each emotion in each of the three parts.
MIN_GROUPS = 3
# Restarts of the randomised greedy partition search (deterministic for a seed).
_SPLIT_TRIES = 64


# --------------------------------------------------------------------------------------------
# Partitions
# --------------------------------------------------------------------------------------------
def _groups(data: LandmarkSet, split: str) -> np.ndarray:
    """The unit that must not straddle parts: the subject, or the sequence (original + flip)."""
    if split == "subject":
        return data.subject.astype(str)
    if split == "random":
        return data.sequence.astype(str)
    raise ParamsError(f"split {split!r} is unknown; expected 'subject' or 'random'")


def check_splittable(data: LandmarkSet, params: Params) -> None:
    """Refuse data that cannot give every emotion a place in train, validation and test.

    Args:
        data: the landmark set (all emotions; those outside ``params.emotions`` are ignored).
        params: the run's parameters (``emotions``, ``split``).

    Raises:
        DataError: an emotion of ``params.emotions`` has no sample, or fewer than 3 subjects
            (``split: subject``) or sequences (``split: random``); or fewer than 3 subjects in
            all for a subject split.
    """
    keep = np.isin(data.emotion, params.emotions)
    groups = _groups(data, params.split)[keep]
    emotion = data.emotion[keep]
    unit = "subjects" if params.split == "subject" else "sequences"
    if params.split == "subject" and len(np.unique(groups)) < MIN_GROUPS:
        raise DataError(
            f"split: subject needs at least {MIN_GROUPS} subjects (one per part: train, validation, "
            f"test); the data holds {len(np.unique(groups))} ({sorted(set(groups.tolist()))}). "
            "Use more subjects or split: random")
    for e in params.emotions:
        n_groups = len(np.unique(groups[emotion == e]))
        if n_groups < MIN_GROUPS:
            raise DataError(
                f"emotion {e!r}: too few samples to split: {int((emotion == e).sum())} sample(s) from "
                f"{n_groups} {unit}; train, validation and test each need one, so at least "
                f"{MIN_GROUPS} {unit} are required (or leave {e!r} out of params.emotions)")


def _cut(counts: np.ndarray, fraction: float, rng: np.random.Generator,
         tries: int = _SPLIT_TRIES) -> np.ndarray:
    """Choose groups holding ``fraction`` of every emotion's samples; return a boolean mask.

    A randomised greedy search: groups are visited in random order and taken when that brings
    the per-emotion counts closer (squared error) to their targets; of ``tries`` restarts the best
    is kept, a missing emotion on either side (where avoidable) or an empty side weighing more
    than any count error.

    Args:
        counts: (groups, emotions) samples of each emotion in each group.
        fraction: the share to take.
        rng: the seed's generator.
        tries: restarts.
    """
    n_groups = counts.shape[0]
    total = counts.sum(axis=0)
    target = fraction * total
    present = total > 0
    several = (counts > 0).sum(axis=0) >= 2  # an emotion in one group cannot be on both sides
    big = 1e6
    best_mask, best_score = None, np.inf
    def cost(c: np.ndarray) -> float:
        return float(np.sum((c - target) ** 2))

    for _ in range(tries):
        order = rng.permutation(n_groups)
        # The part is never empty: it starts from one group, then grows greedily.
        mask = np.zeros(n_groups, dtype=bool)
        mask[order[0]] = True
        current = counts[order[0]].astype(float)
        for g in order[1:]:
            if cost(current + counts[g]) < cost(current):
                mask[g] = True
                current = current + counts[g]
        # Repair: give the part each emotion it lacks, where the rest keeps some of it.
        for e in np.flatnonzero(present & several & (current == 0)):
            options = [g for g in order if not mask[g] and counts[g, e] > 0
                       and np.all((total - current - counts[g])[present] > 0)]
            if options:
                g = min(options, key=lambda g: cost(current + counts[g]))
                mask[g] = True
                current = current + counts[g]
        rest = total - current
        score = cost(current)
        score += big * np.sum(present & several & (current == 0))
        score += big * np.sum(present & (rest == 0))
        score += big * (not mask.any()) + big * mask.all()
        if score < best_score:
            best_mask, best_score = mask, score
    return best_mask


def make_splits(data: LandmarkSet, params: Params, seeds: Optional[Iterable[int]] = None) -> pd.DataFrame:
    """Draw the train / validation / test partition of every seed.

    Args:
        data: the landmark set; samples of emotions outside ``params.emotions`` get no row.
        params: ``split``, ``test_fraction``, ``val_fraction``, ``emotions``.
        seeds: the seeds (default: ``params.seeds`` and ``params.grid.seed``).

    Returns:
        The table of :data:`SPLIT_COLUMNS`: one row per (seed, sample); ``sample`` is the row of
        the landmark file.

    Raises:
        DataError: see :func:`check_splittable`.
    """
    check_splittable(data, params)
    if seeds is None:
        seeds = _all_seeds(params)
    rows = np.flatnonzero(np.isin(data.emotion, params.emotions))
    groups = _groups(data, params.split)[rows]
    emotion_pos = {e: i for i, e in enumerate(params.emotions)}
    group_names, group_of = np.unique(groups, return_inverse=True)
    counts = np.zeros((len(group_names), len(params.emotions)))
    np.add.at(counts, (group_of, [emotion_pos[e] for e in data.emotion[rows]]), 1)
    tables = []
    for seed in seeds:
        rng = np.random.default_rng([int(seed), 5])
        part_of_group = np.full(len(group_names), "train", dtype=object)
        test = _cut(counts, params.test_fraction, rng)
        part_of_group[test] = "test"
        rest = np.flatnonzero(~test)
        val = _cut(counts[rest], params.val_fraction, rng)
        part_of_group[rest[val]] = "val"
        tables.append(pd.DataFrame({
            "seed": int(seed), "sample": rows, "sequence": data.sequence[rows],
            "subject": data.subject[rows], "emotion": data.emotion[rows],
            "flipped": data.flipped[rows].astype(bool), "part": part_of_group[group_of]}))
    return pd.concat(tables, ignore_index=True)[list(SPLIT_COLUMNS)]


def _all_seeds(params: Params) -> list[int]:
    seeds = list(params.seeds)
    if params.grid.seed not in seeds:
        seeds.append(int(params.grid.seed))
    return seeds


def ensure_splits(run: RunFolder, params: Params, data: LandmarkSet,
                  extra_seeds: Sequence[int] = ()) -> pd.DataFrame:
    """Compute every seed's partition and write ``results/splits.csv`` when it changed.

    Args:
        run: the run folder.
        params: the run's parameters.
        data: the landmark set.
        extra_seeds: seeds beyond ``params.seeds`` and ``params.grid.seed`` (another grid's).

    Returns:
        The splits table.
    """
    seeds = _all_seeds(params) + [int(s) for s in extra_seeds if int(s) not in _all_seeds(params)]
    splits = make_splits(data, params, seeds)
    path = run.splits
    if path.is_file():
        try:
            if pd.read_csv(path).equals(splits):
                return splits
        except (pd.errors.ParserError, pd.errors.EmptyDataError):
            pass  # unreadable: rewrite it
    io.write_csv(path, splits)
    return splits


def split_summary(splits: pd.DataFrame, seeds: Optional[Sequence[int]] = None) -> pd.DataFrame:
    """Samples, subjects and samples per emotion in each part of each seed's partition.

    Args:
        splits: the splits table.
        seeds: keep these seeds (default: all).

    Returns:
        One row per (seed, part): samples, subjects, then one column per emotion.
    """
    if seeds is not None:
        splits = splits[splits["seed"].isin(list(seeds))]
    base = splits.groupby(["seed", "part"]).agg(samples=("sample", "size"), subjects=("subject", "nunique"))
    per_emotion = pd.crosstab([splits["seed"], splits["part"]], splits["emotion"])
    per_emotion = per_emotion[[e for e in EMOTIONS if e in per_emotion.columns]]
    out = base.join(per_emotion).reset_index()
    out["part"] = pd.Categorical(out["part"], categories=list(PARTS), ordered=True)
    return out.sort_values(["seed", "part"], ignore_index=True)

