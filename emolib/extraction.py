"""Stage 01: MediaPipe FaceMesh landmarks per frame, per sequence, into ``data/landmarks.npz``.

Per frame (paper, section 3): face crop, resize to ``crop_size`` (300) square greyscale, the 468
FaceMesh landmarks, x/y normalised to the crop. Choices made here (documented in notebook 01):

* **One face box per sequence.** The square box (the face's bounding box plus a margin) is found
  by MediaPipe's face detector (BlazeFace, FaceMesh's own first stage) on the first frame where it
  sees a face, and every frame of the sequence is cropped with it. The paper crops "from each
  video"; a fixed box keeps the head's own small motion in the coordinates instead of re-centring
  it away, and costs one detector call per sequence instead of one per frame (the speed target
  in ``benchmarks/extraction.py``). When FaceMesh misses the face inside the box (the head left
  it), that frame is retried on the whole frame and its landmarks are expressed in the same crop
  coordinates.
* **Flip augmentation mirrors the landmarks**, not the images: x -> 1 - x and landmark ids swapped
  with their mirror twins (:func:`mirror_permutation`), so landmark i keeps its anatomical meaning
  (the subject's left eye stays "left eye") in the flipped copy. This is exact for a symmetric mesh
  and needs no second FaceMesh pass; ``tests/test_extraction.py`` checks it against extraction on
  mirrored images.
* **Missing faces** (``params.data.missing_face``): frames without a face are filled by linear
  interpolation between the nearest frames with one (``neighbours``), unless more than
  ``max_missing_fraction`` of the sequence is missing, or ``fill`` is ``drop_sequence``: then the
  sequence is dropped. Every such case is a row of ``data/extraction_report.csv``.
* **Resampling**: every sequence becomes ``params.frames`` frames, uniformly in time, by linear
  interpolation.

Extraction runs in ``params.data.workers`` spawned processes (one FaceMesh each) and caches each
finished sequence atomically under ``<run>/cache/extraction/``, keyed by the content of the
sequence's files and the extraction settings: an interrupted run resumes where it stopped, and
changed settings redo only what they affect.
"""
from __future__ import annotations

import concurrent.futures as cf
import contextlib
import hashlib
import json
import multiprocessing
import os
import sys
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from emolib import EMOTIONS, N_LANDMARKS, io
from emolib.datasets import SequenceInfo, iter_frames, read_ckplus, read_video_folder
from emolib.errors import DataError, EmolibError
from emolib.landmarks import LandmarkSet, load_landmarks, save_landmarks

# Bump when the per-frame algorithm changes: it is part of every cache key.
EXTRACTOR_VERSION = "1"
# Margin added around the first frame's face box (fraction of its side, in total): room for the
# face to move within its sequence's fixed box (a dropped jaw, a nod), and the context FaceMesh's
# own detector expects. With less (0.4), FaceMesh missed about 1% of demo faces in their box and
# ran a little slower; at 0.6 the face spans ~190 px of the 300 px crop, about the 192 px input of
# FaceMesh's landmark model, so no detail is lost.
CROP_MARGIN = 0.6
REPORT_COLUMNS = ("sequence", "subject", "emotion", "frames", "frames_without_face", "status", "reason")

# Landmarks on the facial midline of MediaPipe's canonical face: their own mirror images.
MIDLINE_LANDMARKS = (0, 1, 2, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 94, 151, 152,
                     164, 168, 175, 195, 197, 199, 200)


# ---- mirror symmetry ---------------------------------------------------------------------------

def mirror_permutation() -> np.ndarray:
    """The mirror twin of each of the 468 FaceMesh landmarks (an involution).

    MediaPipe's canonical mesh numbers its two halves in the same order: the non-midline ids
    below 248 (the subject's right side) pair, in increasing order, with ids 248..467 (the left
    side). :func:`derive_mirror_permutation` recovers exactly this table from FaceMesh itself
    (matching each landmark to its mirror in frontal photos); the test suite checks they agree.

    Returns:
        ``perm`` of shape (468,): landmark ``i`` of a mirrored face sits where landmark ``perm[i]``
        of the original face sits, mirrored.
    """
    perm = np.arange(N_LANDMARKS)
    midline = set(MIDLINE_LANDMARKS)
    right = [i for i in range(248) if i not in midline]
    left = list(range(248, N_LANDMARKS))
    perm[right] = left
    perm[left] = right
    return perm


