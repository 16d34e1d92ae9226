"""Files of the analysis sections: stats, comparison and project tables as CSV (and Parquet).

Cells: numbers exactly as computed (`nan`/`inf` spelled out), an empty cell where there is no
value, text as is, and config values that are lists or mappings as JSON.

Text comes from runs, and spreadsheets open these files: a cell starting with = + - @ (or a
tab or carriage return) would be run as a formula (CSV injection, OWASP), so such text gets a
leading apostrophe, which spreadsheets hide. Text that reads as a number ("-0.5") is left as it
is: a negative number is not a formula. Control and bidi characters (a carriage return, which
would end the row for many readers; ESC, which a terminal showing the file would obey) are
written as visible escapes (safetext), as everywhere else.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from reportgen.analysis import Analysis, StatsTable
from reportgen.compare import Comparison
from reportgen.project import GroupTable, ParetoFront, PivotTable, ProjectTable
from reportgen.render.csv import render_step_table
from reportgen.render.json import jsonable
from reportgen.render.text import exact_number
from reportgen.safetext import visible


def cell(value: Any) -> str:
    """One CSV cell (None → empty)."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return exact_number(float(value)) if isinstance(value, float) else str(value)
    if isinstance(value, datetime):
        return str(jsonable(value))
    if isinstance(value, (list, tuple, dict)):
        return text_cell(json_text(value))
    return text_cell(str(value))


_FORMULA_START = ("=", "+", "-", "@", "\t")


def text_cell(text: str) -> str:
    """Text that a spreadsheet shows as text and a CSV reader reads as one cell."""
    text = visible(text)
    if text.startswith(_FORMULA_START) and not _is_number(text):
        return "'" + text
    return text


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def json_text(value: Any) -> str:
    """JSON as in report.json: NaN and infinities as the strings "NaN", "Infinity"."""
    return json.dumps(jsonable(value), sort_keys=True, ensure_ascii=False, allow_nan=False)


def rows_csv(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([text_cell(str(name)) for name in header])
    for row in rows:
        writer.writerow([cell(v) for v in row])
    return out.getvalue()


# --- stats ---------------------------------------------------------------------------------------


def stats_csv(table: StatsTable) -> str:
    return rows_csv(
        ["run_id", "run_name", "alias", "key", *table.stats],
        ([r.run_id, r.run_name, r.alias, r.key, *r.values.values()] for r in table.rows),
    )


# --- comparison ----------------------------------------------------------------------------------


def _config_value(value: Any, present: bool) -> str:
    """A config value; `null` for a logged null, empty where the key is missing."""
    if not present:
        return ""
    return "null" if value is None else cell(value)


def compare_config_csv(comparison: Comparison) -> str:
    header = ["key", *(c.run_id for c in comparison.runs)]
    rows = (
        [d.key, *(_config_value(v, p) for v, p in zip(d.values, d.present, strict=True))]
        for d in comparison.config
    )
    return rows_csv(header, rows)


def compare_metrics_csv(comparison: Comparison) -> str:
    reference = comparison.runs[0]
    names = {c.run_id: c.run_name for c in comparison.runs}
    header = [
        "alias",
        "goal",
        "reference_run_id",
        "reference_key",
        "reference",
        "run_id",
        "run_name",
        "key",
        "value",
        "delta",
        "percent",
        "mark",
    ]
    rows = (
        [
            m.alias,
            m.goal,
            reference.run_id,
            m.reference_key,
            m.reference,
            c.run_id,
            names[c.run_id],
            c.key,
            c.value,
            c.delta,
            c.percent,
            c.mark,
        ]
        for m in comparison.metrics
        for c in m.changes
    )
    return rows_csv(header, rows)


# --- project -------------------------------------------------------------------------------------


def project_csv(table: ProjectTable, rank: bool = False) -> str:
    """The whole table; with `rank`, only the top N in rank order (without the JSON columns)."""
    if not rank:
        names = table.column_names()
        return rows_csv(names, ([row[n] for n in names] for row in table.rows))
    names = [c.name for c in table.columns if c.kind != "json"]
    by_id = {row["run_id"]: row for row in table.rows}
    return rows_csv(
        ["rank", *names], ([t.rank, *(by_id[t.run_id][n] for n in names)] for t in table.top)
    )


def groups_csv(groups: GroupTable) -> str:
    header = [*groups.by, "runs"]
    header += [f"{m}.{how}" for m in groups.metrics for how in groups.aggregates]
    rows = []
    for g in groups.rows:
        cells: list[Any] = [*g.keys, g.runs]
        for m in groups.metrics:
            for how in groups.aggregates:
                cells.append(g.values[m][how])
        rows.append(cells)
    return rows_csv(header, rows)


def correlations_csv(table: ProjectTable) -> str:
    return rows_csv(
        ["column", "primary", "spearman_rho", "runs"],
        ([c.column, table.primary_column, c.rho, c.runs] for c in table.correlations),
    )


def pareto_csv(pareto: ParetoFront) -> str:
    """Every run with both values, cheapest first, and whether it is on the front."""
    return rows_csv(
        ["run_id", "run_name", f"metric.{pareto.cost}", f"metric.{pareto.quality}", "on_front"],
        ([p.run_id, p.run_name, p.cost, p.quality, p.on_front] for p in pareto.points),
    )


def pivot_label(value: Any) -> str:
    """A row or column value of a pivot as text; runs without the value are "(missing)"."""
    return "(missing)" if value is None else cell(value)


def pivot_csv(pivot: PivotTable) -> str:
    """One row per value of `rows`, one column `<columns>=<value>` per value of `columns`."""
    header = [pivot.rows, *(f"{pivot.columns}={pivot_label(v)}" for v in pivot.column_values)]
    return rows_csv(
        header,
        ([pivot_label(v), *cells] for v, cells in zip(pivot.row_values, pivot.cells, strict=True)),
    )


_ARROW_TYPES = {
    "string": pa.string(),
    "integer": pa.int64(),
    "number": pa.float64(),
    "boolean": pa.bool_(),
    "timestamp": pa.timestamp("us", tz="UTC"),
    "json": pa.string(),
}


def project_parquet(table: ProjectTable) -> bytes:
    """The project table with one Arrow type per column (JSON columns as JSON text)."""
    arrays = {}
    for column in table.columns:
        values = [row[column.name] for row in table.rows]
        if column.kind == "json":
            values = [None if v is None else json_text(v) for v in values]
        arrays[column.name] = pa.array(values, type=_ARROW_TYPES[column.kind])
    sink = io.BytesIO()
    pq.write_table(pa.table(arrays), sink)
    return sink.getvalue()


# --- every file ----------------------------------------------------------------------------------


def analysis_files(analysis: Analysis) -> list[tuple[str, bytes]]:
    """(file name, content) for every analysis table the report has."""
    files: list[tuple[str, str | bytes]] = []
    if analysis.stats:
        files.append((analysis.stats.file, stats_csv(analysis.stats)))
    comparison = analysis.comparison
    if comparison and comparison.complete:
        files.append((comparison.config_file, compare_config_csv(comparison)))
        files.append((comparison.metrics_file, compare_metrics_csv(comparison)))
        if comparison.history:
            h = comparison.history
            files.append((h.file, render_step_table(h.steps, h.columns, h.values, h.present)))
    project = analysis.project
    if project:
        files.append((project.csv_file, project_csv(project)))
        files.append((project.parquet_file, project_parquet(project)))
        if project.top:
            files.append((project.top_file, project_csv(project, rank=True)))
        if project.groups:
            files.append((project.groups.file, groups_csv(project.groups)))
        if project.correlations:
            files.append((project.correlations_file, correlations_csv(project)))
        if project.pareto:
            files.append((project.pareto.file, pareto_csv(project.pareto)))
        if project.pivot:
            files.append((project.pivot.file, pivot_csv(project.pivot)))
    return [(name, data.encode("utf-8") if isinstance(data, str) else data) for name, data in files]
