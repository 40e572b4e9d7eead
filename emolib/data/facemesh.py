"""MediaPipe FaceMesh on frames: the face box, the crop, the 468 landmarks, and their mirror symmetry.

Per frame (paper, section 3): face crop, resize to ``crop_size`` (300) square greyscale, the 468
FaceMesh landmarks, x/y normalised to the crop.

* **One face box per sequence.** The square box (the face's bounding box plus a margin) is found
  on the first frame where MediaPipe sees a face, by the first of its finders that does
  (:meth:`FaceMeshExtractor.find_face`): the short-range face detector (BlazeFace, FaceMesh's own
  first stage), the full-range one (small, distant faces), then FaceMesh on the whole frame, each
  on the frame as it came (colour where it is colour: grey hides small and dim faces from them).
  Every frame of the sequence is cropped with that box, grey (the paper's crops). The paper crops "from each
  video"; a fixed box keeps the head's own small motion in the coordinates instead of re-centring
  it away, and costs one detector call per sequence instead of one per frame (the speed target
  in ``benchmarks/extraction.py``). When FaceMesh misses the face inside the box (the head left
  it), that frame is retried on the whole frame and its landmarks are expressed in the same crop
  coordinates.
* **Flip augmentation mirrors the landmarks**, not the images: x -> 1 - x and landmark ids swapped
  with their mirror twins (:func:`mirror_permutation`), so landmark i keeps its anatomical meaning
  (the subject's left eye stays "left eye") in the flipped copy. This is exact for a symmetric mesh
  and needs no second FaceMesh pass; the tests check it against extraction on mirrored images.
"""
from __future__ import annotations

import contextlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Optional, Sequence

import numpy as np

from emolib import io
from emolib.errors import DataError, EmolibError
from emolib.vocab import N_LANDMARKS

# Margin added around the first frame's face box (fraction of its side, in total): room for the
# face to move within its sequence's fixed box (a dropped jaw, a nod), and the context FaceMesh's
# own detector expects. With less (0.4), FaceMesh missed about 1% of demo faces in their box and
# ran a little slower; at 0.6 the face spans ~190 px of the 300 px crop, about the 192 px input of
# FaceMesh's landmark model, so no detail is lost.
CROP_MARGIN = 0.6


# MediaPipe's face detectors, in the order tried (``model_selection`` of
# ``mp.solutions.face_detection``): short range first (the faster, and the better on faces filling
# much of the frame, as in CK+), then full range (faces down to a few percent of the frame).
DETECTORS = {"short_range": 0, "full_range": 1}
# What can give a sequence its face box: the two detectors, then FaceMesh on the whole frame.
FACE_FINDERS = (*DETECTORS, "facemesh")

# Landmarks on the facial midline of MediaPipe's canonical face: their own mirror images.
MIDLINE_LANDMARKS = (0, 1, 2, 4, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 94, 151, 152,
                     164, 168, 175, 195, 197, 199, 200)


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
        from emolib.data.photos import load_base_photos

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


