"""Comparing runs: which config values differ, how each metric changed, and their histories.

The first run of `compare.runs` is the reference. Every other run is compared with it, alias by
alias, in the alias's better direction (`goal`, else a guess from its name, see `goal_for`).
Everything here is plain data computed from runs; rendering happens elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from reportgen.metrics import (
    ResolvedMetric,
    align,
    goal_for,
    reduce,
    resolve_metrics,
    sample_grid,
)
from reportgen.runs import History, Run, flatten
from reportgen.select import SelectionResult
from reportgen.spec import CompareSpec, MetricAlias, Sampling


@dataclass(frozen=True)
class ComparedRun:
    """A run taking part in a comparison, and the reference (selection or id) that named it."""

    ref: str
    run_id: str
    run_name: str
    selection: str | None = None


@dataclass(frozen=True)
class ConfigDifference:
    """One flattened config key whose value is not the same in every compared run."""

    key: str
    values: tuple[Any, ...]
    present: tuple[bool, ...]


@dataclass(frozen=True)
class MetricChange:
    """One run's value of an alias against the reference run's value."""

    run_id: str
    key: str | None
    value: float | None
    delta: float | None
    percent: float | None
    mark: str


@dataclass(frozen=True)
class MetricComparison:
    """An alias across the compared runs: the reference value, then each other run's change."""

    alias: str
    goal: str
    goal_from: str
    reference_key: str | None
    reference: float | None
    changes: tuple[MetricChange, ...]


@dataclass(frozen=True)
class HistoryComparison:
    """The compared runs' aliases on one shared grid; a column is `<alias>.<run id>`."""

    file: str
    x: str
    sampling: Sampling
    columns: tuple[str, ...]
    steps: np.ndarray
    values: dict[str, np.ndarray]
    present: dict[str, np.ndarray]
    notes: tuple[str, ...] = ()

    @property
    def rows(self) -> int:
        return len(self.steps)


@dataclass(frozen=True)
class Comparison:
    runs: tuple[ComparedRun, ...]
    reduce: str
    config_keys: int
    config: tuple[ConfigDifference, ...]
    metrics: tuple[MetricComparison, ...]
    history: HistoryComparison | None
    notes: tuple[str, ...] = ()
    config_file: str = "compare_config.csv"
    metrics_file: str = "compare_metrics.csv"

    @property
    def complete(self) -> bool:
        """Whether at least two runs could be compared."""
        return len(self.runs) >= 2


# --- which runs ---------------------------------------------------------------------------------


def resolve_runs(
    refs: Sequence[str], runs: Sequence[Run], selections: Sequence[SelectionResult]
) -> tuple[list[ComparedRun], list[str]]:
    """Selection names first, then run ids among the chosen runs; notes for the rest."""
    by_id = {run.id: run for run in runs}
    picked = {s.selection.name: s.run_id for s in selections}
    chosen: list[ComparedRun] = []
    notes: list[str] = []
    for i, ref in enumerate(refs):
        selection = ref if ref in picked else None
        run_id = picked[ref] if selection else ref
        where = f"compare.runs[{i}]"
        if selection and run_id is None:
            notes.append(f"{where}: selection '{ref}' picked no run, so it is left out")
            continue
        if run_id not in by_id:
            notes.append(
                f"{where}: '{ref}' is neither a selection nor the id of a chosen run, "
                "so it is left out"
            )
            continue
        assert run_id is not None
        if any(c.run_id == run_id for c in chosen):
            first = next(c for c in chosen if c.run_id == run_id)
            notes.append(
                f"{where}: '{ref}' is run {run_id} again (as '{first.ref}'); compared once"
            )
            continue
        chosen.append(ComparedRun(ref, run_id, by_id[run_id].name, selection))
    return chosen, notes


# --- config --------------------------------------------------------------------------------------


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def same_value(a: Any, b: Any) -> bool:
    """Config equality: numbers by value (1 equals 1.0, NaN equals NaN), booleans not numbers."""
    x, y = _number(a), _number(b)
    if x is not None and y is not None:
        return x == y or (math.isnan(x) and math.isnan(y))
    if isinstance(a, bool) != isinstance(b, bool):
        return False
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(same_value(p, q) for p, q in zip(a, b, strict=True))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)
    return type(a) is type(b) and bool(a == b)


def diff_configs(configs: Sequence[Mapping[str, Any]]) -> tuple[list[ConfigDifference], int]:
    """Flattened keys (dots for nesting) whose value differs or is missing somewhere.

    Returns the differences, sorted by key, and how many keys were compared in all.
    """
    flats = [flatten(config) for config in configs]
    keys = sorted(set().union(*flats)) if flats else []
    differences = []
    for key in keys:
        present = tuple(key in flat for flat in flats)
        values = tuple(flat.get(key) for flat in flats)
        if all(present) and all(same_value(values[0], v) for v in values[1:]):
            continue
        differences.append(ConfigDifference(key, values, present))
    return differences, len(keys)


# --- metrics -------------------------------------------------------------------------------------


def summary_number(summary: Mapping[str, Any], key: str) -> float | None:
    """A numeric summary value for a key (nested summaries answer dotted keys), else None."""
    value = summary.get(key, flatten(summary).get(key) if "." in key else None)
    return _number(value)


