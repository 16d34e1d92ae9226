"""Load a YAML spec into `Spec` dataclasses, or fail with every problem located.

Validation happens before any data is touched: the JSON Schema (spec.schema.json) says what a
spec may contain, then a few cross-field rules (an alias used by a selection must exist, a regex
must compile) are checked here. Each problem names file:line:column, the path inside the spec,
what was expected and, for unknown names, the closest valid one.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from reportgen.check_catalogue import (
    CATALOGUE,
    DURATION,
    FRACTION,
    INTEGER,
    METRIC,
    METRICS,
    NUMBER,
    SEVERITIES,
    SEVERITY,
    Param,
    metric_names,
)
from reportgen.errors import SpecError, SpecProblem

SpecPath = tuple[str | int, ...]

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
CSV_NAME_FIELDS = {"selection", "by", "run", "run_id"}


@cache
def load_schema() -> dict[str, Any]:
    """The spec's JSON Schema, shipped inside the package."""
    text = resources.files("reportgen").joinpath("spec.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


# --- the Spec ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceSpec:
    type: str
    path: str | None = None
    entity: str | None = None
    project: str | None = None
    base_url: str | None = None
    stale_after: timedelta = timedelta(minutes=15)
    projects: tuple[str, ...] = ()
    workers: int = 6
    executor: ExecutorSpec = field(default_factory=lambda: ExecutorSpec())


@dataclass(frozen=True)
class ExecutorSpec:
    """Where the per-run work runs: `local` (this machine) or `ray` (a Ray cluster at
    `address`: `auto`, `host:port`, `ray://host:port`; None: Ray's default)."""

    type: str = "local"
    address: str | None = None

    @classmethod
    def parse(cls, text: str) -> ExecutorSpec:
        """`local`, `ray`, `ray:ADDRESS` or `ray://host:port`, as `--executor` takes them."""
        if text.startswith("ray://"):
            return cls("ray", text)
        kind, _, address = text.partition(":")
        return cls(kind, address or None)


@dataclass(frozen=True)
class TimeBound:
    """A creation-time limit: an absolute moment, or an age measured back from 'now'."""

    text: str
    moment: datetime | None = None
    age: timedelta | None = None

    def resolve(self, now: datetime) -> datetime:
        if self.moment is not None:
            return self.moment
        assert self.age is not None
        return now - self.age


@dataclass(frozen=True)
class RunFilters:
    states: tuple[str, ...] = ()
    tags_any: tuple[str, ...] = ()
    tags_all: tuple[str, ...] = ()
    tags_none: tuple[str, ...] = ()
    name: str | None = None
    groups: tuple[str, ...] = ()
    job_types: tuple[str, ...] = ()
    config: dict[str, dict[str, Any]] = field(default_factory=dict)
    created_after: TimeBound | None = None
    created_before: TimeBound | None = None
    min_steps: int | None = None  # checked once a run's history is read (Run.logged_steps)


@dataclass(frozen=True)
class RunsSpec:
    filters: RunFilters = field(default_factory=RunFilters)
    ids: tuple[str, ...] = ()
    limit: int | None = None
    allow_partial: bool = False  # runs that cannot be read leave a report that exits 0, not 5


@dataclass(frozen=True)
class MetricAlias:
    """A name for a metric: candidate keys tried in order, or an expression over other aliases."""

    name: str
    keys: tuple[str, ...] = ()
    expr: str | None = None
    goal: str | None = None
    x: str | None = None


@dataclass(frozen=True)
class Selection:
    name: str
    by: str
    reduce: str = "mean"
    pick: str = "min"
    min_steps: int | None = None


@dataclass(frozen=True)
class Sampling:
    x: str = "_step"
    start: int = 0
    every: int = 1
    stop: int | None = None
    align: str = "asof"


@dataclass(frozen=True)
class HealthSpec:
    preset: str = "auto"
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    disable: tuple[str, ...] = ()


@dataclass(frozen=True)
class CsvSpec:
    name: str | None = None
    columns: tuple[str, ...] | None = None
    missing: str = "empty"
    where: str | None = None


@dataclass(frozen=True)
class CommentSpec:
    forge: str | None = None
    marker: str | None = None
    limit: int | None = None
    charts: bool = False
    report_url: str | None = None
    on_error: str = "fail"


@dataclass(frozen=True)
class OutputsSpec:
    dir: Path
    formats: tuple[str, ...] = ("markdown", "csv", "json")
    csv: CsvSpec = field(default_factory=CsvSpec)
    comment: CommentSpec | None = None
    templates: Path | None = None
    run_pages: str = "notable"  # or "all": which runs get a section (a PDF page) of their own


@dataclass(frozen=True)
class PlotsSpec:
    """What the charts show; `metrics=None` means every alias."""

    metrics: tuple[str, ...] | None = None
    smoothing: float = 0.0
    log_y: tuple[str, ...] = ()
    points: int = 600
    mermaid: bool = False


@dataclass(frozen=True)
class CacheSpec:
    dir: Path | None = None


@dataclass(frozen=True)
class GateSpec:
    fail_on: str = "never"


DEFAULT_STATS = ("min", "p10", "p25", "p50", "p75", "p90", "max", "last")


@dataclass(frozen=True)
class StatsSpec:
    """`stats:` — which aliases (None: all) and which statistics, in column order."""

    metrics: tuple[str, ...] | None = None
    stats: tuple[str, ...] = DEFAULT_STATS


@dataclass(frozen=True)
class CompareSpec:
    """`compare:` — runs by selection name or id; the first is the reference."""

    runs: tuple[str, ...]
    metrics: tuple[str, ...] | None = None
    reduce: str = "summary"
    history: bool = True
    sampling: Sampling = field(default_factory=Sampling)


@dataclass(frozen=True)
class ParetoSpec:
    """`project_table.pareto` — two aliases among the table's metrics."""

    quality: str
    cost: str


@dataclass(frozen=True)
class PivotSpec:
    """`project_table.pivot` — `metric` aggregated over the values of two columns."""

    rows: str
    columns: str
    metric: str
    aggregate: str = "mean"


@dataclass(frozen=True)
class ProjectTableSpec:
    """`project_table:` — `metrics` maps each alias to its reduction (None: every alias)."""

    name: str = "project"
    metrics: dict[str, str] | None = None
    reduce: str = "last"
    summary: bool = True
    primary: str | None = None
    top: int = 10
    group_by: tuple[str, ...] = ()
    aggregate: tuple[str, ...] = ("count", "mean", "std", "min", "max")
    correlate: bool = True
    min_runs: int = 5
    name_fields: str | None = None
    pareto: ParetoSpec | None = None
    pivot: PivotSpec | None = None


@dataclass(frozen=True)
class Tolerance:
    """How much worse than the baseline an alias may get; the larger allowance applies."""

    alias: str
    abs: float | None = None
    rel: float | None = None
    reduce: str | None = None


@dataclass(frozen=True)
class BaselineSpec:
    """Baseline runs (a rule over the chosen runs), the candidates, and per-alias tolerances."""

    runs: RunsSpec
    candidate: RunsSpec | None = None
    metrics: tuple[str, ...] | None = None
    reduce: str = "last"
    tolerances: dict[str, Tolerance] = field(default_factory=dict)
    missing: str = "fail"


@dataclass(frozen=True)
class Spec:
    path: Path
    sha256: str
    title: str
    description: str | None
    source: SourceSpec
    runs: RunsSpec
    metrics: dict[str, MetricAlias]
    select: dict[str, Selection]
    sampling: Sampling
    health: HealthSpec
    outputs: OutputsSpec
    gate: GateSpec
    raw: dict[str, Any]
    baseline: BaselineSpec | None = None
    stats: StatsSpec | None = None
    compare: CompareSpec | None = None
    project_table: ProjectTableSpec | None = None
    plots: PlotsSpec = field(default_factory=PlotsSpec)
    cache: CacheSpec = field(default_factory=CacheSpec)


# --- YAML with positions -----------------------------------------------------------------------


@dataclass
class _Located:
    """The plain data of a YAML document, plus where each path's key and value start."""

    data: Any
    value_marks: dict[SpecPath, tuple[int, int]]
    key_marks: dict[SpecPath, tuple[int, int]]
    duplicates: list[tuple[SpecPath, tuple[int, int]]]

    def mark(self, path: SpecPath, *, key: bool = False) -> tuple[int, int]:
        """The closest known position to `path` (1-based line and column)."""
        p = tuple(path)
        while p:
            if key and p in self.key_marks:
                return self.key_marks[p]
            if p in self.value_marks:
                return self.value_marks[p]
            p = p[:-1]
        return self.value_marks.get((), (1, 1))


# libyaml's parser, where PyYAML was built with it, composes a spec several times faster than
# the pure-Python one (it was a good part of `reportgen validate`); both give the same nodes
# and marks. Invalid YAML is explained in the pure-Python parser's words, which are plainer.
_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# Limits on what a spec may be: far above any real spec, far below what hurts. A YAML alias
# repeated inside aliases ("billion laughs") expands exponentially, and deep nesting exhausts
# the interpreter's stack; both are refused with a located message before any work is done.
MAX_SPEC_BYTES = 1 << 20
MAX_SPEC_VALUES = 100_000
MAX_SPEC_DEPTH = 50
MAX_INTEGER = 10**15  # larger counts, steps or limits are mistakes, not intentions
MAX_DURATION = timedelta(days=36500)  # ages and durations: a century covers every real run


class _TooBig(Exception):
    def __init__(self, node: yaml.Node, message: str):
        super().__init__(message)
        self.node = node
        self.message = message


def _compose(text: str, file: str) -> _Located:
    def fail(line: int, col: int, message: str) -> SpecError:
        return SpecError([SpecProblem(file, line, col, "", message)])

    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise fail(line, 1, "contains a NUL character (\\x00): a spec is text; remove it")
    try:
        loader, root = _root_node(text, _FAST_LOADER)
    except yaml.YAMLError:
        # libyaml refuses some specs the pure-Python parser reads (an escaped lone surrogate,
        # which the checks below then name) and words its errors less plainly: ask it too.
        loader = None
    if loader is None:
        try:
            loader, root = _root_node(text, yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            problem = exc.problem or str(exc)
            raise fail(line, col, f"not valid YAML: {problem}") from None
        except yaml.YAMLError as exc:  # the reader's errors (special characters) carry no mark
            raise fail(1, 1, f"not valid YAML: {' '.join(str(exc).split())}") from None
        except RecursionError:
            message = f"not valid here: nested more than {MAX_SPEC_DEPTH} levels deep"
            raise fail(1, 1, message) from None
    located = _Located(None, {}, {}, [])
    if root is None:
        located.value_marks[()] = (1, 1)
        return located
    budget = [MAX_SPEC_VALUES]
    try:
        located.data = _build(root, (), loader, located, budget, ())
    except _TooBig as exc:
        mark = exc.node.start_mark
        raise fail(mark.line + 1, mark.column + 1, exc.message) from None
    except RecursionError:
        raise fail(1, 1, f"not valid here: nested more than {MAX_SPEC_DEPTH} levels deep") from None
    return located


def _root_node(text: str, loader_type: type[yaml.SafeLoader]) -> tuple[yaml.SafeLoader, Any]:
    """The loader (its marks are needed later) and the document's root node."""
    loader = loader_type(text)  # its reader refuses control characters right here
    try:
        return loader, loader.get_single_node()
    finally:
        loader.dispose()


def _build(
    node: yaml.Node,
    path: SpecPath,
    loader: yaml.SafeLoader,
    out: _Located,
    budget: list[int],
    within: tuple[int, ...],
) -> Any:
    """Plain data from a node, refusing self-reference, depth and expansion past the limits."""
    if id(node) in within:
        raise _TooBig(node, "a YAML alias refers to the value that contains it (a loop)")
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooBig(
            node,
            f"the spec expands to more than {MAX_SPEC_VALUES:,} values "
            "(YAML aliases repeated inside aliases?)",
        )
    if len(within) > MAX_SPEC_DEPTH:
        raise _TooBig(node, f"nested more than {MAX_SPEC_DEPTH} levels deep")
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
        raise _TooBig(node, f"the YAML tag {node.tag!r} is not allowed: a spec is plain data")
    inside = (*within, id(node))
    out.value_marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        _flatten(loader, node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _TooBig(key_node, "a key must be a plain name, not a list or mapping")
            key = _scalar(loader, key_node)
            if not isinstance(key, str):
                key = str(key)
            child = (*path, key)
            key_mark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in result:
                out.duplicates.append((child, key_mark))
            out.key_marks[child] = key_mark
            result[key] = _build(value_node, child, loader, out, budget, inside)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(item, (*path, i), loader, out, budget, inside)
            for i, item in enumerate(node.value)
        ]
    return _scalar(loader, node)


def _flatten(loader: yaml.SafeLoader, node: yaml.MappingNode) -> None:
    """YAML merge keys (`<<: *base`), with their errors located."""
    try:
        loader.flatten_mapping(node)
    except yaml.MarkedYAMLError as exc:
        raise _TooBig(node, f"not valid YAML: {exc.problem or exc}") from None


def _scalar(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    """One plain value; an unknown tag (`!!python/...`) or an impossible date is a located error.

    Strings must be storable text: no unpaired surrogate (it cannot be written to any file).
    """
    try:
        value = loader.construct_object(node, deep=True)
    except yaml.MarkedYAMLError as exc:
        raise _TooBig(node, f"not valid here: {exc.problem or exc}") from None
    except (ValueError, OverflowError) as exc:
        raise _TooBig(node, f"not a valid value ({exc}): quote it to use it as text") from None
    if isinstance(value, str) and _SURROGATE.search(value):
        raise _TooBig(node, "contains an unpaired surrogate (\\ud800-\\udfff), which is not text")
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")
_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}


# --- problems ----------------------------------------------------------------------------------


def format_path(path: SpecPath) -> str:
    """`('runs', 'filters', 'tags')` → `runs.filters.tags`; list items as `[2]`."""
    text = ""
    for part in path:
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text += ("." if text else "") + str(part)
    return text


def _closest(word: str, choices: list[str]) -> str | None:
    found = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return found[0] if found else None


def _did_you_mean(word: str, choices: list[str]) -> str:
    best = _closest(word, choices)
    return f"; did you mean '{best}'?" if best else f"; valid: {', '.join(sorted(choices))}"


def _describe(value: Any) -> str:
    kinds = {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}
    if value is None:
        return "nothing (null)"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list):
        return "a list"
    return f"{kinds.get(type(value), type(value).__name__)} {json.dumps(value, default=str)}"


_TYPE_WORDS = {
    "object": "a mapping",
    "array": "a list",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "true or false",
    "null": "null",
}


_BOUND_WORDS = {
    "minimum": "of at least",
    "exclusiveMinimum": "above",
    "maximum": "of at most",
    "exclusiveMaximum": "below",
}


def _expected_type(schema_type: Any) -> str:
    types = schema_type if isinstance(schema_type, list) else [schema_type]
    return " or ".join(_TYPE_WORDS.get(str(t), str(t)) for t in types)


def _strict_integer(checker: Any, instance: Any) -> bool:
    """An integer is an int: JSON Schema would also accept 1e308 written as a float."""
    return isinstance(instance, int) and not isinstance(instance, bool)


_Validator = jsonschema.validators.extend(
    jsonschema.Draft202012Validator,
    type_checker=jsonschema.Draft202012Validator.TYPE_CHECKER.redefine("integer", _strict_integer),
)


def _schema_problems(located: _Located, file: str) -> Iterator[SpecProblem]:
    validator = _Validator(load_schema())
    errors = sorted(validator.iter_errors(located.data), key=lambda e: list(e.absolute_path))
    for error in errors:
        yield from _explain(error, located, file)


def _explain(
    error: jsonschema.ValidationError, located: _Located, file: str
) -> Iterator[SpecProblem]:
    path: SpecPath = tuple(error.absolute_path)
    schema = error.schema if isinstance(error.schema, dict) else {}

    def problem(at: SpecPath, message: str, *, key: bool = False) -> SpecProblem:
        line, col = located.mark(at, key=key)
        return SpecProblem(file, line, col, format_path(at), message)

    if error.validator == "additionalProperties":
        known = list(schema.get("properties", {}))
        instance = error.instance if isinstance(error.instance, dict) else {}
        for name in instance:
            if name not in known:
                yield problem(
                    (*path, name), f"unknown key '{name}'{_did_you_mean(name, known)}", key=True
                )
    elif error.validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        yield problem(path, f"missing required key '{missing}'")
    elif error.validator == "type":
        expected = _expected_type(error.validator_value)
        yield problem(path, f"expected {expected}, got {_describe(error.instance)}")
    elif error.validator == "enum":
        choices = [str(c) for c in error.validator_value]  # type: ignore[union-attr]
        hint = _closest(str(error.instance), choices)
        tail = f"; did you mean '{hint}'?" if hint else ""
        yield problem(
            path, f"expected one of {', '.join(choices)}; got {_describe(error.instance)}{tail}"
        )
    elif error.validator == "const":
        yield problem(
            path, f"expected {json.dumps(error.validator_value)}, got {_describe(error.instance)}"
        )
    elif error.validator in ("minimum", "exclusiveMinimum", "maximum", "exclusiveMaximum"):
        yield problem(
            path,
            f"expected a value {_BOUND_WORDS[str(error.validator)]} {error.validator_value}, "
            f"got {error.instance}",
        )
    elif error.validator == "minItems" and error.validator_value not in (0, 1):
        yield problem(path, f"needs at least {error.validator_value} items")
    elif error.validator in ("minItems", "minLength", "minProperties"):
        yield problem(path, "must not be empty")
    elif error.validator == "uniqueItems":
        yield problem(path, "has repeated items")
    elif error.validator == "pattern":
        what = schema.get("description") or f"text matching {error.validator_value}"
        yield problem(path, f"{_describe(error.instance)} is not valid here: expected {what}")
    elif error.validator == "propertyNames":
        name = error.instance
        yield problem(
            (*path, name) if isinstance(name, str) else path,
            f"'{name}' is not a valid name: use letters, digits and _ (not starting with a digit)",
            key=True,
        )
    elif error.validator in ("oneOf", "anyOf") and error.context:
        yield from _explain_alternatives(error, located, file, problem)
    elif error.validator == "oneOf" and all(
        isinstance(s, dict) and "required" in s
        for s in error.validator_value  # type: ignore[union-attr]
    ):
        keys = [s["required"][0] for s in error.validator_value]  # type: ignore[union-attr]
        yield problem(path, f"give exactly one of {', '.join(keys)}, not both")
    else:
        yield problem(path, error.message)


def _explain_alternatives(error, located, file, problem):
    """A value matched none of several shapes: explain against the shape it resembles most."""
    instance = error.instance
    shapes = []
    for option in error.validator_value:
        ref = option.get("$ref", "") if isinstance(option, dict) else ""
        target = located_schema(ref) if ref else option
        shapes.append(target)
    same_kind = [e for e in error.context if _instance_kind_matches(e, instance)]
    object_options = [i for i, s in enumerate(shapes) if s.get("type") == "object"]
    if isinstance(instance, dict) and object_options:
        # The value is a mapping: explain every way it fails the mapping shape.
        inner = [
            e
            for e in error.context
            if e.relative_schema_path
            and e.relative_schema_path[0] in object_options
            and e.validator != "type"
        ]
        if inner:
            for found in inner:
                yield from _explain(found, located, file)
            return
    if same_kind and not isinstance(instance, dict):
        best = jsonschema.exceptions.best_match(same_kind)
        if best is not None and best.validator != "type":
            yield from _explain(best, located, file)
            return
    kinds = sorted({_expected_type(s["type"]) for s in shapes if "type" in s})
    if isinstance(instance, dict) and all("required" in s for s in error.validator_value):
        keys = [s["required"][0] for s in error.validator_value]
        yield problem(tuple(error.absolute_path), f"give exactly one of {', '.join(keys)}")
        return
    expected = " or ".join(kinds) if kinds else "a different value"
    yield problem(tuple(error.absolute_path), f"expected {expected}, got {_describe(instance)}")


def located_schema(ref: str) -> dict[str, Any]:
    """Follow a local `#/$defs/...` reference inside the spec schema."""
    node: Any = load_schema()
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _instance_kind_matches(error: jsonschema.ValidationError, instance: Any) -> bool:
    return error.validator != "type" or not list(error.relative_path)


# --- cross-field rules -------------------------------------------------------------------------


def _rule_problems(data: dict[str, Any], located: _Located, file: str) -> Iterator[SpecProblem]:
    def problem(at: SpecPath, message: str, *, key: bool = False) -> SpecProblem:
        line, col = located.mark(at, key=key)
        return SpecProblem(file, line, col, format_path(at), message)

    aliases = list(data.get("metrics", {}))
    for name, rule in data.get("select", {}).items():
        if rule["by"] not in aliases:
            hint = _did_you_mean(rule["by"], aliases) if aliases else "; define it under metrics"
            yield problem(("select", name, "by"), f"unknown alias '{rule['by']}'{hint}")
    columns = data.get("outputs", {}).get("csv", {}).get("columns", [])
    for i, column in enumerate(columns):
        if column not in aliases:
            hint = _did_you_mean(column, aliases) if aliases else "; define it under metrics"
            yield problem(("outputs", "csv", "columns", i), f"unknown alias '{column}'{hint}")
    name_template = data.get("outputs", {}).get("csv", {}).get("name")
    if name_template is not None:
        for found in re.findall(r"\{([^{}]*)\}", name_template):
            if found not in CSV_NAME_FIELDS:
                fields = sorted(CSV_NAME_FIELDS)
                yield problem(
                    ("outputs", "csv", "name"),
                    f"unknown field '{{{found}}}'{_did_you_mean(found, fields)}",
                )
    plots = data.get("plots", {})
    for list_key in ("metrics", "log_y"):
        for i, alias in enumerate(plots.get(list_key, [])):
            if alias not in aliases:
                hint = _did_you_mean(alias, aliases) if aliases else "; define it under metrics"
                yield problem(("plots", list_key, i), f"unknown alias '{alias}'{hint}")
    yield from _filter_problems(data, problem)
    for name, rule in data.get("metrics", {}).items():
        if isinstance(rule, dict) and "expr" in rule:
            yield from _expr_problems(name, rule["expr"], aliases, problem)
    yield from _analysis_problems(data, aliases, problem)
    yield from _health_problems(data.get("health", {}), aliases, problem)
    yield from _baseline_problems(data, aliases, problem)


def _filter_problems(data, problem):
    """Name patterns that compile (and stay bounded), dates that exist, ages and durations
    that fit the calendar: every value the filters interpret later."""
    from reportgen.namepattern import pattern_problem

    for section in ("runs", "baseline", "candidate"):
        filters = (data.get(section) or {}).get("filters", {})
        pattern = filters.get("name")
        if pattern is not None:
            found = pattern_problem(pattern)
            if found is not None:
                yield problem((section, "filters", "name"), found)
        for bound in ("created_after", "created_before"):
            if filters.get(bound) is not None:
                found = _time_problem(filters[bound])
                if found is not None:
                    yield problem((section, "filters", bound), found)
    for at in FOLDER_SETTINGS:
        value = data.get(at[0], {}).get(at[1])
        if isinstance(value, str):
            found = _folder_problem(value)
            if found is not None:
                yield problem(at, found)
    name = data.get("outputs", {}).get("csv", {}).get("name")
    if isinstance(name, str) and len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES - 20:
        yield problem(("outputs", "csv", "name"), "is too long for a file name")
    stale = data.get("source", {}).get("stale_after")
    if stale is not None:
        found = _duration_problem(stale)
        if found is not None:
            yield problem(("source", "stale_after"), found)


FOLDER_SETTINGS = (
    ("source", "path"),
    ("outputs", "dir"),
    ("outputs", "templates"),
    ("cache", "dir"),
)
MAX_NAME_BYTES = 255  # one file or folder name, on every common file system
MAX_PATH_BYTES = 4095


def _folder_problem(text: str) -> str | None:
    """Why `text` cannot name a folder on this system, or None."""
    if "\x00" in text:
        return "the folder name contains a NUL character"
    encoded = text.encode("utf-8", "surrogatepass")
    if len(encoded) > MAX_PATH_BYTES:
        return f"the path is {len(encoded):,} bytes long; at most {MAX_PATH_BYTES:,} are possible"
    longest = max(len(part.encode("utf-8", "surrogatepass")) for part in text.split("/"))
    if longest > MAX_NAME_BYTES:
        return f"a folder name in it is {longest} bytes long; at most {MAX_NAME_BYTES} are possible"
    return None


def _duration_problem(text: str) -> str | None:
    try:
        length = parse_duration(text)
    except (ValueError, OverflowError):
        length = None
    if length is None or length > MAX_DURATION:
        return f"'{text}' is longer than {MAX_DURATION.days // 365} years; give a shorter duration"
    return None


def _time_problem(text: str) -> str | None:
    if text[-1] in DURATION_UNITS and text[:-1].replace(".", "", 1).isdigit():
        return _duration_problem(text)
    try:
        _time_bound(text)
    except (ValueError, OverflowError) as exc:
        return f"'{text}' is not a real date or time ({exc}); expected e.g. 2026-11-01 or 7d"
    return None


def _value_problems(located: _Located, file: str) -> Iterator[SpecProblem]:
    """Numbers later stages can compute with: finite, and integers of a sensible size."""

    def walk(value: Any, path: SpecPath) -> Iterator[SpecProblem]:
        if isinstance(value, dict):
            for key, item in value.items():
                yield from walk(item, (*path, key))
        elif isinstance(value, list):
            for i, item in enumerate(value):
                yield from walk(item, (*path, i))
        elif isinstance(value, float) and not math.isfinite(value):
            line, col = located.mark(path)
            yield SpecProblem(file, line, col, format_path(path), "expected a finite number")
        elif isinstance(value, int) and not isinstance(value, bool) and abs(value) > MAX_INTEGER:
            line, col = located.mark(path)
            message = f"{value} is too large: at most {MAX_INTEGER:.0e} is meaningful here"
            yield SpecProblem(file, line, col, format_path(path), message)

    yield from walk(located.data, ())


def _health_problems(health, aliases, problem):
    """Check ids and parameters exist, and values fit: the check catalogue is their source
    (a small module below both this one and the checks: numpy and pandas stay unloaded)."""
    if not health.get("checks") and not health.get("disable"):
        return
    ids = list(CATALOGUE)
    for check_id, params in health.get("checks", {}).items():
        at = ("health", "checks", check_id)
        check = CATALOGUE.get(check_id)
        if check is None:
            yield problem(at, f"unknown check '{check_id}'{_did_you_mean(check_id, ids)}", key=True)
            continue
        names = [p.name for p in check.all_params]
        for name, value in params.items():
            param = check.param(name)
            if param is None:
                hint = _did_you_mean(name, names)
                yield problem(
                    (*at, name), f"unknown parameter '{name}' of {check_id}{hint}", key=True
                )
                continue
            for found in param_problems(param, value, aliases):
                where = (*at, name) if found.index is None else (*at, name, found.index)
                choices = found.extra.get("choices")
                hint = (
                    _did_you_mean(
                        str(value if found.index is None else value[found.index]), choices
                    )
                    if choices
                    else ""
                )
                yield problem(where, f"{found.message}{hint}")
    for i, check_id in enumerate(health.get("disable", [])):
        if check_id not in CATALOGUE:
            hint = _did_you_mean(check_id, ids)
            yield problem(("health", "disable", i), f"unknown check '{check_id}'{hint}")


# --- health check parameters (the catalogue says which; these say what is wrong) -------------


@dataclass(frozen=True)
class ParamProblem:
    """What is wrong with one value (and which list item, if any)."""

    message: str
    index: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def param_problems(param: Param, value: Any, aliases: Sequence[str]) -> list[ParamProblem]:
    """Everything wrong with a spec's value for a check's parameter `param`."""
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
    if kind == DURATION and not (isinstance(value, str) and _duration_pattern().match(value)):
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


@cache
def _duration_pattern() -> re.Pattern[str]:
    return re.compile(located_schema("#/$defs/duration")["pattern"])


def _baseline_problems(data, aliases, problem):
    """A baseline must say which runs it is; compared and toleranced aliases must exist."""
    baseline = data.get("baseline")
    if baseline is None:
        if "candidate" in data:
            yield problem(("candidate",), "a candidate rule needs a baseline section", key=True)
        return
    if "ids" not in baseline and "filters" not in baseline:
        yield problem(
            ("baseline",), "say which runs are the baseline: give ids, filters, or both", key=True
        )
    named = [("metrics", i, a) for i, a in enumerate(baseline.get("metrics", []))]
    named += [("tolerances", a, a) for a in baseline.get("tolerances", {})]
    for part, at, alias in named:
        if alias not in aliases:
            hint = _did_you_mean(alias, aliases) if aliases else "; define it under metrics"
            yield problem(("baseline", part, at), f"unknown alias '{alias}'{hint}", key=True)


def _expr_problems(name, expr, aliases, problem):
    from reportgen.expressions import ExpressionError, parse_expression

    try:
        used = parse_expression(expr)
    except ExpressionError as exc:
        yield problem(("metrics", name, "expr"), str(exc))
        return
    for other in sorted(used):
        if other == name:
            yield problem(("metrics", name, "expr"), "an expression cannot use its own alias")
        elif other not in aliases:
            hint = _did_you_mean(other, aliases) if aliases else ""
            yield problem(("metrics", name, "expr"), f"unknown alias '{other}'{hint}")


def _analysis_problems(data, aliases, problem):
    """Aliases named by where, stats, compare and project_table must exist."""
    from reportgen.expressions import ExpressionError, parse_condition

    def unknown(at: SpecPath, name: str) -> SpecProblem:
        hint = _did_you_mean(name, aliases) if aliases else "; define it under metrics"
        return problem(at, f"unknown alias '{name}'{hint}")

    where = data.get("outputs", {}).get("csv", {}).get("where")
    if where is not None:
        at = ("outputs", "csv", "where")
        try:
            used = parse_condition(where)
        except ExpressionError as exc:
            yield problem(at, str(exc))
        else:
            names = [*aliases, "step"]
            for name in sorted(used - set(names)):
                yield problem(at, f"unknown name '{name}'{_did_you_mean(name, names)}")
    for section in ("stats", "compare"):
        for i, name in enumerate(data.get(section, {}).get("metrics", [])):
            if name not in aliases:
                yield unknown((section, "metrics", i), name)
    table = data.get("project_table")
    if table is None:
        return
    chosen = table.get("metrics", aliases)
    for i, name in enumerate(chosen):
        if name not in aliases:
            yield unknown(
                ("project_table", "metrics", name if isinstance(chosen, dict) else i), name
            )
    names = list(chosen)

    def not_a_metric(at: SpecPath, name: str) -> SpecProblem:
        hint = _did_you_mean(name, names) if names else "; define it under metrics"
        return problem(at, f"'{name}' is not one of the table's metrics{hint}")

    primary = table.get("primary")
    if primary is not None and primary not in chosen:
        yield not_a_metric(("project_table", "primary"), primary)
    for role in ("quality", "cost"):
        alias = table.get("pareto", {}).get(role)
        if alias is not None and alias not in chosen:
            yield not_a_metric(("project_table", "pareto", role), alias)
    pivot = table.get("pivot", {})
    if pivot.get("metric") is not None and pivot["metric"] not in chosen:
        yield not_a_metric(("project_table", "pivot", "metric"), pivot["metric"])
    elif pivot and "metric" not in pivot and not names:
        yield problem(("project_table", "pivot"), "give a metric: the table has none", key=True)
    yield from _name_field_problems(table, problem)


def _name_field_problems(table, problem):
    """name_fields must compile and name its groups; name.<group> columns must be among them."""
    groups: list[str] = []
    pattern = table.get("name_fields")
    if pattern is not None:
        try:
            groups = list(re.compile(pattern).groupindex)
        except re.error as exc:
            yield problem(
                ("project_table", "name_fields"), f"not a valid regular expression: {exc}"
            )
            return
        if not groups:
            yield problem(
                ("project_table", "name_fields"),
                "the expression has no named group; name each field, as in (?P<lr>[0-9.e-]+)",
            )
            return
    used: list[tuple[SpecPath, str]] = [
        (("project_table", "group_by", i), c) for i, c in enumerate(table.get("group_by", []))
    ]
    used += [
        (("project_table", "pivot", k), table["pivot"][k])
        for k in ("rows", "columns")
        if k in table.get("pivot", {})
    ]
    for at, column in used:
        if not column.startswith("name."):
            continue
        field_name = column.removeprefix("name.")
        if pattern is None:
            yield problem(
                at, f"'{column}' needs project_table.name_fields with a group of that name"
            )
        elif field_name not in groups:
            yield problem(
                at, f"name_fields has no group '{field_name}'{_did_you_mean(field_name, groups)}"
            )


# --- building the Spec -------------------------------------------------------------------------


def parse_duration(text: str) -> timedelta:
    return timedelta(seconds=float(text[:-1]) * DURATION_UNITS[text[-1]])


def _time_bound(text: str | None) -> TimeBound | None:
    if text is None:
        return None
    if text[-1] in DURATION_UNITS and text[:-1].replace(".", "", 1).isdigit():
        return TimeBound(text, age=parse_duration(text))
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return TimeBound(text, moment=moment)


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _alias(name: str, rule: Any) -> MetricAlias:
    if isinstance(rule, str):
        return MetricAlias(name, keys=(rule,))
    if isinstance(rule, list):
        return MetricAlias(name, keys=tuple(rule))
    return MetricAlias(
        name,
        keys=_strings(rule.get("key")),
        expr=rule.get("expr"),
        goal=rule.get("goal"),
        x=rule.get("x"),
    )


def _plots(plots: dict[str, Any]) -> PlotsSpec:
    return PlotsSpec(
        metrics=tuple(plots["metrics"]) if "metrics" in plots else None,
        smoothing=float(plots.get("smoothing", 0.0)),
        log_y=tuple(plots.get("log_y", ())),
        points=plots.get("points", 600),
        mermaid=plots.get("mermaid", False),
    )


def _comparison(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {"eq": value}


def _executor(rule: str | dict[str, Any]) -> ExecutorSpec:
    if isinstance(rule, str):
        return ExecutorSpec.parse(rule)
    return ExecutorSpec(rule["type"], rule.get("address"))


def _runs_spec(runs: dict[str, Any]) -> RunsSpec:
    filters = runs.get("filters", {})
    tags = filters.get("tags", {})
    return RunsSpec(
        filters=RunFilters(
            states=tuple(filters.get("state", ())),
            tags_any=tuple(tags.get("any", ())),
            tags_all=tuple(tags.get("all", ())),
            tags_none=tuple(tags.get("none", ())),
            name=filters.get("name"),
            groups=_strings(filters.get("group")),
            job_types=_strings(filters.get("job_type")),
            config={k: _comparison(v) for k, v in filters.get("config", {}).items()},
            created_after=_time_bound(filters.get("created_after")),
            created_before=_time_bound(filters.get("created_before")),
            min_steps=filters.get("min_steps"),
        ),
        ids=tuple(runs.get("ids", ())),
        limit=runs.get("limit"),
        allow_partial=runs.get("allow_partial", False),
    )


def _baseline(data: dict[str, Any]) -> BaselineSpec | None:
    baseline = data.get("baseline")
    if baseline is None:
        return None
    candidate = data.get("candidate")
    return BaselineSpec(
        runs=_runs_spec(baseline),
        candidate=_runs_spec(candidate) if candidate is not None else None,
        metrics=tuple(baseline["metrics"]) if "metrics" in baseline else None,
        reduce=baseline.get("reduce", "last"),
        tolerances={
            alias: Tolerance(alias, rule.get("abs"), rule.get("rel"), rule.get("reduce"))
            for alias, rule in baseline.get("tolerances", {}).items()
        },
        missing=baseline.get("missing", "fail"),
    )


def _comment(outputs: dict[str, Any]) -> CommentSpec | None:
    comment = outputs.get("comment")
    if comment is None:
        return None
    return CommentSpec(
        forge=comment.get("forge"),
        marker=comment.get("marker"),
        limit=comment.get("limit"),
        charts=comment.get("charts", False),
        report_url=comment.get("report_url"),
        on_error=comment.get("on_error", "fail"),
    )


def _build_spec(data: dict[str, Any], path: Path, sha256: str) -> Spec:
    source = data["source"]
    outputs = data.get("outputs", {})
    csv = outputs.get("csv", {})
    health = data.get("health", {})
    sampling = data.get("sampling", {})
    return Spec(
        path=path,
        sha256=sha256,
        title=data.get("title", "Training report"),
        description=data.get("description"),
        source=SourceSpec(
            type=source["type"],
            path=source.get("path"),
            entity=source.get("entity"),
            project=source.get("project"),
            base_url=source.get("base_url"),
            stale_after=parse_duration(source.get("stale_after", "15m")),
            workers=source.get("workers", 6),
            projects=tuple(source.get("projects", ())),
            executor=_executor(source.get("executor", "local")),
        ),
        runs=_runs_spec(data.get("runs", {})),
        metrics={name: _alias(name, rule) for name, rule in data.get("metrics", {}).items()},
        select={
            name: Selection(
                name,
                rule["by"],
                rule.get("reduce", "mean"),
                rule.get("pick", "min"),
                rule.get("min_steps"),
            )
            for name, rule in data.get("select", {}).items()
        },
        sampling=Sampling(
            x=sampling.get("x", "_step"),
            start=sampling.get("start", 0),
            every=sampling.get("every", 1),
            stop=sampling.get("stop"),
            align=sampling.get("align", "asof"),
        ),
        health=HealthSpec(
            preset=health.get("preset", "auto"),
            checks={k: dict(v) for k, v in health.get("checks", {}).items()},
            disable=tuple(health.get("disable", ())),
        ),
        outputs=OutputsSpec(
            dir=Path(outputs.get("dir", f"outputs/{path.stem}")),
            formats=tuple(outputs.get("formats", ("markdown", "csv", "json"))),
            csv=CsvSpec(
                name=csv.get("name"),
                columns=tuple(csv["columns"]) if "columns" in csv else None,
                missing=csv.get("missing", "empty"),
                where=csv.get("where"),
            ),
            comment=_comment(outputs),
            templates=Path(outputs["templates"]) if "templates" in outputs else None,
            run_pages=outputs.get("run_pages", "notable"),
        ),
        gate=GateSpec(fail_on=data.get("gate", {}).get("fail_on", "never")),
        raw=data,
        baseline=_baseline(data),
        stats=_stats_spec(data.get("stats")),
        compare=_compare_spec(data.get("compare"), data.get("sampling", {})),
        project_table=_project_table_spec(data.get("project_table"), list(data.get("metrics", {}))),
        plots=_plots(data.get("plots", {})),
        cache=CacheSpec(dir=Path(data["cache"]["dir"]) if "dir" in data.get("cache", {}) else None),
    )


def _stats_spec(section: dict[str, Any] | None) -> StatsSpec | None:
    if section is None:
        return None
    metrics = section.get("metrics")
    return StatsSpec(
        metrics=tuple(metrics) if metrics is not None else None,
        stats=tuple(section.get("stats", DEFAULT_STATS)),
    )


def _compare_spec(section: dict[str, Any] | None, sampling: dict[str, Any]) -> CompareSpec | None:
    """The history comparison's grid is the spec's sampling with compare.sampling's changes."""
    if section is None:
        return None
    metrics = section.get("metrics")
    grid = {**sampling, **section.get("sampling", {})}
    return CompareSpec(
        runs=tuple(section["runs"]),
        metrics=tuple(metrics) if metrics is not None else None,
        reduce=section.get("reduce", "summary"),
        history=section.get("history", True),
        sampling=Sampling(
            x=grid.get("x", "_step"),
            start=grid.get("start", 0),
            every=grid.get("every", 1),
            stop=grid.get("stop"),
            align=grid.get("align", "asof"),
        ),
    )


def _project_table_spec(
    section: dict[str, Any] | None, aliases: list[str]
) -> ProjectTableSpec | None:
    if section is None:
        return None
    reduce = section.get("reduce", "last")
    chosen = section.get("metrics", aliases)
    metrics = dict(chosen) if isinstance(chosen, dict) else dict.fromkeys(chosen, reduce)
    primary = section.get("primary", next(iter(metrics), None))
    return ProjectTableSpec(
        name=section.get("name", "project"),
        metrics=metrics,
        reduce=reduce,
        summary=section.get("summary", True),
        primary=primary,
        top=section.get("top", 10),
        group_by=tuple(section.get("group_by", ())),
        aggregate=tuple(section.get("aggregate", ("count", "mean", "std", "min", "max"))),
        correlate=section.get("correlate", True),
        min_runs=section.get("min_runs", 5),
        name_fields=section.get("name_fields"),
        pareto=ParetoSpec(**section["pareto"]) if "pareto" in section else None,
        pivot=_pivot_spec(section.get("pivot"), primary),
    )


def _pivot_spec(section: dict[str, Any] | None, primary: str | None) -> PivotSpec | None:
    if section is None:
        return None
    metric = section.get("metric", primary)
    assert metric is not None  # checked: a pivot without a metric needs a primary
    return PivotSpec(
        rows=section["rows"],
        columns=section["columns"],
        metric=metric,
        aggregate=section.get("aggregate", "mean"),
    )


def parse_spec(text: str, path: Path | str = "<spec>") -> Spec:
    """Validate spec text and build the Spec; raise SpecError listing every problem."""
    path = Path(path)
    file = str(path)
    located = _compose(text, file)
    if not isinstance(located.data, dict):
        line, col = located.mark(())
        got = "an empty file" if located.data is None else _describe(located.data)
        raise SpecError(
            [SpecProblem(file, line, col, "", f"expected a mapping at the top, got {got}")]
        )
    problems = [
        SpecProblem(file, line, col, format_path(dup), "this key is given twice; keep one")
        for dup, (line, col) in located.duplicates
    ]
    problems += list(_value_problems(located, file))
    problems += list(_schema_problems(located, file))
    if not problems:
        problems += list(_rule_problems(located.data, located, file))
    if problems:
        raise SpecError(sorted(set(problems), key=lambda p: (p.line, p.column, p.message)))
    sha256 = hashlib.sha256(text.encode("utf-8")).hexdigest()
    return _build_spec(located.data, path, sha256)


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
