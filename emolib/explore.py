"""A live explorer over a finished run folder (JupyterLab, ipywidgets), with a static twin.

Controls: emotion, K and variant. Panels: the face with the emotion's top-K landmarks ringed and
coloured by importance; accuracy against K (IG and random selection); the regions the top K
fall in; and one video's attribution over its frames, computed on demand
(:func:`emolib.explain.samples.explain_sample`: IG of that sample under its emotion's model,
against the typical video of each other emotion, as stage 03 computes it) and cached in
``cache/explore/``.

Displayed as ONE output whose mimebundle holds both the widget view and a static plotly HTML
(Figure 3 with its K slider and emotion menu, accuracy against K, regions): JupyterLab shows the
live widget; the HTML report, where no kernel runs, keeps the static figures (the runner drops
the dead widget view from outputs that also carry ``text/html``).
"""
from __future__ import annotations

import json
from typing import Any, Optional

import numpy as np

from emolib._deprecated import module_getattr as _module_getattr
from emolib.config import Params
from emolib.errors import EmolibError
from emolib.explain.samples import explain_sample
from emolib.landmarks import LandmarkSet
from emolib.regions import region_importance
from emolib.results.study import load_study
from emolib.results.tables import accuracy_summary
from emolib.run_folder import RunFolder
from emolib.vocab import ALL_LANDMARKS, PAPER_VARIANT, VARIANT_LABELS, VARIANTS

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


