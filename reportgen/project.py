"""The project table: one row per run, then group-by aggregates, top N and correlations.

It replaces the export scripts teams keep: `config.*` columns (nested configs flattened with
dots), `metric.*` columns (each alias reduced as the spec says, plus every numeric summary
value), and the raw config and summary for anything the columns leave out.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from reportgen.metrics import ResolvedMetric, goal_for, reduce
from reportgen.runs import Run, flatten
from reportgen.spec import MetricAlias, ParetoSpec, PivotSpec, ProjectTableSpec

if TYPE_CHECKING:
    from reportgen.digest import StepSpan

# Columns about the run itself, before the config.* and metric.* columns.
RUN_COLUMNS = (
    ("run_id", "string"),
    ("run_name", "string"),
    ("state", "string"),
    ("entity", "string"),
    ("project", "string"),
    ("group", "string"),
    ("job_type", "string"),
    ("tags", "string"),
    ("created_at", "timestamp"),
    ("steps", "integer"),
    ("last_step", "integer"),
)
JSON_COLUMNS = ("config_json", "summary_json")


@dataclass(frozen=True)
class ProjectColumn:
    """A column and the one type all its values share (json: written as JSON text)."""

    name: str
    kind: str


@dataclass(frozen=True)
class TopRun:
    rank: int
    run_id: str
    run_name: str
    value: float


@dataclass(frozen=True)
class GroupRow:
    """One group: its key values, how many runs it has, and `values[column][aggregate]`."""

    keys: tuple[Any, ...]
    runs: int
    values: dict[str, dict[str, float | None]]


@dataclass(frozen=True)
class GroupTable:
    by: tuple[str, ...]
    metrics: tuple[str, ...]
    aggregates: tuple[str, ...]
    rows: tuple[GroupRow, ...]
    file: str


@dataclass(frozen=True)
class Correlation:
    """Spearman's rank correlation of one numeric config column with the primary metric."""

    column: str
    rho: float
    runs: int


@dataclass(frozen=True)
class ParetoPoint:
    """One run with finite quality and cost; `on_front` when no other run beats it on both."""

    run_id: str
    run_name: str
    quality: float
    cost: float
    on_front: bool


@dataclass(frozen=True)
class ParetoFront:
    """Quality against cost over the runs that have both, cheapest (in cost's direction) first."""

    quality: str
    cost: str
    quality_goal: str
    cost_goal: str
    points: tuple[ParetoPoint, ...]
    without_values: tuple[str, ...]  # run ids lacking a finite quality or cost
    file: str

    @property
    def front(self) -> tuple[ParetoPoint, ...]:
        return tuple(p for p in self.points if p.on_front)


@dataclass(frozen=True)
class PivotTable:
    """`aggregate` of `metric` for each pair of values of two columns (None: no run, or no value).

    `cells[i][j]` belongs to `row_values[i]` and `column_values[j]`; `runs[i][j]` counts the
    runs with both values (whether or not they have the metric).
    """

    rows: str
    columns: str
    metric: str
    aggregate: str
    row_values: tuple[Any, ...]
    column_values: tuple[Any, ...]
    cells: tuple[tuple[float | None, ...], ...]
    runs: tuple[tuple[int, ...], ...]
    file: str


@dataclass(frozen=True)
class ProjectTable:
    name: str
    columns: tuple[ProjectColumn, ...]
    rows: tuple[dict[str, Any], ...]
    reductions: dict[str, str]
    primary: str | None
    goal: str | None
    top_n: int
    top: tuple[TopRun, ...]
    groups: GroupTable | None
    correlate: bool
    min_runs: int
    correlation_runs: int
    correlations: tuple[Correlation, ...]
    correlation_note: str | None
    notes: tuple[str, ...] = ()
    name_fields: tuple[str, ...] = ()
    pareto: ParetoFront | None = None
    pivot: PivotTable | None = None

    @property
    def csv_file(self) -> str:
        return f"{self.name}.csv"

    @property
    def parquet_file(self) -> str:
        return f"{self.name}.parquet"

    @property
    def top_file(self) -> str:
        return f"{self.name}_top.csv"

    @property
    def correlations_file(self) -> str:
        return f"{self.name}_correlations.csv"

    @property
    def primary_column(self) -> str | None:
        return f"metric.{self.primary}" if self.primary else None

    def column_names(self, kinds: Sequence[str] | None = None) -> list[str]:
        return [c.name for c in self.columns if kinds is None or c.kind in kinds]


