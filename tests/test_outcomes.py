"""Honest outcomes through the command line: what is missing says so and exits 5, stale files
go away while others' files stay, outputs appear as a set and follow the umask, short runs can
be kept out, same-named runs stay apart, and the Python API takes strings.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import write_spec
from runwriter import PlannedRun, write_runs

from reportgen import build
from reportgen.cli import main
from reportgen.errors import EXIT_INCOMPLETE, UsageError
from reportgen.render.folder import MANIFEST, STAGING_PREFIX

RL = "[rlmid001, rlshort1, rllong01]"


def spec_text(project: Path, out: Path, body: str, runs: str = f"{{ids: {RL}}}") -> str:
    return (
        f'version: 1\nsource: {{type: wandb-offline, path: "{project}"}}\nruns: {runs}\n'
        f'outputs:\n  dir: "{out}"\n  formats: [markdown, csv, json]\n' + body
    )


def visible_files(folder: Path) -> dict[str, bytes]:
    """Every file a person sees in the folder (not the hidden bookkeeping), with its bytes."""
    return {
        p.relative_to(folder).as_posix(): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.relative_to(folder).as_posix().startswith(".")
    }


# --- a typo in a metric key --------------------------------------------------------------------

TYPO = """\
metrics:
  length: response_length/maen
select:
  shortest: {by: length, reduce: mean, pick: min}
"""
RIGHT = TYPO.replace("maen", "mean")


def test_a_selection_no_run_can_answer_exits_5_naming_the_closest_keys(
    project_dir, tmp_path, capsys
):
    out = tmp_path / "out"
    spec = write_spec(tmp_path / "s.yaml", spec_text(project_dir, out, RIGHT))
    assert main(["build", str(spec), "-q"]) == 0
    assert (out / "shortest_length_experiment.csv").is_file()
    capsys.readouterr()

    spec.write_text(spec_text(project_dir, out, TYPO))
    assert main(["build", str(spec), "-q"]) == EXIT_INCOMPLETE == 5
    err = capsys.readouterr().err.splitlines()
    assert err[0] == (
        f"error: {spec}: select.shortest.by: picked no run: no chosen run logged metric "
        "'length' (tried response_length/maen); closest keys that exist: "
        "response_length/mean, response_length/clip_ratio"
    )
    assert err[-1] == (
        "the report is incomplete: exit 5 (the files were written and say what is missing)"
    )
    # Last build's CSV is gone: nobody reads the right run's numbers under a wrong spec.
    assert not (out / "shortest_length_experiment.csv").exists()
    report = json.loads((out / "report.json").read_text())
    assert report["selections"] == {"shortest": None}
    assert report["missing"][0]["where"] == "select.shortest.by"
    assert report["missing"][0]["accepted"] is False
    markdown = (out / "report.md").read_text()
    assert "> **Incomplete:** this report lacks part of what its spec asks for:" in markdown
    assert markdown.index("Incomplete") < markdown.index("## Verdicts")


def test_a_csv_column_no_chosen_run_logged_exits_5(project_dir, tmp_path, capsys):
    body = (
        "metrics:\n  length: response_length/mean\n  entropy: actor/entropyy\n"
        "select:\n  shortest: {by: length}\n"
        "  # the CSV asks for a column nobody logged\n"
    )
    text = spec_text(project_dir, tmp_path / "out", body).replace(
        "formats: [markdown, csv, json]\n",
        "formats: [markdown, csv, json]\n  csv: {columns: [length, entropy]}\n",
    )
    spec = write_spec(tmp_path / "s.yaml", text)
    assert main(["build", str(spec), "-q"]) == 5
    (line, _) = capsys.readouterr().err.splitlines()
    assert line == (
        f"error: {spec}: outputs.csv.columns: column 'entropy' is empty: no chosen run logged "
        "metric 'entropy' (tried actor/entropyy); closest keys that exist: actor/entropy_loss"
    )
    rows = (tmp_path / "out" / "shortest_length_experiment.csv").read_text().splitlines()
    assert rows[0] == "step,length,entropy" and rows[1].endswith(",")


def test_a_column_some_chosen_runs_logged_is_only_noted(project_dir, tmp_path, capsys):
    body = "metrics:\n  loss: train/loss\n  length: response_length/mean\n"
    runs = "{ids: [sftnan01, rlshort1]}"
    spec = write_spec(tmp_path / "s.yaml", spec_text(project_dir, tmp_path / "out", body, runs))
    assert main(["build", str(spec), "-q"]) == 0
    assert capsys.readouterr().err == ""


def test_csv_missing_drop_accepts_a_column_nobody_logged(project_dir, tmp_path, capsys):
    body = "metrics:\n  length: response_length/mean\n  entropy: actor/entropyy\n"
    text = spec_text(project_dir, tmp_path / "out", body).replace(
        "formats: [markdown, csv, json]\n",
        "formats: [markdown, csv, json]\n  csv: {missing: drop}\n",
    )
    assert main(["build", str(write_spec(tmp_path / "s.yaml", text)), "-q"]) == 0


# --- stale files and the files of others --------------------------------------------------------

TWO_PICKS = """\
metrics:
  length: response_length/mean
  entropy: actor/entropy_loss
