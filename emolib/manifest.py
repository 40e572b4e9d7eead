"""The manifest's file records: what each stage read and wrote, so that a stage is skipped only
when its parameters, its inputs and its outputs are all as recorded.

* **Outputs** of a stage are the run-folder files it wrote (found by comparing the folder before
  and after the stage ran, so no stage has to declare them), plus the files it owned before and
  left in place (a model its cache kept). ``cache/`` and ``logs/`` are left out: every cache entry
  carries its own key and is checked where it is read.
* **Inputs**: stage 01 reads the user's data (every file under a CK+ or videos folder, or the
  landmark file); later stages read earlier stages' outputs, recorded as the output keys those
  stages had when this one ran.

A file's record is its size and modification time (nanoseconds), and the SHA-1 of its bytes
when it is small enough to hash cheaply; a file whose time changed but whose hash did not is
unchanged. Records live in ``manifest_files.json`` beside ``manifest.json`` (CK+ has 10,000
frames: too many lines for the manifest a person reads).
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from emolib import io
from emolib.vocab import STAGES

if TYPE_CHECKING:
    from emolib.config import Params
    from emolib.run_folder import RunFolder

FILES_NAME = "manifest_files.json"
# Run-folder entries that are no stage's output: the runner's own files, the lock, the caches.
_NOT_OUTPUTS = {"params.yaml", "manifest.json", FILES_NAME, ".emolib.lock", ".emolib.lock.owner", "cache", "logs"}
# Hash outputs up to this size (a CK+ landmark file is about 25 MB); inputs only when tiny (labels,
# CK+ emotion files), since hashing 10,000 frames would cost more than the stage's own check.
OUTPUT_HASH_LIMIT = 64 << 20
INPUT_HASH_LIMIT = 64 << 10
_SHOWN = 3  # files named in a reason before "and N more"


def is_temporary(name: str) -> bool:
    """Whether ``name`` is an unfinished atomic write (``.<stem>.<random>.tmp<suffix>``, :func:`io.atomic_path`)."""
    return name.startswith(".") and ".tmp" in name


def clean_temporaries(root: Path) -> list[Path]:
    """Delete unfinished atomic writes left in the run folder by a killed process.

    Only safe under the run folder's lock (no other process is writing there).

    Returns:
        The files removed.
    """
    removed = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if is_temporary(name) and not name.startswith(".emolib.lock"):
                path = Path(dirpath) / name
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
                    removed.append(path)
    return removed


def file_record(path: Path, hash_limit: int) -> dict:
    """Size, modification time and (when at most ``hash_limit`` bytes) SHA-1 of one file."""
    st = path.stat()
    record = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    if st.st_size <= hash_limit:
        record["sha1"] = io.file_digest(path)
    return record


def file_change(record: dict, path: Path) -> Optional[str]:
    """How the file at ``path`` differs from its ``record``: None when unchanged, else a few words."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return "missing"
    except OSError as exc:
        return f"unreadable ({exc.strerror})"
    if st.st_size != record.get("size"):
        return f"changed (size {record.get('size')} -> {st.st_size} bytes)"
    if st.st_mtime_ns == record.get("mtime_ns"):
        return None
    if "sha1" in record:
        return None if io.file_digest(path) == record["sha1"] else "changed (other content, same size)"
    return "changed (modified since it was recorded)"


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime_ns) of every file in the run folder that can be a stage's output, by relative path."""
    root = Path(root)
    out = {}
    for dirpath, dirs, files in os.walk(root):
        here = Path(dirpath)
        if here == root:
            dirs[:] = [d for d in dirs if d not in _NOT_OUTPUTS]
            files = [f for f in files if f not in _NOT_OUTPUTS]
        for name in files:
            if is_temporary(name):
                continue
            path = here / name
            with contextlib.suppress(FileNotFoundError):
                st = path.stat()
                out[path.relative_to(root).as_posix()] = (st.st_size, st.st_mtime_ns)
    return out


def stage_outputs(root: Path, before: dict, after: dict, owned_before: dict) -> dict[str, dict]:
    """The records of a stage's outputs: the files it wrote (``before`` -> ``after``) and those it
    owned before that are still there."""
    written = {rel for rel, key in after.items() if before.get(rel) != key}
    keep = {rel for rel in owned_before if rel in after}
    records = {}
    for rel in sorted(written | keep):
        with contextlib.suppress(FileNotFoundError):
            records[rel] = file_record(Path(root) / rel, OUTPUT_HASH_LIMIT)
    return records


