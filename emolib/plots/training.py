"""Figures of stage 02: accuracy against the baselines, learning curves, the cost of training."""
from __future__ import annotations

from typing import Mapping, Optional, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from emolib._deprecated import module_getattr as _module_getattr
from emolib.plots import VARIANT_COLOURS
from emolib.vocab import EMOTIONS, VARIANTS

BASELINE_COLOURS = {"linear": "#2ca02c", "rbf": "#9467bd", "majority": "#7f7f7f"}
METRIC_LABELS = {"accuracy": "accuracy", "balanced_accuracy": "balanced accuracy", "f1": "F1",
                 "roc_auc": "ROC AUC"}


def _emotions(table: pd.DataFrame) -> list[str]:
    present = set(table["emotion"])
    return [e for e in EMOTIONS if e in present]


def _mean_std(table: pd.DataFrame, column: str, emotions: Sequence[str]) -> tuple[list, list]:
    grouped = table.groupby("emotion")[column]
    means, stds = grouped.mean(), grouped.std().fillna(0.0)
    return ([float(means.get(e, np.nan)) for e in emotions], [float(stds.get(e, np.nan)) for e in emotions])


def accuracy_figure(table: pd.DataFrame, svm: Optional[pd.DataFrame] = None,
                    paper: Optional[Mapping[str, Mapping[str, float]]] = None,
                    paper_svm: Optional[Mapping[str, Mapping[str, float]]] = None,
                    metrics: Sequence[str] = ("accuracy", "balanced_accuracy"),
                    title: str = "test performance per emotion (mean ± std over seeds)") -> go.Figure:
    """Per emotion: T-EMO and R-EMO (mean ± std over seeds) beside the majority-class answer and
    the SVM baselines; a menu switches the metric.

    Args:
        table: stage 02's results rows (one K, one selection).
        svm: results/svm.csv rows (optional).
        paper: variant -> emotion -> the paper's mean accuracy (shown as hollow diamonds in the
            accuracy view; they are CK+ numbers, put beside ours for scale, not as a target).
        paper_svm: kernel -> emotion -> the SVM accuracy the paper quotes.
        metrics: metrics offered in the menu (the first is shown).
        title: figure title.

    Returns:
        A plotly figure.
    """
    emotions = _emotions(table)
    fig = go.Figure()
    groups: list[list[int]] = []
    for metric in metrics:
        idx = []
        visible = metric == metrics[0]
        for variant in VARIANTS:
            rows = table[table["variant"] == variant]
            if rows.empty:
                continue
            mean, std = _mean_std(rows, metric, emotions)
            fig.add_trace(go.Bar(x=emotions, y=mean, error_y=dict(type="data", array=std), name=variant.upper(),
                                 marker_color=VARIANT_COLOURS[variant], visible=visible, offsetgroup=variant,
                                 hovertemplate="%{x}: %{y:.3f} ± %{error_y.array:.3f}<extra>" + variant + "</extra>"))
            idx.append(len(fig.data) - 1)
        if svm is not None and not svm.empty and metric in svm.columns:
            for kernel in ("linear", "rbf"):
                rows = svm[svm["kernel"] == kernel]
                mean, std = _mean_std(rows, metric, emotions)
                fig.add_trace(go.Bar(x=emotions, y=mean, error_y=dict(type="data", array=std),
                                     name=f"{kernel} SVM", marker_color=BASELINE_COLOURS[kernel], opacity=0.75,
                                     visible=visible, offsetgroup=kernel))
                idx.append(len(fig.data) - 1)
        # Always answering one class: the majority share in accuracy, 0.5 in balanced accuracy.
        majority = (_mean_std(table, "majority_accuracy", emotions)[0] if metric == "accuracy"
                    else [0.5] * len(emotions))
        xs, ys = [], []
        for i, value in enumerate(majority):
            xs += [i - 0.45, i + 0.45, None]
            ys += [value, value, None]
        fig.add_trace(go.Scatter(x=xs, y=ys, mode="lines", line=dict(color="black", width=2.5, dash="dot"),
                                 name="majority answer" if metric == "accuracy" else "always one answer (0.5)",
                                 xaxis="x2", visible=visible, hoverinfo="skip"))
        idx.append(len(fig.data) - 1)
        if metric == "accuracy":
            for source, colours, label in ((paper, VARIANT_COLOURS, "paper {} (CK+)"),
                                           (paper_svm, BASELINE_COLOURS, "paper {} SVM (CK+)")):
                for name, values in (source or {}).items():
                    fig.add_trace(go.Scatter(
                        x=emotions, y=[values.get(e, np.nan) for e in emotions], mode="markers",
                        name=label.format(name.upper() if "emo" in name else name),
                        marker=dict(symbol="diamond-open", size=11, color=colours.get(name, "black"),
                                    line=dict(width=2)), visible=visible, offsetgroup=name))
                    idx.append(len(fig.data) - 1)
        groups.append(idx)
    buttons = []
    for metric, idx in zip(metrics, groups):
        vis = [i in idx for i in range(len(fig.data))]
        buttons.append(dict(label=METRIC_LABELS.get(metric, metric), method="update",
                            args=[{"visible": vis}, {"yaxis.title.text": METRIC_LABELS.get(metric, metric)}]))
    fig.update_layout(title=title, barmode="group", scattermode="group", template="plotly_white", height=480,
                      # a hidden numeric axis over the categories carries the majority segments
                      xaxis2=dict(overlaying="x", range=[-0.5, len(emotions) - 0.5], visible=False),
                      yaxis=dict(title=METRIC_LABELS.get(metrics[0], metrics[0]), range=[0, 1.05]),
                      legend=dict(orientation="h", y=-0.15),
                      updatemenus=[dict(buttons=buttons, x=1.0, xanchor="right", y=1.15, yanchor="top")]
                      if len(metrics) > 1 else [])
    return fig


