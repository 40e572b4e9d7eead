"""Figures of stage 01: what data there is, what extraction saw, how landmarks move."""
from __future__ import annotations

import base64
from typing import Optional, Sequence

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from emolib._deprecated import module_getattr as _module_getattr
from emolib.landmarks import LandmarkSet
from emolib.plots.face import face_layout, face_scatter
from emolib.vocab import EMOTIONS

STATUS_COLOURS = {"ok": "#2ca02c", "filled": "#bcbd22", "dropped": "#ff7f0e", "skipped": "#7f7f7f",
                  "error": "#d62728"}


def counts_table(data: LandmarkSet) -> pd.DataFrame:
    """Sequences per subject (rows) and emotion (columns), originals only (flipped copies excluded)."""
    keep = ~data.flipped
    frame = pd.DataFrame({"subject": data.subject[keep], "emotion": data.emotion[keep]})
    table = pd.crosstab(frame["subject"], frame["emotion"])
    return table.reindex(columns=[e for e in EMOTIONS if e in table.columns], fill_value=0)


def counts_figure(data: LandmarkSet) -> go.Figure:
    """Bars: samples per emotion (originals and flipped copies); heatmap: sequences per subject."""
    table = counts_table(data)
    fig = make_subplots(rows=1, cols=2, column_widths=[0.4, 0.6], horizontal_spacing=0.12,
                        subplot_titles=("samples per emotion", "sequences per subject and emotion"))
    for flipped, name, colour in ((False, "original", "#1f77b4"), (True, "flipped copy", "#aec7e8")):
        mask = data.flipped == flipped
        if not mask.any():
            continue
        counts = [int((data.emotion[mask] == e).sum()) for e in table.columns]
        fig.add_trace(go.Bar(x=list(table.columns), y=counts, name=name, marker_color=colour), row=1, col=1)
    fig.add_trace(go.Heatmap(z=table.values, x=list(table.columns), y=list(table.index), colorscale="Blues",
                             showscale=False, text=table.values, texttemplate="%{text}",
                             hovertemplate="%{y} %{x}: %{z}<extra></extra>"), row=1, col=2)
    fig.update_layout(barmode="stack", template="plotly_white", height=max(360, 22 * len(table) + 140),
                      legend=dict(orientation="h", y=-0.15))
    fig.update_yaxes(autorange="reversed", row=1, col=2)
    return fig


def report_figure(report: pd.DataFrame) -> go.Figure:
    """Extraction outcome per emotion: sequences by status (ok, filled, dropped, skipped, error)."""
    labels = [e if e else "(no label)" for e in report["emotion"].fillna("").astype(str)]
    frame = report.assign(label=labels)
    order = [e for e in EMOTIONS if e in set(labels)] + sorted(set(labels) - set(EMOTIONS))
    fig = go.Figure()
    for status, colour in STATUS_COLOURS.items():
        part = frame[frame["status"] == status]
        if part.empty:
            continue
        counts = part["label"].value_counts()
        fig.add_trace(go.Bar(x=order, y=[int(counts.get(e, 0)) for e in order], name=status, marker_color=colour))
    fig.update_layout(barmode="stack", template="plotly_white", height=360,
                      title="extraction report: sequences by label and status", yaxis_title="sequences")
    return fig


def _png_source(image: np.ndarray) -> str:
    """An image as a data URI (compact in the HTML report, unlike a heatmap of numbers)."""
    import cv2

    ok, encoded = cv2.imencode(".png", image)
    return "data:image/png;base64," + base64.b64encode(encoded.tobytes()).decode()


def frames_figure(examples: Sequence[dict], columns: int = 4, marker_size: float = 2.5,
                  display_size: int = 200) -> go.Figure:
    """Face crops with the landmarks FaceMesh found on them.

    Args:
        examples: from :func:`emolib.extraction.example_frames`.
        columns: crops per row.
        marker_size: landmark dot size.
        display_size: crops are shown at this side (keeps the HTML report small).
    """
    import cv2

    if not examples:
        fig = go.Figure()
        fig.add_annotation(text="no images (the landmark source has none)", showarrow=False)
        return fig
    rows = int(np.ceil(len(examples) / columns))
    titles = [f"{e['sequence']} {e['emotion']}<br>{e['position']}" for e in examples]
    fig = make_subplots(rows=rows, cols=columns, subplot_titles=titles, horizontal_spacing=0.02,
                        vertical_spacing=0.08 / max(rows, 1) + 0.02)
    for i, example in enumerate(examples):
        row, col = i // columns + 1, i % columns + 1
        image = example["image"]
        if image.shape[0] > display_size:
            image = cv2.resize(image, (display_size, display_size), interpolation=cv2.INTER_AREA)
        size = image.shape[0]
        fig.add_trace(go.Image(source=_png_source(image), hoverinfo="skip"), row=row, col=col)
        xy = example["landmarks"] * size
        fig.add_trace(go.Scatter(x=xy[0], y=xy[1], mode="markers", hoverinfo="skip",
                                 marker=dict(size=marker_size, color="#00e5ff")), row=row, col=col)
        axis = "" if i == 0 else str(i + 1)
        fig.update_layout({f"xaxis{axis}": dict(visible=False, range=[0, size]),
                           f"yaxis{axis}": dict(visible=False, range=[size, 0], scaleanchor=f"x{axis}")})
    fig.update_layout(showlegend=False, height=260 * rows + 60, template="plotly_white",
                      margin=dict(l=10, r=10, t=60, b=10))
    fig.update_annotations(font_size=11)
    return fig


