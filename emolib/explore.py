"""A live explorer over a finished run folder (JupyterLab, ipywidgets), with a static twin.

Controls: emotion, K and variant. Panels: the face with the emotion's top-K landmarks ringed and
coloured by importance; accuracy against K (IG and random selection); the regions the top K
fall in; and one video's attribution over its frames, computed on demand (IG of that sample
under its emotion's model, against the typical video of each other emotion, as stage 03 does)
and cached in ``cache/explore/``.

Displayed as ONE output whose mimebundle holds both the widget view and a static plotly HTML
(Figure 3 with its K slider and emotion menu, accuracy against K, regions): JupyterLab shows the
live widget; the HTML report, where no kernel runs, keeps the static figures (the runner drops
the dead widget view from outputs that also carry ``text/html``).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from emolib import io
from emolib.config import STAGE_SECTIONS, Params
from emolib.errors import DataError, EmolibError
from emolib.landmarks import LandmarkSet
from emolib.run_folder import RunFolder

WIDGET_MIME = "application/vnd.jupyter.widget-view+json"


def _typical_baselines(run: RunFolder, variant: str = "t-emo") -> dict[str, Any]:
    """Stage 03's typical baseline of each emotion (:class:`emolib.attribution.TypicalBaseline`:
    one real video, or the centroid of the emotion's training samples)."""
    from emolib.attribution import load_typical, typical_paths

    if variant != "t-emo" and not typical_paths(run, variant)[0].is_file():
        variant = "t-emo"  # R-EMO explained against T-EMO's typical videos
    path = typical_paths(run, variant)[0]
    if not path.is_file():
        raise EmolibError(f"{path}: no typical videos (stage 03 writes them); cannot explain a sample")
    try:
        return load_typical(run, variant)
    except DataError as exc:
        raise EmolibError(f"{exc}; cannot explain a sample") from None


def explanation_cache_path(run: RunFolder, params: Params, *, sample: int, variant: str, n_landmarks: int,
                           selection: str, seed: int, baselines: dict[str, int]) -> Path:
    """Where one sample's explanation is cached: keyed by everything that changes its numbers.

    Args:
        run: the run folder.
        params: the run's parameters (the sections stage 04's models depend on, and ``ig``).
        sample: the row of data/landmarks.npz.
        variant: ``t-emo`` or ``r-emo``.
        n_landmarks: K of the model explained.
        selection: its selection rule (``all`` for the full set).
        seed: its training seed.
        baselines: emotion -> what identifies its typical baseline (the row of a real video, or
            a centroid's :attr:`~emolib.attribution.TypicalBaseline.key`).

    Returns:
        ``cache/explore/<key>.npz``.
    """
    dumped = params.model_dump(mode="json")
    chosen = {k: dumped[k] for k in STAGE_SECTIONS["04_pruning"]}
    chosen["ig"] = {k: v for k, v in chosen["ig"].items() if k != "batch_size"}  # sums do not depend on it
    chosen["_what"] = dict(sample=int(sample), variant=variant, n_landmarks=int(n_landmarks),
                           selection=selection, seed=int(seed), baselines=baselines)
    key = hashlib.sha256(json.dumps(chosen, sort_keys=True).encode()).hexdigest()[:20]
    return run.cache / "explore" / f"{key}.npz"


