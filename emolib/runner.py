"""Run the study: execute the five notebooks in order with papermill into one run folder.

Each executed notebook is rendered to HTML (offline: plotly.js embedded in the outputs). The run
folder gets ``params.yaml`` (the resolved parameters) and ``manifest.json`` (versions, git commit,
per-stage status and wall time). A stage already complete with unchanged parameters (and an
unchanged notebook) is skipped; once one stage is redone, every later stage is redone too. The
stages' own caches (extraction per sequence, training per model) keep redone stages cheap.
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

from emolib import io
from emolib.config import STAGE_SECTIONS, Params
from emolib.errors import EmolibError, ParamsError
from emolib.report.html import render_html
from emolib.report.index import write_run_index
from emolib.run_folder import RunFolder
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
    if not text:
        return list(STAGES)
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
    import papermill
    from papermill.exceptions import PapermillExecutionError

    stages = stages or list(STAGES)
    run = RunFolder(out_dir).ensure()
    nb_dir = Path(notebook_dir) if notebook_dir else notebooks_dir()
    for stage in stages:
        check_notebook_parameters(nb_dir / f"{stage}.ipynb")

    previous = _load_manifest(run)
    old_params = run.params_path.read_text() if run.params_path.is_file() else None
    io.write_text(run.params_path, params.to_yaml())
    if old_params is not None and old_params != params.to_yaml():
        log(f"parameters changed since the last run in {run.root}; stages that depend on them are redone")

    manifest = {
        "emolib_version": _versions()["emolib"],
        "versions": _versions(),
        "git_commit": _git_commit(),
        "params_file": params_source,
        "run_dir": str(run.root),
        "kernel": kernel,
        "created": previous.get("created", _dt.datetime.now().isoformat(timespec="seconds")),
        "updated": _dt.datetime.now().isoformat(timespec="seconds"),
        "stages": dict(previous.get("stages", {})),
    }
    io.write_json(run.manifest_path, manifest)

    redo_rest = force
    for stage in STAGES:
        if stage not in stages:
            continue
        notebook = nb_dir / f"{stage}.ipynb"
        fingerprint = params.fingerprint(*STAGE_SECTIONS[stage]) + ":" + _file_hash(notebook)
        entry = manifest["stages"].get(stage, {})
        executed = run.notebook(stage)
        if (not redo_rest and entry.get("status") == "complete"
                and entry.get("fingerprint") == fingerprint and executed.is_file()):
            log(f"[{stage}] complete with unchanged parameters: skipped (use --force to redo)")
            continue
        redo_rest = True  # everything downstream of a redone stage is redone
        log(f"[{stage}] running {notebook.name} -> {executed}")
        started = time.time()
        manifest["stages"][stage] = {"status": "running", "fingerprint": fingerprint,
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
        manifest["stages"][stage].update(
            status="complete", wall_seconds=wall,
            finished=_dt.datetime.now().isoformat(timespec="seconds"))
        io.write_json(run.manifest_path, manifest)
        log(f"[{stage}] complete in {wall:.0f} s")
    write_index_page(run, log)
    return manifest


def write_index_page(run: RunFolder, log: Callable[[str], None] = print) -> None:
    """Write the run folder's ``index.html`` (:mod:`emolib.report.index`); a failure to write it
    is reported and never hides the stages' own outcome."""
    try:
        write_run_index(run)
    except Exception as exc:  # the page is a convenience: the stages' results stand without it
        log(f"warning: could not write {run.index_page}: {type(exc).__name__}: {exc}")
