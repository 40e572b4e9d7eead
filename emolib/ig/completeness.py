"""Does m suffice? The model along the path (paper, Figure 2) and completeness gaps against m."""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from emolib.errors import DataError, ParamsError
from emolib.ig.engine import _check_target, integrated_gradients, model_outputs


def alpha_curve(model: Any, x: Any, baseline: Any, steps: int = 50, target: int = 1,
                batch_size: int | None = 512) -> tuple[np.ndarray, np.ndarray]:
    """The model's probability along the straight path from the baseline to x (paper, Figure 2).

    Args:
        model: as for :func:`integrated_gradients`.
        x: one sample (no batch axis).
        baseline: one baseline, shaped like ``x``.
        steps: the curve has steps + 1 points, alpha = 0, 1/steps, ..., 1.
        target: the output column plotted.
        batch_size: rows per model call.

    Returns:
        ``(alphas, probabilities)``, both (steps + 1,).
    """
    sample = np.asarray(x, dtype=np.float32)
    base = np.asarray(baseline, dtype=np.float32)
    if base.shape != sample.shape:
        raise DataError(f"baseline shape {base.shape} differs from the sample's {sample.shape}")
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ParamsError(f"alpha_curve steps must be an integer >= 1, got {steps!r}")
    target = _check_target(model, target, sample)
    alphas = np.linspace(0.0, 1.0, int(steps) + 1)
    path = base[None] + alphas.astype(np.float32).reshape((-1,) + (1,) * sample.ndim) * (sample - base)[None]
    return alphas, model_outputs(model, path, batch_size)[:, target]


def completeness_by_steps(model: Any, inputs: Any, baselines: Any, steps_list: Sequence[int],
                          target: int = 1, batch_size: int | None = 512,
                          rule: str = "riemann_right", engine: str = "auto") -> pd.DataFrame:
    """Completeness gaps of the same samples at several step counts (does m suffice?).

    Returns:
        One row per m: steps, mean_abs_gap, max_abs_gap, mean_abs_delta (mean |F(x) - F(x')|) and
        relative_gap = mean_abs_gap / mean_abs_delta.
    """
    rows = []
    for m in steps_list:
        res = integrated_gradients(model, inputs, baselines, steps=int(m), target=target,
                                   batch_size=batch_size, rule=rule, engine=engine)
        delta = float(np.mean(np.abs(res.deltas)))
        gap = float(np.mean(np.abs(res.gaps)))
        rows.append({"steps": int(m), "mean_abs_gap": gap, "max_abs_gap": float(np.max(np.abs(res.gaps))),
                     "mean_abs_delta": delta, "relative_gap": gap / delta if delta > 0 else float("nan")})
    return pd.DataFrame(rows)

