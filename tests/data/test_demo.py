"""The embedded demo dataset: CK+ layout, determinism, regeneration rules, and expressions that
MediaPipe really sees where the ground truth says they are."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from emolib.data.demo import (
    CODES,
    FaceWarper,
    base_faces,
    expression_displacements,
    ground_truth,
    reference_layout,
    write_demo_dataset,
)
from emolib.data.facemesh import mirror_permutation
from emolib.data.sources import read_ckplus, read_frame
from emolib.errors import DataError
from emolib.vocab import EMOTIONS, N_LANDMARKS

TINY = dict(seed=0, subjects=3, frames_per_sequence=3, contempt_sequences=2, image_size=192, progress=False)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return write_demo_dataset(tmp_path_factory.mktemp("demo") / "ck", **TINY)


def _digest(root: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file() and p.name != "demo_dataset.json"):
        digest.update(str(path.relative_to(root)).encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()


def test_writes_the_ckplus_layout(demo):
    frames = sorted((demo / "cohn-kanade-images").rglob("*.png"))
    labels = sorted((demo / "Emotion").rglob("*.txt"))
    assert len(labels) == 3 * 6 + 2 and len(frames) == 3 * len(labels)
    for path in frames:
        subject, seq = path.parent.parent.name, path.parent.name
        assert re.fullmatch(rf"{subject}_{seq}_\d{{8}}\.png", path.name)
        assert re.fullmatch(r"S\d{3}", subject) and re.fullmatch(r"\d{3}", seq)
    codes = []
    for label in labels:
        text = label.read_text()
        assert re.fullmatch(r" {3}\d\.0000000e\+00\n", text)  # CK+'s float text
        codes.append(int(float(text)))
        # the label file is named after the sequence's last frame, as in CK+
        last = sorted((demo / "cohn-kanade-images" / label.parent.parent.name / label.parent.name).glob("*.png"))[-1]
        assert label.name == last.stem + "_emotion.txt"
    assert sorted(set(codes)) == sorted(CODES.values()) and codes.count(CODES["contempt"]) == 2


def test_frames_mix_grey_and_rgb_and_two_sizes(demo):
    import cv2

    frames = sorted((demo / "cohn-kanade-images").rglob("*.png"))
    channels = {cv2.imread(str(p), cv2.IMREAD_UNCHANGED).ndim for p in frames}
    sizes = {cv2.imread(str(p), cv2.IMREAD_UNCHANGED).shape[:2] for p in frames}
    assert channels == {2, 3}
    assert len(sizes) == 2 and (192, 192) in sizes


def test_the_ckplus_reader_reads_it(demo):
    sequences = read_ckplus(demo)
    usable = [s for s in sequences if s.usable]
    assert len(usable) == 18 and {s.emotion for s in usable} == set(EMOTIONS)
    assert sum(s.emotion == "contempt" and s.status == "skipped" for s in sequences) == 2
    assert {s.subject for s in usable} == {"S001", "S002", "S003"}


def test_ground_truth_file(demo):
    truth = json.loads((demo / "ground_truth.json").read_text())
    assert set(truth["landmarks"]) == set(EMOTIONS) and set(truth["description"]) == set(EMOTIONS)
    perm = mirror_permutation()
    sets = {}
    for emotion, ids in truth["landmarks"].items():
        assert ids == sorted(set(ids)) and 10 <= len(ids) <= 250
        assert all(0 <= i < N_LANDMARKS for i in ids)
        assert {int(perm[i]) for i in ids} == set(ids)  # expressions are symmetric
        sets[emotion] = set(ids)
    assert 61 in sets["happiness"] and 291 in sets["happiness"]  # lip corners
    assert 152 in sets["surprise"]  # chin (jaw drop)
    assert len({frozenset(s) for s in sets.values()}) == 6


def test_expression_programs_move_what_they_say():
    layout = reference_layout(192)
    peaks = expression_displacements(layout)
    down = 1  # face units: y grows towards the chin
    assert peaks["happiness"][[61, 291], down].max() < -0.05  # lip corners up
    assert peaks["happiness"][291, 0] > 0 > peaks["happiness"][61, 0]  # ... and out
    assert peaks["sadness"][[61, 291], down].min() > 0.05  # lip corners down
    assert peaks["surprise"][152, down] > 0.1 and peaks["surprise"][105, down] < -0.05  # jaw, brow
    assert peaks["anger"][105, down] > 0.05  # brows down
    assert peaks["disgust"][[48, 1], down].max() < -0.05  # nose wing and tip up
    assert peaks["disgust"][[0, 17, 152], down].max() < -0.05  # upper lip up, lower lip and chin follow
    assert peaks["disgust"][0, down] < peaks["disgust"][17, down]  # ... the upper lip the most
    assert peaks["disgust"][55, down] > 0.05  # inner brows down
    assert abs(peaks["contempt"][61]).max() < 1e-9 < abs(peaks["contempt"][291]).max()  # one-sided
    np.testing.assert_allclose(layout[mirror_permutation(), 0], -layout[:, 0], atol=1e-9)


@pytest.mark.parametrize("photo", [0, 1])  # the two photos: astronaut, Grace Hopper
def test_facemesh_sees_each_expression_where_the_ground_truth_says(photo):
    """Warp a real photo to each emotion's peak; FaceMesh's landmarks move most where they should.

    FaceMesh couples neighbouring landmarks (a raised brow drags the forehead outline along), so
    the landmarks outside the ground truth move too, but clearly less on average.
    """
    from emolib.data.facemesh import FaceMeshExtractor

    warper = FaceWarper(base_faces(256)[photo])
    layout = reference_layout(256)
    truth = ground_truth(256)["landmarks"]
    with FaceMeshExtractor() as extractor:
        def landmarks(displacement):
            image = np.clip(warper.render(displacement, 0.0, (0.0, 0.0), 1.0), 0, 255).astype(np.uint8)
            return extractor.landmarks(image)

        rest = landmarks(np.zeros((N_LANDMARKS, 2)))
        for emotion, peak in expression_displacements(layout).items():
            if emotion not in EMOTIONS:
                continue
            moved = np.linalg.norm(landmarks(peak) - rest, axis=1)
            inside = np.zeros(N_LANDMARKS, bool)
            inside[truth[emotion]] = True
            assert moved[inside].mean() > 1.3 * moved[~inside].mean(), emotion
            assert moved[inside].mean() > 0.006, emotion  # about 1.5 px at 256 px


def test_same_seed_same_files_other_seed_other_files(demo, tmp_path):
    again = write_demo_dataset(tmp_path / "again", **TINY)
    assert _digest(again) == _digest(demo)
    other = write_demo_dataset(tmp_path / "other", **{**TINY, "seed": 1})
    assert _digest(other) != _digest(demo)


def test_complete_dataset_is_not_regenerated_changed_settings_are(demo, tmp_path):
    import shutil

    root = tmp_path / "ck"
    shutil.copytree(demo, root)
    frame = next((root / "cohn-kanade-images").rglob("*.png"))
    stamp = frame.stat().st_mtime_ns
    write_demo_dataset(root, **TINY)
    assert frame.stat().st_mtime_ns == stamp
    # an interrupted generation (marker says incomplete) is redone
    marker = json.loads((root / "demo_dataset.json").read_text())
    (root / "demo_dataset.json").write_text(json.dumps({**marker, "complete": False}))
    stray = root / "cohn-kanade-images" / "S009" / "001" / "S009_001_00000001.png"
    stray.parent.mkdir(parents=True)
    stray.write_bytes(b"half")
    write_demo_dataset(root, **TINY)
    assert not stray.exists() and _digest(root) == _digest(demo)
    # other settings: regenerated, nothing of the old dataset left
    write_demo_dataset(root, **{**TINY, "frames_per_sequence": 2, "contempt_sequences": 0})
    assert len(list((root / "cohn-kanade-images").rglob("*.png"))) == 2 * 18
    assert json.loads((root / "demo_dataset.json").read_text())["complete"] is True


def test_refuses_a_foreign_folder_and_bad_settings(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(DataError, match="refusing to write the demo dataset there"):
        write_demo_dataset(foreign, **TINY)
    assert (foreign / "thesis.tex").read_text() == "precious" and len(list(foreign.iterdir())) == 1
    with pytest.raises(DataError, match="subjects=1 is outside 3..500"):
        write_demo_dataset(tmp_path / "x", **{**TINY, "subjects": 1})
    with pytest.raises(DataError, match="image_size=64"):
        write_demo_dataset(tmp_path / "x", **{**TINY, "image_size": 64})


def test_frames_decode_and_go_from_neutral_to_peak(demo):
    frames = sorted((demo / "cohn-kanade-images" / "S003" / "001").glob("*.png"))
    images = [read_frame(p).astype(float) for p in frames]
    assert np.abs(images[1] - images[0]).mean() > 0.5  # something moves
    assert all(0 < im.mean() < 255 for im in images)
