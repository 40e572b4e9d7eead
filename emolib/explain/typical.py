"""Stage 03's typical videos: the baselines IG starts from (paper, section 3.2; ``ig.typical``).

Each emotion's typical video is chosen among its training samples: ``most_confident`` (the one its
own model is most sure of, the paper-like default), ``medoid`` (the one closest to their mean
input) or ``centroid`` (their mean input itself, not a real video). A baseline is the mean model
input of its rows under the model being explained, so each explaining model sees it through its
own input scaling.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence, get_args

import numpy as np
import pandas as pd

from emolib import io
from emolib.errors import DataError, ParamsError
from emolib.models import model_inputs
from emolib.vocab import PAPER_VARIANT, TYPICAL_COLUMNS, IgTypical

if TYPE_CHECKING:
    from emolib.landmarks import LandmarkSet
    from emolib.models import TrainedModel
    from emolib.run_folder import RunFolder


TYPICAL_STRATEGIES: tuple[str, ...] = get_args(IgTypical)


def check_typical_strategy(strategy: str) -> str:
    """``strategy`` if it is one of :data:`TYPICAL_STRATEGIES`.

    Raises:
        ParamsError: an unknown strategy.
    """
    if strategy not in TYPICAL_STRATEGIES:
        raise ParamsError(f"ig.typical {strategy!r} is unknown; expected one of {list(TYPICAL_STRATEGIES)}")
    return strategy


def typical_sample(inputs: np.ndarray, strategy: str, probabilities: np.ndarray | None = None) -> tuple[int, float]:
    """Pick the typical sample among one emotion's training samples (the strategies that pick a
    real video; ``centroid`` averages them instead, see :func:`choose_typical`).

    Args:
        inputs: (n, ...) the emotion's training samples (model inputs).
        strategy: ``most_confident`` (highest probability from the emotion's own model) or
            ``medoid`` (closest, in Euclidean distance, to the mean of ``inputs``).
        probabilities: (n,) the emotion's model's probability of the emotion; needed for
            ``most_confident``.

    Returns:
        ``(position in inputs, score)``: the probability (most_confident) or the distance to the
        mean (medoid).

    Raises:
        ParamsError: ``centroid`` (not a sample: the mean of the samples) or an unknown strategy.
        DataError: no samples.
    """
    check_typical_strategy(strategy)
    if strategy == "centroid":
        raise ParamsError("ig.typical 'centroid' is the mean of the samples, not one of them: "
                          "use choose_typical (or typical_inputs) for it")
    if len(inputs) == 0:
        raise DataError("no training samples to pick a typical one from")
    if strategy == "most_confident":
        if probabilities is None:
            raise ValueError("most_confident needs the model's probabilities")
        p = np.asarray(probabilities, dtype=np.float64)
        i = int(np.argmax(p))
        return i, float(p[i])
    dist = _distances_to_mean(inputs)
    i = int(np.argmin(dist))
    return i, float(dist[i])


def _distances_to_mean(inputs: np.ndarray) -> np.ndarray:
    """(n,) Euclidean distance of each sample to the samples' mean (the medoid's and the
    centroid's score)."""
    flat = np.asarray(inputs, dtype=np.float64).reshape(len(inputs), -1)
    return np.linalg.norm(flat - flat.mean(axis=0, keepdims=True), axis=1)


@dataclass(frozen=True, eq=False)
class TypicalBaseline:
    """One emotion's "typical video", the baseline IG starts from.

    It is the mean model input of ``rows`` (rows of ``data/landmarks.npz``), taken under the
    model being explained (each model scales its inputs with its own statistics). The strategies
    that pick a real video (``most_confident``, ``medoid``) hold one row, so the baseline is
    that video's input; ``centroid`` holds all the emotion's candidate rows (its training
    samples), so the baseline is their mean input: not a real video.

    Attributes:
        emotion: the emotion it stands for.
        strategy: the ``ig.typical`` that chose it.
        rows: (n,) int rows of the landmark file averaged (one for a real video).
        score: the probability its own model gives it (most_confident), its distance to the mean
            (medoid) or the mean distance of the averaged samples to their mean (centroid), in
            the input space of the emotion's own model.
    """

    emotion: str
    strategy: str
    rows: np.ndarray
    score: float = float("nan")

    @property
    def is_video(self) -> bool:
        """Whether the baseline is one real video (``sample`` is then its row)."""
        return self.strategy != "centroid"

    @property
    def sample(self) -> int:
        """The row of the real video, or -1 for a centroid."""
        return int(self.rows[0]) if self.is_video else -1

    @property
    def key(self) -> Any:
        """What identifies it in cache keys: the row of a real video (as before centroids
        existed, so earlier caches stay valid), else the strategy, count and a hash of the rows."""
        if self.is_video:
            return self.sample
        import hashlib

        digest = hashlib.sha256(np.asarray(self.rows, dtype=np.int64).tobytes()).hexdigest()[:16]
        return {"strategy": self.strategy, "n": len(self.rows), "rows": digest}

    def describe(self, data: LandmarkSet | None = None) -> str:
        """The ``sequence`` column of typical.csv: the video's sequence, or "centroid of N samples"."""
        if not self.is_video:
            return f"centroid of {len(self.rows)} samples"
        return str(data.sequence[self.sample]) if data is not None else str(self.sample)


def choose_typical(emotion: str, rows: np.ndarray, inputs: np.ndarray, strategy: str,
                   probabilities: np.ndarray | None = None) -> TypicalBaseline:
    """One emotion's typical baseline among its candidate samples.

    Args:
        emotion: the emotion.
        rows: (n,) the candidates' rows of the landmark file (its training samples).
        inputs: (n, ...) their inputs under the emotion's own model (for the choice and score).
        strategy: ``most_confident``, ``medoid`` (see :func:`typical_sample`) or ``centroid``
            (all candidates; the baseline is their mean input under whichever model is explained).
        probabilities: as for :func:`typical_sample` (most_confident only).

    Returns:
        A :class:`TypicalBaseline`.

    Raises:
        ParamsError: an unknown strategy.
        DataError: no candidates, or ``rows`` and ``inputs`` differ in length.
    """
    check_typical_strategy(strategy)
    rows = np.asarray(rows, dtype=np.int64)
    if len(rows) == 0:
        raise DataError(f"{emotion}: no training samples to pick a typical one from")
    if len(rows) != len(inputs):
        raise DataError(f"{emotion}: {len(rows)} rows but {len(inputs)} inputs")
    if strategy == "centroid":
        return TypicalBaseline(emotion, strategy, np.sort(rows), float(_distances_to_mean(inputs).mean()))
    pos, score = typical_sample(inputs, strategy, probabilities)
    return TypicalBaseline(emotion, strategy, rows[pos:pos + 1], score)


def typical_inputs(baselines: Sequence[TypicalBaseline], data: LandmarkSet, trained: TrainedModel) -> np.ndarray:
    """The model inputs of typical baselines under one model (the one being explained).

    Args:
        baselines: the baselines, in the order wanted.
        data: the full landmark set (their rows index it).
        trained: the explained model.

    Returns:
        (B, ...) float32: each baseline's mean model input (a real video's own input).
    """
    if len(baselines) == 0:
        raise ValueError("no typical baselines")
    rows = [np.asarray(b.rows, dtype=int) for b in baselines]
    if any(len(r) == 0 for r in rows):
        raise DataError("a typical baseline without rows")
    inputs = np.asarray(model_inputs(data.subset(np.concatenate(rows)), trained))
    out, start = [], 0
    for r in rows:
        part = inputs[start:start + len(r)]
        start += len(r)
        out.append(part[0] if len(r) == 1 else part.astype(np.float64).mean(axis=0).astype(inputs.dtype))
    return np.stack(out)


def write_typical(run: RunFolder, variant: str, baselines: Sequence[TypicalBaseline],
                  data: LandmarkSet | None = None) -> pd.DataFrame:
    """Write typical.csv and typical_rows.json of ``variant``; returns the table."""
    table = pd.DataFrame([{"emotion": b.emotion, "sample": b.sample, "sequence": b.describe(data),
                           "strategy": b.strategy, "score": b.score} for b in baselines],
                         columns=list(TYPICAL_COLUMNS))
    csv_path, rows_path = run.typical(variant)
    io.write_json(rows_path, {b.emotion: {"strategy": b.strategy, "rows": [int(r) for r in b.rows]}
                              for b in baselines})
    io.write_csv(csv_path, table)
    return table


def load_typical(run: RunFolder, variant: str = PAPER_VARIANT) -> dict[str, TypicalBaseline]:
    """Stage 03's typical baselines of ``variant`` (emotion -> :class:`TypicalBaseline`).

    Reads typical.csv; a centroid's rows come from typical_rows.json beside it (a real video's
    row is the csv's ``sample``, so an older run without the json still loads).

    Raises:
        DataError: the csv is missing or malformed, or a centroid's rows are missing.
    """
    csv_path, rows_path = run.typical(variant)
    if not csv_path.is_file():
        raise DataError(f"{csv_path}: no typical videos (stage 03 writes them)")
    table = pd.read_csv(csv_path)
    if not {"emotion", "sample"} <= set(table.columns):
        raise DataError(f"{csv_path}: expected columns emotion, sample")
    stored: dict[str, Any] = {}
    if rows_path.is_file():
        try:
            stored = json.loads(rows_path.read_text())
        except json.JSONDecodeError as exc:
            raise DataError(f"{rows_path}: not valid JSON ({exc})") from None
        if not isinstance(stored, dict):
            raise DataError(f"{rows_path}: expected {{emotion: {{strategy, rows}}}}")
    out = {}
    for _, row in table.iterrows():
        e = str(row["emotion"])
        strategy = str(row["strategy"]) if "strategy" in table.columns else "most_confident"
        score = float(row["score"]) if "score" in table.columns else float("nan")
        sample = -1 if pd.isna(row["sample"]) else int(row["sample"])
        if strategy == "centroid" or sample < 0:
            entry = stored.get(e)
            if not isinstance(entry, dict) or not entry.get("rows"):
                raise DataError(f"{rows_path}: no rows for the {strategy} baseline of {e}")
            rows = np.asarray(entry["rows"], dtype=np.int64)
        else:
            rows = np.array([sample], dtype=np.int64)
        out[e] = TypicalBaseline(e, strategy, rows, score)
    return out

