"""The registry of health checks: stable ids, documented parameters, presets.

Each check is a small function registered under an id that never changes once released
(report.json and `gate` reasons carry it). Its parameters are declared here with a default and
a sentence of documentation, so one place feeds spec validation, the runtime defaults and the
generated table in docs/health-checks.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from reportgen.health.roles import OBJECTIVE, ROLES
from reportgen.report import SEVERITIES
from reportgen.spec import located_schema, parse_duration

if TYPE_CHECKING:
    from reportgen.health.context import CheckContext
    from reportgen.report import Finding

# The spec schema lists the presets (auto, rl, supervised, none).
PRESETS = tuple(located_schema("#/properties/health/properties/preset")["enum"])

# Kinds of parameter values, each with a validator in `param_problems`.
NUMBER, FRACTION, INTEGER, DURATION, METRIC, METRICS, SEVERITY = (
    "number",
    "fraction",
    "integer",
    "duration",
    "metric",
    "metrics",
    "severity",
)


@dataclass(frozen=True)
class ByPreset:
    """A default that depends on whether the run is checked as RL or as supervised training."""

    rl: Any
    supervised: Any

    def pick(self, preset: str) -> Any:
        return self.rl if preset == "rl" else self.supervised


@dataclass(frozen=True)
class Param:
    name: str
    kind: str
    default: Any
    doc: str
    optional: bool = False  # null is allowed (and is the default meaning "not used")

    def default_for(self, preset: str) -> Any:
        return self.default.pick(preset) if isinstance(self.default, ByPreset) else self.default


CheckFunction = Callable[["CheckContext", dict[str, Any]], "list[Finding]"]


@dataclass(frozen=True)
class Check:
    id: str
    severity: str
    presets: tuple[str, ...]
    params: tuple[Param, ...]
    function: CheckFunction
    summary: str
    looks_at: str
    cause: str
    advice: str
    doc: str = ""

    @property
    def all_params(self) -> tuple[Param, ...]:
        """`severity` (every check has it), then the check's own parameters."""
        severity = Param(
            "severity", SEVERITY, self.severity, "bad or ugly: which section the finding lands in."
        )
        return (severity, *self.params)

    def param(self, name: str) -> Param | None:
        return next((p for p in self.all_params if p.name == name), None)

    def values(self, preset: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults for this preset with the spec's overrides on top; durations parsed."""
        values: dict[str, Any] = {p.name: p.default_for(preset) for p in self.all_params}
        values.update(overrides)
        for p in self.params:
            if p.kind == DURATION and isinstance(values[p.name], str):
                values[p.name] = parse_duration(values[p.name])
            if p.kind == METRICS and isinstance(values[p.name], str):
                values[p.name] = [values[p.name]]
        return values


CHECKS: dict[str, Check] = {}


def check(
    id: str,
    *,
    severity: str,
    presets: Sequence[str],
    looks_at: str,
    cause: str,
    advice: str,
    params: Sequence[Param] = (),
) -> Callable[[CheckFunction], CheckFunction]:
    """Register a check function under a stable id; its docstring becomes its documentation."""

    def register(function: CheckFunction) -> CheckFunction:
        if id in CHECKS:
            raise ValueError(f"check id {id!r} registered twice")
        doc = " ".join((function.__doc__ or "").split())
        CHECKS[id] = Check(
            id=id,
            severity=severity,
            presets=tuple(presets),
            params=tuple(params),
            function=function,
            summary=doc.split(". ")[0].rstrip(".") + "." if doc else "",
            looks_at=looks_at,
            cause=cause,
            advice=advice,
            doc=doc,
        )
        return function

    return register


def preset_checks(preset: str) -> list[str]:
    """The ids a preset runs, in registry order."""
    return [c.id for c in CHECKS.values() if preset in c.presets]


# --- values ------------------------------------------------------------------------------------

_DURATION = re.compile(located_schema("#/$defs/duration")["pattern"])


def metric_names(aliases: Sequence[str]) -> list[str]:
    """What a `metric` parameter may name: the spec's aliases, the built-in roles, objective."""
    return [*aliases, *(r for r in ROLES if r not in aliases), OBJECTIVE]


@dataclass(frozen=True)
class ParamProblem:
    """What is wrong with one value (and which list item, if any)."""

    message: str
    index: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def param_problems(param: Param, value: Any, aliases: Sequence[str]) -> list[ParamProblem]:
    """Everything wrong with a spec's value for `param` (the spec turns these into errors)."""
    if value is None:
        return [] if param.optional else [ParamProblem("expected a value, got nothing (null)")]
    kind = param.kind
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == NUMBER and not is_number:
        return [ParamProblem(f"expected a number, got {_show(value)}")]
    if kind == FRACTION and not (is_number and 0 <= value <= 1):
        return [ParamProblem(f"expected a fraction between 0 and 1, got {_show(value)}")]
    if kind == INTEGER and not (
        isinstance(value, int) and not isinstance(value, bool) and value >= 1
    ):
        return [ParamProblem(f"expected a whole number of at least 1, got {_show(value)}")]
    if kind == DURATION and not (isinstance(value, str) and _DURATION.match(value)):
        return [ParamProblem(f"expected a duration such as 30m, 2h or 1d, got {_show(value)}")]
    if kind == SEVERITY and value not in SEVERITIES:
        return [ParamProblem(f"expected bad or ugly, got {_show(value)}")]
    if kind == METRIC:
        return _metric_problem(value, aliases, None)
    if kind == METRICS:
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not items:
            return [ParamProblem(f"expected an alias or a list of aliases, got {_show(value)}")]
        found: list[ParamProblem] = []
        for i, item in enumerate(items):
            found += _metric_problem(item, aliases, None if isinstance(value, str) else i)
        return found
    return []


def _metric_problem(value: Any, aliases: Sequence[str], index: int | None) -> list[ParamProblem]:
    if not isinstance(value, str):
        return [ParamProblem(f"expected an alias name, got {_show(value)}", index)]
    names = metric_names(aliases)
    if value in names:
        return []
    return [ParamProblem(f"unknown alias '{value}'", index, {"choices": names})]


def _show(value: Any) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, (list, dict)):
        return "a list" if isinstance(value, list) else "a mapping"
    return str(value).lower() if isinstance(value, bool) else str(value)