def run_value(run: Run, metric: ResolvedMetric, how: str) -> float | None:
    """One number for an alias in a run, as `compare.reduce` says.

    `summary` is the run's own summary value of the key the alias resolved to (what W&B shows
    in its runs table, NaN included), and the last finite logged value where the summary has
    none (a derived alias, or a run that was killed before writing it).
    """
    if metric.key is None:
        return None
    if how == "summary":
        value = summary_number(run.summary, metric.key) if metric.expr is None else None
        if value is not None:
            return value
        how = "last"
    return reduce(metric.points, how)


def change(
    value: float | None, reference: float | None, goal: str
) -> tuple[float | None, float | None, str]:
    """Delta and percent change from the reference, and whether that is better or worse.

    A metric with no known direction (goal "none": gradient norm, KL, learning rate, an
    unknown name) is marked `no direction`, never better or worse.

    A missing or non-finite value on either side gives no delta and the mark `n/a`; the
    percent is relative to the reference's magnitude and absent when the reference is 0.
    """
    if (
        value is None
        or reference is None
        or not (math.isfinite(value) and math.isfinite(reference))
    ):
        return None, None, "n/a"
    delta = value - reference
    percent = 100.0 * delta / abs(reference) if reference != 0 else None
    if delta == 0:
        return delta, percent, "same"
    if goal not in ("minimize", "maximize"):
        return delta, percent, "no direction"
    better = (delta < 0) == (goal == "minimize")
    return delta, percent, "better" if better else "worse"


def compare_metrics(
    compared: Sequence[ComparedRun],
    runs: Mapping[str, Run],
    metrics: Mapping[str, Mapping[str, ResolvedMetric]],
    aliases: Mapping[str, MetricAlias],
    names: Sequence[str],
    how: str,
) -> list[MetricComparison]:
    reference, others = compared[0], compared[1:]
    result = []
    for alias in names:
        spec_alias = aliases.get(alias)
        goal = goal_for(spec_alias, alias)
        goal_from = "spec" if spec_alias is not None and spec_alias.goal else "name"
        ref_metric = metrics[reference.run_id][alias]
        ref_value = run_value(runs[reference.run_id], ref_metric, how)
        changes = []
        for other in others:
            metric = metrics[other.run_id][alias]
            value = run_value(runs[other.run_id], metric, how)
            delta, percent, mark = change(value, ref_value, goal)
            changes.append(MetricChange(other.run_id, metric.key, value, delta, percent, mark))
        result.append(
            MetricComparison(alias, goal, goal_from, ref_metric.key, ref_value, tuple(changes))
        )
    return result


# --- history -------------------------------------------------------------------------------------


def compare_histories(
    compared: Sequence[ComparedRun],
    runs: Mapping[str, Run],
    histories: Mapping[str, History],
    aliases: Mapping[str, MetricAlias],
    names: Sequence[str],
    sampling: Sampling,
) -> HistoryComparison:
    """Every compared run's aliases on one grid spanning all of them (first and last kept).

    A run that ended earlier than the others has empty cells after its own last logged step,
    whatever the alignment: carrying its last value forward would invent training it never did.
    """
    resolved = {
        c.run_id: resolve_metrics(runs[c.run_id], histories[c.run_id], aliases, x=sampling.x)
        for c in compared
    }
    ends = {}
    for run_id, metrics in resolved.items():
        logged = [m.points.xs.max() for m in metrics.values() if m.found and len(m.points)]
        ends[run_id] = max(logged) if logged else -np.inf
    curves = {
        (alias, c.run_id): resolved[c.run_id][alias].points for alias in names for c in compared
    }
    found = [points.xs for points in curves.values() if len(points)]
    xs = np.unique(np.concatenate(found)) if found else np.array([], dtype=np.int64)
    grid, note = sample_grid(xs, sampling)
    how = "exact" if note else sampling.align
    values: dict[str, np.ndarray] = {}
    present: dict[str, np.ndarray] = {}
    for (alias, run_id), points in curves.items():
        column = f"{alias}.{run_id}"
        values[column], present[column] = align(points, grid, how)
        present[column] &= grid <= ends[run_id]
    return HistoryComparison(
        file="compare_history.csv",
        x=sampling.x,
        sampling=sampling,
        columns=tuple(values),
        steps=grid,
        values=values,
        present=present,
        notes=(note,) if note else (),
    )


# --- the section ---------------------------------------------------------------------------------


def compare_runs(
    spec: CompareSpec,
    aliases: Mapping[str, MetricAlias],
    runs: Sequence[Run],
    histories: Mapping[str, History],
    metrics: Mapping[str, Mapping[str, ResolvedMetric]],
    selections: Sequence[SelectionResult],
) -> Comparison:
    """The `compare:` section; with fewer than two resolvable runs, only notes saying why."""
    compared, notes = resolve_runs(spec.runs, runs, selections)
    names = list(spec.metrics) if spec.metrics is not None else list(aliases)
    if len(compared) < 2:
        notes.append(
            f"the comparison needs at least two runs; {len(compared)} of "
            f"{len(spec.runs)} could be found"
        )
        return Comparison(tuple(compared), spec.reduce, 0, (), (), None, tuple(notes))
    by_id = {run.id: run for run in runs}
    config, keys = diff_configs([by_id[c.run_id].config for c in compared])
    deltas = compare_metrics(compared, by_id, metrics, aliases, names, spec.reduce)
    history = (
        compare_histories(compared, by_id, histories, aliases, names, spec.sampling)
        if spec.history
        else None
    )
    return Comparison(
        runs=tuple(compared),
        reduce=spec.reduce,
        config_keys=keys,
        config=tuple(config),
        metrics=tuple(deltas),
        history=history,
        notes=tuple(notes),
    )
