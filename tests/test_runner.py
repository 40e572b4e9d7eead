"""The papermill runner, on five tiny real notebooks: order, manifest, HTML, skip/force, failure."""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from notebook_tool import write_notebook  # noqa: E402

from emolib.config import parse_params
from emolib.errors import EmolibError, ParamsError
from emolib.runner import parse_stages, run_study
from emolib.vocab import STAGES

PARAMS_CELL = ('run_dir: str = "../runs/demo"  # run folder\n'
               'params_file: str = ""  # params file\n')


def _stage_source(stage: str, fail: bool = False) -> str:
    body = (f"# visible-code-marker\nfrom pathlib import Path\n"
            f"log = Path(run_dir) / 'log.txt'\n"
            f"log.write_text((log.read_text() if log.exists() else '') + '{stage}\\n')\n")
    if fail:
        body += "raise ValueError('planted failure in ' + '" + stage + "')\n"
    return body


@pytest.fixture
def notebooks(tmp_path):
    folder = tmp_path / "nbs"
    folder.mkdir()
    for stage in STAGES:
        write_notebook(folder / f"{stage}.ipynb",
                       [("markdown", f"# {stage}"), ("parameters", PARAMS_CELL), ("code", _stage_source(stage))])
    return folder


def _log(run: Path) -> list[str]:
    return (run / "log.txt").read_text().split()


def test_runs_all_stages_in_order_and_writes_manifest_and_html(tmp_path, notebooks):
    out = tmp_path / "run"
    params = parse_params({"name": "t"})
    manifest = run_study(params, "inline", out, notebook_dir=notebooks, log=lambda m: None)
    assert _log(out) == list(STAGES)
    for stage in STAGES:
        assert manifest["stages"][stage]["status"] == "complete"
        assert manifest["stages"][stage]["wall_seconds"] >= 0
        assert (out / f"{stage}.ipynb").is_file() and (out / f"{stage}.html").is_file()
        executed = json.loads((out / f"{stage}.ipynb").read_text())
        # papermill records what the run actually received
        assert executed["metadata"]["papermill"]["parameters"]["run_dir"] == str(out.resolve())
    on_disk = json.loads((out / "manifest.json").read_text())
    assert on_disk["versions"]["tensorflow"] and on_disk["stages"] == manifest["stages"]
    assert (out / "params.yaml").read_text() == params.to_yaml()
    # the results report hides code, the others show it
    assert "visible-code-marker" in (out / "01_data_prep.html").read_text()
    assert "visible-code-marker" not in (out / "05_results.html").read_text()


def test_rerun_skips_complete_stages_force_redoes(tmp_path, notebooks):
    out = tmp_path / "run"
    params = parse_params({"name": "t"})
    run_study(params, "inline", out, notebook_dir=notebooks, log=lambda m: None)
    messages = []
    run_study(params, "inline", out, notebook_dir=notebooks, log=messages.append)
    assert _log(out) == list(STAGES)  # nothing re-executed
    assert sum("skipped" in m for m in messages) == len(STAGES)
    run_study(params, "inline", out, notebook_dir=notebooks, force=True, stages=["03_global_ig"], log=lambda m: None)
    assert _log(out) == list(STAGES) + ["03_global_ig"]


def test_changed_parameter_redoes_that_stage_and_the_ones_after(tmp_path, notebooks):
    out = tmp_path / "run"
    run_study(parse_params({"name": "t"}), "inline", out, notebook_dir=notebooks, log=lambda m: None)
    run_study(parse_params({"name": "t", "ig": {"steps": 7}}), "inline", out, notebook_dir=notebooks,
              log=lambda m: None)
    assert _log(out) == list(STAGES) + ["03_global_ig", "04_pruning", "05_results"]


def test_failing_stage_stops_the_run_and_keeps_its_notebook(tmp_path, notebooks):
    write_notebook(notebooks / "02_training.ipynb",
                   [("parameters", PARAMS_CELL), ("code", _stage_source("02_training", fail=True))])
    out = tmp_path / "run"
    with pytest.raises(EmolibError) as exc:
        run_study(parse_params({"name": "t"}), "inline", out, notebook_dir=notebooks, log=lambda m: None)
    msg = str(exc.value)
    assert "02_training" in msg and "ValueError" in msg and "planted failure" in msg
    assert "02_training.kernel.log" in msg and (out / "logs" / "02_training.kernel.log").is_file()
    assert _log(out) == ["01_data_prep", "02_training"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["01_data_prep"]["status"] == "complete"
    assert manifest["stages"]["02_training"]["status"] == "failed"
    assert "03_global_ig" not in manifest["stages"]
    assert (out / "02_training.ipynb").is_file()  # partly executed notebook kept


def test_notebook_without_the_runner_parameters_is_refused(tmp_path, notebooks):
    write_notebook(notebooks / "04_pruning.ipynb", [("parameters", 'rundir: str = "x"\n'), ("code", "1")])
    with pytest.raises(EmolibError, match=r"04_pruning.ipynb: its parameters cell does not declare"):
        run_study(parse_params({}), "inline", tmp_path / "run", notebook_dir=notebooks, log=lambda m: None)
    assert not (tmp_path / "run" / "log.txt").exists()  # refused before any stage ran


def test_parse_stages():
    assert parse_stages("03,1") == ["01_data_prep", "03_global_ig"]
    assert parse_stages(None) == list(STAGES)
    assert parse_stages("05_results") == ["05_results"]
    with pytest.raises(ParamsError, match="unknown stage '7'"):
        parse_stages("1,7")


def test_html_fetches_nothing_and_hides_native_log_noise(tmp_path, notebooks):
    noisy = ("import sys\n"
             "sys.stderr.write('E0000 00:00:1795313167.221326    2043 cuda' + '_dnn.cc:8579] Unable\\n')\n"
             "sys.stderr.write('a real warning ' + 'the reader must see\\n')\n")
    write_notebook(notebooks / "01_data_prep.ipynb", [("parameters", PARAMS_CELL), ("code", noisy)])
    out = tmp_path / "run"
    run_study(parse_params({}), "inline", out, notebook_dir=notebooks, stages=["01_data_prep"], log=lambda m: None)
    html = (out / "01_data_prep.html").read_text()
    assert not re.search(r'<script[^>]*\bsrc="https?://', html)
    assert "a real warning the reader must see" in html and "cuda_dnn" not in html
    assert "cuda_dnn" in (out / "01_data_prep.ipynb").read_text()  # the notebook keeps everything


def test_a_params_change_only_in_execution_says_nothing_is_redone(tmp_path):
    """params.yaml is rewritten (it records the run), and the log says no stage depends on it."""
    from emolib.config import parse_params
    from emolib.run_folder import RunFolder
    from emolib.runner import _write_params

    run = RunFolder(tmp_path).ensure()
    logged: list[str] = []
    _write_params(run, parse_params({}), {}, logged.append)
    _write_params(run, parse_params({"execution": {"backend": "ray"}}), {}, logged.append)
    assert "backend: ray" in run.params_path.read_text()
    assert logged and "only in execution, which no stage depends on" in logged[-1]
    _write_params(run, parse_params({"execution": {"backend": "ray"}, "seeds": [4]}), {}, logged.append)
    assert "stages that depend on them are redone" in logged[-1]
