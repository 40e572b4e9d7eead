"""The embedded demo dataset: CK+ layout, determinism, regeneration rules, expressions that
MediaPipe really sees where the ground truth says they are, and (version 4) what makes it as hard
as real faces: varying expressiveness, blinks, speech, head drift, shared action units."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest

from emolib.data.demo import CODES, DIFFICULTY, make_scene, make_subject, sequence_motion, write_demo_dataset
from emolib.data.expressions import PROTOTYPES, expression_displacements, ground_truth
from emolib.data.facemesh import mirror_permutation
from emolib.data.faces import FaceWarper, base_faces, close_eyes, reference_layout
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


# ---- version 4: what makes the demo as hard as real faces --------------------------------------

UPPER_LIDS = (157, 158, 159, 160, 161, 173, 246, 384, 385, 386, 387, 388, 398, 466)  # corners excluded


def _motions(emotion: str, count: int = 40, seed: int = 0):
    """``count`` sequences of one emotion, each of a fresh subject (12 frames)."""
    scene = make_scene(192)
    out = []
    for i in range(count):
        subject = make_subject(scene.layout, np.random.default_rng([seed, 2, i]))
        out.append((subject, sequence_motion(scene, subject, emotion, 12, np.random.default_rng([seed, 3, i]))))
    return out


def test_expressiveness_varies_across_subjects_and_scales_the_expression():
    scene = make_scene(192)
    people = [make_subject(scene.layout, np.random.default_rng([0, 2, i])) for i in range(60)]
    strength = np.array([p.expressiveness for p in people])
    assert strength.max() > 2.0 * strength.min() and np.percentile(strength, 90) > 1.4 * np.percentile(strength, 10)
    # the same sequence draw on a person twice as expressive moves the face twice as far
    quiet, lively = (make_subject(scene.layout, np.random.default_rng([0, 2, 0])) for _ in range(2))
    lively.expressiveness = 2.0 * quiet.expressiveness
    a = sequence_motion(scene, quiet, "happiness", 12, np.random.default_rng(5)).expression
    b = sequence_motion(scene, lively, "happiness", 12, np.random.default_rng(5)).expression
    np.testing.assert_allclose(b, 2.0 * a, atol=1e-12)
    # ... and the peak of one emotion varies across sequences by more than the expressiveness alone
    peaks = [np.linalg.norm(m.expression[-1], axis=1).max() / s.expressiveness for s, m in _motions("surprise")]
    assert max(peaks) > 1.5 * min(peaks)


def test_optional_action_units_are_left_out_of_some_sequences():
    shown = [set(m.units) for _, m in _motions("surprise", 60)]
    for au, _, probability in PROTOTYPES["surprise"]:
        count = sum(au in units for units in shown)
        assert count == 60 if probability == 1.0 else 0 < count < 60, au


def test_every_emotion_blinks_talks_and_drifts_in_some_sequences_only():
    for emotion in EMOTIONS:
        motions = [m for _, m in _motions(emotion)]
        blinking = [m.closure for m in motions if m.closure.max() > 0]
        assert 0 < len(blinking) < len(motions), emotion
        # a blink lasts a frame or two (two may touch), and the eyes are open most of the time
        runs = [len(r) for c in blinking for r in "".join("x" if v > 0 else " " for v in c).split()]
        assert max(runs) <= 4 and np.median(runs) <= 2 and np.mean([(c > 0).mean() for c in blinking]) < 0.3
        talking = [m.speech for m in motions if np.abs(m.speech).max() > 0]
        assert 0 < len(talking) < len(motions), emotion
        # speech opens and closes the jaw (the chin, 152, goes down and up again), not a ramp
        chin = [np.diff(s[:, 152, 1]) for s in talking]
        assert sum((d > 1e-6).any() and (d < -1e-6).any() for d in chin) > len(chin) // 2, emotion
        # head drift: none in the first frame, more by the last than half way
        pose = np.array([np.abs(m.pose[:, 1]).max(axis=-1) for m in motions])  # nose tip
        assert np.abs(pose[:, 0]).max() < 1e-12
        shift = np.array([np.linalg.norm(m.shift, axis=1) for m in motions])
        assert shift[:, 0].max() < 1e-12 and shift[:, -1].mean() > 1.2 * shift[:, 3].mean() > 0
        assert np.std([m.angle[-1] - m.angle[0] for m in motions]) > 0.5  # degrees


def test_shared_motions_are_not_in_the_ground_truth():
    truth = {e: set(ids) for e, ids in ground_truth(192)["landmarks"].items()}
    # happiness sequences blink (upper lids) and talk (chin), yet neither is planted for happiness
    motions = [m for _, m in _motions("happiness")]
    assert any(m.closure.max() > 0 for m in motions) and any(np.abs(m.speech[:, 152]).max() > 0.02 for m in motions)
    assert not truth["happiness"] & set(UPPER_LIDS) and 152 not in truth["happiness"]
    # the ground truth does not depend on the shared motions' strength
    import dataclasses

    from emolib.data import demo

    saved = demo.DIFFICULTY
    try:
        demo.DIFFICULTY = dataclasses.replace(saved, strength=0.0)
        assert ground_truth(192)["landmarks"] == {e: sorted(ids) for e, ids in truth.items()}
    finally:
        demo.DIFFICULTY = saved
    # and at strength 0 a sequence's peak is the emotion's nominal program (what the ground truth
    # is made of), and nothing else moves
    scene = make_scene(192, dataclasses.replace(DIFFICULTY, strength=0.0))
    subject = make_subject(scene.layout, np.random.default_rng(0), scene.difficulty)
    motion = sequence_motion(scene, subject, "happiness", 12, np.random.default_rng(1))
    assert motion.closure.max() == 0 and np.abs(motion.speech).max() == 0 and np.abs(motion.pose).max() < 1e-12
    nominal = expression_displacements(scene.layout)["happiness"]
    np.testing.assert_allclose(motion.displacement[-1], DIFFICULTY.expressiveness_median * nominal, atol=1e-12)


def test_emotions_share_action_units_as_facs_prototypes_do():
    truth = {e: set(ids) for e, ids in ground_truth(192)["landmarks"].items()}
    peaks = expression_displacements(reference_layout(192))
    brow, chin, lower_lip = 105, 152, 17
    assert {brow, chin} <= truth["surprise"] & truth["fear"]  # brows raised (AU1+2), jaw dropped (AU26)
    assert peaks["fear"][brow, 1] < -0.05 and peaks["surprise"][brow, 1] < -0.05
    assert brow in truth["anger"] & truth["disgust"]  # brows lowered (AU4)
    assert peaks["anger"][brow, 1] > 0.05 and peaks["disgust"][brow, 1] > 0.05
    assert {chin, lower_lip} <= truth["sadness"] & truth["disgust"]  # chin raised (AU17)
    assert peaks["sadness"][chin, 1] < -0.03 and peaks["disgust"][chin, 1] < -0.03
    units = {e: {au for au, _, _ in p} for e, p in PROTOTYPES.items()}
    assert {"AU1+2", "AU26"} <= units["fear"] & units["surprise"] and "AU4" in units["anger"] & units["disgust"]
    assert "AU17" in units["sadness"] & units["disgust"]


@pytest.mark.parametrize("photo", [0, 1])
def test_facemesh_sees_a_blink_on_the_upper_lids(photo):
    from emolib.data.facemesh import FaceMeshExtractor

    warper = FaceWarper(base_faces(256)[photo])
    still = np.zeros((N_LANDMARKS, 2))
    head = {"angle_deg": 2.0, "shift": (3.0, -2.0), "scale": 1.01}
    image = warper.render(still, **head)
    closed = close_eyes(image, warper.positions(still, **head), 1.0, warper.down(head["angle_deg"]))
    assert np.abs(closed - image).max() > 50 and np.array_equal(close_eyes(image, warper.positions(still, **head), 0.0,
                                                                           warper.down(2.0)), image)
    with FaceMeshExtractor() as extractor:
        open_, shut = (extractor.landmarks(np.clip(im, 0, 255).astype(np.uint8)) for im in (image, closed))
    moved = (shut - open_)[:, 1] * 256 / warper.frame.unit  # downward motion, face units
    lids = np.zeros(N_LANDMARKS, bool)
    lids[list(UPPER_LIDS)] = True
    # FaceMesh's shape prior closes its lids only part way and drags other landmarks along a little
    assert moved[lids].mean() > 0.01 and moved[lids].mean() > 1.5 * np.abs(moved[~lids]).mean()


def test_positions_follow_the_rendered_landmarks():
    """Where :meth:`FaceWarper.positions` puts the landmarks is where FaceMesh finds them (the
    blink warp relies on it): exactly for the head motion; for an expression, FaceMesh follows
    only part of the planted motion, but in the same direction."""
    from emolib.data.facemesh import FaceMeshExtractor

    warper = FaceWarper(base_faces(256)[0])
    still = np.zeros((N_LANDMARKS, 2))
    rest_head = {"angle_deg": 0.0, "shift": (0.0, 0.0), "scale": 1.0}
    head = {"angle_deg": 3.0, "shift": (6.0, -4.0), "scale": 1.03}
    surprise = expression_displacements(reference_layout(256))["surprise"]
    with FaceMeshExtractor() as extractor:
        def found(displacement, motion):
            return extractor.landmarks(np.clip(warper.render(displacement, **motion), 0, 255).astype(np.uint8)) * 256

        rest = found(still, rest_head)
        moved, expressed = found(still, head) - rest, found(surprise, rest_head) - rest
    predicted = warper.positions(still, **head) - warper.positions(still, **rest_head)
    assert np.median(np.linalg.norm(moved - predicted, axis=1)) < 0.15 * np.median(np.linalg.norm(predicted, axis=1))
    planted = warper.positions(surprise, **rest_head) - warper.positions(still, **rest_head)
    assert np.corrcoef(expressed[:, 1], planted[:, 1])[0, 1] > 0.7
