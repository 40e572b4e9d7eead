"""Quadrature rules for the path integral of Integrated Gradients (paper, equation 2)."""
from __future__ import annotations

from typing import get_args

import numpy as np

from emolib.errors import ParamsError
from emolib.vocab import IgRule

RULES: tuple[str, ...] = get_args(IgRule)


def quadrature(rule: str, steps: int) -> tuple[np.ndarray, np.ndarray]:
    """Nodes (alphas) and weights on [0, 1] of a path-integral rule.

    Args:
        rule: ``riemann_right`` (equation 2 of the paper: alphas k/m, k = 1..m, weights 1/m),
            ``trapezoid`` (alphas k/m, k = 0..m; m + 1 gradient evaluations) or
            ``gauss_legendre`` (m Gauss-Legendre nodes mapped to [0, 1]).
        steps: m, the number of steps (intervals for the trapezoid rule, nodes otherwise).

    Returns:
        ``(alphas, weights)``, float64 arrays of equal length whose weights sum to 1.

    Raises:
        ParamsError: an unknown rule or a step count below 1.
    """
    if isinstance(steps, bool) or not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ParamsError(f"ig steps must be an integer >= 1, got {steps!r}")
    m = int(steps)
    if rule == "riemann_right":
        return np.arange(1, m + 1, dtype=np.float64) / m, np.full(m, 1.0 / m)
    if rule == "trapezoid":
        weights = np.full(m + 1, 1.0 / m)
        weights[[0, -1]] /= 2.0
        return np.arange(0, m + 1, dtype=np.float64) / m, weights
    if rule == "gauss_legendre":
        nodes, weights = np.polynomial.legendre.leggauss(m)
        return (nodes + 1.0) / 2.0, weights / 2.0
    raise ParamsError(f"ig rule {rule!r} is unknown; expected one of {list(RULES)}")

