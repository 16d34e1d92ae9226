"""Analysis sections on a real sweep: stats, derived columns, row filters, compare, project table.

Six runs (two learning rates × three seeds) are written once for this module by the real wandb
client; every expected value below is computed from the same formulas the runs logged.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import write_spec
from runwriter import PlannedRun, write_runs

from reportgen import build

LRS = (1e-3, 1e-2)
SEEDS = (0, 1, 2)
STEPS = 120
SHORT = ("sweepl1s2", 80)  # this run stopped early


def run_id(lri: int, seed: int) -> str:
    return f"sweepl{lri}s{seed}"


def steps_of(rid: str) -> int:
    return SHORT[1] if rid == SHORT[0] else STEPS


def loss(lri: int, seed: int, step: int) -> float:
    return 2.0 / (1 + step * (lri + 1) * 0.05) + 0.01 * seed


def length(lri: int, seed: int, step: int) -> float:
    return 20.0 + 5.0 * math.sin(step / 7.0) + 3.0 * lri + seed


def rows(lri: int, seed: int) -> list[dict[str, float]]:
    result = []
    for step in range(steps_of(run_id(lri, seed))):
        row = {
            "train/loss": loss(lri, seed, step),
            "eval/accuracy": 1.0 - loss(lri, seed, step) / 3.0,
            "response_length/mean": length(lri, seed, step),
        }
        if step % 10 == 0:
            row["val/loss"] = loss(lri, seed, step) + 0.1
        result.append(row)
    return result


HOSTILE = "a|b `c` @everyone <script>"


def config(lri: int, seed: int) -> dict:
    model: dict = {"width": 64, "depth": 2}
    extra = {}
    if (lri, seed) == (0, 1):
        model["dropout"] = 0.1
        extra["note"] = HOSTILE
    return {"optim": {"lr": LRS[lri], "schedule": "cosine"}, "seed": seed, "model": model, **extra}


def plans() -> list[PlannedRun]:
    return [
        PlannedRun(
            name=f"sweep-lr{LRS[lri]:g}-seed{seed}",
            run_id=run_id(lri, seed),
            rows=rows(lri, seed),
            config=config(lri, seed),
            tags=["sweep"],
            group="lr-sweep",
        )
        for lri in range(2)
        for seed in SEEDS
    ]


def last_loss(rid: str) -> float:
    lri, seed = int(rid[6]), int(rid[8])
    return loss(lri, seed, steps_of(rid) - 1)


SPEC = """\
version: 1
title: Sweep analysis
source: {{type: wandb-offline, path: "{path}"}}
runs:
  filters: {{tags: {{any: [sweep]}}}}
metrics:
  loss: train/loss
  val_loss: val/loss
  accuracy: eval/accuracy
  length: {{key: response_length/mean, goal: minimize}}
  gap: {{expr: "val_loss - loss"}}
select:
  best: {{by: loss, reduce: last, pick: min}}
sampling: {{every: 10, align: exact}}
stats: {{metrics: [length, loss]}}
compare:
  runs: [best, sweepl0s1, sweepl1s2]
  metrics: [loss, accuracy, length, gap]
  sampling: {{every: 20}}
project_table:
  metrics: {{loss: last, accuracy: max, length: mean}}
  primary: loss
  group_by: [config.optim.lr]
  top: 4
outputs:
  dir: "{out}"
  csv: {{columns: [loss, val_loss, gap, length], where: "length < 22 and step >= 10"}}
