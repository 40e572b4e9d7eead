"""How far two landmark rankings agree: Kendall's tau, Spearman's rho and the top-K overlap, and
bootstrap confidence intervals for them over the samples whose attributions a ranking averages.

A ranking here is an importance vector over the same landmarks (higher: more important), so ties
are what they are (scipy's tau-b counts them) and no order has to be broken first.
"""
from __future__ import annotations

import numpy as np

AGREEMENT_MEASURES: tuple[str, ...] = ("kendall_tau", "spearman_rho", "top_k_overlap")


def top_k_overlap(importance_a: np.ndarray, importance_b: np.ndarray, k: int) -> float:
    """The share of the K most important landmarks two importance vectors have in common.

    Args:
        importance_a, importance_b: (L,) importance of the same landmarks (higher: more important).
        k: the top-K size (1 <= k <= L).

    Returns:
        |top-K(a) & top-K(b)| / K, in [0, 1]; a random pair of rankings shares K / L on average.
        Ties at the cut are broken by position (a stable sort), the same way for both.

    Raises:
        ValueError: the vectors differ in length, or k lies outside 1..L.
    """
    a, b = _pair(importance_a, importance_b)
    if not 1 <= int(k) <= a.size:
        raise ValueError(f"k = {k} must lie in 1..{a.size}")
    top_a = np.argsort(-a, kind="stable")[:k]
    top_b = np.argsort(-b, kind="stable")[:k]
    return len(set(top_a.tolist()) & set(top_b.tolist())) / int(k)


def ranking_agreement(importance_a: np.ndarray, importance_b: np.ndarray, k: int) -> dict[str, float]:
    """Kendall's tau-b, Spearman's rho and the top-K overlap of two importance vectors.

    Args:
        importance_a, importance_b: (L,) importance of the same landmarks.
        k: the top-K size of the overlap.

    Returns:
        {kendall_tau, spearman_rho, top_k_overlap}; a correlation is NaN when a vector is constant.
    """
    from scipy import stats

    a, b = _pair(importance_a, importance_b)
    constant = np.ptp(a) == 0 or np.ptp(b) == 0
    tau = np.nan if constant else float(stats.kendalltau(a, b).statistic)
    rho = np.nan if constant else float(stats.spearmanr(a, b).statistic)
    return {"kendall_tau": tau, "spearman_rho": rho, "top_k_overlap": top_k_overlap(a, b, k)}


def bootstrap_agreement(per_sample_a: np.ndarray, per_sample_b: np.ndarray, k: int, *, paired: bool,
                        n_boot: int = 200, level: float = 0.95, seed: int = 0) -> dict[str, float]:
    """Agreement of two rankings built from per-sample masks, with bootstrap confidence intervals.

    Each ranking is the mean of its samples' masks (as the global procedure averages them). The
    bootstrap redraws the samples with replacement and recomputes both means: ``paired`` when the
    two rankings explain the same samples (across baselines, across steps: one draw serves both,
    so only the method changes), independently otherwise (two seeds' models explain their own
    training samples).

    Args:
        per_sample_a: (n_a, L) one mask per explained sample.
        per_sample_b: (n_b, L) the other ranking's masks (n_b == n_a when ``paired``).
        k: the top-K size of the overlap.
        paired: redraw the same rows on both sides.
        n_boot: bootstrap replicates.
        level: the confidence level of the percentile intervals.
        seed: the bootstrap's random seed.

    Returns:
        Each measure of :func:`ranking_agreement` on all samples, and ``<measure>_low`` /
        ``<measure>_high`` (percentile interval), ``n_a``, ``n_b``, ``n_boot``. A redraw holds
        about 63% distinct samples, so its means are noisier and agree less than the all-sample
        ones: the interval is the spread of agreement in a study of this size, and it can lie
        below the all-sample value (read it as a lower-side, conservative interval).

    Raises:
        ValueError: no samples, masks of different widths, or ``paired`` with different counts.
    """
    a = np.asarray(per_sample_a, dtype=np.float64)
    b = np.asarray(per_sample_b, dtype=np.float64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[1]:
        raise ValueError(f"per-sample masks must be (n, L) of one width, got {a.shape} and {b.shape}")
    if len(a) == 0 or len(b) == 0:
        raise ValueError("no samples to bootstrap")
    if paired and len(a) != len(b):
        raise ValueError(f"paired bootstrap needs the same samples on both sides, got {len(a)} and {len(b)}")
    out: dict[str, float] = dict(ranking_agreement(a.mean(axis=0), b.mean(axis=0), k))
    rng = np.random.default_rng([0xA6, int(seed)])
    ia = rng.integers(0, len(a), size=(int(n_boot), len(a)))
    ib = ia if paired else rng.integers(0, len(b), size=(int(n_boot), len(b)))
    # every replicate's mean masks at once: (n_boot, L) each
    boot_a = np.stack([a[i].mean(axis=0) for i in ia])
    boot_b = np.stack([b[i].mean(axis=0) for i in ib])
    draws = {"kendall_tau": _kendall_rows(boot_a, boot_b), "spearman_rho": _spearman_rows(boot_a, boot_b),
             "top_k_overlap": _overlap_rows(boot_a, boot_b, k)}
    tail = (1.0 - float(level)) / 2.0 * 100.0
    for m, values in draws.items():
        values = np.asarray(values, dtype=float)
        values = values[~np.isnan(values)]
        low, high = (np.percentile(values, [tail, 100.0 - tail]) if values.size else (np.nan, np.nan))
        out[f"{m}_low"], out[f"{m}_high"] = float(low), float(high)
    out.update(n_a=int(len(a)), n_b=int(len(b)), n_boot=int(n_boot))
    return out


def _spearman_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spearman's rho of each row pair (average ranks for ties; NaN for a constant row)."""
    from scipy import stats

    ra, rb = stats.rankdata(a, axis=1), stats.rankdata(b, axis=1)
    ra -= ra.mean(axis=1, keepdims=True)
    rb -= rb.mean(axis=1, keepdims=True)
    denom = np.sqrt((ra ** 2).sum(axis=1) * (rb ** 2).sum(axis=1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, (ra * rb).sum(axis=1) / denom, np.nan)


def _kendall_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Kendall's tau-b of each row pair (scipy's O(L log L) algorithm; NaN for a constant row)."""
    from scipy import stats

    return np.array([np.nan if np.ptp(x) == 0 or np.ptp(y) == 0 else float(stats.kendalltau(x, y).statistic)
                     for x, y in zip(a, b)])


def _overlap_rows(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """The top-K overlap of each row pair (ties broken by position, as :func:`top_k_overlap`)."""
    top_a = np.argsort(-a, axis=1, kind="stable")[:, :k]
    top_b = np.argsort(-b, axis=1, kind="stable")[:, :k]
    hit = np.zeros(a.shape, dtype=bool)
    np.put_along_axis(hit, top_a, True, axis=1)
    return np.take_along_axis(hit, top_b, axis=1).sum(axis=1) / float(k)


def chance_overlap(k: int, n_landmarks: int) -> float:
    """The expected top-K overlap of two independent random rankings of ``n_landmarks``: K / L."""
    return float(k) / float(n_landmarks)


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"importance vectors must have one non-zero length, got {a.size} and {b.size}")
    return a, b
