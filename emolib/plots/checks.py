"""Figures of the faithfulness and stability checks (stage 03 computes them, stage 05 reports):
deletion and insertion curves, the randomisation check, the stability of the ranking, the forest
of paired differences per emotion, and one video's attribution frame by frame as an animation."""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from emolib.plots.face import face_layout

_ORDER_STYLE = {"ig": dict(color="#1f77b4", dash="solid"), "random": dict(color="grey", dash="dot")}
_OUTCOME_COLOUR = {"supports": "#2ca02c", "against": "#d62728", "inconclusive": "grey", "keeps": "#1f77b4",
                   "loses": "#d62728", "gains": "#2ca02c"}


def _panels(n: int, cols: int = 3) -> tuple[int, int]:
    cols = min(cols, max(1, n))
    return -(-n // cols), cols


def deletion_curves_figure(curves: pd.DataFrame, title: str = "Deletion and insertion curves (mean over seeds)"
                           ) -> go.Figure:
    """One panel per emotion: the model's probability as landmarks are replaced, in IG's order
    (solid) and in random orders (dotted); deletion in one colour family, insertion in another.

    Args:
        curves: ``results/deletion_curves.csv``.
        title: the title.
    """
    emotions = list(dict.fromkeys(curves["emotion"]))
    rows, cols = _panels(len(emotions))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=[e.capitalize() for e in emotions],
                        shared_yaxes=True, vertical_spacing=0.14, horizontal_spacing=0.05)
    mean = curves.groupby(["emotion", "curve", "order", "share"], as_index=False)["probability"].mean()
    shown: set[str] = set()
    for i, e in enumerate(emotions):
        r, c = divmod(i, cols)
        for (curve, order), part in mean[mean["emotion"] == e].groupby(["curve", "order"]):
            name = f"{curve}, {'IG order' if order == 'ig' else 'random orders'}"
            style = dict(_ORDER_STYLE[order])
            if curve == "insertion":
                style["color"] = "#ff7f0e" if order == "ig" else "#bbbbbb"
            fig.add_trace(go.Scatter(x=part["share"], y=part["probability"], mode="lines", name=name,
                                     legendgroup=name, showlegend=name not in shown, line=style),
                          row=r + 1, col=c + 1)
            shown.add(name)
    fig.update_xaxes(title_text="share of landmarks replaced", range=[0, 1])
    fig.update_yaxes(title_text="probability", col=1)
    fig.update_layout(title=title, template="plotly_white", height=280 * rows + 80)
    return fig


def randomisation_figure(table: pd.DataFrame, title: str = "Randomisation check: rank correlation with the "
                         "trained model's ranking") -> go.Figure:
    """Spearman's rho of each cascading level's ranking with the trained model's, one line per
    emotion (mean over seeds, bars: min and max); level k re-draws the k top layers.

    Args:
        table: ``results/randomisation.csv``.
        title: the title.
    """
    fig = go.Figure()
    layers = table.drop_duplicates("level").sort_values("level")
    labels = [f"{int(r.level)}: +{r.layer}" for r in layers.itertuples()]
    for e, part in table.groupby("emotion", sort=False):
        g = part.groupby("level")["spearman_rho"]
        m, lo, hi = g.mean(), g.min(), g.max()
        fig.add_trace(go.Scatter(x=labels[:len(m)], y=m.to_numpy(), mode="lines+markers", name=e,
                                 error_y=dict(type="data", symmetric=False, array=(hi - m).to_numpy(),
                                              arrayminus=(m - lo).to_numpy())))
    fig.add_hline(y=0, line=dict(color="black", width=1))
    fig.update_layout(title=title, template="plotly_white", height=420, yaxis=dict(title="Spearman ρ", range=[-1, 1]),
                      xaxis_title="layers re-initialised (from the top)")
    return fig


def stability_figure(table: pd.DataFrame, measure: str = "kendall_tau",
                     title: str = "Stability of the ranking (bootstrap 95% intervals)") -> go.Figure:
    """One row per compared pair (seeds, baseline strategies, steps), one marker per emotion with
    its bootstrap interval.

    Args:
        table: ``results/stability.csv``.
        measure: ``kendall_tau``, ``spearman_rho`` or ``top_k_overlap``.
        title: the title.
    """
    fig = go.Figure()
    t = table.assign(pair=table["factor"] + ": " + table["a"].astype(str) + " vs " + table["b"].astype(str))
    for e, part in t.groupby("emotion", sort=False):
        fig.add_trace(go.Scatter(x=part[measure], y=part["pair"], mode="markers", name=e,
                                 error_x=dict(type="data", symmetric=False,
                                              array=(part[f"{measure}_high"] - part[measure]).clip(lower=0),
                                              arrayminus=(part[measure] - part[f"{measure}_low"]).clip(lower=0))))
    if measure == "top_k_overlap" and len(t):
        fig.add_vline(x=float(t["chance_overlap"].iloc[0]), line=dict(dash="dot", color="grey"),
                      annotation_text="chance")
    fig.update_layout(title=title, template="plotly_white", height=200 + 28 * t["pair"].nunique(),
                      xaxis_title=measure.replace("_", " "), yaxis=dict(autorange="reversed"))
    return fig


