"""The `emolib` command line: clear messages and exit codes, nothing run on bad parameters."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from emolib.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_check_accepts_shipped_params(capsys):
    assert main(["check", str(REPO / "params" / "demo.yaml")]) == 0
    assert "valid" in capsys.readouterr().out


def test_check_refuses_a_misspelled_key(tmp_path, capsys):
    f = tmp_path / "bad.yaml"
    f.write_text("train:\n  epoch: 3\n")
    assert main(["check", str(f)]) == 2
    err = capsys.readouterr().err
    assert str(f) in err and "train.epoch: unknown key" in err and "epochs" in err


def test_run_refuses_bad_params_before_any_work(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["run", str(REPO / "params" / "smoke.yaml"), "--out", str(out), "--set", "ig.stepz=3"]) == 2
    assert "ig.stepz: unknown key" in capsys.readouterr().err
    assert not out.exists()


def test_run_refuses_unknown_stage(tmp_path, capsys):
    assert main(["run", str(REPO / "params" / "smoke.yaml"), "--out", str(tmp_path / "r"), "--stages", "9"]) == 2
    assert "unknown stage" in capsys.readouterr().err


def test_console_script_help_lists_commands():
    proc = subprocess.run([sys.executable, "-m", "emolib.cli", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0
    for command in ("run", "check", "demo-data", "extract"):
        assert command in proc.stdout
