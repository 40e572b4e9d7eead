"""File helpers: atomic writes (no half-written file is ever taken for a finished one), the one
CSV upsert, and the one content key that caches and fingerprints are made of."""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator, Optional, Sequence

import numpy as np

_UMASK = os.umask(0)
os.umask(_UMASK)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it onto ``path`` only if the block succeeds.

    The temporary name keeps the final suffix (``.x.tmp123.npz``) so that writers which append or
    check extensions (numpy, keras) behave as they would for the real name.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_UMASK)  # mkstemp makes 0600; finished files get the usual mode
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """Write text atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (indented, keys sorted for stable diffs)."""
    write_text(path, json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_npz(path: str | os.PathLike, **arrays: Any) -> None:
    """Write an uncompressed .npz atomically."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)


def write_csv(path: str | os.PathLike, frame) -> None:
    """Write a pandas DataFrame as CSV atomically (no index)."""
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, index=False)


def _json_default(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def content_key(obj: Any, length: int = 16) -> str:
    """A short, stable hash of a JSON-able description of something (a cache key, a fingerprint).

    The same description gives the same key in every process and on every machine: keys are
    sorted, and values JSON cannot hold (numpy scalars and arrays, paths, anything else) are
    written as :func:`write_json` writes them, or as ``str``.

    Args:
        obj: what identifies the thing: parameters, ids, file digests, other keys.
        length: hex digits kept.

    Returns:
        ``length`` hex digits of the SHA-256 of the description.
    """
    text = json.dumps(obj, sort_keys=True, default=_key_default)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def file_digest(path: str | os.PathLike) -> str:
    """SHA-1 of a file's bytes (``unreadable:<errno>`` when it cannot be read)."""
    digest = hashlib.sha1()
    try:
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    except OSError as exc:
        return f"unreadable:{exc.errno}"
    return digest.hexdigest()


def upsert_csv(path: str | os.PathLike, new, key: Sequence[str], *, columns: Optional[Sequence[str]] = None,
               keep: Optional[Callable[[Any], Any]] = None, order: Optional[Callable[[Any], Any]] = None):
    """Write ``new`` into the table at ``path``: its rows replace the rows that share their key, the
    other rows stay (results tables grow as models and emotions finish).

    The earlier table is kept only when it is readable and has the same columns; otherwise (a
    table of an older layout, a damaged file) it is rewritten from ``new`` alone, since every
    stage re-adds the rows of what it has finished.

    Args:
        path: the CSV file.
        new: a pandas DataFrame.
        key: the columns that identify a row.
        columns: the table's columns in order (default: ``new``'s).
        keep: ``old -> boolean mask`` of the earlier rows that may stay at all (for example the
            emotions still studied); default: all.
        order: ``table -> table``, the order to write the rows in (default: earlier rows first,
            then the new ones).

    Returns:
        The table written.
    """
    import pandas as pd

    path = Path(path)
    columns = list(columns) if columns is not None else list(new.columns)
    old = None
    if path.is_file():
        try:
            old = pd.read_csv(path)
        except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError):
            old = None
        if old is not None and set(old.columns) != set(columns):
            old = None
    new = new.reindex(columns=columns)
    if old is not None and len(old):
        old = old[columns]
        if keep is not None:
            old = old[keep(old)]
        if not len(new):
            table = old
        else:
            # Keys compared as text, column by column (a row-wise join in Python took seconds on
            # the learning-curve tables of a stage's hundreds of models).
            old_keys = pd.MultiIndex.from_frame(old[list(key)].astype(str))
            new_keys = pd.MultiIndex.from_frame(new[list(key)].astype(str))
            old = old[~old_keys.isin(new_keys)]
            table = pd.concat([old, new], ignore_index=True) if len(old) else new.copy()
    else:
        table = new.copy()
    if order is not None:
        table = order(table)
    write_csv(path, table)
    return table


def _key_default(obj: Any) -> Any:
    try:
        return _json_default(obj)
    except TypeError:
        return str(obj)
