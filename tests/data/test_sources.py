"""Readers: the CK+ layout with its quirks, a videos folder, frame decoding, and their bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from emolib.data.sources import (
    iter_frames,
    iter_video_frames,
    normalise_label,
    parse_emotion_label,
    read_ckplus,
    read_frame,
    read_video_folder,
)
from emolib.errors import DataError


def _png(path: Path, shape=(48, 64), colour: bool = False, seed: int = 0) -> Path:
    import cv2

    rng = np.random.default_rng(seed)
    image = rng.integers(0, 255, size=shape + ((3,) if colour else ()), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)
    return path


def _sequence(root: Path, subject: str, seq: str, n: int = 3, label: str | None = None,
              label_root: str = "Emotion", **png) -> list[Path]:
    frames = [_png(root / "cohn-kanade-images" / subject / seq / f"{subject}_{seq}_{k + 1:08d}.png", seed=k, **png)
              for k in range(n)]
    if label is not None:
        target = root / label_root / subject / seq / f"{subject}_{seq}_{n:08d}_emotion.txt"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(label)
    return frames


def test_ckplus_reader_handles_the_quirks(tmp_path):
    # Labels in a nested Emotion_labels/Emotion folder, float text codes, an RGB sequence among grey
    # ones, two frame sizes, contempt and an unlabelled sequence.
    root = tmp_path / "CK+"
    _sequence(root, "S005", "001", label="   3.0000000e+00\n", label_root="Emotion_labels/Emotion")
    _sequence(root, "S005", "002", label="   2.0000000e+00\n", label_root="Emotion_labels/Emotion")
    _sequence(root, "S010", "004", label=" 5.0000000e+00", label_root="Emotion_labels/Emotion",
              colour=True, shape=(50, 64))
    _sequence(root, "S010", "005")  # no label
    seqs = {s.sequence: s for s in read_ckplus(root)}
    assert set(seqs) == {"S005_001", "S005_002", "S010_004", "S010_005"}
    assert seqs["S005_001"].emotion == "disgust" and seqs["S005_001"].usable
    assert seqs["S005_001"].subject == "S005"
    assert [p.name for p in seqs["S005_001"].files] == [f"S005_001_{k:08d}.png" for k in (1, 2, 3)]
    assert seqs["S010_004"].emotion == "happiness" and seqs["S010_004"].usable
    assert seqs["S005_002"].status == "skipped" and "contempt" in seqs["S005_002"].reason
    assert seqs["S010_005"].status == "skipped" and "no emotion label" in seqs["S010_005"].reason
    # RGB frames come out grey, whatever the size
    grey = [image for _, image in iter_frames(seqs["S010_004"])]
    assert all(g.ndim == 2 and g.dtype == np.uint8 and g.shape == (50, 64) for g in grey)


def test_ckplus_emotions_not_studied_are_skipped(tmp_path):
    root = tmp_path / "ck"
    _sequence(root, "S001", "001", label="1.0")
    _sequence(root, "S001", "002", label="7.0")
    seqs = {s.sequence: s for s in read_ckplus(root, emotions=["anger", "fear"])}
    assert seqs["S001_001"].usable
    assert seqs["S001_002"].status == "skipped" and "surprise is not in params.emotions" in seqs["S001_002"].reason


def test_label_file_with_garbage_is_an_error_naming_the_file(tmp_path):
    root = tmp_path / "ck"
    _sequence(root, "S001", "001", label="5.0")
    _sequence(root, "S001", "002", label="happy face :)")
    seqs = {s.sequence: s for s in read_ckplus(root)}
    bad = seqs["S001_002"]
    assert bad.status == "error"
    assert "S001_002_00000003_emotion.txt" in bad.reason and "happy" in bad.reason
    assert seqs["S001_001"].usable  # the rest of the data is still there


@pytest.mark.parametrize("text, fragment", [
    ("", "expected one emotion code"),
    ("abc", "not a number"),
    ("2.5", "not one of 0..7"),
    ("9.0000000e+00", "not one of 0..7"),
    ("1 2", "expected one emotion code"),
    ("nan", "not one of 0..7"),
])
def test_parse_emotion_label_refuses_garbage(tmp_path, text, fragment):
    f = tmp_path / "x_emotion.txt"
    f.write_text(text)
    with pytest.raises(DataError) as err:
        parse_emotion_label(f)
    assert str(f) in str(err.value) and fragment in str(err.value)


def test_parse_emotion_label_reads_ckplus_floats(tmp_path):
    f = tmp_path / "x_emotion.txt"
    f.write_text("   6.0000000e+00\n")
    assert parse_emotion_label(f) == 6


def test_unusable_ckplus_folders_stop_with_a_clear_error(tmp_path):
    with pytest.raises(DataError, match="CK\\+ data folder not found"):
        read_ckplus(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no 'cohn-kanade-images' folder"):
        read_ckplus(empty)
    (empty / "cohn-kanade-images").mkdir()
    with pytest.raises(DataError, match="no sequence folders"):
        read_ckplus(empty)
    only_contempt = tmp_path / "contempt"
    _sequence(only_contempt, "S001", "001", label="2.0")
    _sequence(only_contempt, "S001", "002")
    with pytest.raises(DataError) as err:
        read_ckplus(only_contempt)
    assert "no usable labelled sequence" in str(err.value) and "contempt" in str(err.value)
    no_labels = tmp_path / "nolabels"
    _sequence(no_labels, "S001", "001")
    with pytest.raises(DataError, match="no 'Emotion' label folder"):
        read_ckplus(no_labels)


def test_sequence_folder_without_frames_is_an_error(tmp_path):
    root = tmp_path / "ck"
    _sequence(root, "S001", "001", label="1.0")
    (root / "cohn-kanade-images" / "S001" / "002").mkdir(parents=True)
    (root / "Emotion" / "S001" / "002").mkdir(parents=True)
    (root / "Emotion" / "S001" / "002" / "S001_002_00000001_emotion.txt").write_text("3.0")
    seqs = {s.sequence: s for s in read_ckplus(root)}
    assert seqs["S001_002"].status == "error" and "0 image file(s)" in seqs["S001_002"].reason


def test_read_frame_bad_files(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(DataError) as err:
        read_frame(empty)
    assert str(empty) in str(err.value) and "0 bytes" in str(err.value)
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    with pytest.raises(DataError) as err:
        read_frame(corrupt)
    assert str(corrupt) in str(err.value) and "not a decodable image" in str(err.value)
    with pytest.raises(DataError, match="cannot read frame"):
        read_frame(tmp_path / "missing.png")


# ---- videos ------------------------------------------------------------------------------------

def _video(path: Path, frames: int = 5, shape=(64, 80)) -> Path:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10, (shape[1], shape[0]))
    assert writer.isOpened()
    rng = np.random.default_rng(0)
    for _ in range(frames):
        writer.write(rng.integers(0, 255, size=shape + (3,), dtype=np.uint8))
    writer.release()
    return path


def test_video_folder_reader(tmp_path):
    _video(tmp_path / "clips" / "a.avi", frames=5)
    _video(tmp_path / "b.avi", frames=3)
    (tmp_path / "labels.csv").write_text(
        "path,emotion,subject\nclips/a.avi,Happy,p1\nb.avi,7,p2\nmissing.avi,anger,p3\nb.avi,contempt,p4\n"
        .replace("b.avi,contempt", "c.avi,contempt"))
    _video(tmp_path / "c.avi", frames=2)
    seqs = {s.sequence: s for s in read_video_folder(tmp_path)}
    assert seqs["clips_a"].emotion == "happiness" and seqs["clips_a"].subject == "p1" and seqs["clips_a"].usable
    assert seqs["b"].emotion == "surprise" and seqs["b"].usable
    assert seqs["missing"].status == "error" and "missing.avi" in seqs["missing"].reason
    assert seqs["c"].status == "skipped"
    frames = list(iter_frames(seqs["clips_a"]))
    assert len(frames) == 5 and all(f.ndim == 2 and f.shape == (64, 80) for _, f in frames)


def test_video_that_cannot_be_decoded(tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"this is not a video at all" * 50)
    with pytest.raises(DataError) as err:
        list(iter_video_frames(bad))
    assert str(bad) in str(err.value)
    assert "cannot open" in str(err.value) or "no frame" in str(err.value)
    empty = tmp_path / "empty.mp4"
    empty.write_bytes(b"")
    with pytest.raises(DataError, match="0 bytes"):
        list(iter_video_frames(empty))


def test_video_folder_bad_labels(tmp_path):
    with pytest.raises(DataError, match="videos folder not found"):
        read_video_folder(tmp_path / "nowhere")
    with pytest.raises(DataError, match="labels.csv: labels file not found"):
        read_video_folder(tmp_path)
    labels = tmp_path / "labels.csv"
    labels.write_text("file,emotion\na.avi,anger\n")
    with pytest.raises(DataError, match=r"missing column\(s\) \['path', 'subject'\]"):
        read_video_folder(tmp_path)
    labels.write_text("path,emotion,subject\n")
    with pytest.raises(DataError, match="no rows"):
        read_video_folder(tmp_path)
    _video(tmp_path / "a.avi")
    labels.write_text("path,emotion,subject\na.avi,grumpy,p1\n")
    with pytest.raises(DataError) as err:
        read_video_folder(tmp_path)
    assert "no usable labelled sequence" in str(err.value) and "grumpy" in str(err.value)
    labels.write_text("path,emotion,subject\na.avi,anger,p1\na.avi,fear,p1\n")
    with pytest.raises(DataError, match="already used on line 2"):
        read_video_folder(tmp_path)


def test_normalise_label():
    assert normalise_label(" Surprise ") == "surprise"
    assert normalise_label("sad") == "sadness"
    assert normalise_label("5.0000000e+00") == "happiness"
    assert normalise_label("neutral") == "neutral"
    assert normalise_label("3.5") is None and normalise_label("bored") is None


def test_ckplus_label_without_its_image_folder_is_an_error_row_not_a_silent_loss(tmp_path):
    root = tmp_path / "CK+"
    _sequence(root, "S005", "001", label="3.0")
    orphan = root / "Emotion" / "S005" / "002"
    orphan.mkdir(parents=True)
    (orphan / "S005_002_00000009_emotion.txt").write_text("5.0")
    seqs = {s.sequence: s for s in read_ckplus(root)}
    assert seqs["S005_002"].status == "error"
    assert seqs["S005_002"].reason == (f"{orphan}: an emotion label, but no image folder "
                                       f"{root / 'cohn-kanade-images' / 'S005' / '002'}")
    assert seqs["S005_001"].usable
