"""Figures of stages 04 and 05: accuracy against K, Figure 3 (top-K landmarks on the face),
importance per region, cost against K, paired differences, one sample's attribution.

Every interactive control is plotly's own (sliders, updatemenus), so the figures keep working in
the static HTML report, where no kernel runs.
"""
from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from emolib._deprecated import module_getattr as _module_getattr
from emolib.plots import VARIANT_COLOURS
from emolib.plots.face import face_layout, face_scatter
from emolib.regions import REGIONS
from emolib.vocab import REMOVAL_SELECTIONS, VARIANT_LABELS

SELECTION_DASH = {"ig": "solid", "random": "dot"}
SELECTION_LABELS = {"ig": "IG top-K", "random": "random K"}


def _grid(n: int, cols: int = 3) -> tuple[int, int]:
    cols = min(cols, n)
    return math.ceil(n / cols), cols


def accuracy_vs_k_figure(summary: pd.DataFrame, emotions: Sequence[str], *, full_k: int,
                         paper: Optional[pd.DataFrame] = None, metric_label: str = "accuracy",
                         title: str = "Accuracy against the number of landmarks K") -> go.Figure:
    """One panel per emotion: mean ± std over seeds against K, per variant and selection rule.

    Every selection's line starts at the all-landmark model (K = ``full_k``), so a line going
    up to the left means pruning helped.

    Args:
        summary: from :func:`emolib.results.accuracy_summary` (variant, emotion, n_landmarks,
            selection, mean, std).
        emotions: the panels, in order.
        full_k: the number of landmarks of the full set.
        paper: the paper's values (variant, emotion, n_landmarks, paper_mean, paper_std), drawn
            grey when given (CK+ only).
        metric_label: the y axis title.
        title: the figure title.

    Returns:
        The figure.
    """
    rows, cols = _grid(len(emotions))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[e.capitalize() for e in emotions],
                        shared_xaxes=True, vertical_spacing=0.12, horizontal_spacing=0.06)
    # ROAR's rules remove K (their rows count the L - K kept): not a point on these curves.
    selections = [s for s in summary["selection"].unique() if s != "all" and s not in REMOVAL_SELECTIONS]
    ks = sorted(set(summary.loc[~summary["selection"].isin(REMOVAL_SELECTIONS), "n_landmarks"]) | {full_k})
    shown: set[str] = set()
    for i, emotion in enumerate(emotions):
        row, col = i // cols + 1, i % cols + 1
        for variant in [v for v in VARIANT_COLOURS if v in set(summary["variant"])]:
            part = summary[(summary["variant"] == variant) & (summary["emotion"] == emotion)]
            full = part[part["selection"] == "all"]
            for selection in selections:
                line = pd.concat([full, part[part["selection"] == selection]]).sort_values("n_landmarks")
                if line.empty:
                    continue
                name = f"{VARIANT_LABELS.get(variant, variant)}, {SELECTION_LABELS.get(selection, selection)}"
                fig.add_trace(go.Scatter(
                    x=line["n_landmarks"], y=line["mean"], mode="lines+markers", name=name, legendgroup=name,
                    showlegend=name not in shown,
                    error_y=dict(type="data", array=line["std"].fillna(0.0), visible=True, thickness=1),
                    line=dict(color=VARIANT_COLOURS.get(variant), dash=SELECTION_DASH.get(selection, "dash")),
                    hovertemplate=f"{name}<br>K=%{{x}}<br>{metric_label} %{{y:.3f}}<extra>{emotion}</extra>"),
                    row=row, col=col)
                shown.add(name)
            if paper is not None:
                ref = paper[(paper["variant"] == variant) & (paper["emotion"] == emotion)].sort_values("n_landmarks")
                name = f"{VARIANT_LABELS.get(variant, variant)}, paper (CK+)"
                fig.add_trace(go.Scatter(
                    x=ref["n_landmarks"], y=ref["paper_mean"], mode="markers", name=name, legendgroup=name,
                    showlegend=name not in shown,
                    marker=dict(symbol="x", color=VARIANT_COLOURS.get(variant), opacity=0.5),
                    hovertemplate=f"{name}<br>K=%{{x}}<br>%{{y:.3f}}<extra>{emotion}</extra>"), row=row, col=col)
                shown.add(name)
    fig.update_xaxes(type="log", tickvals=ks, ticktext=[str(k) for k in ks], autorange="reversed")
    fig.update_yaxes(title_text=metric_label, col=1)
    fig.update_layout(title=title, template="plotly_white", height=330 * rows,
                      legend=dict(orientation="h", y=-0.12))
    return fig


def _visible_mask(n_traces: int, on: Sequence[int]) -> list[bool]:
    mask = [False] * n_traces
    for i in on:
        mask[i] = True
    return mask


