"""From a metric's logged points to a curve a chart can draw: thinned, smoothed, summarised.

A run can log 10^5 steps; a chart needs a few hundred points. Thinning keeps the minimum and
maximum of each stretch of steps (and where non-finite values start), so a loss spike or the
step a run turned NaN is still on the chart. Pure functions over arrays: no drawing here.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

SPARK_BARS = "▁▂▃▄▅▆▇█"


def thin(steps: np.ndarray, values: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of the points to draw: all of them, or per stretch its first, min, max and gaps.

    Stretches hold equal numbers of logged points. A stretch with a non-finite value keeps the
    first one, so the drawn line breaks there instead of bridging the gap.
    """
    n = len(steps)
    if n <= max_points:
        return np.arange(n)
    buckets = max(1, max_points // 3)
    edges = np.linspace(0, n, buckets + 1).astype(np.int64)
    starts, stops = edges[:-1], edges[1:]
    nonempty = stops > starts
    starts, stops = starts[nonempty], stops[nonempty]
    finite = np.isfinite(values)
    low = np.where(finite, values, np.inf)
    high = np.where(finite, values, -np.inf)
    # Per stretch, all at once: the first point, the first minimum and maximum (where any value
    # is finite), and the first non-finite point (where there is one).
    stretch = np.repeat(np.arange(len(starts)), stops - starts)
    has_finite = np.add.reduceat(finite, starts) > 0
    first_low = _first_in_stretch(low == np.minimum.reduceat(low, starts)[stretch], starts)
    first_high = _first_in_stretch(high == np.maximum.reduceat(high, starts)[stretch], starts)
    first_gap = _first_in_stretch(~finite, starts)
    has_gap = (first_gap >= 0) & (first_gap < stops)
    keep = np.concatenate(
        [[0, n - 1], starts, first_low[has_finite], first_high[has_finite], first_gap[has_gap]]
    )
    return np.unique(keep.astype(np.int64))


def _first_in_stretch(mask: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """For each stretch beginning at `starts`, the first index at or after its start where
    `mask` holds (-1 when none does from there on)."""
    where = np.flatnonzero(mask)
    at = np.searchsorted(where, starts)
    found = np.full(len(starts), -1, dtype=np.int64)
    inside = at < len(where)
    found[inside] = where[at[inside]]
    return found


def smooth(values: np.ndarray, weight: float) -> np.ndarray:
    """Debiased exponential moving average (as W&B's and TensorBoard's slider), finite values only.

    Non-finite points stay NaN in the result and do not poison the average after them.
    """
    if weight <= 0 or len(values) == 0:
        return np.asarray(values, dtype=float)
    import pandas as pd  # for charts only: a build without them never imports pandas

    clean = np.where(np.isfinite(values), values, np.nan)
    averaged = pd.Series(clean).ewm(alpha=1.0 - weight, adjust=True, ignore_na=True).mean()
    result = averaged.to_numpy(dtype=float, copy=True)
    result[~np.isfinite(values)] = np.nan
    return result


def spark_bars(levels: Sequence[float | None], lo: float, hi: float, gap: str = "·") -> str:
    """One block character per level on the scale lo..hi; `gap` where a level is missing.

    A flat scale (hi <= lo) draws the lowest bar. Shared by the report's sparklines and the
    PR comment's baseline → candidate cells, which put two curves on one scale.
    """
    top = len(SPARK_BARS) - 1
    chars = []
    for level in levels:
        if level is None or not math.isfinite(level):
            chars.append(gap)
        elif hi <= lo:
            chars.append(SPARK_BARS[0])
        else:
            chars.append(SPARK_BARS[min(max(round((level - lo) / (hi - lo) * top), 0), top)])
    return "".join(chars)


def sparkline(steps: np.ndarray, values: np.ndarray, width: int = 16, log: bool = False) -> str:
    """A one-line chart in block characters: the mean of each of `width` equal stretches of x.

    A stretch whose values are all NaN or inf shows `×`; one with nothing to draw shows `·`;
    a flat curve is a row of the lowest bar. With `log`, means are taken of log10(value).
    """
    steps = np.asarray(steps, dtype=float)
    values = np.asarray(values, dtype=float)
    placed = np.isfinite(steps)
    if not placed.any():
        return ""
    xs, ys = steps[placed], values[placed]
    lo_x, hi_x = float(xs.min()), float(xs.max())
    if hi_x == lo_x:
        width = 1
        slot = np.zeros(len(xs), dtype=np.int64)
    else:
        slot = np.minimum(((xs - lo_x) / (hi_x - lo_x) * width).astype(np.int64), width - 1)
    usable = np.isfinite(ys) & (ys > 0 if log else True)
    if not usable.any():
        return ""
    levels = np.log10(ys[usable]) if log else ys[usable]
    sums = np.bincount(slot[usable], weights=levels, minlength=width)
    counts = np.bincount(slot[usable], minlength=width)
    broken = np.bincount(slot[~np.isfinite(ys)], minlength=width) > 0
    filled = counts > 0
    means = np.divide(sums, counts, out=np.zeros(width), where=filled)
    lo, hi = float(means[filled].min()), float(means[filled].max())
    bars = spark_bars(
        [float(m) if has else None for m, has in zip(means, filled, strict=True)], lo, hi
    )
    return "".join(
        "×" if bar == "·" and bad else bar for bar, bad in zip(bars, broken, strict=True)
    )
