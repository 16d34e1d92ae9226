"""The spec side of the analysis sections: expressions and row filters are refused with their
line and column when they step outside the language; bad stats/compare/project_table keys too.

These touch no runs: validation happens before any data is read.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_spec

from reportgen.cli import main
from reportgen.expressions import ExpressionError, evaluate, parse_condition
from reportgen.spec import parse_spec

HEAD = """\
version: 1
source: {type: wandb-offline, path: runs}
metrics:
  loss: train/loss
  length: response_length/mean
"""

ALLOWED = "abs, exp, log, log10, max, min, sqrt"


def located(path: Path, text: str, needle: str) -> str:
    """file:line:col of the first character of `needle` in the spec text."""
    for number, line in enumerate(text.splitlines(), start=1):
        if needle in line:
            return f"{path}:{number}:{line.index(needle) + 1}"
    raise AssertionError(needle)


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        (
            "loss.__class__",
            "attribute access (a.b) is not allowed in expressions ('loss.__class__')",
        ),
        ("open(loss)", f"'open' is not an allowed function; only these may be called: {ALLOWED}"),
        (
            "__import__('os')",
            f"'__import__' is not an allowed function; only these may be called: {ALLOWED}",
        ),
        (
            "loss.__class__.__bases__[0]",
            "indexing (a[b]) is not allowed in expressions ('loss.__class__.__bases__[0]')",
        ),
        ("(lambda: 1)()", f"only these functions may be called: {ALLOWED} ('lambda: 1')"),
    ],
)
def test_an_expression_outside_the_language_is_refused_with_its_line(
    tmp_path, capsys, expr, message
):
    text = HEAD + f'  gap: {{expr: "{expr}"}}\n'
    path = write_spec(tmp_path / "spec.yaml", text)
    assert main(["validate", str(path)]) == 2
    where = located(path, text, '"')
    assert where == f"{path}:6:15"
    assert capsys.readouterr().err == f"{where}: metrics.gap.expr: {message}\n"


def test_an_expression_on_a_later_line_is_located_there(tmp_path, capsys):
    text = HEAD + "  ratio:\n    goal: minimize\n    expr: length / abs(loss).real\n"
    path = write_spec(tmp_path / "spec.yaml", text)
    assert main(["validate", str(path)]) == 2
    assert capsys.readouterr().err == (
        f"{path}:8:11: metrics.ratio.expr: attribute access (a.b) is not allowed in expressions "
        "('abs(loss).real')\n"
    )


def test_the_evaluator_refuses_what_the_checker_refuses():
    with pytest.raises(ExpressionError):
        evaluate("loss.__class__", {})


def test_where_is_a_condition_over_aliases_and_step(tmp_path):
    text = HEAD + 'outputs: {csv: {where: "length < 10 and not (step < 100 or loss >= 2)"}}\n'
    spec = parse_spec(text, tmp_path / "spec.yaml")
    assert spec.outputs.csv.where == "length < 10 and not (step < 100 or loss >= 2)"
    assert parse_condition(spec.outputs.csv.where) == {"length", "step", "loss"}


@pytest.mark.parametrize(
    ("where", "message"),
    [
        ("lenth < 10", "unknown name 'lenth'; did you mean 'length'?"),
        (
            "length",
            "expected a condition such as 'length < 10' (comparisons joined by and, or, not) ('length')",
        ),
        (
            "__import__('os').system('ls') == 0",
            f"only these functions may be called: {ALLOWED} ('__import__('os').system')",
        ),
        ("length in loss", "only < <= > >= == != may compare values ('length in loss')"),
    ],
)
def test_a_bad_where_is_refused_with_its_line(tmp_path, capsys, where, message):
    text = HEAD + f'outputs:\n  csv: {{where: "{where}"}}\n'
    path = write_spec(tmp_path / "spec.yaml", text)
    assert main(["validate", str(path)]) == 2
    assert capsys.readouterr().err == f"{path}:7:16: outputs.csv.where: {message}\n"


def test_analysis_sections_name_known_aliases(tmp_path, capsys):
    text = HEAD + (
        "stats: {metrics: [lengths]}\n"
        "compare: {runs: [a, b], metrics: [los]}\n"
        "project_table: {metrics: {loss: last}, primary: length}\n"
    )
    path = write_spec(tmp_path / "spec.yaml", text)
    assert main(["validate", str(path)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{path}:6:19: stats.metrics[0]: unknown alias 'lengths'; did you mean 'length'?",
        f"{path}:7:35: compare.metrics[0]: unknown alias 'los'; did you mean 'loss'?",
        f"{path}:8:49: project_table.primary: 'length' is not one of the table's metrics; "
        "valid: loss",
    ]


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ("compare: {runs: [only]}", "6:17: compare.runs: needs at least 2 items"),
        (
            "stats: {stats: [p50, p101]}",
            '6:22: stats.stats[1]: a string "p101" is not valid here: expected count, '
            "non_finite, first, last, mean, std, min, max or p0..p100",
        ),
        (
            "project_table: {group_by: [seed]}",
            '6:28: project_table.group_by[0]: a string "seed" is not valid here: expected '
            "config.<key>, name.<group>, group, job_type, state, project or entity",
        ),
        (
            "project_table: {metrics: {loss: median}}",
            "6:33: project_table.metrics.loss: expected one of last, mean, min, max, first; "
            "got a string \"median\"; did you mean 'mean'?",
        ),
    ],
)
def test_analysis_section_shapes_are_checked(tmp_path, capsys, section, message):
    path = write_spec(tmp_path / "spec.yaml", HEAD + section + "\n")
    assert main(["validate", str(path)]) == 2
    assert capsys.readouterr().err == f"{path}:{message}\n"


def test_project_table_defaults(tmp_path):
    spec = parse_spec(HEAD + "project_table: {reduce: min}\n", tmp_path / "spec.yaml")
    table = spec.project_table
    assert table is not None
    assert table.metrics == {"loss": "min", "length": "min"}
    assert (table.primary, table.top, table.min_runs) == ("loss", 10, 5)
    assert table.aggregate == ("count", "mean", "std", "min", "max")


def test_compare_sampling_overrides_the_spec_grid(tmp_path):
    text = (
        HEAD
        + "sampling: {every: 50, align: exact}\ncompare: {runs: [a, b], sampling: {every: 10}}\n"
    )
    spec = parse_spec(text, tmp_path / "spec.yaml")
    assert spec.compare is not None
    assert (spec.compare.sampling.every, spec.compare.sampling.align) == (10, "exact")
    assert spec.compare.reduce == "summary"


def test_a_comparison_with_nan_is_false_except_not_equal():
    import numpy as np

    from reportgen.expressions import evaluate_condition

    columns = {"a": np.array([1.0, np.nan, 3.0])}
    assert evaluate_condition("a < 2", columns, 3).tolist() == [True, False, False]
    assert evaluate_condition("a != 1", columns, 3).tolist() == [False, True, True]
    assert evaluate_condition("1 <= a <= 3 and a != 3", columns, 3).tolist() == [True, False, False]


ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    """specs/analysis-demo.yaml built on the bundled runs (its relative path made absolute)."""
    from reportgen import build

    tmp = tmp_path_factory.mktemp("analysis-demo")
    text = (ROOT / "specs" / "analysis-demo.yaml").read_text()
    text = text.replace("path: examples/wandb", f'path: "{ROOT / "examples" / "wandb"}"')
    return build(write_spec(tmp / "analysis-demo.yaml", text), out_dir=tmp / "out")


def test_the_analysis_demo_spec_builds_on_the_bundled_runs(demo):
    analysis = demo.report.analysis
    assert [c.run_id for c in analysis.comparison.runs] == ["47a724db", "8e054617"]
    assert analysis.project.top[0].run_id == "47a724db"
    assert {c.column for c in analysis.project.correlations} >= {"config.actor.entropy_coef"}
    assert (demo.out_dir / "project.parquet").exists()
    # The demo's sweep names say lr and entropy bonus; its best run is also the cheapest.
    pareto = analysis.project.pareto
    assert [p.run_id for p in pareto.front] == ["47a724db"]
    assert [p.run_id for p in pareto.points] == [
        "47a724db",
        "21c233f8",
        "3092b5db",
        "6b000021",
        "8e054617",
    ]
    pivot = analysis.project.pivot
    assert (pivot.row_values, pivot.column_values) == ((0.01, 0.3), (0, 0.03, 0.05))
    assert pivot.runs == ((0, 3, 1), (1, 0, 0))
    by_id = {row["run_id"]: row for row in analysis.project.rows}
    assert [by_id["3092b5db"][f"name.{f}"] for f in ("algo", "lr", "ent")] == ["grpo", 0.01, 0.05]
    assert pivot.cells[0][2] == by_id["3092b5db"]["metric.score"]
    text = (demo.out_dir / "report.md").read_text()
    assert "config keys differ (nested keys joined with dots): [compare\\_config.csv]" in text


def test_analysis_sections_link_no_files_when_no_csv_was_written(demo):
    from reportgen.render.markdown import render_markdown

    text = render_markdown(demo.report, csv_files=False)
    assert "](" not in text
    assert "config keys differ (nested keys joined with dots)." in text