def learning_curves_figure(history: pd.DataFrame, n_landmarks: Optional[int] = None,
                           selection: Optional[str] = None) -> go.Figure:
    """Loss and accuracy per epoch (training dashed, validation solid), one line per seed,
    T-EMO and R-EMO in their colours; a menu picks the emotion.

    Args:
        history: results/history.csv rows.
        n_landmarks, selection: keep only these models (default: all rows).

    Returns:
        A plotly figure with two rows (loss, accuracy).
    """
    if n_landmarks is not None:
        history = history[history["n_landmarks"] == n_landmarks]
    if selection is not None:
        history = history[history["selection"] == selection]
    emotions = _emotions(history)
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.08,
                        subplot_titles=("weighted cross-entropy loss", "accuracy"))
    owner: list[str] = []
    for emotion in emotions:
        rows_e = history[history["emotion"] == emotion]
        for (variant, seed), rows in rows_e.groupby(["variant", "seed"], sort=True):
            colour = VARIANT_COLOURS.get(variant, "black")
            for metric, row in (("loss", 1), ("accuracy", 2)):
                for prefix, dash, part in (("", "dash", "train"), ("val_", "solid", "validation")):
                    fig.add_trace(go.Scatter(
                        x=rows["epoch"], y=rows[prefix + metric], mode="lines",
                        line=dict(color=colour, dash=dash, width=1.5),
                        name=f"{variant.upper()} {part}", legendgroup=f"{variant}-{part}",
                        showlegend=bool(metric == "loss" and seed == rows_e["seed"].min()),
                        hovertemplate=f"{variant} seed {seed} {part}<br>epoch %{{x}}: %{{y:.3f}}<extra></extra>",
                        visible=emotion == emotions[0]), row=row, col=1)
                    owner.append(emotion)
    buttons = [dict(label=e, method="update", args=[{"visible": [o == e for o in owner]},
                                                     {"title.text": f"learning curves: {e}"}])
               for e in emotions]
    fig.update_layout(title=f"learning curves: {emotions[0] if emotions else ''}", template="plotly_white",
                      height=620, legend=dict(orientation="h", y=-0.08),
                      updatemenus=[dict(buttons=buttons, x=1.0, xanchor="right", y=1.12, yanchor="top")])
    fig.update_xaxes(title_text="epoch", row=2, col=1)
    return fig


def training_cost_figure(table: pd.DataFrame) -> go.Figure:
    """The cost of one model, T-EMO against R-EMO: seconds per epoch, seconds of training (to
    early stopping) and trainable parameters, mean ± std over emotions and seeds, per K.

    Args:
        table: results rows (any K).

    Returns:
        A plotly figure with three panels.
    """
    fig = make_subplots(rows=1, cols=3, horizontal_spacing=0.1,
                        subplot_titles=("seconds per epoch", "training seconds per model", "trainable parameters"))
    ks = sorted(set(table["n_landmarks"]), reverse=True)
    x = [f"K={k}" for k in ks]
    for variant in VARIANTS:
        rows = table[table["variant"] == variant]
        if rows.empty:
            continue
        for col, column in enumerate(("seconds_per_epoch", "train_seconds", "trainable_params"), start=1):
            grouped = rows.groupby("n_landmarks")[column]
            mean = [float(grouped.mean().get(k, np.nan)) for k in ks]
            std = [float(grouped.std().fillna(0).get(k, np.nan)) for k in ks]
            fig.add_trace(go.Bar(x=x, y=mean, error_y=dict(type="data", array=std), name=variant.upper(),
                                 marker_color=VARIANT_COLOURS[variant], showlegend=col == 1,
                                 legendgroup=variant), row=1, col=col)
    fig.update_layout(barmode="group", template="plotly_white", height=380,
                      title="what a model costs (mean ± std over emotions and seeds)",
                      legend=dict(orientation="h", y=-0.15))
    return fig


def grid_figure(grid: pd.DataFrame) -> go.Figure:
    """Validation accuracy of every grid point per emotion; the chosen one outlined.

    Args:
        grid: results/grid_search.csv rows (one K, one selection).

    Returns:
        A plotly figure.
    """
    emotions = _emotions(grid)
    grid = grid.assign(config=lambda t: "F" + t["filters"].astype(str) + " Q" + t["lstm_units"].astype(str)
                       + " R" + t["fc_units"].astype(str))
    fig = go.Figure()
    for config, rows in grid.groupby("config", sort=False):
        rows = rows.set_index("emotion").reindex(emotions)
        chosen = rows["chosen"].fillna(False).astype(bool)
        fig.add_trace(go.Bar(x=emotions, y=rows["val_accuracy"], name=config,
                             marker=dict(line=dict(width=[3 if c else 0 for c in chosen], color="black")),
                             customdata=rows["val_loss"],
                             hovertemplate="%{x} " + config + "<br>val accuracy %{y:.3f}"
                                           "<br>val loss %{customdata:.3f}<extra></extra>"))
    fig.update_layout(barmode="group", template="plotly_white", height=400, yaxis=dict(range=[0, 1.05],
                      title="validation accuracy"), title="grid search (T-EMO, outlined: chosen)",
                      legend=dict(orientation="h", y=-0.15))
    return fig


# Names before 0.2 (deprecated; see emolib._deprecated).
__getattr__ = _module_getattr(__name__, {
    "cost_figure": "emolib.plots.training:training_cost_figure",
})
