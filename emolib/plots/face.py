"""Landmarks drawn on the face: mean positions, coloured by a value, some highlighted."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from emolib.regions import region_of


def mean_face(X: np.ndarray) -> np.ndarray:
    """Mean (x, y) of each landmark over samples and frames: X (N, P, 2, L) -> (L, 2)."""
    return np.asarray(X, dtype=float).mean(axis=(0, 1)).T


def face_scatter(xy: np.ndarray, values: np.ndarray | None = None, landmark_ids=None, *,
                 highlight=None, colorscale: str = "Viridis", name: str = "landmarks",
                 showscale: bool = True, visible: bool = True) -> list[go.Scatter]:
    """Traces for one face: every landmark as a dot (coloured by ``values``), ``highlight`` ringed.

    Args:
        xy: (L, 2) positions in normalised image coordinates (y grows downwards).
        values: (L,) values to colour by, or None for grey dots.
        landmark_ids: (L,) MediaPipe ids shown on hover (default 0..L-1).
        highlight: ids (a subset of ``landmark_ids``) drawn with a ring.
    """
    xy = np.asarray(xy, dtype=float)
    ids = np.arange(len(xy)) if landmark_ids is None else np.asarray(landmark_ids, dtype=int)
    regions = region_of(ids)
    hover = [f"landmark {i}<br>{r}" + (f"<br>{v:.3g}" if values is not None else "")
             for i, r, v in zip(ids, regions, values if values is not None else [None] * len(ids))]
    marker = dict(size=5, color="lightgrey")
    if values is not None:
        marker = dict(size=6, color=np.asarray(values, dtype=float), colorscale=colorscale,
                      showscale=showscale, colorbar=dict(title="importance", len=0.6))
    traces = [go.Scatter(x=xy[:, 0], y=xy[:, 1], mode="markers", marker=marker, name=name,
                         text=hover, hoverinfo="text", visible=visible)]
    if highlight is not None:
        pos = {int(v): i for i, v in enumerate(ids)}
        sel = np.array([pos[int(i)] for i in highlight if int(i) in pos], dtype=int)
        traces.append(go.Scatter(x=xy[sel, 0], y=xy[sel, 1], mode="markers", name=f"selected ({len(sel)})",
                                 marker=dict(size=11, color="rgba(0,0,0,0)", line=dict(width=2, color="royalblue")),
                                 hoverinfo="skip", visible=visible))
    return traces


def face_layout(fig: go.Figure, title: str = "", height: int = 520) -> go.Figure:
    """Square axes, y pointing down (image coordinates), no grid."""
    fig.update_layout(title=title, height=height, template="plotly_white", showlegend=False)
    fig.update_xaxes(visible=False, scaleanchor="y", scaleratio=1)
    fig.update_yaxes(visible=False, autorange="reversed")
    return fig


def face_figure(xy: np.ndarray, values: np.ndarray | None = None, landmark_ids=None, *,
                highlight=None, title: str = "") -> go.Figure:
    """One face, landmarks coloured by ``values``, ``highlight`` ringed."""
    fig = go.Figure(face_scatter(xy, values, landmark_ids, highlight=highlight))
    return face_layout(fig, title)
