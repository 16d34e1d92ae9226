"""The project table: one row per run, then group-by aggregates, top N and correlations.

It replaces the export scripts teams keep: `config.*` columns (nested configs flattened with
dots), `metric.*` columns (each alias reduced as the spec says, plus every numeric summary
value), and the raw config and summary for anything the columns leave out.

The table is columnar so that it stays fast at 10^5 runs: everything that needs one run alone
(flattening its config, reducing its aliases, parsing its name, its config as JSON text) is done
per run in the digest (`run_cells`, on a Ray task when Ray is used), and the table stage turns
those cells into one Arrow table in one conversion. Top N, group aggregates, correlations, the
Pareto front and the pivot then work on whole columns (numpy, Arrow), never run by run.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from operator import attrgetter
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reportgen.jsonvalues import jsonable
from reportgen.metrics import ResolvedMetric, average_ranks, goal_for, reduce
from reportgen.runs import Points, Run, flatten
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

ARROW_TYPES = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "json": pa.string(),
}


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


class ParetoPoint(NamedTuple):
    """One run with finite quality and cost; `on_front` when no other run beats it on both.
    (A named tuple: a front over 10^5 runs makes as many.)"""

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
    """The table (`table`: one Arrow column per `columns` entry, JSON columns as JSON text) and
    what was computed from it.

    `mixed`: the json columns whose runs hold values of several types (a number in one run, text
    in another), with each run's value as logged (lists and mappings as JSON text): their CSV
    cells and groups follow each value's own type.
    """

    name: str
    columns: tuple[ProjectColumn, ...]
    table: pa.Table
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
    mixed: Mapping[str, Sequence[Any]] = field(default_factory=dict)

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

    @property
    def row_count(self) -> int:
        return int(self.table.num_rows)

    @property
    def rows(self) -> ProjectRows:
        """The rows as dicts, made one at a time when asked for (from Python; the build never
        asks): JSON columns as the values they hold."""
        return ProjectRows(self)

    def column_names(self, kinds: Sequence[str] | None = None) -> list[str]:
        return [c.name for c in self.columns if kinds is None or c.kind in kinds]


class ProjectRows(Sequence[dict[str, Any]]):
    """A read-only view of a project table's rows as dicts (`len` costs nothing)."""

    def __init__(self, project: ProjectTable):
        self._project = project

    def __len__(self) -> int:
        return self._project.row_count

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        project = self._project
        position = range(len(self))[index]
        row = {}
        for column in project.columns:
            if column.name in project.mixed:
                row[column.name] = project.mixed[column.name][position]
                continue
            value = project.table[column.name][position].as_py()
            if column.kind == "json" and value is not None:
                value = json.loads(value)
            row[column.name] = value
        return row

    def __iter__(self) -> Iterator[dict[str, Any]]:
        return (self[i] for i in range(len(self)))


# --- one run's cells (in the digest) -------------------------------------------------------------


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def run_cell(points: Points, how: str) -> float | None:
    """One run's value of an alias: `reduce`, except that `last` of a run whose curve ended
    NaN or infinite is that value, not its last finite one (a diverged run must not look
    like it ended well, in its row or in its group's mean)."""
    if how == "last" and len(points):
        final = float(points.values[-1])
        if not math.isfinite(final):
            return final
    return reduce(points, how)


def _summary_numbers(summary: Mapping[str, Any]) -> dict[str, float]:
    """Numeric summary values by flattened key, W&B's own `_…` bookkeeping left out."""
    return {
        key: float(value)
        for key, value in flatten(summary).items()
        if not key.startswith("_") and _numeric(value)
    }


def json_text(value: Any) -> str:
    """JSON as in report.json: NaN and infinities as the strings "NaN", "Infinity"."""
    return json.dumps(jsonable(value), sort_keys=True, ensure_ascii=False, allow_nan=False)


_SURROGATE = re.compile("[\ud800-\udfff]")


