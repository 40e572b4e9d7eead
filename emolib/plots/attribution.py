"""Figures of stage 03 (global Integrated Gradients): plotly, interactive in the static HTML too."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from emolib._deprecated import module_getattr as _module_getattr
from emolib.plots.face import face_layout, face_scatter


def alpha_curves_figure(curves: Mapping[str, Mapping[str, tuple[np.ndarray, np.ndarray]]],
                        title: str = "Model probability along the IG path (paper, Figure 2)") -> go.Figure:
    """Figure 2 for several emotions: one panel per explained emotion, one line per baseline.

    Args:
        curves: emotion -> baseline emotion -> ``(alphas, probabilities)`` (from
            :func:`emolib.attribution.alpha_curve`).
        title: figure title.

    Returns:
        The figure (a grid of panels, a shared legend of baselines).
    """
    emotions = list(curves)
    cols = min(3, max(1, len(emotions)))
    rows = -(-len(emotions) // cols)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[f"F = {e} model" for e in emotions],
                        shared_yaxes=True, horizontal_spacing=0.05, vertical_spacing=0.12)
    palette = ["#636efa", "#ef553b", "#00cc96", "#ab63fa", "#ffa15a", "#19d3f3", "#ff6692"]
    baselines = sorted({b for per in curves.values() for b in per})
    colour = {b: palette[i % len(palette)] for i, b in enumerate(baselines)}
    shown: set[str] = set()
    for i, e in enumerate(emotions):
        r, c = divmod(i, cols)
        for b, (alphas, probs) in curves[e].items():
            fig.add_trace(go.Scatter(x=alphas, y=probs, mode="lines", name=f"baseline: {b}",
                                     legendgroup=b, showlegend=b not in shown,
                                     line=dict(color=colour[b]),
                                     hovertemplate=f"{e} sample, {b} baseline<br>alpha %{{x:.2f}}"
                                                   f"<br>P({e}) %{{y:.3f}}<extra></extra>"),
                          row=r + 1, col=c + 1)
            shown.add(b)
    fig.update_yaxes(range=[-0.02, 1.02])
    fig.update_yaxes(title_text="P(emotion)", col=1)
    fig.update_xaxes(title_text="alpha", row=rows)
    fig.update_layout(title=title, height=300 * rows + 80, template="plotly_white")
    return fig


def gap_vs_steps_figure(table: pd.DataFrame, title: str = "Completeness gap against the number of steps m"
                        ) -> go.Figure:
    """Mean |gap| (sum(IG) - (F(x) - F(x'))) against m, one line per emotion, log-log axes.

    Args:
        table: columns emotion, steps, mean_abs_gap, mean_abs_delta
            (:func:`emolib.attribution.completeness_study`).
        title: figure title.

    Returns:
        The figure.
    """
    fig = go.Figure()
    for e, rows in table.groupby("emotion", sort=False):
        rows = rows.sort_values("steps")
        fig.add_trace(go.Scatter(x=rows["steps"], y=rows["mean_abs_gap"], mode="lines+markers", name=str(e),
                                 customdata=rows["mean_abs_delta"],
                                 hovertemplate="m=%{x}<br>mean |gap| %{y:.2e}<br>mean |F(x)-F(x')| "
                                               "%{customdata:.3f}<extra>" + str(e) + "</extra>"))
    steps = sorted(set(table["steps"].astype(int)))
    fig.update_xaxes(type="log", title="steps m", tickvals=steps, ticktext=[str(m) for m in steps])
    fig.update_yaxes(type="log", title="mean |sum(IG) - (F(x) - F(x'))|", dtick=1, exponentformat="power")
    fig.update_layout(title=title, height=420, template="plotly_white")
    return fig


def importance_faces_figure(xy: np.ndarray, importance: Mapping[str, np.ndarray], landmark_ids: Sequence[int],
                            top_k: int | None = 32,
                            title: str = "Global landmark importance (mean |IG| per landmark)") -> go.Figure:
    """Each emotion's importance drawn on the mean face, a menu to switch emotion.

    Args:
        xy: (L, 2) mean landmark positions (``emolib.plots.face.mean_face``), rows in the order of
            ``landmark_ids``.
        importance: emotion -> (L,) global importance, in the order of ``landmark_ids``.
        landmark_ids: (L,) MediaPipe ids.
        top_k: ring the top-K landmarks of the shown emotion (None: no rings).
        title: figure title (the emotion is appended).

    Returns:
        The figure (the first emotion shown; the menu switches).
    """
    ids = np.asarray(landmark_ids, dtype=int)
    fig = go.Figure()
    spans = []
    for i, (e, values) in enumerate(importance.items()):
        values = np.asarray(values, dtype=float)
        highlight = ids[np.argsort(-values, kind="stable")[:top_k]] if top_k else None
        traces = face_scatter(xy, values, ids, highlight=highlight, name=e, visible=i == 0)
        start = len(fig.data)
        fig.add_traces(traces)
        spans.append((e, start, len(fig.data)))
    n = len(fig.data)
    buttons = []
    for e, start, stop in spans:
        visible = [start <= j < stop for j in range(n)]
        label = f"{title}: {e}" + (f" (top {top_k} ringed)" if top_k else "")
        buttons.append(dict(label=e, method="update", args=[{"visible": visible}, {"title": label}]))
    first = spans[0][0] if spans else ""
    face_layout(fig, f"{title}: {first}" + (f" (top {top_k} ringed)" if top_k else ""), height=600)
    fig.update_layout(updatemenus=[dict(buttons=buttons, direction="down", x=1.0, xanchor="right", y=1.08,
                                        yanchor="bottom", showactive=True)])
    return fig


def region_heatmap_figure(table: pd.DataFrame, title: str = "Mean landmark importance per facial region"
                             ) -> go.Figure:
    """Heatmap, emotions x regions, each row scaled to its own maximum (so emotions compare).

    Args:
        table: index emotions, columns regions, values mean importance
            (:func:`emolib.regions.region_importance` with ``wide=True``).
        title: figure title.

    Returns:
        The figure (hover shows the unscaled values).
    """
    scaled = table.div(table.max(axis=1).replace(0, np.nan), axis=0).fillna(0.0)
    fig = go.Figure(go.Heatmap(z=scaled.to_numpy(), x=list(table.columns), y=list(table.index),
                               customdata=table.to_numpy(), colorscale="Viridis",
                               colorbar=dict(title="share of<br>row max"),
                               hovertemplate="%{y}, %{x}<br>mean importance %{customdata:.3g}"
                                             "<br>%{z:.2f} of the row's max<extra></extra>"))
    fig.update_layout(title=title, height=380, template="plotly_white")
    return fig


def baseline_agreement_figure(matrices: Mapping[str, np.ndarray], baselines: Mapping[str, Sequence[str]],
                              title: str = "Agreement of the five baselines (Spearman rank correlation)"
                              ) -> go.Figure:
    """One (B, B) Spearman heatmap per emotion, a menu to switch emotion.

    Args:
        matrices: emotion -> (B, B) correlation matrix of its per-baseline masks.
        baselines: emotion -> the B baseline emotions, in matrix order.
        title: figure title (the emotion is appended).

    Returns:
        The figure (the first emotion shown; the menu switches).
    """
    fig = go.Figure()
    emotions = list(matrices)
    for i, e in enumerate(emotions):
        names = list(baselines[e])
        fig.add_trace(go.Heatmap(z=matrices[e], x=names, y=names, zmin=-1, zmax=1, colorscale="RdBu",
                                 reversescale=True, visible=i == 0, texttemplate="%{z:.2f}",
                                 colorbar=dict(title="Spearman"),
                                 hovertemplate="%{y} vs %{x}: %{z:.3f}<extra></extra>"))
    buttons = [dict(label=e, method="update",
                    args=[{"visible": [j == i for j in range(len(emotions))]}, {"title": f"{title}<br>{e} model"}])
               for i, e in enumerate(emotions)]
    fig.update_layout(title=f"{title}<br>{emotions[0]} model" if emotions else title, height=520, width=680,
                      template="plotly_white", margin=dict(t=130),
                      updatemenus=[dict(buttons=buttons, direction="down", x=1.0, xanchor="right", y=1.02,
                                        yanchor="bottom")])
    fig.update_yaxes(autorange="reversed")
    return fig


def planted_recovery_figure(table: pd.DataFrame, top: int = 64,
                            title: str = "Planted landmarks recovered by the ranking") -> go.Figure:
    """Grouped bars per emotion: hits in the top |planted| and in the top ``top``, beside chance
    (and beside the model-free reference ranking when the table has it).

    Args:
        table: from :func:`emolib.attribution.planted_recovery`.
        top: the second cut-off of that table.
        title: figure title.

    Returns:
        The figure.
    """
    fig = go.Figure()
    x = table["emotion"]
    fig.add_trace(go.Bar(x=x, y=table["hits_top_planted"], name="hits in top |planted|"))
    fig.add_trace(go.Bar(x=x, y=table["chance_top_planted"], name="chance, top |planted|", opacity=0.5))
    if "reference_hits_top_planted" in table:
        fig.add_trace(go.Bar(x=x, y=table["reference_hits_top_planted"], opacity=0.7,
                             name="measured motion alone (no model), top |planted|"))
    fig.add_trace(go.Bar(x=x, y=table[f"hits_top{top}"], name=f"hits in top {top}"))
    fig.add_trace(go.Bar(x=x, y=table[f"chance_top{top}"], name=f"chance, top {top}", opacity=0.5))
    fig.add_trace(go.Scatter(x=x, y=table["planted"], mode="markers", name="planted",
                             marker=dict(symbol="line-ew-open", size=30, line=dict(width=3, color="black"))))
    fig.update_layout(title=title, barmode="group", height=420, template="plotly_white",
                      yaxis_title="landmarks")
    return fig


# Names before 0.2 (deprecated; see emolib._deprecated).
__getattr__ = _module_getattr(__name__, {
    "region_importance_figure": "emolib.plots.attribution:region_heatmap_figure",
    "save_figure": "emolib.report.html",
})
