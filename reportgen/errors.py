"""The small family of errors a user can cause, and the exit code each one maps to.

This module is the one place exit codes are defined: the CLI's `--help`, docs/cli.md and the
README quote `EXIT_CODES`. The CLI prints an error as one clear line (never a traceback);
anything else is a bug, reported as one line with exit code 70, never as 1 (which means that the
gate failed, and a CI job must be able to tell the two apart).
"""

from __future__ import annotations

import signal
from typing import NamedTuple

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_SOURCE = 3
EXIT_COMMENT = 4  # built and the gate passed, but the PR comment could not be posted
# Built, but part of what the spec asks for is missing: a selection picked no run, a table
# column was logged by no chosen run, or some runs could not be read. Distinct from 0 so that
# CI and agents never take a report with a hole in it (or last week's file beside it) for a
# whole one; distinct from 3 because the files were written and say what is missing. A spec
# accepts missing runs with `runs.allow_partial: true`; with no run read a build exits 3.
EXIT_INCOMPLETE = 5
EXIT_INTERNAL = 70  # a bug in reportgen (EX_SOFTWARE in sysexits.h)
EXIT_TIMEOUT = 124  # the build did not finish within its deadline (--timeout), as GNU timeout
EXIT_INTERRUPTED = 128 + signal.SIGINT  # 130: Ctrl-C, as shells report it
EXIT_TERMINATED = 128 + signal.SIGTERM  # 143: SIGTERM (CI runners, `timeout`, `kill`)

EXIT_CODES: dict[int, str] = {
    EXIT_OK: "built",
    EXIT_GATE_FAILED: "built, but the gate failed (gate.fail_on, or a baseline tolerance exceeded)",
    EXIT_USAGE: "bad spec or usage (also: an output or cache folder that cannot be used)",
    EXIT_SOURCE: "the data source failed (missing folder, auth, network, no run could be read)",
    EXIT_COMMENT: "built and the gate passed, but the PR comment could not be posted",
    EXIT_INCOMPLETE: "built, but part of what the spec asks for is missing (a selection picked "
    "no run, a table column no chosen run logged, runs that could not be read)",
    EXIT_INTERNAL: "an internal error (a bug in reportgen; --debug shows the traceback)",
    EXIT_TIMEOUT: "the build did not finish within --timeout (nothing half-written is left)",
    EXIT_INTERRUPTED: "interrupted by Ctrl-C (SIGINT)",
    EXIT_TERMINATED: "terminated by SIGTERM",
}


def exit_code_lines(codes: tuple[int, ...] | None = None) -> str:
    """`--help`'s list of exit codes, from EXIT_CODES (all, or the ones a command can give)."""
    chosen = codes if codes is not None else tuple(EXIT_CODES)
    return "\n".join(f"  {code:<3} {EXIT_CODES[code]}" for code in chosen)


def exit_codes_help(codes: tuple[int, ...] | None = None) -> str:
    """The `exit codes:` block of `--help`, from the one table above."""
    return "exit codes:\n" + exit_code_lines(codes)


class ReportgenError(Exception):
    """Base of every error caused by input rather than by a bug in reportgen."""

    exit_code = EXIT_USAGE


class SpecProblem(NamedTuple):
    """One thing wrong with a spec, located as precisely as the YAML allows.

    A NamedTuple rather than a dataclass: every command imports this module, and `dataclasses`
    alone costs `reportgen --help` a third of its start-up.
    """

    file: str
    line: int
    column: int
    path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.column}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class SpecError(ReportgenError):
    """The spec is not valid; carries every problem found, not only the first."""

    exit_code = EXIT_USAGE

    def __init__(self, problems: list[SpecProblem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


class UsageError(ReportgenError):
    """The command line asks for something that cannot be done."""

    exit_code = EXIT_USAGE


class SourceError(ReportgenError):
    """The data source failed: a missing folder, refused credentials, an unreachable server."""

    exit_code = EXIT_SOURCE


class BuildTimeout(BaseException):
    """The build's deadline passed; raised where the build was when it did. A BaseException,
    like `Stopped`, so that an `except Exception` around one run's read cannot swallow it."""

    exit_code = EXIT_TIMEOUT


class Stopped(BaseException):
    """SIGINT or SIGTERM arrived. A BaseException, like KeyboardInterrupt, so that no
    `except Exception` on the way up swallows it."""

    def __init__(self, signum: int):
        self.signum = signum
        super().__init__(signal.Signals(signum).name)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum
