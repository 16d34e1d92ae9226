"""The small family of errors a user can cause, and the exit code each one maps to.

The CLI prints these as one clear line each (never a traceback); everything else is a bug.
"""

from __future__ import annotations

from typing import NamedTuple

EXIT_OK = 0
EXIT_GATE_FAILED = 1
EXIT_USAGE = 2
EXIT_SOURCE = 3
EXIT_COMMENT = 4  # built and the gate passed, but the PR comment could not be posted


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