def top_k_faces_figure(xy: np.ndarray, landmark_ids: Sequence[int], ranking_ids: Mapping[str, Sequence[int]],
                       importance: Mapping[str, np.ndarray], k_values: Sequence[int], emotions: Sequence[str],
                       *, title: str = "Figure 3: the top-K landmarks of each emotion",
                       height: int = 620) -> go.Figure:
    """Figure 3: each emotion's top-K landmarks ringed on the mean face, coloured by importance.

    A dropdown menu picks the emotion and a slider picks K. Both are plotly's own controls, so
    they keep working in a static HTML file: each emotion has its own slider, and choosing an
    emotion swaps the slider in (plotly sliders cannot read the menu's state otherwise).

    Args:
        xy: (L, 2) mean landmark positions (image coordinates).
        landmark_ids: (L,) the ids of the rows of ``xy``.
        ranking_ids: emotion -> ids, most important first.
        importance: emotion -> (L,) importance aligned with ``landmark_ids``.
        k_values: the K steps of the slider (largest first reads like the paper).
        emotions: the menu's entries, in order.
        title: the figure title.
        height: pixels.

    Returns:
        The figure; ``layout.updatemenus[0]`` is the emotion menu, ``layout.sliders[0]`` the K
        slider of the emotion shown first.
    """
    ids = np.asarray(landmark_ids, dtype=int)
    k_values = [int(k) for k in k_values]
    traces: list[go.Scatter] = []
    dots_index: dict[str, int] = {}
    ring_index: dict[tuple[str, int], int] = {}
    for e_pos, emotion in enumerate(emotions):
        dots = face_scatter(xy, np.asarray(importance[emotion], dtype=float), ids, name=f"{emotion}: importance",
                            visible=e_pos == 0)[0]
        dots_index[emotion] = len(traces)
        traces.append(dots)
        for k_pos, k in enumerate(k_values):
            top = np.asarray(ranking_ids[emotion][:k], dtype=int)
            ring = face_scatter(xy, None, ids, highlight=top, visible=e_pos == 0 and k_pos == 0)[1]
            ring.name = f"{emotion}: top {k}"
            ring_index[(emotion, k)] = len(traces)
            traces.append(ring)
    n = len(traces)

    def label(emotion: str, k: int) -> str:
        return f"{title} ({emotion}, K = {k})"

    def slider_for(emotion: str) -> dict:
        steps = [dict(method="update", label=str(k),
                      args=[{"visible": _visible_mask(n, [dots_index[emotion], ring_index[(emotion, k)]])},
                            {"title.text": label(emotion, k)}]) for k in k_values]
        return dict(active=0, steps=steps, currentvalue=dict(prefix="K = "), pad=dict(t=30), x=0.05, len=0.9,
                    name=emotion)

    buttons = [dict(method="update", label=emotion.capitalize(),
                    args=[{"visible": _visible_mask(n, [dots_index[emotion], ring_index[(emotion, k_values[0])]])},
                          {"sliders": [slider_for(emotion)], "title.text": label(emotion, k_values[0])}])
               for emotion in emotions]
    fig = go.Figure(traces)
    face_layout(fig, label(emotions[0], k_values[0]), height=height)
    fig.update_layout(
        updatemenus=[dict(type="dropdown", buttons=buttons, active=0, x=1.0, xanchor="right", y=1.02,
                          yanchor="bottom", showactive=True)],
        sliders=[slider_for(emotions[0])], margin=dict(t=110))
    return fig


def region_importance_figure(regions: pd.DataFrame, emotions: Sequence[str],
                             k_values: Sequence[int] = ()) -> go.Figure:
    """Bars per facial region and emotion; a menu switches the measure.

    Measures: the region's share of the emotion's total importance, the mean importance of its
    landmarks, and for each K the share of the top-K landmarks lying in the region.

    Args:
        regions: from :func:`emolib.results.region_importance`.
        emotions: the bar groups.
        k_values: the K whose ``top<K>_share`` columns to offer.

    Returns:
        The figure.
    """
    measures = [("importance_share", "share of importance"), ("mean_importance", "mean importance")]
    measures += [(f"top{k}_share", f"share of the top {k}") for k in k_values if f"top{k}_share" in regions]
    region_order = [r for r in REGIONS if r in set(regions["region"])]
    fig = go.Figure()
    for m_pos, (col, _) in enumerate(measures):
        for emotion in emotions:
            part = regions[regions["emotion"] == emotion].set_index("region").reindex(region_order)
            fig.add_trace(go.Bar(x=region_order, y=part[col], name=emotion.capitalize(), visible=m_pos == 0,
                                 legendgroup=emotion, showlegend=True,
                                 hovertemplate=f"{emotion}<br>%{{x}}<br>%{{y:.3f}}<extra></extra>"))
    per = len(emotions)
    buttons = []
    for m_pos, (_, label) in enumerate(measures):
        vis = [m_pos * per <= i < (m_pos + 1) * per for i in range(len(fig.data))]
        buttons.append(dict(method="update", label=label, args=[{"visible": vis}, {"yaxis.title.text": label}]))
    fig.update_layout(barmode="group", template="plotly_white", title="Importance per facial region",
                      yaxis_title=measures[0][1], height=460,
                      updatemenus=[dict(type="dropdown", buttons=buttons, x=1.0, xanchor="right", y=1.15)])
    return fig


