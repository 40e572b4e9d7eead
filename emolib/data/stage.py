"""Stage 01: the landmark set of ``params.data.source``, into ``data/landmarks.npz``.

Sources: the demo dataset (written first, then read as CK+), CK+, a folder of videos with
``labels.csv`` (:mod:`emolib.data.sources`), or a landmark file. Images go through FaceMesh
(:mod:`emolib.data.facemesh`, in worker processes: :mod:`emolib.data.extract`); then, per sequence:

* **Missing faces** (``params.data.missing_face``): frames without a face are filled by linear
  interpolation between the nearest frames with one (``neighbours``), unless more than
  ``max_missing_fraction`` of the sequence is missing, or ``fill`` is ``drop_sequence``: then the
  sequence is dropped. Every such case is a row of ``data/extraction_report.csv``.
* **Resampling**: every sequence becomes ``params.frames`` frames, uniformly in time, by linear
  interpolation.
* **Flip augmentation** (``data.flip``): a mirrored copy of every sequence
  (:func:`emolib.data.facemesh.mirror_landmarks`).
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import numpy as np

from emolib import io
from emolib.data.extract import _cache_path, extract_sequences, sequence_cache_key
from emolib.data.facemesh import SequenceLandmarks, crop_square, mirror_landmarks
from emolib.data.landmark_files import IRIS_NOTE, landmark_file_kind, read_landmark_csv, read_landmark_npz
from emolib.data.sequences import fill_missing_frames, resample_sequence
from emolib.data.sources import (
    SequenceInfo,
    iter_frames,
    normalise_label,
    read_ckplus,
    read_frame,
    read_video_folder,
)
from emolib.errors import DataError
from emolib.landmarks import LandmarkSet, load_landmarks, save_landmarks
from emolib.vocab import EMOTIONS, EXTRACTION_REPORT_COLUMNS, EXTRACTION_STATUSES, N_LANDMARKS

if TYPE_CHECKING:

    from emolib.config import Params
    from emolib.run_folder import RunFolder


def list_sequences(params: Params, run: RunFolder) -> list[SequenceInfo]:
    """The sequences of ``params.data.source`` (writing the demo dataset first when it is ``demo``).

    Raises:
        DataError: the data folder is missing, empty or holds no usable labelled sequence.
    """
    source = params.data.source
    emotions = list(params.emotions)
    if source == "demo":
        root = demo_source_path(params, run)
        from emolib.data.demo import write_demo_dataset

        demo = params.data.demo
        write_demo_dataset(root, seed=demo.seed, subjects=demo.subjects,
                           frames_per_sequence=demo.frames_per_sequence,
                           contempt_sequences=demo.contempt_sequences, image_size=demo.image_size)
        io.write_text(run.ground_truth, (root / "ground_truth.json").read_text())
        return read_ckplus(root, emotions)
    if source == "ckplus":
        return read_ckplus(Path(params.data.path), emotions)
    if source == "videos":
        return read_video_folder(Path(params.data.path), emotions)
    raise ValueError(f"list_sequences: source {source!r} holds no images")


def demo_source_path(params: Params, run: RunFolder) -> Path:
    """Where the demo dataset is written: ``params.data.path`` or ``<run>/data/demo_source``."""
    return Path(params.data.path) if params.data.path else run.demo_source


def _finish_sequence(info: SequenceInfo, raw: SequenceLandmarks, params: Params) -> tuple[Optional[np.ndarray], dict]:
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


def _landmark_csv_source(params: Params, path: Path) -> tuple[LandmarkSet, list[dict]]:
    """``source: landmarks`` from a CSV export (one row per frame): each sequence as if FaceMesh
    had just measured it (missing faces, resampling, flip), its report row noting ``note``."""
    sequences, note = read_landmark_csv(path)
    rows, items = [], []
    for seq in sequences:
        emotion = normalise_label(seq.emotion)
        info = SequenceInfo(seq.sequence, seq.subject, emotion, "video", (path,))  # one file, as a video
        if emotion is None:
            rows.append(_report_row(info, frames=len(seq.found), status="error",
                                    reason=f"{path}: sequence {seq.sequence!r}: unknown emotion label {seq.emotion!r}"))
            continue
        if emotion not in params.emotions:
            rows.append(_report_row(info, frames=len(seq.found), status="skipped",
                                    reason=f"{emotion} is not in params.emotions"))
            continue
        raw = SequenceLandmarks(seq.landmarks, seq.found, np.full(3, np.nan), seq.frame_names)
        X, row = _finish_sequence(info, raw, params)
        row["reason"] = "; ".join(r for r in (row["reason"], note) if r)
        rows.append(row)
        if X is not None:
            items.append((info, X))
    if not items:
        raise DataError(f"{path}: no sequence of the emotions {list(params.emotions)} could be used")
    return _assemble(items, params.data.flip), rows


def _landmark_source(params: Params) -> tuple[LandmarkSet, list[dict]]:
    """``source: landmarks``: validate, keep the studied emotions, resample, flip if asked.

    The file is an .npz (468 or 478 landmarks) or a CSV export with one row per frame
    (:mod:`emolib.data.landmark_files`); FaceLandmarker's iris points are left out, and each
    report row says so."""
    path = Path(params.data.path)
    kind = landmark_file_kind(path)
    if kind == "csv":
        return _landmark_csv_source(params, path)
    if kind is None and path.is_file():
        raise DataError(f"{path}: a landmark file must be an .npz (the run folder's layout) or a .csv "
                        "export with one row per frame")
    data, note = read_landmark_npz(path)
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
                                reason=note if ok else f"{data.emotion[i]} is not in params.emotions"))
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


def source_notes(report) -> list[str]:
    """What stage 01 left out of a landmark file as a whole (FaceLandmarker's iris points), from
    its extraction report, for the notebook to say; empty when nothing was."""
    reasons = report["reason"].fillna("").astype(str)
    return [IRIS_NOTE] if reasons.str.contains(IRIS_NOTE, regex=False).any() else []


def prepare_landmarks(params: Params, run: RunFolder, progress: bool = True) -> LandmarkSet:
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
            sequences, run.extraction_cache, crop_size=params.data.crop_size,
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
            report = pd.DataFrame(rows, columns=list(EXTRACTION_REPORT_COLUMNS))
            io.write_csv(run.extraction_report, report)
            counts = report["status"].value_counts().to_dict()
            raise DataError(f"no sequence could be extracted ({counts}); see {run.extraction_report}")
        data = _assemble(items, params.data.flip)
    report = pd.DataFrame(rows, columns=list(EXTRACTION_REPORT_COLUMNS))
    report["frames"] = report["frames"].astype("Int64")
    report["frames_without_face"] = report["frames_without_face"].astype("Int64")
    io.write_csv(run.extraction_report, report.sort_values("sequence", kind="stable"))
    save_landmarks(run.landmarks, data)
    return data


def cached_sequence(params: Params, run: RunFolder, info: SequenceInfo) -> Optional[SequenceLandmarks]:
    """The cached raw landmarks of one sequence under the current settings (None if not cached)."""
    key = sequence_cache_key(info, params.data.crop_size, params.data.min_detection_confidence)
    return SequenceLandmarks.load(_cache_path(run.extraction_cache, info, key))


def example_frames(params: Params, run: RunFolder, sequences: Optional[Sequence[str]] = None, per_emotion: int = 1,
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
            grey = frames[index][1] if frames is not None else read_frame(info.files[index])
            out.append({"sequence": info.sequence, "emotion": info.emotion, "subject": info.subject,
                        "frame": raw.frame_names[index], "position": label,
                        "image": crop_square(grey, tuple(raw.box), params.data.crop_size),
                        "landmarks": raw.landmarks[index]})
    return out


def check_outputs(params: Params, run: RunFolder) -> dict:
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
    report = run.read_extraction_report()
    unknown = sorted(set(report["status"]) - set(EXTRACTION_STATUSES))
    if unknown:
        raise DataError(f"{run.extraction_report}: unknown status value(s) {unknown}")
    kept = set(report.loc[report["status"].isin(["ok", "filled"]), "sequence"].astype(str))
    if kept != set(data.sequence.tolist()):
        raise DataError(f"{run.extraction_report}: its ok/filled sequences differ from those in {where}")
    return {"samples": len(data), "sequences": len(set(data.sequence.tolist())),
            "subjects": len(set(data.subject.tolist())), "frames": data.frames,
            "per_emotion": {e: int((data.emotion[~data.flipped] == e).sum()) for e in params.emotions},
            "report": report["status"].value_counts().to_dict()}

