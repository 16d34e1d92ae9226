"""What is wrong with a spec, each problem located: schema errors explained in words,
cross-field rules (an alias a selection uses must exist, a regex must compile), values the
schema cannot judge (dates, durations, folders) and health check parameters."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any

import jsonschema

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
from reportgen.errors import SpecProblem
from reportgen.spec.located import MAX_DURATION, MAX_INTEGER, Located
from reportgen.spec.model import (
    CSV_NAME_FIELDS,
    DURATION_UNITS,
    SpecPath,
    parse_duration,
    time_bound,
)


@cache
def load_schema() -> dict[str, Any]:
    """The spec's JSON Schema, shipped inside the package."""
    text = resources.files("reportgen").joinpath("spec.schema.json").read_text(encoding="utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


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
    import difflib  # only a spec with a mistake needs it

    found = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return found[0] if found else None


def _did_you_mean(word: str, choices: list[str]) -> str:
    best = _closest(word, choices)
    return f"; did you mean '{best}'?" if best else f"; valid: {', '.join(sorted(choices))}"


def describe(value: Any) -> str:
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


def schema_problems(located: Located, file: str) -> Iterator[SpecProblem]:
    validator = _Validator(load_schema())
    errors = sorted(validator.iter_errors(located.data), key=lambda e: list(e.absolute_path))
    for error in errors:
        yield from _explain(error, located, file)


def _explain(
    error: jsonschema.ValidationError, located: Located, file: str
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
        yield problem(path, f"expected {expected}, got {describe(error.instance)}")
    elif error.validator == "enum":
        choices = [str(c) for c in error.validator_value]  # type: ignore[union-attr]
        hint = _closest(str(error.instance), choices)
        tail = f"; did you mean '{hint}'?" if hint else ""
        yield problem(
            path, f"expected one of {', '.join(choices)}; got {describe(error.instance)}{tail}"
        )
    elif error.validator == "const":
        yield problem(
            path, f"expected {json.dumps(error.validator_value)}, got {describe(error.instance)}"
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
        yield problem(path, f"{describe(error.instance)} is not valid here: expected {what}")
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
    yield problem(tuple(error.absolute_path), f"expected {expected}, got {describe(instance)}")


def located_schema(ref: str) -> dict[str, Any]:
    """Follow a local `#/$defs/...` reference inside the spec schema."""
    node: Any = load_schema()
    for part in ref.removeprefix("#/").split("/"):
        node = node[part]
    return node


def _instance_kind_matches(error: jsonschema.ValidationError, instance: Any) -> bool:
    return error.validator != "type" or not list(error.relative_path)


# --- cross-field rules -------------------------------------------------------------------------


def rule_problems(data: dict[str, Any], located: Located, file: str) -> Iterator[SpecProblem]:
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
    for section in ("runs", "baseline", "candidate"):
        filters = (data.get(section) or {}).get("filters", {})
        pattern = filters.get("name")
        if pattern is not None:
            # The `regex` engine costs a tenth of `validate`'s start-up; most specs name no pattern.
            from reportgen.namepattern import pattern_problem

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
        time_bound(text)
    except (ValueError, OverflowError) as exc:
        return f"'{text}' is not a real date or time ({exc}); expected e.g. 2026-11-01 or 7d"
    return None


def value_problems(located: Located, file: str) -> Iterator[SpecProblem]:
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