def arrow_text(text: str) -> str:
    """Text Arrow can hold: a lone surrogate (JSON can carry one, UTF-8 cannot) is written as
    the escape the CSV would show anyway (`\\ud800`)."""
    if _SURROGATE.search(text) is None:
        return text
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def _cell_value(value: Any) -> Any:
    """A config or name value as a table cell: bool, int, float, text or None."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, str):
        return arrow_text(value)
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return _cell_value(value.item())
    return arrow_text(str(value))


@dataclass(frozen=True)
class RunCells:
    """One run's part of the project table, computed where the run is digested (a Ray task,
    say), so that the table stage only gathers values.

    `cells`: column name (`name.*`, `config.*`, `metric.*`) → a bool, int, float, text or None;
    `nested`: `config.*` columns whose value is a list or mapping → its JSON text; `shadowed`:
    summary keys left out because an alias has the same name; `name_matched`: whether the run's
    name matched `name_fields` (None without name_fields); the config and summary as JSON text.
    """

    cells: dict[str, Any]
    nested: dict[str, str]
    shadowed: tuple[str, ...]
    name_matched: bool | None
    config_json: str
    summary_json: str


def run_cells(spec: ProjectTableSpec, run: Run, metrics: Mapping[str, ResolvedMetric]) -> RunCells:
    cells: dict[str, Any] = {}
    nested: dict[str, str] = {}
    matched = None
    if spec.name_fields:
        parsed = name_fields(spec.name_fields, run.name)
        matched = parsed is not None
        for name in re.compile(spec.name_fields).groupindex:
            cells[f"name.{name}"] = _cell_value((parsed or {}).get(name))
    for key, value in flatten(run.config).items():
        if isinstance(value, (list, tuple, Mapping)):
            nested[f"config.{key}"] = arrow_text(json_text(value))
        else:
            cells[f"config.{key}"] = _cell_value(value)
    reductions = spec.metrics or {}
    summary = _summary_numbers(run.summary) if spec.summary else {}
    for key, number in summary.items():
        if key not in reductions:
            cells[f"metric.{key}"] = number
    for alias, how in reductions.items():
        metric = metrics[alias]
        cells[f"metric.{alias}"] = run_cell(metric.points, how) if metric.found else None
    return RunCells(
        cells=cells,
        nested=nested,
        shadowed=tuple(key for key in summary if key in reductions),
        name_matched=matched,
        config_json=arrow_text(json_text(run.config)),
        summary_json=arrow_text(json_text(run.summary)),
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


# --- the table -----------------------------------------------------------------------------------


def _kind_of(arrow_type: pa.DataType) -> str | None:
    """The column kind of an Arrow type inferred from Python values; None: not one kind."""
    if pa.types.is_null(arrow_type) or pa.types.is_string(arrow_type):
        return "string"
    if pa.types.is_boolean(arrow_type):
        return "boolean"
    if pa.types.is_integer(arrow_type):
        return "integer"
    if pa.types.is_floating(arrow_type):
        return "number"
    return None


_MIXED = object()  # a column whose values are of several kinds


def _columns_of(records: Sequence[Mapping[str, Any]]) -> dict[str, pa.Array | object]:
    """Each key of `records` as one Arrow column (None where a record lacks it), converted
    together in one pass; a key whose values are of several kinds is marked `_MIXED`."""
    if not records:
        return {}
    try:
        struct = pa.array(records)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
        pass
    else:
        if pa.types.is_struct(struct.type):
            columns: dict[str, pa.Array | object] = {}
            for i in range(struct.type.num_fields):
                name = struct.type.field(i).name
                array = struct.field(i)
                columns[name] = array if _kind_of(array.type) else _MIXED
            return columns
    # Some key holds values of several kinds: convert key by key to find which.
    keys = sorted(set().union(*records))
    columns = {}
    for key in keys:
        try:
            array = pa.array([record.get(key) for record in records])
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError):
            columns[key] = _MIXED
        else:
            columns[key] = array if _kind_of(array.type) else _MIXED
    return columns


def build_table(
    spec: ProjectTableSpec,
    runs: Sequence[Run],
    spans: Mapping[str, StepSpan],
    cells: Mapping[str, RunCells],
) -> tuple[list[ProjectColumn], pa.Table, dict[str, list[Any]], list[str]]:
    """The table's columns, the Arrow table, the mixed json columns' values, and notes."""
    chosen = [cells[run.id] for run in runs]
    scalar = _columns_of([c.cells for c in chosen])
    nested = _columns_of([c.nested for c in chosen])
    reductions = spec.metrics or {}
    alias_columns = [f"metric.{alias}" for alias in reductions]
    shadowed = sorted(set().union(*(c.shadowed for c in chosen))) if chosen else []
    notes = [
        f"summary value '{key}' is not a column: the alias of the same name is" for key in shadowed
    ]
    fields = list(re.compile(spec.name_fields).groupindex) if spec.name_fields else []
    config_columns = sorted(c for c in {*scalar, *nested} if c.startswith("config."))
    summary_columns = sorted(
        c for c in scalar if c.startswith("metric.") and c not in set(alias_columns)
    )
    n = len(chosen)
    arrays: dict[str, pa.Array] = _run_arrays(runs, spans)
    columns = [ProjectColumn(name, kind) for name, kind in RUN_COLUMNS]
    mixed: dict[str, list[Any]] = {}
    for name in [f"name.{f}" for f in fields] + config_columns:
        plain, listed = scalar.get(name), nested.get(name)
        if listed is None and isinstance(plain, pa.Array):
            kind = _kind_of(plain.type) or "json"
            arrays[name] = plain.cast(ARROW_TYPES[kind])
        elif plain is None and isinstance(listed, pa.Array):
            kind = "json"
            arrays[name] = listed.cast(pa.string())
        else:  # values of several kinds, or lists in some runs and plain values in others
            kind = "json"
            values = [c.nested.get(name, c.cells.get(name)) for c in chosen]
            mixed[name] = values
            arrays[name] = pa.array(
                [
                    c.nested[name] if name in c.nested else _json_cell(c.cells.get(name))
                    for c in chosen
                ],
                pa.string(),
            )
        columns.append(ProjectColumn(name, kind))
    for name in alias_columns + summary_columns:
        found = scalar.get(name)
        arrays[name] = (
            found.cast(pa.float64()) if isinstance(found, pa.Array) else pa.nulls(n, pa.float64())
        )
        columns.append(ProjectColumn(name, "number"))
    arrays["config_json"] = pa.array([c.config_json for c in chosen], pa.string())
    arrays["summary_json"] = pa.array([c.summary_json for c in chosen], pa.string())
    columns += [ProjectColumn(name, "json") for name in JSON_COLUMNS]
    table = pa.table({c.name: arrays[c.name] for c in columns})
    if spec.name_fields:
        unmatched = [run.name for run, c in zip(runs, chosen, strict=True) if not c.name_matched]
        if unmatched:
            shown = ", ".join(repr(name) for name in unmatched[:5])
            more = f" and {len(unmatched) - 5} more" if len(unmatched) > 5 else ""
            notes.append(
                f"project_table.name_fields: {len(unmatched)} of {len(runs)} run names do not "
                f"match, so their name.* cells are empty: {shown}{more}"
            )
    return columns, table, mixed, notes


def _json_cell(value: Any) -> str | None:
    return None if value is None else json_text(value)


def _run_arrays(runs: Sequence[Run], spans: Mapping[str, StepSpan]) -> dict[str, pa.Array]:
    """The columns about the runs themselves, from their metadata."""

    def strings(attribute: str) -> pa.Array:
        return pa.array(list(map(attrgetter(attribute), runs)), pa.string())

    chosen_spans = [spans[run_id] for run_id in map(attrgetter("id"), runs)]
    return {
        "run_id": strings("id"),
        "run_name": strings("name"),
        "state": strings("state"),
        "entity": strings("entity"),
        "project": strings("project"),
        "group": strings("group"),
        "job_type": strings("job_type"),
        "tags": pa.array(list(map(", ".join, map(attrgetter("tags"), runs))), pa.string()),
        "created_at": pa.array(list(map(attrgetter("created_at"), runs)), ARROW_TYPES["timestamp"]),
        "steps": pa.array(list(map(attrgetter("steps"), chosen_spans)), pa.int64()),
        "last_step": pa.array(list(map(attrgetter("last_step"), chosen_spans)), pa.int64()),
    }


# --- columns as numbers --------------------------------------------------------------------------


def numbers(table: pa.Table, column: str) -> np.ndarray:
    """A numeric column as floats, NaN where a run has no value (or the column is not numeric)."""
    if column not in table.column_names:
        return np.full(table.num_rows, np.nan)
    values = table[column]
    if not (pa.types.is_integer(values.type) or pa.types.is_floating(values.type)):
        return np.full(table.num_rows, np.nan)
    return np.asarray(
        pc.fill_null(values.cast(pa.float64()), math.nan).to_numpy(), dtype=float
    ).copy()


def _present(table: pa.Table, column: str) -> np.ndarray:
    """Where a column has a value (a logged NaN is a value; a missing one is not)."""
    if column not in table.column_names:
        return np.zeros(table.num_rows, dtype=bool)
    return np.asarray(pc.is_valid(table[column]).to_numpy(zero_copy_only=False), dtype=bool)


def _texts(table: pa.Table, column: str) -> np.ndarray:
    return np.asarray(table[column].to_numpy(zero_copy_only=False), dtype=object)


# --- top N ---------------------------------------------------------------------------------------


def top_runs(table: pa.Table, column: str, goal: str, n: int) -> list[TopRun]:
    """The n best runs by a column in the goal's direction; ties by run id; no value, no rank."""
    values = numbers(table, column)
    ranked = np.flatnonzero(np.isfinite(values))
    if not len(ranked):
        return []
    sign = 1.0 if goal == "minimize" else -1.0
    signed = sign * values[ranked]
    if n < len(ranked):  # only runs as good as the n-th best can rank (ties included)
        bound = np.partition(signed, n - 1)[n - 1]
        ranked, signed = ranked[signed <= bound], signed[signed <= bound]
    ids = np.asarray(_texts(table, "run_id")[ranked], dtype=str)
    order = ranked[np.lexsort((ids, signed))][:n]
    names = table["run_name"].take(pa.array(order)).to_pylist()
    chosen_ids = table["run_id"].take(pa.array(order)).to_pylist()
    return [
        TopRun(rank, run_id, name, float(value))
        for rank, (run_id, name, value) in enumerate(
            zip(chosen_ids, names, values[order].tolist(), strict=True), start=1
        )
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


def _key_codes(project: ProjectTable | _Columns, column: str) -> tuple[np.ndarray, list[Any]]:
    """Each run's group key of one column as a code, and the keys in group order (missing
    values are a key of their own, None, last): code i is `keys[i]`."""
    table, mixed = project.table, project.mixed
    n = table.num_rows
    if column in mixed:
        raw = [_group_key(v) for v in mixed[column]]
        distinct = list(dict.fromkeys(raw))
        index = {key: i for i, key in enumerate(distinct)}
        codes = np.asarray([index[key] for key in raw], dtype=np.int64)
    elif column in table.column_names:
        encoded = pc.dictionary_encode(table[column]).combine_chunks()
        distinct = [_group_key(v) for v in encoded.dictionary.to_pylist()]
        codes = np.asarray(
            pc.fill_null(encoded.indices, len(distinct)).to_numpy(zero_copy_only=False),
            dtype=np.int64,
        )
        distinct.append(None)
    else:
        distinct, codes = [None], np.zeros(n, dtype=np.int64)
    # Equal keys (a NaN spelled "NaN" beside the text "NaN") share one group.
    merged = list(dict.fromkeys(distinct))
    ordered = sorted(merged, key=lambda key: _sort_key((key,)))
    rank = {key: i for i, key in enumerate(ordered)}
    to_rank = np.asarray([rank[key] for key in distinct], dtype=np.int64)
    return to_rank[codes], ordered


@dataclass(frozen=True)
class _Columns:
    """What grouping reads before the ProjectTable exists: the table and its mixed columns."""

    table: pa.Table
    mixed: Mapping[str, Sequence[Any]]


_PAIRWISE = 8  # numpy sums 8 or more values pairwise: such groups are summed as numpy does


def _group_sums(ordered: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """The sum of each group of `ordered` values (groups are consecutive, none empty), equal
    bit for bit to numpy's sum of that group alone."""
    sums = np.add.reduceat(ordered, starts) if len(starts) else np.zeros(0)
    for g in np.flatnonzero(counts >= _PAIRWISE).tolist():
        sums[g] = np.add.reduce(ordered[starts[g] : starts[g] + counts[g]])
    return sums


def group_aggregates(
    groups: np.ndarray,
    count: int,
    values: np.ndarray,
    present: np.ndarray,
    aggregates: Sequence[str],
) -> dict[str, list[float | None]]:
    """Each aggregate of `values` over each of `count` groups (`groups[i]`: run i's group).

    count, mean, std (sample, n-1), min or max of the finite values; None where undefined (no
    value; std of one). Missing values (`present` False) are ignored. A NaN or infinite value (a
    run that ended diverged) makes its group's mean and std NaN: leaving it out would report the
    survivors as the group's result. Means and standard deviations equal numpy's `mean()` and
    `std(ddof=1)` of each group's finite values, bit for bit.
    """
    finite = present & np.isfinite(values)
    spoiled = np.bincount(groups[present & ~finite], minlength=count) > 0
    order = np.argsort(groups[finite], kind="stable")
    ordered = values[finite][order]
    members = np.bincount(groups[finite], minlength=count)
    filled = np.flatnonzero(members)
    counts = members[filled]
    starts = np.concatenate(([0], np.cumsum(counts)[:-1])).astype(np.int64)
    result: dict[str, list[float | None]] = {}
    means = np.full(count, np.nan)
    if {"mean", "std"} & set(aggregates) and len(filled):
        means[filled] = _group_sums(ordered, starts, counts) / counts
    for how in aggregates:
        cells: list[float | None] = [None] * count
        if how == "count":
            cells = [int(c) for c in members.tolist()]
        elif how in ("mean", "std"):
            found = np.full(count, np.nan)
            usable = filled if how == "mean" else filled[counts >= 2]
            if how == "mean":
                found[filled] = means[filled]
            elif len(usable):
                keep = counts >= 2
                deviations = ordered - np.repeat(means[filled], counts)
                squares = _group_sums(deviations * deviations, starts, counts)
                found[usable] = np.sqrt(squares[keep] / (counts[keep] - 1))
            for g in usable.tolist():
                cells[g] = float(found[g])
            for g in np.flatnonzero(spoiled).tolist():
                cells[g] = math.nan
        elif how in ("min", "max"):
            reduce_at = np.minimum.reduceat if how == "min" else np.maximum.reduceat
            if len(filled):
                found = reduce_at(ordered, starts)
                for g, value in zip(filled.tolist(), found.tolist(), strict=True):
                    cells[g] = float(value)
        else:
            raise ValueError(f"unknown aggregate {how!r}")
        result[how] = cells
    return result


def group_rows(
    project: ProjectTable | _Columns,
    by: Sequence[str],
    metrics: Sequence[str],
    aggregates: Sequence[str],
    file: str,
) -> GroupTable:
    """Runs with equal values in `by` (a missing value is its own group), aggregated."""
    table = project.table
    coded = [_key_codes(project, column) for column in by]
    # One integer per combination of keys, ordered as the tuples of keys are.
    combined = np.zeros(table.num_rows, dtype=np.int64)
    for codes, keys in coded:
        combined = combined * len(keys) + codes
    used, groups = np.unique(combined, return_inverse=True)
    groups = groups.reshape(-1)
    combos = []
    for code in used.tolist():
        parts = []
        for _, keys in reversed(coded):
            code, part = divmod(code, len(keys))
            parts.append(part)
        combos.append(parts[::-1])
    count = len(combos)
    members = np.bincount(groups, minlength=count)
    values = {
        metric: group_aggregates(
            groups, count, numbers(table, metric), _present(table, metric), aggregates
        )
        for metric in metrics
    }
    rows = tuple(
        GroupRow(
            tuple(coded[j][1][k] for j, k in enumerate(combo)),
            int(members[g]),
            {metric: {how: values[metric][how][g] for how in aggregates} for metric in metrics},
        )
        for g, combo in enumerate(combos)
    )
    return GroupTable(tuple(by), tuple(metrics), tuple(aggregates), rows, file)


# --- correlations --------------------------------------------------------------------------------


def spearman(x: Sequence[float] | np.ndarray, y: Sequence[float] | np.ndarray) -> float | None:
    """Spearman's rho: Pearson's correlation of the ranks (ties share their mean rank)."""
    rx, ry = average_ranks(x), average_ranks(y)
    if len(rx) < 2 or np.std(rx) == 0 or np.std(ry) == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def correlations(
    table: pa.Table,
    columns: Sequence[ProjectColumn],
    primary: str,
    min_runs: int,
) -> tuple[list[Correlation], int, str | None]:
    """Each numeric config column that varies, against the primary column, strongest first.

    Returns the correlations, how many runs have a finite primary value, and a note when
    there are too few runs (fewer than `min_runs`) or nothing to correlate.
    """
    ys = numbers(table, primary)
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
        xs = numbers(table, column)
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
    table: pa.Table,
    quality: str,
    cost: str,
    quality_goal: str,
    cost_goal: str,
) -> tuple[list[ParetoPoint], list[str]]:
    """Every run with finite quality and cost, marked on the front or not, best cost first.

    A run is on the front when no other run is at least as good in both and better in one.
    Runs with equal values in both are all on the front or all off it. One sort by cost and
    a running minimum of quality over the cheaper runs find it: O(n log n), columns at a time.
    """
    q_sign = 1.0 if quality_goal == "minimize" else -1.0
    c_sign = 1.0 if cost_goal == "minimize" else -1.0
    qualities, costs = numbers(table, quality), numbers(table, cost)
    ids = _texts(table, "run_id")
    usable = np.isfinite(qualities) & np.isfinite(costs)
    missing = [str(run_id) for run_id in ids[~usable].tolist()]
    kept = np.flatnonzero(usable)
    signed_q, signed_c = q_sign * qualities[kept], c_sign * costs[kept]
    id_rank = np.asarray(pc.rank(table["run_id"], sort_keys="ascending").to_numpy(), np.int64)
    order = kept[np.lexsort((id_rank[kept], signed_q, signed_c))]
    sq, sc = q_sign * qualities[order], c_sign * costs[order]
    if not len(order):
        return [], missing
    first = np.concatenate(([True], sc[1:] != sc[:-1]))  # the first run at each cost
    starts = np.flatnonzero(first)
    group = np.cumsum(first) - 1
    lowest = np.minimum.reduceat(sq, starts)  # the best quality at each cost
    cheaper = np.concatenate(([math.inf], np.minimum.accumulate(lowest)[:-1]))
    on_front = (sq == lowest[group]) & (lowest[group] < cheaper[group])
    names = _texts(table, "run_name")[order].tolist()
    points = [
        ParetoPoint(str(run_id), name, q, c, bool(front))
        for run_id, name, q, c, front in zip(
            ids[order].tolist(),
            names,
            qualities[order].tolist(),
            costs[order].tolist(),
            on_front.tolist(),
            strict=True,
        )
    ]
    return points, missing


def _pareto(
    spec: ParetoSpec,
    table_name: str,
    aliases: Mapping[str, MetricAlias],
    table: pa.Table,
) -> ParetoFront:
    quality_goal = goal_for(aliases.get(spec.quality), spec.quality)
    cost_alias = aliases.get(spec.cost)
    cost_goal = cost_alias.goal if cost_alias is not None and cost_alias.goal else "minimize"
    points, missing = pareto_front(
        table, f"metric.{spec.quality}", f"metric.{spec.cost}", quality_goal, cost_goal
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


def pivot_table(project: ProjectTable | _Columns, spec: PivotSpec, file: str) -> PivotTable:
    """`spec.metric` aggregated over every pair of values of two columns (missing values last)."""
    table = project.table
    metric = f"metric.{spec.metric}"
    row_codes, row_values = _key_codes(project, spec.rows)
    column_codes, column_values = _key_codes(project, spec.columns)
    # Only values some run has (a column without missing values has no "missing" row).
    row_used = np.unique(row_codes)
    column_used = np.unique(column_codes)
    row_at = np.full(len(row_values), -1)
    row_at[row_used] = np.arange(len(row_used))
    column_at = np.full(len(column_values), -1)
    column_at[column_used] = np.arange(len(column_used))
    width = len(column_used)
    cell = row_at[row_codes] * width + column_at[column_codes]
    count = len(row_used) * width
    runs = np.bincount(cell, minlength=count)
    found = group_aggregates(
        cell, count, numbers(table, metric), _present(table, metric), [spec.aggregate]
    )[spec.aggregate]
    cells = tuple(
        tuple(found[r * width + c] if runs[r * width + c] else None for c in range(width))
        for r in range(len(row_used))
    )
    return PivotTable(
        rows=spec.rows,
        columns=spec.columns,
        metric=metric,
        aggregate=spec.aggregate,
        row_values=tuple(row_values[i] for i in row_used.tolist()),
        column_values=tuple(column_values[i] for i in column_used.tolist()),
        cells=cells,
        runs=tuple(
            tuple(int(v) for v in runs[r * width : (r + 1) * width].tolist())
            for r in range(len(row_used))
        ),
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
    columns, table, mixed, notes = build_table(spec, runs, spans, cells)
    view = _Columns(table, mixed)
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
            top = top_runs(table, primary_column, goal, spec.top)
        if spec.correlate:
            found, with_primary, note = correlations(table, columns, primary_column, spec.min_runs)
    known = {c.name for c in columns}
    groups = None
    if spec.group_by:
        for column in spec.group_by:
            if column not in known:
                notes.append(f"project_table.group_by: no chosen run has '{column}'")
        groups = group_rows(
            view,
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
        pivot = pivot_table(view, spec.pivot, f"{spec.name}_pivot.csv")
    pareto = _pareto(spec.pareto, spec.name, aliases, table) if spec.pareto else None
    return ProjectTable(
        name=spec.name,
        columns=tuple(columns),
        table=table,
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
        mixed=mixed,
    )