def derive_mirror_permutation(images: Optional[Sequence[np.ndarray]] = None) -> np.ndarray:
    """Derive the mirror permutation from FaceMesh: how each landmark moves when the face is mirrored.

    For each frontal photo, the landmarks of the mirrored photo, mirrored back, are matched one to
    one (Hungarian assignment on the summed squared distances) with the photo's own landmarks.

    Args:
        images: frontal face photos (RGB uint8); default: the astronaut and Grace Hopper photos
            that ship with scikit-image and matplotlib.

    Returns:
        The permutation, shape (468,).

    Raises:
        EmolibError: FaceMesh finds no face in one of the images.
    """
    from scipy.optimize import linear_sum_assignment

    if images is None:
        from emolib.demo import load_base_photos

        photos = load_base_photos()
        images = [photos["astronaut"], photos["grace_hopper"]]
    cost = np.zeros((N_LANDMARKS, N_LANDMARKS))
    with FaceMeshExtractor(crop_size=300) as extractor:
        for image in images:
            height, width = image.shape[:2]
            own = extractor.landmarks(image)
            mirrored = extractor.landmarks(np.ascontiguousarray(image[:, ::-1]))
            if own is None or mirrored is None:
                raise EmolibError("derive_mirror_permutation: FaceMesh found no face in a photo")
            mirrored[:, 0] = 1.0 - mirrored[:, 0]
            scale = np.array([width, height])
            diff = (own[:, None, :] - mirrored[None, :, :]) * scale
            cost += (diff ** 2).sum(-1)
    _, perm = linear_sum_assignment(cost)
    return perm


def mirror_landmarks(X: np.ndarray, landmark_ids: Optional[np.ndarray] = None) -> np.ndarray:
    """Mirror landmark coordinates horizontally, keeping each column's anatomical meaning.

    Args:
        X: (..., 2, L) normalised coordinates (x, y in [0, 1] image units).
        landmark_ids: the FaceMesh ids of the L columns (default 0..467); the set must contain the
            mirror twin of each of its ids.

    Returns:
        Array of X's shape: column ``j`` (id ``i``) holds the mirrored position of ``i``'s twin.

    Raises:
        DataError: ``landmark_ids`` lacks the mirror twin of one of its ids.
    """
    X = np.asarray(X)
    ids = np.arange(X.shape[-1]) if landmark_ids is None else np.asarray(landmark_ids, dtype=int)
    twin = mirror_permutation()[ids]
    pos = {int(v): j for j, v in enumerate(ids)}
    missing = sorted({int(t) for t in twin if int(t) not in pos})
    if missing:
        raise DataError(f"cannot mirror landmarks: the set lacks the mirror twins {missing[:10]} "
                        "of some of its ids (flip needs a left/right-symmetric landmark set)")
    cols = np.array([pos[int(t)] for t in twin], dtype=int)
    out = X[..., cols].copy()
    out[..., 0, :] = 1.0 - out[..., 0, :]
    return out


# ---- time: missing frames and resampling -------------------------------------------------------

def fill_missing_frames(X: np.ndarray, found: np.ndarray) -> np.ndarray:
    """Fill frames without a face by linear interpolation between the nearest frames with one.

    Frames before the first (after the last) found frame copy that frame.

    Args:
        X: (n, 2, L) landmarks; rows where ``found`` is False are ignored.
        found: (n,) bool.

    Returns:
        (n, 2, L) float32 with every frame filled.

    Raises:
        ValueError: no frame has a face.
    """
    found = np.asarray(found, dtype=bool)
    if not found.any():
        raise ValueError("no frame has a face: nothing to fill from")
    X = np.asarray(X, dtype=np.float32)
    if found.all():
        return X.copy()
    t = np.arange(len(found))
    flat = X.reshape(len(found), -1)
    filled = np.empty_like(flat)
    for j in range(flat.shape[1]):
        filled[:, j] = np.interp(t, t[found], flat[found, j])
    return filled.reshape(X.shape)


def resample_sequence(X: np.ndarray, frames: int) -> np.ndarray:
    """Resample a sequence to ``frames`` frames, uniformly in time, by linear interpolation.

    The first and last frames (neutral and peak in CK+) are kept exactly.

    Args:
        X: (n, ...) with n >= 1 (a single frame is repeated).
        frames: the number of frames wanted (>= 1).

    Returns:
        (frames, ...) float32.
    """
    X = np.asarray(X, dtype=np.float32)
    n = X.shape[0]
    if n == frames:
        return X.copy()
    if n == 1:
        return np.repeat(X, frames, axis=0)
    position = np.linspace(0.0, n - 1, frames)
    low = np.floor(position).astype(int).clip(0, n - 2)
    weight = (position - low).reshape((-1,) + (1,) * (X.ndim - 1)).astype(np.float32)
    return (1.0 - weight) * X[low] + weight * X[low + 1]


# ---- per frame: crop and FaceMesh --------------------------------------------------------------

def square_box(points_px: np.ndarray, margin: float = CROP_MARGIN) -> tuple[float, float, float]:
    """A square box around points: their bounding box's larger side plus ``margin``, centred.

    Args:
        points_px: (L, 2) pixel coordinates.
        margin: total margin as a fraction of the larger side.

    Returns:
        ``(x0, y0, side)`` in pixels (may reach outside the image).
    """
    low, high = points_px.min(axis=0), points_px.max(axis=0)
    side = float((high - low).max() * (1.0 + margin))
    centre = (low + high) / 2.0
    return float(centre[0] - side / 2), float(centre[1] - side / 2), side


