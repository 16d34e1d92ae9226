"""Robust statistics for noisy training curves: rolling medians, noise levels, spikes, stretches.

Training metrics are noisy and heavy-tailed; means and standard deviations are pulled around by
the very outliers a check is looking for. Everything here uses medians and the median absolute
deviation (MAD), so one bad batch cannot hide or fake a finding.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from reportgen.metrics import average_ranks

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
        return trailing_stats(values, w, [(None, w if full else 1)])[0]

    return _memo("trailing-full" if full else "trailing", values, w, compute)


SORTED_CELLS = 1 << 16  # window cells sorted at once (memory stays small on long runs)
SORT_UP_TO = 4096  # points; on longer curves pandas' skip lists beat sorting every window


def trailing_stats(
    values: np.ndarray, w: int, wanted: Sequence[tuple[float | None, int]]
) -> list[np.ndarray]:
    """Trailing-window statistics, each exactly `pd.Series(values).rolling(w, min_periods=m)`'s
    `.median()` (q None) or `.quantile(q)` (linear) for each (q, m) in `wanted`.

    The health checks call this for thousands of short curves, where pandas' per-call set-up
    costs more than the work: each window is sorted once (NaN last) and every statistic read
    from the sorted windows. As in pandas, ±inf counts as missing, a window with fewer than `m`
    values (or none) gives NaN, and a median of an even count is the mean of the middle two.
    Long curves go to pandas itself.
    """
    floats = np.asarray(values, dtype=float)
    n = len(floats)
    if n > SORT_UP_TO:
        import pandas as pd  # imported only for such curves: it costs 0.2 s to import

        series = pd.Series(floats)
        return [
            (
                series.rolling(w, min_periods=m).median()
                if q is None
                else series.rolling(w, min_periods=m).quantile(q)
            ).to_numpy()
            for q, m in wanted
        ]
    found = [np.full(n, np.nan) for _ in wanted]
    if n == 0:
        return found
    padded = np.concatenate([np.full(w - 1, np.nan), np.where(np.isinf(floats), np.nan, floats)])
    windows = sliding_window_view(padded, w)
    rows = max(1, SORTED_CELLS // w)
    with np.errstate(invalid="ignore", over="ignore"):
        for start in range(0, n, rows):
            ordered = np.sort(windows[start : start + rows], axis=1)
            count = w - np.count_nonzero(np.isnan(ordered), axis=1)
            at = np.arange(len(ordered))
            last = np.maximum(count, 1) - 1
            for (q, least), into in zip(wanted, found, strict=True):
                if q is None:
                    low = ordered[at, last // 2]
                    high = ordered[at, (last + 1) // 2]
                    value = np.where(last % 2 == 0, low, (low + high) / 2)
                else:
                    position = q * last
                    below = position.astype(np.int64)
                    low = ordered[at, below]
                    high = ordered[at, np.minimum(below + 1, last)]
                    value = np.where(
                        position == below, low, low + (high - low) * (position - below)
                    )
                into[start : start + rows] = np.where(count >= max(least, 1), value, np.nan)
    return found


def _after(values: np.ndarray) -> np.ndarray:
    """Each point's statistic moved to the next point (pandas' `.shift(1)`): the window before."""
    return np.concatenate([[np.nan], values[:-1]])


def centred_median(values: np.ndarray, w: int) -> np.ndarray:
    """Median of the `w` points around each point (as many as there are at the ends)."""

    def compute() -> np.ndarray:
        # pandas' centred window of point i is the trailing one of point i + (w - 1) // 2
        ahead = (w - 1) // 2
        extended = np.concatenate([np.asarray(values, dtype=float), np.full(ahead, np.nan)])
        return trailing_stats(extended, w, [(None, 1)])[0][ahead:]

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


def expanding_median(values: np.ndarray, min_periods: int) -> np.ndarray:
    """The median of each point and all before it (NaN before `min_periods` points): exactly
    `pd.Series(values).expanding(min_periods).median()` for finite values. Two heaps hold the
    lower and upper halves; a median of an even count is the mean of the middle two. Curves
    longer than SORT_UP_TO go to pandas, as in `trailing_stats` (a point costs twice as much
    in the heaps, and a curve that long has pandas imported for its rolling median anyway)."""
    n = len(values)
    if n > SORT_UP_TO:
        import pandas as pd

        return pd.Series(values).expanding(min_periods=min_periods).median().to_numpy()
    lower: list[float] = []  # negated: heapq keeps the least first
    upper: list[float] = []
    medians: list[float] = []
    for value in np.asarray(values, dtype=float).tolist():
        if lower and value > -lower[0]:
            heapq.heappush(upper, value)
            if len(upper) > len(lower):
                heapq.heappush(lower, -heapq.heappop(upper))
        else:
            heapq.heappush(lower, -value)
            if len(lower) > len(upper) + 1:
                heapq.heappush(upper, -heapq.heappop(lower))
        medians.append(-lower[0] if len(lower) > len(upper) else (-lower[0] + upper[0]) / 2)
    found = np.array(medians, dtype=float)
    found[: max(min_periods - 1, 0)] = np.nan
    return found


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
    ranks = average_ranks(values)
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
    floats = np.asarray(values, dtype=float)
    median, centre, upper = trailing_stats(floats, window, [(None, least), (None, 1), (0.9, least)])
    baseline = _after(median)
    (spread,) = trailing_stats(np.abs(floats - centre), window, [(None, least)])
    spread = _after(spread)
    sigma = np.maximum(MAD_TO_SIGMA * spread, 0.01 * np.abs(baseline))
    sigma = np.maximum(sigma, TINY)
    upper = _after(upper)
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
