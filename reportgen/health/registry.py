"""The registry of health checks: each check's function joined to its entry in the catalogue.

What a spec may say about a check (its id, severity, presets and parameters) is in
reportgen/check_catalogue.py, below both spec validation and this package; here each check
function is registered under its catalogue id, with the documentation that travels with the
code (what it looks at, the likely cause, the advice), and the docstring that becomes its entry
in docs/health-checks.md.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from reportgen.check_catalogue import CATALOGUE, DURATION, METRICS, CheckSpec, Param
from reportgen.spec import located_schema, parse_duration

if TYPE_CHECKING:
    from reportgen.health.context import CheckContext
    from reportgen.report import Finding


# The spec schema lists the presets (auto, rl, supervised, none).
PRESETS = tuple(located_schema("#/properties/health/properties/preset")["enum"])

CheckFunction = Callable[["CheckContext", dict[str, Any]], "list[Finding]"]


@dataclass(frozen=True)
class Check:
    spec: CheckSpec
    function: CheckFunction
    summary: str
    looks_at: str
    cause: str
    advice: str
    doc: str = ""

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def severity(self) -> str:
        return self.spec.severity

    @property
    def presets(self) -> tuple[str, ...]:
        return tuple(self.spec.presets)

    @property
    def params(self) -> tuple[Param, ...]:
        return tuple(self.spec.params)

    @property
    def all_params(self) -> tuple[Param, ...]:
        """`severity` (every check has it), then the check's own parameters."""
        return self.spec.all_params

    def param(self, name: str) -> Param | None:
        return self.spec.param(name)

    def values(self, preset: str, overrides: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults for this preset with the spec's overrides on top; durations parsed."""
        values: dict[str, Any] = {p.name: p.default_for(preset) for p in self.all_params}
        values.update(overrides)
        for p in self.spec.params:
            if p.kind == DURATION and isinstance(values[p.name], str):
                values[p.name] = parse_duration(values[p.name])
            if p.kind == METRICS and isinstance(values[p.name], str):
                values[p.name] = [values[p.name]]
        return values


# Filled as the check modules are imported (reportgen/health/__init__.py imports them all), in
# the catalogue's order: `check` refuses an id the catalogue does not have.
CHECKS: dict[str, Check] = {}


def check(
    id: str, *, looks_at: str, cause: str, advice: str
) -> Callable[[CheckFunction], CheckFunction]:
    """Register a check function under its catalogue id; its docstring becomes its
    documentation."""

    def register(function: CheckFunction) -> CheckFunction:
        if id not in CATALOGUE:
            raise ValueError(f"check id {id!r} is not in reportgen/check_catalogue.py")
        if id in CHECKS:
            raise ValueError(f"check id {id!r} registered twice")
        doc = " ".join((function.__doc__ or "").split())
        CHECKS[id] = Check(
            spec=CATALOGUE[id],
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
