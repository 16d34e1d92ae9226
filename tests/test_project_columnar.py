"""The columnar project table gives what a run-by-run table gives, cell for cell.

The table stage works on whole columns (Arrow, numpy) so that 10^5 runs take seconds
(benchmarks/project_table.py); these tests hold it to the plain definitions: the CSV the csv
module writes from each cell, group statistics as numpy computes them over each group, and the
Pareto front as "no other run at least as good in both and better in one".
"""

from __future__ import annotations

import csv
import io
import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pyarrow as pa
import pytest

from reportgen.analysis.project import (
    ProjectColumn,
    group_aggregates,
    pareto_front,
    project_table,
    run_cells,
)
from reportgen.digest import StepSpan
from reportgen.render.analysis import cell, project_csv, project_parquet
from reportgen.runs import Run
from reportgen.spec import PivotSpec, ProjectTableSpec

START = datetime(2026, 3, 1, tzinfo=timezone.utc)

# Config values a spreadsheet or a terminal must not obey, and values of several kinds.
CONFIGS = [
    {
        "cmd": "=HYPERLINK(1)",
        "plus": "+1+2",
        "minus_text": "-0.5",
        "minus_word": "-rf",
        "at": "@SUM(A1)",
        "tab": "\tlead",
        "cr": "one\rtwo",
        "lf": "one\ntwo",
        "quote": 'say "hi", then',
        "esc": "\x1b]0;title\x07",
        "bidi": "abc\u202etxt",
        "lone": "half \ud800",
        "lr": 1e-5,
        "big": 1e20,
        "whole": 3.0,
        "neg_zero": -0.0,
        "edge": 1e15,
        "list": [1, "two", None],
        "nested": {"a": {"b": [0.5]}},
        "flag": True,
        "kind": 1,
        "sometimes_list": 4,
        "empty": None,
    },
    {
        "cmd": "plain",
        "lr": 0.1,
        "big": float("nan"),
        "whole": float("inf"),
        "edge": 123456789.123,
        "list": [],
        "flag": False,
        "kind": "one",
        "sometimes_list": [4, 5],
        "empty": None,
    },
    {"lr": 3, "big": -float("inf"), "kind": 2.5, "tab": "x,y", "lf": "", "unicode": "日本 ✓"},
]


def make_table(spec: ProjectTableSpec):
    runs, spans, cells = [], {}, {}
    for i, config in enumerate(CONFIGS):
        run = Run(
            id=f"col{i:05d}",
            name=["=evil", "plain, with comma", 'quote"d'][i],
            state="finished",
            group=None if i == 2 else f"g{i % 2}",
            tags=("a", "b") if i else (),
            created_at=START + timedelta(seconds=i, microseconds=250 * i) if i != 1 else None,
            config=config,
            summary={"acc": [0.5, float("nan"), 1][i], "_runtime": 3, "text": "x"},
        )
        runs.append(run)
        spans[run.id] = StepSpan(10 * i, None if i == 0 else 10 * i - 1)
        cells[run.id] = run_cells(spec, run, {})
    return runs, project_table(spec, {}, runs, spans, cells)


def expected_cell(run: Run, column: ProjectColumn) -> str:
    """The cell a run-by-run writer gives: `cell` of the run's own value."""
    from reportgen.runs import flatten

    name = column.name
    facts = {
        "run_id": run.id,
        "run_name": run.name,
        "state": run.state,
        "entity": run.entity,
        "project": run.project,
        "group": run.group,
        "job_type": run.job_type,
        "tags": ", ".join(run.tags),
        "created_at": run.created_at,
        "config_json": run.config,
        "summary_json": run.summary,
    }
    if name in facts:
        return cell(facts[name])
    if name.startswith("config."):
        return cell(flatten(run.config).get(name.removeprefix("config.")))
    if name.startswith("metric."):
        return cell(run.summary.get(name.removeprefix("metric.")))
    raise AssertionError(name)


@pytest.mark.parametrize("slice_rows", [16384, 2])
def test_the_columnar_csv_is_what_the_csv_module_writes_cell_by_cell(monkeypatch, slice_rows):
    monkeypatch.setattr("reportgen.render.analysis._CSV_ROWS", slice_rows)  # rows written at once
    runs, table = make_table(ProjectTableSpec(metrics={}))
    spans = {r.id: StepSpan(10 * i, None if i == 0 else 10 * i - 1) for i, r in enumerate(runs)}
    rows = []
    for run in runs:
        row = []
        for column in table.columns:
            if column.name == "steps":
                row.append(str(spans[run.id].steps))
            elif column.name == "last_step":
                row.append(cell(spans[run.id].last_step))
            else:
                row.append(expected_cell(run, column))
        rows.append(row)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([c.name for c in table.columns])
    writer.writerows(rows)
    assert project_csv(table).decode("utf-8") == out.getvalue()
    text = project_csv(table).decode("utf-8")
    assert "'=HYPERLINK(1)" in text and "'-rf" in text and ",-0.5," in text
    assert "one\\x0dtwo" in text and "\\x1b]0;title\\x07" in text and "\r" not in text


def test_each_column_has_one_kind_and_mixed_ones_are_json():
    _, table = make_table(ProjectTableSpec(metrics={}))
    kinds = {c.name: c.kind for c in table.columns}
    assert kinds["config.lr"] == "number"  # 1e-5, 0.1 and 3
    assert kinds["config.flag"] == "boolean"
    assert kinds["config.cmd"] == "string"
    assert kinds["config.empty"] == "string"  # never a value: text, as before
    assert kinds["config.list"] == "json"
    assert kinds["config.kind"] == "json"  # 1, "one", 2.5
    assert kinds["config.sometimes_list"] == "json"  # 4, [4, 5]
    assert kinds["metric.acc"] == "number" and "metric._runtime" not in kinds
    assert "metric.text" not in kinds
    assert table.table.schema.field("config.lr").type == pa.float64()
    assert table.rows[1]["config.sometimes_list"] == "[4, 5]"
    assert table.rows[0]["config.kind"] == 1 and table.rows[1]["config.kind"] == "one"
    assert table.rows[0]["config.list"] == [1, "two", None]