def crop_square(grey: np.ndarray, box: tuple[float, float, float], size: int) -> np.ndarray:
    """Cut ``box`` out of a grey frame and resize it to ``size`` x ``size`` (edges replicated).

    The box is rounded to whole pixels (it is fixed for a whole sequence, so rounding shifts no
    frame against another). Inside the frame this is a slice and one resize, the cheapest path;
    a box reaching past the edge is padded first.
    """
    import cv2

    x0, y0, side = (int(round(v)) for v in box)
    side = max(side, 1)
    height, width = grey.shape[:2]
    left, top = max(0, -x0), max(0, -y0)
    right, bottom = max(0, x0 + side - width), max(0, y0 + side - height)
    if left or top or right or bottom:
        grey = cv2.copyMakeBorder(grey, top, bottom, left, right, cv2.BORDER_REPLICATE)
        x0, y0 = x0 + left, y0 + top
    patch = grey[y0:y0 + side, x0:x0 + side]
    # Area averaging when shrinking (no aliasing), linear when enlarging.
    interpolation = cv2.INTER_AREA if side > size else cv2.INTER_LINEAR
    return cv2.resize(patch, (size, size), interpolation=interpolation)


def _block_tensorflow_import() -> None:
    """In a fresh worker process, keep ``import mediapipe`` from importing TensorFlow.

    mediapipe 0.10.21 imports TensorFlow only for an optional documentation helper
    (``mediapipe.tasks.python.core.optional_dependencies``), which has a fallback when TensorFlow
    is absent. Importing it costs 5-10 s of CPU per worker, more than a whole demo extraction;
    FaceMesh itself does not use it. Never done in a process that already imported TensorFlow.
    """
    if "tensorflow" not in sys.modules:
        sys.modules["tensorflow"] = None  # type: ignore[assignment]


# The wire layout of one NormalizedLandmark holding x, y, z (and nothing else) inside a
# NormalizedLandmarkList: field 1 (tag 0x0a), length 15, then x (0x0d), y (0x15), z (0x1d) floats.
_LANDMARK_WIRE = np.dtype([("tag", "u1"), ("length", "u1"), ("x_tag", "u1"), ("x", "<f4"),
                           ("y_tag", "u1"), ("y", "<f4"), ("z_tag", "u1"), ("z", "<f4")])


def _landmark_xy(landmark_list) -> np.ndarray:
    """(468, 2) float32 x/y of a FaceMesh NormalizedLandmarkList.

    Reading 468 protobuf messages attribute by attribute costs about 0.3 ms a frame, 6% of
    FaceMesh itself; decoding the serialized list with numpy costs a tenth of that. The layout is
    checked, and anything unexpected (a field added by another MediaPipe version) takes the slow,
    always-correct path.
    """
    raw = landmark_list.SerializeToString()
    if len(raw) % _LANDMARK_WIRE.itemsize == 0:
        wire = np.frombuffer(raw, dtype=_LANDMARK_WIRE)
        if (len(wire) >= N_LANDMARKS and (wire["tag"] == 0x0A).all() and (wire["length"] == 15).all()
                and (wire["x_tag"] == 0x0D).all() and (wire["y_tag"] == 0x15).all()):
            return np.stack([wire["x"], wire["y"]], axis=1)[:N_LANDMARKS].astype(np.float32)
    points = landmark_list.landmark
    return np.array([(p.x, p.y) for p in points], dtype=np.float32)[:N_LANDMARKS]


