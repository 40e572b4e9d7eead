"""Deletion and insertion curves without retraining (Petsiuk et al. 2018's RISE metrics; the ROAD
family of Rong et al. 2022 for the replacement by a reference).

A sample's landmarks are replaced, a few more at each point of the curve, by a baseline's values
(every frame and both coordinates of a landmark at once), in the order a ranking gives and in
random orders. **Deletion** starts from the sample and replaces its most important landmarks
first: a faithful ranking makes the model's probability fall fast (a small area under the curve).
**Insertion** starts from the baseline and puts the sample's most important landmarks back first:
the probability rises fast (a large area). The random orders are the control: same samples,
same baselines, same model, same number of landmarks replaced at each point.

Inputs are model inputs (N, P, 2, L, 1), already scaled, as the model sees them; nothing here
knows of run folders or parameters.
"""
from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from emolib.ig import model_outputs

CURVES: tuple[str, ...] = ("deletion", "insertion")


def curve_counts(n_landmarks: int, points: int) -> np.ndarray:
    """How many landmarks are replaced at each point of a curve: ``points`` + 1 counts spread
    evenly from 0 to ``n_landmarks`` (both ends included).

    Raises:
        ValueError: fewer than one point or no landmarks.
    """
    if int(points) < 1 or int(n_landmarks) < 1:
        raise ValueError(f"a curve needs >= 1 point and >= 1 landmark, got {points} and {n_landmarks}")
    return np.unique(np.round(np.linspace(0, int(n_landmarks), int(points) + 1)).astype(int))


def perturbed_inputs(x: np.ndarray, baseline: np.ndarray, order: Sequence[int], counts: Sequence[int],
                     curve: str) -> np.ndarray:
    """The inputs along one curve of one sample.

    Args:
        x: (P, 2, L, 1) the sample's model input.
        baseline: (P, 2, L, 1) the reference whose values replace the sample's.
        order: (L,) landmark positions (columns of ``x``), most important first.
        counts: how many landmarks are replaced at each point (:func:`curve_counts`).
        curve: ``deletion`` (replace the sample's first ``c`` landmarks of ``order`` by the
            baseline's) or ``insertion`` (the baseline with the sample's first ``c`` landmarks).

    Returns:
        (len(counts), P, 2, L, 1) inputs.

    Raises:
        ValueError: an unknown curve, shapes that differ, or an order that is no permutation.
    """
    if curve not in CURVES:
        raise ValueError(f"unknown curve {curve!r}; expected one of {CURVES}")
    x = np.asarray(x)
    baseline = np.asarray(baseline, dtype=x.dtype)
    if x.shape != baseline.shape or x.ndim != 4:
        raise ValueError(f"sample and baseline must both be (P, 2, L, 1), got {x.shape} and {baseline.shape}")
    n = x.shape[2]
    order = np.asarray(order, dtype=int)
    if order.shape != (n,) or not np.array_equal(np.sort(order), np.arange(n)):
        raise ValueError(f"order must be a permutation of the {n} landmark positions")
    rank = np.empty(n, dtype=int)
    rank[order] = np.arange(n)
    # taken[t, l]: landmark l is among the first counts[t] of the order
    taken = rank[None, :] < np.asarray(counts, dtype=int)[:, None]
    first, second = (baseline, x) if curve == "deletion" else (x, baseline)
    return np.where(taken[:, None, None, :, None], first[None], second[None])


def curve_area(probabilities: np.ndarray, counts: Sequence[int]) -> np.ndarray:
    """Area under curves (trapezoid rule) over the share of landmarks replaced, 0 to 1.

    Args:
        probabilities: (..., T) the model's probability at each of the T points.
        counts: (T,) landmarks replaced at each point; the last is all of them.

    Returns:
        (...) the areas, in [0, 1] for probabilities.
    """
    counts = np.asarray(counts, dtype=np.float64)
    share = counts / counts[-1]
    p = np.asarray(probabilities, dtype=np.float64)
    return ((p[..., 1:] + p[..., :-1]) / 2.0 * np.diff(share)).sum(axis=-1)


def perturbation_curves(model: Any, inputs: np.ndarray, baselines: np.ndarray, orders: np.ndarray, *,
                        points: int = 16, target: int = 1, batch_size: int = 512) -> dict[str, np.ndarray]:
    """Deletion and insertion curves of samples against baselines, for several landmark orders.

    Args:
        model: a tf-keras model, (N, P, 2, L, 1) -> (N, classes) probabilities.
        inputs: (n, P, 2, L, 1) the samples.
        baselines: (n, P, 2, L, 1) each sample's reference (pair a sample with several baselines
            by repeating it).
        orders: (R, L) landmark positions, most important first, one row per order (e.g. the
            ranking's, then random permutations); every sample is run through every order.
        points: the curve's points after its start (see :func:`curve_counts`).
        target: the class whose probability is followed.
        batch_size: inputs per model call.

    Returns:
        ``counts`` (T,), and for each curve of :data:`CURVES` its probabilities (n, R, T) and
        ``<curve>_area`` (n, R).

    Raises:
        ValueError: shapes that do not match.
    """
    inputs = np.asarray(inputs)
    baselines = np.asarray(baselines, dtype=inputs.dtype)
    orders = np.atleast_2d(np.asarray(orders, dtype=int))
    if inputs.shape != baselines.shape or inputs.ndim != 5:
        raise ValueError(f"inputs and baselines must both be (n, P, 2, L, 1), got {inputs.shape} and "
                         f"{baselines.shape}")
    n, n_orders = len(inputs), len(orders)
    counts = curve_counts(inputs.shape[3], points)
    out: dict[str, np.ndarray] = {"counts": counts}
    per_sample = n_orders * len(counts)
    # several samples' curves per model call (one call per sample costs more in overhead than in
    # arithmetic on small models), about ``batch_size`` inputs at a time
    chunk = max(1, int(batch_size) // per_sample)
    for curve in CURVES:
        probs = np.empty((n, n_orders, len(counts)), dtype=np.float64)
        for start in range(0, n, chunk):
            stop = min(n, start + chunk)
            stacked = np.concatenate([perturbed_inputs(inputs[i], baselines[i], o, counts, curve)
                                      for i in range(start, stop) for o in orders])
            out_p = model_outputs(model, stacked, batch_size)[:, target]
            probs[start:stop] = out_p.reshape(stop - start, n_orders, len(counts))
        out[curve] = probs
        out[f"{curve}_area"] = curve_area(probs, counts)
    return out


def random_orders(n_landmarks: int, count: int, seed: Sequence[int] | int) -> np.ndarray:
    """``count`` seeded random permutations of ``n_landmarks`` positions, (count, n_landmarks)."""
    rng = np.random.default_rng(seed)
    return np.stack([rng.permutation(int(n_landmarks)) for _ in range(int(count))]) if count else \
        np.empty((0, int(n_landmarks)), dtype=int)