"""


@pytest.fixture(scope="module")
def sweep_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_runs(tmp_path_factory.mktemp("sweep"), plans())


@pytest.fixture(scope="module")
def result(sweep_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("analysis")
    spec = write_spec(tmp / "sweep.yaml", SPEC.format(path=sweep_dir, out=tmp / "out"))
    return build(spec)


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


BEST = run_id(1, 0)


# --- stats ---------------------------------------------------------------------------------------


def test_percentiles_equal_numpys_on_every_logged_point(result):
    stats = result.report.analysis.stats
    assert stats.stats == ("min", "p10", "p25", "p50", "p75", "p90", "max", "last")
    for lri in range(2):
        for seed in SEEDS:
            rid = run_id(lri, seed)
            logged = np.array([length(lri, seed, s) for s in range(steps_of(rid))])
            row = next(r for r in stats.for_alias("length") if r.run_id == rid)
            assert row.key == "response_length/mean"
            for p in (10, 25, 50, 75, 90):
                assert row.values[f"p{p}"] == np.percentile(logged, p)
            assert (row.values["min"], row.values["max"]) == (logged.min(), logged.max())
            assert row.values["last"] == logged[-1]


def test_stats_csv_has_one_row_per_alias_and_run(result):
    table = read_csv(result.out_dir / "stats.csv")
    assert [(r["alias"], r["run_id"]) for r in table][:2] == [
        ("length", result.report.runs[0].id),
        ("length", result.report.runs[1].id),
    ]
    assert len(table) == 2 * 6
    row = next(r for r in table if r["alias"] == "loss" and r["run_id"] == BEST)
    logged = np.array([loss(1, 0, s) for s in range(STEPS)])
    assert float(row["p50"]) == np.percentile(logged, 50)
    assert float(row["last"]) == logged[-1]


# --- derived columns and row filters -------------------------------------------------------------


def test_derived_column_is_the_expression_of_the_logged_values(result):
    table = read_csv(result.out_dir / "best_loss_experiment.csv")
    assert list(table[0]) == ["step", "loss", "val_loss", "gap", "length"]
    assert [int(r["step"]) for r in table if r["gap"] == ""] == [STEPS - 1]  # no val/loss there
    for row in table[:-1]:
        step = int(row["step"])
        expected = (loss(1, 0, step) + 0.1) - loss(1, 0, step)
        assert float(row["gap"]) == expected


def test_where_keeps_only_rows_that_satisfy_it(result):
    table = read_csv(result.out_dir / "best_loss_experiment.csv")
    grid = [*range(0, STEPS, 10), STEPS - 1]
    expected = [s for s in grid if length(1, 0, s) < 22 and s >= 10]
    assert [int(r["step"]) for r in table] == expected
    assert all(float(r["length"]) < 22 for r in table)
    note = result.report.tables[0].notes[-1]
    assert (
        note
        == f"where length < 22 and step >= 10: kept {len(expected)} of {len(grid)} sampled rows"
    )


# --- compare -------------------------------------------------------------------------------------


def test_compare_resolves_selections_and_ids_with_the_first_as_reference(result):
    comparison = result.report.analysis.comparison
    assert [(c.ref, c.run_id, c.selection) for c in comparison.runs] == [
        ("best", BEST, "best"),
        ("sweepl0s1", "sweepl0s1", None),
        ("sweepl1s2", "sweepl1s2", None),
    ]


def test_config_diff_lists_exactly_the_keys_that_differ_flattened(result):
    comparison = result.report.analysis.comparison
    assert [(d.key, d.values, d.present) for d in comparison.config] == [
        ("model.dropout", (None, 0.1, None), (False, True, False)),
        ("note", (None, HOSTILE, None), (False, True, False)),
        ("optim.lr", (0.01, 0.001, 0.01), (True, True, True)),
        ("seed", (0, 1, 2), (True, True, True)),
    ]
    assert comparison.config_keys == 7
    table = read_csv(result.out_dir / "compare_config.csv")
    assert table == [
        {"key": "model.dropout", BEST: "", "sweepl0s1": "0.1", "sweepl1s2": ""},
        {"key": "note", BEST: "", "sweepl0s1": HOSTILE, "sweepl1s2": ""},
        {"key": "optim.lr", BEST: "0.01", "sweepl0s1": "0.001", "sweepl1s2": "0.01"},
        {"key": "seed", BEST: "0", "sweepl0s1": "1", "sweepl1s2": "2"},
    ]


def test_deltas_have_direction_percent_and_marks(result):
    comparison = result.report.analysis.comparison
    by_alias = {m.alias: m for m in comparison.metrics}
    assert {a: (m.goal, m.goal_from) for a, m in by_alias.items()} == {
        "loss": ("minimize", "name"),
        "accuracy": ("maximize", "name"),
        "length": ("minimize", "spec"),
        "gap": ("none", "name"),  # a name that says no direction: never better or worse
    }
    ref = last_loss(BEST)
    other = by_alias["loss"].changes[0]
    assert by_alias["loss"].reference == ref
    assert other.run_id == "sweepl0s1" and other.value == last_loss("sweepl0s1")
    assert other.delta == last_loss("sweepl0s1") - ref
    assert other.percent == pytest.approx(100 * (last_loss("sweepl0s1") - ref) / ref, rel=1e-12)
    assert other.mark == "worse"
    # Higher loss means lower accuracy: worse again, in the other direction.
    accuracy = by_alias["accuracy"].changes[0]
    assert accuracy.delta < 0 and accuracy.mark == "worse"
    # length: goal minimize from the spec; sweepl0s1 is 2 shorter at its last step.
    shorter = by_alias["length"].changes[0]
    assert shorter.delta == pytest.approx(length(0, 1, STEPS - 1) - length(1, 0, STEPS - 1))
    assert shorter.delta < 0 and shorter.mark == "better"
    gap = by_alias["gap"].changes[0]
    assert gap.delta is not None and gap.delta != 0 and gap.mark == "no direction"


def test_summary_reduce_falls_back_to_the_last_value_for_derived_aliases(result):
    gap = next(m for m in result.report.analysis.comparison.metrics if m.alias == "gap")
    # val/loss is logged every 10 steps: the last step with both is 110.
    assert gap.reference == (loss(1, 0, 110) + 0.1) - loss(1, 0, 110)


def test_compare_metrics_csv_has_one_row_per_alias_and_compared_run(result):
    table = read_csv(result.out_dir / "compare_metrics.csv")
    assert [(r["alias"], r["run_id"], r["mark"]) for r in table][:2] == [
        ("loss", "sweepl0s1", "worse"),
        ("loss", "sweepl1s2", "worse"),
    ]
    row = table[0]
    assert float(row["reference"]) == last_loss(BEST)
    assert float(row["delta"]) == last_loss("sweepl0s1") - last_loss(BEST)


def test_history_comparison_shares_one_grid_and_stops_each_run_at_its_end(result):
    table = read_csv(result.out_dir / "compare_history.csv")
    assert list(table[0])[:4] == ["step", f"loss.{BEST}", "loss.sweepl0s1", "loss.sweepl1s2"]
    assert [int(r["step"]) for r in table] == [0, 20, 40, 60, 80, 100, STEPS - 1]
    for row in table:
        step = int(row["step"])
        assert float(row[f"loss.{BEST}"]) == loss(1, 0, step)
        assert float(row["loss.sweepl0s1"]) == loss(0, 1, step)
        short = row["loss.sweepl1s2"]
        assert short == ("" if step > SHORT[1] - 1 else repr(loss(1, 2, step)))


def test_markdown_shows_the_config_diff_and_the_marked_changes(result):
    text = (result.out_dir / "report.md").read_text()
    assert "4 of 7 config keys differ" in text
    assert "| `model.dropout` | – | `0.1` | – |" in text
    assert "| `optim.lr` | `0.01` | `0.001` | `0.01` |" in text
    # Run-derived text cannot break the table or ping anyone: it stays inside a code span.
    assert "| `note` | – | ``a\\|b `c` @everyone <script>`` | – |" in text
    change = 100 * (last_loss("sweepl0s1") - last_loss(BEST)) / last_loss(BEST)
    assert f"| loss | lower | sweep-lr0.001-seed1 | {last_loss('sweepl0s1'):.4g} |" in text
    assert f"+{change:.4g}% | worse |" in text


def test_an_unknown_compare_reference_becomes_a_note(sweep_dir, tmp_path):
    spec = SPEC.format(path=sweep_dir, out=tmp_path / "out").replace(
        "runs: [best, sweepl0s1, sweepl1s2]", "runs: [best, nosuchrun]"
    )
    comparison = build(write_spec(tmp_path / "s.yaml", spec)).report.analysis.comparison
    assert not comparison.complete
    assert comparison.notes == (
        "compare.runs[1]: 'nosuchrun' is neither a selection nor the id of a chosen run, "
        "so it is left out",
        "the comparison needs at least two runs; 1 of 2 could be found",
    )


# --- project table -------------------------------------------------------------------------------


def expected_loss_last() -> dict[str, float]:
    return {run_id(lri, seed): last_loss(run_id(lri, seed)) for lri in range(2) for seed in SEEDS}


def test_project_table_has_config_metric_and_raw_json_columns(result):
    table = read_csv(result.out_dir / "project.csv")
    assert len(table) == 6
    columns = list(table[0])
    assert columns[:3] == ["run_id", "run_name", "state"]
    assert [c for c in columns if c.startswith("config.")] == [
        "config.model.depth",
        "config.model.dropout",
        "config.model.width",
        "config.note",
        "config.optim.lr",
        "config.optim.schedule",
        "config.seed",
    ]
    assert columns[-2:] == ["config_json", "summary_json"]
    assert {"metric.loss", "metric.accuracy", "metric.length", "metric.val/loss"} <= set(columns)
    row = next(r for r in table if r["run_id"] == "sweepl0s1")
    assert json.loads(row["config_json"]) == config(0, 1)
    assert float(row["metric.loss"]) == last_loss("sweepl0s1")
    assert float(row["metric.accuracy"]) == max(r["eval/accuracy"] for r in rows(0, 1))
    assert float(row["metric.length"]) == pytest.approx(
        np.mean([length(0, 1, s) for s in range(STEPS)]), rel=1e-12
    )
    assert float(row["metric.train/loss"]) == last_loss("sweepl0s1")  # the summary value
    assert row["config.model.dropout"] == "0.1"
    other = next(r for r in table if r["run_id"] == BEST)
    assert other["config.model.dropout"] == ""


def test_project_parquet_has_typed_columns_equal_to_the_csv(result):
    frame = pd.read_parquet(result.out_dir / "project.parquet")
    assert len(frame) == 6
    assert str(frame["config.seed"].dtype) == "int64"
    assert str(frame["config.optim.lr"].dtype) == "float64"
    assert str(frame["metric.loss"].dtype) == "float64"
    by_id = dict(zip(frame["run_id"], frame["metric.loss"], strict=True))
    assert by_id == expected_loss_last()
    assert json.loads(frame.loc[frame["run_id"] == BEST, "config_json"].item()) == config(1, 0)


def test_top_n_lists_the_lowest_loss_first(result):
    project = result.report.analysis.project
    expected = sorted(expected_loss_last().items(), key=lambda kv: kv[1])[:4]
    assert [(t.rank, t.run_id, t.value) for t in project.top] == [
        (i + 1, rid, value) for i, (rid, value) in enumerate(expected)
    ]
    table = read_csv(result.out_dir / "project_top.csv")
    assert [(r["rank"], r["run_id"]) for r in table] == [
        (str(i + 1), rid) for i, (rid, _) in enumerate(expected)
    ]


def test_group_by_aggregates_each_metric_over_seeds(result):
    groups = result.report.analysis.project.groups
    assert groups.by == ("config.optim.lr",)
    assert [(g.keys, g.runs) for g in groups.rows] == [((0.001,), 3), ((0.01,), 3)]
    for g, lri in zip(groups.rows, range(2), strict=True):
        values = np.array([last_loss(run_id(lri, s)) for s in SEEDS])
        got = g.values["metric.loss"]
        assert got["count"] == 3
        assert got["mean"] == pytest.approx(values.mean(), rel=1e-12)
        assert got["std"] == pytest.approx(values.std(ddof=1), rel=1e-12)
        assert (got["min"], got["max"]) == (values.min(), values.max())
    table = read_csv(result.out_dir / "project_groups.csv")
    assert list(table[0])[:4] == [
        "config.optim.lr",
        "runs",
        "metric.loss.count",
        "metric.loss.mean",
    ]
    assert [(r["config.optim.lr"], r["runs"], r["metric.loss.count"]) for r in table] == [
        ("0.001", "3", "3"),
        ("0.01", "3", "3"),
    ]


def test_spearman_correlations_match_pandas(result):
    project = result.report.analysis.project
    frame = pd.read_csv(result.out_dir / "project.csv")
    found = {c.column: (c.rho, c.runs) for c in project.correlations}
    # model.width and depth never vary and dropout is set in one run only: not correlated.
    assert set(found) == {"config.optim.lr", "config.seed"}
    for column in found:
        expected = frame[[column, "metric.loss"]].corr(method="spearman").iloc[0, 1]
        assert found[column] == (pytest.approx(expected, rel=1e-12), 6)
    assert project.correlation_note is None


def test_correlations_need_enough_runs_and_say_so(sweep_dir, tmp_path):
    spec = SPEC.format(path=sweep_dir, out=tmp_path / "out").replace(
        "filters: {tags: {any: [sweep]}}", "filters: {config: {optim.lr: 0.01}}"
    )
    result = build(write_spec(tmp_path / "few.yaml", spec))
    project = result.report.analysis.project
    assert project.correlations == ()
    assert project.correlation_note == (
        "too few runs for correlations: 3 have a value of metric.loss, "
        "at least 5 are needed (project_table.min_runs)"
    )
    assert (
        "Too few runs for correlations: 3 have a value of"
        in (result.out_dir / "report.md").read_text()
    )
    assert not (result.out_dir / "project_correlations.csv").exists()


def test_report_json_carries_the_analysis_sections(result):
    data = json.loads((result.out_dir / "report.json").read_text())
    assert data["stats"]["path"] == "stats.csv"
    assert data["comparison"]["reference"] == BEST
    assert data["comparison"]["config"]["differences"][0] == {
        "key": "model.dropout",
        "values": {"sweepl0s1": 0.1},
        "missing": [BEST, "sweepl1s2"],
    }
    loss_item = data["comparison"]["metrics"]["items"][0]
    assert loss_item["changes"][0]["mark"] == "worse"
    assert data["comparison"]["history"]["columns"][0] == "step"
    project = data["project"]
    assert project["paths"]["parquet"] == "project.parquet"
    assert project["primary"] == "metric.loss" and project["goal"] == "minimize"
    assert [t["run_id"] for t in project["top"]] == [
        t.run_id for t in result.report.analysis.project.top
    ]
    assert project["groups"]["rows"][0]["keys"] == {"config.optim.lr": 0.001}
    assert project["correlations"]["min_runs"] == 5
