"""Hostile text in run names, tags and config: terminal escapes, bidi overrides and formulas.

ESC, BEL and U+202E reach nobody raw (report.md, the PR comment, stderr); project CSV cells
that a spreadsheet would run as formulas are neutralised while numbers stay numbers; a carriage
return inside a config value does not split a CSV row; matplotlib says nothing on stderr.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from runwriter import PlannedRun, write_runs

from reportgen.render.analysis import text_cell
from reportgen.safetext import visible

EVIL_NAME = "evil\x1b[2J\x07run\u202etxt.exe"
CONFIG = {
    "cmd": '=HYPERLINK("http://attacker.example","x")',
    "plus": "+1+2",
    "at": "@SUM(A1)",
    "minus_text": "-cmd|' /C calc'!A0",
    "negative": -0.5,
    "negative_text": "-0.5",
    "carriage": "line one\rline two",
    "title": "\x1b]0;pwned\x07",
}
RAW = ("\x1b", "\x07", "\u202e")

SPEC = """\
version: 1
title: hostile text
source: {{type: wandb-offline, path: "{runs}"}}
metrics:
  loss: train/loss
project_table: {{metrics: [loss]}}
outputs:
  dir: "{out}"
  formats: [markdown, csv, json]
  comment: {{on_error: warn}}
"""


@pytest.fixture(scope="module")
def hostile_runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    plans = [
        PlannedRun(
            name=EVIL_NAME,
            run_id="evil0001",
            rows=[{"train/loss": 1.0 / (1 + s)} for s in range(30)],
            config=CONFIG,
            tags=["\u202egat", "ok"],
        ),
        PlannedRun(
            name="plain",
            run_id="plain001",
            rows=[{"train/loss": 2.0 / (1 + s)} for s in range(30)],
            config={**CONFIG, "cmd": "plain"},
        ),
    ]
    return write_runs(tmp_path_factory.mktemp("hostile-text"), plans)


@pytest.fixture(scope="module")
def built(hostile_runs: Path, tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("hostile-build")
    spec = folder / "spec.yaml"
    out = folder / "out"
    spec.write_text(SPEC.format(runs=hostile_runs, out=out), encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GITLAB_", "CI"))}
    env["REPORTGEN_CACHE_DIR"] = str(folder / "cache")
    env["PYTHONWARNINGS"] = "default"  # show every warning that is not silenced on purpose
    done = subprocess.run(
        [sys.executable, "-m", "reportgen", "build", str(spec), "--now", "2026-11-01"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done, out


def test_the_build_succeeds_and_stderr_has_no_raw_control_characters(built):
    done, _ = built
    assert done.returncode == 0, done.stderr
    assert not any(char in done.stderr for char in RAW)
    assert "Warning" not in done.stderr and "Glyph" not in done.stderr  # matplotlib is quiet


@pytest.mark.parametrize("name", ["report.md", "comment.md"])
def test_report_and_comment_show_escapes_instead_of_raw_characters(built, name):
    _, out = built
    text = (out / name).read_text(encoding="utf-8")
    assert not any(char in text for char in RAW)
    assert "evil\\x1b" in text and "\\u202etxt.exe" in text


def project_rows(out: Path) -> list[dict[str, str]]:
    with (out / "project.csv").open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_project_csv_cells_cannot_run_as_formulas_and_numbers_stay_numbers(built):
    _, out = built
    rows = project_rows(out)
    assert len(rows) == 2  # the carriage return split no row
    evil = next(row for row in rows if row["run_id"] == "evil0001")
    assert evil["config.cmd"] == "'" + CONFIG["cmd"]
    assert evil["config.plus"] == "'+1+2"
    assert evil["config.at"] == "'@SUM(A1)"
    assert evil["config.minus_text"] == "'" + CONFIG["minus_text"]
    assert evil["config.negative"] == "-0.5"
    assert evil["config.negative_text"] == "-0.5"
    assert evil["config.carriage"] == "line one\\x0dline two"
    assert evil["config.title"] == "\\x1b]0;pwned\\x07"
    assert evil["run_name"] == "evil\\x1b[2J\\x07run\\u202etxt.exe"


def test_text_cells_rules():
    assert text_cell("=1+1") == "'=1+1"
    assert text_cell("-1e-3") == "-1e-3"
    assert text_cell("-inf") == "-inf"
    assert text_cell("a\r\nb") == "a\\x0d\nb"
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow([text_cell("a\rb"), "x"])
    assert out.getvalue() == "a\\x0db,x\n"


def test_visible_keeps_ordinary_text_and_escapes_the_rest():
    assert visible("grpo-run ✓ 日本") == "grpo-run ✓ 日本"
    assert visible("a\x1b[31mb\x07\u202ec\u2066d") == "a\\x1b[31mb\\x07\\u202ec\\u2066d"
    assert visible("one\ntwo\tthree") == "one\ntwo\tthree"
    assert visible("one\ntwo", one_line=True) == "one\\x0atwo"
    assert visible("lone \ud800") == "lone \\ud800"