@contextlib.contextmanager
def _quiet_native_logs() -> Iterator[None]:
    """Silence what C++ libraries write straight to file descriptor 2 while the block runs.

    Importing mediapipe (which imports TensorFlow) and starting a FaceMesh graph print a screenful
    of harmless native log lines (CUDA factories on a machine without GPU, the XNNPACK delegate,
    TFLite feedback tensors) that would otherwise fill the notebook report. Only used around
    those two steps; Python-level errors are raised as exceptions, not lost.
    """
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError, AttributeError):  # no real fd 2 (unusual embedding): do nothing
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class FaceMeshExtractor:
    """One MediaPipe FaceMesh (static images, 468 landmarks) and the per-sequence extraction.

    Args:
        crop_size: side of the square grey face crop fed to FaceMesh.
        min_detection_confidence: FaceMesh's face detection threshold.
    """

    def __init__(self, crop_size: int = 300, min_detection_confidence: float = 0.5) -> None:
        with _quiet_native_logs():
            from mediapipe.python.solutions import face_detection, face_mesh

            self._mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1, refine_landmarks=False,
                                            min_detection_confidence=min_detection_confidence)
            # The face box comes from FaceMesh's own first stage (BlazeFace, short range) run alone:
            # a third of a FaceMesh call, once per sequence.
            self._detector = face_detection.FaceDetection(model_selection=0,
                                                          min_detection_confidence=min_detection_confidence)
            # The graphs log their start-up lines on the first image: get them over with here.
            blank = np.zeros((64, 64, 3), dtype=np.uint8)
            self._mesh.process(blank)
            self._detector.process(blank)
        self.crop_size = int(crop_size)
        self._warm = False  # the graph logs one more warning on the first face it finds

    def close(self) -> None:
        self._mesh.close()
        self._detector.close()

    def face_box(self, grey: np.ndarray) -> Optional[tuple[float, float, float]]:
        """The square face box (``x0, y0, side`` in pixels, with the crop margin) of a whole frame.

        BlazeFace's box is square and matches the FaceMesh landmarks' bounding box to within a
        few percent (checked on the demo photos), so the crop is the one a FaceMesh pass would give.

        Returns:
            The box of the most confident face, or None when no face is detected.
        """
        import cv2

        result = self._detector.process(cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB))
        if not result.detections:
            return None
        best = max(result.detections, key=lambda d: d.score[0] if d.score else 0.0)
        rel = best.location_data.relative_bounding_box
        height, width = grey.shape[:2]
        corners = np.array([[rel.xmin * width, rel.ymin * height],
                            [(rel.xmin + rel.width) * width, (rel.ymin + rel.height) * height]])
        return square_box(corners)

    def __enter__(self) -> "FaceMeshExtractor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def landmarks(self, image: np.ndarray) -> Optional[np.ndarray]:
        """FaceMesh on one image (grey or RGB uint8): (468, 2) x/y normalised to it, or None."""
        if image.ndim == 2:
            import cv2

            image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)  # FaceMesh takes RGB only
        if self._warm:
            result = self._mesh.process(np.ascontiguousarray(image))
        else:
            with _quiet_native_logs():
                result = self._mesh.process(np.ascontiguousarray(image))
            self._warm = bool(result.multi_face_landmarks)
        if not result.multi_face_landmarks:
            return None
        return _landmark_xy(result.multi_face_landmarks[0])

    def extract_frames(self, frames: Iterable[tuple[str, np.ndarray]]) -> "SequenceLandmarks":
        """Landmarks of one sequence, frame by frame, in the crop of the sequence's face box.

        Args:
            frames: ``(name, image)`` pairs in time order; images grey (or RGB, made grey).

        Returns:
            :class:`SequenceLandmarks` (NaN rows where no face was found).
        """
        import cv2

        rows: list[Optional[np.ndarray]] = []
        names: list[str] = []
        box: Optional[tuple[float, float, float]] = None
        for name, image in frames:
            grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
            names.append(name)
            points = None
            if box is None:
                box = self.face_box(grey)
            if box is not None:
                points = self.landmarks(crop_square(grey, box, self.crop_size))
            if points is None:
                # No face detected yet, or FaceMesh lost it in the box: look at the whole frame.
                whole = self.landmarks(grey)
                if whole is not None:
                    height, width = grey.shape[:2]
                    pixels = whole * np.array([width, height], dtype=np.float32)
                    if box is None:
                        box = square_box(pixels)
                        points = self.landmarks(crop_square(grey, box, self.crop_size))
                    if points is None:  # express the whole-frame landmarks in crop coordinates
                        x0, y0, side = (float(round(v)) for v in box)  # as crop_square rounds
                        points = (pixels - np.array([x0, y0], dtype=np.float32)) / np.float32(side)
            rows.append(points)
        landmarks = np.full((len(rows), 2, N_LANDMARKS), np.nan, dtype=np.float32)
        for i, points in enumerate(rows):
            if points is not None:
                landmarks[i] = points.T
        found = np.array([r is not None for r in rows], dtype=bool)
        return SequenceLandmarks(landmarks, found, np.array(box if box else (np.nan,) * 3), names)


@dataclass
class SequenceLandmarks:
    """Raw landmarks of one sequence, before filling, resampling and flipping.

    Attributes:
        landmarks: (n, 2, 468) float32, x/y normalised to the face crop; NaN where no face.
        found: (n,) bool, FaceMesh found a face.
        box: (3,) the face box ``x0, y0, side`` in frame pixels (NaN when no face at all).
        frame_names: the n frame names (files, or ``video#index``).
    """

    landmarks: np.ndarray
    found: np.ndarray
    box: np.ndarray
    frame_names: list[str]

    def save(self, path: Path) -> None:
        io.write_npz(path, landmarks=self.landmarks, found=self.found, box=self.box,
                     frame_names=np.array(self.frame_names, dtype=str))

    @classmethod
    def load(cls, path: Path) -> Optional["SequenceLandmarks"]:
        """Read a cached sequence; None when the file is missing or unreadable (then redo it)."""
        try:
            with np.load(path, allow_pickle=False) as f:
                landmarks, found, box = f["landmarks"], f["found"], f["box"]
                names = [str(n) for n in f["frame_names"]]
        except Exception:  # missing, truncated, not an npz: it will be extracted again
            return None
        n = len(names)
        if landmarks.shape != (n, 2, N_LANDMARKS) or found.shape != (n,) or box.shape != (3,):
            return None
        return cls(landmarks.astype(np.float32), found.astype(bool), box.astype(float), names)


# ---- worker processes --------------------------------------------------------------------------

_WORKER_EXTRACTOR: Optional[FaceMeshExtractor] = None


