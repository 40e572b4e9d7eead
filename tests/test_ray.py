"""The Ray backend on a real Ray cluster that this file starts on 127.0.0.1 (never a mock).

One head node (``ray start --head``, 2 CPUs: two worker processes run the banks side by side)
for the whole file, stopped and every process of it ended at the end. Checked: the same seeds
give the same models bit for bit and the same tables on both backends (in this process and
through ``emolib run`` at smoke scale); a worker killed mid-task is rerun by Ray and the run
completes with nothing lost or doubled; a cluster that cannot be reached is refused before any
work, and one that wants a token the driver does not send is refused with what to set; the
local backend never imports Ray.

The cluster uses Ray's token authentication with a token of its own, always: ``ray start`` turns it
on by itself wherever it finds ``~/.ray/auth_token``, and a test that depended on that file would
pass on one machine and fail on the next.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

pytest.importorskip("ray")
psutil = pytest.importorskip("psutil")

from emolib import training  # noqa: E402
from emolib.config import parse_params  # noqa: E402
from emolib.errors import EmolibError  # noqa: E402
from emolib.execution import RayBackend, check_backend  # noqa: E402
from emolib.run_folder import RunFolder  # noqa: E402
from tests.training.test_training import easy_data, tiny_params  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TIMING = ("train_seconds", "seconds_per_epoch")  # wall time: the one thing that differs


def _free_ports(n: int) -> list[int]:
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        socks.append(s)
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO)] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    return env


class Cluster:
    def __init__(self, address: str, temp_dir: Path, raylet: psutil.Process):
        self.address, self.temp_dir, self.raylet = address, temp_dir, raylet

    def workers(self, title: str) -> list[psutil.Process]:
        """This cluster's worker processes whose title (Ray's ``ray::<task>``) starts with ``title``."""
        found = []
        for p in self.raylet.children(recursive=True):
            try:
                if p.cmdline() and p.cmdline()[0].startswith(title):
                    found.append(p)
            except psutil.Error:
                continue
        return found


def _cluster_processes(temp_dir: Path) -> list[psutil.Process]:
    """Every process of the cluster: those naming its temp dir, and all their descendants."""
    roots = []
    for p in psutil.process_iter(["cmdline"]):
        try:
            if any(str(temp_dir) in a for a in (p.info["cmdline"] or [])):
                roots.append(p)
        except psutil.Error:
            continue
    found = {p.pid: p for p in roots}
    for p in roots:
        try:
            found.update({c.pid: c for c in p.children(recursive=True)})
        except psutil.Error:
            continue
    return [p for p in found.values() if p.pid != os.getpid()]


def _start_head(temp_dir: Path) -> tuple[str, str]:
    """``ray start --head`` on 127.0.0.1; (address, '' or why it failed)."""
    gcs, metrics, agent, agent_grpc, runtime_env, client = _free_ports(6)
    cmd = [str(Path(sys.executable).with_name("ray")), "start", "--head", "--node-ip-address=127.0.0.1",
           f"--port={gcs}", "--num-cpus=2", "--include-dashboard=false", f"--temp-dir={temp_dir}",
           f"--object-store-memory={200 * 1024 ** 2}", "--disable-usage-stats", f"--metrics-export-port={metrics}",
           f"--dashboard-agent-listen-port={agent}", f"--dashboard-agent-grpc-port={agent_grpc}",
           f"--runtime-env-agent-port={runtime_env}", f"--ray-client-server-port={client}"]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    if proc.returncode == 0:
        return f"127.0.0.1:{gcs}", ""
    logs = sorted(temp_dir.glob("session_2*/logs/raylet.out"))
    tail = [line for line in (logs[-1].read_text().splitlines() if logs else []) if " C " in line or " E " in line]
    return "", f"{proc.stderr[-1500:]}\nraylet: {tail[-3:]}"


def _stop(temp_dir: Path) -> None:
    procs = _cluster_processes(temp_dir)
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=15)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)


@pytest.fixture(scope="module")
def cluster():
    """A Ray head on 127.0.0.1 with 2 CPUs (ports and a temp dir of its own), ended afterwards.

    Up to three tries: the raylet gives its dashboard agent 15 s to report its port and aborts
    otherwise, which a busy 2-core machine can miss (Ray 2.60; the agent's imports take 10 s).
    """
    temp_dir = Path(tempfile.mkdtemp(prefix="ray", dir="/tmp"))  # short: Ray's socket paths must fit
    with pytest.MonkeyPatch.context() as env:
        # The head, the CLI's subprocesses (``_env`` copies os.environ) and this process's driver
        # all share one token that only this cluster knows.
        env.setenv("RAY_AUTH_MODE", "token")
        env.setenv("RAY_AUTH_TOKEN", secrets.token_hex(32))
        env.delenv("RAY_AUTH_TOKEN_PATH", raising=False)
        _reset_auth()
        try:
            yield from _head(temp_dir)
        finally:
            env.undo()
            _reset_auth()


def _reset_auth() -> None:
    """Make this process read RAY_AUTH_* again: Ray reads them once, when it is imported (and
    this file imports it at collection). Ray's own tests reset the same way."""
    from ray._private.authentication_test_utils import reset_auth_token_state

    reset_auth_token_state()


def _head(temp_dir: Path):
    try:
        errors = []
        for _ in range(3):
            address, why = _start_head(temp_dir)
            if address:
                break
            errors.append(why)
            _stop(temp_dir)
        else:
            pytest.fail("ray start failed three times:\n" + "\n---\n".join(errors))
        raylets = [p for p in _cluster_processes(temp_dir) if "raylet" in " ".join(p.cmdline()[:1])]
        assert raylets, "ray start returned but no raylet of this cluster runs"
        yield Cluster(address, temp_dir, raylets[0])
    finally:
        import ray

        ray.shutdown()
        _stop(temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)


def _params(cluster=None, **overrides):
    if cluster is not None:
        overrides.update(execution__backend="ray", execution__address=cluster.address)
    return tiny_params(seeds=[0, 1], **overrides)


def _weights(run: RunFolder) -> dict[str, list[np.ndarray]]:
    import tf_keras as keras

    return {str(p.relative_to(run.root)): keras.models.load_model(p, compile=False).get_weights()
            for p in sorted(run.root.joinpath("models").rglob("*.keras"))}


def _same_run(a: RunFolder, b: RunFolder, *, more_in_a: bool = False) -> None:
    """Same tables (but wall times) and the same weights, bit for bit, in two run folders
    (``more_in_a``: ``a`` may hold more models, e.g. a whole run's against its stage 02)."""
    ta, tb = pd.read_csv(a.training_results), pd.read_csv(b.training_results)
    cols = [c for c in ta.columns if c not in TIMING]
    pd.testing.assert_frame_equal(ta[cols], tb[cols], check_exact=True)
    wa, wb = _weights(a), _weights(b)
    assert wb and (set(wb) <= set(wa) if more_in_a else sorted(wa) == sorted(wb))
    for name in wb:
        assert all(np.array_equal(x, y) for x, y in zip(wa[name], wb[name])), f"{name}: weights differ"


@pytest.fixture(scope="module")
def data():
    return easy_data()


@pytest.fixture(scope="module")
def local_run(tmp_path_factory, data):
    """The reference: the grid search and both variants on the local backend."""
    run = RunFolder(tmp_path_factory.mktemp("local")).ensure()
    training.train_models(run, _params(grid__enabled=True, train__epochs=8, train__patience=8), data, progress=False)
    return run


def test_workers_import_this_emolib(cluster):
    """The cluster's workers run the emolib of this checkout (what makes the comparisons mean anything)."""
    import ray

    import emolib

    RayBackend(_params(cluster).execution).connect()
    where = ray.get(ray.remote(lambda: __import__("emolib").__file__).remote())
    assert Path(where).resolve() == Path(emolib.__file__).resolve()


def test_same_models_on_ray_as_locally(cluster, local_run, data, tmp_path):
    """Grid search and training as Ray tasks: the same tables and weights as the local backend,
    and a second call finds every unit finished (nothing trained again)."""
    run = RunFolder(tmp_path / "ray").ensure()
    params = _params(cluster, grid__enabled=True, train__epochs=8, train__patience=8)
    table = training.train_models(run, params, data, progress=False)
    assert len(table) == 2 * 3 * 2
    _same_run(local_run, run)
    for name in ("grid_search", "hyperparameters"):
        a, b = pd.read_csv(getattr(local_run, name)), pd.read_csv(getattr(run, name))
        cols = [c for c in a.columns if c not in TIMING]
        pd.testing.assert_frame_equal(a[cols], b[cols], check_exact=True)
    stamps = {p: p.stat().st_mtime_ns for p in run.root.joinpath("models").rglob("*.json")}
    training.train_models(run, params, data, progress=False)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps


def test_a_worker_killed_mid_task_is_rerun(cluster, local_run, data, tmp_path):
    """SIGKILL to a worker while it trains a bank: Ray reruns the task, the run completes with the
    same models as the local backend, every unit saved once."""
    run = RunFolder(tmp_path / "ray").ensure()
    params = _params(cluster, grid__enabled=True, train__epochs=8, train__patience=8)
    RayBackend(params.execution).connect()
    killed: list[int] = []
    stop = threading.Event()

    def killer() -> None:
        while not stop.is_set() and not killed:
            for p in cluster.workers("ray::train_bank_task"):
                try:
                    p.send_signal(signal.SIGKILL)
                except psutil.Error:
                    continue
                killed.append(p.pid)
                break
            time.sleep(0.02)

    thread = threading.Thread(target=killer, daemon=True)
    thread.start()
    try:
        table = training.train_models(run, params, data, progress=False)
    finally:
        stop.set()
        thread.join(10)
    assert killed, "no worker was caught training a bank"
    assert not psutil.pid_exists(killed[0]) or psutil.Process(killed[0]).status() == psutil.STATUS_ZOMBIE
    assert len(table) == 12 and not table.duplicated(["variant", "emotion", "seed"]).any()
    _same_run(local_run, run)


def test_unreachable_cluster_is_refused_before_any_work(tmp_path):
    """Nothing listens on the port: a clear error within seconds, and no run folder is made."""
    (port,) = _free_ports(1)
    out = tmp_path / "run"
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "emolib.cli", "run", str(REPO / "params" / "smoke.yaml"),
                           "--out", str(out), "--set", "execution.backend=ray",
                           "--set", f"execution.address=127.0.0.1:{port}"],
                          cwd=REPO, env=_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert f"execution.address '127.0.0.1:{port}': no Ray cluster answers there" in proc.stderr
    assert time.perf_counter() - started < 60
    assert not out.exists()
    with pytest.raises(EmolibError, match="no Ray cluster answers"):
        check_backend(parse_params({"execution": {"backend": "ray", "address": f"ray://127.0.0.1:{port}"}}).execution)