class Explorer:
    """The explorer over one run folder; display it (last expression of a cell) to use it.

    Args:
        run: the run folder (stages 01 to 04 finished).
        params: the run's parameters.
        study: the loaded study (default: :func:`emolib.results.study.load_study`).
        data: the landmark set, for the per-video view (default: read on first use).

    Raises:
        DataError: an input of stage 05 is missing (see :func:`emolib.results.study.load_study`).
    """

    def __init__(self, run: RunFolder, params: Params, *, study: Any = None, data: Optional[LandmarkSet] = None):
        self.run, self.params = run, params
        self.study = study or load_study(run, params)
        self.summary = accuracy_summary(self.study.runs)
        self.ranking = self.study.ranking_ids()
        self.k_values = sorted({self.study.full_k, *params.pruning.k,
                                *[k for k in params.report.top_k_figure if k <= self.study.full_k]}, reverse=True)
        self.regions = region_importance(self.study.ranking, self.k_values)
        self._data = data
        self._widget = None
        self.figures: dict[str, Any] = {}  # panel -> the figure it shows now
        self.last_error: Optional[str] = None

    # ---- what both views show -------------------------------------------------------------
    def importance(self, emotion: str) -> np.ndarray:
        """(L,) importance of ``emotion``'s landmarks, aligned with the study's landmark ids."""
        part = self.study.ranking[self.study.ranking["emotion"] == emotion].set_index("landmark")["importance"]
        return part.reindex(self.study.landmark_ids).fillna(0.0).to_numpy(float)

    def static_figures(self) -> list:
        """The static twin: Figure 3 (K slider, emotion menu), accuracy against K, regions."""
        from emolib.plots.results import accuracy_vs_k_figure, region_importance_figure, top_k_faces_figure

        emotions = list(self.params.emotions)
        faces = top_k_faces_figure(self.study.xy, self.study.landmark_ids, self.ranking,
                                   {e: self.importance(e) for e in emotions}, self.k_values, emotions,
                                   title="Explorer: top-K landmarks")
        accuracy = accuracy_vs_k_figure(self.summary, emotions, full_k=self.study.full_k)
        regions = region_importance_figure(self.regions, emotions, self.k_values)
        return [faces, accuracy, regions]

    def static_html(self) -> str:
        """HTML of :meth:`static_figures` without plotly.js (the notebook embeds it once)."""
        parts = ['<div class="emolib-explorer-static"><p><b>Explorer (static view).</b> Open the notebook '
                 'in JupyterLab for the live explorer (variant switch, per-video attribution).</p>']
        for fig in self.static_figures():
            parts.append(_figure_html(fig))
        parts.append("</div>")
        return "\n".join(parts)

    # ---- the live widget ------------------------------------------------------------------
    @property
    def data(self) -> LandmarkSet:
        if self._data is None:
            self._data = self.run.read_landmarks()
        return self._data

    def samples_of(self, emotion: str) -> list[tuple[str, int]]:
        """(label, row) of every video of ``emotion``, for the per-video menu."""
        data = self.data
        rows = np.where(data.emotion == emotion)[0]
        return [(f"{data.sequence[i]}{' (flipped)' if data.flipped[i] else ''}", int(i)) for i in rows]

    def widget(self):
        """The ipywidgets view (built once)."""
        if self._widget is None:
            self._widget = self._build_widget()
        return self._widget

    def _build_widget(self):
        import ipywidgets as w

        emotions = list(self.params.emotions)
        self.emotion = w.Dropdown(options=[(e.capitalize(), e) for e in emotions], value=emotions[0],
                                  description="emotion")
        self.k = w.SelectionSlider(options=self.k_values, value=self.k_values[min(1, len(self.k_values) - 1)],
                                   description="K", continuous_update=False)
        self.variant = w.ToggleButtons(options=[(VARIANT_LABELS[v], v) for v in VARIANTS], value=PAPER_VARIANT,
                                       description="variant")
        self.sample = w.Dropdown(description="video", layout=w.Layout(width="340px"))
        self.explain = w.Button(description="explain this video", icon="search")
        self.status = w.HTML()
        self.face_out, self.accuracy_out = w.Output(), w.Output()
        self.region_out, self.sample_out = w.Output(), w.Output()
        for control in (self.emotion, self.k, self.variant):
            control.observe(lambda _change: self.refresh(), names="value")
        self.emotion.observe(lambda _change: self._fill_samples(), names="value")
        self.explain.on_click(lambda _button: self.show_sample())
        self._fill_samples()
        self.refresh()
        return w.VBox([
            w.HBox([self.emotion, self.variant]), self.k,
            w.HBox([self.face_out, self.region_out]), self.accuracy_out,
            w.HTML("<b>One video</b>: IG under its emotion's model (selected variant and K; seed "
                   f"{self.params.ig_seed}), against the typical videos of the other emotions."),
            w.HBox([self.sample, self.explain]), self.status, self.sample_out])

    def _fill_samples(self) -> None:
        options = self.samples_of(self.emotion.value)
        self.sample.options = options
        if options:
            self.sample.value = options[0][1]

    def _show(self, out, fig, panel: str) -> None:
        from IPython.display import display

        self.figures[panel] = fig
        out.clear_output(wait=True)
        with out:
            # plotly's own mimetype only: JupyterLab renders it without plotly.js in the page, and
            # the notebook renderer's one-time plotly.js embed does not land (and hide) in here.
            display({"application/vnd.plotly.v1+json": json.loads(fig.to_json()),
                     "text/plain": f"<{panel} figure>"}, raw=True)

    def face_figure(self, emotion: str, k: int):
        """The face with ``emotion``'s top ``k`` ringed, coloured by importance."""
        import plotly.graph_objects as go

        from emolib.plots.face import face_layout, face_scatter

        fig = go.Figure(face_scatter(self.study.xy, self.importance(emotion), self.study.landmark_ids,
                                     highlight=self.ranking[emotion][:k]))
        return face_layout(fig, f"{emotion.capitalize()}: top {k} landmarks", height=480)

    def region_figure(self, emotion: str, k: int):
        """Bars: where the top ``k`` of ``emotion`` lie, and each region's share of importance."""
        import plotly.graph_objects as go

        part = self.regions[self.regions["emotion"] == emotion]
        fig = go.Figure([go.Bar(x=part["region"], y=part[f"top{k}_share"], name=f"share of the top {k}"),
                         go.Bar(x=part["region"], y=part["importance_share"], name="share of importance")])
        fig.update_layout(barmode="group", template="plotly_white", height=480, width=520,
                          title=f"{emotion.capitalize()}: regions", legend=dict(orientation="h", y=-0.25))
        return fig

    def accuracy_figure(self, emotion: str, k: int, variant: str):
        """Accuracy against K for one emotion, the chosen K and variant marked."""
        from emolib.plots.results import accuracy_vs_k_figure

        fig = accuracy_vs_k_figure(self.summary, [emotion], full_k=self.study.full_k,
                                   title=f"{emotion.capitalize()}: accuracy against K")
        for trace in fig.data:
            if not str(trace.name).startswith(variant.upper()):
                trace.opacity = 0.35
        fig.add_vline(x=k, line_dash="dash", line_color="grey")
        fig.update_layout(height=360)
        return fig

    def refresh(self) -> None:
        """Redraw the face, region and accuracy panels for the current controls."""
        emotion, k, variant = self.emotion.value, int(self.k.value), self.variant.value
        self._show(self.face_out, self.face_figure(emotion, k), "face")
        self._show(self.region_out, self.region_figure(emotion, k), "regions")
        self._show(self.accuracy_out, self.accuracy_figure(emotion, k, variant), "accuracy")

    def model_for(self, k: int) -> tuple[int, str]:
        """(K, selection) of the model explaining a video at slider value ``k``: the pruned IG
        model when one was trained for ``k``, else the all-landmark model."""
        if k in self.params.pruning.k:
            return k, "ig"
        return self.study.full_k, ALL_LANDMARKS

    def show_sample(self) -> Optional[dict]:
        """Explain the selected video (cached) and draw its attribution over frames."""
        from emolib.plots.results import sample_attribution_figure

        k, selection = self.model_for(int(self.k.value))
        row = self.sample.value
        self.status.value = (f"computing IG of {self.data.sequence[row]} under the {self.variant.value} "
                             f"{k}-landmark model...")
        try:
            res = explain_sample(self.run, self.params, self.data, row, variant=self.variant.value,
                                 n_landmarks=k, selection=selection)
        except EmolibError as exc:
            self.last_error = str(exc)
            self.status.value = f"<span style='color:#b00'>cannot explain: {exc}</span>"
            return None
        note = "" if k == int(self.k.value) else f" (no model trained at K={self.k.value}: the {k}-landmark one)"
        self.status.value = (f"P({res['emotion']}) = {float(res['probability']):.3f}; baselines: "
                             f"{', '.join(map(str, res['baseline_emotions']))}{note}")
        fig = sample_attribution_figure(res["attribution"], res["landmark_ids"], self.study.xy,
                                        self.study.landmark_ids,
                                        title=f"{self.data.sequence[row]}: attribution over frames")
        self._show(self.sample_out, fig, "sample")
        return res

    # ---- display --------------------------------------------------------------------------
    def _repr_mimebundle_(self, include=None, exclude=None, **kwargs) -> dict:
        """The widget's view plus the static HTML in one output (see the module docstring)."""
        bundle = dict(self.widget()._repr_mimebundle_(include=include, exclude=exclude, **kwargs) or {})
        bundle["text/html"] = self.static_html()
        bundle.setdefault("text/plain", f"Explorer({self.run.root})")
        return bundle


