"""One run per run folder, with real processes: a second run on a folder in use is refused at once
(naming the folder and the holder's pid, leaving params.yaml alone); a run SIGKILLed while it holds
the folder does not block the next one."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from notebook_tool import write_notebook  # noqa: E402

from emolib.errors import EmolibError
from emolib.run_lock import hold_run_folder
from emolib.vocab import STAGES

REPO = Path(__file__).resolve().parents[1]
PARAMS_CELL = ('run_dir: str = "../runs/demo"  # run folder\n'
               'params_file: str = ""  # params file\n')
# Stage 01 says it has started, then waits while the file "hold" beside the run folder exists.
HOLDING = ("import time\nfrom pathlib import Path\n"
           "(Path(run_dir) / 'started').write_text('yes')\n"
           "while (Path(run_dir).parent / 'hold').exists():\n    time.sleep(0.2)\n")
RUN = ("import sys\nfrom pathlib import Path\n"
       "from emolib.config import parse_params\nfrom emolib.errors import EmolibError\n"
       "from emolib.runner import run_study\n"
       "try:\n"
       "    run_study(parse_params({{'name': 't', 'train': {{'epochs': {epochs}}}}}), 'inline', Path({out!r}),\n"
       "              notebook_dir=Path({nbs!r}), stages=['01_data_prep'])\n"
       "except EmolibError as exc:\n    print('error:', exc, file=sys.stderr)\n    sys.exit(2)\n")


def _start(out: Path, nbs: Path, epochs: int) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-c", RUN.format(out=str(out), nbs=str(nbs), epochs=epochs)],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)  # its own process group: the kernel dies with it


def _wait_for(path: Path, proc: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        if proc.poll() is not None:
            pytest.fail(f"the first run ended early: {proc.communicate()}")
        if time.time() > deadline:
            pytest.fail(f"{path} did not appear in {timeout} s")
        time.sleep(0.2)


@pytest.mark.timeout(300)
def test_second_run_is_refused_and_a_killed_holder_does_not_block(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    for stage in STAGES:
        code = HOLDING if stage == "01_data_prep" else "pass"
        write_notebook(nbs / f"{stage}.ipynb", [("parameters", PARAMS_CELL), ("code", code)])
    out = tmp_path / "run"
    (tmp_path / "hold").write_text("")
    first = _start(out, nbs, epochs=100)
    second = None
    try:
        _wait_for(out / "started", first)  # the first run is inside stage 01, holding the folder
        params_before = (out / "params.yaml").read_text()
        began = time.time()
        second = _start(out, nbs, epochs=1)
        _, err = second.communicate(timeout=120)
        assert second.returncode == 2, err
        assert time.time() - began < 60  # refused at once, not after the first run
        assert f"{out}: this run folder is in use by process {first.pid}" in err
        assert "choose another --out" in err
        assert (out / "params.yaml").read_text() == params_before  # the second run's epochs=1 not written
        assert "epochs: 100" in params_before

        os.killpg(first.pid, signal.SIGKILL)  # the holder dies without releasing anything
        first.wait(timeout=30)
        assert json.loads((out / ".emolib.lock.owner").read_text())["pid"] == first.pid  # left behind
        (tmp_path / "hold").unlink()
        third = _start(out, nbs, epochs=100)
        out_text, err = third.communicate(timeout=240)
        assert third.returncode == 0, err
        assert f"the previous run (process {first.pid}) ended without releasing the folder" in out_text
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["stages"]["01_data_prep"]["status"] == "complete"
        assert not (out / ".emolib.lock.owner").exists()  # released at the end
    finally:
        for proc in (first, second):
            if proc is not None and proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)


def test_the_lock_is_refused_within_one_process_too_and_released_after(tmp_path):
    with hold_run_folder(tmp_path, log=lambda m: None):
        with pytest.raises(EmolibError, match=rf"{tmp_path}: this run folder is in use by process {os.getpid()}"):
            with hold_run_folder(tmp_path, log=lambda m: None):
                pass
    with hold_run_folder(tmp_path, log=lambda m: None):  # free again
        pass


def test_extract_is_refused_on_a_folder_a_run_holds(tmp_path, capsys):
    from emolib.cli import main

    out = tmp_path / "run"
    out.mkdir()
    with hold_run_folder(out, log=lambda m: None):
        assert main(["extract", str(tmp_path / "nowhere"), "--out", str(out)]) == 2
    assert f"{out}: this run folder is in use by process {os.getpid()}" in capsys.readouterr().err
