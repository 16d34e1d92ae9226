"""From a run's raw history to named metrics: aliases, derived columns, sampling and stats.

An alias resolves per run to the first of its keys that the run logged (the report says which);
a derived alias is computed where all its inputs were logged. Sampling puts every alias of a run
on one step grid; a value logged as NaN stays NaN and is never confused with "not logged".
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

from reportgen.expressions import evaluate, evaluate_condition, parse_expression
from reportgen.runs import STEP, History, Points, Run
from reportgen.spec import MetricAlias, Sampling

# Words of a metric's name that say which direction is better when an alias has no `goal`.
# Optimiser and policy diagnostics (gradient norm, KL, clip fraction, learning rate, response
# length) have no better direction: lower is at most "safer", so they are checked first and a
# comparison shows "no direction" for them, as for any name it does not know. A policy's
# entropy counts as higher-is-better: a falling entropy is the collapse the health checks fear.
_NO_DIRECTION_WORDS = frozenset(
    [
        "grad",
        "gradnorm",
        "norm",
        "kl",
        "ppo_kl",
        "approx_kl",
        "clip",
        "clipfrac",
        "clipped",
        "lr",
        "learning",
        "rate",
        "length",
        "lengths",
        "len",
        "step",
        "steps",
        "epoch",
        "epochs",
        "time",
        "runtime",
        "throughput",
        "tokens",
        "samples",
        "std",
        "temperature",
        "beta",
        "coef",
        "coeff",
    ]
)
_MINIMIZE_WORDS = frozenset(
    [
        "loss",
        "losses",
        "error",
        "err",
        "perplexity",
        "ppl",
        "regret",
        "wer",
        "cer",
        "mse",
        "mae",
        "rmse",
        "nll",
        "bpb",
        "bpc",
        "cost",
        "latency",
    ]
)
_MAXIMIZE_WORDS = frozenset(
    [
        "reward",
        "rewards",
        "return",
        "returns",
        "score",
        "scores",
        "acc",
        "accuracy",
        "f1",
        "bleu",
        "rouge",
        "pass",
        "success",
        "win",
        "auc",
        "precision",
        "recall",
        "em",
        "exact",
        "correct",
        "solved",
        "entropy",
    ]
)
_WORD = re.compile(r"[a-z0-9]+")

GOALS = ("minimize", "maximize", "none")


@dataclass(frozen=True)
class ResolvedMetric:
    """One alias in one run: which key it resolved to, and its logged points."""

    alias: str
    key: str | None
    x_key: str
    points: Points
    tried: tuple[str, ...] = ()
    closest: tuple[str, ...] = ()
    expr: str | None = None

    @property
    def found(self) -> bool:
        return self.key is not None

    def missing_note(self, run_name: str) -> str:
        tried = ", ".join(self.tried)
        note = f"metric '{self.alias}' is missing in run {run_name}: none of [{tried}] was logged"
        if self.closest:
            note += f"; closest keys that exist: {', '.join(self.closest)}"
        return note


def goal_for(alias: MetricAlias | None, name: str) -> str:
    """The better direction: the alias's `goal`, else what the name's words say, else "none".

    Loss, perplexity, error: minimize. Reward, return, score, accuracy, entropy: maximize.
    Gradient norm, KL, clip fraction, learning rate, length, and any name it does not know:
    "none" (no direction), so a comparison never calls a change of them better or worse.
    """
    if alias is not None and alias.goal:
        return alias.goal
    words = set(_WORD.findall(name.lower()))
    if words & _NO_DIRECTION_WORDS:
        return "none"
    if words & _MINIMIZE_WORDS:
        return "minimize"
    if words & _MAXIMIZE_WORDS:
        return "maximize"
    lowered = name.lower()
    if any(word in lowered for word in ("loss", "perplexity", "error")):
        return "minimize"
    if any(word in lowered for word in ("reward", "accuracy", "score")):
        return "maximize"
    return "none"


def resolve_metrics(
    run: Run, history: History, aliases: Mapping[str, MetricAlias], x: str | None = None
) -> dict[str, ResolvedMetric]:
    """Resolve every alias for one run, derived ones after the keys they use.

    With `x=None` each metric is indexed on its natural axis: the alias's own `x`, else the step
    metric the run declared for the key, else `_step` (stats and health checks use this). With
    an `x`, every alias without its own `x` shares that axis (a sampled table needs one).
    """
    resolved: dict[str, ResolvedMetric] = {}
    logged = history.keys()
    for name, alias in aliases.items():
        if alias.expr is None:
            resolved[name] = _resolve_keys(run, history, alias, x, logged)
    for name, alias in _in_dependency_order(aliases):
        resolved[name] = _resolve_expr(alias, resolved, x or STEP)
    return {name: resolved[name] for name in aliases}


def _x_key(run: Run, alias: MetricAlias, key: str, x: str | None) -> str:
    return alias.x or x or run.x_key_for(key)


@functools.lru_cache(maxsize=1024)
def _close_keys(key: str, logged: tuple[str, ...]) -> tuple[str, ...]:
    """The logged keys most like `key`; remembered, as runs of one project share their keys
    and difflib is slow."""
    return tuple(difflib.get_close_matches(key, logged, n=3, cutoff=0.5))


def _resolve_keys(
    run: Run, history: History, alias: MetricAlias, x: str | None, logged: list[str]
) -> ResolvedMetric:
    for key in alias.keys:
        if key in history:
            x_key = _x_key(run, alias, key, x)
            return ResolvedMetric(alias.name, key, x_key, history.points(key, x_key), alias.keys)
    closest: list[str] = []
    for key in alias.keys:
        closest += [c for c in _close_keys(key, tuple(logged)) if c not in closest]
    x_key = alias.x or x or STEP
    return ResolvedMetric(
        alias.name, None, x_key, history.points("", x_key), alias.keys, tuple(closest[:3])
    )


def _in_dependency_order(aliases: Mapping[str, MetricAlias]) -> list[tuple[str, MetricAlias]]:
    derived = {n: a for n, a in aliases.items() if a.expr is not None}
    ordered: list[tuple[str, MetricAlias]] = []
    visiting: set[str] = set()

    def visit(name: str) -> None:
        if name in visiting or any(n == name for n, _ in ordered):
            return
        visiting.add(name)
        assert derived[name].expr is not None
        for used in parse_expression(derived[name].expr or ""):
            if used in derived:
                visit(used)
        ordered.append((name, derived[name]))

    for name in derived:
        visit(name)
    return ordered


def _resolve_expr(
    alias: MetricAlias, resolved: Mapping[str, ResolvedMetric], default_x: str
) -> ResolvedMetric:
    assert alias.expr is not None
    used = sorted(parse_expression(alias.expr))
    inputs = [resolved[name] for name in used if name in resolved]
    missing = [m.alias for m in inputs if not m.found]
    x_key = inputs[0].x_key if inputs else default_x
    if missing or len(inputs) != len(used):
        empty = Points(alias.name, x_key, np.array([], dtype=np.int64), np.array([], dtype=float))
        return ResolvedMetric(alias.name, None, x_key, empty, tuple(used), expr=alias.expr)
    # Where every input was logged: each input's xs are distinct and ascending.
    xs = functools.reduce(np.intersect1d, [m.points.xs for m in inputs])
    columns = {m.alias: m.points.at(xs)[0] for m in inputs}
    values = np.array(np.broadcast_to(evaluate(alias.expr, columns), (len(xs),)), dtype=float)
    points = Points(alias.name, x_key, xs, values)
    return ResolvedMetric(alias.name, f"={alias.expr}", x_key, points, tuple(used), expr=alias.expr)


# --- sampling ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SampledTable:
    """Aliases of one run on one step grid; `present[alias]` is False where nothing applies."""

    steps: np.ndarray
    values: dict[str, np.ndarray]
    present: dict[str, np.ndarray]
    notes: tuple[str, ...] = ()
    # (columns, the CSV text of those columns): rendered by the process that digested the run
    # (reportgen.digest), so the CSV files of a build are rendered on every core.
    csv: tuple[tuple[str, ...], str] | None = None


def sample_grid(xs: np.ndarray, sampling: Sampling) -> tuple[np.ndarray, str | None]:
    """Steps start, start+every, … up to the end, and the end itself.

    The end is the last logged step, or `stop` when the run goes beyond it. A range shorter
    than one interval keeps every logged step in it instead (with a note saying so).
    """
    if len(xs) == 0:
        return np.array([], dtype=np.int64), None
    last = xs.max()
    end = min(sampling.stop, last) if sampling.stop is not None else last
    if end < sampling.start:
        return np.array([], dtype=np.int64), None
    if end - sampling.start < sampling.every:
        kept = np.unique(xs[(xs >= sampling.start) & (xs <= end)])
        note = (
            f"the run ends at step {end:g}, within one sampling interval ({sampling.every}) "
            f"of the start: all {len(kept)} logged steps are kept"
        )
        return kept, note
    regular = np.arange(sampling.start, end + 1, sampling.every)
    grid = np.concatenate([regular, [end]])
    if regular[-1] < end:  # ascending already: what np.unique would return, without a sort
        return grid, None
    if regular[-1] == end:
        return grid[:-1], None
    return np.unique(grid), None  # a fractional end, passed by the last regular step


def align(points: Points, grid: np.ndarray, how: str) -> tuple[np.ndarray, np.ndarray]:
    """Values of a metric's points on grid steps, and whether each grid step has one."""
    xs, vs = points.xs, points.values
    n = len(xs)
    values = np.full(len(grid), np.nan)
    present = np.zeros(len(grid), dtype=bool)
    if n == 0 or len(grid) == 0:
        return values, present
    if how == "exact":
        values, present = points.at(grid)
    elif how == "asof":
        idx = np.searchsorted(xs, grid, side="right") - 1
        present = idx >= 0
        values[present] = vs[idx[present]]
    elif how == "nearest":
        right = np.clip(np.searchsorted(xs, grid), 0, n - 1)
        left = np.clip(right - 1, 0, n - 1)
        take_left = np.abs(grid - xs[left]) <= np.abs(xs[right] - grid)
        idx = np.where(take_left, left, right)
        present[:] = True
        values = vs[idx].astype(float)
    elif how == "interpolate":
        present = (grid >= xs[0]) & (grid <= xs[-1])
        right = np.clip(np.searchsorted(xs, grid), 0, n - 1)
        left = np.clip(right - 1, 0, n - 1)
        exact = xs[right] == grid
        span = (xs[right] - xs[left]).astype(float)
        with np.errstate(all="ignore"):
            weight = np.where(span > 0, (grid - xs[left]) / np.where(span > 0, span, 1), 0.0)
            mixed = vs[left] + (vs[right] - vs[left]) * weight
        values = np.where(exact, vs[right], mixed)
        values[~present] = np.nan
    else:
        raise ValueError(f"unknown alignment {how!r}")
    return values, present


