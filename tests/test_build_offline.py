"""The end-to-end workflow on local runs: pick a run, sample its metrics, write the outputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from conftest import LONG_STEPS, RL_IDS, RL_INDEX, rl_rows, write_spec

from reportgen import build

SHORTEST_SPEC = """\
version: 1
title: Shortest answers
source: {{type: wandb-offline, path: "{path}"}}
runs:
  filters: {{tags: {{any: [grpo]}}, name: "^grpo-rl"}}
metrics:
  entropy_loss: [actor/entropy, actor/entropy_loss]
  clip_ratio: response_length/clip_ratio
  length: response_length/mean
select:
  shortest: {{by: length, reduce: mean, pick: min}}
sampling: {{x: _step, start: 0, every: 100}}
outputs:
  dir: "{out}"
  csv: {{columns: [entropy_loss, clip_ratio, length]}}
"""


def read_csv(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


@pytest.fixture(scope="module")
def shortest(project_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("shortest")
    spec = write_spec(
        tmp / "shortest.yaml", SHORTEST_SPEC.format(path=project_dir, out=tmp / "out")
    )
    return build(spec)


def test_the_run_with_the_lowest_mean_length_is_chosen(shortest):
    selection = shortest.report.selections[0]
    assert selection.run_id == "rlshort1"
    assert [r.run_id for r in selection.ranking] == ["rlshort1", "rlmid001", "rllong01"]
    expected = sum(r["response_length/mean"] for r in rl_rows(0)) / LONG_STEPS
    assert selection.value == pytest.approx(expected, rel=1e-12)


def test_csv_has_every_100th_step_and_the_last_with_logged_values(shortest):
    path = shortest.out_dir / "shortest_length_experiment.csv"
    rows = read_csv(path)
    assert rows[0] == ["step", "entropy_loss", "clip_ratio", "length"]
    expected_steps = [*range(0, LONG_STEPS, 100), LONG_STEPS - 1]
    assert [int(r[0]) for r in rows[1:]] == expected_steps
    logged = rl_rows(RL_INDEX["rlshort1"])
    for row in rows[1:]:
        step = int(row[0])
        assert float(row[1]) == logged[step]["actor/entropy_loss"]
        assert float(row[2]) == logged[step]["response_length/clip_ratio"]
        assert float(row[3]) == logged[step]["response_length/mean"]


def test_fallback_alias_reports_which_key_won(shortest):
    run = shortest.report.run("rlshort1")
    metric = run.metric("entropy_loss")
    assert metric is not None and metric.key == "actor/entropy_loss"
    table = shortest.report.tables[0]
    assert table.keys == {
        "entropy_loss": "actor/entropy_loss",
        "clip_ratio": "response_length/clip_ratio",
        "length": "response_length/mean",
    }


def test_filters_keep_only_matching_runs(shortest):
    assert sorted(r.id for r in shortest.report.runs) == sorted(RL_IDS)
    assert shortest.report.runs_found == 7


def test_markdown_summarises_choice_trend_and_min_max(shortest):
    text = (shortest.out_dir / "report.md").read_text()
    assert "# Shortest answers" in text
    assert "Picked **grpo-rlshort1** (`rlshort1`): the lowest mean of `length`" in text
    assert "[shortest\\_length\\_experiment.csv](shortest_length_experiment.csv)" in text
    stats = shortest.report.run("rlshort1").metric("length").stats
    logged = [r["response_length/mean"] for r in rl_rows(0)]
    assert stats.min == min(logged) and stats.max == max(logged)
    assert stats.min_step == logged.index(min(logged))
    assert stats.trend == "falling"
    assert f"| length | `response_length/mean` | {logged[0]:.4g} | {logged[-1]:.4g} |" in text


def test_report_json_follows_the_contract(shortest):
    data = json.loads((shortest.out_dir / "report.json").read_text())
    assert set(data) >= {
        "reportgen_version",
        "spec",
        "source",
        "runs",
        "selections",
        "tables",
        "gate",
    }
    assert set(data["spec"]) == {"path", "sha256"} and len(data["spec"]["sha256"]) == 64
    assert data["selections"] == {"shortest": "rlshort1"}
    run = next(r for r in data["runs"] if r["id"] == "rlshort1")
    assert run["steps"] == {"first": 0, "last": LONG_STEPS - 1, "rows": LONG_STEPS}
    assert run["state"] == "finished" and run["verdict"] == "good" and run["findings"] == []
    assert run["config"] == {"actor": {"lr": 1e-6}, "seed": 0}
    assert run["tags"] == ["grpo", "sweep"]
    assert data["tables"] == [
        {
            "name": "shortest_length_experiment",
            "path": "shortest_length_experiment.csv",
            "run_id": "rlshort1",
            "selection": "shortest",
            "x": "_step",
            "columns": ["step", "entropy_loss", "clip_ratio", "length"],
            "keys": {
                "entropy_loss": "actor/entropy_loss",
                "clip_ratio": "response_length/clip_ratio",
                "length": "response_length/mean",
            },
            "rows": 12,
            "notes": [],
        }
    ]
    assert data["gate"] == {"fail_on": "never", "failed": False, "reasons": []}


def test_no_temporary_files_are_left_behind(shortest):
    names = sorted(p.name for p in shortest.out_dir.iterdir())
    assert names == [
        ".reportgen-manifest.json",  # what this build wrote: the next one removes stale files
        "plots",
        "report.json",
        "report.md",
        "shortest_length_experiment.csv",
    ]
    charts = sorted(p.name for p in (shortest.out_dir / "plots").iterdir())
    assert charts == ["clip_ratio.png", "entropy_loss.png", "length.png"]


def spec_for(project_dir: Path, tmp_path: Path, body: str, csv: str = "{}") -> Path:
    head = f'version: 1\nsource: {{type: wandb-offline, path: "{project_dir}"}}\n'
    head += f'outputs: {{dir: "{tmp_path / "out"}", csv: {csv}}}\n'
    return write_spec(tmp_path / "spec.yaml", head + body)


def test_keys_logged_at_different_cadences_share_one_table(project_dir, tmp_path):
    spec = spec_for(
        project_dir,
        tmp_path,
        "runs: {ids: [sftnan01]}\nmetrics: {train: train/loss, val: val/loss}\n"
        "sampling: {every: 5, stop: 30, align: exact}\n",
    )
    result = build(spec)
    rows = read_csv(result.out_dir / "sft-nan_experiment.csv")
    # val/loss is logged every 10 steps: exact alignment leaves the 5s empty.
    assert rows[1:] == [
        ["0", "2", "2.5"],
        ["5", repr(2.0 / 6), ""],
        ["10", repr(2.0 / 11), repr(2.5 / 11)],
        ["15", repr(2.0 / 16), ""],
        ["20", repr(2.0 / 21), repr(2.5 / 21)],
        ["25", repr(2.0 / 26), ""],
        ["30", repr(2.0 / 31), repr(2.5 / 31)],
    ]


def test_asof_alignment_carries_the_last_value_forward(project_dir, tmp_path):
    spec = spec_for(
        project_dir,
        tmp_path,
        "runs: {ids: [sftnan01]}\nmetrics: {val: val/loss}\nsampling: {start: 5, every: 10, stop: 25}\n",
    )
    rows = read_csv(build(spec).out_dir / "sft-nan_experiment.csv")
    assert rows[1:] == [["5", "2.5"], ["15", repr(2.5 / 11)], ["25", repr(2.5 / 21)]]


def test_nan_values_are_kept_and_distinct_from_not_logged(project_dir, tmp_path):
    spec = spec_for(
        project_dir,
        tmp_path,
        "runs: {ids: [sftnan01]}\nmetrics: {train: train/loss, val: val/loss}\n"
        "sampling: {start: 110, every: 5, stop: 130, align: exact}\n",
    )
    result = build(spec)
    rows = read_csv(result.out_dir / "sft-nan_experiment.csv")
    assert rows[1:] == [
        ["110", repr(2.0 / 111), repr(2.5 / 111)],
        ["115", repr(2.0 / 116), ""],
        ["120", "nan", repr(2.5 / 121)],
        ["125", "nan", ""],
        ["130", "nan", repr(2.5 / 131)],
    ]
    stats = result.report.run("sftnan01").metric("train").stats
    assert stats.non_finite == 80 and stats.points == 200
    assert stats.last_step == 119  # the last finite value


def test_missing_metric_gives_an_empty_column_and_a_note_with_close_keys(project_dir, tmp_path):
    spec = spec_for(
        project_dir,
        tmp_path,
        "runs: {ids: [sftnan01]}\nmetrics: {train: train/loss, acc: [train/accuracy, train/los]}\n"
        "sampling: {every: 100}\n",
    )
    result = build(spec)
    rows = read_csv(result.out_dir / "sft-nan_experiment.csv")
    assert rows[0] == ["step", "train", "acc"]
    assert [r[2] for r in rows[1:]] == ["", "", ""]
    note = result.report.run("sftnan01").notes[0]
    assert note == (
        "metric 'acc' is missing in run sft-nan: none of [train/accuracy, train/los] was logged; "
        "closest keys that exist: train/loss, val/loss"
    )
    text = (result.out_dir / "report.md").read_text()
    assert "metric 'acc' is missing in run sft-nan" in text


def test_missing_metric_column_can_be_dropped(project_dir, tmp_path):
    spec = spec_for(
        project_dir,
        tmp_path,
        "runs: {ids: [sftnan01]}\nmetrics: {train: train/loss, acc: train/accuracy}\n"
        "sampling: {every: 100}\n",
        csv="{missing: drop}",
    )
    rows = read_csv(build(spec).out_dir / "sft-nan_experiment.csv")
    assert rows[0] == ["step", "train"]


def test_a_run_shorter_than_one_interval_gives_all_its_steps(project_dir, tmp_path):
    spec = spec_for(
        project_dir,
        tmp_path,
        "runs: {ids: [grpotiny]}\nmetrics: {length: response_length/mean}\nsampling: {every: 100}\n",
    )
    result = build(spec)
    rows = read_csv(result.out_dir / "grpo-tiny_experiment.csv")
    assert [int(r[0]) for r in rows[1:]] == list(range(30))
    assert [float(r[1]) for r in rows[1:]] == [r["response_length/mean"] for r in rl_rows(0)[:30]]
    assert result.report.tables[0].notes == (
        "the run ends at step 29, within one sampling interval (100) of the start: "
        "all 30 logged steps are kept",
    )


def test_a_resumed_run_is_one_run_with_both_parts(project_dir, tmp_path):
    spec = spec_for(
        project_dir,
        tmp_path,
        "runs: {ids: [resume01]}\nmetrics: {loss: train/loss}\nsampling: {every: 25}\n",
    )
    result = build(spec)
    run = result.report.run("resume01")
    assert (run.first_step, run.last_step, run.rows) == (0, 99, 100)
    assert len(run.locations) == 2
    rows = read_csv(result.out_dir / "resumed_experiment.csv")
    assert [(int(step), float(v)) for step, v in rows[1:]] == [
        (s, 1.0 / (1 + s)) for s in (0, 25, 50, 75, 99)
    ]


def test_a_crashed_run_is_failed_with_its_exit_code_and_traceback(project_dir, tmp_path):
    spec = spec_for(project_dir, tmp_path, "runs: {ids: [crash001]}\nmetrics: {loss: train/loss}\n")
    run = build(spec).report.run("crash001")
    assert (run.state, run.exit_code) == ("failed", 1)
    assert run.console_tail[-1] == "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"


def test_config_filters_compare_nested_values(project_dir, tmp_path):
    spec = spec_for(
        project_dir,
        tmp_path,
        "runs:\n  filters: {config: {actor.lr: {gte: 1.5e-6}}, state: [finished]}\n"
        "metrics: {length: response_length/mean}\n",
    )
    assert sorted(r.id for r in build(spec).report.runs) == ["rllong01", "rlmid001"]


def test_limit_keeps_the_newest_runs(project_dir, tmp_path):
    spec = spec_for(project_dir, tmp_path, "runs: {limit: 2}\nmetrics: {loss: train/loss}\n")
    result = build(spec)
    created = sorted((r.created_at for r in result.report.runs), reverse=True)
    assert len(result.report.runs) == 2
    assert [r.created_at for r in result.report.runs] == created


def test_run_names_are_sanitised_into_file_names(tmp_path):
    from runwriter import PlannedRun, write_runs

    root = write_runs(
        tmp_path / "runs",
        [PlannedRun(name="../../etc/passwd x|y", run_id="evil0001", rows=[{"loss": 1.0}] * 3)],
    )
    spec = spec_for(root, tmp_path, "metrics: {loss: loss}\n")
    result = build(spec)
    assert [p.name for p in result.files if p.suffix == ".csv"] == ["etc_passwd_x_y_experiment.csv"]
    assert all(p.parent in (result.out_dir, result.out_dir / "plots") for p in result.files)


def test_markdown_does_not_link_csv_files_that_were_not_written(project_dir, tmp_path):
    spec = spec_for(
        project_dir,
        tmp_path,
        "runs: {ids: [grpotiny]}\nmetrics: {length: response_length/mean}\n"
        f'outputs: {{dir: "{tmp_path / "md"}", formats: [markdown]}}\n',
    )
    spec.write_text(
        spec.read_text().replace(f'outputs: {{dir: "{tmp_path / "out"}", csv: {{}}}}\n', "")
    )
    result = build(spec)
    assert [p.name for p in result.files] == ["length.png", "report.md"]
    text = (tmp_path / "md" / "report.md").read_text()
    assert "30 rows sampled on `_step`." in text and ".csv" not in text
