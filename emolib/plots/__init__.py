"""Plotly figures, and nothing else (saving them as pages is :mod:`emolib.report.html`'s job).

Each stage's figures live in a module of its own (:mod:`~emolib.plots.data`,
:mod:`~emolib.plots.training`, :mod:`~emolib.plots.attribution`, :mod:`~emolib.plots.results`);
:mod:`~emolib.plots.face` is shared. Every figure function has a name of its own.
"""
from __future__ import annotations

import re

# One colour per variant in every figure.
VARIANT_COLOURS = {"t-emo": "#1f77b4", "r-emo": "#ff7f0e"}

_MATHJAX_CDN = re.compile(r'<script[^>]*\bsrc="https://cdnjs\.cloudflare\.com/ajax/libs/mathjax/[^"]*"[^>]*>\s*</script>')


def setup_notebook() -> None:
    """Make plotly figures work both live in JupyterLab and in the offline HTML report.

    ``plotly_mimetype`` feeds JupyterLab's renderer; ``emolib_notebook`` is plotly's ``notebook``
    renderer (plotly.js embedded once, in the first figure's output, so the rendered HTML needs no
    network) without the MathJax ``<script src>`` that plotly adds to every figure: our figures
    use no LaTeX, and an offline report should fetch nothing.
    """
    import plotly.io as pio
    from plotly.io._base_renderers import NotebookRenderer

    class _OfflineNotebookRenderer(NotebookRenderer):
        def to_mimebundle(self, fig_dict):
            bundle = super().to_mimebundle(fig_dict)
            bundle["text/html"] = _MATHJAX_CDN.sub("", bundle["text/html"])
            return bundle

    if "emolib_notebook" not in pio.renderers:
        pio.renderers["emolib_notebook"] = _OfflineNotebookRenderer()
    pio.renderers.default = "plotly_mimetype+emolib_notebook"
