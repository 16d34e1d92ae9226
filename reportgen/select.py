"""Which runs a report covers (filters, ids, newest N) and which run each selection picks."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from reportgen.metrics import ResolvedMetric, reduce
from reportgen.runs import Run, flatten
from reportgen.spec import RunFilters, RunsSpec, Selection

_MISSING = object()


def filter_runs(runs: Sequence[Run], spec: RunsSpec, now: datetime | None = None) -> list[Run]:
    """The runs a report covers, newest first."""
    now = now or datetime.now(timezone.utc)
    chosen = [run for run in runs if may_be_chosen(run, spec, now)]
    chosen.sort(key=_newest_first)
    if spec.limit is not None:
        chosen = chosen[: spec.limit]
    return chosen


def may_be_chosen(run: Run, spec: RunsSpec, now: datetime) -> bool:
    """Whether one run passes the filters and ids: what can be decided without the other
    runs (only `limit` needs them all), so a worker that read the run can decide it."""
    if spec.ids and not named_by(run, set(spec.ids)):
        return False
    return matches(run, spec.filters, now)


def named_by(run: Run, wanted: set[str]) -> bool:
    """Whether a run is among ids given as `id` or `project/id` (a run id is unique only within
    its project; a source of several projects shows clashing ids as `project/id`)."""
    plain = run.id.rpartition("/")[2]
    return run.id in wanted or plain in wanted or f"{run.project}/{plain}" in wanted


def _newest_first(run: Run) -> tuple[float, str]:
    created = run.created_at.timestamp() if run.created_at else float("-inf")
    return (-created, run.id)


def matches(run: Run, filters: RunFilters, now: datetime) -> bool:
    """Whether one run passes every filter."""
    if filters.states and run.state not in filters.states:
        return False
    tags = set(run.tags)
    if filters.tags_any and not tags.intersection(filters.tags_any):
        return False
    if filters.tags_all and not tags.issuperset(filters.tags_all):
        return False
    if filters.tags_none and tags.intersection(filters.tags_none):
        return False
    if filters.name is not None:
        from reportgen.namepattern import name_matches  # the regex engine: only for a name filter

        if not name_matches(filters.name, run.name):
            return False
    if filters.groups and run.group not in filters.groups:
        return False
    if filters.job_types and run.job_type not in filters.job_types:
        return False
    if filters.created_after or filters.created_before:
        if run.created_at is None:
            return False
        if filters.created_after and run.created_at < filters.created_after.resolve(now):
            return False
        if filters.created_before and run.created_at > filters.created_before.resolve(now):
            return False
    steps = run.logged_steps
    if filters.min_steps is not None and steps is not None and steps < filters.min_steps:
        return False
    if filters.config:
        config = config_lookup(run.config)
        for key, comparison in filters.config.items():
            if not compare(config.get(key, _MISSING), comparison):
                return False
    return True


def config_lookup(config: Mapping[str, Any]) -> dict[str, Any]:
    """Dotted and literal keys alike: {"actor": {"lr": 1}} answers both "actor" and "actor.lr"."""
    lookup = dict(config)
    lookup.update(flatten(config))
    return lookup


def compare(value: Any, comparison: Mapping[str, Any]) -> bool:
    """Apply eq/ne/gt/gte/lt/lte/in/nin; a missing key fails every test but ne and nin."""
    for op, expected in comparison.items():
        if value is _MISSING:
            if op not in ("ne", "nin"):
                return False
            continue
        if op == "eq" and not _equal(value, expected):
            return False
        if op == "ne" and _equal(value, expected):
            return False
        if op == "in" and not any(_equal(value, e) for e in expected):
            return False
        if op == "nin" and any(_equal(value, e) for e in expected):
            return False
        if op in ("gt", "gte", "lt", "lte"):
            number = _as_number(value)
            if number is None or not _ordered(number, op, float(expected)):
                return False
    return True


def _equal(value: Any, expected: Any) -> bool:
    number, other = _as_number(value), _as_number(expected)
    if number is not None and other is not None and not isinstance(expected, str):
        return math.isclose(number, other, rel_tol=1e-12, abs_tol=0.0)
    return bool(value == expected)


def _as_number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _ordered(value: float, op: str, bound: float) -> bool:
    return {
        "gt": value > bound,
        "gte": value >= bound,
        "lt": value < bound,
        "lte": value <= bound,
    }[op]


@dataclass(frozen=True)
class Ranked:
    run_id: str
    value: float | None


@dataclass(frozen=True)
class SelectionResult:
    """The run a selection picked (None when no run has the metric) and the full ranking.

    `too_short` are the runs `min_steps` kept out of the ranking.
    """

    selection: Selection
    run_id: str | None
    ranking: tuple[Ranked, ...]
    too_short: tuple[str, ...] = ()


def choose(
    selection: Selection,
    metrics: Mapping[str, Mapping[str, ResolvedMetric]],
    logged_steps: Mapping[str, int] | None = None,
) -> SelectionResult:
    """Rank runs by the reduced alias; best first, runs without the metric last.

    With `selection.min_steps`, runs that logged fewer steps (`logged_steps[run_id]`) are not
    ranked: a run stopped after a few steps would otherwise win on its few early points.
    """
    too_short: list[str] = []
    ranked = []
    for run_id, resolved in metrics.items():
        if _too_short(run_id, selection.min_steps, logged_steps):
            too_short.append(run_id)
            continue
        metric = resolved.get(selection.by)
        value = reduce(metric.points, selection.reduce) if metric and metric.found else None
        ranked.append(Ranked(run_id, value))
    sign = 1.0 if selection.pick == "min" else -1.0
    ranked.sort(key=lambda r: (r.value is None, sign * (r.value or 0.0), r.run_id))
    best = ranked[0].run_id if ranked and ranked[0].value is not None else None
    return SelectionResult(selection, best, tuple(ranked), tuple(too_short))


def _too_short(run_id: str, min_steps: int | None, logged_steps: Mapping[str, int] | None) -> bool:
    if min_steps is None or logged_steps is None:
        return False
    return logged_steps.get(run_id, 0) < min_steps
