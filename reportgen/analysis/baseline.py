"""Candidate runs against baseline runs, alias by alias, with tolerances that gate a build.

Baseline and candidate runs are both drawn from the runs a spec chose (`runs:`), so they share
the filters, the history fetch and the alias resolution of every other run. Each compared alias
is reduced to one number per run (`last`, `mean`, `min` or `max` of its finite values); several
baseline runs (seeds, say) are averaged. Each candidate run is then compared on its own, so one
bad seed is not hidden by good ones.

A tolerance is direction-aware: a `minimize` alias may rise, a `maximize` alias may fall, by at
most the larger of `abs` and `rel × |baseline|`. Improvements always pass.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np

from reportgen.metrics import ResolvedMetric, align, goal_for, reduce
from reportgen.runs import Run
from reportgen.select import filter_runs
from reportgen.spec import BaselineSpec, MetricAlias, Tolerance

# Statuses of one comparison row.
PASS, FAIL, MISSING, INFO = "pass", "fail", "missing", "info"

TRACE_POINTS = 16  # points per curve: enough for a sparkline, small enough for a comment


@dataclass(frozen=True)
class BaselineRow:
    """One alias in one candidate run, next to the baseline."""

    alias: str
    key: str | None
    goal: str
    reduce: str
    run_id: str
    run_name: str
    baseline: float | None
    candidate: float | None
    tolerance: Tolerance | None
    allowed: float | None
    status: str
    message: str | None = None

    @property
    def change(self) -> float | None:
        if self.baseline is None or self.candidate is None:
            return None
        return self.candidate - self.baseline

    @property
    def percent(self) -> float | None:
        """Change as a percentage of |baseline|; None when the baseline is 0."""
        change = self.change
        if change is None or self.baseline == 0:
            return None
        assert self.baseline is not None
        return 100.0 * change / abs(self.baseline)

    @property
    def better(self) -> bool | None:
        """Whether the candidate moved in the alias's goal direction (None when unchanged)."""
        change = self.change
        if change is None or change == 0 or self.goal not in ("minimize", "maximize"):
            return None
        return (change < 0) == (self.goal == "minimize")


@dataclass(frozen=True)
class Trace:
    """A short curve of one alias in one run, on a grid shared by every run of that alias."""

    alias: str
    run_id: str
    role: str  # "baseline" or "candidate"
    x_key: str
    steps: tuple[float, ...]
    values: tuple[float | None, ...]


@dataclass(frozen=True)
class BaselineComparison:
    baseline_ids: tuple[str, ...]
    candidate_ids: tuple[str, ...]
    aliases: tuple[str, ...]
    reduce: str
    rows: tuple[BaselineRow, ...]
    reasons: tuple[str, ...]
    traces: tuple[Trace, ...] = ()

    @property
    def failed(self) -> bool:
        return bool(self.reasons)

    def trace(self, alias: str, run_id: str) -> Trace | None:
        return next((t for t in self.traces if t.alias == alias and t.run_id == run_id), None)


def compare_with_baseline(
    spec: BaselineSpec,
    aliases: Mapping[str, MetricAlias],
    runs: Sequence[Run],
    metrics: Mapping[str, Mapping[str, ResolvedMetric]],
    now: datetime,
) -> BaselineComparison:
    """Pick baseline and candidate runs among `runs` and compare every alias asked for."""
    baselines = filter_runs(runs, spec.runs, now)
    baseline_ids = {run.id for run in baselines}
    rest = [run for run in runs if run.id not in baseline_ids]
    candidates = filter_runs(rest, spec.candidate, now) if spec.candidate else rest
    names = list(spec.metrics) if spec.metrics is not None else list(aliases)
    names += [a for a in spec.tolerances if a not in names]

    rows: list[BaselineRow] = []
    reasons: list[str] = []
    gating = bool(spec.tolerances) and spec.missing == "fail"
    if gating and not baselines:
        reasons.append("no baseline run: none of the chosen runs matched the baseline rule")
    if gating and not candidates:
        reasons.append("no candidate run: every chosen run is a baseline or matched no rule")
    for run in candidates:
        for alias in names:
            row = _row(spec, alias, aliases.get(alias), run, baselines, metrics)
            rows.append(row)
            if row.status == FAIL or (row.status == MISSING and spec.missing == "fail"):
                assert row.message is not None
                reasons.append(row.message)
    traces = _traces(names, baselines, candidates, metrics)
    return BaselineComparison(
        baseline_ids=tuple(run.id for run in baselines),
        candidate_ids=tuple(run.id for run in candidates),
        aliases=tuple(names),
        reduce=spec.reduce,
        rows=tuple(rows),
        reasons=tuple(reasons),
        traces=traces,
    )