def _exit_when_orphaned(parent: int, interval_s: float = 1.0) -> None:
    """Stop this worker once its parent is gone.

    A parent killed outright (a restarted notebook kernel, ``kill -9``) cannot tell its workers;
    they would wait on the task queue forever, so each one watches for it.
    """
    import threading

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def _init_worker(crop_size: int, min_detection_confidence: float, parent: int) -> None:
    """Pool initializer: one FaceMesh per worker process, single-threaded OpenCV."""
    global _WORKER_EXTRACTOR
    _exit_when_orphaned(parent)
    _block_tensorflow_import()
    import cv2

    cv2.setNumThreads(1)  # the workers are the parallelism; avoid oversubscribing the cores
    _WORKER_EXTRACTOR = FaceMeshExtractor(crop_size, min_detection_confidence)


@dataclass(frozen=True)
class _Task:
    info: SequenceInfo
    cache_path: Path


def _run_task(task: _Task) -> tuple[str, Optional[str]]:
    """Extract one sequence and cache it; returns ``(sequence, error message or None)``.

    Runs in a worker (or in the main process with one worker). Bad input (a corrupt frame) is
    returned as an error for this sequence only; the rest of the data goes on.
    """
    extractor = _WORKER_EXTRACTOR
    if extractor is None:
        raise EmolibError("extraction worker used before its FaceMesh was created")
    try:
        result = extractor.extract_frames(iter_frames(task.info))
    except DataError as exc:
        return task.info.sequence, str(exc)
    except Exception as exc:  # an odd file OpenCV or MediaPipe chokes on: this sequence only
        where = task.info.files[0].parent if task.info.kind == "frames" else task.info.files[0]
        return task.info.sequence, f"{where}: extraction failed ({type(exc).__name__}: {exc})"
    result.save(task.cache_path)
    return task.info.sequence, None


# ---- cache keys --------------------------------------------------------------------------------

def _file_digest(path: Path) -> str:
    digest = hashlib.sha1()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        return f"unreadable:{exc.errno}"
    return digest.hexdigest()


def sequence_cache_key(info: SequenceInfo, crop_size: int, min_detection_confidence: float) -> str:
    """Hash of what decides a sequence's raw landmarks: its files' names and contents, the settings."""
    parts = {"version": EXTRACTOR_VERSION, "crop_size": int(crop_size),
             "min_detection_confidence": float(min_detection_confidence), "kind": info.kind,
             "files": [[p.name, _file_digest(p)] for p in info.files]}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()[:20]


def _cache_path(cache_dir: Path, info: SequenceInfo, key: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in info.sequence)
    return cache_dir / f"{safe}-{key}.npz"


def _remove_stale_temporaries(cache_dir: Path, older_than_s: float = 600.0) -> None:
    """Delete temporary files left by a worker killed mid-write (never taken for results)."""
    now = time.time()
    for tmp in cache_dir.glob(".*.tmp*"):
        try:
            if now - tmp.stat().st_mtime > older_than_s:
                tmp.unlink()
        except OSError:
            pass


def extract_sequences(sequences: Sequence[SequenceInfo], cache_dir: Path, *, crop_size: int = 300,
                      min_detection_confidence: float = 0.5, workers: int = 1,
                      progress: bool = True) -> tuple[dict[str, SequenceLandmarks], dict[str, str]]:
    """Extract (or read from cache) the raw landmarks of every usable sequence.

    Args:
        sequences: from a reader; only ``usable`` ones are extracted.
        cache_dir: where finished sequences are cached (one .npz each, written atomically).
        crop_size: face crop side.
        min_detection_confidence: FaceMesh's detection threshold.
        workers: worker processes (1: in this process).
        progress: show a tqdm progress bar.

    Returns:
        ``(results, errors)``: raw landmarks per sequence id, and an error message per sequence id
        whose files could not be decoded.
    """
    from tqdm.auto import tqdm

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(cache_dir)
    tasks: list[_Task] = []
    results: dict[str, SequenceLandmarks] = {}
    errors: dict[str, str] = {}
    for info in sequences:
        if not info.usable:
            continue
        path = _cache_path(cache_dir, info, sequence_cache_key(info, crop_size, min_detection_confidence))
        cached = SequenceLandmarks.load(path) if path.is_file() else None
        if cached is not None:
            results[info.sequence] = cached
        else:
            tasks.append(_Task(info, path))

    bar = tqdm(total=len(tasks), desc="extracting landmarks", unit="seq", disable=not progress or not tasks)
    try:
        workers = max(1, min(int(workers), len(tasks)))
        if workers == 1:
            global _WORKER_EXTRACTOR
            previous = _WORKER_EXTRACTOR
            _WORKER_EXTRACTOR = FaceMeshExtractor(crop_size, min_detection_confidence) if tasks else None
            try:
                for task in tasks:
                    _collect(_run_task(task), task, results, errors)
                    bar.update()
            finally:
                if _WORKER_EXTRACTOR is not None:
                    _WORKER_EXTRACTOR.close()
                _WORKER_EXTRACTOR = previous
        else:
            by_sequence = {t.info.sequence: t for t in tasks}
            # spawn: a fresh interpreter per worker (fork would copy a kernel's threads and any
            # TensorFlow state, which is unsafe).
            context = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                        initargs=(crop_size, min_detection_confidence, os.getpid())) as pool:
                futures = [pool.submit(_run_task, t) for t in tasks]
                try:
                    for future in cf.as_completed(futures):
                        sequence, error = future.result()
                        _collect((sequence, error), by_sequence[sequence], results, errors)
                        bar.update()
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
    except BrokenProcessPool as exc:
        raise EmolibError(
            f"an extraction worker process died ({exc}); finished sequences are cached, run again to "
            "resume. (A Python script that calls this with data.workers > 1 must guard its main code "
            "with `if __name__ == \"__main__\":`, as every program using multiprocessing's spawn must; "
            "otherwise set data.workers: 1.)") from None
    finally:
        bar.close()
    return results, errors