def block_tensorflow_import() -> None:
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
            # The face box comes from FaceMesh's own first stage (BlazeFace) run alone: a third of a
            # FaceMesh call, once per sequence. Short range (faces within ~2 m, most of the frame)
            # first; full range (small, distant faces) when it finds none.
            self._detectors = {
                name: face_detection.FaceDetection(model_selection=selection,
                                                   min_detection_confidence=min_detection_confidence)
                for name, selection in DETECTORS.items()}
            # The graphs log their start-up lines on the first image: get them over with here.
            blank = np.zeros((64, 64, 3), dtype=np.uint8)
            self._mesh.process(blank)
            for detector in self._detectors.values():
                detector.process(blank)
        self.crop_size = int(crop_size)
        self._warm = False  # the graph logs one more warning on the first face it finds

    def close(self) -> None:
        self._mesh.close()
        for detector in self._detectors.values():
            detector.close()

    def face_box(self, image: np.ndarray, detector: str = "short_range") -> Optional[tuple[float, float, float]]:
        """The square face box (``x0, y0, side`` in pixels, with the crop margin) of a whole frame.

        BlazeFace's box is square and matches the FaceMesh landmarks' bounding box to within a
        few percent (checked on the demo photos), so the crop is the one a FaceMesh pass would give.

        Args:
            image: the frame as it came: grey (H, W) or RGB (H, W, 3) uint8.
            detector: ``short_range`` or ``full_range`` (:data:`DETECTORS`).

        Returns:
            The box of the most confident face, or None when no face is detected.
        """
        result = self._detectors[detector].process(np.ascontiguousarray(_rgb(image)))
        if not result.detections:
            return None
        best = max(result.detections, key=lambda d: d.score[0] if d.score else 0.0)
        rel = best.location_data.relative_bounding_box
        height, width = image.shape[:2]
        corners = np.array([[rel.xmin * width, rel.ymin * height],
                            [(rel.xmin + rel.width) * width, (rel.ymin + rel.height) * height]])
        return square_box(corners)

    def __enter__(self) -> "FaceMeshExtractor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def landmarks(self, image: np.ndarray) -> Optional[np.ndarray]:
        """FaceMesh on one image (grey or RGB uint8): (468, 2) x/y normalised to it, or None."""
        image = _rgb(image)  # FaceMesh takes RGB only
        if self._warm:
            result = self._mesh.process(np.ascontiguousarray(image))
        else:
            with _quiet_native_logs():
                result = self._mesh.process(np.ascontiguousarray(image))
            self._warm = bool(result.multi_face_landmarks)
        if not result.multi_face_landmarks:
            return None
        return _landmark_xy(result.multi_face_landmarks[0])

    def find_face(self, image: np.ndarray, grey: np.ndarray) -> tuple[Optional[tuple[float, float, float]],
                                                                    Optional[np.ndarray], str]:
        """The face box of a sequence, from one frame: every finder MediaPipe has, before the frame
        counts as faceless. Short-range detector, full-range detector (each on the frame as it
        came), then FaceMesh on the whole frame (its landmarks' bounding box).

        Returns:
            ``(box, landmarks in the crop or None, finder)``; ``(None, None, "")`` when none finds a face.
        """
        for name in DETECTORS:
            box = self.face_box(image, name)
            if box is not None:
                points = self.landmarks(crop_square(grey, box, self.crop_size))
                if points is not None:
                    return box, points, name
                # A box FaceMesh sees no face in: the next finder may give a better one.
        whole = self.landmarks(image)
        if whole is None:
            return None, None, ""
        height, width = grey.shape[:2]
        box = square_box(whole * np.array([width, height], dtype=np.float32))
        points = self.landmarks(crop_square(grey, box, self.crop_size))
        return box, (points if points is not None else _in_box(whole, grey.shape, box)), "facemesh"

    def extract_frames(self, frames: Iterable[tuple]) -> "SequenceLandmarks":
        """Landmarks of one sequence, frame by frame, in the crop of the sequence's face box.

        Args:
            frames: ``(name, image)`` or ``(name, image or None, why)`` in time order; images as
                they came (grey or RGB); None for a frame that could not be read (it counts as a
                frame without a face, and ``why`` is kept).

        Returns:
            :class:`SequenceLandmarks` (NaN rows where no face was found).
        """
        import cv2

        rows: list[Optional[np.ndarray]] = []
        names: list[str] = []
        unreadable: list[str] = []
        box: Optional[tuple[float, float, float]] = None
        finder = ""
        for item in frames:
            name, image = item[0], item[1]
            names.append(name)
            unreadable.append(item[2] if len(item) > 2 and image is None else "")
            if image is None:
                rows.append(None)
                continue
            grey = image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
            if box is None:
                box, points, finder = self.find_face(image, grey)
                rows.append(points)
                continue
            points = self.landmarks(crop_square(grey, box, self.crop_size))
            if points is None:
                # FaceMesh lost the face in the box (the head left it): look at the whole frame.
                whole = self.landmarks(image)
                if whole is not None:
                    points = _in_box(whole, grey.shape, box)
            rows.append(points)
        landmarks = np.full((len(rows), 2, N_LANDMARKS), np.nan, dtype=np.float32)
        for i, points in enumerate(rows):
            if points is not None:
                landmarks[i] = points.T
        found = np.array([r is not None for r in rows], dtype=bool)
        return SequenceLandmarks(landmarks, found, np.array(box if box else (np.nan,) * 3), names,
                                 unreadable, finder)


def _rgb(image: np.ndarray) -> np.ndarray:
    import cv2

    return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB) if image.ndim == 2 else image


def _in_box(whole: np.ndarray, shape: tuple, box: tuple[float, float, float]) -> np.ndarray:
    """Whole-frame landmarks (normalised to the frame) expressed in the crop coordinates of ``box``."""
    height, width = shape[:2]
    pixels = whole * np.array([width, height], dtype=np.float32)
    x0, y0, side = (float(round(v)) for v in box)  # as crop_square rounds
    return (pixels - np.array([x0, y0], dtype=np.float32)) / np.float32(side)


@dataclass
class SequenceLandmarks:
    """Raw landmarks of one sequence, before filling, resampling and flipping.

    Attributes:
        landmarks: (n, 2, 468) float32, x/y normalised to the face crop; NaN where no face.
        found: (n,) bool, FaceMesh found a face.
        box: (3,) the face box ``x0, y0, side`` in frame pixels (NaN when no face at all).
        frame_names: the n frame names (files, or ``video#index``).
        unreadable: (n,) why each frame could not be read ("" for a frame that was read).
        finder: which finder gave the face box (:data:`FACE_FINDERS`; "" when none found a face).
    """

    landmarks: np.ndarray
    found: np.ndarray
    box: np.ndarray
    frame_names: list[str]
    unreadable: list[str] = field(default_factory=list)
    finder: str = ""

    def __post_init__(self) -> None:
        if not self.unreadable:
            self.unreadable = [""] * len(self.frame_names)

    def save(self, path: Path) -> None:
        io.write_npz(path, landmarks=self.landmarks, found=self.found, box=self.box,
                     frame_names=np.array(self.frame_names, dtype=str),
                     unreadable=np.array(self.unreadable, dtype=str), finder=np.array(self.finder))

    @classmethod
    def load(cls, path: Path) -> Optional["SequenceLandmarks"]:
        """Read a cached sequence; None when the file is missing or unreadable (then redo it)."""
        try:
            with np.load(path, allow_pickle=False) as f:
                landmarks, found, box = f["landmarks"], f["found"], f["box"]
                names = [str(n) for n in f["frame_names"]]
                unreadable = [str(u) for u in f["unreadable"]]
                finder = str(f["finder"])
        except Exception:  # missing, truncated, not an npz, an older layout: extracted again
            return None
        n = len(names)
        if (landmarks.shape != (n, 2, N_LANDMARKS) or found.shape != (n,) or box.shape != (3,)
                or len(unreadable) != n):
            return None
        return cls(landmarks.astype(np.float32), found.astype(bool), box.astype(float), names, unreadable, finder)
