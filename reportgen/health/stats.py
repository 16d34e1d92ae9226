"""Robust statistics for noisy training curves: rolling medians, noise levels, spikes, stretches.

Training metrics are noisy and heavy-tailed; means and standard deviations are pulled around by
the very outliers a check is looking for. Everything here uses medians and the median absolute
deviation (MAD), so one bad batch cannot hide or fake a finding.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd

MAD_TO_SIGMA = 1.4826  # MAD × this estimates the standard deviation of normal noise
TINY = 1e-12


def window_size(n: int, window: int | None = None) -> int:
    """Points per rolling window: about 2% of the run, at least 5 and at most 50 (or as given)."""
    w = window if window else min(50, max(5, n // 50))
    return max(1, min(w, n))


_MEMO: OrderedDict[tuple[object, ...], np.ndarray] = OrderedDict()
_MEMO_SIZE = 16


def _memo(kind: str, values: np.ndarray, w: int, compute: Callable[[], np.ndarray]) -> np.ndarray:
    """Several checks smooth the same curve the same way: compute each rolling median once.

    Keyed by the values' bytes, so it is only a cache (results are read-only arrays).
    """
    key = (kind, w, len(values), hash(np.ascontiguousarray(values, dtype=float).tobytes()))
    found = _MEMO.get(key)
    if found is None:
        found = compute()
        found.flags.writeable = False
        _MEMO[key] = found
        if len(_MEMO) > _MEMO_SIZE:
            _MEMO.popitem(last=False)
    else:
        _MEMO.move_to_end(key)
    return found


def rolling_median(values: np.ndarray, w: int, *, full: bool = True) -> np.ndarray:
    """Trailing median over the last `w` points; NaN until a window is full when `full`."""

    def compute() -> np.ndarray:
        series = pd.Series(values, dtype=float)
        return series.rolling(w, min_periods=w if full else 1).median().to_numpy()

    return _memo("trailing-full" if full else "trailing", values, w, compute)


def centred_median(values: np.ndarray, w: int) -> np.ndarray:
    def compute() -> np.ndarray:
        series = pd.Series(values, dtype=float)
        return series.rolling(w, center=True, min_periods=1).median().to_numpy()

    return _memo("centred", values, w, compute)


def noise_sigma(values: np.ndarray, w: int = 0) -> float:
    """Point-to-point noise, from the MAD of first differences (a slow trend cancels out).

    Differences of independent noise have √2 times its spread; residuals around a short
    rolling median would underestimate it instead, since the median follows the noise.
    """
    if len(values) < 3:
        return 0.0
    steps = np.diff(values)
    spread = np.median(np.abs(steps - np.median(steps)))
    return float(MAD_TO_SIGMA * spread / np.sqrt(2))


def head_level(values: np.ndarray, w: int) -> float:
    """Where a curve starts: the median of its first window."""
    return float(np.median(values[:w]))


def tail_level(values: np.ndarray, w: int) -> float:
    """Where a curve ends: the median of its last window."""
    return float(np.median(values[-w:]))


def standard_error(sigma: float, w: int) -> float:
    """How much a window's median wobbles from noise alone (median efficiency ≈ 1.25)."""
    return 1.2533 * sigma / np.sqrt(max(w, 1))


def sustained_from(mask: np.ndarray) -> int | None:
    """Index where the final all-True stretch begins (the condition holds to the end), or None."""
    if len(mask) == 0 or not mask[-1]:
        return None
    false = np.flatnonzero(~mask)
    return int(false[-1] + 1) if len(false) else 0


def first_stretch(mask: np.ndarray, min_len: int) -> tuple[int, int] | None:
    """(start, end) of the first stretch of at least `min_len` consecutive Trues, or None."""
    for start, end in stretches(mask):
        if end - start >= min_len:
            return start, end
    return None


def stretches(mask: np.ndarray) -> list[tuple[int, int]]:
    """Every maximal run of Trues as (start, end) with `end` exclusive."""
    if len(mask) == 0:
        return []
    padded = np.concatenate([[False], mask.astype(bool), [False]])
    edges = np.flatnonzero(padded[1:] != padded[:-1])
    return [(int(a), int(b)) for a, b in zip(edges[::2], edges[1::2], strict=True)]