select:
  shortest: {by: length}
  steady: {by: entropy, pick: max}
"""
ONE_PICK = """\
metrics:
  length: response_length/mean
select:
  shortest: {by: length}
"""


def test_files_a_build_no_longer_writes_are_removed_and_no_others(project_dir, tmp_path):
    out = tmp_path / "out"
    spec = write_spec(tmp_path / "s.yaml", spec_text(project_dir, out, TWO_PICKS))
    assert main(["build", str(spec), "-q"]) == 0
    first = set(visible_files(out))
    assert {"steady_entropy_experiment.csv", "plots/entropy.png"} <= first
    (out / "mine.txt").write_text("my notes")  # not written by reportgen
    (out / "plots" / "mine.png").write_bytes(b"\x89PNG mine")
    edited = out / "steady_entropy_experiment.csv"  # reportgen's, but edited since
    edited.write_text(edited.read_text() + "# checked by hand\n")

    spec.write_text(spec_text(project_dir, out, ONE_PICK))
    assert main(["build", str(spec), "-q"]) == 0
    after = set(visible_files(out))
    assert after == {
        "mine.txt",
        "plots/length.png",
        "plots/mine.png",
        "report.json",
        "report.md",
        "shortest_length_experiment.csv",
        "steady_entropy_experiment.csv",  # edited, so not reportgen's to remove any more
    }
    manifest = json.loads((out / MANIFEST).read_text())
    assert sorted(manifest["files"]) == [
        "plots/length.png",
        "report.json",
        "report.md",
        "shortest_length_experiment.csv",
    ]


def test_files_another_specs_build_wrote_into_the_folder_are_not_removed(project_dir, tmp_path):
    out = tmp_path / "shared"
    first = write_spec(tmp_path / "first.yaml", spec_text(project_dir, out, TWO_PICKS))
    second = write_spec(tmp_path / "second.yaml", spec_text(project_dir, out, ONE_PICK))
    assert main(["build", str(first), "-q"]) == 0
    assert main(["build", str(second), "-q"]) == 0
    assert (out / "steady_entropy_experiment.csv").is_file()
    assert json.loads((out / MANIFEST).read_text())["spec"] == str(second)


def test_a_build_removes_an_empty_plots_folder_it_emptied(project_dir, tmp_path):
    out = tmp_path / "out"
    spec = write_spec(tmp_path / "s.yaml", spec_text(project_dir, out, ONE_PICK))
    assert main(["build", str(spec), "-q"]) == 0
    assert (out / "plots" / "length.png").is_file()
    spec.write_text(spec.read_text().replace("[markdown, csv, json]", "[csv]"))
    assert main(["build", str(spec), "-q"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST, "shortest_length_experiment.csv"]


def test_a_rebuild_leaves_files_whose_bytes_are_unchanged_in_place_and_rewrites_the_others(
    project_dir, tmp_path
):
    """A warm rebuild of an unchanged project writes no file again (a rename over an existing
    file waits for the journal), but each still looks rebuilt (its time is now) and the
    manifest still lists it; a file that differs from what the build renders is replaced."""
    import hashlib

    out = tmp_path / "out"
    spec = write_spec(tmp_path / "s.yaml", spec_text(project_dir, out, ONE_PICK))
    build_args = ["build", str(spec), "-q", "--now", "2026-12-01T00:00:00Z"]
    assert main(build_args) == 0
    first = visible_files(out)
    csv_file, report = out / "shortest_length_experiment.csv", out / "report.md"
    inodes = {path: path.stat().st_ino for path in (csv_file, report)}
    for path in (csv_file, report):
        os.utime(path, (1_000_000_000, 1_000_000_000))
    (out / "report.json").write_text("{}")  # differs from what the build renders

    assert main(build_args) == 0
    assert visible_files(out) == first
    for path in (csv_file, report):
        assert path.stat().st_ino == inodes[path]
        assert path.stat().st_mtime > 1_000_000_000
    manifest = json.loads((out / MANIFEST).read_text())["files"]
    assert manifest == {name: hashlib.sha256(data).hexdigest() for name, data in first.items()}
    assert not [p for p in out.iterdir() if p.name.startswith(STAGING_PREFIX)]


# --- one build's files appear together ----------------------------------------------------------


def test_a_build_that_fails_while_rendering_leaves_the_previous_files_whole(
    project_dir, tmp_path, capsys
):
    out = tmp_path / "out"
    spec = write_spec(tmp_path / "s.yaml", spec_text(project_dir, out, TWO_PICKS))
    assert main(["build", str(spec), "-q"]) == 0
    before = visible_files(out)
    templates = tmp_path / "templates"
    templates.mkdir()
    # The CSVs and charts are rendered before report.md, whose template then fails.
    (templates / "report.md.j2").write_text('{% include "no-such-part.j2" %}\n')
    text = spec_text(project_dir, out, ONE_PICK).replace(
        "formats: [markdown, csv, json]\n",
        f'formats: [markdown, csv, json]\n  templates: "{templates}"\n',
    )
    spec.write_text(text)
    assert main(["build", str(spec), "-q"]) == 2
    assert "no-such-part.j2" in capsys.readouterr().err
    assert visible_files(out) == before
    assert not list(out.glob(f"{STAGING_PREFIX}*"))


def cli(args: list[str], *, umask: int = 0o022, env: dict[str, str] | None = None):
    """`reportgen ARGS` as a process of its own, under a umask."""
    return subprocess.Popen(
        [sys.executable, "-m", "reportgen", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=dict(os.environ) if env is None else env,
        preexec_fn=lambda: os.umask(umask),
    )


def test_a_build_stopped_by_sigterm_leaves_the_previous_files_whole(project_dir, tmp_path):
    out = tmp_path / "out"
    one_run = "{ids: [rlshort1]}"
    spec = write_spec(tmp_path / "s.yaml", spec_text(project_dir, out, ONE_PICK, one_run))
    assert cli(["build", str(spec), "-q"]).wait(timeout=300) == 0
    before = visible_files(out)
    spec.write_text(spec.read_text().replace("[markdown, csv, json]", "[csv, json, pdf, markdown]"))
    process = cli(["build", str(spec), "-q"])
    deadline = time.monotonic() + 300
    while not list(out.glob(f"{STAGING_PREFIX}*/*")) and process.poll() is None:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=120)
    assert process.returncode != 0  # stopped, not finished
    assert visible_files(out) == before  # no new report.md beside an old report.json
    # The next build finishes, and clears what a killed build may have left behind.
    assert cli(["build", str(spec), "-q"]).wait(timeout=300) == 0
    assert (out / "report.pdf").is_file()
    assert not list(out.glob(f"{STAGING_PREFIX}*"))


# --- file modes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("umask", "file_mode", "dir_mode"), [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775)]
)
def test_outputs_follow_the_umask_and_the_cache_stays_private(
    project_dir, tmp_path, umask, file_mode, dir_mode
):
    out = tmp_path / "out"
    cache = tmp_path / "cache"
    spec = write_spec(tmp_path / "s.yaml", spec_text(project_dir, out, ONE_PICK))
    spec.write_text(spec.read_text() + f'cache: {{dir: "{cache}"}}\n')
    env = {k: v for k, v in os.environ.items() if k != "REPORTGEN_CACHE_DIR"}
    process = cli(["build", str(spec), "-q"], umask=umask, env=env)
    assert process.wait(timeout=300) == 0, process.stderr.read() if process.stderr else ""
    files = [p for p in out.rglob("*") if p.is_file()]
    assert len(files) == 5  # report.md, report.json, a CSV, a chart, the manifest
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in files} == {oct(file_mode)}
    folders = [out, *(p for p in out.rglob("*") if p.is_dir())]
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in folders} == {oct(dir_mode)}
    cached = [p for p in cache.rglob("*") if p.suffix in (".parquet", ".json") and p.is_file()]
    entries = [p for p in cached if p.parent.name == "entries"]
    assert entries, "the offline source caches decoded runs"
    assert {oct(stat.S_IMODE(p.stat().st_mode)) for p in entries} == {oct(0o600)}


# --- short runs -------------------------------------------------------------------------------------

STEADIEST = """\
metrics:
  entropy: actor/entropy_loss
