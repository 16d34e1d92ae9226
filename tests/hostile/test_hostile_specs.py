"""Hostile and unlucky specs: each is refused by validation with exit code 2 and one located
line on stderr, before any data is read, never with a traceback and never with exit 1.

Each case is one class of the fuzzing campaign of issue 12.
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

import numpy as np
import pytest

from reportgen.cli import main
from reportgen.expressions import evaluate

HEADER = """\
version: 1
title: {title}
source: {{type: wandb-offline, path: runs{source}}}
runs:
  filters: {{{filters}}}
metrics:
  loss: train/loss
  length: response_length/mean
{metrics}
outputs: {{dir: out{outputs}}}
{rest}
"""


def spec_text(
    title: str = "t", source: str = "", filters: str = "", metrics: str = "", rest: str = ""
) -> str:
    return HEADER.format(
        title=title, source=source, filters=filters, metrics=metrics, outputs="", rest=rest
    )


LAUGHS = "version: 1\na0: &a0 [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 9)}]\n" for i in range(1, 10)
)

CASES = {
    "impossible date": (
        spec_text(filters="created_after: '2024-02-30'"),
        "runs.filters.created_after: '2024-02-30' is not a real date",
    ),
    "impossible unquoted date": (
        spec_text(filters="created_before: 2024-02-30"),
        "not a valid value",
    ),
    "huge duration": (
        spec_text(source=", stale_after: 99999999999999999999d"),
        "source.stale_after: '99999999999999999999d' is longer than 100 years",
    ),
    "huge age": (
        spec_text(filters="created_after: 9999999999w"),
        "runs.filters.created_after: '9999999999w' is longer than 100 years",
    ),
    "expression without alias": (
        spec_text(metrics="  z: {expr: '1/0'}"),
        "metrics.z.expr: the expression uses no alias",
    ),
    "exponent tower without alias": (
        spec_text(metrics="  z: {expr: '10**10**10'}"),
        "metrics.z.expr: the expression uses no alias",
    ),
    "constant past the float range": (
        spec_text(metrics="  z: {expr: 'loss * 1" + "0" * 400 + "'}"),
        "a constant must be a finite number",
    ),
    "max of one argument": (
        spec_text(metrics="  z: {expr: 'max(loss)'}"),
        "metrics.z.expr: max() takes at least 2 arguments, got 1",
    ),
    "sqrt of two arguments": (
        spec_text(metrics="  z: {expr: 'sqrt(loss, length)'}"),
        "metrics.z.expr: sqrt() takes one argument, got 2",
    ),
    "30,000-term expression": (
        spec_text(metrics="  z: {expr: '" + "+".join(["loss"] * 30_000) + "'}"),
        "metrics.z.expr: the expression is 149,999 characters long; at most 2,000",
    ),
    "deeply nested expression": (
        spec_text(metrics="  z: {expr: '" + "(" * 1000 + "loss" + ")" * 1000 + "'}"),
        "metrics.z.expr:",
    ),
    "NUL byte": (spec_text(title="a\x00b"), "contains a NUL character"),
    "a control character YAML refuses": (spec_text(title="a\x15b"), "not valid YAML"),
    "python tag": (
        spec_text(title="!!python/object/apply:os.system ['echo pwned']"),
        "the YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed",
    ),
    "python tag on a scalar": (
        spec_text(title="!!python/name:os.system ''"),
        "could not determine a constructor",
    ),
    "unknown tag": (spec_text(title="!secret value"), "could not determine a constructor"),
    "nesting 1,000 deep": (
        "version: 1\ntitle: " + "[" * 1000 + "]" * 1000 + "\n",
        "nested more than 50 levels deep",
    ),
    "recursive alias": ("version: 1\nloop: &a [*a]\n", "refers to the value that contains it"),
    "billion laughs": (LAUGHS, "expands to more than 100,000 values"),
    "lone surrogate": (spec_text(title='"\\ud800"'), "unpaired surrogate"),
    "repeat count past the engine's limit": (
        spec_text(filters="name: 'a{99999999999}'"),
        "runs.filters.name: not a valid regular expression: repeat count too big",
    ),
    "project_table.top 1e308": (
        spec_text(rest="project_table: {top: 1.0e+308}"),
        "project_table.top: expected an integer, got a number",
    ),
    "a count past any meaning": (
        spec_text(rest="sampling: {every: 100000000000000000000}"),
        "sampling.every: 100000000000000000000 is too large",
    ),
    "a folder name past the file system's limit": (
        spec_text(rest="cache: {dir: " + "x" * 300 + "}"),
        "cache.dir: a folder name in it is 300 bytes long; at most 255 are possible",
    ),
    "not a number": (
        spec_text(rest="health: {checks: {kl_high: {threshold: .nan}}}"),
        "health.checks.kl_high.threshold: expected a finite number",
    ),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_hostile_spec_is_one_located_line_and_exit_2(case, tmp_path, capsys):
    text, expected = CASES[case]
    path = tmp_path / "spec.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    started = time.monotonic()
    code = main(["validate", str(path)])
    elapsed = time.monotonic() - started
    err = capsys.readouterr().err
    assert code == 2, err
    assert "Traceback" not in err
    (line,) = err.splitlines()
    assert line.startswith(f"{path}:") and expected in line, line
    assert elapsed < 30  # a hang guard, not a speed target


def test_the_billion_laughs_are_refused_without_expanding_them(tmp_path, capsys):
    path = tmp_path / "laughs.yaml"
    path.write_text(LAUGHS, encoding="utf-8")
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert main(["validate", str(path)]) == 2
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024
    assert grown_mib < 200  # 9 levels fully expanded would be 3.9e8 values (gigabytes)
    assert "expands to more than 100,000 values" in capsys.readouterr().err


def test_a_spec_larger_than_a_mebibyte_is_refused(tmp_path, capsys):
    path = tmp_path / "huge.yaml"
    path.write_text("version: 1\n# " + "x" * (1 << 20) + "\n", encoding="utf-8")
    assert main(["validate", str(path)]) == 2
    assert "is larger than 1024 KiB" in capsys.readouterr().err


def test_min_and_max_take_any_number_of_values_element_wise():
    columns = {
        "a": np.array([1.0, 5.0, 3.0]),
        "b": np.array([4.0, 2.0, 6.0]),
        "c": np.array([0.5, 9.0, 2.0]),
    }
    assert evaluate("min(a, b, c)", columns).tolist() == [0.5, 2.0, 2.0]
    assert evaluate("max(a, b, c)", columns).tolist() == [4.0, 9.0, 6.0]
    assert columns["c"].tolist() == [0.5, 9.0, 2.0]  # numpy's out= would have overwritten it


def test_merge_keys_still_work(tmp_path, capsys):
    """The alias guard refuses loops and bombs, not YAML's ordinary reuse."""
    text = spec_text(rest="x-base: &base {every: 10}\n") + "sampling: {<<: *base, start: 0}\n"
    path = tmp_path / "spec.yaml"
    path.write_text(text.replace("x-base", "sampling_defaults"), encoding="utf-8")
    main(["validate", str(path)])
    err = capsys.readouterr().err
    assert "sampling_defaults: unknown key" in err and "alias" not in err


