"""The manifest checks the files, not only its own record: on five tiny real notebooks that write
outputs, a replaced input file, a deleted or truncated output, a hand-edited params.yaml, a
single stage forced with new parameters and a stray temporary file are all noticed."""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
from notebook_tool import write_notebook  # noqa: E402

from emolib.config import parse_params
from emolib.errors import ParamsError
from emolib.runner import run_study
from emolib.vocab import STAGES

PARAMS_CELL = ('run_dir: str = "../runs/demo"  # run folder\n'
               'params_file: str = ""  # params file\n')
# What each tiny stage writes (relative to the run folder); stage 02 a "model", like the real one.
OUTPUTS = {"01_data_prep": "data/landmarks.npz", "02_training": "models/t-emo/anger/all_K468_seed0.keras",
           "03_global_ig": "results/landmark_ranking.csv", "04_pruning": "results/pruning.csv",
           "05_results": "results/table_1.csv"}


def _source(stage: str) -> str:
    return (f"from pathlib import Path\n"
            f"log = Path(run_dir) / 'log.txt'\n"
            f"log.write_text((log.read_text() if log.exists() else '') + '{stage}\\n')\n"
            f"out = Path(run_dir) / '{OUTPUTS[stage]}'\n"
            f"out.parent.mkdir(parents=True, exist_ok=True)\n"
            f"out.write_text('{stage} output\\n' * 50)\n")


@pytest.fixture
def notebooks(tmp_path):
    folder = tmp_path / "nbs"
    folder.mkdir()
    for stage in STAGES:
        write_notebook(folder / f"{stage}.ipynb", [("parameters", PARAMS_CELL), ("code", _source(stage))])
    return folder


@pytest.fixture
def videos(tmp_path):
    """A user's data folder (the tiny notebooks do not read it; the manifest does)."""
    folder = tmp_path / "videos"
    folder.mkdir()
    (folder / "labels.csv").write_text("path,emotion,subject\na.mp4,anger,s1\nb.mp4,happiness,s2\n")
    (folder / "a.mp4").write_bytes(b"\x00" * 200_000)  # over the hashing limit: size and time only
    (folder / "b.mp4").write_bytes(b"\x01" * 1000)
    return folder


def _ran(run: Path) -> list[str]:
    return (run / "log.txt").read_text().split()


def _study(notebooks, out, params, **kw):
    messages = []
    run_study(params, "inline", out, notebook_dir=notebooks, log=messages.append, **kw)
    return messages


def _params(videos, **extra):
    return parse_params({"name": "t", "data": {"source": "videos", "path": str(videos)}, **extra})


def test_unchanged_run_is_skipped_and_a_touched_output_with_the_same_bytes_is_not_redone(tmp_path, notebooks, videos):
    out = tmp_path / "run"
    _study(notebooks, out, _params(videos))
    target = out / OUTPUTS["03_global_ig"]
    os.utime(target, ns=(1, 1))  # time changed, content not: the hash says unchanged
    messages = _study(notebooks, out, _params(videos))
    assert _ran(out) == list(STAGES)
    assert sum("skipped" in m for m in messages) == len(STAGES)
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(manifest["stages"][s]["outputs_key"] for s in STAGES)
    files = json.loads((out / "manifest_files.json").read_text())
    assert OUTPUTS["02_training"] in files["02_training"]["outputs"]
    assert set(files["01_data_prep"]["inputs"]) == {"labels.csv", "a.mp4", "b.mp4"}


@pytest.mark.parametrize("change, words", [
    ("replace", "input changed: {videos}/labels.csv changed (other content, same size)"),
    ("grow", "input changed: {videos}/a.mp4 changed (size 200000 -> 200001 bytes)"),
    ("add", "new input: {videos}/c.mp4"),
    ("remove", "input gone: {videos}/b.mp4"),
])
def test_a_changed_input_file_redoes_stage_01_and_says_which(tmp_path, notebooks, videos, change, words):
    out = tmp_path / "run"
    _study(notebooks, out, _params(videos))
    if change == "replace":  # same path, same size, other rows
        (videos / "labels.csv").write_text("path,emotion,subject\na.mp4,happiness,s1\nb.mp4,anger,s2\n")
    elif change == "grow":
        with open(videos / "a.mp4", "ab") as fh:
            fh.write(b"\x00")
    elif change == "add":
        (videos / "c.mp4").write_bytes(b"new")
    else:
        (videos / "b.mp4").unlink()
    messages = _study(notebooks, out, _params(videos))
    assert _ran(out) == list(STAGES) * 2  # stage 01 redone, and everything built on it
    assert f"[01_data_prep] redone: {words.format(videos=videos)}" in messages
    assert sum("skipped" in m for m in _study(notebooks, out, _params(videos))) == len(STAGES)