def motion_figure(X: np.ndarray, landmark_ids=None, title: str = "") -> go.Figure:
    """One sequence's landmarks over time: a frame slider, dots coloured by distance from frame 0.

    Args:
        X: (P, 2, L) one sample.
        landmark_ids: the L FaceMesh ids (default 0..L-1).
        title: figure title.
    """
    X = np.asarray(X, dtype=float)
    moved = np.linalg.norm(X - X[:1], axis=1)  # (P, L)
    top = float(moved.max()) or 1.0

    def traces(p: int) -> list:
        return face_scatter(X[p].T, moved[p], landmark_ids, colorscale="Turbo", name=f"frame {p}")

    last = len(X) - 1  # open on the peak frame: the static report shows the expression
    fig = go.Figure(data=traces(last))
    fig.frames = [go.Frame(data=traces(p), name=str(p)) for p in range(len(X))]
    fig.update_traces(marker=dict(cmin=0, cmax=top, colorbar=dict(title="moved")))
    for frame in fig.frames:
        for trace in frame.data:
            trace.marker.cmin, trace.marker.cmax = 0, top
            trace.marker.colorbar = dict(title="moved")
    steps = [dict(method="animate", label=str(p),
                  args=[[str(p)], dict(mode="immediate", frame=dict(duration=0, redraw=True),
                                       transition=dict(duration=0))]) for p in range(len(X))]
    fig.update_layout(sliders=[dict(steps=steps, active=last, currentvalue=dict(prefix="frame "), pad=dict(t=30))],
                      updatemenus=[dict(type="buttons", showactive=False, x=0.0, y=0.0, xanchor="right",
                                        buttons=[dict(label="play", method="animate",
                                                      args=[None, dict(frame=dict(duration=300, redraw=True),
                                                                       fromcurrent=True)])])])
    return face_layout(fig, title or "landmarks over time (colour: distance moved since frame 0)")


def displacement_figure(X: np.ndarray, landmark_ids=None, top: int = 12, title: str = "") -> go.Figure:
    """Distance from frame 0 over time for the landmarks that move most in one sequence."""
    from emolib.regions import region_of

    X = np.asarray(X, dtype=float)
    ids = np.arange(X.shape[-1]) if landmark_ids is None else np.asarray(landmark_ids)
    moved = np.linalg.norm(X - X[:1], axis=1)
    order = np.argsort(moved[-1])[::-1][:top]
    fig = go.Figure()
    for j in order:
        fig.add_trace(go.Scatter(x=np.arange(len(X)), y=moved[:, j], mode="lines+markers",
                                 name=f"{ids[j]} ({region_of([ids[j]])[0]})"))
    fig.update_layout(template="plotly_white", height=380, xaxis_title="frame",
                      yaxis_title="distance from frame 0 (crop units)",
                      title=title or f"the {len(order)} landmarks that move most")
    return fig


def planted_landmarks_figure(xy: np.ndarray, ground_truth: dict, landmark_ids=None) -> go.Figure:
    """The demo's known answer: the landmarks each emotion's expression program moves.

    Args:
        xy: (L, 2) a face (e.g. :func:`emolib.plots.face.mean_face` of the data).
        ground_truth: ``ground_truth.json`` (``{"landmarks": {emotion: ids}, "description": ...}``).
    """
    emotions = [e for e in EMOTIONS if e in ground_truth["landmarks"]]
    fig = go.Figure()
    for k, emotion in enumerate(emotions):
        for trace in face_scatter(xy, None, landmark_ids, highlight=ground_truth["landmarks"][emotion],
                                  visible=k == 0):
            fig.add_trace(trace)
    per = len(fig.data) // max(len(emotions), 1)
    descriptions = ground_truth.get("description", {})
    buttons = []
    for k, emotion in enumerate(emotions):
        visible = [k * per <= i < (k + 1) * per for i in range(len(fig.data))]
        text = f"{emotion}: {len(ground_truth['landmarks'][emotion])} landmarks move"
        if emotion in descriptions:
            text += f"<br><sub>{descriptions[emotion]}</sub>"
        buttons.append(dict(label=emotion, method="update", args=[{"visible": visible}, {"title": text}]))
    first = emotions[0] if emotions else ""
    title = (f"{first}: {len(ground_truth['landmarks'][first])} landmarks move"
             f"<br><sub>{descriptions.get(first, '')}</sub>" if first else "")
    fig.update_layout(updatemenus=[dict(buttons=buttons, x=1.0, y=1.12, xanchor="right")])
    return face_layout(fig, title)


def status_table(report: pd.DataFrame, statuses: Optional[Sequence[str]] = None) -> pd.DataFrame:
    """Report rows whose status is in ``statuses`` (default: everything not ``ok``)."""
    if statuses is None:
        return report[report["status"] != "ok"].reset_index(drop=True)
    return report[report["status"].isin(list(statuses))].reset_index(drop=True)


# Names before 0.2 (deprecated; see emolib._deprecated).
__getattr__ = _module_getattr(__name__, {
    "ground_truth_figure": "emolib.plots.data:planted_landmarks_figure",
})
