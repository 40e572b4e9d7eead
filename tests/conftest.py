"""Shared fixtures. ``smoke_run`` runs the whole study once (papermill, all five notebooks, real
MediaPipe on the generated demo images, real TensorFlow training) at smoke scale, for every test
that needs a finished run folder."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def repo() -> Path:
    return REPO


@pytest.fixture(scope="session")
def smoke_run(tmp_path_factory) -> Path:
    """A run folder produced by ``emolib run params/smoke.yaml`` (all five stages)."""
    out = tmp_path_factory.mktemp("smoke") / "run"
    proc = subprocess.run(
        [sys.executable, "-m", "emolib.cli", "run", str(REPO / "params" / "smoke.yaml"), "--out", str(out)],
        cwd=REPO, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        pytest.fail(f"smoke run failed (exit {proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")
    return out
