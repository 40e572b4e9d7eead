"""The live explorer as a researcher meets it: a real ``jupyter lab`` (the project's kernel, a
token, a free port on 127.0.0.1, a copy of a finished smoke-scale run folder) opened in headless
Chromium (Debian's, driven by Playwright; nothing is downloaded), ``05_results.ipynb`` run from
the Run menu, and the explorer's widgets used with the mouse and keyboard.

What is checked is what the browser draws: the controls are widgets (not their text fallback,
not the static twin), and each control changes the plotly figures it should (their trace data as
plotly holds it in the page, before and after). The per-video view draws one video's attribution
over its frames. No JavaScript error may reach the console.

Every process started here (the server, its kernels, the browser) is stopped, also on failure.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO
from tests.report.test_report_browser import chromium

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.timeout(600)]

KERNEL = os.environ.get("EMOLIB_KERNEL", "emolib")  # what `make install` registers (Makefile KERNEL)
EXPLORER_CELL = "open_explorer(run, params, study=study)"
SERVER_START_S = 60
RUN_ALL_S = 150
PANEL_S = 30


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def results_notebook(run_dir: Path, out: Path) -> Path:
    """``notebooks/05_results.ipynb`` with its parameters cell pointing at ``run_dir`` and the
    project's kernel chosen, as a researcher would set it up (README, "Exploring")."""
    nb = json.loads((REPO / "notebooks" / "05_results.ipynb").read_text())
    [cell] = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    cell["source"] = f'run_dir = {str(run_dir)!r}\nparams_file = ""\n'
    nb["metadata"]["kernelspec"] = {"name": KERNEL, "display_name": "Python (emolib)", "language": "python"}
    out.write_text(json.dumps(nb, indent=1))
    return out


def descendants(pid: int) -> list:
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


@contextmanager
def jupyter_lab(root: Path, home: Path):
    """A ``jupyter lab`` serving ``root``; yields (base url, token); stops it and its kernels."""
    import psutil

    port, token = free_port(), secrets.token_hex(16)
    settings = home / "settings"
    # Every cell in the page (no virtual windowing), so the explorer's output is in the DOM.
    (settings / "@jupyterlab" / "notebook-extension").mkdir(parents=True)
    (settings / "@jupyterlab" / "notebook-extension" / "tracker.jupyterlab-settings").write_text(
        json.dumps({"windowingMode": "none"}))
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]),
           "JUPYTER_CONFIG_DIR": str(home / "config"), "JUPYTER_RUNTIME_DIR": str(home / "runtime"),
           "JUPYTERLAB_SETTINGS_DIR": str(settings), "JUPYTERLAB_WORKSPACES_DIR": str(home / "workspaces"),
           "IPYTHONDIR": str(home / "ipython"), "TF_CPP_MIN_LOG_LEVEL": "2"}
    log = open(home / "jupyter.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ip=127.0.0.1", f"--port={port}",
         "--ServerApp.port_retries=0", "--allow-root", f"--IdentityProvider.token={token}",
         f"--ServerApp.root_dir={root}",
         "--LabApp.news_url=", "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    seen: dict[int, psutil.Process] = {}
    try:
        deadline = time.time() + SERVER_START_S
        while True:
            if proc.poll() is not None:
                raise AssertionError(f"jupyter lab exited ({proc.returncode}):\n{tail(home / 'jupyter.log')}")
            try:
                with urllib.request.urlopen(f"{base}/api/status?token={token}", timeout=5) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.time() > deadline:
                raise AssertionError(f"jupyter lab not up after {SERVER_START_S} s:\n{tail(home / 'jupyter.log')}")
            time.sleep(0.5)
        yield base, token, lambda: seen.update({p.pid: p for p in descendants(proc.pid)})
    finally:
        seen.update({p.pid: p for p in descendants(proc.pid)})
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)  # jupyter's own shutdown: it stops its kernels first
            proc.send_signal(signal.SIGINT)  # (the second SIGINT skips the "shut down? y/n" prompt)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        for child in seen.values():  # anything it left behind (a kernel that did not stop)
            try:
                child.kill()
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(list(seen.values()), timeout=10)
        log.close()


def wait_for_kernel(base: str, token: str, notebook: str, timeout_s: float = SERVER_START_S) -> dict:
    """The server's session of ``notebook`` once its kernel is idle (ready to run cells)."""
    deadline = time.time() + timeout_s
    while True:
        with urllib.request.urlopen(f"{base}/api/sessions?token={token}", timeout=10) as r:
            sessions = [s for s in json.load(r) if s.get("path", "").endswith(notebook)]
        if sessions and sessions[0]["kernel"]["execution_state"] == "idle":
            assert sessions[0]["kernel"]["name"] == KERNEL, sessions[0]["kernel"]
            return sessions[0]
        if time.time() > deadline:
            raise AssertionError(f"no idle kernel for {notebook} after {timeout_s} s: {sessions}")
        time.sleep(0.5)


