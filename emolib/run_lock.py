"""One run per run folder: the lock ``emolib run`` holds from its start to its end.

The lock is an OS file lock (:mod:`filelock`, ``flock`` on Linux) on ``<run>/.emolib.lock``: the
operating system drops it when its process ends, however it ends (SIGKILL, a dead machine), so a
lock left by a dead process never blocks the next run. Beside it, ``<run>/.emolib.lock.owner``
names the holder (pid, host, start time, command) so that a refused run can say who holds the
folder; it is written after the lock is taken and read only to explain a refusal.
"""
from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
import socket
import sys
from pathlib import Path
from typing import Callable, Iterator

from emolib.errors import EmolibError

LOCK_NAME = ".emolib.lock"
OWNER_NAME = ".emolib.lock.owner"


def lock_owner(root: Path) -> dict:
    """What the owner file of the run folder at ``root`` says (empty when absent or unreadable)."""
    try:
        return json.loads((Path(root) / OWNER_NAME).read_text())
    except (OSError, ValueError):
        return {}


def _describe(owner: dict) -> str:
    if not owner:
        return "another process (it has not yet written its name)"
    return (f"process {owner.get('pid')} on {owner.get('host')}, started {owner.get('started')}: "
            f"{owner.get('command')}")


@contextlib.contextmanager
def hold_run_folder(root: Path, log: Callable[[str], None] = print) -> Iterator[None]:
    """Hold the lock of the run folder ``root`` (created if needed) for the duration of the block.

    Raises:
        EmolibError: another process holds it; refused at once (no waiting), naming the folder
            and the holder's pid.
    """
    from filelock import FileLock, Timeout

    root = Path(root)
    lock = FileLock(root / LOCK_NAME, blocking=False, thread_local=False)
    try:
        lock.acquire()
    except Timeout:
        raise EmolibError(
            f"{root}: this run folder is in use by {_describe(lock_owner(root))}. One run at a time per "
            "folder: wait for it to end, or choose another --out") from None
    try:
        stale = lock_owner(root)
        if stale and stale.get("pid") != os.getpid():
            log(f"{root}: the previous run (process {stale.get('pid')}) ended without releasing the "
                "folder; taking it over")
        owner = {"pid": os.getpid(), "host": socket.gethostname(),
                 "started": _dt.datetime.now().isoformat(timespec="seconds"),
                 "command": " ".join(sys.argv)}
        (root / OWNER_NAME).write_text(json.dumps(owner) + "\n")
        yield
    finally:
        with contextlib.suppress(OSError):
            (root / OWNER_NAME).unlink()
        lock.release()