def explain_sample(run: RunFolder, params: Params, data: LandmarkSet, sample: int, *, variant: str = "t-emo",
                   n_landmarks: Optional[int] = None, selection: Optional[str] = None,
                   seed: Optional[int] = None, training_api: Any = None) -> dict[str, np.ndarray]:
    """IG of one video under its own emotion's model, per frame and landmark (cached on disk).

    The baselines are stage 03's typical videos of the other emotions (with ``ig.typical:
    centroid``, each the mean input of that emotion's training samples under the explained
    model); the per-frame |IG| (summed over x and y) is averaged over them, as the global
    procedure averages its masks.

    Args:
        run: the run folder.
        params: the run's parameters (``ig.steps``, ``ig.rule``, ``ig.batch_size``).
        data: the full landmark set.
        sample: the row of ``data`` to explain.
        variant: ``t-emo`` or ``r-emo``.
        n_landmarks: K of the model (default: all landmarks).
        selection: the model's selection rule (default: ``all`` for the full set, ``ig`` else).
        seed: the training seed (default: ``params.ig_seed``).
        training_api: the module providing ``load_trained`` and ``model_inputs`` (default
            :mod:`emolib.training`).

    Returns:
        attribution (P, K) mean |IG| per frame and landmark; landmark_ids (K,); probability (F(x)
        of the sample's emotion); baseline_emotions; emotion.

    Raises:
        DataError: ``sample`` is not a row of ``data``.
        EmolibError: the model or stage 03's typical videos are missing.
    """
    from emolib.attribution import integrated_gradients, typical_inputs

    if not 0 <= int(sample) < len(data):
        raise DataError(f"sample {sample} is not a row of the landmark set (it has {len(data)})")
    sample = int(sample)
    emotion = str(data.emotion[sample])
    k = int(n_landmarks or data.n_landmarks)
    selection = selection or ("all" if k == data.n_landmarks else "ig")
    seed = params.ig_seed if seed is None else int(seed)
    typical = {e: b for e, b in _typical_baselines(run, variant).items() if e != emotion and e in params.emotions}
    if not typical:
        raise EmolibError(f"no typical video of another emotion than {emotion!r} to use as a baseline")
    path = explanation_cache_path(run, params, sample=sample, variant=variant, n_landmarks=k,
                                  selection=selection, seed=seed,
                                  baselines={e: b.key for e, b in typical.items()})
    if path.is_file():
        try:
            with np.load(path, allow_pickle=False) as f:
                return {name: f[name] for name in f.files}
        except Exception:  # an unreadable cache is recomputed (and rewritten atomically)
            pass
    if training_api is None:
        from emolib import training as training_api
    trained = training_api.load_trained(run, variant, emotion, k, selection, seed)
    x = training_api.model_inputs(data.subset(np.array([sample])), trained)
    bases = typical_inputs(list(typical.values()), data, trained, training_api)
    inputs = np.repeat(np.asarray(x), len(bases), axis=0)
    result = integrated_gradients(trained.model, inputs, bases, steps=params.ig.steps, target=1,
                                  batch_size=params.ig.batch_size, rule=params.ig.rule, engine=params.ig.engine)
    attr = np.abs(np.asarray(result.attributions))
    if attr.ndim == 5:  # (B, P, 2, K, 1): drop the channel axis
        attr = attr[..., 0]
    per_frame = attr.sum(axis=2).mean(axis=0)  # sum over x, y; mean over the baselines
    out = {"attribution": per_frame, "landmark_ids": np.asarray(trained.landmark_ids, dtype=np.int64),
           "probability": np.array(float(result.f_inputs[0])), "baseline_emotions": np.array(list(typical)),
           "emotion": np.array(emotion)}
    io.write_npz(path, **out)
    return out


class Explorer:
    """The explorer over one run folder; display it (last expression of a cell) to use it.

    Args:
        run: the run folder (stages 01 to 04 finished).
        params: the run's parameters.
        study: the loaded study (default: :func:`emolib.results.load_study`).
        data: the landmark set, for the per-video view (default: read on first use).
        training_api: the module loading trained models (default :mod:`emolib.training`).

    Raises:
        EmolibError: an input of stage 05 is missing (see :func:`emolib.results.load_study`).
    """

    def __init__(self, run: RunFolder, params: Params, *, study: Any = None, data: Optional[LandmarkSet] = None,
                 training_api: Any = None):
        from emolib.results import accuracy_summary, load_study, region_importance

        self.run, self.params = run, params
        self.study = study or load_study(run, params)
        self.summary = accuracy_summary(self.study.runs)
        self.ranking = self.study.ranking_ids()
        self.k_values = sorted({self.study.full_k, *params.pruning.k,
                                *[k for k in params.report.top_k_figure if k <= self.study.full_k]}, reverse=True)
        self.regions = region_importance(self.study.ranking, self.k_values)
        self._data = data
        self._training_api = training_api
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
            from emolib.landmarks import load_landmarks

            self._data = load_landmarks(self.run.landmarks)
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
        self.variant = w.ToggleButtons(options=[("T-EMO", "t-emo"), ("R-EMO", "r-emo")], value="t-emo",
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
        return self.study.full_k, "all"

    def show_sample(self) -> Optional[dict]:
        """Explain the selected video (cached) and draw its attribution over frames."""
        from emolib.plots.results import sample_attribution_figure

        k, selection = self.model_for(int(self.k.value))
        row = self.sample.value
        self.status.value = f"computing IG of {self.data.sequence[row]} under the {self.variant.value} {k}-landmark model..."
        try:
            res = explain_sample(self.run, self.params, self.data, row, variant=self.variant.value,
                                 n_landmarks=k, selection=selection, training_api=self._training_api)
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