# --- building the rows ---------------------------------------------------------------------------


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def column_kind(values: Sequence[Any]) -> str:
    """The narrowest type every present value fits; mixed or nested values are JSON."""
    present = [v for v in values if v is not None]
    if not present:
        return "string"
    if all(isinstance(v, bool) for v in present):
        return "boolean"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return "integer"
    if all(_numeric(v) for v in present):
        return "number"
    if all(isinstance(v, str) for v in present):
        return "string"
    return "json"


def _run_cells(run: Run, span: StepSpan) -> dict[str, Any]:
    return {
        "run_id": run.id,
        "run_name": run.name,
        "state": run.state,
        "entity": run.entity,
        "project": run.project,
        "group": run.group,
        "job_type": run.job_type,
        "tags": ", ".join(run.tags),
        "created_at": run.created_at,
        "steps": span.steps,
        "last_step": span.last_step,
    }


def run_cell(series: pd.Series, how: str) -> float | None:
    """One run's value of an alias: `reduce`, except that `last` of a run whose curve ended
    NaN or infinite is that value, not its last finite one (a diverged run must not look
    like it ended well, in its row or in its group's mean)."""
    if how == "last" and len(series):
        final = float(series.iloc[-1])
        if not math.isfinite(final):
            return final
    return reduce(series, how)


def _summary_numbers(summary: Mapping[str, Any]) -> dict[str, float]:
    """Numeric summary values by flattened key, W&B's own `_…` bookkeeping left out."""
    return {
        key: float(value)
        for key, value in flatten(summary).items()
        if not key.startswith("_") and _numeric(value)
    }


@dataclass(frozen=True)
class RunCells:
    """One run's part of the project table that needs only that run: its flattened config,
    numeric summary values and reduced aliases. Computed where the run is digested (a Ray task,
    say), so that the table stage only gathers values."""

    config: dict[str, Any]
    summary: dict[str, float]
    metrics: dict[str, float | None]


def run_cells(spec: ProjectTableSpec, run: Run, metrics: Mapping[str, ResolvedMetric]) -> RunCells:
    return RunCells(
        config=flatten(run.config),
        summary=_summary_numbers(run.summary) if spec.summary else {},
        metrics={
            alias: run_cell(metrics[alias].series, how) if metrics[alias].found else None
            for alias, how in (spec.metrics or {}).items()
        },
    )


_INTEGER = re.compile(r"[+-]?[0-9]+")
_DECIMAL = re.compile(r"[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?")


def name_value(text: str | None) -> Any:
    """A field taken from a run name: an int or float when the text is exactly one, else text.

    Only plain decimal notation counts (`3e-4`, `0.5`, `128`); `nan`, `inf` and `1_000` stay text.
    """
    if text is None:
        return None
    if _INTEGER.fullmatch(text):
        return int(text)
    if _DECIMAL.fullmatch(text):
        return float(text)
    return text


def name_fields(pattern: str, name: str) -> dict[str, Any] | None:
    """The named groups of `pattern` searched in a run name; None when the name does not match."""
    found = re.search(pattern, name)
    if found is None:
        return None
    return {key: name_value(value) for key, value in found.groupdict().items()}


def build_rows(
    spec: ProjectTableSpec,
    runs: Sequence[Run],
    spans: Mapping[str, StepSpan],
    cells: Mapping[str, RunCells],
) -> tuple[list[ProjectColumn], list[dict[str, Any]], list[str]]:
    """The table's columns and one dict of cells per run (None where a run has no value)."""
    reductions = spec.metrics or {}
    configs = {run.id: cells[run.id].config for run in runs}
    summaries = {run.id: cells[run.id].summary for run in runs}
    config_keys = sorted(set().union(*configs.values())) if runs else []
    alias_columns = [f"metric.{alias}" for alias in reductions]
    summary_keys = sorted(set().union(*summaries.values())) if runs else []
    shadowed = [k for k in summary_keys if f"metric.{k}" in alias_columns]
    summary_columns = [f"metric.{k}" for k in summary_keys if k not in shadowed]
    notes = [
        f"summary value '{key}' is not a column: the alias of the same name is" for key in shadowed
    ]
    fields = list(re.compile(spec.name_fields).groupindex) if spec.name_fields else []
    unmatched = []
    rows: list[dict[str, Any]] = []
    for run in runs:
        row = _run_cells(run, spans[run.id])
        if spec.name_fields:
            parsed = name_fields(spec.name_fields, run.name)
            if parsed is None:
                unmatched.append(run.name)
            for field_name in fields:
                row[f"name.{field_name}"] = (parsed or {}).get(field_name)
        for key in config_keys:
            row[f"config.{key}"] = configs[run.id].get(key)
        for alias, value in cells[run.id].metrics.items():
            row[f"metric.{alias}"] = value
        for key in summary_keys:
            if key not in shadowed:
                row[f"metric.{key}"] = summaries[run.id].get(key)
        row["config_json"] = run.config
        row["summary_json"] = run.summary
        rows.append(row)
    if unmatched:
        shown = ", ".join(repr(name) for name in unmatched[:5])
        more = f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else ""
        notes.append(
            f"project_table.name_fields: {len(unmatched)} of {len(runs)} run names do not match, "
            f"so their name.* cells are empty: {shown}{more}"
        )
    columns = [ProjectColumn(name, kind) for name, kind in RUN_COLUMNS]
    for name in [f"name.{f}" for f in fields] + [f"config.{k}" for k in config_keys]:
        columns.append(ProjectColumn(name, column_kind([r[name] for r in rows])))
    columns += [ProjectColumn(name, "number") for name in alias_columns + summary_columns]
    columns += [ProjectColumn(name, "json") for name in JSON_COLUMNS]
    return columns, rows, notes


