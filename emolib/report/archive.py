"""``emolib report RUN_DIR``: a run's reports in one zip to send, that opens offline.

The archive holds what a reader needs and nothing heavy: ``index.html`` (written afresh), every
stage's HTML report, ``figures/`` (plotly HTML and PNG), the result tables (``results/`` CSV and
Markdown, ``data/extraction_report.csv``, ``attributions/typical*.csv``), ``params.yaml`` and
``manifest.json``. Models, caches, the landmark file, masks, executed notebooks and logs stay
behind. Paths inside the zip are those of the run folder under one top folder named after it, so
the index's relative links work once it is unpacked (or opened in place by an archive viewer).
"""
from __future__ import annotations

import os
import zipfile
from pathlib import Path
from typing import Iterator, Optional

from emolib.errors import DataError
from emolib.report.index import write_run_index
from emolib.run_folder import RunFolder
from emolib.vocab import STAGES

# (folder relative to the run, suffixes kept); "" is the run folder itself. Sub-folders are left
# out (data/demo_source/ holds the demo's images, attributions/r-emo/ masks).
INCLUDED: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("", (".html", ".yaml", ".json")),
    ("figures", (".html", ".png", ".svg")),
    ("results", (".csv", ".md")),
    ("data", (".csv", ".json")),
    ("attributions", (".csv",)),
)


def report_files(run: RunFolder) -> Iterator[Path]:
    """The files of ``run`` that go into its archive (see the module docstring), sorted."""
    for folder, suffixes in INCLUDED:
        base = run.root / folder if folder else run.root
        if not base.is_dir():
            continue
        for path in sorted(base.iterdir()):
            if path.is_file() and not path.is_symlink() and path.suffix.lower() in suffixes:
                yield path


def default_archive_path(run_dir: Path) -> Path:
    """``<run folder>-report.zip`` beside the run folder."""
    run_dir = Path(run_dir).resolve()
    return run_dir.with_name(f"{run_dir.name}-report.zip")


def pack_reports(run_dir: str | Path, out: Optional[str | Path] = None) -> Path:
    """Write the run's archive (``index.html`` rewritten first); returns its path.

    Args:
        run_dir: a run folder (its ``manifest.json`` is there once ``emolib run`` has started it).
        out: the zip to write (default: :func:`default_archive_path`).

    Raises:
        DataError: ``run_dir`` is not a run folder, or holds no stage report yet.
    """
    run = RunFolder(Path(run_dir))
    if not run.manifest_path.is_file():
        raise DataError(f"{run.root}: not a run folder (no manifest.json; `emolib run` writes one)")
    if not any(run.notebook(s).with_suffix(".html").is_file() for s in STAGES):
        raise DataError(f"{run.root}: no stage report (NN_stage.html) yet; run a stage first")
    write_run_index(run)
    out = Path(out) if out else default_archive_path(run.root)
    out.parent.mkdir(parents=True, exist_ok=True)
    top = run.root.resolve().name
    partial = out.with_name(f".{out.name}.{os.getpid()}.partial")
    try:
        with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6) as archive:
            for path in report_files(run):
                if path.resolve() == out.resolve():
                    continue
                archive.write(path, f"{top}/{path.relative_to(run.root).as_posix()}")
        os.replace(partial, out)
    finally:
        partial.unlink(missing_ok=True)
    return out
