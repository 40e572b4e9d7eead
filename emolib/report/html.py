"""The reports: executed notebooks rendered to self-contained HTML, figures saved as HTML pages, and
tables as Markdown. Everything opens offline: plotly.js is embedded, nothing is fetched."""
from __future__ import annotations

import html as _html
import re
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from emolib import io

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go


def render_html(notebook: Path, hide_code: bool = False) -> Path:
    """Render an executed notebook to a self-contained HTML file beside it."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(notebook), as_version=4)
    drop_dead_widget_outputs(nb)
    drop_library_log_noise(nb)
    exporter = HTMLExporter(template_name="lab")
    exporter.exclude_input = hide_code
    exporter.exclude_input_prompt = hide_code
    exporter.exclude_output_prompt = hide_code
    body, _ = exporter.from_notebook_node(nb)
    # The template loads require.js and MathJax from a CDN; the report needs neither (plotly.js
    # is embedded) and must open offline without fetching anything.
    body = _EXTERNAL_SCRIPT.sub("", body)
    out = notebook.with_suffix(".html")
    io.write_text(out, body)
    return out


_EXTERNAL_SCRIPT = re.compile(r'<script[^>]*\bsrc="https?://[^"]*"[^>]*>\s*</script>')


# Start-up chatter of TensorFlow / XLA / absl / MediaPipe written to stderr when they are first
# imported in a kernel (CUDA plugin registration, CPU feature notes). Not the reader's business.
_LOG_NOISE = re.compile(
    r"^(?:[EWI]\d{4} [\d:.]+\s+\d+ \S+\]|\d{4}-\d\d-\d\d [\d:.]+: [EWI] \S+\]|WARNING: All log messages before"
    r"|To enable the following instructions|INFO: Created TensorFlow Lite)")


def drop_library_log_noise(nb) -> None:
    """Remove native-library start-up log lines from stderr outputs (the notebook keeps them)."""
    for cell in nb.cells:
        kept = []
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream" and output.get("name") == "stderr":
                lines = [ln for ln in output.get("text", "").splitlines(keepends=True) if not _LOG_NOISE.match(ln)]
                if not "".join(lines).strip():
                    continue
                output["text"] = "".join(lines)
            kept.append(output)
        cell["outputs"] = kept


def drop_dead_widget_outputs(nb) -> None:
    """Where an output offers both a live widget and a static HTML view, keep the static one; drop
    outputs that are only a widget (progress bars), and the notebook's saved widget state.

    A widget needs a running kernel; in a static report it would show as a dead placeholder. And
    while the notebook carries widget state, nbconvert's template adds a script that fetches the
    widget manager from a CDN (unpkg.com) when the page opens: the report would ask the network.
    """
    widget = "application/vnd.jupyter.widget-view+json"
    for cell in nb.cells:
        kept = []
        for output in cell.get("outputs", []):
            data = output.get("data")
            if data and widget in data:
                if "text/html" not in data:
                    continue  # a widget alone: nothing to show without a kernel
                del data[widget]
            kept.append(output)
        if "outputs" in cell:
            cell["outputs"] = kept
    nb.metadata.pop("widgets", None)



def save_figure(fig: go.Figure, path: str | Path) -> Path:
    """Write a figure as self-contained HTML (plotly.js embedded: opens offline), atomically.

    Args:
        fig: the figure.
        path: the .html file to write.

    Returns:
        ``path``.
    """
    path = Path(path)
    with io.atomic_path(path) as tmp:
        fig.write_html(str(tmp), include_plotlyjs=True, full_html=True)
    return path



def figures_page(figures: Sequence[go.Figure], title: str) -> str:
    """One standalone HTML page holding ``figures``, plotly.js embedded once (works offline).

    Args:
        figures: the figures, in order.
        title: the page title.

    Returns:
        The HTML text.
    """
    import plotly.io as pio

    parts = [pio.to_html(fig, include_plotlyjs=(i == 0), full_html=False) for i, fig in enumerate(figures)]
    return ("<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>" + _html.escape(title) + "</title></head>"
            "<body><h1>" + _html.escape(title) + "</h1>\n" + "\n".join(parts) + "\n</body></html>\n")



def to_markdown(table: pd.DataFrame, caption: str = "") -> str:
    """A DataFrame as a GitHub Markdown table (index as the first column), caption below.

    Args:
        table: the table.
        caption: a line printed under the table in italics.

    Returns:
        Markdown text ending with a newline.
    """
    def cell(v) -> str:
        return str(v).replace("|", "\\|").replace("\n", " ")

    header = [table.index.name or ""] + [cell(c) for c in table.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
    for idx, row in table.iterrows():
        lines.append("| " + " | ".join([cell(idx)] + [cell(v) for v in row.tolist()]) + " |")
    if caption:
        lines += ["", f"*{caption}*"]
    return "\n".join(lines) + "\n"

