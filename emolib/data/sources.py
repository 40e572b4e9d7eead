"""Readers for the data sources: the CK+ folder layout, a folder of videos, frame decoding.

A reader turns a data folder into a list of :class:`SequenceInfo`, one per sequence, *before* any
long work starts. Sequences that cannot be used (contempt, no label, a label file holding garbage,
a folder without frames, a missing video) stay in the list with ``status`` ``skipped`` or
``error`` and a ``reason`` naming the file, so that the extraction report accounts for every one.
A folder that is missing, empty or holds no usable sequence raises :class:`DataError` at once.

CK+ on disk (DESIGN.md)::

    <root>/cohn-kanade-images/Sxxx/yyy/Sxxx_yyy_zzzzzzzz.png
    <root>/Emotion/Sxxx/yyy/Sxxx_yyy_zzzzzzzz_emotion.txt      one float code, e.g. "   3.0000000e+00"

Both folders may sit one or two levels deeper (``Emotion_labels/Emotion/...``), depending on how
the zips were unpacked.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Literal, Optional, Sequence

import numpy as np

from emolib.errors import DataError
from emolib.vocab import EMOTIONS

# CK+ emotion codes (the Emotion/*.txt files).
CKPLUS_CODES: dict[int, str] = {0: "neutral", 1: "anger", 2: "contempt", 3: "disgust", 4: "fear",
                                5: "happiness", 6: "sadness", 7: "surprise"}
# Labels accepted in a videos folder's labels.csv besides the six names (case-insensitive).
LABEL_ALIASES: dict[str, str] = {"happy": "happiness", "sad": "sadness", "angry": "anger",
                                 "surprised": "surprise", "fearful": "fear", "disgusted": "disgust"}
# Labels that exist in the data but are not studied (the paper removes contempt).
LEFT_OUT_LABELS = ("contempt", "neutral")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
VIDEO_COLUMNS = ("path", "emotion", "subject")

Status = Optional[Literal["skipped", "error"]]


@dataclass(frozen=True)
class SequenceInfo:
    """One sequence of a data source, as found on disk (nothing decoded yet).

    Attributes:
        sequence: unique id (CK+: ``S005_001``; videos: the path without suffix, ``/`` -> ``_``).
        subject: subject id (CK+: ``S005``).
        emotion: one of :data:`emolib.EMOTIONS`, ``contempt``, ``neutral``, or None (no label).
        kind: ``frames`` (one image file per frame, in order) or ``video`` (one file).
        files: the frame images in time order, or the one video file.
        status: None when the sequence is to be extracted; ``skipped`` or ``error`` otherwise.
        reason: why it is skipped or in error (names the file).
    """

    sequence: str
    subject: str
    emotion: Optional[str]
    kind: Literal["frames", "video"]
    files: tuple[Path, ...] = field(default_factory=tuple)
    status: Status = None
    reason: str = ""

    @property
    def usable(self) -> bool:
        return self.status is None

    def with_status(self, status: Status, reason: str) -> "SequenceInfo":
        return SequenceInfo(self.sequence, self.subject, self.emotion, self.kind, self.files, status, reason)


# ---- frames ------------------------------------------------------------------------------------

def read_frame(path: str | Path, colour: bool = False) -> np.ndarray:
    """Decode one image file to an 8-bit array: greyscale, or as it came with ``colour``.

    CK+ mixes grey and RGB frames. The landmarks are taken on one-channel crops (the paper's), so
    by default every frame is made grey here; face *finding* looks at the frame as it came
    (``colour=True``: RGB where the file is colour, grey where it is grey), since MediaPipe's
    detectors find small or dim faces in colour that they miss in grey.

    Raises:
        DataError: the file is missing, empty, or not a decodable image (the message names it).
    """
    import cv2

    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DataError(f"{path}: cannot read frame ({exc.strerror or exc})") from None
    if not raw:
        raise DataError(f"{path}: empty file (0 bytes), not an image")
    # imdecode on bytes (rather than imread) also copes with non-ASCII paths.
    flag = cv2.IMREAD_UNCHANGED if colour else cv2.IMREAD_GRAYSCALE
    image = cv2.imdecode(np.frombuffer(raw, np.uint8), flag)
    if image is None or image.size == 0:
        raise DataError(f"{path}: not a decodable image (corrupt or unsupported format)")
    if colour:
        image = _as_uint8_grey_or_rgb(image)
    return image


def _as_uint8_grey_or_rgb(image: np.ndarray) -> np.ndarray:
    """An image as OpenCV decoded it unchanged -> 8-bit grey (H, W) or RGB (H, W, 3)."""
    import cv2

    if image.dtype != np.uint8:  # 16-bit PNGs: keep the top 8 bits' range
        image = cv2.convertScaleAbs(image, alpha=255.0 / max(float(image.max()), 1.0))
    if image.ndim == 3 and image.shape[2] == 1:
        image = image[:, :, 0]
    if image.ndim == 3:
        code = cv2.COLOR_BGRA2RGB if image.shape[2] == 4 else cv2.COLOR_BGR2RGB
        image = cv2.cvtColor(image, code)
        if (image[:, :, 0] == image[:, :, 1]).all() and (image[:, :, 1] == image[:, :, 2]).all():
            image = np.ascontiguousarray(image[:, :, 0])  # a grey frame stored as RGB
    return image


def iter_video_frames(path: str | Path, colour: bool = False) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(name, frame)`` for every frame of a video file, decoded with OpenCV: grey, or
    RGB with ``colour``.

    Raises:
        DataError: the file is missing, empty, or OpenCV cannot decode any frame of it.
    """
    import cv2

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: video file not found")
    if path.stat().st_size == 0:
        raise DataError(f"{path}: empty file (0 bytes), not a video")
    capture = cv2.VideoCapture(str(path))
    try:
        if not capture.isOpened():
            raise DataError(f"{path}: OpenCV cannot open this video (corrupt or unsupported codec)")
        index = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if frame.ndim == 3:
                frame = cv2.cvtColor(frame, cv2.COLOR_BGR2RGB if colour else cv2.COLOR_BGR2GRAY)
            yield f"{path.name}#{index}", frame
            index += 1
        if index == 0:
            raise DataError(f"{path}: no frame of this video could be decoded")
    finally:
        capture.release()


def iter_frames(info: SequenceInfo, colour: bool = False) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(name, frame)`` for each frame of a sequence, in time order (grey, or as it came
    with ``colour``).

    Raises:
        DataError: a frame cannot be read or decoded (the message names the file).
    """
    if info.kind == "video":
        yield from iter_video_frames(info.files[0], colour)
    else:
        for path in info.files:
            yield path.name, read_frame(path, colour)


def iter_frames_or_reasons(info: SequenceInfo) -> Iterator[tuple[str, Optional[np.ndarray], str]]:
    """Like :func:`iter_frames` with ``colour``, for extraction: a frame file that is empty or
    cannot be decoded yields ``(name, None, why)`` instead of stopping the sequence, so that it
    counts as a frame without a face (``data.missing_face``). A video that cannot be opened still
    raises (there are no frames to count).

    Raises:
        DataError: a video file that cannot be opened or decoded at all.
    """
    if info.kind == "video":
        for name, frame in iter_video_frames(info.files[0], colour=True):
            yield name, frame, ""
        return
    for path in info.files:
        try:
            yield path.name, read_frame(path, colour=True), ""
        except DataError as exc:
            yield path.name, None, str(exc).removeprefix(f"{path}: ")


# ---- CK+ ---------------------------------------------------------------------------------------

def _find_folder(root: Path, name: str, max_depth: int = 3) -> Optional[Path]:
    """The shallowest folder called ``name`` under ``root`` (zips unpack at different depths)."""
    frontier = [root]
    for _ in range(max_depth + 1):
        for folder in frontier:
            if folder.name == name and folder.is_dir():
                return folder
        frontier = sorted(p for f in frontier for p in f.iterdir() if p.is_dir() and not p.name.startswith("."))
    return None


def parse_emotion_label(path: str | Path) -> int:
    """Read a CK+ emotion file: one float code such as ``"   3.0000000e+00"``.

    Raises:
        DataError: the file does not hold exactly one number that is a whole code in 0..7.
    """
    path = Path(path)
    try:
        text = path.read_text(errors="strict")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"{path}: cannot read label file ({exc})") from None
    tokens = text.split()
    if len(tokens) != 1:
        raise DataError(f"{path}: expected one emotion code (a number 0..7), found {text.strip()[:60]!r}")
    try:
        value = float(tokens[0])
    except ValueError:
        raise DataError(f"{path}: emotion code is not a number: {tokens[0][:60]!r}") from None
    if not np.isfinite(value) or value != round(value) or int(round(value)) not in CKPLUS_CODES:
        raise DataError(f"{path}: emotion code {tokens[0]!r} is not one of 0..7 "
                        f"({', '.join(f'{k} {v}' for k, v in CKPLUS_CODES.items())})")
    return int(round(value))


def _ckplus_label(label_dir: Optional[Path]) -> tuple[Optional[str], Status, str]:
    """(emotion, status, reason) from the label folder of one sequence (None: no label)."""
    if label_dir is None or not label_dir.is_dir():
        return None, "skipped", "no emotion label (CK+ labels only some sequences)"
    files = sorted(label_dir.glob("*_emotion.txt")) or sorted(label_dir.glob("*.txt"))
    if not files:
        return None, "skipped", "no emotion label (CK+ labels only some sequences)"
    if len(files) > 1:
        return None, "error", f"{label_dir}: {len(files)} label files, expected one"
    try:
        code = parse_emotion_label(files[0])
    except DataError as exc:
        return None, "error", str(exc)
    return CKPLUS_CODES[code], None, ""


def read_ckplus(root: str | Path, emotions: Sequence[str] = EMOTIONS) -> list[SequenceInfo]:
    """List the sequences of a CK+ folder, labelled, with the ones left out marked.

    Contempt, neutral and unlabelled sequences, and emotions not in ``emotions``, get status
    ``skipped``; a garbage label file or a sequence folder without frames gets ``error``.

    Args:
        root: the folder holding ``cohn-kanade-images/`` and ``Emotion/`` (possibly nested).
        emotions: the emotions studied (others are skipped).

    Returns:
        One :class:`SequenceInfo` per sequence folder, sorted by sequence id.

    Raises:
        DataError: ``root`` is missing or not a folder, has no ``cohn-kanade-images`` folder or no
            sequence in it, or no sequence is usable (labelled with a studied emotion).
    """
    root = Path(root)
    if not root.exists():
        raise DataError(f"{root}: CK+ data folder not found")
    if not root.is_dir():
        raise DataError(f"{root}: expected the CK+ folder, found a file")
    images = _find_folder(root, "cohn-kanade-images")
    if images is None:
        raise DataError(f"{root}: no 'cohn-kanade-images' folder inside (expected "
                        "cohn-kanade-images/Sxxx/yyy/Sxxx_yyy_zzzzzzzz.png)")
    labels = _find_folder(root, "Emotion")
    sequences: list[SequenceInfo] = []
    for subject_dir in sorted(p for p in images.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for seq_dir in sorted(p for p in subject_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            sequence = f"{subject_dir.name}_{seq_dir.name}"
            frames = tuple(sorted(p for p in seq_dir.iterdir()
                                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
                                  and not p.name.startswith(".")))
            label_dir = labels / subject_dir.name / seq_dir.name if labels is not None else None
            emotion, status, reason = _ckplus_label(label_dir)
            info = SequenceInfo(sequence, subject_dir.name, emotion, "frames", frames, status, reason)
            if info.usable:
                info = _check_studied(info, emotions)
            if info.usable and len(frames) < 2:
                info = info.with_status("error", f"{seq_dir}: {len(frames)} image file(s), a sequence needs at least 2")
            sequences.append(info)
    if not sequences:
        raise DataError(f"{images}: no sequence folders (expected Sxxx/yyy/ sub-folders holding frames)")
    if labels is None:
        raise DataError(f"{root}: no 'Emotion' label folder inside (expected "
                        "Emotion/Sxxx/yyy/Sxxx_yyy_zzzzzzzz_emotion.txt); no sequence is labelled")
    sequences += _labels_without_images(labels, images, {s.sequence for s in sequences})
    sequences.sort(key=lambda s: s.sequence)
    require_usable(sequences, f"{root} (CK+)")
    return sequences


def _labels_without_images(labels: Path, images: Path, known: set[str]) -> list[SequenceInfo]:
    """A label folder whose sequence has no image folder: an error row in the report, not a silent loss."""
    out = []
    for subject_dir in sorted(p for p in labels.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for seq_dir in sorted(p for p in subject_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
            sequence = f"{subject_dir.name}_{seq_dir.name}"
            if sequence not in known and any(seq_dir.glob("*.txt")):
                out.append(SequenceInfo(sequence, subject_dir.name, None, "frames", (), "error",
                                        f"{seq_dir}: an emotion label, but no image folder "
                                        f"{images / subject_dir.name / seq_dir.name}"))
    return out


def _check_studied(info: SequenceInfo, emotions: Sequence[str]) -> SequenceInfo:
    if info.emotion in LEFT_OUT_LABELS:
        return info.with_status("skipped", f"{info.emotion} is left out (not one of the six emotions studied)")
    if info.emotion not in emotions:
        return info.with_status("skipped", f"{info.emotion} is not in params.emotions")
    return info


def require_usable(sequences: Sequence[SequenceInfo], source: str) -> None:
    """Stop before any work when no sequence can be extracted.

    Raises:
        DataError: naming ``source`` and summarising why the sequences are left out.
    """
    if any(s.usable for s in sequences):
        return
    reasons: dict[str, int] = {}
    for s in sequences:
        key = s.reason.split(": ", 1)[-1] if s.status == "error" else s.reason
        reasons[key] = reasons.get(key, 0) + 1
    summary = "; ".join(f"{n} x {r}" for r, n in sorted(reasons.items(), key=lambda kv: -kv[1])[:5])
    raise DataError(f"{source}: no usable labelled sequence among {len(sequences)} ({summary})")


# ---- a folder of videos ------------------------------------------------------------------------

def normalise_label(text: str) -> Optional[str]:
    """Map a label (a name, an alias, or a CK+ code) to an emotion name; None if unknown."""
    label = text.strip().lower()
    if label in EMOTIONS or label in LEFT_OUT_LABELS:
        return label
    if label in LABEL_ALIASES:
        return LABEL_ALIASES[label]
    try:
        value = float(label)
    except ValueError:
        return None
    if value == round(value) and int(value) in CKPLUS_CODES:
        return CKPLUS_CODES[int(value)]
    return None


def read_video_folder(root: str | Path, emotions: Sequence[str] = EMOTIONS) -> list[SequenceInfo]:
    """List the videos of a folder from its ``labels.csv`` (columns path, emotion, subject).

    ``path`` is relative to the folder; ``emotion`` is a name (anger, ..., surprise, or
    contempt/neutral, which are left out), an alias (happy, sad, ...) or a CK+ code.

    Returns:
        One :class:`SequenceInfo` per row (rows with a missing video or an unknown label get
        status ``error``), in file order.

    Raises:
        DataError: the folder or ``labels.csv`` is missing, the CSV lacks a column or has no rows,
            sequence ids repeat, or no row is usable.
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"{root}: videos folder not found")
    labels = root / "labels.csv"
    if not labels.is_file():
        raise DataError(f"{labels}: labels file not found (expected columns {', '.join(VIDEO_COLUMNS)})")
    try:
        with open(labels, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            rows = list(reader)
            header = [(h or "").strip().lower() for h in (reader.fieldnames or [])]
    except (UnicodeDecodeError, csv.Error) as exc:
        raise DataError(f"{labels}: not a readable CSV file ({exc})") from None
    missing = [c for c in VIDEO_COLUMNS if c not in header]
    if missing:
        raise DataError(f"{labels}: missing column(s) {missing}; expected {list(VIDEO_COLUMNS)}, found {header}")
    if not rows:
        raise DataError(f"{labels}: no rows (one row per video expected)")
    sequences: list[SequenceInfo] = []
    seen: dict[str, int] = {}
    for line, row in enumerate(rows, start=2):
        if None in row:  # csv.DictReader puts the fields beyond the header under None
            raise DataError(f"{labels}: line {line}: {len(header) + len(row[None])} fields, the header has "
                            f"{len(header)} ({', '.join(header)}); a value holding a comma must be quoted")
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in row.items()}
        rel, label, subject = row["path"], row["emotion"], row["subject"]
        sequence = str(Path(rel).with_suffix("")).replace("\\", "/").replace("/", "_") or f"row{line}"
        if sequence in seen:
            raise DataError(f"{labels}: line {line}: video {rel!r} gives sequence id {sequence!r}, "
                            f"already used on line {seen[sequence]}")
        seen[sequence] = line
        path = root / rel
        emotion = normalise_label(label)
        info = SequenceInfo(sequence, subject or sequence, emotion, "video", (path,))
        if not rel:
            info = info.with_status("error", f"{labels}: line {line}: empty path")
        elif not subject:
            info = info.with_status("error", f"{labels}: line {line}: empty subject")
        elif emotion is None:
            info = info.with_status("error", f"{labels}: line {line}: unknown emotion {label!r} "
                                    f"(expected one of {list(EMOTIONS)}, contempt, neutral)")
        elif not path.is_file():
            info = info.with_status("error", f"{path}: video file not found (labels.csv line {line})")
        else:
            info = _check_studied(info, emotions)
        sequences.append(info)
    require_usable(sequences, str(labels))
    return sequences
