"""``index.html``: one page per run folder to open first or send on, written by the runner.

It says what was run (parameters, versions, git commit, dates, each stage's status and time),
gives the headline numbers (mean test accuracy per variant and K, IG against random subsets), and
links to each stage's HTML report and to the figures and tables. Links are relative, so the page
works inside the folder, a copy of it, or the archive of :mod:`emolib.report.archive`; nothing is
fetched from the network.
"""
from __future__ import annotations

import datetime as _dt
import html
import json
from pathlib import Path
from typing import Optional

from emolib import io
from emolib.run_folder import RunFolder
from emolib.vocab import STAGES, VARIANT_LABELS, VARIANTS

STAGE_TITLES = {"01_data_prep": "data preparation", "02_training": "training", "03_global_ig": "global IG",
                "04_pruning": "pruning", "05_results": "results"}
# Other pages and tables worth a link, when the run has them (relative to the run folder).
EXTRA_LINKS = (("results/tables.md", "every table of stage 05 (Markdown)"),
               ("data/extraction_report.csv", "what happened to each sequence (stage 01)"),
               ("results/training.csv", "every trained model (stage 02)"),
               ("results/pruning.csv", "every pruned model (stage 04)"),
               ("results/landmark_ranking.csv", "the landmark ranking per emotion (stage 03)"),
               ("results/statistics.csv", "paired statistics (stage 05)"))

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 70em; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; }
.failed { color: #b00; } .complete { color: #060; }
"""


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _table(header: list[str], rows: list[list[str]], numeric: set[int] = frozenset()) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td class='num'>{c}</td>" if j in numeric else f"<td>{c}</td>"
                                    for j, c in enumerate(row)) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def headline_rows(run: RunFolder) -> Optional[tuple[list[str], list[list[str]]]]:
    """(header, rows) of the headline table: mean test accuracy (and balanced accuracy) over
    emotions and seeds, per variant, K and selection, from stage 02's and 04's tables; None when
    neither exists yet."""
    import pandas as pd

    parts = [pd.read_csv(p) for p in (run.training_results, run.pruning_results) if p.is_file()]
    if not parts:
        return None
    models = pd.concat(parts, ignore_index=True)
    needed = {"variant", "n_landmarks", "selection", "accuracy", "emotion", "seed"}
    if not needed <= set(models.columns):
        return None
    balanced = "balanced_accuracy" in models.columns
    grouped = models.groupby(["variant", "n_landmarks", "selection"], sort=False)
    rows = []
    order = {v: i for i, v in enumerate(VARIANTS)}  # T-EMO (the paper's) first
    for (variant, k, selection), part in sorted(grouped, key=lambda kv: (order.get(kv[0][0], 99), -kv[0][1], kv[0][2])):
        rows.append([html.escape(VARIANT_LABELS.get(variant, str(variant))), str(int(k)), html.escape(str(selection)),
                     f"{part['accuracy'].mean():.3f} ± {part['accuracy'].std(ddof=1):.3f}"
                     if len(part) > 1 else f"{part['accuracy'].mean():.3f}",
                     f"{part['balanced_accuracy'].mean():.3f}" if balanced else "",
                     str(part["emotion"].nunique()), str(part["seed"].nunique())])
    return (["variant", "K", "landmarks", "accuracy (mean ± sd over models)", "balanced accuracy",
             "emotions", "seeds"], rows)


def run_index_html(run: RunFolder) -> str:
    """The text of a run folder's ``index.html`` (see the module docstring)."""
    manifest = _read_json(run.manifest_path)
    params_text = run.params_path.read_text() if run.params_path.is_file() else ""
    name = next((line.split(":", 1)[1].strip() for line in params_text.splitlines() if line.startswith("name:")),
                run.root.name)
    esc = html.escape
    parts = [f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>emolib run {esc(name)}</title>"
             f"<style>{_STYLE}</style></head><body>",
             f"<h1>emolib run <code>{esc(name)}</code></h1>",
             "<p>Explainable landmark-based emotion recognition (T-EMO / R-EMO, global Integrated Gradients, "
             "landmark pruning). Every link below is a file of this run folder; the reports open offline.</p>"]

    stages = manifest.get("stages", {})
    rows = []
    for stage in STAGES:
        entry = stages.get(stage, {})
        report = run.notebook(stage).with_suffix(".html")
        link = (f"<a href='{esc(report.name)}'>{esc(stage)}</a>" if report.is_file() else esc(stage))
        status = entry.get("status", "not run")
        rows.append([link, esc(STAGE_TITLES.get(stage, "")), f"<span class='{esc(status)}'>{esc(status)}</span>",
                     esc(str(entry.get("started", ""))), esc(str(entry.get("finished", ""))),
                     f"{entry['wall_seconds']:.1f}" if "wall_seconds" in entry else "",
                     esc(str(entry.get("error", "")))])
    parts += ["<h2>Stages and their reports</h2>",
              _table(["report", "stage", "status", "started", "finished", "seconds", "error"], rows, {5})]

    headline = headline_rows(run)
    parts.append("<h2>Headline numbers</h2>")
    if headline is None:
        parts.append("<p>No model trained yet (stage 02 has not run).</p>")
    else:
        parts += ["<p>Test accuracy of the binary one-vs-rest models, averaged over emotions and seeds. "
                  "<i>all</i>: every landmark (stage 02); <i>ig</i>: each emotion's top-K landmarks by "
                  "global IG; <i>random</i>: random subsets of the same K (stage 04). The results report "
                  "has them per emotion, with the paired statistics.</p>",
                  _table(*headline, numeric={1, 3, 4, 5, 6})]

    links = [f"<li><a href='{esc(rel)}'>{esc(rel)}</a>: {esc(what)}</li>"
             for rel, what in EXTRA_LINKS if (run.root / rel).is_file()]
    links += [f"<li><a href='figures/{esc(p.name)}'>figures/{esc(p.name)}</a></li>"
              for p in sorted(run.figures.glob("*.html"))]
    if links:
        parts += ["<h2>Figures and tables</h2>", "<ul>" + "".join(links) + "</ul>"]

    info = [["emolib", esc(str(manifest.get("emolib_version", "")))],
            ["git commit", f"<code>{esc(str(manifest.get('git_commit') or 'unknown'))}</code>"],
            ["parameters file", esc(str(manifest.get("params_file", "")))],
            ["kernel", esc(str(manifest.get("kernel") or "the notebooks' own"))],
            ["first run", esc(str(manifest.get("created", "")))],
            ["last run started", esc(str(manifest.get("updated", "")))],
            ["this page written", esc(_dt.datetime.now().isoformat(timespec="seconds"))]]
    parts += ["<h2>What was run</h2>", _table(["what", "value"], info)]
    versions = manifest.get("versions", {})
    if versions:
        parts.append(_table(["package", "version"], [[esc(k), esc(str(v))] for k, v in sorted(versions.items())]))
    parts += ["<h3>Parameters (<a href='params.yaml'>params.yaml</a>)</h3>", f"<pre>{esc(params_text)}</pre>",
              "</body></html>\n"]
    return "\n".join(parts)


def write_run_index(run: RunFolder) -> Path:
    """Write ``index.html`` into the run folder (atomically); returns its path."""
    path = run.index_page
    io.write_text(path, run_index_html(run))
    return path