select:
  steadiest: {{by: entropy, reduce: mean, pick: max{min_steps}}}
"""


def test_a_run_stopped_early_wins_a_selection_unless_min_steps_says_otherwise(
    project_dir, tmp_path
):
    runs = "{filters: {tags: {any: [grpo]}}}"
    spec = write_spec(
        tmp_path / "s.yaml",
        spec_text(project_dir, tmp_path / "a", STEADIEST.format(min_steps=""), runs),
    )
    assert main(["build", str(spec), "-q"]) == 0
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    assert report["selections"] == {"steadiest": "grpotiny"}  # 30 steps, before the decline

    spec.write_text(
        spec_text(project_dir, tmp_path / "b", STEADIEST.format(min_steps=", min_steps: 100"), runs)
    )
    assert main(["build", str(spec), "-q"]) == 0
    report = json.loads((tmp_path / "b" / "report.json").read_text())
    (details,) = report["selection_details"]
    assert details["run_id"] in ("rlmid001", "rlshort1", "rllong01")
    assert details["too_short"] == ["grpotiny"] and details["min_steps"] == 100
    assert len(details["ranking"]) == 3
    markdown = (tmp_path / "b" / "report.md").read_text()
    assert "1 run with fewer than 100 steps not ranked" in markdown


def test_min_steps_in_the_filters_leaves_short_runs_out_with_a_note(project_dir, tmp_path):
    runs = "{filters: {min_steps: 100}}"
    body = "metrics:\n  loss: train/loss\n"
    spec = write_spec(tmp_path / "s.yaml", spec_text(project_dir, tmp_path / "out", body, runs))
    assert main(["build", str(spec), "-q"]) == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert sorted(r["id"] for r in report["runs"]) == [
        "resume01",
        "rllong01",
        "rlmid001",
        "rlshort1",
        "sftnan01",
    ]
    (note,) = report["notes"]
    assert note.startswith(
        "2 runs logged fewer than 100 steps (runs.filters.min_steps) and are left out: "
    )
    assert "grpo-tiny (30)" in note and "crasher (20)" in note


def test_every_grid_step_the_run_logged_is_a_row_step_0_included(tmp_path):
    plan = PlannedRun(
        name="from-zero",
        run_id="fromzero",
        rows=[{"loss": 1.0 / (1 + s)} for s in (0, 50, 100, 150, 230)],
        steps=[0, 50, 100, 150, 230],
    )
    project = write_runs(tmp_path / "runs", [plan])
    body = "metrics:\n  loss: loss\nsampling: {every: 100, align: exact}\n"
    spec = write_spec(
        tmp_path / "s.yaml", spec_text(project, tmp_path / "out", body, "{ids: [fromzero]}")
    )
    assert main(["build", str(spec), "-q"]) == 0
    rows = (tmp_path / "out" / "from-zero_experiment.csv").read_text().splitlines()
    assert rows == [
        "step,loss",
        "0,1",
        "100,0.009900990099009901",
        "200,",
        "230,0.004329004329004329",
    ]


# --- same-named runs -----------------------------------------------------------------------------


def test_runs_that_share_a_name_are_told_apart_by_their_id(tmp_path):
    plans = [
        PlannedRun(name="sweep", run_id=run_id, rows=[{"loss": k / (1 + s)} for s in range(20)])
        for k, run_id in ((1.0, "twin0001"), (2.0, "twin0002"))
    ]
    project = write_runs(tmp_path / "runs", plans)
    body = "metrics:\n  loss: loss\nplots: {mermaid: true}\n"
    out = tmp_path / "out"
    spec = write_spec(tmp_path / "s.yaml", spec_text(project, out, body, "{}"))
    assert main(["build", str(spec), "-q"]) == 0
    markdown = (out / "report.md").read_text()
    assert "| sweep (twin0001) | `twin0001` |" in markdown
    assert "| sweep (twin0002) | `twin0002` |" in markdown
    (legend,) = [line for line in markdown.splitlines() if line.startswith("`loss`: ")]
    assert "sweep (twin0001) (" in legend and "sweep (twin0002) (" in legend  # chart legend
    report = json.loads((out / "report.json").read_text())
    assert {(r["name"], r["label"]) for r in report["runs"]} == {
        ("sweep", "sweep (twin0001)"),
        ("sweep", "sweep (twin0002)"),
    }
    assert sorted(p.name for p in out.glob("*.csv")) == [
        "sweep_twin0001_experiment.csv",
        "sweep_twin0002_experiment.csv",
    ]


# --- the Python API ------------------------------------------------------------------------------


def test_the_python_api_takes_strings_for_the_folder_and_the_time(project_dir, tmp_path):
    spec = write_spec(tmp_path / "s.yaml", spec_text(project_dir, tmp_path / "unused", ONE_PICK))
    result = build(str(spec), out_dir=str(tmp_path / "x"), now="2026-01-01T00:00:00Z")
    assert result.out_dir == tmp_path / "x" and result.exit_code == 0
    assert json.loads((tmp_path / "x" / "report.json").read_text())["generated_at"] == (
        "2026-01-01T00:00:00Z"
    )


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"out_dir": 5}, "out_dir: expected a folder (a str or Path); got 5"),
        ({"now": "yesterday"}, "now: expected a date or time such as 2026-11-01T12:00:00Z"),
        ({"now": 1767225600}, "now: expected a datetime or a string"),
    ],
)
def test_the_python_api_checks_its_arguments_before_reading_any_data(tmp_path, arguments, message):
    missing = tmp_path / "no-such-folder"
    spec = write_spec(tmp_path / "s.yaml", spec_text(missing, tmp_path / "out", ONE_PICK))
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build(str(spec), **arguments)
    assert not (tmp_path / "out").exists()