def sample(resolved: Mapping[str, ResolvedMetric], sampling: Sampling) -> SampledTable:
    """Put a run's aliases on one grid (found aliases only decide the grid's extent)."""
    found = [m for m in resolved.values() if m.found and len(m.points)]
    if not found:
        empty = np.array([], dtype=np.int64)
        return SampledTable(
            empty,
            {a: empty.astype(float) for a in resolved},
            {a: empty.astype(bool) for a in resolved},
        )
    # Every x, repeats and all: the grid needs their extent (and, over a short range, the
    # distinct ones among them, which sample_grid finds).
    xs = np.concatenate([m.points.xs for m in found])
    grid, note = sample_grid(xs, sampling)
    values: dict[str, np.ndarray] = {}
    present: dict[str, np.ndarray] = {}
    for alias, metric in resolved.items():
        how = "exact" if note else sampling.align
        values[alias], present[alias] = align(metric.points, grid, how)
    return SampledTable(grid, values, present, (note,) if note else ())


def keep_rows(table: SampledTable, where: str) -> SampledTable:
    """Only the grid rows where a condition holds (a value not present there counts as NaN)."""
    rows = len(table.steps)
    columns = {
        alias: np.where(table.present[alias], table.values[alias], np.nan) for alias in table.values
    }
    columns.setdefault("step", table.steps.astype(float))
    keep = evaluate_condition(where, columns, rows)
    note = f"where {where}: kept {int(keep.sum())} of {rows} sampled rows"
    return SampledTable(
        table.steps[keep],
        {alias: values[keep] for alias, values in table.values.items()},
        {alias: present[keep] for alias, present in table.present.items()},
        (*table.notes, note),
    )


