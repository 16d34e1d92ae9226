"""Load a YAML spec into `Spec` dataclasses, or fail with every problem located.

Validation happens before any data is touched: the JSON Schema (spec.schema.json) says what a
spec may contain, then a few cross-field rules (an alias used by a selection must exist, a regex
must compile) are checked. Each problem names file:line:column, the path inside the spec, what
was expected and, for unknown names, the closest valid one.

A module per concern: `model` (the Spec dataclasses), `located` (YAML with the line and column of
every value, within size bounds), `problems` (what is wrong, said in words) and `building` (the
dataclasses from a checked document). This module joins them in `parse_spec` and `load_spec`.
"""

from __future__ import annotations

from pathlib import Path

from reportgen.errors import SpecError, SpecProblem
from reportgen.spec.building import build_spec
from reportgen.spec.located import MAX_SPEC_BYTES, compose
from reportgen.spec.model import (
    DURATION_UNITS,
    BaselineSpec,
    CacheSpec,
    CommentSpec,
    CompareSpec,
    CsvSpec,
    ExecutorSpec,
    GateSpec,
    HealthSpec,
    MetricAlias,
    OutputsSpec,
    ParetoSpec,
    PivotSpec,
    PlotsSpec,
    ProjectTableSpec,
    RunFilters,
    RunsSpec,
    Sampling,
    Selection,
    SourceSpec,
    Spec,
    StatsSpec,
    TimeBound,
    Tolerance,
    parse_duration,
)
from reportgen.spec.problems import (
    describe,
    format_path,
    load_schema,
    located_schema,
    rule_problems,
    schema_problems,
    value_problems,
)

__all__ = [
    "DURATION_UNITS",
    "BaselineSpec",
    "CacheSpec",
    "CommentSpec",
    "CompareSpec",
    "CsvSpec",
    "ExecutorSpec",
    "GateSpec",
    "HealthSpec",
    "MetricAlias",
    "OutputsSpec",
    "ParetoSpec",
    "PivotSpec",
    "PlotsSpec",
    "ProjectTableSpec",
    "RunFilters",
    "RunsSpec",
    "Sampling",
    "Selection",
    "SourceSpec",
    "Spec",
    "StatsSpec",
    "TimeBound",
    "Tolerance",
    "load_schema",
    "load_spec",
    "located_schema",
    "parse_duration",
    "parse_spec",
]


def parse_spec(text: str, path: Path | str = "<spec>") -> Spec:
    """Validate spec text and build the Spec; raise SpecError listing every problem."""
    path = Path(path)
    file = str(path)
    located = compose(text, file)
    if not isinstance(located.data, dict):
        line, col = located.mark(())
        got = "an empty file" if located.data is None else describe(located.data)
        raise SpecError(
            [SpecProblem(file, line, col, "", f"expected a mapping at the top, got {got}")]
        )
    problems = [
        SpecProblem(file, line, col, format_path(dup), "this key is given twice; keep one")
        for dup, (line, col) in located.duplicates
    ]
    problems += list(value_problems(located, file))
    problems += list(schema_problems(located, file))
    if not problems:
        problems += list(rule_problems(located.data, located, file))
    if problems:
        raise SpecError(sorted(set(problems), key=lambda p: (p.line, p.column, p.message)))
    return build_spec(located.data, path, text)


def load_spec(path: Path | str) -> Spec:
    """Read and validate a spec file."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_SPEC_BYTES + 1)
        if len(data) > MAX_SPEC_BYTES:
            message = f"is larger than {MAX_SPEC_BYTES // 1024} KiB: that is not a spec"
            raise SpecError([SpecProblem(str(path), 1, 1, "", message)])
        text = data.decode("utf-8")
    except FileNotFoundError:
        raise SpecError([SpecProblem(str(path), 1, 1, "", "no such file")]) from None
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise SpecError([SpecProblem(str(path), 1, 1, "", f"cannot be read: {exc}")]) from None
    return parse_spec(text, path)
