"""Plotly figures. Each stage's figures live in a module of its own; ``face`` is shared."""
from __future__ import annotations


def setup_notebook() -> None:
    """Make plotly figures work both live in JupyterLab and in the offline HTML report.

    ``plotly_mimetype`` feeds JupyterLab's renderer; ``notebook`` embeds plotly.js itself in the
    first figure's output, so the rendered HTML needs no network.
    """
    import plotly.io as pio

    pio.renderers.default = "plotly_mimetype+notebook"