def write_spec(tmp_path: Path, out: str, cache: str = "") -> Path:
    runs = tmp_path / "runs"
    runs.mkdir(exist_ok=True)
    path = tmp_path / "spec.yaml"
    rest = f"cache: {{dir: {cache}}}" if cache else ""
    text = HEADER.format(
        title="t", source="", filters="", metrics="", outputs="", rest=rest
    ).replace("dir: out", f"dir: {out}")
    path.write_text(text.replace("path: runs", f"path: {runs}"), encoding="utf-8")
    return path


def test_an_output_folder_that_is_a_file_is_exit_2(tmp_path, capsys):
    blocker = tmp_path / "taken"
    blocker.write_text("a file\n")
    assert main(["build", str(write_spec(tmp_path, f"{blocker}/report"))]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert (
        line
        == f"error: outputs.dir: '{blocker}' is a file, not a folder; choose another output folder"
    )


def test_an_output_folder_with_a_nul_is_exit_2(tmp_path, capsys):
    path = write_spec(tmp_path, '"out\\0put"')
    assert main(["build", str(path)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"{path}:") and line.endswith(
        ": outputs.dir: the folder name contains a NUL character"
    )


def test_a_cache_folder_that_is_a_file_is_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("REPORTGEN_CACHE_DIR")
    blocker = tmp_path / "cache-file"
    blocker.write_text("a file\n")
    assert main(["build", str(write_spec(tmp_path, str(tmp_path / "out"), str(blocker)))]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"error: the cache folder (set by the spec (cache.dir)): '{blocker}'")
    assert "is a file, not a folder" in line


LONG_NAME = "a" * 40 + "!"


@pytest.fixture(scope="module")
def long_named_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from runwriter import PlannedRun, write_runs

    plan = PlannedRun(name=LONG_NAME, run_id="longname", rows=[{"train/loss": 1.0}])
    return write_runs(tmp_path_factory.mktemp("long-name"), [plan])


def test_a_backtracking_name_regex_stops_with_exit_2_instead_of_hanging(
    long_named_run, tmp_path, capsys
):
    path = tmp_path / "spec.yaml"
    text = spec_text(filters="name: '^(a|aa)+$'").replace("path: runs", f"path: {long_named_run}")
    path.write_text(text.replace("dir: out", f"dir: {tmp_path / 'out'}"), encoding="utf-8")
    started = time.monotonic()
    assert main(["build", str(path)]) == 2
    assert time.monotonic() - started < 60  # 2^40 steps of backtracking would be days
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: runs.filters.name: the regular expression '^(a|aa)+$' took more")
    assert f"on the run name '{LONG_NAME}'" in line and "simplify the pattern" in line


def test_an_ordinary_name_regex_still_matches(long_named_run, capsys):
    assert main(["runs", "--source", str(long_named_run), "--name", "^a{40}!$"]) == 0
    assert LONG_NAME in capsys.readouterr().out
