"""Run the study: execute the five notebooks in order with papermill into one run folder.

Each executed notebook is rendered to HTML (offline: plotly.js embedded in the outputs). The run
folder gets ``params.yaml`` (the resolved parameters) and ``manifest.json`` (versions, git commit,
per-stage status and wall time, and the keys of each stage's files: :mod:`emolib.manifest`). One run
at a time holds the folder (:mod:`emolib.run_lock`). A stage already complete with unchanged
parameters, notebook, input files and output files is skipped; otherwise the log says why it is
redone, and once one stage is redone, every later stage is redone too. The stages' own caches
(extraction per sequence, training per model) keep redone stages cheap.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Callable

import yaml

from emolib import io
from emolib.config import STAGE_SECTIONS, Params
from emolib.errors import EmolibError, ParamsError
from emolib.manifest import (
    changed_inputs,
    changed_outputs,
    clean_temporaries,
    disown,
    input_files,
    load_file_records,
    records_key,
    save_file_records,
    snapshot,
    stage_outputs,
    upstream_key,
)
from emolib.report.html import render_html
from emolib.report.index import write_run_index
from emolib.run_folder import RunFolder
from emolib.run_lock import hold_run_folder
from emolib.vocab import STAGES

# Stages whose HTML report hides code (readers want results).
REPORT_WITHOUT_CODE = {"05_results"}
# Parameters every notebook's `parameters` cell declares; the runner passes exactly these.
NOTEBOOK_PARAMETERS = ("run_dir", "params_file")


def notebooks_dir() -> Path:
    """The folder holding the stage notebooks (the repository's ``notebooks/``)."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "notebooks", here / "notebooks"):
        if candidate.is_dir():
            return candidate
    raise EmolibError(f"cannot find the stage notebooks beside {here}")


def parse_stages(text: str | None) -> list[str]:
    """Turn ``"01,03"`` (or full names) into stage names, in run order."""
    if text is None:
        return list(STAGES)
    if not text.strip(" ,"):
        raise ParamsError(f"--stages {text!r}: names no stage; expected some of {', '.join(STAGES)} "
                          "(or 01..05), or leave --stages out to run them all")
    chosen = []
    for token in (t.strip() for t in text.split(",") if t.strip()):
        match = [s for s in STAGES if s == token or s.split("_")[0] == token.zfill(2)]
        if not match:
            raise ParamsError(f"--stages: unknown stage {token!r}; expected some of {', '.join(STAGES)} (or 01..05)")
        chosen.append(match[0])
    return [s for s in STAGES if s in chosen]


def _file_hash(path: Path) -> str:
    """Hash of a notebook's code and markdown sources (outputs and metadata ignored)."""
    nb = json.loads(path.read_text())
    sources = [(c.get("cell_type"), "".join(c.get("source", []))) for c in nb.get("cells", [])]
    return hashlib.sha256(json.dumps(sources).encode()).hexdigest()[:16]


def _git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=Path(__file__).resolve().parent, capture_output=True, text=True,
                               timeout=10).stdout.strip()
        return out.stdout.strip() + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for pkg in ("emolib", "tensorflow", "tf-keras", "mediapipe", "numpy", "papermill", "plotly",
                "scikit-learn", "nbconvert"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return versions


def check_notebook_parameters(notebook: Path) -> None:
    """Refuse a notebook whose ``parameters`` cell does not declare what the runner passes.

    Papermill only warns on unknown parameters; we refuse, so a typo never silently runs a default.
    """
    import papermill

    declared = set(papermill.inspect_notebook(str(notebook)).keys())
    missing = [p for p in NOTEBOOK_PARAMETERS if p not in declared]
    if missing:
        raise EmolibError(f"{notebook}: its parameters cell does not declare {missing} "
                          f"(declares {sorted(declared)})")


@contextlib.contextmanager
def _stderr_to(path: Path):
    """Send this process's stderr (file descriptor 2, inherited by the kernel it starts) to a file.

    The kernel process writes native-library chatter (TensorFlow, XLA, MediaPipe) straight to its
    stderr; it belongs in the run folder's log, not on the user's terminal.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    sys.stderr.flush()
    saved = os.dup(2)
    with open(path, "ab") as log:
        os.dup2(log.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


def _load_manifest(run: RunFolder) -> dict:
    if run.manifest_path.is_file():
        try:
            return json.loads(run.manifest_path.read_text())
        except json.JSONDecodeError:
            pass  # a manifest we cannot read is as good as none: every stage is redone
    return {}


def check_out_dir(out_dir: Path) -> Path:
    """The run folder ``out_dir``, created if needed, refused early when it cannot be one.

    Raises:
        ParamsError: ``out_dir`` is an existing file, or cannot be created or written.
    """
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise ParamsError(f"--out {out}: an existing file, not a folder; choose a folder for the run")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ParamsError(f"--out {out}: cannot create the run folder ({exc.strerror})") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ParamsError(f"--out {out}: cannot write in this folder (read-only or not yours); "
                          "choose another --out")
    return out


def _write_params(run: RunFolder, params: Params, previous: dict, log: Callable[[str], None]) -> None:
    """Write ``params.yaml`` (under the run folder's lock), refusing to overwrite a hand-edited one.

    Raises:
        ParamsError: ``params.yaml`` differs from what the last run wrote and from these parameters.
    """
    text = params.to_yaml()
    if not run.params_path.is_file():
        io.write_text(run.params_path, text)
        return
    old = run.params_path.read_text()
    if old == text:
        return
    written = previous.get("params_sha1")
    if written and hashlib.sha1(old.encode()).hexdigest() != written:
        raise ParamsError(
            f"{run.params_path}: edited by hand since emolib wrote it; it records the parameters this run "
            "folder's results were made with, so emolib does not overwrite it. Put the change in your "
            "parameters file (or --set) and delete the edited params.yaml, then run again: the stages "
            "whose parameters differ are redone")
    io.write_text(run.params_path, text)
    try:
        before = yaml.safe_load(old) or {}
    except yaml.YAMLError:
        before = {}
    now = params.model_dump(mode="json")
    read = {name for sections in STAGE_SECTIONS.values() for name in sections}
    if isinstance(before, dict) and all(before.get(k) == v for k, v in now.items() if k in read):
        changed = sorted(k for k, v in now.items() if before.get(k) != v)
        log(f"parameters changed since the last run in {run.root} only in {', '.join(changed)}, which no stage "
            "depends on: nothing is redone for it")
        return
    log(f"parameters changed since the last run in {run.root}; stages that depend on them are redone")


def stage_fingerprint(params: Params, stage: str, notebook: Path) -> str:
    """The key of what ``stage`` is asked to do: its parameter sections and its notebook's code."""
    return params.fingerprint(*STAGE_SECTIONS[stage]) + ":" + _file_hash(notebook)


def _section_keys(params: Params, stage: str) -> dict[str, str]:
    return {name: io.content_key(value) for name, value in params.sections_of(stage).items()}


def why_redo(stage: str, params: Params, run: RunFolder, manifest: dict, files: dict,
             notebook: Path) -> str | None:
    """Why ``stage`` must run again (None when it is complete and its parameters, inputs and
    outputs are all as recorded)."""
    entry = manifest["stages"].get(stage, {})
    if entry.get("status") != "complete":
        return {"": "not run yet", "outdated": entry.get("reason", "an earlier stage was redone")}.get(
            entry.get("status", ""), f"its last run is {entry.get('status')}")
    if entry.get("fingerprint") != stage_fingerprint(params, stage, notebook):
        old = entry.get("sections", {})
        changed = [k for k, v in _section_keys(params, stage).items() if old.get(k) != v]
        return (f"parameters changed ({', '.join(changed)})" if changed and old
                else "parameters or its notebook changed")
    if not run.notebook(stage).is_file():
        return f"its executed notebook {run.notebook(stage)} is missing"
    record = files.get(stage)
    if record is None or "outputs_key" not in entry:
        return "no record of its files (a run folder from an older emolib)"
    if entry.get("inputs_key") != _inputs_key_now(stage, manifest, record):
        return "the outputs of an earlier stage changed since it ran"
    if record.get("inputs_base"):
        changed = changed_inputs(record.get("inputs", {}), Path(record["inputs_base"]), params.data.source,
                                 run.root)
        if changed:
            return changed
    return changed_outputs(record.get("outputs", {}), run.root)


def _inputs_key_now(stage: str, manifest: dict, record: dict) -> str:
    if stage == STAGES[0]:
        return records_key(record.get("inputs", {}))
    return upstream_key(manifest, stage)


def _mark_later_outdated(stage: str, chosen: list[str], manifest: dict) -> None:
    """A redone stage makes the complete stages after it that this run does not redo outdated."""
    for later in STAGES[STAGES.index(stage) + 1:]:
        entry = manifest["stages"].get(later)
        if later not in chosen and entry and entry.get("status") == "complete":
            entry.update(status="outdated", reason=f"stage {stage} was redone after it")


def _execute_stage(stage: str, notebook: Path, nb_dir: Path, params: Params, params_source: str,
                   kernel: str | None, run: RunFolder, manifest: dict, files: dict,
                   log: Callable[[str], None]) -> None:
    """Run one stage's notebook into the run folder and record it (status, wall time, files).

    Raises:
        EmolibError: the stage failed (the partly executed notebook is kept).
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    executed = run.notebook(stage)
    log(f"[{stage}] running {notebook.name} -> {executed}")
    if stage == STAGES[0]:
        base, inputs = input_files(params, run.root)
        inputs_key = records_key(inputs)
    else:
        base, inputs, inputs_key = None, {}, upstream_key(manifest, stage)
    before = snapshot(run.root)
    started = time.time()
    manifest["stages"][stage] = {"status": "running", "fingerprint": stage_fingerprint(params, stage, notebook),
                                 "sections": _section_keys(params, stage),
                                 "started": _dt.datetime.now().isoformat(timespec="seconds")}
    io.write_json(run.manifest_path, manifest)
    error = None
    try:
        with _stderr_to(run.logs / f"{stage}.kernel.log"):
            papermill.execute_notebook(
                str(notebook), str(executed),
                parameters={"run_dir": str(run.root.resolve()),
                            "params_file": str(Path(params_source).resolve())
                            if Path(params_source).is_file() else ""},
                kernel_name=kernel, cwd=str(nb_dir), progress_bar=False, log_output=False,
                request_save_on_cell_execute=True,
            )
    except PapermillExecutionError as exc:
        error = f"cell {exc.exec_count}: {exc.ename}: {exc.evalue}"
    except KeyboardInterrupt:
        manifest["stages"][stage].update(status="interrupted", wall_seconds=round(time.time() - started, 1))
        io.write_json(run.manifest_path, manifest)
        raise
    except Exception as exc:  # kernel died, kernel not found, ...
        error = f"{type(exc).__name__}: {exc}"
    wall = round(time.time() - started, 1)
    if executed.is_file():
        try:
            render_html(executed, hide_code=stage in REPORT_WITHOUT_CODE)
        except Exception as exc:  # a rendering failure must not hide the stage's own result
            log(f"[{stage}] warning: could not render HTML: {exc}")
    if error:
        manifest["stages"][stage].update(status="failed", wall_seconds=wall, error=error)
        io.write_json(run.manifest_path, manifest)
        write_index_page(run, log)
        raise EmolibError(f"stage {stage} failed after {wall:.0f} s: {error}\n"
                          f"  the partly executed notebook is {executed}\n"
                          f"  the kernel's own log is {run.logs / f'{stage}.kernel.log'}")
    after = snapshot(run.root)
    outputs = stage_outputs(run.root, before, after, files.get(stage, {}).get("outputs", {}))
    disown(files, stage, {rel for rel, key in after.items() if before.get(rel) != key})
    files[stage] = {"inputs_base": str(base) if base else None, "inputs": inputs, "outputs": outputs}
    save_file_records(run, files)
    manifest["stages"][stage].update(
        status="complete", wall_seconds=wall, inputs_key=inputs_key, outputs_key=records_key(outputs),
        finished=_dt.datetime.now().isoformat(timespec="seconds"))
    io.write_json(run.manifest_path, manifest)
    log(f"[{stage}] complete in {wall:.0f} s")


def run_study(
    params: Params,
    params_source: str,
    out_dir: Path,
    *,
    stages: list[str] | None = None,
    kernel: str | None = None,
    force: bool = False,
    notebook_dir: Path | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """Execute the chosen stages into ``out_dir``; return the manifest.

    Raises:
        EmolibError: a stage failed (the message names the notebook and the failing cell's error;
            the partly executed notebook is kept in the run folder).
    """
    stages = stages or list(STAGES)
    run = RunFolder(check_out_dir(out_dir))
    nb_dir = Path(notebook_dir) if notebook_dir else notebooks_dir()
    for stage in stages:
        check_notebook_parameters(nb_dir / f"{stage}.ipynb")
    with hold_run_folder(run.root, log):
        run.ensure()
        removed = clean_temporaries(run.root)
        if removed:
            log(f"removed {len(removed)} unfinished file(s) left by an interrupted run (e.g. {removed[0]})")
        previous = _load_manifest(run)
        _write_params(run, params, previous, log)
        manifest = {
            "emolib_version": _versions()["emolib"],
            "versions": _versions(),
            "git_commit": _git_commit(),
            "params_file": params_source,
            "params_sha1": hashlib.sha1(params.to_yaml().encode()).hexdigest(),
            "run_dir": str(run.root),
            "kernel": kernel,
            "created": previous.get("created", _dt.datetime.now().isoformat(timespec="seconds")),
            "updated": _dt.datetime.now().isoformat(timespec="seconds"),
            "stages": dict(previous.get("stages", {})),
        }
        io.write_json(run.manifest_path, manifest)
        files = load_file_records(run)
        redo_rest = force
        for stage in STAGES:
            if stage not in stages:
                continue
            notebook = nb_dir / f"{stage}.ipynb"
            if not redo_rest:
                reason = why_redo(stage, params, run, manifest, files, notebook)
                if reason is None:
                    log(f"[{stage}] complete, with unchanged parameters, inputs and outputs: skipped "
                        "(use --force to redo)")
                    continue
                if manifest["stages"].get(stage):
                    log(f"[{stage}] redone: {reason}")
            redo_rest = True  # everything downstream of a redone stage is redone
            _execute_stage(stage, notebook, nb_dir, params, params_source, kernel, run, manifest, files, log)
            _mark_later_outdated(stage, stages, manifest)
            io.write_json(run.manifest_path, manifest)
        write_index_page(run, log)
    return manifest


def write_index_page(run: RunFolder, log: Callable[[str], None] = print) -> None:
    """Write the run folder's ``index.html`` (:mod:`emolib.report.index`); a failure to write it
    is reported and never hides the stages' own outcome."""
    try:
        write_run_index(run)
    except Exception as exc:  # the page is a convenience: the stages' results stand without it
        log(f"warning: could not write {run.index_page}: {type(exc).__name__}: {exc}")