def tail(path: Path, n: int = 4000) -> str:
    return path.read_text(errors="replace")[-n:] if path.is_file() else ""


# ---- reading what the page draws -------------------------------------------------------------

# The plotly figures inside the explorer's output, by panel: each figure's title says which
# panel it is (face, regions, accuracy, one video); the snapshot is plotly's own trace data.
SNAPSHOT_JS = """
(cell) => {
  const out = {};
  for (const gd of cell.querySelectorAll('.js-plotly-plot')) {
    const title = (gd.layout && gd.layout.title && (gd.layout.title.text || gd.layout.title)) || '';
    const panel = / top \\d+ landmarks$/.test(title) ? 'face' : /: regions$/.test(title) ? 'regions'
      : /accuracy against K$/.test(title) ? 'accuracy' : /attribution over frames$/.test(title) ? 'sample' : title;
    out[panel] = {title: String(title), drawn: !!gd.querySelector('svg.main-svg'),
      traces: (gd._fullData || []).filter(t => t.visible !== false).map(t => ({
        type: t.type || 'scatter', name: t.name || '',
        x: t.x ? Array.from(t.x).map(String) : [], y: t.y ? Array.from(t.y).map(String) : [],
        z: t.z ? Array.from(t.z).length : 0, opacity: t.opacity === undefined ? 1 : t.opacity,
        color: t.marker ? JSON.stringify(t.marker.color) : ''})),
      shapes: JSON.stringify((gd.layout && gd.layout.shapes) || [])};
  }
  return out;
}"""


def explorer_cell(page):
    return page.locator(".jp-CodeCell").filter(has_text=EXPLORER_CELL)


def snapshot(page) -> dict:
    return explorer_cell(page).evaluate(SNAPSHOT_JS)


def wait_for_change(page, before: dict, panels: list[str], timeout_s: float = PANEL_S) -> dict:
    """The panels' snapshot once every one of ``panels`` differs from ``before`` (and is drawn)."""
    deadline = time.time() + timeout_s
    while True:
        now = snapshot(page)
        if all(p in now and now[p]["drawn"] and now[p] != before.get(p) for p in panels):
            return now
        if time.time() > deadline:
            unchanged = [p for p in panels if now.get(p) == before.get(p)]
            raise AssertionError(f"after {timeout_s} s these panels did not change: {unchanged}; "
                                 f"titles now {[v['title'] for v in now.values()]}")
        page.wait_for_timeout(250)


def ringed(snap: dict) -> int:
    """How many landmarks the face panel rings (its trace named 'selected (K)')."""
    return sum(len(t["x"]) for t in snap["face"]["traces"] if t["name"].startswith("selected"))


# ---- the test --------------------------------------------------------------------------------

@pytest.fixture
def lab_run(smoke_run, tmp_path) -> Path:
    """A copy of the finished smoke run (the explorer writes its cache into the run folder)."""
    chromium()
    copy = tmp_path / "work" / "run"
    shutil.copytree(smoke_run, copy, ignore=shutil.ignore_patterns("explore"))
    return copy


def test_explorer_in_jupyterlab(lab_run, tmp_path):
    explore_in_jupyterlab(lab_run, tmp_path)


