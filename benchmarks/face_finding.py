"""Face finding on hard frames: how many frames emolib finds a face in, against what MediaPipe can.

    .venv/bin/python benchmarks/face_finding.py                 # writes the hard case, measures (~1 min)
    .venv/bin/python benchmarks/face_finding.py --json

The hard case is a CK+-shaped tree built from the bundled public-domain photos
(:func:`emolib.data.photos.load_base_photos`, and their mirror images), each pasted into a 640 x 490
frame on a textured background with a few pixels of shift and a degree or two of rotation between
frames, in colour and in grey: faces about a fifth of the frame's width (as issue 12 found them
lost), smaller ones (a tenth), a turned head (20 degrees of roll), and dark frames (a third of the
light). Per sequence it prints the frames in which

* ``emolib``: stage 01's extraction (:func:`emolib.data.extract.extract_sequences`) found a face;
* ``mediapipe``: MediaPipe finds one at all on the frame as it came, by any of its means: bare
  FaceMesh on the whole frame, or either face detector (short and full range) followed by FaceMesh
  on the detected face's crop. emolib should lose none of these.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FRAME_W, FRAME_H = 640, 490
# name -> (face width as a fraction of the frame, roll in degrees, light factor)
CASES = {"fifth": (0.2, 0.0, 1.0), "tenth": (0.1, 0.0, 1.0), "turned": (0.2, 20.0, 1.0), "dark": (0.2, 0.0, 0.33)}


def _face_width(photo: np.ndarray) -> float:
    """The face's width in a photo, in pixels (MediaPipe's short-range detector)."""
    from mediapipe.python.solutions import face_detection

    with face_detection.FaceDetection(model_selection=0) as detector:
        result = detector.process(photo)
    box = result.detections[0].location_data.relative_bounding_box
    return box.width * photo.shape[1]


def _background(rng: np.random.Generator) -> np.ndarray:
    import cv2

    small = rng.integers(60, 200, size=(FRAME_H // 20, FRAME_W // 20, 3), dtype=np.uint8)
    return cv2.resize(small, (FRAME_W, FRAME_H), interpolation=cv2.INTER_CUBIC)


def hard_frames(photo: np.ndarray, case: str, n_frames: int, seed: int) -> list[np.ndarray]:
    """``n_frames`` RGB frames of one hard sequence made from ``photo``."""
    import cv2

    fraction, roll, light = CASES[case]
    rng = np.random.default_rng(seed)
    scale = fraction * FRAME_W / _face_width(photo)
    face = cv2.resize(photo, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    h, w = face.shape[:2]
    cx, cy = rng.uniform(0.3, 0.7) * FRAME_W, rng.uniform(0.35, 0.65) * FRAME_H
    base = _background(rng)
    frames = []
    for _ in range(n_frames):
        canvas = base.copy()
        dx, dy = rng.normal(0, 3, size=2)
        x0, y0 = int(cx - w / 2 + dx), int(cy - h / 2 + dy)
        xs, ys = max(0, x0), max(0, y0)
        xe, ye = min(FRAME_W, x0 + w), min(FRAME_H, y0 + h)
        canvas[ys:ye, xs:xe] = face[ys - y0:ye - y0, xs - x0:xe - x0]
        angle = roll + rng.uniform(-2.0, 2.0)
        matrix = cv2.getRotationMatrix2D((cx + dx, cy + dy), angle, 1.0)
        canvas = cv2.warpAffine(canvas, matrix, (FRAME_W, FRAME_H), borderMode=cv2.BORDER_REFLECT)
        frames.append(np.clip(canvas.astype(np.float32) * light, 0, 255).astype(np.uint8))
    return frames


def write_hard_case(root: Path, n_frames: int = 8, cases=tuple(CASES)) -> Path:
    """A CK+-shaped tree of hard sequences: per case, each photo and its mirror, in colour and grey.

    Returns:
        ``root`` (holding ``cohn-kanade-images/`` and ``Emotion/``; every sequence labelled happy).
    """
    import cv2

    from emolib.data.photos import load_base_photos

    photos = load_base_photos()
    photos = {**photos, **{f"{name}_mirror": np.ascontiguousarray(p[:, ::-1]) for name, p in photos.items()}}
    subject = 0
    for case in cases:
        for p_index, (_, photo) in enumerate(sorted(photos.items())):
            for colour in (True, False):
                subject += 1
                sid, seq = f"S{subject:03d}", "001"
                folder = root / "cohn-kanade-images" / sid / seq
                folder.mkdir(parents=True, exist_ok=True)
                for k, frame in enumerate(hard_frames(photo, case, n_frames, seed=subject)):
                    code = cv2.COLOR_RGB2BGR if colour else cv2.COLOR_RGB2GRAY
                    image = cv2.cvtColor(frame, code)
                    cv2.imwrite(str(folder / f"{sid}_{seq}_{k + 1:08d}.png"), image)
                label = root / "Emotion" / sid / seq / f"{sid}_{seq}_{n_frames:08d}_emotion.txt"
                label.parent.mkdir(parents=True, exist_ok=True)
                label.write_text("5.0\n")
                with (root / "cases.txt").open("a") as fh:
                    fh.write(f"{sid}_{seq} {case} {'colour' if colour else 'grey'} photo{p_index}\n")
    return root


def mediapipe_finds(path: Path, mesh, detectors) -> bool:
    """Whether MediaPipe finds a face in one frame file by any of its means (frame as it came)."""
    import cv2

    from emolib.data.facemesh import crop_square, square_box

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
    if mesh.process(rgb).multi_face_landmarks:
        return True
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    for detector in detectors:
        result = detector.process(rgb)
        for detection in result.detections or []:
            rel = detection.location_data.relative_bounding_box
            corners = np.array([[rel.xmin * FRAME_W, rel.ymin * FRAME_H],
                                [(rel.xmin + rel.width) * FRAME_W, (rel.ymin + rel.height) * FRAME_H]])
            crop = crop_square(grey, square_box(corners), 300)
            if mesh.process(cv2.cvtColor(crop, cv2.COLOR_GRAY2RGB)).multi_face_landmarks:
                return True
    return False


def measure(root: Path, with_mediapipe: bool = True) -> dict[str, dict]:
    """Per sequence: frames, frames emolib found a face in, and (optionally) frames MediaPipe can."""
    from emolib.data.extract import extract_sequences
    from emolib.data.sources import read_ckplus

    listing = root / "cases.txt"
    cases = dict(line.split(" ", 1) for line in listing.read_text().splitlines()) if listing.is_file() else {}
    sequences = [s for s in read_ckplus(root) if s.usable]
    with tempfile.TemporaryDirectory(prefix="faces-cache-") as cache:
        results, errors = extract_sequences(sequences, Path(cache), workers=1, progress=False)
    out = {}
    for info in sequences:
        raw = results.get(info.sequence)
        out[info.sequence] = {"case": cases.get(info.sequence, ""), "frames": len(info.files),
                              "emolib": int(raw.found.sum()) if raw is not None else 0,
                              "finder": getattr(raw, "finder", "?") if raw is not None else errors.get(info.sequence)}
    if with_mediapipe:
        from mediapipe.python.solutions import face_detection, face_mesh

        mesh = face_mesh.FaceMesh(static_image_mode=True, max_num_faces=1)
        detectors = [face_detection.FaceDetection(model_selection=m) for m in (0, 1)]
        for info in sequences:
            out[info.sequence]["mediapipe"] = sum(mediapipe_finds(p, mesh, detectors) for p in info.files)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="write (or reuse) the hard case here (default: a temporary folder)")
    parser.add_argument("--data", type=Path, help="measure this CK+-shaped folder instead (e.g. the demo dataset)")
    parser.add_argument("--frames", type=int, default=8)
    parser.add_argument("--no-mediapipe", action="store_true", help="skip the MediaPipe reference")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="faces-hard-") as tmp:
        root = args.data or args.root or Path(tmp) / "hard"
        if args.data is None and not (root / "cases.txt").is_file():
            write_hard_case(root, args.frames)
        table = measure(root, with_mediapipe=not args.no_mediapipe)
    print(f"{'sequence':10} {'case':28} frames emolib mediapipe finder   ({os.cpu_count()} cores)")
    for seq, row in table.items():
        print(f"{seq:10} {row['case']:28} {row['frames']:6d} {row['emolib']:6d} {row.get('mediapipe', '-'):>9} "
              f"{row['finder']}")
    total = {k: sum(r.get(k, 0) for r in table.values()) for k in ("frames", "emolib", "mediapipe")}
    lost = sum(max(0, r.get("mediapipe", 0) - r["emolib"]) for r in table.values())
    print(f"total: {total['emolib']} of {total['frames']} frames found by emolib, {total['mediapipe']} by "
          f"MediaPipe; frames MediaPipe finds that emolib loses: {lost}")
    if args.json:
        print(json.dumps({"total": total, "lost": lost, "sequences": table}))


if __name__ == "__main__":
    main()
