"""A real ``emolib run`` SIGKILLed in the middle of stage 02 (with its kernel), then the same
command again: stage 01 is skipped, the models finished before the kill are not trained again, and
the results equal an uninterrupted run's (timing columns aside)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
SETTINGS = ["emotions=[happiness,surprise]", "seeds=[0]", "grid.enabled=false", "svm.enabled=false",
            "data.demo.subjects=3", "train.epochs=4", "train.threads=1", "data.workers=1"]
TIMING = ["train_seconds", "seconds_per_epoch"]


def _command(out: Path) -> list[str]:
    sets = [a for s in SETTINGS for a in ("--set", s)]
    return [sys.executable, "-m", "emolib.cli", "run", str(REPO / "params" / "smoke.yaml"), "--out", str(out),
            "--stages", "01,02", *sets]


def _env() -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO)}


def _finished_units(out: Path) -> list[Path]:
    return sorted((out / "models").rglob("*.json"))


@pytest.fixture(scope="module")
def clean(tmp_path_factory) -> Path:
    """An uninterrupted run of stages 01 and 02 at the tiny settings."""
    out = tmp_path_factory.mktemp("clean") / "run"
    proc = subprocess.run(_command(out), env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    return out


def _same_results(a: Path, b: Path) -> None:
    for table, key in (("training.csv", ["variant", "emotion", "seed"]), ("splits.csv", None)):
        x = pd.read_csv(a / "results" / table).drop(columns=TIMING, errors="ignore")
        y = pd.read_csv(b / "results" / table).drop(columns=TIMING, errors="ignore")
        if key:
            x, y = (t.sort_values(key).reset_index(drop=True) for t in (x, y))
        pd.testing.assert_frame_equal(x, y)
    assert (a / "data" / "landmarks.npz").read_bytes() == (b / "data" / "landmarks.npz").read_bytes()


@pytest.mark.timeout(900)
def test_sigkill_in_stage_02_then_resume_equals_a_clean_run(tmp_path, clean):
    n_units = len(_finished_units(clean))
    assert n_units == 4  # 2 emotions x 2 variants x 1 seed

    killed = tmp_path / "killed"
    run = subprocess.Popen(_command(killed), env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           start_new_session=True)
    deadline = time.time() + 600
    while len(_finished_units(killed)) < 1:
        assert run.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.1)
    os.killpg(run.pid, signal.SIGKILL)  # the runner and its kernel, mid-stage
    run.wait(timeout=30)
    survivors = {p: p.stat().st_mtime_ns for p in _finished_units(killed)}
    assert 1 <= len(survivors) < n_units, "killed too late to test resuming"
    manifest = json.loads((killed / "manifest.json").read_text())
    assert manifest["stages"]["02_training"]["status"] == "running"

    proc = subprocess.run(_command(killed), env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "[01_data_prep] complete, with unchanged parameters, inputs and outputs: skipped" in proc.stdout
    assert "[02_training] redone: its last run is running" in proc.stdout
    for unit, mtime in survivors.items():  # finished before the kill: kept, not trained again
        assert unit.stat().st_mtime_ns == mtime
    assert not list(killed.rglob(".*.tmp*"))

    _same_results(clean, killed)


@pytest.mark.timeout(900)
def test_a_truncated_model_is_noticed_and_retrained_by_a_plain_rerun(tmp_path, clean):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(clean, run)
    # The copy's manifest records the clean folder's paths relative to the run: still valid.
    model = sorted((run / "models").rglob("*.keras"))[0]
    model.write_bytes(model.read_bytes()[:100])  # as a full disk or a cut copy leaves it
    proc = subprocess.run(_command(run), env=_env(), capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    rel = model.relative_to(run).as_posix()
    assert f"[02_training] redone: output {rel} changed (size" in proc.stdout
    from emolib.models import read_record

    assert read_record(model) is not None  # retrained whole, its record matching it again
    _same_results(clean, run)
