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
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from reportgen.analysis.compare import Comparison
from reportgen.analysis.project import (
    GroupTable,
    ParetoFront,
    PivotTable,
    ProjectTable,
    json_text,
)
from reportgen.analysis.stage import Analysis, StatsTable
from reportgen.render.csv import csv_body, number_cells, render_step_table
from reportgen.render.json import jsonable
from reportgen.render.text import exact_number
from reportgen.safetext import UNSAFE_RE2, visible


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


_CSV_ROWS = 16384  # rows written at a time: the text of one slice is held, not of the table


def project_csv(table: ProjectTable, rank: bool = False) -> bytes:
    """The whole table; with `rank`, only the top N in rank order (without the JSON columns).

    Written a column at a time (Arrow and numpy), with the cells `cell` would write, a slice
    of rows after another: at 10^5 runs a cell-by-cell writer spent a minute here.
    """
    data = table.table
    columns = list(table.columns)
    mixed = dict(table.mixed)
    header = [c.name for c in columns]
    ranks = None
    if rank:
        columns = [c for c in columns if c.kind != "json"]
        ids = pa.array([t.run_id for t in table.top], pa.string())
        positions = pc.index_in(ids, value_set=data["run_id"].combine_chunks())
        data = data.take(positions)
        picked = np.asarray(positions.to_numpy(zero_copy_only=False), dtype=np.int64)
        mixed = {name: [values[i] for i in picked.tolist()] for name, values in mixed.items()}
        header = ["rank", *(c.name for c in columns)]
        ranks = pa.array([str(t.rank) for t in table.top], pa.string())
    parts = [csv_header(header)]
    for start in range(0, data.num_rows, _CSV_ROWS):
        rows = data.slice(start, _CSV_ROWS)
        fields = [] if ranks is None else [quoted_cells(ranks.slice(start, _CSV_ROWS))]
        for column in columns:
            values = mixed.get(column.name)
            part = None if values is None else values[start : start + _CSV_ROWS]
            fields.append(quoted_cells(column_cells(rows[column.name], column.kind, part)))
        parts.append(csv_body(fields))
    return b"".join(parts)


def column_cells(
    values: pa.ChunkedArray | pa.Array, kind: str, mixed: Sequence[Any] | None = None
) -> pa.Array:
    """`cell` of every value of a column of one kind, as Arrow text (empty where missing)."""
    if mixed is not None:  # values of several kinds: each by its own
        return pa.array([cell(value) for value in mixed], pa.string())
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if kind in ("string", "json"):
        texts = text_cells(values.cast(pa.string()))
    elif kind == "integer":
        texts = pc.cast(values, pa.string())
    elif kind == "number":
        texts = number_cells(values)
    elif kind == "boolean":
        texts = pc.if_else(values, "true", "false")
    elif kind == "timestamp":
        texts = timestamp_cells(values)
    else:
        raise ValueError(f"unknown column kind {kind!r}")
    return pc.fill_null(texts, "")


_SUSPECT = UNSAFE_RE2 + r"|^[=+\-@\t]"  # an unsafe character anywhere, or a formula's start


def text_cells(texts: pa.Array) -> pa.Array:
    """`text_cell` of each text: only the cells that hold an unsafe character or start like a
    formula (usually none) are looked at one by one."""
    suspect = pc.match_substring_regex(texts, _SUSPECT)
    where = np.flatnonzero(np.asarray(pc.fill_null(suspect, False).to_numpy(zero_copy_only=False)))
    if not len(where):
        return texts
    fixed = [text_cell(text) for text in texts.take(pa.array(where)).to_pylist()]
    mask = np.zeros(len(texts), dtype=bool)
    mask[where] = True
    return pc.replace_with_mask(texts, pa.array(mask), pa.array(fixed, pa.string()))


def timestamp_cells(values: pa.Array) -> pa.Array:
    """Times as report.json writes them: ISO 8601 in UTC with a Z, microseconds when any."""
    micros = np.asarray(pc.fill_null(values.cast(pa.int64()), 0).to_numpy(), dtype=np.int64)
    moments = micros.astype("datetime64[us]")
    texts = np.where(
        micros % 1_000_000 == 0,
        np.datetime_as_string(moments, unit="s"),
        np.datetime_as_string(moments, unit="us"),
    )
    missing = np.asarray(pc.is_null(values).to_numpy(zero_copy_only=False), dtype=bool)
    return pc.binary_join_element_wise(pa.array(texts, pa.string(), mask=missing), "Z", "")


def quoted_cells(texts: pa.Array) -> pa.Array:
    """Each text as a CSV field, quoted as the csv module quotes: a field with a comma, a quote
    or a newline is put in quotes, its quotes doubled."""
    needs = pc.or_(
        pc.or_(pc.match_substring(texts, ","), pc.match_substring(texts, '"')),
        pc.match_substring(texts, "\n"),
    )
    if pc.any(needs).as_py():
        wrapped = pc.binary_join_element_wise('"', pc.replace_substring(texts, '"', '""'), '"', "")
        texts = pc.if_else(needs, wrapped, texts)
    return texts.cast(pa.large_string())


def csv_header(names: Sequence[str]) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow([text_cell(str(name)) for name in names])
    return out.getvalue().encode("utf-8")


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


def project_parquet(table: ProjectTable) -> bytes:
    """The project table with one Arrow type per column (JSON columns as JSON text)."""
    sink = io.BytesIO()
    pq.write_table(table.table, sink)
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