def cost_figure(cost: pd.DataFrame, *, full_k: int) -> go.Figure:
    """Training cost against K: seconds per epoch, whole training time, trainable parameters.

    Args:
        cost: from :func:`emolib.results.cost_summary`.
        full_k: the number of landmarks of the full set.

    Returns:
        The figure (three panels, a line per variant; IG-selected and all-landmark models).
    """
    panels = [("seconds_per_epoch", "seconds per epoch"), ("train_seconds", "training time (s)"),
              ("trainable_params", "trainable parameters")]
    fig = make_subplots(rows=1, cols=3, subplot_titles=[p[1] for p in panels], horizontal_spacing=0.08)
    part = cost[cost["selection"].isin(["all", "ig"])]
    ks = sorted(set(part["n_landmarks"]) | {full_k})
    for c, (col, label) in enumerate(panels, start=1):
        for variant in [v for v in VARIANT_COLOURS if v in set(part["variant"])]:
            line = part[part["variant"] == variant].sort_values("n_landmarks")
            fig.add_trace(go.Scatter(x=line["n_landmarks"], y=line[col], mode="lines+markers",
                                     name=VARIANT_LABELS[variant], legendgroup=variant, showlegend=c == 1,
                                     line=dict(color=VARIANT_COLOURS[variant]),
                                     hovertemplate=f"{VARIANT_LABELS[variant]}<br>K=%{{x}}<br>{label} "
                                                   "%{y:.4g}<extra></extra>"),
                          row=1, col=c)
    fig.update_xaxes(type="log", tickvals=ks, ticktext=[str(k) for k in ks], autorange="reversed", title_text="K")
    fig.update_layout(template="plotly_white", height=380, title="Cost against K (mean over emotions and seeds)")
    return fig


def paired_differences_figure(statistics: pd.DataFrame, emotions: Sequence[str]) -> go.Figure:
    """Heatmaps of the mean paired difference (emotion x K); a menu picks comparison and variant.

    Cell text: the mean difference, Cohen's d_z and the primary test's p-value.

    Args:
        statistics: from :func:`emolib.results.study_statistics`.
        emotions: the rows, in order.

    Returns:
        The figure.
    """
    fig = go.Figure()
    labels = []
    groups = statistics.groupby(["comparison", "selection", "variant"], sort=False)
    for (comparison, selection, variant), part in groups:
        ks = sorted(part["n_landmarks"].unique(), reverse=True)
        z = np.full((len(emotions), len(ks)), np.nan)
        text = np.full(z.shape, "", dtype=object)
        for _, r in part.iterrows():
            if r["emotion"] not in emotions:
                continue
            i, j = list(emotions).index(r["emotion"]), ks.index(r["n_landmarks"])
            z[i, j] = r["mean_difference"]
            p = "n/a" if pd.isna(r["p_value"]) else f"{r['p_value']:.3f}"
            d = "n/a" if pd.isna(r["cohens_dz"]) else f"{r['cohens_dz']:.2f}"
            text[i, j] = f"{r['mean_difference']:+.3f}<br>d_z {d}<br>p {p}"
        what = (f"{SELECTION_LABELS.get(selection, selection)} minus all landmarks" if comparison == "k_vs_all"
                else f"{SELECTION_LABELS.get(selection, selection)} minus random K")
        labels.append(f"{VARIANT_LABELS.get(variant, variant)}: {what}")
        bound = float(np.nanmax(np.abs(z))) if np.isfinite(z).any() else 1.0
        fig.add_trace(go.Heatmap(z=z, x=[str(k) for k in ks], y=[e.capitalize() for e in emotions], text=text,
                                 texttemplate="%{text}", colorscale="RdBu", zmid=0, zmin=-bound, zmax=bound,
                                 visible=len(labels) == 1, colorbar=dict(title="mean diff."),
                                 hovertemplate="%{y}, K=%{x}<br>%{text}<extra></extra>"))
    buttons = [dict(method="update", label=lab,
                    args=[{"visible": [j == i for j in range(len(labels))]},
                          {"title.text": f"Paired differences: {lab}"}])
               for i, lab in enumerate(labels)]
    fig.update_yaxes(autorange="reversed")  # first emotion on top, as in the tables
    fig.update_layout(template="plotly_white", height=160 + 70 * len(emotions), xaxis_title="K",
                      xaxis_type="category",
                      title=f"Paired differences: {labels[0]}" if labels else "Paired differences",
                      updatemenus=([dict(type="dropdown", buttons=buttons, x=1.0, xanchor="right", y=1.18)]
                                   if buttons else []),
                      margin=dict(t=110))
    return fig