def _figure_html(fig) -> str:
    """A figure's HTML for a notebook output, relying on the plotly.js the notebook embeds.

    Built the way a displayed figure is (plotly's default renderers), so that the notebook
    renderer embeds plotly.js first, once per notebook, if no figure has done so yet. (A figure's
    own ``_repr_mimebundle_`` would re-embed the 4.6 MB library on every call.) Outside a
    notebook renderer the plain div is written, which needs plotly.js on the page.
    """
    import plotly.io as pio

    html = None
    build = getattr(pio.renderers, "_build_mime_bundle", None)
    if build is not None and "notebook" in str(pio.renderers.default):
        html = build(fig.to_plotly_json()).get("text/html")
    return html or pio.to_html(fig, include_plotlyjs=False, full_html=False)


def open_explorer(run: RunFolder, params: Params, **kwargs) -> Explorer:
    """Build the explorer over a run folder (see :class:`Explorer`).

    Args:
        run: the run folder.
        params: the run's parameters.
        **kwargs: ``study``, ``data`` as for :class:`Explorer`.

    Returns:
        The explorer; make it the last expression of a cell to display it.
    """
    return Explorer(run, params, **kwargs)


# Names before 0.2 (deprecated; see emolib._deprecated).
__getattr__ = _module_getattr(__name__, {"explanation_cache_path": "emolib.explain.samples"})
