"""The command line: exit codes, one line per problem on stderr, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import write_spec

from reportgen.cli import main
from reportgen.errors import EXIT_CODES, EXIT_INTERNAL

BAD_SPEC = """\
version: 1
source: {type: wandb-offline, path: runs}
sampling:
  evry: 100
  align: sometimes
"""


def test_validate_a_bad_spec_exits_2_with_one_line_per_problem(tmp_path, capsys):
    spec = write_spec(tmp_path / "bad.yaml", BAD_SPEC)
    assert main(["validate", str(spec)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.splitlines() == [
        f"{spec}:4:3: sampling.evry: unknown key 'evry'; did you mean 'every'?",
        f"{spec}:5:10: sampling.align: expected one of exact, asof, nearest, interpolate; "
        'got a string "sometimes"',
    ]


def test_validate_as_a_process_prints_no_traceback(tmp_path):
    spec = write_spec(tmp_path / "bad.yaml", BAD_SPEC)
    done = subprocess.run(
        [sys.executable, "-m", "reportgen", "validate", str(spec)], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert len(done.stderr.splitlines()) == 2


def test_validate_good_specs_exits_0(tmp_path, capsys):
    spec = write_spec(
        tmp_path / "good.yaml", "version: 1\nsource: {type: wandb-offline, path: x}\n"
    )
    assert main(["validate", str(spec)]) == 0
    assert capsys.readouterr().out == f"{spec}: valid\n"


def test_build_with_a_bad_spec_exits_2_before_touching_data(tmp_path, capsys):
    spec = write_spec(tmp_path / "bad.yaml", BAD_SPEC)
    assert main(["build", str(spec), "--out", str(tmp_path / "out")]) == 2
    assert not (tmp_path / "out").exists()
    assert "sampling.evry" in capsys.readouterr().err


def test_build_with_a_missing_source_folder_exits_3(tmp_path, capsys):
    spec = write_spec(
        tmp_path / "s.yaml",
        f'version: 1\nsource: {{type: wandb-offline, path: "{tmp_path / "nope"}"}}\n',
    )
    assert main(["build", str(spec)]) == 3
    err = capsys.readouterr().err
    assert (
        err
        == f"error: source.path: folder '{tmp_path / 'nope'}' does not exist (it should hold W&B run folders such as wandb/offline-run-*)\n"
    )


def test_build_a_folder_without_runs_exits_3(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    spec = write_spec(
        tmp_path / "s.yaml",
        f'version: 1\nsource: {{type: wandb-offline, path: "{tmp_path / "empty"}"}}\n',
    )
    assert main(["build", str(spec)]) == 3
    assert "no run-*.wandb files found" in capsys.readouterr().err


def test_build_exits_0_and_lists_what_it_wrote(project_dir, tmp_path, capsys):
    out = tmp_path / "out"
    spec = write_spec(
        tmp_path / "s.yaml",
        f'version: 1\nsource: {{type: wandb-offline, path: "{project_dir}"}}\n'
        "runs: {ids: [sftnan01]}\nmetrics: {loss: train/loss}\n",
    )
    assert main(["build", str(spec), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.splitlines()[0] == f"built 4 files in {out} (1 of 7 runs)"
    assert sorted(p.name for p in out.iterdir()) == [
        ".reportgen-manifest.json",
        "plots",
        "report.json",
        "report.md",
        "sft-nan_experiment.csv",
    ]


def test_schema_prints_the_json_schema(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "sampling" in schema["properties"]


def test_init_refuses_to_overwrite_without_force(tmp_path, capsys):
    target = tmp_path / "r.yaml"
    assert main(["init", str(target)]) == 0
    assert main(["init", str(target)]) == 2
    assert (
        capsys.readouterr().err == f"error: {target} already exists; pass --force to overwrite it\n"
    )
    assert main(["init", str(target), "--force"]) == 0


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "usage: reportgen" in capsys.readouterr().err


def test_help_lists_every_verb_and_the_exit_codes(capsys):
    try:
        main(["--help"])
    except SystemExit as exc:
        assert exc.code == 0
    out = capsys.readouterr().out
    for verb in ("build", "validate", "schema", "init"):
        assert verb in out
    for code, meaning in EXIT_CODES.items():
        assert f"  {code:<3} {meaning}\n" in out


def test_the_console_script_is_installed():
    script = Path(sys.executable).parent / "reportgen"
    done = subprocess.run([str(script), "--version"], capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.startswith("reportgen ")


def test_a_bug_in_a_verb_exits_70_with_one_line_naming_where_it_happened(capsys):
    from argparse import Namespace

    from reportgen.cli import _run_verb

    def verb_with_a_bug(args: Namespace) -> int:
        return {}["missing"]  # type: ignore[no-any-return]

    assert _run_verb(verb_with_a_bug, Namespace(debug=False)) == EXIT_INTERNAL
    err = capsys.readouterr().err
    assert err.startswith("internal error: KeyError: 'missing' (at test_cli.py:")
    assert "Traceback" not in err and "please report it with the output of --debug" in err
    assert _run_verb(verb_with_a_bug, Namespace(debug=True)) == 70
    assert "Traceback (most recent call last)" in capsys.readouterr().err


def test_the_parser_built_for_one_verb_reads_that_verb_as_the_whole_parser_does():
    from reportgen.cli import SPEC_VERBS, make_parser, verb_in
    from reportgen.commands import VERBS

    def sub_parsers(parser):
        return parser._subparsers._group_actions[0].choices

    whole = sub_parsers(make_parser())
    assert list(whole) == [*SPEC_VERBS, *VERBS]
    for verb in whole:
        alone = sub_parsers(make_parser(verb_in(["--debug", verb, "x"])))
        assert verb in alone and len(alone) < len(whole)
        assert alone[verb].format_help() == whole[verb].format_help()
    assert verb_in(["--help"]) is None and verb_in(["biuld", "spec.yaml"]) is None


def test_a_mistyped_verb_is_answered_with_the_list_of_every_verb(capsys):
    with pytest.raises(SystemExit) as stop:
        main(["biuld", "specs/demo.yaml"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'biuld'" in err and "'build'" in err and "'mcp'" in err


EXIT_PROBE = """
import atexit, sys, threading, time
from pathlib import Path
mark = Path(sys.argv[1])
atexit.register(lambda: mark.with_suffix(".atexit").write_text("ran"))
def late():
    time.sleep(0.3)
    mark.with_suffix(".thread").write_text("done")
threading.Thread(target=late).start()  # a non-daemon thread still running when main returns
from reportgen.cli import run
sys.argv = ["reportgen", *sys.argv[2:]]
run()
"""


def test_the_console_script_ends_with_its_code_after_its_threads_exit_handlers_and_output(
    tmp_path,
):
    """`run` skips the interpreter's teardown, not what an exit owes: the exit code, every
    byte written to stdout, the exit handlers, and the threads still running."""
    mark = tmp_path / "mark"
    done = subprocess.run(
        [sys.executable, "-c", EXIT_PROBE, str(mark), "schema"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0
    assert json.loads(done.stdout)["$schema"].startswith("https://json-schema.org/")
    assert mark.with_suffix(".atexit").read_text() == "ran"
    assert mark.with_suffix(".thread").read_text() == "done"
    bad = subprocess.run(
        [sys.executable, "-c", EXIT_PROBE, str(tmp_path / "bad"), "validate", "missing.yaml"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1