# --- stats -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricStats:
    """What a table of one metric in one run says at a glance."""

    points: int
    non_finite: int
    first: float | None = None
    first_step: float | None = None
    last: float | None = None
    last_step: float | None = None
    min: float | None = None
    min_step: float | None = None
    max: float | None = None
    max_step: float | None = None
    mean: float | None = None
    trend: str = "n/a"
    percentiles: dict[str, float] = field(default_factory=dict)


PERCENTILES = (10, 25, 50, 75, 90)


def describe(points: Points) -> MetricStats:
    """First/last/min/max/mean over finite values, a trend word, and percentiles."""
    values, steps = points.values, points.xs
    finite = np.isfinite(values)
    count = int(finite.sum())
    if count == 0:
        return MetricStats(points=len(values), non_finite=len(values))
    fv, fs = values[finite], steps[finite]
    lo, hi = int(np.argmin(fv)), int(np.argmax(fv))
    # Every percentile in one call (the same interpolation as one call each, a tenth of the
    # time): those shown, then the 5th and 95th that `trend_word` measures the spread with.
    found = np.percentile(fv, [*PERCENTILES, *TREND_SPREAD]).tolist()
    shown, spread = found[: len(PERCENTILES)], found[len(PERCENTILES) :]
    return MetricStats(
        points=len(values),
        non_finite=len(values) - count,
        first=float(fv[0]),
        first_step=float(fs[0]),
        last=float(fv[-1]),
        last_step=float(fs[-1]),
        min=float(fv[lo]),
        min_step=float(fs[lo]),
        max=float(fv[hi]),
        max_step=float(fs[hi]),
        mean=float(fv.mean()),
        trend=trend_word(fv, (spread[0], spread[1])),
        percentiles={f"p{p}": value for p, value in zip(PERCENTILES, shown, strict=True)},
    )


