"""Stage 01 extraction: real MediaPipe FaceMesh on a tiny generated demo dataset.

Covers the time helpers, the mirror symmetry used for flip augmentation (checked against FaceMesh
on mirrored images), the whole ``prepare_landmarks`` on every source, the per-sequence cache and
resume, and every kind of bad input (reported and skipped, or stopped before work starts).
"""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emolib.config import parse_params
from emolib.data.facemesh import (
    FaceMeshExtractor,
    crop_square,
    derive_mirror_permutation,
    mirror_landmarks,
    mirror_permutation,
    square_box,
)
from emolib.data.sequences import fill_missing_frames, resample_sequence
from emolib.data.stage import check_outputs, example_frames, prepare_landmarks
from emolib.errors import DataError, ParamsError
from emolib.landmarks import LandmarkSet, load_landmarks, save_landmarks
from emolib.run_folder import RunFolder
from emolib.vocab import EMOTIONS, N_LANDMARKS

os.environ.setdefault("OMP_NUM_THREADS", "1")

TINY = dict(seed=0, subjects=3, frames_per_sequence=3, contempt_sequences=1, image_size=192)


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory) -> Path:
    from emolib.data.demo import write_demo_dataset

    return write_demo_dataset(tmp_path_factory.mktemp("demo") / "ck", progress=False, **TINY)


def _params(path: Path, source: str = "ckplus", **data):
    raw = {"name": "t", "frames": 4, "data": {"source": source, "path": str(path), "workers": 1,
                                              "crop_size": 160, **data}}
    return parse_params(raw, "test")


def _copy(demo_root: Path, tmp_path: Path) -> Path:
    target = tmp_path / "ck"
    shutil.copytree(demo_root, target)
    return target


def _frames_of(root: Path, sequence: str) -> list[Path]:
    subject, seq = sequence.split("_")
    return sorted((root / "cohn-kanade-images" / subject / seq).glob("*.png"))


def _blank_like(path: Path) -> None:
    """Overwrite a frame with a face-less image of the same size."""
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    cv2.imwrite(str(path), np.full_like(image, 128))


# ---- time helpers ------------------------------------------------------------------------------

def test_resample_keeps_endpoints_and_is_linear():
    X = np.arange(5, dtype=np.float32)[:, None, None] * np.ones((5, 2, 3), np.float32)
    out = resample_sequence(X, 9)
    assert out.shape == (9, 2, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out[:, 0, 0], np.linspace(0, 4, 9), atol=1e-6)
    down = resample_sequence(X, 3)
    np.testing.assert_allclose(down[:, 1, 2], [0, 2, 4], atol=1e-6)
    assert resample_sequence(X[:1], 4).shape == (4, 2, 3)


def test_fill_missing_frames_interpolates_between_neighbours():
    X = np.stack([np.full((2, 3), v, np.float32) for v in (0, 0, 0, 6, 0)])
    found = np.array([False, True, False, True, False])
    X[1], X[3] = 2.0, 6.0
    filled = fill_missing_frames(np.where(found[:, None, None], X, np.nan), found)
    np.testing.assert_allclose(filled[:, 0, 0], [2, 2, 4, 6, 6])
    with pytest.raises(ValueError):
        fill_missing_frames(X, np.zeros(5, bool))


def test_square_box_and_crop():
    box = square_box(np.array([[10.0, 20.0], [30.0, 60.0]]), margin=0.5)
    assert box == pytest.approx((-10.0, 10.0, 60.0))  # centred on (20, 40), side 1.5 x 40
    grey = np.zeros((100, 100), np.uint8)
    grey[40:60, 40:60] = 255
    crop = crop_square(grey, (30.0, 30.0, 40.0), 80)  # the white square fills the middle half
    assert crop.shape == (80, 80)
    assert crop[40, 40] == 255 and crop[5, 5] == 0 and crop[20:60, 20:60].mean() > 240
    edge = crop_square(grey, (-50.0, -50.0, 100.0), 50)  # reaching outside: edges replicated
    assert edge.shape == (50, 50) and edge[0, 0] == 0


# ---- mirror symmetry ---------------------------------------------------------------------------

