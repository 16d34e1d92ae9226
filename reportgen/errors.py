"""The small family of errors a user can cause, and the exit code each one maps to.

The CLI prints these as one clear line each (never a traceback); everything else is a bug.
This module is the one place exit codes are defined: `--help` (and so docs/cli.md) prints
`EXIT_CODES`; the README describes the same codes.
"""

from __future__ import annotations

from dataclasses import dataclass

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

EXIT_CODES = {
    EXIT_OK: "built",
    EXIT_GATE_FAILED: "built, but the gate failed (gate.fail_on, or a baseline tolerance exceeded)",
    EXIT_USAGE: "bad spec or usage",
    EXIT_SOURCE: "the data source failed (missing folder, auth, network, no run could be read)",
    EXIT_COMMENT: "built and the gate passed, but the PR comment could not be posted",
    EXIT_INCOMPLETE: "built, but part of what the spec asks for is missing (a selection picked "
    "no run, a table column no chosen run logged, runs that could not be read)",
}


def exit_codes_help(codes: tuple[int, ...] = tuple(EXIT_CODES)) -> str:
    """The `exit codes:` block of `--help`, from the one table above."""
    return "exit codes:\n" + "\n".join(f"  {code}  {EXIT_CODES[code]}" for code in codes)


class ReportgenError(Exception):
    """Base of every error caused by input rather than by a bug in reportgen."""

    exit_code = EXIT_USAGE


@dataclass(frozen=True)
class SpecProblem:
    """One thing wrong with a spec, located as precisely as the YAML allows."""

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
