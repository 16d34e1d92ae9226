"""The spec-less commands (export, health, show, compare) and `build --summary`.

Driven through the CLI on runs written by the real wandb client (conftest.project_dir) and on
the bundled demo runs (examples/wandb); outputs, CSV cells and exit codes are asserted.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import yaml
from conftest import LONG_STEPS, RL_INDEX, response_length, rl_rows, write_spec

from reportgen.cli import main
from reportgen.errors import EXIT_GATE_FAILED, EXIT_INCOMPLETE, EXIT_OK, EXIT_SOURCE, EXIT_USAGE
from reportgen.quickspec import spec_yaml
from reportgen.render.summary import DEFAULT_LIMIT, render_summary

REPO = Path(__file__).resolve().parent.parent
DEMO = REPO / "examples" / "wandb"
GRID = [*range(0, LONG_STEPS, 100), LONG_STEPS - 1]


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def export_args(project_dir: Path, out: Path, *extra: str) -> list[str]:
    return [
        "export",
        str(project_dir),
        "--metrics",
        "entropy,clip_ratio,length",
        "--every",
        "100",
        "--tag",
        "sweep",
        "-o",
        str(out),
        *extra,
    ]


# --- export --------------------------------------------------------------------------------------


def test_export_picks_the_shortest_run_and_writes_its_exact_csv(project_dir, tmp_path, capsys):
    out = tmp_path / "shortest.csv"
    code = main(export_args(project_dir, out, "--pick", "min mean length"))
    printed = capsys.readouterr().out
    assert code == EXIT_OK
    rows = read_csv(out)
    assert [int(r["step"]) for r in rows] == GRID
    assert list(rows[0]) == ["step", "entropy", "clip_ratio", "length"]
    logged = rl_rows(RL_INDEX["rlshort1"])
    for row in rows:
        step = int(row["step"])
        assert float(row["entropy"]) == pytest.approx(logged[step]["actor/entropy_loss"], abs=1e-9)
        assert float(row["length"]) == pytest.approx(response_length(0, step), abs=1e-9)
    assert "lowest: grpo-rlshort1 (rlshort1) — lowest mean length (response_length/mean)" in printed
    assert "of 3 runs; runner-up grpo-rlmid001 (rlmid001)" in printed
    assert f"{out}: {len(GRID)} rows; step, entropy, clip_ratio, length" in printed
    assert len(printed) <= 1500


def test_export_without_pick_writes_one_csv_per_run(project_dir, tmp_path, capsys):
    out = tmp_path / "runs.csv"
    assert main(export_args(project_dir, out)) == EXIT_OK
    written = sorted(p.name for p in tmp_path.glob("*.csv"))
    assert written == ["runs_grpo-rllong01.csv", "runs_grpo-rlmid001.csv", "runs_grpo-rlshort1.csv"]
    long_rows = read_csv(tmp_path / "runs_grpo-rllong01.csv")
    assert float(long_rows[-1]["length"]) == pytest.approx(response_length(2, LONG_STEPS - 1))
    printed = capsys.readouterr().out
    assert "selected:" not in printed
    for name in written:
        assert (
            f"  {tmp_path / name}: {len(GRID)} rows; step, entropy, clip_ratio, length" in printed
        )


def test_export_print_spec_is_the_exact_equivalent_of_the_command(project_dir, tmp_path, capsys):
    out = tmp_path / "cmd.csv"
    args = export_args(project_dir, out, "--pick", "min mean length")
    assert main([*args, "--print-spec"]) == EXIT_OK
    printed = capsys.readouterr().out
    assert not out.exists()  # printing the spec runs nothing
    doc = yaml.safe_load(printed)
    assert doc["select"] == {"lowest": {"by": "length", "reduce": "mean", "pick": "min"}}
    assert doc["sampling"] == {"x": "_step", "start": 0, "every": 100, "align": "asof"}
    assert doc["runs"] == {"filters": {"tags": {"any": ["sweep"]}}}
    spec = write_spec(tmp_path / "export.yaml", printed)
    assert main(["build", str(spec), "-q"]) == EXIT_OK
    from_spec = out.read_bytes()
    out.unlink()
    assert main(args) == EXIT_OK
    assert out.read_bytes() == from_spec


def test_export_summary_json_names_the_selection_and_the_table(project_dir, tmp_path, capsys):
    out = tmp_path / "s.csv"
    assert main(export_args(project_dir, out, "--pick", "max last length", "--json")) == EXIT_OK
    data = json.loads(capsys.readouterr().out)
    (selection,) = data["selections"]
    assert (selection["name"], selection["run_id"]) == ("highest", "rllong01")
    assert selection["runner_up"]["run_id"] == "rlmid001"
    assert selection["value"] == pytest.approx(response_length(2, LONG_STEPS - 1))
    assert data["tables"] == [
        {
            "path": str(out),
            "rows": len(GRID),
            "columns": ["step", "entropy", "clip_ratio", "length"],
            "run_id": "rllong01",
            "run_name": "grpo-rllong01",
            "selection": "highest",
        }
    ]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--pick", "smallest length"], "error: --pick 'smallest length': expected 'min|max"),
        (["--every", "0"], "error: --every 0: give a step interval of 1 or more"),
        (["--metrics", "a=", "--every", "5"], "error: --metrics 'a=': expected NAME=KEY"),
    ],
)
def test_export_usage_errors_are_one_line_and_exit_2(project_dir, tmp_path, capsys, extra, message):
    args = ["export", str(project_dir), "--metrics", "length", "--every", "100", *extra]
    assert main(args) == EXIT_USAGE
    err = capsys.readouterr().err
    assert err.startswith(message)
    assert len(err.strip().splitlines()) == 1


def test_export_of_a_missing_folder_exits_3(tmp_path, capsys):
    code = main(["export", str(tmp_path / "nope"), "--metrics", "length", "--every", "10"])
    assert code == EXIT_SOURCE
    assert "does not exist" in capsys.readouterr().err


def test_a_metric_no_run_logged_is_a_note_in_the_answer_and_exit_5(project_dir, tmp_path, capsys):
    out = tmp_path / "m.csv"
    args = ["export", str(project_dir), "--metrics", "response_length/meen", "--every", "500"]
    assert main([*args, "--tag", "sweep", "-o", str(out)]) == EXIT_INCOMPLETE
    printed = capsys.readouterr().out
    assert (
        "metric 'response_length_meen' is missing in every run: none of [response_length/meen] "
        "was logged; closest keys that exist: response_length/mean"
    ) in printed


# --- health --------------------------------------------------------------------------------------


def test_health_prints_good_bad_ugly_with_steps(project_dir, capsys):
    assert main(["health", str(project_dir), "--tag", "sft"]) == EXIT_OK
    printed = capsys.readouterr().out
    lines = printed.splitlines()
    assert lines[0] == f"health of 3 runs from {project_dir}"
    assert any(line.startswith("    ugly non_finite @120: train/loss") for line in lines)
    assert any(line.startswith("    ugly crashed @19:") for line in lines)
    assert "GOOD (1): resumed (resume01)" in lines
    assert "NEXT EXPERIMENTS:" in lines


def test_health_fail_on_ugly_exits_1(project_dir, capsys):
    assert main(["health", str(project_dir), "--run", "crash001", "--fail-on", "ugly"]) == (
        EXIT_GATE_FAILED
    )
    assert "run crasher (crash001) is ugly: crashed" in capsys.readouterr().out


def test_printed_spec_quotes_ids_another_yaml_reader_would_take_for_numbers():
    ids = ["1e5", "12E-3", "+7", ".inf", "0123", "abc1e5", "1.2.3"]
    printed = spec_yaml({"runs": {"ids": ids}})
    for quoted in ["'1e5'", "'12E-3'", "'+7'", "'.inf'", "'0123'"]:
        assert f"- {quoted}\n" in printed
    assert "- abc1e5\n" in printed and "- 1.2.3\n" in printed
    assert yaml.safe_load(printed) == {"runs": {"ids": ids}}


def test_health_print_spec(project_dir, capsys):
    args = ["health", str(project_dir), "--latest", "2", "--state", "finished", "--print-spec"]
    assert main(args) == EXIT_OK
    doc = yaml.safe_load(capsys.readouterr().out)
    assert doc["runs"] == {"filters": {"state": ["finished"]}, "limit": 2}
    assert doc["health"] == {"preset": "auto"}
    assert doc["outputs"]["formats"] == []


# --- show ----------------------------------------------------------------------------------------


def test_show_prints_config_summary_and_schema(project_dir, capsys):
    assert main(["show", str(project_dir), "grpo-rlshort1"]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "[RUN]"
    assert lines[1].startswith("  grpo-rlshort1 (rlshort1): finished, exit code 0; steps 0–1049")
    config = lines.index("[CONFIG]")
    assert lines[config + 1 : config + 3] == ["  actor.lr: 1e-06", "  seed: 0"]
    schema = next(i for i, line in enumerate(lines) if line.startswith("[SCHEMA]"))
    low, high = (
        min(response_length(0, s) for s in range(LONG_STEPS)),
        max(response_length(0, s) for s in range(LONG_STEPS)),
    )
    expected = (
        f"  response_length/mean (response_length_mean): float, {LONG_STEPS}, steps 0–1049, "
        f"{low:.4g}–{high:.4g}"
    )
    assert expected in lines[schema:]


def test_show_where_eval_and_stats(project_dir, capsys):
    args = [
        "show",
        str(project_dir),
        "rlshort1",
        "--select",
        "^response_length/mean$",
        "--where",
        "step >= 1047",
        "--eval",
        "half=response_length_mean / 2",
        "--stats",
    ]
    assert main(args) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    history = lines.index("[HISTORY] step, response_length_mean, half")
    rows = [line.split(", ") for line in lines[history + 1 :]]
    assert [int(r[0].strip()) for r in rows] == [1047, 1048, 1049]
    for step, value, half in rows:
        assert float(value) == pytest.approx(response_length(0, int(step)), rel=1e-3)
        assert float(half) == pytest.approx(response_length(0, int(step)) / 2, rel=1e-3)
    stats = next(line for line in lines if line.startswith("  response_length_mean: "))
    assert stats.split(": ")[1].split(", ")[:2] == [str(LONG_STEPS), "0"]


def test_show_an_unknown_run_suggests_the_closest(project_dir, capsys):
    assert main(["show", str(project_dir), "grpo-rlshort"]) == EXIT_USAGE
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: run 'grpo-rlshort': no such run")
    assert err.endswith("did you mean 'grpo-rlshort1'?")


def test_show_bad_where_is_a_spec_error_with_exit_2(project_dir, capsys):
    args = ["show", str(project_dir), "rlshort1", "--where", "nosuch > 1"]
    assert main(args) == EXIT_USAGE
    assert "outputs.csv.where" in capsys.readouterr().err


# --- compare -------------------------------------------------------------------------------------


def test_compare_prints_config_differences_and_metric_changes(project_dir, capsys):
    args = ["compare", str(project_dir), "rlshort1", "grpo-rllong01", "--metrics", "length"]
    assert main(args) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "compare grpo-rlshort1 (rlshort1) (reference) with grpo-rllong01 (rllong01)"
    assert "  actor.lr: 1e-06 | 3e-06" in lines
    assert "  seed: 0 | 2" in lines
    (metric,) = [line for line in lines if line.startswith("  length (response_length/mean)")]
    last = LONG_STEPS - 1
    delta = response_length(2, last) - response_length(0, last)
    assert f"({delta:+.4g}," in metric


def test_compare_needs_two_runs(project_dir, capsys):
    assert main(["compare", str(project_dir), "rlshort1"]) == EXIT_USAGE
    assert "at least two runs" in capsys.readouterr().err


# --- build --summary -----------------------------------------------------------------------------


def demo_spec(tmp_path: Path) -> Path:
    """specs/demo.yaml with CSV output only (the summary is the same; the PDF takes long)."""
    text = (REPO / "specs" / "demo.yaml").read_text()
    text = text.replace("formats: [markdown, pdf, csv, json]", "formats: [csv]")
    text = text.replace("path: examples/wandb", f"path: {DEMO}")
    assert "formats: [csv]" in text
    return write_spec(tmp_path / "demo.yaml", text)


def test_the_demo_summary_fits_and_gives_the_selection_its_reason_and_csv(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    out = Path("outputs/demo")
    assert main(["build", str(demo_spec(tmp_path)), "--out", str(out), "--summary"]) == EXIT_OK
    captured = capsys.readouterr()
    printed = captured.out
    assert len(printed) <= DEFAULT_LIMIT
    assert captured.err == ""
    assert (
        "  shortest: grpo-lr1e-2-ent0.03-len4 (47a724db) — lowest mean length "
        "(response_length/mean) = 4.076 of 5 runs; runner-up grpo-lr1e-2-ent0.03-oom (21c233f8)"
    ) in printed
    assert f"  {out / 'shortest_length_experiment.csv'}: 7 rows; step, entropy" in printed
    assert "verdicts: 5 good, 3 ugly" in printed
    assert "    non_finite @170: train/loss became Infinity at step 170" in printed


def test_a_summary_too_long_for_its_bound_says_how_much_it_left_out(tmp_path, monkeypatch):
    from reportgen.build import build

    monkeypatch.chdir(tmp_path)
    result = build(demo_spec(tmp_path), out_dir=Path("demo"))
    full = render_summary(result.report, result.out_dir, result.files)
    assert "  … and 2 more\n" not in full
    text = render_summary(result.report, result.out_dir, result.files, limit=900)
    assert len(text) <= 900
    assert "  … and 2 more\n" in text  # of the three runs with problems, one is shown
    assert text.count("  ugly ") == 1
    assert "shortest: grpo-lr1e-2-ent0.03-len4" in text  # selections give way last


def test_build_summary_json_is_one_line(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["build", str(demo_spec(tmp_path)), "--out", str(out), "--json"]) == EXIT_OK
    printed = capsys.readouterr().out
    assert printed.count("\n") == 1
    data = json.loads(printed)
    assert {s["name"]: s["run_id"] for s in data["selections"]} == {
        "shortest": "47a724db",
        "best_score": "47a724db",
        "best_loss": "447a55b7",
    }
    assert data["verdicts"] == {"good": 5, "ugly": 3}
    assert not math.isnan(data["selections"][0]["value"])


def test_mcp_without_the_sdk_says_how_to_install_it():
    """The core never needs the `mcp` package; `reportgen mcp` without it is one line, exit 2."""
    import subprocess
    import sys

    script = (
        "import sys; sys.modules['mcp'] = None\n"
        "from reportgen.cli import main\n"
        "sys.exit(main(['mcp']))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == EXIT_USAGE
    assert done.stderr == (
        "error: reportgen mcp needs the MCP SDK: pip install 'reportgen[mcp]' (or: pip install mcp)\n"
    )


def test_compare_of_every_shared_key_lists_each_once(project_dir, capsys):
    assert main(["compare", str(project_dir), "rlshort1", "rlmid001"]) == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    metrics = lines[lines.index("[METRICS] summary; change against rlshort1") + 1 :]
    names = [line.split(" (")[0].strip() for line in metrics]
    assert names == ["actor_entropy_loss", "response_length_clip_ratio", "response_length_mean"]
