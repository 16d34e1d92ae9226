"""Spec validation: every problem located by file:line:col and spec path, before any data."""

from __future__ import annotations

from pathlib import Path

import pytest

from reportgen.errors import SpecError
from reportgen.spec import load_schema, load_spec, parse_spec

VALID = """\
version: 1
source:
  type: wandb-offline
  path: runs
metrics:
  loss: train/loss
  length: response_length/mean
select:
  shortest: {by: length}
"""


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "spec.yaml")
    return [str(p) for p in caught.value.problems]


def test_a_valid_spec_gets_its_defaults_filled_in():
    spec = parse_spec(VALID, "specs/x.yaml")
    assert spec.title == "Training report"
    assert spec.sampling.x == "_step" and spec.sampling.every == 1 and spec.sampling.align == "asof"
    assert spec.select["shortest"].reduce == "mean" and spec.select["shortest"].pick == "min"
    assert spec.outputs.dir == Path("outputs/x")
    assert spec.outputs.formats == ("markdown", "csv", "json")
    assert spec.gate.fail_on == "never"
    assert spec.metrics["loss"].keys == ("train/loss",)


def test_unknown_key_names_its_line_and_the_closest_valid_key():
    text = VALID + "sampling:\n  evry: 100\n"
    assert problems(text) == [
        "spec.yaml:11:3: sampling.evry: unknown key 'evry'; did you mean 'every'?",
    ]


def test_unknown_top_level_key_suggests_the_closest():
    assert problems(VALID + "output: {dir: out}\n") == [
        "spec.yaml:10:1: output: unknown key 'output'; did you mean 'outputs'?"
    ]


def test_wrong_type_says_what_was_expected_and_what_was_given():
    assert problems(VALID + "sampling: {every: ten}\n") == [
        'spec.yaml:10:19: sampling.every: expected an integer, got a string "ten"'
    ]


def test_bad_enum_value_lists_the_choices():
    assert problems(VALID + "sampling: {align: asoff}\n") == [
        "spec.yaml:10:19: sampling.align: expected one of exact, asof, nearest, interpolate; "
        "got a string \"asoff\"; did you mean 'asof'?"
    ]


def test_every_problem_is_reported_not_only_the_first():
    text = VALID.replace("type: wandb-offline", "type: wandb-ofline") + "limit: 3\n"
    found = problems(text)
    assert len(found) == 2
    assert found[0].startswith("spec.yaml:3:9: source.type: expected one of wandb-offline, wandb")
    valid = ", ".join(sorted(load_schema()["properties"]))
    assert found[1] == f"spec.yaml:10:1: limit: unknown key 'limit'; valid: {valid}"


def test_missing_required_key_is_located_at_its_parent():
    text = "version: 1\nsource:\n  type: wandb-offline\n"
    assert problems(text) == ["spec.yaml:3:3: source: missing required key 'path'"]


def test_selection_by_an_undefined_alias_suggests_one():
    text = VALID.replace("{by: length}", "{by: lenght}")
    assert problems(text) == [
        "spec.yaml:9:18: select.shortest.by: unknown alias 'lenght'; did you mean 'length'?"
    ]


def test_invalid_name_regex_is_refused():
    text = VALID + "runs: {filters: {name: 'grpo-('}}\n"
    (found,) = problems(text)
    assert found.startswith("spec.yaml:10:24: runs.filters.name: not a valid regular expression")


def test_duplicate_keys_are_refused():
    assert problems(VALID + "title: a\ntitle: b\n") == [
        "spec.yaml:11:1: title: this key is given twice; keep one"
    ]


def test_broken_yaml_names_the_position():
    (found,) = problems("version: 1\nsource: {type: wandb-offline, path: x\n")
    assert found.startswith("spec.yaml:3:1: not valid YAML:")


def test_an_empty_file_is_refused():
    assert problems("") == ["spec.yaml:1:1: expected a mapping at the top, got an empty file"]


def test_a_metric_alias_object_reports_each_of_its_problems():
    found = problems(VALID.replace("  length: response_length/mean\n", "  length: {goal: up}\n"))
    assert found == [
        "spec.yaml:7:11: metrics.length: give exactly one of key, expr",
        'spec.yaml:7:18: metrics.length.goal: expected one of minimize, maximize; got a string "up"',
    ]


def test_csv_name_fields_are_checked():
    text = VALID + "outputs: {csv: {name: '{selction}.csv'}}\n"
    assert problems(text) == [
        "spec.yaml:10:23: outputs.csv.name: unknown field '{selction}'; did you mean 'selection'?"
    ]


def test_a_missing_spec_file_is_a_spec_error(tmp_path):
    with pytest.raises(SpecError) as caught:
        load_spec(tmp_path / "nope.yaml")
    assert str(caught.value) == f"{tmp_path / 'nope.yaml'}:1:1: no such file"


def test_ages_and_dates_become_time_bounds():
    from datetime import datetime, timezone

    spec = parse_spec(
        VALID + "runs: {filters: {created_after: 7d, created_before: '2026-11-01'}}\n"
    )
    now = datetime(2026, 11, 21, tzinfo=timezone.utc)
    after = spec.runs.filters.created_after
    before = spec.runs.filters.created_before
    assert after is not None and after.resolve(now) == datetime(2026, 11, 14, tzinfo=timezone.utc)
    assert before is not None and before.resolve(now) == datetime(2026, 11, 1, tzinfo=timezone.utc)


def test_the_demo_and_starter_specs_are_valid(tmp_path):
    from reportgen.cli import main

    root = Path(__file__).resolve().parent.parent
    load_spec(root / "specs" / "demo.yaml")
    assert main(["init", str(tmp_path / "starter.yaml")]) == 0
    spec = load_spec(tmp_path / "starter.yaml")
    assert spec.select["best"].by == "loss"
