"""One page to share: every run folder's ``index.html`` (what was run, headline numbers, links
to each stage's report), and ``emolib report RUN_DIR`` packing reports, figures and tables into
one zip that opens, and whose pages render in headless Chromium with no network request at all
(every request is recorded, and any that leaves the unpacked folder is blocked and fails)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from emolib.errors import DataError
from emolib.report.archive import pack_reports
from emolib.run_folder import RunFolder
from emolib.vocab import STAGES
from tests.report.test_report_browser import chromium

DRAWN_JS = ("() => Array.from(document.querySelectorAll('div.plotly-graph-div'))"
            ".filter(d => d.querySelector('svg.main-svg')).length")
HEAVY = re.compile(r"(^|/)(models|cache|logs)/|\.(npz|keras|ipynb)$")


@pytest.fixture(scope="module")
def fake_run(results_report_of_a_fake_run) -> Path:
    return results_report_of_a_fake_run.parent


def gate(prefix: str, refused: list[str]):
    """A route handler: files under ``prefix`` and inline URLs pass; anything else is recorded
    and aborted (so no request ever leaves the machine)."""
    def handle(route):
        url = route.request.url
        if url.startswith((prefix, "data:", "blob:", "about:")):
            route.continue_()
        else:
            refused.append(url)
            route.abort()
    return handle


def open_offline(pages: list[Path], root: Path, budget_ms: int = 15000) -> dict[str, dict]:
    """Load each page in headless Chromium (Playwright) with every request recorded; a request
    for anything but a file under ``root`` (or an inline data:/blob: URL) is aborted. Returns,
    per page, the requests that were refused, the JavaScript errors, and how many plotly figures
    there are and how many plotly drew."""
    from playwright.sync_api import sync_playwright

    results: dict[str, dict] = {}
    prefix = root.resolve().as_uri() + "/"
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), headless=True,
                                     args=["--no-sandbox", "--disable-gpu", "--host-resolver-rules=MAP * ~NOTFOUND"])
        try:
            for page_path in pages:
                context = browser.new_context()
                refused, errors = [], []

                context.route("**/*", gate(prefix, refused))
                page = context.new_page()
                page.on("request", lambda r, refused=refused: None if r.url.startswith(
                    (prefix, "data:", "blob:", "about:")) else refused.append(r.url))
                page.on("pageerror", lambda exc, errors=errors: errors.append(str(exc)))
                page.on("console", lambda m, errors=errors: m.type == "error" and errors.append(m.text))
                page.goto(page_path.resolve().as_uri(), wait_until="load")
                page.wait_for_timeout(500)
                figures = page.locator("div.plotly-graph-div").count()
                waited = 0
                while page.evaluate(DRAWN_JS) < figures and waited < budget_ms:
                    page.wait_for_timeout(250)
                    waited += 250
                drawn = page.evaluate(DRAWN_JS)
                results[page_path.name] = {"refused": sorted(set(refused)), "errors": errors, "figures": figures,
                                           "drawn": drawn}
                context.close()
        finally:
            browser.close()
    return results


def test_the_runner_writes_an_index_linking_each_stage_report(fake_run):
    index = RunFolder(fake_run).index_page
    assert index.is_file()
    soup = BeautifulSoup(index.read_text(), "html.parser")
    links = {a["href"] for a in soup.select("a[href]")}
    assert "05_results.html" in links and (fake_run / "05_results.html").is_file()
    assert all((fake_run / href).is_file() for href in links), links  # relative, and there
    assert not any(href.startswith(("http:", "https:", "/")) for href in links)
    text = soup.get_text(" ")
    for stage in STAGES:
        assert stage in text
    assert "not run" in text  # only stage 05 ran on this folder
    assert "Headline numbers" in text and "T-EMO" in text and "R-EMO" in text
    headline = soup.find("h2", string="Headline numbers").find_next("table")
    assert len(headline.select("tr")) > 2  # a row per variant, K and selection
    assert "python" in text and "git commit" in text and "params.yaml" in links


def test_report_archive_opens_and_leaves_models_and_caches_behind(fake_run, tmp_path):
    (fake_run / "models" / "t-emo").mkdir(parents=True, exist_ok=True)
    (fake_run / "models" / "t-emo" / "unit.keras").write_bytes(b"weights")
    (fake_run / "cache" / "ig").mkdir(parents=True, exist_ok=True)
    (fake_run / "cache" / "ig" / "x.npz").write_bytes(b"cache")
    out = pack_reports(fake_run, tmp_path / "share.zip")
    with zipfile.ZipFile(out) as archive:
        assert archive.testzip() is None
        names = archive.namelist()
    top = fake_run.name
    assert f"{top}/index.html" in names and f"{top}/05_results.html" in names
    assert f"{top}/figures/results.html" in names and f"{top}/results/training.csv" in names
    assert not [n for n in names if HEAVY.search(n)], [n for n in names if HEAVY.search(n)]
    assert all(n.startswith(f"{top}/") for n in names)


def test_archive_pages_render_with_no_network(fake_run, tmp_path):
    chromium()
    out = pack_reports(fake_run, tmp_path / "share.zip")
    with zipfile.ZipFile(out) as archive:
        archive.extractall(tmp_path / "unpacked")
    root = tmp_path / "unpacked" / fake_run.name
    pages = [root / "index.html", root / "05_results.html", *sorted((root / "figures").glob("*.html"))]
    seen = open_offline(pages, root)
    for name, page in seen.items():
        assert not page["refused"], f"{name} asked for {page['refused']}"
        assert not page["errors"], f"{name}: {page['errors']}"
        assert page["drawn"] == page["figures"], f"{name}: {page['drawn']} of {page['figures']} figures drawn"
    assert seen["05_results.html"]["figures"] >= 8


def test_a_page_that_asks_the_network_is_caught(tmp_path):
    """The gate above must see what it is meant to refuse."""
    chromium()
    page = tmp_path / "leaky.html"
    page.write_text("<html><body><img src='https://cdn.example.org/x.png'>"
                    "<script src='http://example.org/lib.js'></script></body></html>")
    seen = open_offline([page], tmp_path)["leaky.html"]
    assert {"https://cdn.example.org/x.png", "http://example.org/lib.js"} <= set(seen["refused"])


def test_emolib_report_command(fake_run, tmp_path, repo):
    out = tmp_path / "sent" / "run.zip"
    proc = subprocess.run([sys.executable, "-m", "emolib.cli", "report", str(fake_run), "--out", str(out)],
                          cwd=repo, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert out.is_file() and str(out) in proc.stdout
    empty = tmp_path / "not_a_run"
    empty.mkdir()
    proc = subprocess.run([sys.executable, "-m", "emolib.cli", "report", str(empty)], cwd=repo,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "not a run folder (no manifest.json" in proc.stderr
    with pytest.raises(DataError, match="no stage report"):
        shutil.copy(fake_run / "manifest.json", empty / "manifest.json")
        pack_reports(empty)


@pytest.mark.slow
def test_smoke_run_archive_renders_every_report_offline(smoke_run, tmp_path):
    out = pack_reports(smoke_run, tmp_path / "smoke.zip")
    with zipfile.ZipFile(out) as archive:
        assert archive.testzip() is None
        archive.extractall(tmp_path / "unpacked")
    root = tmp_path / "unpacked" / smoke_run.name
    assert not [n for n in (p.relative_to(root).as_posix() for p in root.rglob("*")) if HEAVY.search(n)]
    soup = BeautifulSoup((root / "index.html").read_text(), "html.parser")
    reports = [a["href"] for a in soup.select("a[href$='.html']") if not a["href"].startswith("figures/")]
    assert reports == [f"{s}.html" for s in STAGES]
    seen = open_offline([root / "index.html", *(root / r for r in reports)], root, budget_ms=30000)
    for name, page in seen.items():
        assert not page["refused"], f"{name} asked for {page['refused']}"
        assert not page["errors"], f"{name}: {page['errors']}"
        assert page["drawn"] == page["figures"], f"{name}: {page['drawn']} of {page['figures']} figures drawn"