@pytest.mark.parametrize("damage", ["delete", "truncate"])
def test_a_deleted_or_truncated_output_redoes_its_stage_and_the_later_ones(tmp_path, notebooks, videos, damage):
    out = tmp_path / "run"
    _study(notebooks, out, _params(videos))
    target = out / OUTPUTS["02_training"]
    if damage == "delete":
        target.unlink()
    else:
        target.write_bytes(target.read_bytes()[:10])
    messages = _study(notebooks, out, _params(videos))
    assert _ran(out) == list(STAGES) + list(STAGES[1:])
    why = "missing" if damage == "delete" else "changed (size"
    assert any(m.startswith(f"[02_training] redone: output {OUTPUTS['02_training']} {why}") for m in messages)
    assert target.read_text().startswith("02_training output")  # rewritten whole


def test_a_deleted_results_table_of_stage_03_is_noticed(tmp_path, notebooks, videos):
    out = tmp_path / "run"
    _study(notebooks, out, _params(videos))
    (out / OUTPUTS["03_global_ig"]).unlink()
    messages = _study(notebooks, out, _params(videos))
    assert _ran(out) == list(STAGES) + ["03_global_ig", "04_pruning", "05_results"]
    assert "[03_global_ig] redone: output results/landmark_ranking.csv missing" in messages


def test_a_hand_edited_params_yaml_is_refused_not_overwritten(tmp_path, notebooks, videos):
    out = tmp_path / "run"
    _study(notebooks, out, _params(videos))
    edited = (out / "params.yaml").read_text().replace("epochs: 100", "epochs: 3")
    (out / "params.yaml").write_text(edited)
    with pytest.raises(ParamsError, match=r"params.yaml: edited by hand since emolib wrote it") as exc:
        _study(notebooks, out, _params(videos))
    assert "delete the edited params.yaml" in str(exc.value)
    assert (out / "params.yaml").read_text() == edited  # untouched
    assert _ran(out) == list(STAGES)  # nothing ran
    # Running with the parameters the edit asks for is no conflict: the file already says them.
    _study(notebooks, out, _params(videos, train={"epochs": 3}))
    assert _ran(out) == list(STAGES) + list(STAGES[1:])