# --- top N ---------------------------------------------------------------------------------------


def _finite(value: Any) -> bool:
    return _numeric(value) and math.isfinite(value)


def numbers(rows: Sequence[Mapping[str, Any]], column: str) -> np.ndarray:
    """A numeric column as floats, NaN where a run has no value (or not a number)."""
    values = [r.get(column) for r in rows]
    try:
        return np.asarray(values, dtype=float)  # None becomes NaN
    except (TypeError, ValueError):
        return np.asarray([v if _numeric(v) else np.nan for v in values], dtype=float)


def top_runs(rows: Sequence[Mapping[str, Any]], column: str, goal: str, n: int) -> list[TopRun]:
    """The n best runs by a column in the goal's direction; ties by run id; no value, no rank."""
    values = numbers(rows, column)
    ranked = np.flatnonzero(np.isfinite(values))
    sign = 1.0 if goal == "minimize" else -1.0
    ids = np.asarray([rows[i]["run_id"] for i in ranked.tolist()], dtype=str)
    order = ranked[np.lexsort((ids, sign * values[ranked]))].tolist() if len(ranked) else []
    return [
        TopRun(rank, rows[i]["run_id"], rows[i]["run_name"], float(values[i]))
        for rank, i in enumerate(order[:n], start=1)
    ]


# --- group by ------------------------------------------------------------------------------------