def test_parquet_holds_the_typed_columns_and_json_text():
    import io

    import pyarrow.parquet as pq

    _, table = make_table(ProjectTableSpec(metrics={}))
    read = pq.read_table(io.BytesIO(project_parquet(table)))
    assert read.column_names == [c.name for c in table.columns]
    assert read["config.kind"].to_pylist() == ["1", '"one"', "2.5"]
    assert read["config.big"].to_pylist()[0] == 1e20
    assert math.isnan(read["config.big"].to_pylist()[1])
    assert read["config.lone"].to_pylist()[0] == "half \\ud800"


def test_groups_of_a_mixed_column_follow_each_value():
    _, table = make_table(
        ProjectTableSpec(metrics={}, group_by=("config.kind", "group"), aggregate=("count",))
    )
    assert [(g.keys, g.runs) for g in table.groups.rows] == [
        ((1, "g0"), 1),
        ((2.5, None), 1),
        (("one", "g1"), 1),
    ]


def reference(values: list[float | None], how: str) -> float | None:
    """The definition: finite values aggregated; a NaN or infinite member spoils mean and std."""
    finite = np.asarray([v for v in values if v is not None and math.isfinite(v)], dtype=float)
    if how == "count":
        return len(finite)
    if how in ("mean", "std") and any(v is not None and not math.isfinite(v) for v in values):
        return math.nan
    if len(finite) == 0 or (how == "std" and len(finite) < 2):
        return None
    return float(
        {"mean": finite.mean, "min": finite.min, "max": finite.max}[how]()
        if how != "std"
        else finite.std(ddof=1)
    )


def test_group_statistics_equal_numpy_over_each_group_bit_for_bit():
    rng = np.random.default_rng(7)
    count = 40
    groups = rng.integers(0, count, 5000)
    values = rng.standard_normal(5000) * 10.0 ** rng.integers(-3, 4, 5000)
    present = rng.random(5000) > 0.1
    values[rng.random(5000) < 0.002] = math.nan  # a few runs ended NaN
    hows = ["count", "mean", "std", "min", "max"]
    found = group_aggregates(groups, count + 2, values, present, hows)  # two empty groups
    for g in range(count + 2):
        members = [
            float(v) if p else None
            for v, p, k in zip(values, present, groups, strict=True)
            if k == g
        ]
        for how in hows:
            want, got = reference(members, how), found[how][g]
            if isinstance(want, float) and math.isnan(want):
                assert isinstance(got, float) and math.isnan(got), (g, how)
            else:
                assert got == want, (g, how, got, want)
    assert found["mean"][count] is None and found["count"][count] == 0


def test_the_pareto_front_is_every_run_no_other_run_dominates():
    rng = np.random.default_rng(3)
    n = 400
    quality = rng.integers(0, 30, n).astype(float)  # many ties
    cost = rng.integers(0, 30, n).astype(float)
    quality[::37] = math.nan
    ids = [f"p{i:04d}" for i in range(n)]
    table = pa.table({"run_id": ids, "run_name": ids, "q": quality, "c": cost})
    for q_goal, c_goal in [
        ("minimize", "minimize"),
        ("maximize", "minimize"),
        ("maximize", "maximize"),
    ]:
        points, missing = pareto_front(table, "q", "c", q_goal, c_goal)
        qs = 1 if q_goal == "minimize" else -1
        cs = 1 if c_goal == "minimize" else -1
        usable = [i for i in range(n) if math.isfinite(quality[i])]
        assert missing == [ids[i] for i in range(n) if i not in set(usable)]
        front = {
            ids[i]
            for i in usable
            if not any(
                qs * quality[j] <= qs * quality[i]
                and cs * cost[j] <= cs * cost[i]
                and (qs * quality[j] < qs * quality[i] or cs * cost[j] < cs * cost[i])
                for j in usable
            )
        }
        assert {p.run_id for p in points if p.on_front} == front
        keys = [(cs * p.cost, qs * p.quality, p.run_id) for p in points]
        assert keys == sorted(keys)


def test_a_pivot_counts_runs_and_aggregates_finite_values():
    _, table = make_table(
        ProjectTableSpec(metrics={}, pivot=PivotSpec("config.flag", "group", "acc", "mean"))
    )
    pivot = table.pivot
    assert pivot.row_values == (False, True, None) and pivot.column_values == ("g0", "g1", None)
    assert pivot.runs == ((0, 1, 0), (1, 0, 0), (0, 0, 1))
    assert pivot.cells[1][0] == 0.5 and math.isnan(pivot.cells[0][1]) and pivot.cells[2][2] == 1.0


@pytest.mark.parametrize("count", [0, 1])
def test_tiny_tables_build(count):
    spec = ProjectTableSpec(metrics={}, group_by=("config.lr",), pivot=PivotSpec("a", "b", "acc"))
    runs = [Run(id="one00001", name="one", state="finished", config={"lr": 1})][:count]
    cells = {r.id: run_cells(spec, r, {}) for r in runs}
    table = project_table(spec, {}, runs, {r.id: StepSpan(1, 0) for r in runs}, cells)
    assert table.row_count == count
    assert project_csv(table).decode().count("\n") == 1 + count