def _collect(outcome: tuple[str, Optional[str]], task: _Task, results: dict, errors: dict) -> None:
    sequence, error = outcome
    if error is not None:
        errors[sequence] = error
        return
    loaded = SequenceLandmarks.load(task.cache_path)
    if loaded is None:
        errors[sequence] = f"{task.cache_path}: extraction finished but its cache file cannot be read"
    else:
        results[sequence] = loaded


# ---- the stage ---------------------------------------------------------------------------------

def list_sequences(params, run) -> list[SequenceInfo]:
    """The sequences of ``params.data.source`` (writing the demo dataset first when it is ``demo``).

    Raises:
        DataError: the data folder is missing, empty or holds no usable labelled sequence.
    """
    source = params.data.source
    emotions = list(params.emotions)
    if source == "demo":
        root = demo_source_path(params, run)
        from emolib.demo import write_demo_dataset

        demo = params.data.demo
        write_demo_dataset(root, seed=demo.seed, subjects=demo.subjects,
                           frames_per_sequence=demo.frames_per_sequence,
                           contempt_sequences=demo.contempt_sequences, image_size=demo.image_size)
        io.write_text(run.data / "ground_truth.json", (root / "ground_truth.json").read_text())
        return read_ckplus(root, emotions)
    if source == "ckplus":
        return read_ckplus(Path(params.data.path), emotions)
    if source == "videos":
        return read_video_folder(Path(params.data.path), emotions)
    raise EmolibError(f"list_sequences: source {source!r} holds no images")


def demo_source_path(params, run) -> Path:
    """Where the demo dataset is written: ``params.data.path`` or ``<run>/data/demo_source``."""
    return Path(params.data.path) if params.data.path else run.data / "demo_source"


def _finish_sequence(info: SequenceInfo, raw: SequenceLandmarks, params) -> tuple[Optional[np.ndarray], dict]:
    """Apply the missing-face policy and resample; returns (X (P, 2, L) or None, report row)."""
    n = len(raw.found)
    missing = int((~raw.found).sum())
    row = _report_row(info, frames=n, frames_without_face=missing, status="ok")
    policy = params.data.missing_face
    where = info.files[0].parent if info.kind == "frames" else info.files[0]
    if missing == n:
        row.update(status="dropped", reason=f"{where}: no face found in any of the {n} frames")
        return None, row
    if missing:
        first = raw.frame_names[int(np.argmin(raw.found))]
        if missing / n > policy.max_missing_fraction:
            row.update(status="dropped", reason=f"{missing} of {n} frames without a face (first: {first}), "
                       f"more than missing_face.max_missing_fraction={policy.max_missing_fraction}")
            return None, row
        if policy.fill == "drop_sequence":
            row.update(status="dropped", reason=f"{missing} of {n} frames without a face (first: {first}) "
                       "and missing_face.fill is drop_sequence")
            return None, row
        row.update(status="filled", reason=f"{missing} of {n} frames without a face (first: {first}), "
                   "filled from neighbouring frames")
    X = fill_missing_frames(raw.landmarks, raw.found)
    return resample_sequence(X, params.frames), row


def _report_row(info: SequenceInfo, *, frames=None, frames_without_face=None, status="", reason="") -> dict:
    return {"sequence": info.sequence, "subject": info.subject, "emotion": info.emotion or "",
            "frames": frames if frames is not None else (len(info.files) if info.kind == "frames" else None),
            "frames_without_face": frames_without_face, "status": status, "reason": reason}


def _assemble(items: list[tuple[SequenceInfo, np.ndarray]], flip: bool) -> LandmarkSet:
    """Stack finished sequences (and their mirrored copies) into a LandmarkSet."""
    X, emotion, subject, sequence, flipped = [], [], [], [], []
    for info, x in items:
        for mirrored in ([False, True] if flip else [False]):
            X.append(mirror_landmarks(x) if mirrored else x)
            emotion.append(info.emotion)
            subject.append(info.subject)
            sequence.append(info.sequence)
            flipped.append(mirrored)
    return LandmarkSet(np.asarray(X, dtype=np.float32), np.array(emotion, dtype=str),
                       np.array(subject, dtype=str), np.array(sequence, dtype=str),
                       np.array(flipped, dtype=bool), np.arange(N_LANDMARKS))


