"""Extraction of many sequences: worker processes, one FaceMesh each, and a cache per sequence.

Extraction runs in ``params.data.workers`` spawned processes (one FaceMesh each) and caches each
finished sequence atomically under ``<run>/cache/extraction/``, keyed by the content of the
sequence's files and the extraction settings: an interrupted run resumes where it stopped, and
changed settings redo only what they affect.
"""
from __future__ import annotations

import concurrent.futures as cf
import multiprocessing
import os
import time
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

from emolib.data.facemesh import FaceMeshExtractor, SequenceLandmarks, block_tensorflow_import
from emolib.data.sources import SequenceInfo, iter_frames_or_reasons
from emolib.errors import DataError, EmolibError
from emolib.io import content_key, file_digest

# Bump when the per-frame algorithm changes: it is part of every cache key.
EXTRACTOR_VERSION = "2"  # 2: colour frames, two detectors then FaceMesh, unreadable frames kept


_WORKER_EXTRACTOR: Optional[FaceMeshExtractor] = None


def _exit_when_orphaned(parent: int, interval_s: float = 1.0) -> None:
    """Stop this worker once its parent is gone.

    A parent killed outright (a restarted notebook kernel, ``kill -9``) cannot tell its workers;
    they would wait on the task queue forever, so each one watches for it.
    """
    import threading

    def watch() -> None:
        while True:
            time.sleep(interval_s)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watch, name="orphan-watch", daemon=True).start()


def _init_worker(crop_size: int, min_detection_confidence: float, parent: int) -> None:
    """Pool initializer: one FaceMesh per worker process, single-threaded OpenCV."""
    global _WORKER_EXTRACTOR
    _exit_when_orphaned(parent)
    block_tensorflow_import()
    import cv2

    cv2.setNumThreads(1)  # the workers are the parallelism; avoid oversubscribing the cores
    _WORKER_EXTRACTOR = FaceMeshExtractor(crop_size, min_detection_confidence)


@dataclass(frozen=True)
class _Task:
    info: SequenceInfo
    cache_path: Path


def _run_task(task: _Task) -> tuple[str, Optional[str]]:
    """Extract one sequence and cache it; returns ``(sequence, error message or None)``.

    Runs in a worker (or in the main process with one worker). A frame file that cannot be read
    counts as a frame without a face; a video that cannot be opened is returned as an error for
    this sequence only; the rest of the data goes on.
    """
    extractor = _WORKER_EXTRACTOR
    if extractor is None:
        raise RuntimeError("extraction worker used before its FaceMesh was created")
    try:
        result = extractor.extract_frames(iter_frames_or_reasons(task.info))
    except DataError as exc:
        return task.info.sequence, str(exc)
    except Exception as exc:  # an odd file OpenCV or MediaPipe chokes on: this sequence only
        where = task.info.files[0].parent if task.info.kind == "frames" else task.info.files[0]
        return task.info.sequence, f"{where}: extraction failed ({type(exc).__name__}: {exc})"
    result.save(task.cache_path)
    return task.info.sequence, None


def sequence_cache_key(info: SequenceInfo, crop_size: int, min_detection_confidence: float) -> str:
    """Hash of what decides a sequence's raw landmarks: its files' names and contents, the settings."""
    return content_key({"version": EXTRACTOR_VERSION, "crop_size": int(crop_size),
                        "min_detection_confidence": float(min_detection_confidence), "kind": info.kind,
                        "files": [[p.name, file_digest(p)] for p in info.files]}, 20)


def _cache_path(cache_dir: Path, info: SequenceInfo, key: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in info.sequence)
    return cache_dir / f"{safe}-{key}.npz"


def _remove_stale_temporaries(cache_dir: Path, older_than_s: float = 600.0) -> None:
    """Delete temporary files left by a worker killed mid-write (never taken for results)."""
    now = time.time()
    for tmp in cache_dir.glob(".*.tmp*"):
        try:
            if now - tmp.stat().st_mtime > older_than_s:
                tmp.unlink()
        except OSError:
            pass


def extract_sequences(sequences: Sequence[SequenceInfo], cache_dir: Path, *, crop_size: int = 300,
                      min_detection_confidence: float = 0.5, workers: int = 1,
                      progress: bool = True) -> tuple[dict[str, SequenceLandmarks], dict[str, str]]:
    """Extract (or read from cache) the raw landmarks of every usable sequence.

    Args:
        sequences: from a reader; only ``usable`` ones are extracted.
        cache_dir: where finished sequences are cached (one .npz each, written atomically).
        crop_size: face crop side.
        min_detection_confidence: FaceMesh's detection threshold.
        workers: worker processes (1: in this process).
        progress: show a tqdm progress bar.

    Returns:
        ``(results, errors)``: raw landmarks per sequence id, and an error message per sequence id
        whose files could not be decoded.
    """
    from tqdm.auto import tqdm

    cache_dir = Path(cache_dir)
    cache_dir.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(cache_dir)
    tasks: list[_Task] = []
    results: dict[str, SequenceLandmarks] = {}
    errors: dict[str, str] = {}
    for info in sequences:
        if not info.usable:
            continue
        path = _cache_path(cache_dir, info, sequence_cache_key(info, crop_size, min_detection_confidence))
        cached = SequenceLandmarks.load(path) if path.is_file() else None
        if cached is not None:
            results[info.sequence] = cached
        else:
            tasks.append(_Task(info, path))

    bar = tqdm(total=len(tasks), desc="extracting landmarks", unit="seq", disable=not progress or not tasks)
    try:
        workers = max(1, min(int(workers), len(tasks)))
        if workers == 1:
            global _WORKER_EXTRACTOR
            previous = _WORKER_EXTRACTOR
            _WORKER_EXTRACTOR = FaceMeshExtractor(crop_size, min_detection_confidence) if tasks else None
            try:
                for task in tasks:
                    _collect(_run_task(task), task, results, errors)
                    bar.update()
            finally:
                if _WORKER_EXTRACTOR is not None:
                    _WORKER_EXTRACTOR.close()
                _WORKER_EXTRACTOR = previous
        else:
            by_sequence = {t.info.sequence: t for t in tasks}
            # spawn: a fresh interpreter per worker (fork would copy a kernel's threads and any
            # TensorFlow state, which is unsafe).
            context = multiprocessing.get_context("spawn")
            with cf.ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                                        initargs=(crop_size, min_detection_confidence, os.getpid())) as pool:
                futures = [pool.submit(_run_task, t) for t in tasks]
                try:
                    for future in cf.as_completed(futures):
                        sequence, error = future.result()
                        _collect((sequence, error), by_sequence[sequence], results, errors)
                        bar.update()
                except BaseException:
                    for f in futures:
                        f.cancel()
                    raise
    except BrokenProcessPool as exc:
        raise EmolibError(
            f"an extraction worker process died ({exc}); finished sequences are cached, run again to "
            "resume. (A Python script that calls this with data.workers > 1 must guard its main code "
            "with `if __name__ == \"__main__\":`, as every program using multiprocessing's spawn must; "
            "otherwise set data.workers: 1.)") from None
    finally:
        bar.close()
    return results, errors


def _collect(outcome: tuple[str, Optional[str]], task: _Task, results: dict, errors: dict) -> None:
    sequence, error = outcome
    if error is not None:
        errors[sequence] = error
        return
    loaded = SequenceLandmarks.load(task.cache_path)
    if loaded is None:
        errors[sequence] = f"{task.cache_path}: extraction finished but its cache file cannot be read"
    else:
        results[sequence] = loaded

