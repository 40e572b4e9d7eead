"""A run folder shared by the report tests: notebook 05 run by the study's runner over stage
01-04 outputs of the contract's shape (no training), once per session."""
from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def results_report_of_a_fake_run(tmp_path_factory) -> Path:
    """Notebook 05 itself, run by the study's runner on a run folder holding stage 01-04 outputs
    of the contract's shape (written by tests/results/test_results.py, no training); returns its
    ``05_results.html`` (the runner also wrote ``index.html`` beside it)."""
    from emolib.runner import run_study
    from tests.results.test_results import write_fake_study

    root = tmp_path_factory.mktemp("results_report")
    run, params = write_fake_study(root / "run")
    logs: list[str] = []
    run_study(params, str(root / "run_params.yaml"), run.root, stages=["05_results"], log=logs.append)
    return run.root / "05_results.html"
