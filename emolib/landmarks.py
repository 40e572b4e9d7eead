"""The landmark file contract: ``data/landmarks.npz`` (DESIGN.md, "Run folder contract").

    X            float32 (N, P, 2, L)  x/y per frame and landmark, normalised image coordinates
    emotion      str (N,)
    subject      str (N,)
    sequence     str (N,)              a flipped copy keeps its original's sequence id
    flipped      bool (N,)
    landmark_ids int (L,)              MediaPipe FaceMesh indices (0..467) of the L columns
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from emolib import io
from emolib.errors import DataError
from emolib.vocab import EMOTIONS, N_LANDMARKS

_KEYS = ("X", "emotion", "subject", "sequence", "flipped", "landmark_ids")


@dataclass
class LandmarkSet:
    X: np.ndarray
    emotion: np.ndarray
    subject: np.ndarray
    sequence: np.ndarray
    flipped: np.ndarray
    landmark_ids: np.ndarray

    def __len__(self) -> int:
        return int(self.X.shape[0])

    @property
    def frames(self) -> int:
        return int(self.X.shape[1])

    @property
    def n_landmarks(self) -> int:
        return int(self.X.shape[3])

    def subset(self, index) -> "LandmarkSet":
        """Rows ``index`` (an index array or boolean mask), all landmarks."""
        return LandmarkSet(self.X[index], self.emotion[index], self.subject[index],
                           self.sequence[index], self.flipped[index], self.landmark_ids)

    def select_landmarks(self, ids) -> "LandmarkSet":
        """Keep the landmark columns whose MediaPipe ids are ``ids`` (in that order)."""
        ids = np.asarray(ids, dtype=int)
        pos = {int(v): i for i, v in enumerate(self.landmark_ids)}
        missing = [int(i) for i in ids if int(i) not in pos]
        if missing:
            raise DataError(f"landmark ids not present in this landmark set: {missing[:10]}")
        cols = np.array([pos[int(i)] for i in ids], dtype=int)
        return LandmarkSet(self.X[..., cols], self.emotion, self.subject, self.sequence,
                           self.flipped, ids)

    def validate(self, source: str = "<landmarks>") -> "LandmarkSet":
        """Check shapes, dtypes, labels and values; raise :class:`DataError` naming ``source``."""
        X = self.X
        if X.ndim != 4 or X.shape[2] != 2:
            raise DataError(f"{source}: X must have shape (N, P, 2, L), got {tuple(X.shape)}")
        n, _, _, n_lm = X.shape
        if n == 0:
            raise DataError(f"{source}: holds no samples")
        for key in ("emotion", "subject", "sequence", "flipped"):
            arr = getattr(self, key)
            if arr.shape != (n,):
                raise DataError(f"{source}: {key} must have shape ({n},), got {tuple(arr.shape)}")
        if self.landmark_ids.shape != (n_lm,):
            raise DataError(f"{source}: landmark_ids must have shape ({n_lm},), got {tuple(self.landmark_ids.shape)}")
        if np.any((self.landmark_ids < 0) | (self.landmark_ids >= N_LANDMARKS)):
            raise DataError(f"{source}: landmark_ids must lie in 0..{N_LANDMARKS - 1}")
        if len(np.unique(self.landmark_ids)) != n_lm:
            raise DataError(f"{source}: landmark_ids repeat")
        bad_rows = np.where(~np.isfinite(X).all(axis=(1, 2, 3)))[0]
        if bad_rows.size:
            raise DataError(f"{source}: X holds NaN or infinite values in {bad_rows.size} sample(s), "
                            f"first: sequence {self.sequence[bad_rows[0]]!r} (row {bad_rows[0]})")
        unknown = sorted(set(self.emotion.tolist()) - set(EMOTIONS))
        if unknown:
            raise DataError(f"{source}: unknown emotion label(s) {unknown}; expected {list(EMOTIONS)}")
        return self


def save_landmarks(path: str | Path, data: LandmarkSet) -> None:
    """Write ``data`` atomically in the contract's layout."""
    data.validate(str(path))
    io.write_npz(
        path,
        X=data.X.astype(np.float32),
        emotion=data.emotion.astype(str),
        subject=data.subject.astype(str),
        sequence=data.sequence.astype(str),
        flipped=data.flipped.astype(bool),
        landmark_ids=data.landmark_ids.astype(np.int64),
    )


