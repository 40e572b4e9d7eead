"""Face finding on hard frames (small faces in a large frame, colour and grey; benchmarks/face_finding.py
builds them from the bundled public-domain photos): emolib loses no frame MediaPipe finds a face in,
says which finder found each sequence's face, and counts damaged frames as frames without a face."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

from emolib.cli import main
from emolib.config import parse_params
from emolib.data.stage import prepare_landmarks
from emolib.run_folder import RunFolder


def _load_benchmark(name: str):
    """Load ``benchmarks/<name>.py`` by its path. The folder is never put on ``sys.path``: a script
    there that shares a package's name would stand in for that package in every later import of
    this test process (a ``benchmarks/ray.py`` once broke the Ray tests that way)."""
    path = Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"emolib_benchmark_{name}", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


_face_finding = _load_benchmark("face_finding")
measure, write_hard_case = _face_finding.measure, _face_finding.write_hard_case


@pytest.fixture(scope="module")
def small_faces(tmp_path_factory):
    """Faces a tenth of a 640 x 490 frame's width: the short-range detector misses most of them."""
    return write_hard_case(tmp_path_factory.mktemp("hard") / "ck", n_frames=3, cases=("tenth",))


def test_no_frame_mediapipe_finds_is_lost_and_the_finder_is_named(small_faces):
    table = measure(small_faces)
    for sequence, row in table.items():
        assert row["emolib"] >= row["mediapipe"], (sequence, row)
    found = sum(r["emolib"] for r in table.values())
    assert found >= 0.75 * sum(r["frames"] for r in table.values())  # (before issue 12: none of them)
    assert "full_range" in {r["finder"] for r in table.values()}


def _params(root: Path, **data) -> object:
    return parse_params({"name": "h", "frames": 3, "emotions": ["happiness", "surprise"],
                         "data": {"source": "ckplus", "path": str(root), "workers": 1, **data}})


def test_report_names_the_finder_and_damaged_frames_count_as_faceless(small_faces, tmp_path):
    import shutil

    root = tmp_path / "ck"
    shutil.copytree(small_faces, root)
    frames = sorted((root / "cohn-kanade-images" / "S001" / "001").glob("*.png"))
    frames[0].write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00broken" * 40)  # corrupt
    frames[2].write_bytes(b"")  # zero bytes
    run = RunFolder(tmp_path / "run")
    prepare_landmarks(_params(root, missing_face={"max_missing_fraction": 0.9}), run, progress=False)
    report = run.read_extraction_report().set_index("sequence")
    row = report.loc["S001_001"]
    assert row["status"] == "filled" and row["frames_without_face"] == 2
    assert (f"2 unreadable, counted without a face: {frames[0].name} (not a decodable image (corrupt or "
            f"unsupported format)), {frames[2].name} (empty file (0 bytes), not an image)") in row["reason"]
    assert row["face_finder"] == "full_range"
    kept = report[report["status"].isin(["ok", "filled"])]
    assert set(kept["face_finder"]) <= {"short_range", "full_range", "facemesh"} and len(kept)


def test_extract_prints_what_failed_and_exits_zero_when_something_was_extracted(small_faces, tmp_path, capsys):
    code = main(["extract", str(small_faces), "--source", "ckplus", "--out", str(tmp_path / "x"),
                 "--frames", "3", "--workers", "1", "--no-flip"])
    out = capsys.readouterr().out
    assert code == 0
    assert "sequences: " in out and "extraction report:" in out
    report = RunFolder(tmp_path / "x").read_extraction_report()
    for row in report[report["status"].isin(["error", "dropped"])].itertuples():
        assert f"  {row.status}: {row.sequence}: " in out


def test_extract_exits_non_zero_when_nothing_was_extracted(tmp_path, capsys):
    from tests.data.test_sources import _sequence

    root = tmp_path / "ck"
    _sequence(root, "S001", "001", n=2, label="5.0")  # random noise: no face anywhere
    code = main(["extract", str(root), "--source", "ckplus", "--out", str(tmp_path / "x"), "--workers", "1"])
    captured = capsys.readouterr()
    assert code == 2 and "no sequence could be extracted" in captured.err
    assert "  dropped: S001_001: " in captured.out and "no face found in any of the 2 frames" in captured.out
