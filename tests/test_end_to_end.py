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
    kar = pruning[pruning["selection"].isin(["ig", "random"])]
    assert set(kar["n_landmarks"]) == {32} and len(kar) == 2 * 2 * 6 * 2
    roar = pruning[~pruning["selection"].isin(["ig", "random"])]  # ROAR: T-EMO without 32 landmarks
    assert set(roar["selection"]) == {"roar", "roar_random"} and set(roar["n_landmarks"]) == {468 - 32}
    assert set(roar["variant"]) == {"t-emo"} and len(roar) == 2 * 6 * 2


def test_checks_and_verdicts_exist(smoke_run):
    results = smoke_run / "results"
    deletion = pd.read_csv(results / "deletion.csv")
    assert set(deletion["emotion"]) == set(EMOTIONS) and set(deletion["order"]) == {"ig", "random"}
    assert deletion["area"].between(0, 1).all()
    assert set(pd.read_csv(results / "randomisation.csv")["level"]) == {1, 2, 3, 4, 5}
    assert set(pd.read_csv(results / "stability.csv")["factor"]) == {"seeds", "typical", "steps"}
    forest = pd.read_csv(results / "forest.csv")
    assert {"k_vs_all", "ig_vs_random", "roar_vs_random", "deletion_vs_random", "insertion_vs_random",
            "randomisation"} == set(forest["comparison"])
    verdicts = pd.read_csv(results / "verdicts.csv")
    assert list(verdicts["emotion"]) == list(EMOTIONS)
    assert (smoke_run / "attributions" / "frames.npz").is_file()
    html = (smoke_run / "05_results.html").read_text()
    assert "<details>" in html and "Does the explanation hold up?" in html


def test_second_run_skips_every_stage(smoke_run, repo):
    before = (smoke_run / "results" / "training.csv").read_text()
    proc = subprocess.run([sys.executable, "-m", "emolib.cli", "run", str(repo / "params" / "smoke.yaml"),
                           "--out", str(smoke_run)], cwd=repo, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("skipped") == len(STAGES)
    assert (smoke_run / "results" / "training.csv").read_text() == before
