"""`reportgen runs` and `reportgen keys`, driven through the CLI on runs written by real wandb."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import write_spec
from runwriter import PlannedRun, write_runs

from reportgen.cli import main


def plans() -> list[PlannedRun]:
    return [
        PlannedRun(
            name="alpha",
            run_id="clialpha",
            rows=[{"loss": 1.0 / (1 + s), "tokens": 100 * s} for s in range(12)],
            tags=["a", "shared"],
            config={"lr": 0.1},
            summary={"best_acc": 0.95},
        ),
        PlannedRun(
            name="beta",
            run_id="clibeta1",
            rows=[{"loss": v} for v in (2.0, 1.5, 1.0, math.nan, math.inf)],
            tags=["b", "shared"],
            exit_code=1,
        ),
        PlannedRun(
            name="gamma <b>|`x`",
            run_id="cligamma",
            rows=[{"eval/step": s, "eval/acc": 0.5 + s / 10} for s in range(3)],
            steps=[0, 10, 20],
            define_metrics=[{"name": "eval/acc", "step_metric": "eval/step"}],
            tags=["b"],
        ),
    ]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_runs(tmp_path_factory.mktemp("discover"), plans())


def table(text: str) -> list[list[str]]:
    """Rows of a printed table, split on runs of two or more spaces."""
    import re

    return [re.split(r"\s{2,}", line.strip()) for line in text.splitlines()]


def rows_by_first(text: str) -> dict[str, list[str]]:
    return {row[0]: row for row in table(text)[1:]}


# --- runs ----------------------------------------------------------------------------------------


def test_runs_lists_id_name_state_steps_and_tags(runs_dir, capsys):
    assert main(["runs", "--source", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert table(out)[0] == ["id", "name", "state", "steps", "created", "tags"]
    found = rows_by_first(out)
    assert set(found) == {"clialpha", "clibeta1", "cligamma"}
    alpha = found["clialpha"]
    assert alpha[:4] == ["clialpha", "alpha", "finished", "12"]
    assert alpha[5] == "a, shared"
    assert found["clibeta1"][:4] == ["clibeta1", "beta", "failed", "5"]
    assert found["cligamma"][:4] == ["cligamma", "gamma <b>|`x`", "finished", "3"]


def test_runs_json_has_steps_and_creation_time(runs_dir, capsys):
    assert main(["runs", "--source", str(runs_dir), "--json"]) == 0
    data = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert data["cligamma"]["steps"] == {"first": 0, "last": 20, "rows": 3}
    assert data["clialpha"]["tags"] == ["a", "shared"]
    assert data["clibeta1"]["state"] == "failed"
    assert data["clialpha"]["created_at"].endswith("Z")


def test_runs_options_filter_like_a_spec(runs_dir, capsys):
    assert main(["runs", "--source", str(runs_dir), "--tag", "b", "--state", "finished"]) == 0
    assert list(rows_by_first(capsys.readouterr().out)) == ["cligamma"]


def test_runs_of_a_spec_apply_its_filters(runs_dir, tmp_path, capsys):
    spec = write_spec(
        tmp_path / "spec.yaml",
        f'version: 1\nsource: {{type: wandb-offline, path: "{runs_dir}"}}\n'
        "runs: {filters: {tags: {all: [shared]}}}\n",
    )
    assert main(["runs", str(spec)]) == 0
    assert sorted(rows_by_first(capsys.readouterr().out)) == ["clialpha", "clibeta1"]
    assert main(["runs", str(spec), "--name", "^b"]) == 0
    assert list(rows_by_first(capsys.readouterr().out)) == ["clibeta1"]


def test_no_matching_run_says_so_and_succeeds(runs_dir, capsys):
    assert main(["runs", "--source", str(runs_dir), "--tag", "nope"]) == 0
    captured = capsys.readouterr()
    assert (captured.out, captured.err) == ("", "no runs match\n")


def test_a_missing_folder_exits_3(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert main(["runs", "--source", str(missing)]) == 3
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith(f"error: source.path: folder '{missing}' does not exist")


def test_a_bad_spec_exits_2(tmp_path, capsys):
    spec = write_spec(tmp_path / "bad.yaml", "version: 1\nsource: {type: wandb-offline}\nrun: {}\n")
    assert main(["keys", str(spec)]) == 2
    assert capsys.readouterr().err.splitlines() == [
        f"{spec}:2:9: source: missing required key 'path'",
        f"{spec}:3:1: run: unknown key 'run'; did you mean 'runs'?",
    ]


def test_spec_and_source_together_is_a_usage_error(runs_dir, tmp_path, capsys):
    assert main(["runs", str(tmp_path / "x.yaml"), "--source", str(runs_dir)]) == 2
    assert capsys.readouterr().err == (
        "error: give either a SPEC or --source PATH (a folder of W&B runs)\n"
    )


def test_a_wandb_url_names_a_server_project(runs_dir, capsys):
    from reportgen.analysis.discover import source_from_argument

    spec = source_from_argument("wandb://my-team/rlvr")
    assert (spec.type, spec.entity, spec.project) == ("wandb", "my-team", "rlvr")
    assert main(["runs", "--source", "wandb://my-team"]) == 2
    assert capsys.readouterr().err == (
        "error: --source 'wandb://my-team': expected wandb://ENTITY/PROJECT\n"
    )


# --- keys ----------------------------------------------------------------------------------------


def test_keys_of_one_run_with_counts_steps_and_range(runs_dir, capsys):
    assert main(["keys", "--source", str(runs_dir), "--run", "clialpha"]) == 0
    out = capsys.readouterr().out
    assert table(out)[0] == [
        "key",
        "type",
        "runs",
        "count",
        "first",
        "last",
        "min",
        "max",
        "non-finite",
        "x",
    ]
    found = rows_by_first(out)
    assert found["loss"] == ["loss", "float", "1", "12", "0", "11", "0.08333", "1", "0", "_step"]
    assert found["tokens"] == ["tokens", "int", "1", "12", "0", "11", "0", "1100", "0", "_step"]
    # Set in the summary only, never logged as history.
    assert found["best_acc"] == ["best_acc", "float", "1", "0", "0"]
    assert "eval/acc" not in found


def test_keys_across_runs_count_non_finite_values(runs_dir, capsys):
    assert main(["keys", "--source", str(runs_dir), "--json"]) == 0
    data = {k["key"]: k for k in json.loads(capsys.readouterr().out)}
    loss = data["loss"]
    assert (loss["runs"], loss["count"], loss["non_finite"]) == (2, 17, 2)
    assert (loss["min"], loss["max"]) == (1.0 / 12, 2.0)
    assert (loss["first_step"], loss["last_step"]) == (0, 11)
    acc = data["eval/acc"]
    assert (acc["x"], acc["first_step"], acc["last_step"], acc["count"]) == ("eval/step", 0, 20, 3)


def test_keys_run_may_be_named_and_unknown_runs_are_refused(runs_dir, capsys):
    assert main(["keys", "--source", str(runs_dir), "--run", "beta", "--json"]) == 0
    assert [
        k["key"] for k in json.loads(capsys.readouterr().out) if not k["key"].startswith("_")
    ] == ["loss"]
    assert main(["keys", "--source", str(runs_dir), "--run", "alpah"]) == 2
    assert capsys.readouterr().err == (
        "error: --run 'alpah': no such run among the 3 chosen; did you mean 'alpha'?\n"
    )


def test_keys_respects_a_spec_filters(runs_dir, tmp_path, capsys):
    spec = write_spec(
        tmp_path / "spec.yaml",
        f'version: 1\nsource: {{type: wandb-offline, path: "{runs_dir}"}}\n'
        "runs: {filters: {state: [failed]}}\n",
    )
    assert main(["keys", str(spec), "--json"]) == 0
    data = {k["key"]: k for k in json.loads(capsys.readouterr().out)}
    assert data["loss"]["runs"] == 1 and data["loss"]["count"] == 5
    assert "tokens" not in data
