"""`reportgen runs` and `reportgen keys`: what a source holds, before (or while) writing a spec.

Both read the runs a spec would read — its source and `runs:` filters — or a source named on
the command line, optionally narrowed by the same kinds of filters. They return plain rows;
the CLI prints them as a table or as JSON.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np

from reportgen.errors import UsageError
from reportgen.namepattern import pattern_problem
from reportgen.runs import Run, flatten
from reportgen.select import filter_runs
from reportgen.sources import Progress, Source
from reportgen.spec import RunFilters, RunsSpec, SourceSpec

WANDB_SCHEME = "wandb://"


def source_from_argument(text: str) -> SourceSpec:
    """`--source`: a local folder of W&B runs, or `wandb://ENTITY/PROJECT` on a W&B server.

    PROJECT may be a glob (`proj-*`) or several names joined by commas (`a,b`).
    """
    if text.startswith(WANDB_SCHEME):
        parts = text.removeprefix(WANDB_SCHEME).strip("/").split("/")
        if len(parts) != 2 or not all(parts):
            raise UsageError(f"--source '{text}': expected wandb://ENTITY/PROJECT")
        names = [name.strip() for name in parts[1].split(",")]
        if not all(names):
            raise UsageError(f"--source '{text}': an empty project name between commas")
        if len(names) > 1:
            return SourceSpec(type="wandb", entity=parts[0], projects=tuple(names))
        return SourceSpec(type="wandb", entity=parts[0], project=names[0])
    if "://" in text:
        raise UsageError(
            f"--source '{text}': expected a folder of W&B runs or wandb://ENTITY/PROJECT"
        )
    return SourceSpec(type="wandb-offline", path=text)


def runs_spec_from_options(
    states: Sequence[str] = (),
    tags: Sequence[str] = (),
    name: str | None = None,
    groups: Sequence[str] = (),
    limit: int | None = None,
) -> RunsSpec:
    """Command-line filters as a `runs:` section (tags: any of them)."""
    if name is not None:
        problem = pattern_problem(name)
        if problem is not None:
            raise UsageError(f"--name '{name}': {problem}")
    filters = RunFilters(
        states=tuple(states), tags_any=tuple(tags), name=name, groups=tuple(groups)
    )
    return RunsSpec(filters=filters, limit=limit)


def chosen_runs(
    source: Source,
    specs: Sequence[RunsSpec],
    now: datetime | None = None,
    progress: Progress | None = None,
) -> list[Run]:
    """The source's runs that pass every `runs:` section given, newest first.

    The first section may let the source filter at the origin (a server); each section is
    then applied in turn, so command-line filters narrow a spec's.
    """
    specs = list(specs) or [RunsSpec()]
    runs = source.list_runs(specs[0], progress)
    for spec in specs:
        runs = filter_runs(runs, spec, now)
    return runs


def pick_run(runs: Sequence[Run], wanted: str) -> Run:
    """`--run`: a run id, else a unique display name, among the chosen runs."""
    for run in runs:
        if run.id == wanted:
            return run
    named = [run for run in runs if run.name == wanted]
    if len(named) == 1:
        return named[0]
    if len(named) > 1:
        ids = ", ".join(run.id for run in named)
        raise UsageError(f"--run '{wanted}': {len(named)} runs have that name ({ids}); give an id")
    close = difflib.get_close_matches(wanted, [r.id for r in runs] + [r.name for r in runs], 1)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    raise UsageError(f"--run '{wanted}': no such run among the {len(runs)} chosen{hint}")


# --- runs ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunRow:
    id: str
    name: str
    state: str
    rows: int
    first_step: int | None
    last_step: int | None
    created_at: datetime | None
    tags: tuple[str, ...]
    group: str | None
    job_type: str | None
    entity: str | None = None
    project: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "entity": self.entity,
            "project": self.project,
            "state": self.state,
            "steps": {"first": self.first_step, "last": self.last_step, "rows": self.rows},
            "created_at": self.created_at,
            "tags": list(self.tags),
            "group": self.group,
            "job_type": self.job_type,
        }


def run_rows(source: Source, runs: Sequence[Run]) -> list[RunRow]:
    rows = []
    for run in runs:
        history = source.history(run)
        steps = history.steps()
        rows.append(
            RunRow(
                id=run.id,
                name=run.name,
                state=run.state,
                rows=history.row_count(),
                first_step=int(steps[0]) if len(steps) else None,
                last_step=int(steps[-1]) if len(steps) else None,
                created_at=run.created_at,
                tags=run.tags,
                group=run.group,
                job_type=run.job_type,
                entity=run.entity,
                project=run.project,
            )
        )
    return rows


# --- keys ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class KeyRow:
    """One metric key over the chosen runs.

    `type` is int when every logged value is a whole number (booleans are logged as 0 and 1),
    float otherwise; a key found only in run summaries (never logged as history) has the type
    of its summary value (`histogram`, `table-file`… for W&B media) and a count of 0.
    """

    key: str
    type: str
    runs: int
    count: int
    first_step: int | None
    last_step: int | None
    min: float | None
    max: float | None
    non_finite: int
    x: str

    def as_json(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "type": self.type,
            "runs": self.runs,
            "count": self.count,
            "first_step": self.first_step,
            "last_step": self.last_step,
            "min": self.min,
            "max": self.max,
            "non_finite": self.non_finite,
            "x": self.x,
        }


def _value_type(value: Any) -> str:
    if isinstance(value, dict) and isinstance(value.get("_type"), str):
        return str(value["_type"])
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if value is None:
        return "null"
    return "list" if isinstance(value, list) else "dict"


@dataclass
class _KeyTotals:
    runs: int = 0
    count: int = 0
    first: int | None = None
    last: int | None = None
    low: float = math.inf
    high: float = -math.inf
    non_finite: int = 0
    integral: bool = True
    x: set[str] | None = None


def key_rows(source: Source, runs: Sequence[Run]) -> list[KeyRow]:
    """Every history key of the runs (then summary-only keys), sorted by name."""
    totals: dict[str, _KeyTotals] = {}
    for run in runs:
        history = source.history(run)
        keys = history.keys()
        for key in keys:
            # Every logged value counts, several at one step included.
            column = history.column(key)
            assert column is not None
            values = column.values
            steps = np.sort(column.steps)
            finite = values[np.isfinite(values)]
            t = totals.setdefault(key, _KeyTotals(x=set()))
            t.runs += 1
            t.count += len(values)
            t.non_finite += len(values) - len(finite)
            if len(steps):
                t.first = int(steps[0]) if t.first is None else min(t.first, int(steps[0]))
                t.last = int(steps[-1]) if t.last is None else max(t.last, int(steps[-1]))
            if len(finite):
                t.low = min(t.low, float(finite.min()))
                t.high = max(t.high, float(finite.max()))
                t.integral = t.integral and bool(np.all(np.mod(finite, 1) == 0))
            assert t.x is not None
            t.x.add(run.x_key_for(key))
    rows = [
        KeyRow(
            key=key,
            type="int" if t.integral and t.count > t.non_finite else "float",
            runs=t.runs,
            count=t.count,
            first_step=t.first,
            last_step=t.last,
            min=t.low if math.isfinite(t.low) else None,
            max=t.high if math.isfinite(t.high) else None,
            non_finite=t.non_finite,
            x=", ".join(sorted(t.x or ())),
        )
        for key, t in sorted(totals.items())
    ]
    rows += _summary_only(runs, set(totals))
    return rows


def _summary_only(runs: Sequence[Run], logged: set[str]) -> list[KeyRow]:
    """Keys a run set in its summary but never logged as history (media, tables, finals)."""
    seen: dict[str, tuple[set[str], int]] = {}
    for run in runs:
        summary = dict(run.summary)
        summary.update({k: v for k, v in flatten(run.summary).items() if k not in run.summary})
        for key, value in summary.items():
            if key.startswith("_") or key in logged:
                continue
            if isinstance(value, dict) and "_type" not in value:
                continue  # a nested mapping: its leaves are listed under dotted keys
            types, count = seen.get(key, (set(), 0))
            types.add(_value_type(value))
            seen[key] = (types, count + 1)
    return [
        KeyRow(key, "/".join(sorted(types)), count, 0, None, None, None, None, 0, "")
        for key, (types, count) in sorted(seen.items())
    ]