def read_landmark_arrays(path: str | Path) -> dict[str, np.ndarray]:
    """The arrays of a landmark file, as stored (nothing checked but that they are there).

    Raises:
        DataError: the file is missing, not an .npz, or lacks a key.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: landmark file not found")
    try:
        with open(path, "rb") as fh:
            magic = fh.read(6)
    except OSError as exc:
        raise DataError(f"{path}: cannot read the landmark file ({exc.strerror})") from None
    if magic == b"\x93NUMPY":
        raise DataError(f"{path}: a .npy file (one array); a landmark file is an .npz holding the arrays "
                        f"{', '.join(_KEYS)} (np.savez(path, X=..., emotion=..., ...); see emolib/landmarks.py)")
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in _KEYS if k not in f.files]
            if missing:
                raise DataError(f"{path}: missing array(s) {missing}; expected {list(_KEYS)}")
            return {k: f[k] for k in _KEYS}
    except DataError:
        raise
    except Exception as exc:  # zipfile.BadZipFile, ValueError, OSError ...
        raise DataError(f"{path}: not a readable .npz landmark file ({exc})") from None


def load_landmarks(path: str | Path) -> LandmarkSet:
    """Read and validate a landmark file.

    Raises:
        DataError: the file is missing, not an .npz, lacks a key, or fails :meth:`LandmarkSet.validate`.
    """
    path = Path(path)
    arrays = read_landmark_arrays(path)
    X = arrays["X"]
    if not np.issubdtype(X.dtype, np.floating):
        raise DataError(f"{path}: X must be floating point, got {X.dtype}")
    flipped = arrays["flipped"]
    if flipped.dtype.kind != "b":
        shown = ", ".join(repr(v) for v in np.unique(flipped)[:4].tolist())
        raise DataError(f"{path}: flipped must be booleans (dtype bool), got {flipped.dtype} values such as "
                        f"{shown}; store it as np.asarray(flipped, dtype=bool)")
    if not np.issubdtype(arrays["landmark_ids"].dtype, np.integer):
        raise DataError(f"{path}: landmark_ids must be integers, got {arrays['landmark_ids'].dtype}")
    data = LandmarkSet(
        X=X.astype(np.float32, copy=False),
        emotion=arrays["emotion"].astype(str),
        subject=arrays["subject"].astype(str),
        sequence=arrays["sequence"].astype(str),
        flipped=flipped,
        landmark_ids=arrays["landmark_ids"].astype(int),
    )
    return data.validate(str(path))


def check_user_landmarks(data: LandmarkSet, source: str) -> LandmarkSet:
    """The checks a landmark file made outside emolib needs beyond :meth:`LandmarkSet.validate`.

    Raises:
        DataError: naming ``source`` and the first offending sequence: coordinates that are not
            normalised to the image (pixels), a frame whose landmarks are all (0, 0) (a missing
            face stored as zeros), or rows of one sequence id that disagree on subject or emotion.
    """
    low, high = float(data.X.min()), float(data.X.max())
    if low < -0.5 or high > 1.5:
        raise DataError(f"{source}: coordinates range over [{low:.3g}, {high:.3g}]; emolib expects MediaPipe's "
                        "normalised image coordinates (about 0..1): divide pixel x by the width, y by the height")
    zero = np.all(data.X == 0, axis=(2, 3))  # (N, P): a frame with every landmark at (0, 0)
    if zero.any():
        row, frame = (int(v) for v in np.argwhere(zero)[0])
        raise DataError(f"{source}: {int(zero.sum())} frame(s) whose landmarks are all (0, 0), first: row {row} "
                        f"(sequence {data.sequence[row]!r}), frame {frame}: a frame without a face stored as "
                        "zeros? Leave such frames out or interpolate them before writing the file")
    for field in ("subject", "emotion"):
        values = getattr(data, field)
        first: dict[str, str] = {}
        for i, (seq, value) in enumerate(zip(data.sequence.tolist(), values.tolist())):
            if first.setdefault(seq, value) != value:
                raise DataError(f"{source}: sequence id {seq!r} has {field} {first[seq]!r} and {value!r} "
                                f"(row {i}); rows of one sequence (and its flipped copy) must agree")
    return data