def test_one_stage_forced_with_new_parameters_leaves_no_later_stage_complete(tmp_path, notebooks, videos):
    out = tmp_path / "run"
    _study(notebooks, out, _params(videos))
    _study(notebooks, out, _params(videos, frames=7), stages=["01_data_prep"], force=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stages"]["01_data_prep"]["status"] == "complete"
    for stage in STAGES[1:]:
        assert manifest["stages"][stage]["status"] == "outdated"
        assert manifest["stages"][stage]["reason"] == "stage 01_data_prep was redone after it"
    messages = _study(notebooks, out, _params(videos, frames=7))
    assert _ran(out) == list(STAGES) + ["01_data_prep"] + list(STAGES[1:])
    assert "[02_training] redone: stage 01_data_prep was redone after it" in messages
    # The same through the record of inputs, when the manifest's status was not updated
    # (a run folder copied between machines, an older emolib): stage 02's recorded inputs differ.
    _study(notebooks, out, _params(videos, frames=7), stages=["01_data_prep"], force=True)
    manifest = json.loads((out / "manifest.json").read_text())
    for stage in STAGES[1:]:
        manifest["stages"][stage]["status"] = "complete"
    (out / "manifest.json").write_text(json.dumps(manifest))
    messages = _study(notebooks, out, _params(videos, frames=7))
    assert "[02_training] redone: the outputs of an earlier stage changed since it ran" in messages


def test_a_changed_parameter_is_named(tmp_path, notebooks, videos):
    out = tmp_path / "run"
    _study(notebooks, out, _params(videos))
    messages = _study(notebooks, out, _params(videos, ig={"steps": 7}))
    assert "[03_global_ig] redone: parameters changed (ig)" in messages
    assert _ran(out) == list(STAGES) + ["03_global_ig", "04_pruning", "05_results"]


def test_stray_temporaries_left_by_a_kill_are_removed_and_never_taken_for_outputs(tmp_path, notebooks, videos):
    out = tmp_path / "run"
    _study(notebooks, out, _params(videos))
    stray = out / "models" / "t-emo" / "anger" / ".all_K468_seed1.x1y2z3.tmp.keras"
    stray.write_bytes(b"half a model")
    messages = _study(notebooks, out, _params(videos))
    assert not stray.exists()
    assert any(m.startswith("removed 1 unfinished file(s) left by an interrupted run") for m in messages)
    assert sum("skipped" in m for m in messages) == len(STAGES)
    files = json.loads((out / "manifest_files.json").read_text())
    assert not any(".tmp" in rel for entry in files.values() for rel in entry["outputs"])


@pytest.mark.parametrize("make, words", [
    (lambda p: p.write_text("x"), "an existing file, not a folder"),
    (lambda p: (p.mkdir(), p.chmod(0o555)), "cannot write in this folder"),
])
def test_an_out_that_cannot_be_a_run_folder_is_refused_before_anything_runs(tmp_path, notebooks, make, words):
    if os.geteuid() == 0 and "cannot write" in words:
        pytest.skip("root writes anywhere")
    out = tmp_path / "out"
    make(out)
    with pytest.raises(ParamsError, match=f"--out {out}: {words}"):
        _study(notebooks, out, parse_params({"name": "t"}))


def test_an_out_inside_a_file_is_refused_naming_it(tmp_path, notebooks):
    (tmp_path / "afile").write_text("x")
    out = tmp_path / "afile" / "run"
    with pytest.raises(ParamsError, match=f"--out {out}: cannot create the run folder"):
        _study(notebooks, out, parse_params({"name": "t"}))


def test_a_replaced_landmark_file_is_noticed_and_its_neighbours_are_not_inputs(tmp_path, notebooks):
    data = tmp_path / "mine"
    data.mkdir()
    (data / "landmarks.npz").write_bytes(b"first version" * 10)
    params = parse_params({"name": "t", "data": {"source": "landmarks", "path": str(data / "landmarks.npz")}})
    out = tmp_path / "run"
    _study(notebooks, out, params)
    (data / "notes.txt").write_text("a file beside it")  # not an input
    assert sum("skipped" in m for m in _study(notebooks, out, params)) == len(STAGES)
    (data / "landmarks.npz").write_bytes(b"other version" * 10)  # same path, same size
    messages = _study(notebooks, out, params)
    assert f"[01_data_prep] redone: input changed: {data / 'landmarks.npz'} changed (other content, same size)" \
        in messages
    (data / "landmarks.npz").unlink()  # the tiny notebooks do not read it; the manifest does
    assert f"[01_data_prep] redone: input gone: {data / 'landmarks.npz'}" in _study(notebooks, out, params)


def test_ckplus_inputs_are_its_frames_and_labels_not_hidden_files_or_a_run_folder_inside(tmp_path, notebooks):
    ck = tmp_path / "CK+"
    frame = ck / "cohn-kanade-images" / "S005" / "001" / "S005_001_00000001.png"
    label = ck / "Emotion" / "S005" / "001" / "S005_001_00000001_emotion.txt"
    for path, content in ((frame, b"png" * 100), (label, b"3.0")):
        path.parent.mkdir(parents=True)
        path.write_bytes(content)
    params = parse_params({"name": "t", "data": {"source": "ckplus", "path": str(ck)}})
    out = ck / "runs" / "first"  # a run folder kept inside the data folder
    _study(notebooks, out, params)
    (ck / "cohn-kanade-images" / ".DS_Store").write_bytes(b"finder")
    (ck / "README").write_text("notes")
    assert sum("skipped" in m for m in _study(notebooks, out, params)) == len(STAGES)
    label.write_bytes(b"5.0")
    messages = _study(notebooks, out, params)
    assert f"[01_data_prep] redone: input changed: {label} changed (other content, same size)" in messages