def test_mirror_permutation_is_a_symmetric_involution():
    from mediapipe.python.solutions import face_mesh_connections as fmc

    perm = mirror_permutation()
    assert sorted(perm.tolist()) == list(range(N_LANDMARKS))
    assert np.array_equal(perm[perm], np.arange(N_LANDMARKS))

    def ids(name):
        return {i for edge in getattr(fmc, name) for i in edge}

    for left, right in (("FACEMESH_LEFT_EYE", "FACEMESH_RIGHT_EYE"),
                        ("FACEMESH_LEFT_EYEBROW", "FACEMESH_RIGHT_EYEBROW")):
        assert {int(perm[i]) for i in ids(left)} == ids(right)
    assert {int(perm[i]) for i in ids("FACEMESH_LIPS")} == ids("FACEMESH_LIPS")
    assert perm[61] == 291 and perm[1] == 1 and perm[152] == 152
    # The mesh's triangles map onto triangles (a few quads are split the other way on one side).
    edges = {frozenset(e) for e in fmc.FACEMESH_TESSELATION}
    mapped = sum(frozenset(int(perm[i]) for i in e) in edges for e in edges)
    assert mapped / len(edges) > 0.99


def test_mirror_permutation_matches_facemesh_on_mirrored_photos():
    assert np.array_equal(derive_mirror_permutation(), mirror_permutation())


def test_mirrored_landmarks_match_facemesh_on_the_mirrored_image(demo_root):
    """Flip by mirroring landmarks == flip the image and run FaceMesh again (up to its jitter)."""
    from emolib.data.sources import read_frame

    frame = read_frame(_frames_of(demo_root, "S003_001")[-1])
    with FaceMeshExtractor() as extractor:
        own = extractor.landmarks(frame).T
        of_mirror = extractor.landmarks(np.ascontiguousarray(frame[:, ::-1])).T
    ours = mirror_landmarks(own[None])[0]
    naive = own.copy()
    naive[0] = 1 - naive[0]  # x -> 1 - x without swapping ids: landmark i changes meaning
    error = np.abs(ours - of_mirror).mean()
    assert error < 0.01
    assert np.abs(naive - of_mirror).mean() > 5 * error
    np.testing.assert_allclose(mirror_landmarks(mirror_landmarks(own[None])), own[None], atol=1e-6)


def test_mirror_landmarks_needs_the_twins():
    ids = np.array([33, 263, 1])
    X = np.random.default_rng(0).random((2, 2, 3))
    out = mirror_landmarks(X, ids)
    np.testing.assert_allclose(out[:, 0, 0], 1 - X[:, 0, 1])  # 33 takes 263's mirrored place
    with pytest.raises(DataError, match="mirror twins"):
        mirror_landmarks(X[..., :2], np.array([33, 1]))


# ---- the stage, end to end ---------------------------------------------------------------------

def test_prepare_landmarks_on_the_demo_layout(demo_root, tmp_path):
    params = _params(demo_root)
    run = RunFolder(tmp_path / "run")
    data = prepare_landmarks(params, run, progress=False)
    assert data.X.shape == (2 * 3 * 6, 4, 2, N_LANDMARKS) and data.X.dtype == np.float32
    assert set(data.emotion) == set(EMOTIONS)
    assert np.isfinite(data.X).all() and 0.0 < data.X.min() and data.X.max() < 1.0  # inside the crop
    assert set(data.subject) == {"S001", "S002", "S003"}
    # each sequence twice: original and mirrored copy, same sequence id
    for seq in set(data.sequence):
        rows = np.where(data.sequence == seq)[0]
        assert sorted(data.flipped[rows].tolist()) == [False, True]
        np.testing.assert_allclose(mirror_landmarks(data.X[rows[0]]), data.X[rows[1]], atol=1e-6)
    report = run.read_extraction_report()
    assert list(report.columns) == ["sequence", "subject", "emotion", "frames", "frames_without_face",
                                    "status", "reason", "face_finder"]
    assert len(report) == 3 * 6 + 1
    # which finder gave each extracted sequence its face box (the demo's big faces: short range)
    assert set(report.loc[report["status"] == "ok", "face_finder"]) == {"short_range"}
    skipped = report[report["status"] == "skipped"]
    assert len(skipped) == 1 and skipped["emotion"].iloc[0] == "contempt"
    assert (report.loc[report["status"] == "ok", "frames"] == 3).all()
    assert load_landmarks(run.landmarks).X.shape == data.X.shape
    summary = check_outputs(params, run)
    assert summary["sequences"] == 18 and summary["per_emotion"] == {e: 3 for e in EMOTIONS}
    shown = example_frames(params, run, per_emotion=1, which=("first", "last"))
    assert len(shown) == 12 and shown[0]["image"].shape == (160, 160)