def majority_from(mask: np.ndarray) -> int | None:
    """The first index from which more than half of the remaining points are True.

    "The median of everything from here on satisfies the condition", in one pass.
    """
    n = len(mask)
    if n == 0:
        return None
    remaining_true = np.cumsum(mask[::-1].astype(int))[::-1]
    remaining = np.arange(n, 0, -1)
    hits = np.flatnonzero(2 * remaining_true > remaining)
    return int(hits[0]) if len(hits) else None


def start_level(values: np.ndarray) -> float:
    """Where a fast-moving curve starts: the median of its first three points."""
    return float(np.median(values[:3]))


def first_at_or_after(mask: np.ndarray, start: int) -> int:
    """The first True at or after `start` (where a rolling condition's raw cause begins)."""
    hits = np.flatnonzero(mask[start:])
    return start + int(hits[0]) if len(hits) else start


def rising_trend(values: np.ndarray) -> bool:
    """Whether a noisy curve rises steadily: Spearman's ρ of value against position is more
    than two standard errors (1/√(n-1)) above 0."""
    n = len(values)
    if n < 10:
        return False
    ranks = pd.Series(values).rank().to_numpy()
    rho = float(np.corrcoef(np.arange(n), ranks)[0, 1]) if np.std(ranks) > 0 else 0.0
    return rho * np.sqrt(n - 1) > 2.0


@dataclass(frozen=True)
class Spike:
    """A short excursion above the rolling baseline that came back down."""

    start: int
    end: int
    worst: int
    baseline: float
    score: float


def spikes(
    values: np.ndarray,
    *,
    window: int,
    z: float,
    min_rel_rise: float,
    min_value: float = -np.inf,
    max_width: int,
    blowup: float = np.inf,
    min_history: int = 5,
) -> list[Spike]:
    """Hampel-style upward spikes: far above the median of the preceding points, then back.

    The baseline of point i is the median of the up to `window` points before it, from the
    `min_history`-th point on (so a jump at point 8 is judged too, against the 7 before it).
    A point is high when it exceeds that median by `z` robust standard deviations (MAD of the
    same points, floored at 1% of the median so a perfectly smooth curve does not make every
    wiggle infinite), and exceeds their 90th percentile by `min_rel_rise` × that percentile
    (so a metric that alternates between two levels, like the gradient norm of batches with and
    without signal, is not spiky). Consecutive high points form one spike; a stretch wider than
    `max_width`, or one that never comes back down, is a level shift and left to other checks,
    unless it is a blow-up: more than `blowup` × the baseline's size (or its spread, if larger)
    above the baseline. Where the baseline is below 0.1% of the curve's typical level (the 99th
    percentile of the baselines, which short spikes cannot inflate) the metric is idle (a gradient norm
    of a policy that stopped learning): blips from idle are not spikes.
    """
    n = len(values)
    least = max(2, min(min_history, window))
    if n < least + 1:
        return []
    series = pd.Series(values, dtype=float)
    rolling = series.rolling(window, min_periods=least)
    baseline = rolling.median().shift(1).to_numpy()
    deviation = (series - series.rolling(window, min_periods=1).median()).abs()
    spread = deviation.rolling(window, min_periods=least).median().shift(1).to_numpy()
    sigma = np.maximum(MAD_TO_SIGMA * spread, 0.01 * np.abs(baseline))
    sigma = np.maximum(sigma, TINY)
    upper = rolling.quantile(0.9).shift(1).to_numpy()
    reference = np.maximum(np.abs(baseline), np.abs(upper))
    rise = values - baseline
    finite_base = np.abs(baseline[np.isfinite(baseline)])
    idle = 1e-3 * float(np.percentile(finite_base, 99)) if len(finite_base) else 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        known = np.isfinite(baseline) & (np.abs(baseline) > idle)
        high = (
            (rise > z * sigma)
            & (values - upper >= min_rel_rise * reference)
            & (values > min_value)
            & known
        )
        blown = known & (rise > blowup * np.maximum(np.abs(baseline), sigma)) & (values > min_value)
    found = []
    for start, end in stretches(high | blown):
        if not blown[start:end].any() and (end >= n or end - start > max_width):
            continue
        worst = start + int(np.argmax(values[start:end]))
        score = float(rise[worst] / sigma[worst])
        found.append(Spike(start, end, worst, float(baseline[worst]), score))
    return found
