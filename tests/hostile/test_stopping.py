"""Signals and deadlines: Ctrl-C, SIGTERM and --timeout end a build with one line on stderr
and their documented exit codes (errors.EXIT_CODES), never a traceback, never half a report."""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from reportgen import build
from reportgen.cli import _run_verb
from reportgen.errors import (
    EXIT_CODES,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_TIMEOUT,
    BuildTimeout,
    Stopped,
)
from reportgen.stopping import (
    CI_TIMEOUT_SECONDS,
    deadline,
    default_timeout,
    install_stop_handlers,
    raise_if_past_deadline,
    restore_stop_handlers,
)

SPEC = """\
version: 1
title: stopping
source: {{type: wandb-offline, path: "{runs}"}}
metrics:
  loss: train/loss
outputs: {{dir: "{out}", formats: [markdown, csv, json]}}
"""


def spec_for(project_dir: Path, tmp_path: Path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.format(runs=project_dir, out=tmp_path / "out"), encoding="utf-8")
    return path


def start(args: list[str], tmp_path: Path) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    env["REPORTGEN_CACHE_DIR"] = str(tmp_path / "cache")
    return subprocess.Popen(
        [sys.executable, "-m", "reportgen", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def handlers_installed(pid: int) -> bool:
    """Whether the process catches SIGTERM (Python itself only catches SIGINT)."""
    status = Path(f"/proc/{pid}/status").read_text()
    caught = int(next(line for line in status.splitlines() if line.startswith("SigCgt:"))[7:], 16)
    return bool(caught & (1 << (signal.SIGTERM - 1)))


def wait_for_handlers(process: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 30
    while not handlers_installed(process.pid):
        assert process.poll() is None and time.monotonic() < deadline
        time.sleep(0.002)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize("after", [0.0, 0.2, 0.5])
def test_ctrl_c_while_the_libraries_load_is_one_line_and_exit_130(after, project_dir, tmp_path):
    process = start(["build", str(spec_for(project_dir, tmp_path))], tmp_path)
    wait_for_handlers(process)
    time.sleep(after)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == EXIT_INTERRUPTED == 130, err
    assert err.strip().splitlines() == ["interrupted"]
    assert not (tmp_path / "out" / "report.md").exists()


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
def test_sigterm_is_handled_like_ctrl_c_with_exit_143(project_dir, tmp_path):
    process = start(["build", str(spec_for(project_dir, tmp_path))], tmp_path)
    wait_for_handlers(process)
    time.sleep(0.3)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=60)
    assert process.returncode == EXIT_TERMINATED == 143, err
    assert err.strip().splitlines() == ["terminated (SIGTERM)"]


def test_a_build_past_its_deadline_is_exit_124_and_leaves_no_report(project_dir, tmp_path):
    process = start(["build", str(spec_for(project_dir, tmp_path)), "--timeout", "0.05"], tmp_path)
    _, err = process.communicate(timeout=120)
    assert process.returncode == EXIT_TIMEOUT == 124, err
    (line,) = err.strip().splitlines()
    assert line.startswith("error: the build did not finish within 0.05s (--timeout)")
    assert not (tmp_path / "out" / "report.json").exists()


def test_a_deadline_whose_exception_was_swallowed_still_ends_the_build():
    swallowed = []
    with pytest.raises(BuildTimeout, match=r"did not finish within 0.05s"), deadline(0.05):
        try:  # as a `__del__` or a garbage-collector callback would
            time.sleep(1)
        except BuildTimeout as exc:
            swallowed.append(exc)
        with pytest.raises(BuildTimeout):
            raise_if_past_deadline()
    assert len(swallowed) == 1
    raise_if_past_deadline()  # a new build starts with no deadline passed


def test_a_stop_signal_whose_exception_was_lost_still_ends_the_build_before_it_commits(
    project_dir, tmp_path
):
    """Ctrl-C's exception can be lost where the signal lands (a `__del__`, a collector
    callback): the build still stops before it commits anything, with Ctrl-C's exception."""
    install_stop_handlers()
    try:
        with contextlib.suppress(Stopped):  # as a `__del__` would
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)
        with pytest.raises(Stopped) as stopped:
            build(spec_for(project_dir, tmp_path), cache_mode="refresh")
        assert stopped.value.signum == signal.SIGINT
        assert not list((tmp_path / "out").rglob("*"))  # nothing committed, nothing staged
    finally:
        restore_stop_handlers()


def test_a_stop_signal_wrapped_in_another_error_is_still_ctrl_c(capsys):
    """A signal landing in a class's `__set_name__` while a module loads: Python 3.11 wraps
    the handler's exception in a RuntimeError. The command still ends as Ctrl-C does, not
    as an internal error."""

    def verb(args: argparse.Namespace) -> int:
        class Named:
            def __set_name__(self, owner: type, name: str) -> None:
                os.kill(os.getpid(), signal.SIGINT)
                time.sleep(1)

        class Owner:
            field = Named()

        return 0

    install_stop_handlers()
    try:
        assert _run_verb(verb, argparse.Namespace(debug=False)) == EXIT_INTERRUPTED
    finally:
        restore_stop_handlers()
    assert capsys.readouterr().err.splitlines() == ["interrupted"]


def test_a_malformed_timeout_is_a_usage_error(project_dir, tmp_path, capsys):
    from reportgen.cli import main

    assert main(["build", str(spec_for(project_dir, tmp_path)), "--timeout", "soon"]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: --timeout: expected seconds or a duration such as 90s")


def test_ci_gets_a_deadline_by_default_and_a_workstation_none():
    assert default_timeout({"CI": "true"}) == CI_TIMEOUT_SECONDS == 3600
    assert default_timeout({"CI": "1"}) == 3600
    assert default_timeout({"CI": "false"}) is None
    assert default_timeout({}) is None


def test_every_exit_code_is_documented_once_in_the_readme():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    for code in EXIT_CODES:
        assert f"**{code}**" in readme