def ground_truth_figure(recovery: pd.DataFrame, emotions: Sequence[str]) -> go.Figure:
    """Precision of the ranking's top K against the landmarks the demo generator moves.

    Args:
        recovery: from :func:`emolib.results.ground_truth_recovery`.
        emotions: the lines.

    Returns:
        The figure (the chance level dotted).
    """
    fig = go.Figure()
    for emotion in emotions:
        part = recovery[recovery["emotion"] == emotion].sort_values("n_landmarks")
        fig.add_trace(go.Scatter(x=part["n_landmarks"], y=part["precision"], mode="lines+markers",
                                 name=emotion.capitalize()))
    if len(recovery):
        chance = recovery.groupby("n_landmarks")["chance_precision"].mean().sort_index()
        fig.add_trace(go.Scatter(x=chance.index, y=chance.values, mode="lines", name="chance",
                                 line=dict(color="grey", dash="dot")))
    ks = sorted(recovery["n_landmarks"].unique()) if len(recovery) else []
    fig.update_xaxes(type="log", tickvals=ks, ticktext=[str(k) for k in ks], autorange="reversed", title_text="K")
    fig.update_layout(template="plotly_white", height=380, yaxis_title="precision of the top K",
                      title="Does the ranking find the landmarks each emotion moves? (demo ground truth)")
    return fig


def sample_attribution_figure(attribution: np.ndarray, landmark_ids: Sequence[int], xy: np.ndarray,
                              xy_ids: Sequence[int], *, top: int = 30, title: str = "") -> go.Figure:
    """One video's attribution: |IG| per frame for its most attributed landmarks, and on the face.

    Args:
        attribution: (P, L) |IG| per frame and landmark (summed over x and y).
        landmark_ids: (L,) ids of its columns.
        xy: (L_all, 2) mean positions of every landmark, for the face panel.
        xy_ids: (L_all,) ids of the rows of ``xy``.
        top: how many landmarks the heatmap shows.
        title: the figure title.

    Returns:
        The figure: a frames x landmarks heatmap (left), the face coloured by the landmarks'
        total attribution, the sample's landmarks ringed (right).
    """
    attribution = np.asarray(attribution, dtype=float)
    ids = np.asarray(landmark_ids, dtype=int)
    total = attribution.sum(axis=0)
    order = np.argsort(total)[::-1][:top]
    fig = make_subplots(rows=1, cols=2, column_widths=[0.55, 0.45], horizontal_spacing=0.08,
                        subplot_titles=[f"|IG| per frame, top {len(order)} landmarks", "total |IG| on the face"])
    fig.add_trace(go.Heatmap(z=attribution[:, order].T, x=np.arange(1, attribution.shape[0] + 1),
                             y=[f"{i}" for i in ids[order]], colorscale="Viridis", showscale=False,
                             hovertemplate="frame %{x}<br>landmark %{y}<br>|IG| %{z:.3g}<extra></extra>"),
                  row=1, col=1)
    xy_ids = np.asarray(xy_ids, dtype=int)
    values = np.zeros(len(xy_ids))
    pos = {int(v): i for i, v in enumerate(xy_ids)}
    for i, v in zip(ids, total):
        if int(i) in pos:
            values[pos[int(i)]] = v
    for trace in face_scatter(xy, values, xy_ids, highlight=ids, showscale=True):
        fig.add_trace(trace, row=1, col=2)
    fig.update_yaxes(title_text="landmark", type="category", autorange="reversed", row=1, col=1)
    fig.update_xaxes(title_text="frame", row=1, col=1)
    fig.update_xaxes(visible=False, scaleanchor="y2", scaleratio=1, row=1, col=2)
    fig.update_yaxes(visible=False, autorange="reversed", row=1, col=2)
    fig.update_layout(template="plotly_white", height=520, title=title, showlegend=False)
    return fig


# Names before 0.2 (deprecated; see emolib._deprecated).
__getattr__ = _module_getattr(__name__, {
    "figures_page": "emolib.report.html",
})
