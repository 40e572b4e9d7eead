"""Landmark files that users bring (``data.source: landmarks``): what MediaPipe gives them today.

Two shapes are read:

* **an .npz** in the run folder's contract (:mod:`emolib.landmarks`), with either FaceMesh's 468
  landmarks or the 478 of MediaPipe's FaceLandmarker (the Tasks API that replaces
  ``mp.solutions``): FaceMesh's 468, in FaceMesh's order, followed by 10 iris points (468-472 one
  iris, 473-477 the other). The iris points are left out; the 468 keep their ids.
* **a CSV export with one row per frame**, as tools that run FaceMesh or FaceLandmarker over videos
  write it: columns ``sequence`` (or ``video``), ``emotion``, ``subject`` (optional: the sequence),
  ``frame`` (optional: the rows' order), and the coordinates ``x_<i>``, ``y_<i>`` (also ``x<i>``,
  ``<i>_x``, ``landmark_<i>_x``; ``z`` columns are ignored) for i = 0..467 or 0..477. A frame
  whose coordinates are empty had no face: it is filled or the sequence dropped, as for videos
  (``data.missing_face``).

Any other landmark count is refused, naming the file, the count found and the counts accepted.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from emolib.errors import DataError
from emolib.landmarks import LandmarkSet, load_landmarks, read_landmark_arrays
from emolib.vocab import N_LANDMARKS

N_FACE_LANDMARKER = 478  # FaceLandmarker: FaceMesh's 468, then 10 iris points
ACCEPTED_COUNTS = (N_LANDMARKS, N_FACE_LANDMARKER)
IRIS_IDS = tuple(range(N_LANDMARKS, N_FACE_LANDMARKER))
ACCEPTED_TEXT = (f"accepted: {N_LANDMARKS} (MediaPipe FaceMesh) or {N_FACE_LANDMARKER} (MediaPipe "
                 f"FaceLandmarker: FaceMesh's {N_LANDMARKS}, then {len(IRIS_IDS)} iris points)")
IRIS_NOTE = (f"{N_FACE_LANDMARKER} landmarks per frame (MediaPipe FaceLandmarker): its {len(IRIS_IDS)} iris "
             f"points (ids {IRIS_IDS[0]}-{IRIS_IDS[-1]}) were left out; FaceMesh's {N_LANDMARKS} are kept, "
             "in FaceMesh's order")
SEQUENCE_COLUMNS = ("sequence", "video")
_COORDINATE = re.compile(r"^(?:([xyz])_?(\d+)|(?:landmark_?)?(\d+)_?([xyz]))$")


@dataclass
class CsvSequence:
    """One sequence of a CSV export, before filling and resampling.

    Attributes:
        sequence, subject, emotion: as in the file (emotion not yet checked against the study).
        landmarks: (n, 2, 468) float32, NaN where the frame had no face.
        found: (n,) bool, the frame has coordinates.
        frame_names: ``<file>:<frame>`` for each of the n rows, in time order.
    """

    sequence: str
    subject: str
    emotion: str
    landmarks: np.ndarray
    found: np.ndarray
    frame_names: list[str]


def landmark_count_error(path: Path, count: int) -> DataError:
    return DataError(f"{path}: {count} landmarks per frame; {ACCEPTED_TEXT}")


def read_landmark_npz(path: str | Path) -> tuple[LandmarkSet, str]:
    """Read an .npz landmark file with 468 or 478 landmarks per frame.

    Returns:
        The landmark set (FaceMesh's 468, ids 0..467) and a note for the report ("" when the file
        held FaceMesh's 468).

    Raises:
        DataError: the file is missing or malformed (:func:`emolib.landmarks.load_landmarks`), or
            holds another number of landmarks.
    """
    path = Path(path)
    arrays = read_landmark_arrays(path)
    X, ids = arrays["X"], np.asarray(arrays["landmark_ids"])
    count = int(X.shape[3]) if X.ndim == 4 else None
    if count == N_FACE_LANDMARKER and X.shape[2] == 2:
        if not np.array_equal(ids.astype(int), np.arange(N_FACE_LANDMARKER)):
            raise DataError(f"{path}: {N_FACE_LANDMARKER} landmarks (FaceLandmarker) must have landmark_ids "
                            f"0..{N_FACE_LANDMARKER - 1} in order, found {ids[:5].tolist()}...")
        if not np.issubdtype(X.dtype, np.floating):
            raise DataError(f"{path}: X must be floating point, got {X.dtype}")
        data = LandmarkSet(X[..., :N_LANDMARKS].astype(np.float32), arrays["emotion"].astype(str),
                           arrays["subject"].astype(str), arrays["sequence"].astype(str),
                           arrays["flipped"].astype(bool), np.arange(N_LANDMARKS))
        return data.validate(str(path)), IRIS_NOTE
    if count is not None and X.shape[2] == 2 and count != N_LANDMARKS:
        raise landmark_count_error(path, count)
    return load_landmarks(path), ""


def _coordinate_columns(path: Path, header: list[str]) -> tuple[int, dict[tuple[str, int], str]]:
    """(landmark count, {(axis, id): column}) of a CSV header; raises when x/y are incomplete."""
    columns: dict[tuple[str, int], str] = {}
    for name in header:
        match = _COORDINATE.match(name.strip().lower())
        if match:
            axis, index = (match[1], match[2]) if match[1] else (match[4], match[3])
            columns[(axis, int(index))] = name
    ids = sorted({i for axis, i in columns if axis in "xy"})
    if not ids:
        raise DataError(f"{path}: no landmark coordinate columns (expected x_0, y_0, ... x_467, y_467 "
                        "or x_0 ... y_477; also x0, 0_x, landmark_0_x)")
    count = ids[-1] + 1
    lacking = [f"{axis}_{i}" for i in range(count) for axis in "xy" if (axis, i) not in columns]
    if lacking:
        raise DataError(f"{path}: coordinate columns for landmarks 0..{count - 1} are incomplete: "
                        f"{len(lacking)} missing, first {lacking[:4]}")
    if count not in ACCEPTED_COUNTS:
        raise landmark_count_error(path, count)
    return count, columns


def read_landmark_csv(path: str | Path) -> tuple[list[CsvSequence], str]:
    """Read a CSV export with one row per frame (see the module docstring).

    Returns:
        The sequences in the order they first appear, and a note for the report (the iris points
        left out, or "").

    Raises:
        DataError: the file is missing or unreadable, lacks the sequence or emotion column, has an
            incomplete or unaccepted set of coordinate columns, a coordinate that is not a number,
            a frame with only some coordinates, or no rows.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: landmark file not found")
    try:
        table = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: not a readable CSV file ({exc})") from None
    table.columns = [str(c).strip() for c in table.columns]
    lower = {c.lower(): c for c in table.columns}
    sequence_column = next((lower[c] for c in SEQUENCE_COLUMNS if c in lower), None)
    if sequence_column is None or "emotion" not in lower:
        raise DataError(f"{path}: needs columns {' or '.join(SEQUENCE_COLUMNS)} and emotion (one row per frame); "
                        f"found {list(table.columns)[:8]}{'...' if len(table.columns) > 8 else ''}")
    if table.empty:
        raise DataError(f"{path}: no rows (one row per frame expected)")
    count, columns = _coordinate_columns(path, list(table.columns))
    xy_names = [columns[(axis, i)] for axis in "xy" for i in range(N_LANDMARKS)]
    raw = table[xy_names].apply(lambda col: col.str.strip())
    empty = raw.eq("")
    try:
        values = raw.mask(empty).astype(float).to_numpy(np.float32)
    except ValueError:
        bad = raw[~empty].apply(pd.to_numeric, errors="coerce").isna() & ~empty
        row, col = np.argwhere(bad.to_numpy())[0]
        raise DataError(f"{path}: line {row + 2}, column {xy_names[col]}: {raw.iat[row, col]!r} "
                        "is not a number") from None
    partial = empty.any(axis=1) & ~empty.all(axis=1)
    if partial.any():
        line = int(np.flatnonzero(partial.to_numpy())[0]) + 2
        raise DataError(f"{path}: line {line}: some coordinates are empty and others not (a frame without a "
                        "face leaves all of them empty)")
    found = ~empty.all(axis=1).to_numpy()
    frame = lower.get("frame")
    order_key = pd.to_numeric(table[frame], errors="coerce") if frame else pd.Series(np.arange(len(table)))
    if frame and order_key.isna().any():
        line = int(np.flatnonzero(order_key.isna().to_numpy())[0]) + 2
        raise DataError(f"{path}: line {line}: frame {table[frame].iat[line - 2]!r} is not a number")
    subject_column = lower.get("subject")
    sequences = []
    for sequence, rows in table.groupby(sequence_column, sort=False).groups.items():
        rows = np.asarray(rows)[np.argsort(order_key.to_numpy()[rows], kind="stable")]
        labels = sorted(set(table["emotion"].iloc[rows].str.strip()))
        if len(labels) != 1:
            raise DataError(f"{path}: sequence {sequence!r} has rows labelled {labels}; one emotion per sequence")
        subjects = sorted(set(table[subject_column].iloc[rows].str.strip())) if subject_column else [str(sequence)]
        if len(subjects) != 1:
            raise DataError(f"{path}: sequence {sequence!r} has rows of subjects {subjects}; one per sequence")
        xy = values[rows].reshape(len(rows), 2, N_LANDMARKS)
        names = [f"{path.name}:{table[frame].iat[r] if frame else r + 2}" for r in rows]
        sequences.append(CsvSequence(str(sequence), subjects[0] or str(sequence), labels[0], xy, found[rows], names))
    return sequences, (IRIS_NOTE if count == N_FACE_LANDMARKER else "")


def landmark_file_kind(path: str | Path) -> Optional[str]:
    """``csv`` or ``npz`` by the file's suffix (None for anything else)."""
    suffix = Path(path).suffix.lower()
    return {".csv": "csv", ".npz": "npz"}.get(suffix)