def explore_in_jupyterlab(run_dir: Path, tmp_path: Path) -> dict:
    """Open 05_results in JupyterLab, run it, drive the explorer; returns timings (seconds)."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    try:
        KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        pytest.fail(f"Jupyter kernel {KERNEL!r} is not registered (`make install` registers it)")
    work = run_dir.parent
    notebook = results_notebook(run_dir, work / "05_results.ipynb")
    timings, started = {}, time.time()
    errors: list[str] = []
    with jupyter_lab(work, tmp_path / "jupyter") as (base, token, note_children), sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage"])
        page = browser.new_page(viewport={"width": 1600, "height": 1200})
        try:
            page.on("console", lambda m: m.type == "error" and errors.append(f"console: {m.text} @ {m.location}"))
            page.on("pageerror", lambda exc: errors.append(f"uncaught: {exc}"))
            page.goto(f"{base}/lab/tree/{notebook.name}?token={token}")
            page.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=SERVER_START_S * 1000)
            # JupyterLab asks which kernel to start, offering the notebook's own: accept it
            dialog = page.locator(".jp-Dialog", has_text="Select Kernel")
            try:
                dialog.wait_for(timeout=15000)
            except PlaywrightTimeout:
                pass
            else:
                assert "Python (emolib)" in dialog.inner_text()
                dialog.locator("button.jp-mod-accept").click()
            wait_for_kernel(base, token, notebook.name)
            timings["lab_open"] = time.time() - started
            note_children()  # the kernel is up: remember it, so it is stopped whatever happens

            # Run > Run All Cells, as a user would
            page.locator(".lm-MenuBar-item", has_text="Run").first.click()
            page.locator(".lm-Menu-item[data-command='runmenu:run-all']").click()
            cell = explorer_cell(page)
            deadline = time.time() + RUN_ALL_S
            while True:  # until every cell ran, or one raised (Run All stops there)
                page.wait_for_timeout(500)
                tracebacks = [t for t in page.locator(".jp-OutputArea-output").all_inner_texts()
                              if "Traceback (most recent call last)" in t]
                assert not tracebacks, "a cell raised:\n" + tracebacks[0][-3000:]
                prompts = page.locator(".jp-CodeCell .jp-InputPrompt").all_inner_texts()
                if prompts and all(re.fullmatch(r"\[\d+\]:", p.strip()) for p in prompts):
                    break
                assert time.time() < deadline, f"the notebook had not run after {RUN_ALL_S} s: {prompts}"
            timings["run_all"] = time.time() - started - timings["lab_open"]

            # the controls are live widgets, not their text fallback nor the static twin
            out = cell.locator(".jp-OutputArea-output").first
            assert cell.locator(".widget-dropdown select").count() == 2  # emotion, video
            assert cell.locator(".widget-toggle-buttons button").count() == 2  # T-EMO, R-EMO
            assert cell.locator(".widget-slider .noUi-handle, .widget-hslider .noUi-handle").count() == 1
            assert cell.locator("button", has_text="explain this video").count() == 1
            text = out.inner_text()
            assert "Explorer (static view)" not in text and "VBox(" not in text and "Explorer(" not in text

            first = wait_for_change(page, {}, ["face", "regions", "accuracy"])
            assert first["face"]["title"].startswith("Anger: top") and ringed(first) > 0

            # emotion: every panel redraws for the new emotion
            emotion = cell.locator(".widget-dropdown", has_text="emotion").locator("select")
            emotion.select_option(label="Fear")
            after_emotion = wait_for_change(page, first, ["face", "regions", "accuracy"])
            assert after_emotion["face"]["title"].startswith("Fear: top")
            assert after_emotion["regions"]["title"] == "Fear: regions"

            # K: one step along the slider (keyboard on its handle); fewer or more landmarks ringed
            handle = cell.locator(".noUi-handle").first
            handle.focus()
            at_start = handle.get_attribute("aria-valuenow") == handle.get_attribute("aria-valuemin")
            handle.press("ArrowRight" if at_start else "ArrowLeft")
            after_k = wait_for_change(page, after_emotion, ["face", "regions", "accuracy"])
            k_before, k_after = (int(s["face"]["title"].split(" top ")[1].split()[0]) for s in (after_emotion, after_k))
            assert k_after != k_before and (ringed(after_emotion), ringed(after_k)) == (k_before, k_after)

            # variant: the accuracy curves of the other variant come forward; the face and the
            # regions show the ranking stage 04 pruned both variants with, so they stay as they are
            cell.locator(".widget-toggle-buttons button", has_text="R-EMO").click()
            after_variant = wait_for_change(page, after_k, ["accuracy"])
            opacities = {t["name"]: t["opacity"] for t in after_variant["accuracy"]["traces"]}
            assert all(o == 1 for n, o in opacities.items() if n.startswith("R-EMO")), opacities
            assert all(o < 1 for n, o in opacities.items() if n.startswith("T-EMO")), opacities
            assert after_variant["face"] == after_k["face"] and after_variant["regions"] == after_k["regions"]

            # one video: IG of the selected sample, drawn over its frames
            cell.locator("button", has_text="explain this video").click()
            after_sample = wait_for_change(page, after_variant, ["sample"], timeout_s=120)
            heatmap = [t for t in after_sample["sample"]["traces"] if t["type"] == "heatmap"]
            assert len(heatmap) == 1 and heatmap[0]["z"] > 0
            frames = yaml.safe_load((run_dir / "params.yaml").read_text())["frames"]
            assert heatmap[0]["x"] == [str(i) for i in range(1, frames + 1)]  # one column per frame
            assert cell.locator(".widget-html", has_text="P(fear)").count() == 1, out.inner_text()
            timings["explore"] = time.time() - started - timings["lab_open"] - timings["run_all"]
            page.screenshot(path=str(tmp_path / "explorer.png"), full_page=False)
        except Exception:
            page.screenshot(path=str(tmp_path / "failure.png"), full_page=False)
            print("explorer cell at the failure:\n", explorer_cell(page).inner_text()[:3000])
            print("console errors:", errors)
            raise
        finally:
            browser.close()
    assert not errors, "JavaScript errors in the console:\n" + "\n".join(errors)
    return timings
