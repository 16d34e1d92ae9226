"""The per-run half of the pipeline: one run's history in, the little the report needs out.

A build is a map over runs followed by a small reduce. The map — resolve the aliases, sample
them on the spec's grid, run the health checks, describe each metric — looks at one run at a
time, so it can run wherever the run's files are (a worker process, a Ray task on a cluster
node). What it returns, a `RunDigest`, is all the reduce (selections, baseline, analysis,
assembling the Report) needs: never the whole history, unless the spec's `compare.history` asks
for curves on an axis, and then only the keys the aliases can use.

Both executors call `digest_run`, so a report is the same whichever of them built it.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

from reportgen.analysis.project import RunCells, run_cells
from reportgen.metrics import ResolvedMetric, SampledTable, keep_rows, resolve_metrics, sample
from reportgen.report import RunReport, run_report
from reportgen.runs import STEP, History, Run
from reportgen.spec import Spec


@dataclass(frozen=True)
class StepSpan:
    """How far a run got: distinct steps logged, and the last one (None: nothing logged)."""

    steps: int
    last_step: int | None


@dataclass(frozen=True)
class RunDigest:
    """One chosen run, reduced to what the rest of the pipeline reads.

    `metrics` are the aliases on their own axes (selections, stats and the baseline reduce
    them); `table` is the sampled CSV table; `report` carries the findings, verdict,
    statistics and thinned curves; `project` the run's project-table values. `history` holds
    only the keys a comparison of histories resolves again (empty when the spec compares no
    histories).
    """

    run: Run
    metrics: dict[str, ResolvedMetric]
    table: SampledTable
    report: RunReport
    span: StepSpan
    history: History
    project: RunCells | None = None


def digest_run(spec: Spec, run: Run, history: History, now: datetime) -> RunDigest:
    """Everything about one run that does not depend on any other run. The run comes back
    with `logged_steps` set (`runs.filters.min_steps` is decided on it)."""
    from reportgen.health.stage import check_run

    run = replace(run, logged_steps=len(history.steps()))
    metrics = resolve_metrics(run, history, spec.metrics)
    findings, health = check_run(spec.health, spec.metrics, run, history, metrics, now)
    steps = history.steps()
    report = run_report(spec, run, history, metrics, findings, health)
    if "json" in spec.outputs.formats:
        from reportgen.render.json import with_encoded_parts

        report = with_encoded_parts(report)
    return RunDigest(
        run=run,
        metrics=metrics,
        table=_sampled_table(spec, run, history, metrics),
        report=report,
        span=StepSpan(len(steps), int(steps[-1]) if len(steps) else None),
        history=_kept_history(spec, run, history),
        project=run_cells(spec.project_table, run, metrics) if spec.project_table else None,
    )


def _sampled_table(
    spec: Spec, run: Run, history: History, metrics: dict[str, ResolvedMetric]
) -> SampledTable:
    """The run's aliases on the spec's one sampling axis.

    Where every alias's natural axis already is that axis (the common case), the metrics
    resolved for stats are the same and are reused rather than resolved again.
    """
    on_axis = metrics
    if any(metric.x_key != spec.sampling.x for metric in on_axis.values()):
        on_axis = resolve_metrics(run, history, spec.metrics, x=spec.sampling.x)
    table = sample(on_axis, spec.sampling)
    if spec.outputs.csv.where:
        table = keep_rows(table, spec.outputs.csv.where)
    if "csv" in spec.outputs.formats:
        from reportgen.render.csv import render_step_table
        from reportgen.report import csv_columns

        columns = csv_columns(spec, metrics)
        text = render_step_table(table.steps, columns, table.values, table.present)
        table = replace(table, csv=(tuple(columns), text))
    return table


def _kept_history(spec: Spec, run: Run, history: History) -> History:
    """The keys `compare.history` resolves again on its own axis; nothing when it is off."""
    if spec.compare is None or not spec.compare.history:
        return History()
    keys = {STEP, spec.sampling.x, spec.compare.sampling.x, *run.step_metrics.values()}
    for alias in spec.metrics.values():
        keys.update(alias.keys)
    return history.subset(keys)
