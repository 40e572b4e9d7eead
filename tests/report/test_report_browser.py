"""The HTML reports in a real browser (headless Chromium, no network): every plotly figure
renders (its div gets an svg), no JavaScript error is thrown, and plotly.js is embedded once
rather than fetched from a CDN.

The slow test opens the results report of the ``smoke_run`` fixture (a full ``emolib run``); the
others render a small notebook of their own (the explorer's output and a figure) the way the
runner renders every stage.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

pytestmark = pytest.mark.browser

CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--enable-logging=stderr", "--v=0",
                  # no name resolves: the page must render with no network at all, as offline
                  "--host-resolver-rules=MAP * ~NOTFOUND")
PLOTLY_CDN_SCRIPT = re.compile(r"<script[^>]*\bsrc=[\"'][^\"']*cdn\.plot\.ly", re.IGNORECASE)
PLOTLY_JS_HEADER = "* plotly.js v"
WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path:
            return path
    pytest.skip("headless Chromium not found (Debian: apt-get install -y chromium)")


def open_in_chromium(html: Path, profile: Path, budget_ms: int = 20000) -> tuple[str, list[str]]:
    """Load ``html`` in headless Chromium; return the DOM after ``budget_ms`` of virtual time and
    the console messages that are errors (uncaught exceptions, console.error)."""
    profile.mkdir(parents=True, exist_ok=True)
    proc = subprocess.run([chromium(), *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                           f"--virtual-time-budget={budget_ms}", "--dump-dom", html.resolve().as_uri()],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    console = [line for line in proc.stderr.splitlines() if ":CONSOLE" in line]
    errors = [line for line in console if "Uncaught" in line or "Error" in line]
    return proc.stdout, errors


def plotly_figures(dom: str) -> list[tuple[str, bool]]:
    """(id, rendered) of every plotly figure in a DOM: rendered when plotly drew its svg."""
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(dom, "html.parser")
    return [(div.get("id", ""), div.select_one("svg.main-svg") is not None)
            for div in soup.select("div.plotly-graph-div")]


def check_offline_html(html_text: str) -> None:
    assert not PLOTLY_CDN_SCRIPT.search(html_text), "plotly.js is fetched from cdn.plot.ly"
    assert html_text.count(PLOTLY_JS_HEADER) == 1, "plotly.js must be embedded exactly once"
    # a widget view left in an output would be a dead placeholder without a kernel
    assert f'<script type="{WIDGET_MIME}">' not in html_text
    # saved widget state makes nbconvert's template fetch the widget manager from a CDN
    assert "unpkg.com/@jupyter-widgets" not in html_text


def test_a_script_error_and_an_undrawn_figure_are_detected(tmp_path):
    page = tmp_path / "bad.html"
    page.write_text('<html><body><div class="plotly-graph-div" id="never"></div>'
                    "<script>undefinedFunction();</script></body></html>")
    dom, errors = open_in_chromium(page, tmp_path / "profile", budget_ms=2000)
    assert plotly_figures(dom) == [("never", False)]
    assert any("Uncaught ReferenceError: undefinedFunction" in e for e in errors)


# Headless Chromium's --virtual-time-budget advances the clock for timers but does not promise
# animation frames; plotly's slider applies its step in a requestAnimationFrame callback, so on a
# busy machine the budget could run out before that frame came (CI, 2026-11-22: the slider
# seemed dead). Driving frames from timers makes the page deterministic under virtual time; the
# slider's own code is unchanged.
FRAMES_FROM_TIMERS = """
<script>
window.requestAnimationFrame = cb => setTimeout(() => cb(performance.now()), 16);
window.cancelAnimationFrame = id => clearTimeout(id);
</script>"""

CLICK_MENU_THEN_SLIDER = """
<script>
function shown(gd) { return gd._fullData.filter(t => t.visible === true).map(t => t.name + ':' + t._length); }
const pause = ms => new Promise(r => setTimeout(r, ms));
async function waitFor(condition, ms) {  // poll: plotly redraws asynchronously, slower on a busy machine
  for (let waited = 0; waited < ms; waited += 50) { if (condition()) return true; await pause(50); }
  return condition();
}
function clickSliderEnd(gd) {
  const labels = gd.querySelectorAll('.slider-group .slider-label-group');
  const rail = gd.querySelector('.slider-group .slider-rail-touch-rect');
  const last = labels[labels.length - 1].getBoundingClientRect();
  const at = {bubbles: true, view: window, clientX: last.x + last.width / 2, clientY: rail.getBoundingClientRect().y + 5};
  rail.dispatchEvent(new MouseEvent('mousedown', at));
  gd.dispatchEvent(new MouseEvent('mouseup', at));
}
async function play() {
  const gd = document.getElementById('figure3');
  const out = {initial: shown(gd)};
  gd.querySelector('.updatemenu-header').dispatchEvent(new MouseEvent('click', {bubbles: true}));
  await waitFor(() => gd.querySelectorAll('.updatemenu-dropdown-button').length > 2, 3000);
  gd.querySelectorAll('.updatemenu-dropdown-button')[2].dispatchEvent(new MouseEvent('click', {bubbles: true}));
  await waitFor(() => shown(gd)[0].startsWith('fear') && gd.querySelectorAll('.slider-group .slider-label-group').length, 3000);
  await pause(300);  // let the swapped-in slider settle before clicking it
  out.afterMenu = shown(gd);
  clickSliderEnd(gd);
  await waitFor(() => shown(gd)[1] !== out.afterMenu[1], 3000);
  out.afterSlider = shown(gd);
  document.body.setAttribute('data-result', JSON.stringify(out));
}
window.addEventListener('load', () => setTimeout(play, 200));
</script>"""


def test_figure3_menu_and_slider_work_in_a_static_page(tmp_path):
    """Click the emotion menu (third entry), then the slider's last K, as a reader would."""
    import json

    import numpy as np
    import plotly.io as pio
    from bs4 import BeautifulSoup

    from emolib.plots.results import top_k_faces_figure
    from emolib.vocab import EMOTIONS
    from tests.results.test_results import fake_ranking

    fig = top_k_faces_figure(np.random.default_rng(0).random((468, 2)), np.arange(468), fake_ranking(),
                             {e: np.linspace(1, 0, 468) for e in EMOTIONS}, [468, 64, 16], list(EMOTIONS))
    page = tmp_path / "figure3.html"
    page.write_text("<html><body>" + FRAMES_FROM_TIMERS
                    + pio.to_html(fig, include_plotlyjs=True, full_html=False, div_id="figure3")
                    + CLICK_MENU_THEN_SLIDER + "</body></html>")
    dom, errors = open_in_chromium(page, tmp_path / "profile", budget_ms=30000)
    assert not errors, errors
    result = json.loads(BeautifulSoup(dom, "html.parser").body["data-result"])
    assert result["initial"] == ["anger: importance:468", "anger: top 468:468"]
    assert result["afterMenu"] == ["fear: importance:468", "fear: top 468:468"]
    assert result["afterSlider"] == ["fear: importance:468", "fear: top 16:16"]


