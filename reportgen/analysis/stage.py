"""The analysis sections of a spec — stats, compare, project_table — in one pipeline stage.

Each section is optional; `analyse` computes the ones the spec asks for from the chosen runs,
their histories and resolved metrics, and hands plain data to the report.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from reportgen.analysis.compare import Comparison, compare_runs
from reportgen.analysis.project import ProjectTable, RunCells, project_table
from reportgen.metrics import ResolvedMetric, stat_values
from reportgen.runs import History, Run
from reportgen.select import SelectionResult
from reportgen.spec import Spec, StatsSpec

if TYPE_CHECKING:
    from reportgen.digest import StepSpan


@dataclass(frozen=True)
class StatsRow:
    """One alias in one run: the key it resolved to (None: missing) and each statistic."""

    run_id: str
    run_name: str
    alias: str
    key: str | None
    values: dict[str, float | None]


@dataclass(frozen=True)
class StatsTable:
    stats: tuple[str, ...]
    metrics: tuple[str, ...]
    rows: tuple[StatsRow, ...]
    file: str = "stats.csv"

    def for_alias(self, alias: str) -> list[StatsRow]:
        return [row for row in self.rows if row.alias == alias]


@dataclass(frozen=True)
class Analysis:
    stats: StatsTable | None = None
    comparison: Comparison | None = None
    project: ProjectTable | None = None


def stats_table(
    spec: StatsSpec,
    aliases: Sequence[str],
    runs: Sequence[Run],
    metrics: Mapping[str, Mapping[str, ResolvedMetric]],
) -> StatsTable:
    """Per alias, then per run, the statistics of every logged point on its natural axis."""
    names = list(spec.metrics) if spec.metrics is not None else list(aliases)
    rows = []
    for alias in names:
        for run in runs:
            metric = metrics[run.id][alias]
            values = (
                stat_values(metric.points, spec.stats)
                if metric.found
                else dict.fromkeys(spec.stats, None)
            )
            rows.append(StatsRow(run.id, run.name, alias, metric.key, values))
    return StatsTable(tuple(spec.stats), tuple(names), tuple(rows))


def analyse(
    spec: Spec,
    runs: Sequence[Run],
    histories: Mapping[str, History],
    spans: Mapping[str, StepSpan],
    cells: Mapping[str, RunCells],
    metrics: Mapping[str, Mapping[str, ResolvedMetric]],
    selections: Sequence[SelectionResult],
) -> Analysis:
    """The sections the spec asks for. `histories` need only hold what `compare.history`
    resolves again, `spans` say how far each run got and `cells` are each run's project-table
    values (all three per run, from reportgen.digest)."""
    return Analysis(
        stats=stats_table(spec.stats, list(spec.metrics), runs, metrics) if spec.stats else None,
        comparison=(
            compare_runs(spec.compare, spec.metrics, runs, histories, metrics, selections)
            if spec.compare
            else None
        ),
        project=(
            project_table(spec.project_table, spec.metrics, runs, spans, cells)
            if spec.project_table
            else None
        ),
    )
