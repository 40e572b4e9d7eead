"""Landmark files as MediaPipe's FaceLandmarker gives them: 478 points (FaceMesh's 468, then 10
iris points) in the run folder's .npz layout and as a CSV export with one row per frame; any other
count refused, naming the file, the count and the counts accepted."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from emolib.config import parse_params
from emolib.data.landmark_files import IRIS_NOTE, read_landmark_csv
from emolib.data.sequences import resample_sequence
from emolib.data.stage import check_outputs, prepare_landmarks, source_notes
from emolib.errors import DataError
from emolib.io import write_npz
from emolib.landmarks import LandmarkSet
from emolib.run_folder import RunFolder
from emolib.vocab import N_LANDMARKS
from tests.synthetic import make_landmark_set

# FaceMesh's eye corners and lids, around which FaceLandmarker puts each iris (centre + 4 points)
EYES = ((33, 133, 159, 145), (362, 263, 386, 374))


def iris_points(X: np.ndarray) -> np.ndarray:
    """(..., 2, 10) iris points for landmarks X (..., 2, 468), where FaceLandmarker puts them."""
    points = []
    for eye in EYES:
        centre = X[..., list(eye)].mean(axis=-1)
        radius = 0.25 * np.abs(X[..., 0, eye[0]] - X[..., 0, eye[1]])[..., None]
        points.append(centre)
        for dx, dy in ((1, 0), (0, -1), (-1, 0), (0, 1)):
            points.append(centre + radius * np.array([dx, dy]))
    return np.stack(points, axis=-1)


def with_iris(X: np.ndarray) -> np.ndarray:
    """FaceLandmarker's 478 points: FaceMesh's 468, then the 10 iris points."""
    return np.concatenate([X, iris_points(X)], axis=-1).astype(np.float32)


def write_facelandmarker_npz(path: Path, data: LandmarkSet) -> Path:
    write_npz(path, X=with_iris(data.X), emotion=data.emotion, subject=data.subject, sequence=data.sequence,
              flipped=data.flipped, landmark_ids=np.arange(478))
    return path


def write_facelandmarker_csv(path: Path, data: LandmarkSet, *, n_landmarks: int = 478, shuffle: bool = False,
                             no_face: tuple[str, int] | None = None, drop_last: dict[str, int] | None = None) -> Path:
    """One row per frame of ``data``'s original sequences, columns sequence, frame, emotion,
    subject and x_i, y_i, z_i as a FaceLandmarker export writes them (``z`` made up).

    Args:
        n_landmarks: 478 (iris included), 468, or any count, to write a file to refuse.
        shuffle: write the rows in a random order (the ``frame`` column orders them).
        no_face: (sequence, frame) whose coordinates are left empty (no face in that frame).
        drop_last: sequence -> how many of its last frames to leave out (sequences of unequal length).
    """
    rng = np.random.default_rng(1)
    X = with_iris(data.X) if n_landmarks >= 478 else data.X
    ids = range(n_landmarks)
    header = ["sequence", "frame", "emotion", "subject"] + [f"{a}_{i}" for i in ids for a in "xyz"]
    rows = []
    for n in np.where(~data.flipped)[0]:
        frames = data.frames - (drop_last or {}).get(str(data.sequence[n]), 0)
        for f in range(frames):
            xy = X[n, f] if n_landmarks <= X.shape[-1] else np.pad(X[n, f], ((0, 0), (0, n_landmarks - X.shape[-1])))
            coords = [] if (str(data.sequence[n]), f) == no_face else \
                [v for i in ids for v in (f"{xy[0, i]:.7f}", f"{xy[1, i]:.7f}", f"{rng.normal(0, .05):.4f}")]
            rows.append([data.sequence[n], f, data.emotion[n], data.subject[n]] + (coords or [""] * (3 * n_landmarks)))
    if shuffle:
        rows = [rows[i] for i in rng.permutation(len(rows))]
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows([header] + rows)
    return path


def params_for(path: Path, **extra):
    return parse_params({"name": "fl", "frames": 4, "emotions": ["anger", "fear", "surprise"],
                         "data": {"source": "landmarks", "path": str(path)}, **extra})


@pytest.fixture(scope="module")
def source() -> LandmarkSet:
    return make_landmark_set(subjects=3, frames=6, flip=False)


def test_facelandmarker_npz_keeps_facemesh_468_and_says_the_iris_was_left_out(source, tmp_path):
    path = write_facelandmarker_npz(tmp_path / "facelandmarker.npz", source)
    run = RunFolder(tmp_path / "run")
    params = params_for(path)
    data = prepare_landmarks(params, run, progress=False)
    assert data.n_landmarks == N_LANDMARKS and list(data.landmark_ids) == list(range(N_LANDMARKS))
    row = np.where(source.sequence == "S001_fear")[0][0]
    mine = data.X[(data.sequence == "S001_fear") & ~data.flipped][0]
    np.testing.assert_allclose(mine, resample_sequence(source.X[row], 4), atol=1e-6)  # FaceMesh's order kept
    report = run.read_extraction_report()
    assert (report.loc[report["status"] == "ok", "reason"] == IRIS_NOTE).all()
    assert source_notes(report) == [IRIS_NOTE] and "iris points (ids 468-477) were left out" in IRIS_NOTE
    check_outputs(params, run)


def test_facemesh_npz_has_no_note(source, tmp_path):
    from emolib.landmarks import save_landmarks

    path = tmp_path / "facemesh.npz"
    save_landmarks(path, source)
    run = RunFolder(tmp_path / "run")
    prepare_landmarks(params_for(path), run, progress=False)
    assert source_notes(run.read_extraction_report()) == []


@pytest.mark.parametrize("count", [68, 470, 477, 479])
def test_another_landmark_count_is_refused_naming_file_count_and_accepted_counts(source, tmp_path, count):
    X = np.concatenate([source.X, np.zeros(source.X.shape[:-1] + (12,), np.float32)], axis=-1)[..., :count]
    path = tmp_path / f"points{count}.npz"
    write_npz(path, X=X, emotion=source.emotion, subject=source.subject, sequence=source.sequence,
              flipped=source.flipped, landmark_ids=np.arange(count))
    pattern = rf"points{count}\.npz: {count} landmarks per frame; accepted: 468 \(MediaPipe FaceMesh\) or 478"
    with pytest.raises(DataError, match=pattern):
        prepare_landmarks(params_for(path), RunFolder(tmp_path / "run"), progress=False)
    csv_path = write_facelandmarker_csv(tmp_path / f"points{count}.csv", source, n_landmarks=count)
    with pytest.raises(DataError, match=pattern.replace("npz", "csv")):
        prepare_landmarks(params_for(csv_path), RunFolder(tmp_path / "run_csv"), progress=False)


def test_csv_export_one_row_per_frame(source, tmp_path):
    """Rows out of order (the frame column orders them), sequences of unequal length, a frame
    without a face: each sequence is filled and resampled as if FaceMesh had just measured it."""
    path = write_facelandmarker_csv(tmp_path / "export.csv", source, shuffle=True, no_face=("S000_anger", 2),
                                    drop_last={"S002_surprise": 2})
    run = RunFolder(tmp_path / "run")
    params = params_for(path)
    data = prepare_landmarks(params, run, progress=False)
    assert data.X.shape == (2 * 3 * 3, 4, 2, N_LANDMARKS) and data.flipped.sum() == 9
    for sequence, frames in (("S001_fear", 6), ("S002_surprise", 4)):
        row = np.where(source.sequence == sequence)[0][0]
        mine = data.X[(data.sequence == sequence) & ~data.flipped][0]
        np.testing.assert_allclose(mine, resample_sequence(source.X[row][:frames], 4), atol=1e-6)
    report = run.read_extraction_report().set_index("sequence")
    assert report.loc["S000_anger", "status"] == "filled" and "export.csv:2" in report.loc["S000_anger", "reason"]
    assert report.loc["S002_surprise", "frames"] == 4
    assert (report.loc[report["status"] == "skipped", "reason"].str.contains("not in params.emotions")).all()
    assert source_notes(run.read_extraction_report()) == [IRIS_NOTE]
    check_outputs(params, run)


def test_csv_with_facemesh_468_and_other_column_names(source, tmp_path):
    path = write_facelandmarker_csv(tmp_path / "mesh.csv", source, n_landmarks=468)
    text = path.read_text().splitlines()
    header = text[0].split(",")
    renamed = [h if h[:2] not in ("x_", "y_", "z_") else f"landmark_{h[2:]}_{h[0]}" for h in header]
    renamed[0] = "video"
    path.write_text("\n".join([",".join(renamed)] + text[1:]) + "\n")
    sequences, note = read_landmark_csv(path)
    assert note == "" and len(sequences) == 3 * 6
    assert sequences[0].landmarks.shape == (6, 2, N_LANDMARKS) and sequences[0].found.all()


def test_bad_csv_files_are_refused_naming_the_file(source, tmp_path):
    good = write_facelandmarker_csv(tmp_path / "good.csv", source)
    lines = good.read_text().splitlines()
    no_emotion = tmp_path / "no_emotion.csv"
    no_emotion.write_text("\n".join(line.replace("emotion", "label", 1) for line in lines[:3]))
    with pytest.raises(DataError, match="no_emotion.csv: needs columns sequence or video and emotion"):
        read_landmark_csv(no_emotion)
    text = tmp_path / "text.csv"
    cells = lines[2].split(",")
    cells[10] = "abc"
    text.write_text("\n".join([lines[0], lines[1], ",".join(cells)]))
    with pytest.raises(DataError, match=r"text.csv: line 3, column .*'abc' is not a number"):
        read_landmark_csv(text)
    partial = tmp_path / "partial.csv"
    cells[10] = ""
    partial.write_text("\n".join([lines[0], ",".join(cells)]))
    with pytest.raises(DataError, match="partial.csv: line 2: some coordinates are empty"):
        read_landmark_csv(partial)
    gap = tmp_path / "gap.csv"
    gap.write_text("\n".join([lines[0].replace("y_5,", "q,"), lines[1]]))
    with pytest.raises(DataError, match=r"gap.csv: coordinate columns for landmarks 0..477 are incomplete.*y_5"):
        read_landmark_csv(gap)
    with pytest.raises(DataError, match="landmark file not found"):
        read_landmark_csv(tmp_path / "none.csv")
    other = tmp_path / "landmarks.txt"
    other.write_text("x")
    with pytest.raises(DataError, match=r"landmarks.txt: a landmark file must be an .npz .* or a .csv"):
        prepare_landmarks(params_for(other), RunFolder(tmp_path / "run"), progress=False)


@pytest.mark.slow
def test_a_facelandmarker_csv_runs_through_all_five_stages(smoke_run, repo, tmp_path):
    """The smoke run's own sequences, exported as FaceLandmarker would (478 points, one row per
    frame), then the whole study on that file: the same landmarks, and every stage complete."""
    import json
    import subprocess
    import sys

    from emolib.landmarks import load_landmarks
    from emolib.vocab import STAGES

    measured = load_landmarks(smoke_run / "data" / "landmarks.npz")
    export = write_facelandmarker_csv(tmp_path / "facelandmarker.csv", measured, shuffle=True)
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "emolib.cli", "run", str(repo / "params" / "smoke.yaml"),
                           "--set", "data.source=landmarks", "--set", f"data.path={export}", "--out", str(out)],
                          cwd=repo, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(manifest["stages"][s]["status"] == "complete" for s in STAGES)
    data = load_landmarks(out / "data" / "landmarks.npz")
    # the rows were shuffled: sequences come in the order they first appear; compare by id
    mine, theirs = (np.lexsort((d.flipped, d.sequence)) for d in (data, measured))
    assert list(data.sequence[mine]) == list(measured.sequence[theirs])
    assert list(data.flipped[mine]) == list(measured.flipped[theirs])
    np.testing.assert_allclose(data.X[mine], measured.X[theirs], atol=1e-6)
    assert IRIS_NOTE.replace("'", "&#39;") in (out / "01_data_prep.html").read_text().replace("'", "&#39;")
    assert (out / "results" / "pruning.csv").is_file() and (out / "05_results.html").is_file()
