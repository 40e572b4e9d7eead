"""One real run of the whole study at smoke scale: papermill executes all five notebooks (real
MediaPipe on generated demo images, real TensorFlow training, real IG), then checks the run
folder against the contract in DESIGN.md."""
from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from emolib.landmarks import load_landmarks
from emolib.vocab import EMOTIONS, STAGES

pytestmark = pytest.mark.slow


def test_every_stage_complete_with_notebook_and_html(smoke_run):
    manifest = json.loads((smoke_run / "manifest.json").read_text())
    assert [s for s in STAGES if manifest["stages"][s]["status"] == "complete"] == list(STAGES)
    for stage in STAGES:
        nb = json.loads((smoke_run / f"{stage}.ipynb").read_text())
        assert nb["metadata"]["papermill"]["parameters"]["run_dir"] == str(smoke_run.resolve())
        assert not any(o.get("output_type") == "error" for c in nb["cells"] for o in c.get("outputs", []))
        html = (smoke_run / f"{stage}.html").read_text()
        # offline report: plotly.js embedded, nothing fetched (plotly.js itself mentions its CDN)
        assert not re.search(r"<script[^>]*\bsrc=[\"']https?://", html)
    assert manifest["versions"]["mediapipe"] == "0.10.21"


def test_landmarks_follow_the_contract(smoke_run):
    data = load_landmarks(smoke_run / "data" / "landmarks.npz")
    assert set(data.emotion) == set(EMOTIONS)
    assert data.X.shape[1:] == (4, 2, 468) and data.X.dtype == np.float32
    assert data.flipped.any() and (~data.flipped).any()
    report = pd.read_csv(smoke_run / "data" / "extraction_report.csv")
    assert {"frames", "frames_without_face", "status", "reason"} <= set(report.columns)
    assert (report["status"] == "skipped").any()  # the demo's contempt sequences are left out


def test_results_tables_exist(smoke_run):
    training = pd.read_csv(smoke_run / "results" / "training.csv")
    assert set(training["variant"]) == {"t-emo", "r-emo"} and set(training["emotion"]) == set(EMOTIONS)
    ranking = pd.read_csv(smoke_run / "results" / "landmark_ranking.csv")
    assert ranking.groupby("emotion")["landmark"].nunique().eq(468).all()
    pruning = pd.read_csv(smoke_run / "results" / "pruning.csv")
    assert set(pruning["selection"]) == {"ig", "random"} and set(pruning["n_landmarks"]) == {32}


def test_second_run_skips_every_stage(smoke_run, repo):
    before = (smoke_run / "results" / "training.csv").read_text()
    proc = subprocess.run([sys.executable, "-m", "emolib.cli", "run", str(repo / "params" / "smoke.yaml"),
                           "--out", str(smoke_run)], cwd=repo, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("skipped") == len(STAGES)
    assert (smoke_run / "results" / "training.csv").read_text() == before