def _group_key(value: Any) -> Any:
    """A hashable stand-in for a cell (lists and dicts by their JSON text)."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, sort_keys=True, default=str)
    if isinstance(value, float) and math.isnan(value):
        return "NaN"
    return value


def _sort_key(keys: tuple[Any, ...]) -> tuple[tuple[int, float, str], ...]:
    """Groups in a stable order: numbers by value, then text, then missing values last."""
    order = []
    for value in keys:
        if value is None:
            order.append((3, 0.0, ""))
        elif _numeric(value) or isinstance(value, bool):
            order.append((0, float(value), ""))
        elif isinstance(value, str):
            order.append((1, 0.0, value))
        else:
            order.append((2, 0.0, str(value)))
    return tuple(order)


def aggregate(values: Sequence[Any], how: str) -> float | None:
    """count, mean, std (sample, n-1), min or max of finite values; None when undefined.

    A member whose value is NaN or infinite (a run that ended diverged) makes the group's
    mean and std NaN: leaving it out would report the survivors as the group's result.
    """
    finite = np.asarray([v for v in values if _finite(v)], dtype=float)
    if how == "count":
        return len(finite)
    if how in ("mean", "std") and any(_numeric(v) and not math.isfinite(v) for v in values):
        return math.nan
    if len(finite) == 0 or (how == "std" and len(finite) < 2):
        return None
    if how == "mean":
        return float(finite.mean())
    if how == "std":
        return float(finite.std(ddof=1))
    if how == "min":
        return float(finite.min())
    if how == "max":
        return float(finite.max())
    raise ValueError(f"unknown aggregate {how!r}")


def group_rows(
    rows: Sequence[Mapping[str, Any]],
    by: Sequence[str],
    metrics: Sequence[str],
    aggregates: Sequence[str],
    file: str,
) -> GroupTable:
    """Runs with equal values in `by` (a missing value is its own group), aggregated."""
    groups: dict[tuple[Any, ...], list[Mapping[str, Any]]] = {}
    for row in rows:
        key = tuple(_group_key(row.get(column)) for column in by)
        groups.setdefault(key, []).append(row)
    result = []
    for key in sorted(groups, key=_sort_key):
        members = groups[key]
        values = {
            metric: {how: aggregate([m.get(metric) for m in members], how) for how in aggregates}
            for metric in metrics
        }
        result.append(GroupRow(key, len(members), values))
    return GroupTable(tuple(by), tuple(metrics), tuple(aggregates), tuple(result), file)


# --- correlations --------------------------------------------------------------------------------


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float | None:
    """Spearman's rho: Pearson's correlation of the ranks (ties share their mean rank)."""
    rx = pd.Series(x, dtype=float).rank(method="average").to_numpy()
    ry = pd.Series(y, dtype=float).rank(method="average").to_numpy()
    if len(rx) < 2 or np.std(rx) == 0 or np.std(ry) == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def correlations(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[ProjectColumn],
    primary: str,
    min_runs: int,
) -> tuple[list[Correlation], int, str | None]:
    """Each numeric config column that varies, against the primary column, strongest first.

    Returns the correlations, how many runs have a finite primary value, and a note when
    there are too few runs (fewer than `min_runs`) or nothing to correlate.
    """
    ys = numbers(rows, primary)
    has_primary = np.isfinite(ys)
    count = int(has_primary.sum())
    if count < min_runs:
        return (
            [],
            count,
            f"too few runs for correlations: {count} have a value of {primary}, "
            f"at least {min_runs} are needed (project_table.min_runs)",
        )
    found = []
    numeric = [
        c.name
        for c in columns
        if c.name.startswith(("config.", "name.")) and c.kind in ("integer", "number")
    ]
    for column in numeric:
        xs = numbers(rows, column)
        both = has_primary & np.isfinite(xs)
        pairs = int(both.sum())
        if pairs < min_runs or len(np.unique(xs[both])) < 2:
            continue
        rho = spearman(xs[both], ys[both])
        if rho is not None:
            found.append(Correlation(column, rho, pairs))
    found.sort(key=lambda c: (-abs(c.rho), c.column))
    note = None
    if not found:
        note = (
            f"no numeric config value varies across at least {min_runs} runs that have "
            f"{primary}, so there is nothing to correlate"
        )
    return found, count, note


# --- quality against cost ------------------------------------------------------------------------


def pareto_front(
    rows: Sequence[Mapping[str, Any]],
    quality: str,
    cost: str,
    quality_goal: str,
    cost_goal: str,
) -> tuple[list[ParetoPoint], list[str]]:
    """Every run with finite quality and cost, marked on the front or not, best cost first.

    A run is on the front when no other run is at least as good in both and better in one.
    Runs with equal values in both are all on the front or all off it. Sorting by cost and
    sweeping once keeps this O(n log n), so thousands of runs cost nothing.
    """
    q_sign = 1.0 if quality_goal == "minimize" else -1.0
    c_sign = 1.0 if cost_goal == "minimize" else -1.0
    usable = [r for r in rows if _finite(r.get(quality)) and _finite(r.get(cost))]
    kept = {r["run_id"] for r in usable}
    missing = [str(r["run_id"]) for r in rows if r["run_id"] not in kept]
    usable.sort(key=lambda r: (c_sign * r[cost], q_sign * r[quality], r["run_id"]))
    points: list[ParetoPoint] = []
    best = math.inf  # the best (lowest, signed) quality among strictly cheaper runs
    start = 0
    while start < len(usable):
        end = start
        while end < len(usable) and usable[end][cost] == usable[start][cost]:
            end += 1
        same_cost = usable[start:end]
        lowest = min(q_sign * r[quality] for r in same_cost)
        for r in same_cost:
            signed = q_sign * r[quality]
            on_front = signed == lowest and lowest < best
            points.append(ParetoPoint(r["run_id"], r["run_name"], r[quality], r[cost], on_front))
        best = min(best, lowest)
        start = end
    return points, missing


def _pareto(
    spec: ParetoSpec,
    table_name: str,
    aliases: Mapping[str, MetricAlias],
    rows: Sequence[Mapping[str, Any]],
) -> ParetoFront:
    quality_goal = goal_for(aliases.get(spec.quality), spec.quality)
    cost_alias = aliases.get(spec.cost)
    cost_goal = cost_alias.goal if cost_alias is not None and cost_alias.goal else "minimize"
    points, missing = pareto_front(
        rows, f"metric.{spec.quality}", f"metric.{spec.cost}", quality_goal, cost_goal
    )
    return ParetoFront(
        quality=spec.quality,
        cost=spec.cost,
        quality_goal=quality_goal,
        cost_goal=cost_goal,
        points=tuple(points),
        without_values=tuple(missing),
        file=f"{table_name}_pareto.csv",
    )


# --- pivot ---------------------------------------------------------------------------------------


def _ordered_values(values: Sequence[Any]) -> list[Any]:
    """Distinct cell values in group order: numbers by value, then text, then missing last."""
    return sorted(set(values), key=lambda v: _sort_key((v,)))


def pivot_table(
    rows: Sequence[Mapping[str, Any]],
    spec: PivotSpec,
    file: str,
) -> PivotTable:
    """`spec.metric` aggregated over every pair of values of two columns (missing values last)."""
    metric = f"metric.{spec.metric}"
    row_keys = [_group_key(r.get(spec.rows)) for r in rows]
    column_keys = [_group_key(r.get(spec.columns)) for r in rows]
    row_values = _ordered_values(row_keys)
    column_values = _ordered_values(column_keys)
    members: dict[tuple[Any, Any], list[Any]] = {}
    for row, rk, ck in zip(rows, row_keys, column_keys, strict=True):
        members.setdefault((rk, ck), []).append(row.get(metric))
    cells = []
    runs = []
    for rk in row_values:
        cells.append(
            tuple(
                aggregate(members[(rk, ck)], spec.aggregate) if (rk, ck) in members else None
                for ck in column_values
            )
        )
        runs.append(tuple(len(members.get((rk, ck), ())) for ck in column_values))
    return PivotTable(
        rows=spec.rows,
        columns=spec.columns,
        metric=metric,
        aggregate=spec.aggregate,
        row_values=tuple(row_values),
        column_values=tuple(column_values),
        cells=tuple(cells),
        runs=tuple(runs),
        file=file,
    )


# --- the section ---------------------------------------------------------------------------------


def project_table(
    spec: ProjectTableSpec,
    aliases: Mapping[str, MetricAlias],
    runs: Sequence[Run],
    spans: Mapping[str, StepSpan],
    cells: Mapping[str, RunCells],
) -> ProjectTable:
    """The `project_table:` section over the chosen runs (`cells` from `run_cells`, per run)."""
    columns, rows, notes = build_rows(spec, runs, spans, cells)
    reductions = dict(spec.metrics or {})
    primary = spec.primary
    goal = goal_for(aliases.get(primary), primary) if primary else None
    primary_column = f"metric.{primary}" if primary else None
    top: list[TopRun] = []
    found: list[Correlation] = []
    with_primary = 0
    note = None
    if primary and goal == "none":
        notes.append(
            f"project_table.primary: '{primary}' has no known better direction; give its "
            "alias a goal (minimize or maximize) to rank the top runs"
        )
    if primary_column and goal:
        if goal != "none":
            top = top_runs(rows, primary_column, goal, spec.top)
        if spec.correlate:
            found, with_primary, note = correlations(rows, columns, primary_column, spec.min_runs)
    known = {c.name for c in columns}
    groups = None
    if spec.group_by:
        for column in spec.group_by:
            if column not in known:
                notes.append(f"project_table.group_by: no chosen run has '{column}'")
        groups = group_rows(
            rows,
            spec.group_by,
            [f"metric.{alias}" for alias in reductions],
            spec.aggregate,
            f"{spec.name}_groups.csv",
        )
    pivot = None
    if spec.pivot:
        for column in (spec.pivot.rows, spec.pivot.columns):
            if column not in known:
                notes.append(f"project_table.pivot: no chosen run has '{column}'")
        pivot = pivot_table(rows, spec.pivot, f"{spec.name}_pivot.csv")
    pareto = _pareto(spec.pareto, spec.name, aliases, rows) if spec.pareto else None
    return ProjectTable(
        name=spec.name,
        columns=tuple(columns),
        rows=tuple(rows),
        reductions=reductions,
        primary=primary,
        goal=goal,
        top_n=spec.top,
        top=tuple(top),
        groups=groups,
        correlate=spec.correlate,
        min_runs=spec.min_runs,
        correlation_runs=with_primary,
        correlations=tuple(found),
        correlation_note=note,
        notes=tuple(notes),
        name_fields=tuple(re.compile(spec.name_fields).groupindex) if spec.name_fields else (),
        pareto=pareto,
        pivot=pivot,
    )