@pytest.fixture(scope="module")
def small_report(tmp_path_factory) -> Path:
    """A notebook showing the explorer first (so it must bring plotly.js itself) and then a
    figure, executed with papermill and rendered by the runner's own renderer."""
    import papermill

    from emolib.report.html import render_html
    from tests.results.test_results import write_fake_study
    from tools.notebook_tool import write_notebook

    root = tmp_path_factory.mktemp("report")
    run, _ = write_fake_study(root / "run")
    notebook = root / "small.ipynb"
    write_notebook(notebook, [
        ("parameters", 'run_dir: str = "../runs/demo"\nparams_file: str = ""'),
        ("code", "import emolib\nfrom emolib.run_folder import open_run\nfrom emolib.plots import setup_notebook\n"
                 "setup_notebook()\nrun, params = open_run(run_dir, params_file)\n"
                 "from emolib.explore import open_explorer\nopen_explorer(run, params)"),
        ("code", "import plotly.graph_objects as go\ngo.Figure(go.Bar(x=['a', 'b'], y=[1, 2]))"),
    ])
    executed = root / "small_out.ipynb"
    papermill.execute_notebook(str(notebook), str(executed), parameters={"run_dir": str(run.root)},
                               progress_bar=False, cwd=str(root))
    return render_html(executed, hide_code=True)


def test_small_report_with_the_explorer_renders_offline(small_report, tmp_path):
    text = small_report.read_text()
    check_offline_html(text)
    assert "Explorer (static view)" in text
    dom, errors = open_in_chromium(small_report, tmp_path / "profile")
    figures = plotly_figures(dom)
    assert len(figures) == 4  # the explorer's Figure 3, accuracy, regions; then the bar chart
    assert all(rendered for _, rendered in figures), figures
    assert not errors, errors


def test_results_notebook_report_renders_every_figure(results_report_of_a_fake_run, tmp_path):
    report = results_report_of_a_fake_run
    text = report.read_text()
    check_offline_html(text)
    for heading in ("Does the explanation hold up?", "Tables 6 and 7", "Tables 1 to 5", "Baselines: SVMs",
                    "Statistics", "Figure 3",
                    "Importance per facial region", "The cost side", "Explorer (static view)"):
        assert heading in text
    dom, errors = open_in_chromium(report, tmp_path / "profile", budget_ms=30000)
    figures = plotly_figures(dom)
    # the forest of paired differences, accuracy, paired differences, Figure 3, regions, ground
    # truth, cost, and the explorer's three (this fake run has no stage-03 checks: no stability
    # figure, no animation)
    assert len(figures) == 10, figures
    assert all(rendered for _, rendered in figures), figures
    assert not errors, errors
    assert (report.parent / "figures" / "results.html").is_file()


@pytest.mark.slow
def test_results_report_renders_every_figure(smoke_run, tmp_path):
    report = smoke_run / "05_results.html"
    text = report.read_text()
    check_offline_html(text)
    dom, errors = open_in_chromium(report, tmp_path / "profile", budget_ms=30000)
    figures = plotly_figures(dom)
    assert len(figures) >= 8, f"only {len(figures)} plotly figures in {report}"
    assert all(rendered for _, rendered in figures), [f for f in figures if not f[1]]
    assert not errors, errors


@pytest.mark.slow
@pytest.mark.parametrize("stage", ["01_data_prep", "02_training", "03_global_ig", "04_pruning"])
def test_stage_reports_render_without_errors(smoke_run, tmp_path, stage):
    report = smoke_run / f"{stage}.html"
    text = report.read_text()
    assert not PLOTLY_CDN_SCRIPT.search(text)
    assert text.count(PLOTLY_JS_HEADER) <= 1
    dom, errors = open_in_chromium(report, tmp_path / "profile", budget_ms=30000)
    assert all(rendered for _, rendered in plotly_figures(dom))
    assert not errors, errors
