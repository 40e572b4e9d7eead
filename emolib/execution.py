"""Where the work runs: in this process, or as Ray tasks on a cluster (``params.execution``).

A backend runs a list of calls of one module-level function and hands each result back to the
caller *in this process* as soon as it is ready; the caller (the stage) writes it into the run
folder with the same atomic writes whichever backend computed it, so a cluster needs no shared
file system, and a finished unit is never redone on resume.

* ``local`` (the default): the calls run one after another in this process; Ray is not imported.
* ``ray``: each call is a Ray task (``ray.remote`` with ``execution.num_cpus``, ``num_gpus``,
  ``memory``, and ``max_retries``: a worker killed mid-task is rerun by Ray). Large inputs shared
  by every call (the landmark set) go to Ray's object store once. Results are taken with
  ``ray.wait`` in the order they finish. ``execution.address``: null starts a Ray on this
  machine; ``auto``, ``host:port`` or ``ray://host:port`` joins a running cluster.

Neither backend changes what is computed: the calls and their inputs are the same, so the same
seeds give the same numbers (``tests/test_ray.py`` checks model weights bit for bit). Every node
of a cluster needs the same emolib, TensorFlow and NumPy as the driver; :func:`check_backend`
refuses a cluster whose workers differ, or one that cannot be reached, before any work starts.
"""
from __future__ import annotations

import logging
import os
import socket
import time
from importlib import metadata
from typing import TYPE_CHECKING, Any, Callable, Mapping, Optional, Sequence

from emolib.errors import EmolibError, ParamsError

if TYPE_CHECKING:
    from emolib.config import ExecutionSettings

# Seconds a TCP connection to a cluster's head may take before it counts as unreachable.
CONNECT_TIMEOUT_S = 5.0
# What must be the same on the driver and every worker for the numbers to be the same.
_VERSIONED = ("emolib", "tensorflow", "tf-keras", "numpy")


def software_versions() -> dict[str, str]:
    """The versions of what shapes the numbers, in this process (also run on a worker)."""
    out = {}
    for pkg in _VERSIONED:
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


class LocalBackend:
    """Run every call in this process, one after another (today's behaviour)."""

    name = "local"

    def run(self, function: Callable, calls: Sequence[tuple], on_result: Callable[[int, Any], None], *,
            shared: Any = None, local_kwargs: Optional[Callable[[int], Mapping[str, Any]]] = None) -> None:
        """``on_result(i, function(shared, *calls[i], **local_kwargs(i)))`` for every call, in order.

        ``local_kwargs`` gives a call arguments that only make sense in this process (callbacks
        that save a unit the moment it is done, progress); a remote backend leaves them out.
        """
        for i, args in enumerate(calls):
            extra = dict(local_kwargs(i)) if local_kwargs is not None else {}
            on_result(i, function(shared, *args, **extra))


class RayBackend:
    """Run every call as a Ray task; results come back to this process as the tasks finish."""

    name = "ray"

    def __init__(self, settings: ExecutionSettings):
        self.settings = settings
        self._remote: dict[Callable, Any] = {}
        self._shared: Optional[tuple[Any, Any]] = None  # (object, its ObjectRef): put once

    def connect(self) -> None:
        """Join (or start) the cluster once per process, and check its workers' software.

        Raises:
            ParamsError: Ray is not installed.
            EmolibError: the cluster cannot be reached, or its workers run other versions.
        """
        ray = _import_ray()
        if ray.is_initialized():
            return
        address = self.settings.address
        if address not in (None, "auto"):
            check_reachable(address)
        try:
            # "local": a new Ray for this process even where `ray start` runs one (null's meaning)
            ray.init(address=address or "local", include_dashboard=False, log_to_driver=False,
                     logging_level=logging.ERROR)
        except Exception as exc:  # ConnectionError, RuntimeError, ValueError: all mean "no cluster here"
            raise EmolibError(f"execution.address {address!r}: cannot join a Ray cluster "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
                              f"{_token_hint(address)}") from None
        try:
            self._check_workers(ray)
        except EmolibError:
            ray.shutdown()
            raise

    def _check_workers(self, ray) -> None:
        theirs = _task(ray, software_versions, self.settings).remote()
        try:
            got = ray.get(theirs, timeout=300)
        except Exception as exc:
            raise EmolibError(f"execution.address {self.settings.address!r}: a Ray worker cannot run emolib "
                              f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); install "
                              "the same emolib on every node of the cluster") from None
        ours = software_versions()
        differ = {k: (ours[k], got.get(k)) for k in ours if got.get(k) != ours[k]}
        if differ:
            txt = ", ".join(f"{k} {a} here, {b} on the worker" for k, (a, b) in differ.items())
            raise EmolibError(f"the Ray cluster's workers run other software than this process ({txt}); "
                              "install the same versions on every node (the numbers would differ)")

    def run(self, function: Callable, calls: Sequence[tuple], on_result: Callable[[int, Any], None], *,
            shared: Any = None, local_kwargs: Optional[Callable[[int], Mapping[str, Any]]] = None) -> None:
        """Submit every call as a task; ``on_result(i, result)`` in this process as each finishes.

        Raises:
            EmolibError: a task's worker died more than ``execution.max_retries`` times, or the
                cluster was lost. An exception raised inside a task is raised here as it is.
        """
        if not calls:
            return
        self.connect()
        ray = _import_ray()
        remote = self._remote.get(function)
        if remote is None:
            remote = self._remote[function] = _task(ray, function, self.settings)
        ref = self.share(shared)
        pending = {remote.remote(ref, *args): i for i, args in enumerate(calls)}
        try:
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                for r in ready:
                    i = pending.pop(r)
                    on_result(i, _get(ray, r, self.settings))
        finally:
            for r in pending:  # interrupted or failed: do not leave the cluster training
                try:
                    ray.cancel(r, force=True)
                except Exception:  # noqa: S110 (already finished or gone)
                    pass

    def share(self, obj: Any):
        """``obj`` in the object store (the same object is put once), or None."""
        if obj is None:
            return None
        if self._shared is None or self._shared[0] is not obj:
            self._shared = (obj, _import_ray().put(obj))
        return self._shared[1]