def input_files(params: "Params", run_root: Optional[Path] = None) -> tuple[Optional[Path], dict[str, dict]]:
    """Stage 01's inputs: the user's data files, by path relative to ``data.path``.

    What the readers read: for CK+, the image and label (``.txt``) files; for a videos folder,
    every file. Hidden files (``.DS_Store``, editors' swap files) and a run folder kept inside
    the data folder are no input: they change without changing the data.

    Returns:
        (``data.path``, records by path relative to it, or to its folder when it is a file);
        (None, {}) for the demo source, whose data stage 01 itself writes from its parameters.
    """
    source, path = params.data.source, params.data.path
    if source == "demo" or not path:
        return None, {}
    base = Path(path)
    records = {}
    for rel in sorted(_listing(base, source, run_root)):
        with contextlib.suppress(OSError):
            records[rel] = file_record(_root(base) / rel, INPUT_HASH_LIMIT)
    return base, records


def _root(base: Path) -> Path:
    """What input paths are relative to: ``data.path`` itself, or its folder when it is a file."""
    return base.parent if base.is_file() else base


def _listing(base: Path, source: str, run_root: Optional[Path]) -> set[str]:
    """The input files under ``base`` (see :func:`input_files`), by relative path."""
    from emolib.data.sources import IMAGE_SUFFIXES

    if base.is_file():
        return {base.name}
    skip = Path(run_root).resolve() if run_root is not None else None
    wanted = {*IMAGE_SUFFIXES, ".txt"} if source == "ckplus" else None
    names = set()
    for dirpath, dirs, files in os.walk(base):
        here = Path(dirpath)
        dirs[:] = [d for d in dirs if not d.startswith(".") and (skip is None or (here / d).resolve() != skip)]
        for name in files:
            if name.startswith(".") or (wanted is not None and Path(name).suffix.lower() not in wanted):
                continue
            names.add((here / name).relative_to(base).as_posix())
    return names


def records_key(records: dict[str, dict]) -> str:
    """One key for a set of file records: their hashes where known, else size and time."""
    return io.content_key({rel: r.get("sha1") or [r.get("size"), r.get("mtime_ns")] for rel, r in records.items()})


def _name_some(items: list[str]) -> str:
    shown = ", ".join(items[:_SHOWN])
    return shown + (f" and {len(items) - _SHOWN} more" if len(items) > _SHOWN else "")


def changed_inputs(recorded: dict[str, dict], base: Path, source: str,
                   run_root: Optional[Path] = None) -> Optional[str]:
    """Why stage 01's input files (under ``data.path``, ``base``) differ from ``recorded`` (None
    when they do not)."""
    if not base.exists():
        return f"input gone: {base}"
    root, now = _root(base), _listing(base, source, run_root)
    changed = [f"{root / rel} {why}" for rel, rec in recorded.items()
               if rel in now and (why := file_change(rec, root / rel))]
    missing = [str(root / rel) for rel in recorded if rel not in now]
    added = [str(root / rel) for rel in sorted(now) if rel not in recorded]
    parts = []
    if changed:
        parts.append("input changed: " + _name_some(changed))
    if missing:
        parts.append("input gone: " + _name_some(missing))
    if added:
        parts.append("new input: " + _name_some(added))
    return "; ".join(parts) or None


def changed_outputs(recorded: dict[str, dict], root: Path) -> Optional[str]:
    """Why a stage's recorded outputs differ from the files in the run folder (None when they do not)."""
    problems = [f"{rel} {why}" for rel, rec in recorded.items() if (why := file_change(rec, Path(root) / rel))]
    return ("output " + _name_some(problems)) if problems else None


def upstream_key(manifest: dict, stage: str) -> str:
    """The output keys of the stages before ``stage``, as the manifest holds them now."""
    earlier = STAGES[:STAGES.index(stage)]
    return io.content_key({s: manifest["stages"].get(s, {}).get("outputs_key") for s in earlier})


def load_file_records(run: "RunFolder") -> dict:
    """``manifest_files.json``: stage -> {"inputs": {...}, "inputs_base": str, "outputs": {...}}."""
    path = run.root / FILES_NAME
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return records if isinstance(records, dict) else {}


def save_file_records(run: "RunFolder", records: dict) -> None:
    io.write_json(run.root / FILES_NAME, records)


def disown(records: dict, stage: str, written: set[str]) -> None:
    """Files ``stage`` has just written belong to it: no other stage answers for them any more."""
    for other, entry in records.items():
        if other != stage:
            for rel in written & set(entry.get("outputs", {})):
                del entry["outputs"][rel]