TREND_SPREAD = (5, 95)  # the percentiles between which `trend_word` measures a curve's spread


def trend_word(values: np.ndarray, spread_by: tuple[float, float] | None = None) -> str:
    """rising / falling / flat, comparing the means of the first and last fifths to the spread
    (between the TREND_SPREAD percentiles: `spread_by` when the caller has them)."""
    n = len(values)
    if n < 4:
        return "n/a"
    part = max(1, n // 5)
    head, tail = float(np.mean(values[:part])), float(np.mean(values[-part:]))
    low, high = spread_by or np.percentile(values, TREND_SPREAD).tolist()
    spread = float(high - low)
    scale = max(spread, abs(head), abs(tail), 1e-12)
    change = (tail - head) / scale
    if abs(change) < 0.05:
        return "flat"
    return "rising" if change > 0 else "falling"


def average_ranks(values: Sequence[float] | np.ndarray) -> np.ndarray:
    """Each value's rank from 1 (ties share their mean rank, NaN stays NaN): exactly pandas'
    `Series.rank()`, without importing pandas."""
    values = np.asarray(values, dtype=float)
    ranks = np.full(len(values), np.nan)
    kept = np.flatnonzero(~np.isnan(values))
    order = kept[np.argsort(values[kept], kind="stable")]
    ordered = values[order]
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    ends = np.append(starts[1:], len(ordered))  # a tie group holds ranks starts+1 … ends
    ranks[order] = np.repeat((starts + 1 + ends) / 2, ends - starts)
    return ranks


def reduce(points: Points, how: str) -> float | None:
    """One number from a metric's points (finite values only): mean, first, last, min or max."""
    values = points.values[np.isfinite(points.values)]
    if len(values) == 0:
        return None
    if how == "mean":
        return float(values.mean())
    if how == "first":
        return float(values[0])
    if how == "last":
        return float(values[-1])
    if how == "min":
        return float(values.min())
    if how == "max":
        return float(values.max())
    raise ValueError(f"unknown reduction {how!r}")


def stat_values(points: Points, names: Sequence[str]) -> dict[str, float | None]:
    """Named statistics of a metric's finite values (None where none exist).

    Percentiles `pNN` are numpy.percentile's default (linear); `std` is the sample standard
    deviation; `count` and `non_finite` count logged points.
    """
    values = points.values
    finite = values[np.isfinite(values)]
    wanted = [n for n in names if n.startswith("p") and n[1:].isdigit()]
    percentiles: dict[str, float] = {}
    if wanted and len(finite):
        # One call for all of them: the same interpolation as one call per percentile.
        found = np.percentile(finite, [int(n[1:]) for n in wanted])
        percentiles = {n: float(v) for n, v in zip(wanted, found, strict=True)}
    result: dict[str, float | None] = {}
    for name in names:
        if name == "count":
            result[name] = len(finite)
        elif name == "non_finite":
            result[name] = len(values) - len(finite)
        elif len(finite) == 0:
            result[name] = None
        elif name in percentiles:
            result[name] = percentiles[name]
        elif name == "std":
            result[name] = float(np.std(finite, ddof=1)) if len(finite) > 1 else None
        else:
            result[name] = reduce(points, name)
    return result