def _landmark_source(params) -> tuple[LandmarkSet, list[dict]]:
    """``source: landmarks``: validate, keep the studied emotions, resample, flip if asked."""
    path = Path(params.data.path)
    data = load_landmarks(path)
    rows, keep = [], np.zeros(len(data), dtype=bool)
    for i in range(len(data)):
        keep[i] = data.emotion[i] in params.emotions
    seen = set()
    for i in range(len(data)):
        if data.sequence[i] in seen:
            continue
        seen.add(data.sequence[i])
        info = SequenceInfo(str(data.sequence[i]), str(data.subject[i]), str(data.emotion[i]), "frames")
        ok = bool(keep[i])
        rows.append(_report_row(info, frames=data.frames, frames_without_face=0,
                                status="ok" if ok else "skipped",
                                reason="" if ok else f"{data.emotion[i]} is not in params.emotions"))
    if not keep.any():
        raise DataError(f"{path}: no sample has one of the emotions {list(params.emotions)}")
    data = data.subset(np.where(keep)[0])
    X = np.stack([resample_sequence(x, params.frames) for x in data.X]) if data.frames != params.frames else data.X
    data = LandmarkSet(X, data.emotion, data.subject, data.sequence, data.flipped, data.landmark_ids)
    if params.data.flip and not data.flipped.any():
        mirrored = mirror_landmarks(data.X, data.landmark_ids)
        order = np.argsort(np.r_[np.arange(len(data)) * 2, np.arange(len(data)) * 2 + 1], kind="stable")
        data = LandmarkSet(np.concatenate([data.X, mirrored])[order],
                           np.concatenate([data.emotion, data.emotion])[order],
                           np.concatenate([data.subject, data.subject])[order],
                           np.concatenate([data.sequence, data.sequence])[order],
                           np.r_[np.zeros(len(data), bool), np.ones(len(data), bool)][order],
                           data.landmark_ids)
    return data, rows


def prepare_landmarks(params, run, progress: bool = True) -> LandmarkSet:
    """Stage 01: the landmark set of ``params.data.source``, written to the run folder.

    Writes ``data/landmarks.npz`` (X (N, params.frames, 2, 468), one row per sequence and, with
    ``params.data.flip``, one more per mirrored copy, which keeps the sequence id) and
    ``data/extraction_report.csv`` (one row per sequence found: status ok / filled / dropped /
    skipped / error, with a reason). Source ``demo`` also writes the demo dataset and copies its
    ``ground_truth.json`` to ``data/``.

    Args:
        params: validated parameters (:class:`emolib.config.Params`).
        run: the run folder (:class:`emolib.run_folder.RunFolder`).
        progress: show progress bars.

    Returns:
        The landmark set written.

    Raises:
        DataError: the data folder or file is missing, empty, has no usable labelled sequence, or
            no sequence could be extracted.
    """
    import pandas as pd

    run.ensure()
    if params.data.source == "landmarks":
        data, rows = _landmark_source(params)
    else:
        sequences = list_sequences(params, run)
        raw, errors = extract_sequences(
            sequences, run.cache / "extraction", crop_size=params.data.crop_size,
            min_detection_confidence=params.data.min_detection_confidence,
            workers=params.data.workers, progress=progress)
        rows, items = [], []
        for info in sequences:
            if not info.usable:
                rows.append(_report_row(info, status=info.status, reason=info.reason))
            elif info.sequence in errors:
                rows.append(_report_row(info, status="error", reason=errors[info.sequence]))
            else:
                X, row = _finish_sequence(info, raw[info.sequence], params)
                rows.append(row)
                if X is not None:
                    items.append((info, X))
        if not items:
            report = pd.DataFrame(rows, columns=list(REPORT_COLUMNS))
            io.write_csv(run.extraction_report, report)
            counts = report["status"].value_counts().to_dict()
            raise DataError(f"no sequence could be extracted ({counts}); see {run.extraction_report}")
        data = _assemble(items, params.data.flip)
    report = pd.DataFrame(rows, columns=list(REPORT_COLUMNS))
    report["frames"] = report["frames"].astype("Int64")
    report["frames_without_face"] = report["frames_without_face"].astype("Int64")
    io.write_csv(run.extraction_report, report.sort_values("sequence", kind="stable"))
    save_landmarks(run.landmarks, data)
    return data


def read_report(run) -> "pd.DataFrame":  # noqa: F821 (pandas imported lazily)
    """The extraction report of a run folder as a DataFrame.

    Raises:
        DataError: the report is missing.
    """
    import pandas as pd

    if not run.extraction_report.is_file():
        raise DataError(f"{run.extraction_report}: extraction report not found (run stage 01 first)")
    return pd.read_csv(run.extraction_report, dtype={"sequence": str, "subject": str},
                       keep_default_na=False, na_values={"frames": [""], "frames_without_face": [""]})


# ---- looking at the results (notebook 01) ------------------------------------------------------

def cached_sequence(params, run, info: SequenceInfo) -> Optional[SequenceLandmarks]:
    """The cached raw landmarks of one sequence under the current settings (None if not cached)."""
    key = sequence_cache_key(info, params.data.crop_size, params.data.min_detection_confidence)
    return SequenceLandmarks.load(_cache_path(run.cache / "extraction", info, key))