def _reduced(metric: ResolvedMetric | None, how: str) -> float | None:
    if metric is None or not metric.found:
        return None
    return reduce(metric.points, how)


def _row(
    spec: BaselineSpec,
    alias: str,
    definition: MetricAlias | None,
    run: Run,
    baselines: Sequence[Run],
    metrics: Mapping[str, Mapping[str, ResolvedMetric]],
) -> BaselineRow:
    tolerance = spec.tolerances.get(alias)
    how = (tolerance.reduce if tolerance else None) or spec.reduce
    goal = goal_for(definition, alias)
    resolved = metrics[run.id].get(alias)
    found = [_reduced(metrics[b.id].get(alias), how) for b in baselines]
    known = [v for v in found if v is not None]
    base = float(np.mean(known)) if known else None
    cand = _reduced(resolved, how)
    row = BaselineRow(
        alias=alias,
        key=resolved.key if resolved else None,
        goal=goal,
        reduce=how,
        run_id=run.id,
        run_name=run.name,
        baseline=base,
        candidate=cand,
        tolerance=tolerance,
        allowed=None,
        status=INFO,
    )
    return _judge(row, tolerance)


def _judge(row: BaselineRow, tolerance: Tolerance | None) -> BaselineRow:
    """Pass or fail a row against its tolerance; rows without one are information only."""
    where = f"{row.alias} ({row.reduce}) in run {row.run_name} ({row.run_id})"
    if row.baseline is None or row.candidate is None:
        if tolerance is None:
            return row
        side = "baseline runs" if row.baseline is None else "candidate run"
        return replace(row, status=MISSING, message=f"{where}: no finite value in the {side}")
    if tolerance is None:
        return row
    allowed = max(
        tolerance.abs or 0.0,
        (tolerance.rel or 0.0) * abs(row.baseline),
    )
    change = row.candidate - row.baseline
    # With no known direction (goal "none"), a move either way beyond the tolerance fails.
    worse_by = {"minimize": change, "maximize": -change}.get(row.goal, abs(change))
    # Float noise (0.1 + 0.2) must not fail a change that equals the allowance.
    slack = 1e-9 * max(abs(row.baseline), abs(row.candidate), 1e-300)
    if worse_by <= allowed + slack:
        return replace(row, allowed=allowed, status=PASS)
    percent = f" ({row.percent:+.3g}%)" if row.percent is not None else ""
    message = (
        f"{where}: {_num(row.candidate)} vs baseline {_num(row.baseline)} is "
        f"{'worse' if row.goal in ('minimize', 'maximize') else 'off'} by "
        f"{_num(worse_by)}{percent}, more than the allowed {_num(allowed)} "
        f"({_allowance(tolerance)}; goal: {row.goal})"
    )
    return replace(row, allowed=allowed, status=FAIL, message=message)


def _allowance(tolerance: Tolerance) -> str:
    parts = []
    if tolerance.abs is not None:
        parts.append(f"abs {_num(tolerance.abs)}")
    if tolerance.rel is not None:
        parts.append(f"rel {_num(100 * tolerance.rel)}%")
    return ", ".join(parts)


def _num(value: float) -> str:
    return f"{value:.4g}"


def _traces(
    aliases: Sequence[str],
    baselines: Sequence[Run],
    candidates: Sequence[Run],
    metrics: Mapping[str, Mapping[str, ResolvedMetric]],
) -> tuple[Trace, ...]:
    """Each run's curve of each alias on one shared grid, for sparklines and charts."""
    traces: list[Trace] = []
    roles = [(run, "baseline") for run in baselines] + [(run, "candidate") for run in candidates]
    for alias in aliases:
        found = [
            (run, role, metrics[run.id][alias])
            for run, role in roles
            if alias in metrics[run.id] and metrics[run.id][alias].found
        ]
        found = [(run, role, m) for run, role, m in found if len(m.points)]
        if not found:
            continue
        lo = min(float(m.points.xs.min()) for _, _, m in found)
        hi = max(float(m.points.xs.max()) for _, _, m in found)
        grid = np.linspace(lo, hi, TRACE_POINTS)
        if lo.is_integer() and hi.is_integer():
            grid = np.round(grid)  # whole steps read better on a chart's axis
        grid = np.unique(grid)
        for run, role, metric in found:
            values, present = align(metric.points, grid, "asof")
            present &= grid <= metric.points.xs.max()  # a run that stopped early stays short
            traces.append(
                Trace(
                    alias=alias,
                    run_id=run.id,
                    role=role,
                    x_key=metric.x_key,
                    steps=tuple(float(s) for s in grid),
                    values=tuple(
                        float(v) if p and math.isfinite(v) else None
                        for v, p in zip(values, present, strict=True)
                    ),
                )
            )
    return tuple(traces)