def test_a_cluster_that_wants_a_token_is_refused_with_what_to_set(cluster, tmp_path):
    """The driver is given the address but not ``RAY_AUTH_MODE=token``, so Ray sends no token: the
    run stops before any work with exit 2, naming the address and the variable to set."""
    out = tmp_path / "run"
    env = {k: v for k, v in _env().items() if not k.startswith("RAY_AUTH_")}
    proc = subprocess.run([sys.executable, "-m", "emolib.cli", "run", str(REPO / "params" / "smoke.yaml"),
                           "--out", str(out), "--set", "execution.backend=ray",
                           "--set", f"execution.address={cluster.address}"],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert f"execution.address '{cluster.address}': cannot join a Ray cluster" in proc.stderr, proc.stderr[-3000:]
    assert "RAY_AUTH_MODE=token" in proc.stderr
    assert not out.exists()


def test_local_backend_never_imports_ray(data, tmp_path):
    code = ("import sys; from emolib import training; from emolib.execution import backend_for; "
            "from emolib.config import parse_params; backend_for(parse_params({}).execution); "
            "assert 'ray' not in sys.modules, 'ray imported'")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


@pytest.mark.slow
def test_smoke_run_on_ray_equals_local(cluster, smoke_run, tmp_path):
    """``emolib run params/smoke.yaml --stages 02 --set execution.backend=ray`` (the grid search,
    both variants, the SVMs, in the notebook's kernel as the Ray driver) on a copy of the shared
    smoke run's stage 01: the same tables and weights as the local run; run again on the local
    backend, stage 02 is skipped (the backend is no parameter of any stage)."""
    out = tmp_path / "run"
    shutil.copytree(smoke_run, out)
    for folder in ("models", "results"):
        shutil.rmtree(out / folder)
    base = [sys.executable, "-m", "emolib.cli", "run", str(REPO / "params" / "smoke.yaml"), "--out", str(out),
            "--stages", "02"]

    def run(*extra: str) -> str:
        proc = subprocess.run(base + list(extra), cwd=REPO, env=_env(), capture_output=True, text=True, timeout=1200)
        assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        return proc.stdout

    run("--force", "--set", "execution.backend=ray", "--set", f"execution.address={cluster.address}")
    a, b = RunFolder(smoke_run), RunFolder(out)
    _same_run(a, b, more_in_a=True)  # the smoke run also holds stage 04's models
    assert len(_weights(b)) == len(pd.read_csv(b.training_results))  # (the grid's models are in cache/)
    for table in ("grid_search.csv", "hyperparameters.csv", "svm.csv", "splits.csv"):
        ta, tb = pd.read_csv(smoke_run / "results" / table), pd.read_csv(out / "results" / table)
        cols = [c for c in ta.columns if c not in TIMING]
        pd.testing.assert_frame_equal(ta[cols], tb[cols], check_exact=True)
    log = run()
    assert "[02_training] complete, with unchanged parameters" in log, log