def test_cache_resume_and_parameter_keys(demo_root, tmp_path):
    root = _copy(demo_root, tmp_path)
    params = _params(root, flip=False)
    run = RunFolder(tmp_path / "run")
    first = prepare_landmarks(params, run, progress=False)
    cache = run.extraction_cache
    files = sorted(cache.glob("*.npz"))
    assert len(files) == 18
    stamps = {p: p.stat().st_mtime_ns for p in files}

    # A re-run reads everything from the cache.
    again = prepare_landmarks(params, run, progress=False)
    np.testing.assert_array_equal(first.X, again.X)
    assert {p: p.stat().st_mtime_ns for p in files} == stamps

    # An interrupted run: one cache file half-written, one missing. Only those two are redone.
    files[0].write_bytes(files[0].read_bytes()[:100])
    files[1].unlink()
    resumed = prepare_landmarks(params, run, progress=False)
    np.testing.assert_allclose(resumed.X, first.X, atol=1e-6)
    redone = [p for p in files if not p.exists() or p.stat().st_mtime_ns != stamps[p]]
    assert redone == files[:2]

    # Settings that change the raw landmarks get new keys; resampling does not touch the cache.
    prepare_landmarks(parse_params({**params.model_dump(mode="json"), "frames": 6}), run, progress=False)
    assert len(list(cache.glob("*.npz"))) == 18
    changed = parse_params({**params.model_dump(mode="json"),
                            "data": {**params.data.model_dump(mode="json"), "crop_size": 192}})
    prepare_landmarks(changed, run, progress=False)
    assert len(list(cache.glob("*.npz"))) == 36

    # A changed frame file changes only its sequence's key.
    _blank_like(_frames_of(root, "S001_001")[1])
    prepare_landmarks(params, run, progress=False)
    assert len(list(cache.glob("*.npz"))) == 37


def test_bad_sequences_are_reported_and_the_rest_extracted(demo_root, tmp_path):
    root = _copy(demo_root, tmp_path)
    seqs = sorted({f"{p.parent.parent.name}_{p.parent.name}" for p in (root / "Emotion").rglob("*.txt")})
    labels = {s: float(next((root / "Emotion").glob(f"{s.split('_')[0]}/{s.split('_')[1]}/*.txt")).read_text())
              for s in seqs}
    usable = [s for s in seqs if labels[s] != 2.0]
    corrupt, empty, no_face, one_missing, garbage = usable[:5]
    _frames_of(root, corrupt)[1].write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00garbage" * 64)
    _frames_of(root, empty)[2].write_bytes(b"")
    for path in _frames_of(root, no_face):
        _blank_like(path)
    _blank_like(_frames_of(root, one_missing)[1])
    subject, seq = garbage.split("_")
    next((root / "Emotion" / subject / seq).glob("*.txt")).write_text("not a number\n")

    run = RunFolder(tmp_path / "run")
    data = prepare_landmarks(_params(root), run, progress=False)
    report = run.read_extraction_report().set_index("sequence")
    # An undecodable or empty frame is a frame without a face (issue 12, point 5), named with why.
    assert report.loc[corrupt, "status"] == "filled" and report.loc[corrupt, "frames_without_face"] == 1
    assert (f"1 unreadable, counted without a face: {_frames_of(root, corrupt)[1].name} "
            "(not a decodable image (corrupt or unsupported format))") in report.loc[corrupt, "reason"]
    assert report.loc[empty, "status"] == "filled"
    assert f"{_frames_of(root, empty)[2].name} (empty file (0 bytes), not an image)" in report.loc[empty, "reason"]
    assert report.loc[no_face, "status"] == "dropped"
    assert "no face found in any of the 3 frames" in report.loc[no_face, "reason"]
    assert report.loc[no_face, "frames_without_face"] == 3
    assert report.loc[one_missing, "status"] == "filled" and report.loc[one_missing, "frames_without_face"] == 1
    assert "filled from neighbouring frames" in report.loc[one_missing, "reason"]
    assert report.loc[garbage, "status"] == "error"
    assert "not a number" in report.loc[garbage, "reason"] and "_emotion.txt" in report.loc[garbage, "reason"]
    kept = set(data.sequence)
    assert kept == set(report.index[report["status"].isin(["ok", "filled"])])
    assert len(kept) == 18 - 2 and {one_missing, corrupt, empty} <= kept
    assert np.isfinite(data.X).all()

    # The same missing frame under stricter policies: the sequence is dropped, with the reason.
    strict = prepare_landmarks(_params(root, missing_face={"max_missing_fraction": 0.2}), run, progress=False)
    report = run.read_extraction_report().set_index("sequence")
    assert one_missing not in set(strict.sequence) and report.loc[one_missing, "status"] == "dropped"
    assert "max_missing_fraction=0.2" in report.loc[one_missing, "reason"]
    prepare_landmarks(_params(root, missing_face={"fill": "drop_sequence"}), run, progress=False)
    assert "drop_sequence" in run.read_extraction_report().set_index("sequence").loc[one_missing, "reason"]


