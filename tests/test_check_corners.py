"""Every corner of issue 12's point 6, fed to the command line: a clear message naming the file (and
line) or the key, found by ``emolib check`` (or ``emolib run`` before any stage runs)."""
from __future__ import annotations

import numpy as np
import pytest

from emolib.cli import main
from tests.synthetic import make_landmark_set


def _check(tmp_path, capsys, text: str, *extra: str) -> str:
    f = tmp_path / "p.yaml"
    f.write_text(text)
    assert main(["check", str(f), *extra]) == 2
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err
    return captured.err


@pytest.mark.parametrize("text, words", [
    ("seeds: [-1]\n", "seeds: Value error, seeds must be non-negative integers, got [-1]"),
    ("seeds: [true]\n", "seeds.0: Value error, expected an integer, got the boolean true"),
    ("seeds: [0, false]\n", "seeds.1: Value error, expected an integer, got the boolean false"),
    ("train:\n  epochs: true\n", "train.epochs: Value error, expected an integer, got the boolean true"),
    ("pruning:\n  k: []\n", "pruning.k: Value error, at least one K is needed"),
    ("pruning:\n  k: [468]\n", "pruning.k: Value error, every K must lie in 1..467"),
    ("pruning:\n  k: [0, 32]\n", "pruning.k: Value error, every K must lie in 1..467"),
    ("report:\n  top_k_figure: [0]\n", "report.top_k_figure: Value error, every K must lie in 1..468, got [0]"),
    ("report:\n  top_k_figure: []\n", "report.top_k_figure: Value error, Figure 3 needs at least one K"),
    ("grid:\n  seed: -2\n", "grid.seed: Input should be greater than or equal to 0"),
    ("train:\n  epochs: 5\n  batch_size: 8\n  epochs: 100\n", "key 'epochs' given twice (lines 2 and 4)"),
])
def test_check_refuses_bad_values_naming_the_key(tmp_path, capsys, text, words):
    err = _check(tmp_path, capsys, text)
    assert str(tmp_path / "p.yaml") in err and words in err


def test_run_refuses_an_empty_stages_list(tmp_path, capsys):
    f = tmp_path / "p.yaml"
    f.write_text("name: t\n")
    assert main(["run", str(f), "--out", str(tmp_path / "run"), "--stages", ""]) == 2
    assert "--stages '': names no stage" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("source, words", [
    ("ckplus", "expects the folder holding cohn-kanade-images/"),
    ("videos", "expects the folder holding labels.csv"),
    ("landmarks", "expects a landmarks.npz or a .csv export"),
])
def test_check_looks_at_data_path(tmp_path, capsys, source, words):
    missing = tmp_path / "nowhere"
    err = _check(tmp_path, capsys, f"data:\n  source: {source}\n  path: {missing}\n")
    assert f"data.path: {missing} does not exist (data.source {source} {words}" in err


def test_run_looks_at_data_path_before_any_stage(tmp_path, capsys):
    f = tmp_path / "p.yaml"
    f.write_text(f"data:\n  source: videos\n  path: {tmp_path / 'nowhere'}\n")
    assert main(["run", str(f), "--out", str(tmp_path / "run")]) == 2
    assert "data.path:" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_labels_row_with_too_many_fields_names_file_and_line(tmp_path, capsys):
    videos = tmp_path / "videos"
    videos.mkdir()
    (videos / "a.mp4").write_bytes(b"x")
    (videos / "labels.csv").write_text("path,emotion,subject\na.mp4,anger,s1\nb.mp4,anger,s2,extra\n")
    err = _check(tmp_path, capsys, f"data:\n  source: videos\n  path: {videos}\n")
    assert f"{videos / 'labels.csv'}: line 3: 4 fields, the header has 3 (path, emotion, subject)" in err


def _landmark_file(tmp_path, **change) -> str:
    data = make_landmark_set(subjects=3, frames=4)
    arrays = {"X": data.X, "emotion": data.emotion, "subject": data.subject, "sequence": data.sequence,
              "flipped": data.flipped, "landmark_ids": data.landmark_ids}
    for key, fn in change.items():
        arrays[key] = fn(arrays[key].copy())
    path = tmp_path / "mine.npz"
    np.savez(path, **arrays)
    return str(path)


def _zero_frame(X):
    X[3, 1] = 0.0
    return X


def _conflict(values):
    values[1] = "S999"  # row 1 is row 0's flipped copy: same sequence id, another subject
    return values


@pytest.mark.parametrize("change, words", [
    ({"flipped": lambda f: np.where(f, "True", "False")},
     "flipped must be booleans (dtype bool), got <U5 values such as 'False', 'True'"),
    ({"X": _zero_frame}, "1 frame(s) whose landmarks are all (0, 0), first: row 3 (sequence 'S000_disgust'), frame 1"),
    ({"subject": _conflict}, "sequence id 'S000_anger' has subject 'S000' and 'S999' (row 1)"),
    ({"emotion": lambda e: np.r_[e[:1], ["happiness"], e[2:]]},
     "sequence id 'S000_anger' has emotion 'anger' and 'happiness' (row 1)"),
    ({"X": lambda X: X * 640}, "emolib expects MediaPipe's normalised image coordinates"),
])
def test_bad_landmark_files_are_refused_by_check_naming_the_users_file(tmp_path, capsys, change, words):
    path = _landmark_file(tmp_path, **change)
    err = _check(tmp_path, capsys, f"data:\n  source: landmarks\n  path: {path}\n")
    assert f"{path}: " in err and words in err


def test_a_npy_given_as_landmark_file_is_named(tmp_path, capsys):
    path = tmp_path / "X.npy"
    np.save(path, np.zeros((2, 4, 2, 468), np.float32))
    err = _check(tmp_path, capsys, f"data:\n  source: landmarks\n  path: {path}\n")
    assert f"{path}: a .npy file (one array); a landmark file is an .npz holding the arrays X, emotion" in err


def test_check_reports_what_a_good_landmark_file_holds(tmp_path, capsys):
    path = _landmark_file(tmp_path)
    f = tmp_path / "p.yaml"
    f.write_text(f"data:\n  source: landmarks\n  path: {path}\n")
    assert main(["check", str(f)]) == 0
    assert f"data: {path}: 36 samples, 4 frames, 468 landmarks" in capsys.readouterr().out