def example_frames(params, run, sequences: Optional[Sequence[str]] = None, per_emotion: int = 1,
                   which: Sequence[str] = ("first", "last")) -> list[dict]:
    """Face crops with their landmarks, for looking at what extraction saw.

    Args:
        params: the run's parameters.
        run: the run folder (extraction must have run: crops come from its cache's face boxes).
        sequences: sequence ids to show (default: the first extracted ``per_emotion`` per emotion).
        per_emotion: how many sequences per emotion when ``sequences`` is None.
        which: frames of each sequence to show: ``first``, ``middle``, ``last``.

    Returns:
        One dict per frame: sequence, emotion, subject, frame (name), image ((S, S) uint8 grey
        crop), landmarks ((2, 468) normalised to the crop, NaN when no face was found). Empty for
        ``source: landmarks`` (no images).
    """
    if params.data.source == "landmarks":
        return []
    infos = [s for s in list_sequences(params, run) if s.usable]
    if sequences is None:
        # Different subjects for different emotions where the data allows: the j-th emotion starts
        # its pick at the j-th extracted sequence of that emotion.
        chosen = []
        for j, emotion in enumerate(e for e in EMOTIONS if e in params.emotions):
            candidates = [s for s in infos if s.emotion == emotion]
            if not candidates:
                continue
            start = (j * per_emotion) % len(candidates)
            picked = 0
            for info in candidates[start:] + candidates[:start]:
                if picked == per_emotion:
                    break
                raw = cached_sequence(params, run, info)
                if raw is not None and raw.found.any():  # extracted, with a face to show
                    chosen.append(info)
                    picked += 1
    else:
        wanted = set(sequences)
        chosen = [s for s in infos if s.sequence in wanted]
    out = []
    for info in chosen:
        raw = cached_sequence(params, run, info)
        if raw is None or not raw.found.any() or not np.isfinite(raw.box).all():
            continue
        n = len(raw.found)
        positions = {"first": 0, "middle": n // 2, "last": n - 1}
        frames = list(iter_frames(info)) if info.kind == "video" else None
        for label in which:
            index = positions[label]
            grey = frames[index][1] if frames is not None else _read_one(info.files[index])
            out.append({"sequence": info.sequence, "emotion": info.emotion, "subject": info.subject,
                        "frame": raw.frame_names[index], "position": label,
                        "image": crop_square(grey, tuple(raw.box), params.data.crop_size),
                        "landmarks": raw.landmarks[index]})
    return out


def _read_one(path: Path) -> np.ndarray:
    from emolib.datasets import read_frame

    return read_frame(path)


def check_outputs(params, run) -> dict:
    """Check what stage 01 wrote; raise if anything is off (run at the end of notebook 01).

    Checks: the landmark file validates (shapes, no NaN, known emotions), has ``params.frames``
    frames and 468 landmarks, coordinates lie in a plausible range, only studied emotions, every
    sequence has its mirrored copy when ``flip`` is on, and the report accounts for every sequence
    in the landmark file with a known status.

    Returns:
        A summary: samples, sequences, subjects, per-emotion counts, report status counts.

    Raises:
        DataError: naming the file and what is wrong.
    """
    data = load_landmarks(run.landmarks)
    where = str(run.landmarks)
    if data.frames != params.frames:
        raise DataError(f"{where}: {data.frames} frames per sample, params.frames is {params.frames}")
    if data.n_landmarks != N_LANDMARKS or not np.array_equal(data.landmark_ids, np.arange(N_LANDMARKS)):
        raise DataError(f"{where}: expected all {N_LANDMARKS} landmarks in id order")
    low, high = float(data.X.min()), float(data.X.max())
    if low < -0.5 or high > 1.5:
        raise DataError(f"{where}: coordinates range over [{low:.2f}, {high:.2f}], expected about [0, 1]")
    extra = sorted(set(data.emotion.tolist()) - set(params.emotions))
    if extra:
        raise DataError(f"{where}: emotions {extra} are not in params.emotions")
    absent = [e for e in params.emotions if e not in set(data.emotion.tolist())]
    if absent:
        raise DataError(f"{where}: no sample of {absent}; every studied emotion needs samples")
    if params.data.flip:
        originals = set(data.sequence[~data.flipped].tolist())
        mirrored = set(data.sequence[data.flipped].tolist())
        if originals != mirrored:
            raise DataError(f"{where}: flip is on but {len(originals ^ mirrored)} sequence(s) lack their pair")
    report = read_report(run)
    unknown = sorted(set(report["status"]) - {"ok", "filled", "dropped", "skipped", "error"})
    if unknown:
        raise DataError(f"{run.extraction_report}: unknown status value(s) {unknown}")
    kept = set(report.loc[report["status"].isin(["ok", "filled"]), "sequence"].astype(str))
    if kept != set(data.sequence.tolist()):
        raise DataError(f"{run.extraction_report}: its ok/filled sequences differ from those in {where}")
    return {"samples": len(data), "sequences": len(set(data.sequence.tolist())),
            "subjects": len(set(data.subject.tolist())), "frames": data.frames,
            "per_emotion": {e: int((data.emotion[~data.flipped] == e).sum()) for e in params.emotions},
            "report": report["status"].value_counts().to_dict()}