def test_unusable_data_stops_before_any_work(tmp_path):
    run = RunFolder(tmp_path / "run")
    with pytest.raises(DataError, match="CK\\+ data folder not found"):
        prepare_landmarks(_params(tmp_path / "missing"), run, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no 'cohn-kanade-images' folder"):
        prepare_landmarks(_params(tmp_path / "empty"), run, progress=False)
    assert not (run.extraction_cache).exists() and not run.landmarks.exists()


def test_no_sequence_extracted_is_an_error(demo_root, tmp_path):
    root = tmp_path / "ck"
    shutil.copytree(demo_root / "cohn-kanade-images" / "S001", root / "cohn-kanade-images" / "S001")
    shutil.copytree(demo_root / "Emotion" / "S001", root / "Emotion" / "S001")
    for path in (root / "cohn-kanade-images").rglob("*.png"):
        _blank_like(path)
    run = RunFolder(tmp_path / "run")
    with pytest.raises(DataError, match="no sequence could be extracted"):
        prepare_landmarks(_params(root), run, progress=False)
    assert (run.read_extraction_report()["status"].isin(["dropped", "skipped"])).all()


def test_two_worker_processes_give_the_same_landmarks(demo_root, tmp_path):
    one = prepare_landmarks(_params(demo_root, flip=False), RunFolder(tmp_path / "one"), progress=False)
    two = prepare_landmarks(_params(demo_root, flip=False, workers=2), RunFolder(tmp_path / "two"), progress=False)
    np.testing.assert_allclose(one.X, two.X, atol=1e-6)
    assert list(one.sequence) == list(two.sequence)


def test_videos_source(demo_root, tmp_path):
    import cv2

    folder = tmp_path / "videos"
    folder.mkdir()
    rows = ["path,emotion,subject"]
    for sequence, emotion in (("S003_001", "happiness"), ("S002_002", "surprise")):
        frames = [cv2.imread(str(p)) for p in _frames_of(demo_root, sequence)]
        height, width = frames[0].shape[:2]
        writer = cv2.VideoWriter(str(folder / f"{sequence}.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10,
                                 (width, height))
        for frame in frames:
            writer.write(frame)
        writer.release()
        rows.append(f"{sequence}.avi,{emotion},{sequence[:4]}")
    (folder / "broken.mp4").write_bytes(b"\x00\x01 not a video " * 100)
    rows.append("broken.mp4,anger,S009")
    (folder / "labels.csv").write_text("\n".join(rows) + "\n")
    params = parse_params({"name": "v", "frames": 5, "emotions": ["happiness", "surprise", "anger"],
                           "data": {"source": "videos", "path": str(folder), "workers": 1, "flip": False}})
    run = RunFolder(tmp_path / "run")
    data = prepare_landmarks(params, run, progress=False)
    assert sorted(data.sequence) == ["S002_002", "S003_001"] and data.X.shape == (2, 5, 2, N_LANDMARKS)
    report = run.read_extraction_report().set_index("sequence")
    assert report.loc["broken", "status"] == "error" and "broken.mp4" in report.loc["broken", "reason"]


def test_landmarks_source_resamples_and_flips(tmp_path):
    from tests.synthetic import make_landmark_set

    source = make_landmark_set(subjects=3, frames=7, flip=False)
    path = tmp_path / "mine.npz"
    save_landmarks(path, source)
    params = parse_params({"name": "l", "frames": 4, "emotions": ["anger", "fear", "surprise"],
                           "data": {"source": "landmarks", "path": str(path)}})
    run = RunFolder(tmp_path / "run")
    data = prepare_landmarks(params, run, progress=False)
    assert data.X.shape == (2 * 3 * 3, 4, 2, N_LANDMARKS)
    assert set(data.emotion) == {"anger", "fear", "surprise"}
    original = source.X[(source.sequence == "S000_fear")][0]
    np.testing.assert_allclose(data.X[(data.sequence == "S000_fear") & ~data.flipped][0][[0, -1]],
                               original[[0, -1]], atol=1e-6)
    report = run.read_extraction_report()
    assert (report["status"] == "skipped").sum() == 3 * 3  # the emotions not studied
    check_outputs(params, run)


def test_bad_landmark_files(tmp_path):
    from emolib import io

    def params_for(path):
        return parse_params({"name": "l", "data": {"source": "landmarks", "path": str(path)}})

    run = RunFolder(tmp_path / "run")
    good = LandmarkSet(np.zeros((2, 3, 2, 468), np.float32), np.array(["anger", "fear"]),
                       np.array(["a", "b"]), np.array(["s1", "s2"]), np.zeros(2, bool), np.arange(468))
    wrong_shape = tmp_path / "shape.npz"
    io.write_npz(wrong_shape, X=np.zeros((2, 3, 468), np.float32), emotion=good.emotion, subject=good.subject,
                 sequence=good.sequence, flipped=good.flipped, landmark_ids=good.landmark_ids)
    with pytest.raises(DataError, match=r"shape.npz: X must have shape \(N, P, 2, L\)"):
        prepare_landmarks(params_for(wrong_shape), run, progress=False)
    with_nan = tmp_path / "nan.npz"
    X = good.X.copy()
    X[1, 0, 0, 5] = np.nan
    io.write_npz(with_nan, X=X, emotion=good.emotion, subject=good.subject, sequence=good.sequence,
                 flipped=good.flipped, landmark_ids=good.landmark_ids)
    with pytest.raises(DataError, match="nan.npz: X holds NaN.*'s2'"):
        prepare_landmarks(params_for(with_nan), run, progress=False)
    with pytest.raises(DataError, match="landmark file not found"):
        prepare_landmarks(params_for(tmp_path / "none.npz"), run, progress=False)


def test_unknown_parameter_key_is_refused():
    with pytest.raises(ParamsError, match="data.workerz: unknown key"):
        parse_params({"data": {"source": "demo", "workerz": 2}}, "test")
    with pytest.raises(ParamsError, match="data.path is required"):
        parse_params({"data": {"source": "ckplus"}}, "test")


def test_check_outputs_catches_a_bad_landmark_file(demo_root, tmp_path):
    params = _params(demo_root)
    run = RunFolder(tmp_path / "run")
    data = prepare_landmarks(params, run, progress=False)
    keep = data.emotion != "fear"
    save_landmarks(run.landmarks, data.subset(np.where(keep)[0]))
    with pytest.raises(DataError, match=r"no sample of \['fear'\]"):
        check_outputs(params, run)
    save_landmarks(run.landmarks, data.subset(np.where(~data.flipped)[0]))
    with pytest.raises(DataError, match="lack their pair"):
        check_outputs(params, run)
    pd.DataFrame({"sequence": ["x"], "status": ["weird"]}).to_csv(run.extraction_report, index=False)
    save_landmarks(run.landmarks, data)
    with pytest.raises(DataError, match="unknown status"):
        check_outputs(params, run)


def test_fast_landmark_decoding_matches_protobuf_fields():
    from mediapipe.framework.formats import landmark_pb2

    from emolib.data.facemesh import _landmark_xy

    rng = np.random.default_rng(0)
    points = landmark_pb2.NormalizedLandmarkList()
    for x, y, z in rng.normal(size=(N_LANDMARKS, 3)):
        points.landmark.add(x=x, y=y, z=z)
    points.landmark[3].x = 0.0  # zero values are still written (proto2)
    expected = np.array([(p.x, p.y) for p in points.landmark], np.float32)
    np.testing.assert_array_equal(_landmark_xy(points), expected)
    points.landmark[7].visibility = 0.5  # an extra field: the layout check takes the slow path
    np.testing.assert_array_equal(_landmark_xy(points), expected)


def test_a_landmark_sequence_without_movement_is_kept_with_a_warning(tmp_path):
    from tests.synthetic import make_landmark_set

    source = make_landmark_set(subjects=3, frames=4, flip=False)
    source.X[0] = source.X[0, :1]  # every frame the first: legal, suspicious
    path = tmp_path / "mine.npz"
    save_landmarks(path, source)
    params = parse_params({"name": "l", "frames": 4, "data": {"source": "landmarks", "path": str(path)}})
    run = RunFolder(tmp_path / "run")
    prepare_landmarks(params, run, progress=False)
    report = run.read_extraction_report().set_index("sequence")
    row = report.loc[source.sequence[0]]
    assert row["status"] == "ok"
    assert row["reason"] == f"warning: its 4 frames are identical (no movement) in {path}"
    assert (report.drop(index=source.sequence[0])["reason"] == "").all()