def _task(ray, function: Callable, settings: ExecutionSettings):
    options = {"num_cpus": settings.num_cpus, "num_gpus": settings.num_gpus, "max_retries": settings.max_retries,
               "retry_exceptions": False}
    if settings.memory is not None:
        options["memory"] = int(settings.memory)
    return ray.remote(function).options(**options)


def _get(ray, ref, settings: ExecutionSettings):
    from ray import exceptions as rx

    try:
        return ray.get(ref)
    except rx.RayTaskError as exc:  # the task's own exception (an EmolibError stays one)
        cause = exc.as_instanceof_cause()
        raise cause from None
    except (rx.WorkerCrashedError, rx.NodeDiedError, rx.OutOfMemoryError) as exc:
        raise EmolibError(f"a Ray task failed {settings.max_retries + 1} time(s), its worker or node died "
                          f"({type(exc).__name__}); finished units are kept: run again to resume") from None
    except rx.RayError as exc:
        raise EmolibError(f"the Ray cluster failed ({type(exc).__name__}: {str(exc).splitlines()[0]}); "
                          "finished units are kept: run again to resume") from None


def _import_ray():
    try:
        import ray
    except ImportError:
        raise ParamsError("execution.backend: ray needs Ray; install it with pip install 'emolib[ray]'") from None
    return ray


def _token_hint(address: Optional[str]) -> str:
    """What to try when an address answers but Ray cannot join it and token mode is unset.

    Ray (2.60) turns token authentication on for a cluster that ``ray start`` starts where a token
    is found (``~/.ray/auth_token``, ``RAY_AUTH_TOKEN``), but a driver given an explicit address
    sends its token only when ``RAY_AUTH_MODE=token`` is set: Ray's choice, so that no token goes to
    an address by accident. emolib keeps that choice and says so.
    """
    if address in (None, "auto") or os.environ.get("RAY_AUTH_MODE") is not None:
        return ""
    return ("; if the cluster uses Ray's token authentication (on by default where `ray start` finds "
            "~/.ray/auth_token), set RAY_AUTH_MODE=token in this process's environment, with the cluster's "
            "token in ~/.ray/auth_token or RAY_AUTH_TOKEN")


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Refuse a ``host:port`` (or ``ray://host:port``) nothing answers on, within ``timeout``.

    Raises:
        EmolibError: the connection is refused, times out or the host is unknown.
    """
    rest = address[len("ray://"):] if address.startswith("ray://") else address
    host, _, port = rest.rpartition(":")
    started = time.perf_counter()
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        why = "timed out" if isinstance(exc, socket.timeout) else (exc.strerror or type(exc).__name__)
        raise EmolibError(f"execution.address {address!r}: no Ray cluster answers there ({why} after "
                          f"{time.perf_counter() - started:.1f} s); start one with `ray start --head` or fix "
                          "the address") from None


_BACKENDS: dict[tuple, Any] = {}


def backend_for(settings: ExecutionSettings):
    """The backend of ``params.execution`` (one per process and setting, so Ray is joined once)."""
    key = tuple(sorted(settings.model_dump().items()))
    if key not in _BACKENDS:
        _BACKENDS[key] = LocalBackend() if settings.backend == "local" else RayBackend(settings)
    return _BACKENDS[key]


def check_backend(settings: ExecutionSettings, *, join: bool = False) -> str:
    """Check before any work starts that the backend can run; a line saying what it is.

    ``local``: nothing to check. ``ray``: Ray is installed; an explicit address answers (a TCP
    connection, seconds at most); with ``join``, the cluster is joined for a moment and a task
    reports its workers' software (:meth:`RayBackend.connect`).

    Raises:
        ParamsError: Ray is not installed.
        EmolibError: the cluster cannot be reached, or its workers run other versions.
    """
    if settings.backend == "local":
        return "local (in this process)"
    ray = _import_ray()
    address = settings.address
    if address not in (None, "auto"):
        check_reachable(address)
    if join:
        was = ray.is_initialized()
        RayBackend(settings).connect()
        resources = ray.cluster_resources()
        if not was:
            ray.shutdown()
        return (f"ray at {address or 'a new local cluster'}: {resources.get('CPU', 0):g} CPU(s), "
                f"{resources.get('GPU', 0):g} GPU(s); each task asks {settings.num_cpus:g} CPU(s), "
                f"{settings.num_gpus:g} GPU(s)")
    return f"ray at {address or 'a new local cluster'}"