def forest_figure(forest: pd.DataFrame, emotions: Sequence[str],
                  title: str = "Does the explanation hold up? Paired differences over seeds (95% CI)") -> go.Figure:
    """A forest plot per emotion: each measure's paired difference (the ranking minus its
    control; the randomisation check: the correlation itself) with its 95% interval, coloured by
    outcome (green: supports the ranking, red: against, grey: inconclusive; K against all in
    blue while the pruned model keeps its accuracy). A menu picks the emotion.

    Args:
        forest: :func:`emolib.results.verdicts.forest_table`.
        emotions: the emotions, in order.
        title: the title.
    """
    fig = go.Figure()
    n_per = []
    for i, e in enumerate(emotions):
        part = forest[forest["emotion"] == e].iloc[::-1]
        n_per.append(len(part))
        hover = [f"{r.label}<br>{r.estimate:+.3f} [{r.ci_low:+.3f}, {r.ci_high:+.3f}]"
                 + ("" if np.isnan(r.p_holm) else f"<br>p (Holm) {r.p_holm:.3f}") + f"<br>{r.outcome}, n = {r.n_pairs}"
                 + ("<br>supports the ranking when " + ("above" if r.good_sign > 0 else "below")
                    + (" 0" if r.comparison != "randomisation" else " 0.5 (upper end)"))
                 for r in part.itertuples()]
        fig.add_trace(go.Scatter(
            x=part["estimate"], y=part["label"], mode="markers", visible=i == 0, name=e,
            marker=dict(size=11, color=[_OUTCOME_COLOUR.get(o, "grey") for o in part["outcome"]]),
            error_x=dict(type="data", symmetric=False, array=(part["ci_high"] - part["estimate"]).to_numpy(),
                         arrayminus=(part["estimate"] - part["ci_low"]).to_numpy(), color="#555"),
            text=hover, hoverinfo="text"))
    buttons = [dict(method="update", label=e.capitalize(),
                    args=[{"visible": [j == i for j in range(len(emotions))]}, {"title.text": f"{title}: {e}"}])
               for i, e in enumerate(emotions)]
    fig.add_vline(x=0, line=dict(color="black", width=1))
    fig.update_layout(title=f"{title}: {emotions[0]}" if emotions else title, template="plotly_white",
                      height=160 + 34 * max(n_per or [1]), showlegend=False, margin=dict(l=380, t=100),
                      xaxis_title="difference (accuracy, area) or Spearman ρ",
                      updatemenus=[dict(type="dropdown", buttons=buttons, x=1.0, xanchor="right", y=1.15)])
    return fig


def attribution_animation_figure(frames: Mapping[str, Mapping[str, np.ndarray]],
                                 title: str = "One held-out video per emotion: its attribution frame by frame"
                                 ) -> go.Figure:
    """The face of one video per emotion, moving frame by frame, each landmark coloured by its
    attribution in that frame (|IG| summed over x and y, mean over the baselines); play, or drag
    the frame slider; a menu picks the emotion. Plotly frames only: it plays in the offline report.

    Args:
        frames: emotion -> {X (P, 2, L), attribution (P, L), landmark_ids, sample, probability}
            (:meth:`emolib.run_folder.RunFolder.read_frame_attributions`).
        title: the title.
    """
    emotions = list(frames)
    n_frames = min(int(np.asarray(frames[e]["X"]).shape[0]) for e in emotions)
    # one colour scale per emotion, fixed over its frames, so that a frame's colours compare to another's
    scale = {e: float(np.asarray(frames[e]["attribution"]).max()) or 1.0 for e in emotions}

    def trace(e: str, t: int, visible: bool | None = None) -> go.Scatter:
        X, a = np.asarray(frames[e]["X"]), np.asarray(frames[e]["attribution"])
        ids = np.asarray(frames[e]["landmark_ids"], dtype=int)
        return go.Scatter(x=X[t, 0], y=X[t, 1], mode="markers", name=e, visible=visible,
                          marker=dict(size=6, color=a[t], cmin=0, cmax=scale[e], colorscale="Inferno",
                                      showscale=True, colorbar=dict(title="|IG|", len=0.6)),
                          text=[f"landmark {i}<br>{v:.3g}" for i, v in zip(ids, a[t])], hoverinfo="text")

    fig = go.Figure(data=[trace(e, 0, i == 0) for i, e in enumerate(emotions)])
    # Each frame moves every emotion's trace and leaves ``visible`` out, so that playing keeps the
    # emotion the menu chose.
    fig.frames = [go.Frame(data=[trace(e, t) for e in emotions], traces=list(range(len(emotions))), name=str(t))
                  for t in range(n_frames)]
    captions = {e: f"{e}: sample {int(frames[e]['sample'])}, p({e}) = {float(frames[e]['probability']):.2f}"
                for e in emotions}
    buttons = [dict(method="update", label=e.capitalize(),
                    args=[{"visible": [j == i for j in range(len(emotions))]},
                          {"title.text": f"{title}<br>{captions[e]}"}])
               for i, e in enumerate(emotions)]
    play = dict(type="buttons", showactive=False, x=0.0, y=-0.05, xanchor="left", yanchor="top",
                buttons=[dict(label="▶ play", method="animate",
                              args=[None, dict(frame=dict(duration=400, redraw=True), fromcurrent=True,
                                               transition=dict(duration=0))]),
                         dict(label="❚❚ pause", method="animate",
                              args=[[None], dict(frame=dict(duration=0, redraw=False), mode="immediate")])])
    slider = dict(active=0, x=0.15, len=0.85, y=-0.02, currentvalue=dict(prefix="frame "),
                  steps=[dict(label=str(t), method="animate",
                              args=[[str(t)], dict(mode="immediate", frame=dict(duration=0, redraw=True))])
                         for t in range(n_frames)])
    face_layout(fig, f"{title}<br>{captions[emotions[0]]}" if emotions else title, height=620)
    fig.update_layout(updatemenus=[dict(type="dropdown", buttons=buttons, x=1.0, xanchor="right", y=1.12), play],
                      sliders=[slider], margin=dict(t=110, b=90))
    return fig
