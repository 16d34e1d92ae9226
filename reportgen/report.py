"""The Report: everything a renderer needs, as plain data. No I/O, no formatting.

`assemble` is the last pure stage of the pipeline; renderers (Markdown, JSON, CSV, PDF, PR
comments) read a Report and know nothing about W&B.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np

from reportgen.analysis.baseline import BaselineComparison
from reportgen.analysis.stage import Analysis
from reportgen.check_catalogue import SEVERITIES
from reportgen.curves import smooth, thin
from reportgen.metrics import MetricStats, ResolvedMetric, SampledTable, describe, goal_for
from reportgen.runs import History, Run, overlap_note
from reportgen.select import SelectionResult
from reportgen.shortfalls import Shortfall
from reportgen.spec import Spec

FAILED_STATES = ("failed", "crashed", "killed")  # runs whose console tail the reports show
CONSOLE_LINES = 5  # the end of a failed run's console output: enough for the exception
# `unjudged`: no finding, but too little evidence to call the run good (no check ran, no
# logged step, too few points, no metric the checks know); RunHealth.unjudged says why.
VERDICTS = ("good", "bad", "ugly", "unjudged")


@dataclass(frozen=True)
class Finding:
    """One thing a health check noticed in one run."""

    check: str
    severity: str
    message: str
    metric: str | None = None
    key: str | None = None
    step: float | None = None
    value: float | None = None
    likely_cause: str | None = None
    next_step: str | None = None


@dataclass(frozen=True)
class RunHealth:
    """What the health stage says about one run besides its findings."""

    preset: str | None = None
    checks: tuple[str, ...] = ()
    healthy: tuple[str, ...] = ()
    # Why the checks could not judge the run (None: they could). The default, for a run the
    # health stage never saw, is "not checked".
    unjudged: str | None = "no health check ran"


@dataclass(frozen=True)
class CauseGroup:
    """Findings of one run that share a likely cause (shown once, under them)."""

    cause: str | None
    findings: tuple[Finding, ...]


@dataclass(frozen=True)
class RunProblems:
    run: RunReport
    groups: tuple[CauseGroup, ...]


@dataclass(frozen=True)
class NextExperiment:
    """A concrete follow-up, derived from findings that share a check and a likely cause."""

    action: str
    reason: str
    checks: tuple[str, ...]
    runs: tuple[str, ...]


def verdict(findings: Sequence[Finding], unjudged: str | None = None) -> str:
    """ugly if any finding is ugly, bad if any is bad; without findings, good only when the
    checks had enough to judge (`unjudged` is None), else unjudged.

    "good" is a claim that the run was checked and looks healthy, so a run no check could
    look at is never good.
    """
    severities = {f.severity for f in findings}
    if "ugly" in severities:
        return "ugly"
    if "bad" in severities:
        return "bad"
    return "unjudged" if unjudged else "good"


@dataclass(frozen=True)
class MetricReport:
    alias: str
    key: str | None
    x_key: str
    goal: str
    stats: MetricStats | None
    missing_note: str | None = None


@dataclass(frozen=True)
class Curve:
    """One alias of one run on its own x axis, thinned for drawing (spikes and gaps kept).

    `values` are as logged (NaN and inf included); `smoothed` is the moving average computed
    over every logged point before thinning, or None when the spec asks for no smoothing.
    """

    alias: str
    x_key: str
    steps: np.ndarray
    values: np.ndarray
    smoothed: np.ndarray | None
    points: int


@dataclass(frozen=True)
class PlotSettings:
    """What the charts show: `metrics` in order, smoothing weight, aliases on a log scale."""

    metrics: tuple[str, ...] = ()
    smoothing: float = 0.0
    log_y: tuple[str, ...] = ()
    mermaid: bool = False


@dataclass(frozen=True)
class RunReport:
    id: str
    name: str
    state: str
    exit_code: int | None
    url: str | None
    tags: tuple[str, ...]
    group: str | None
    job_type: str | None
    created_at: datetime | None
    config: dict[str, Any]
    summary: dict[str, Any]
    first_step: int | None
    last_step: int | None
    rows: int
    metrics: tuple[MetricReport, ...]
    verdict: str = "good"
    findings: tuple[Finding, ...] = ()
    notes: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()
    console_tail: tuple[str, ...] = ()
    curves: tuple[Curve, ...] = ()
    health: RunHealth = field(default_factory=RunHealth)
    logged_name: str | None = None  # W&B's name when `name` says "name (id)" to tell runs apart
    entity: str | None = None
    project: str | None = None
    # report.json's text of the run's config and summary (the bulk of the file), encoded by the
    # process that digested the run (reportgen.render.json.with_encoded_parts): {} when not.
    encoded: dict[str, Any] = field(default_factory=dict)

    def metric(self, alias: str) -> MetricReport | None:
        return next((m for m in self.metrics if m.alias == alias), None)

    def curve(self, alias: str) -> Curve | None:
        return next((c for c in self.curves if c.alias == alias), None)


@dataclass(frozen=True)
class RankedRun:
    run_id: str
    run_name: str
    value: float | None


@dataclass(frozen=True)
class SelectionReport:
    name: str
    by: str
    reduce: str
    pick: str
    run_id: str | None
    run_name: str | None
    value: float | None
    key: str | None
    ranking: tuple[RankedRun, ...]
    min_steps: int | None = None
    too_short: tuple[RankedRun, ...] = ()  # runs min_steps kept out of the ranking


@dataclass(frozen=True)
class TableReport:
    """A sampled table bound for a CSV file: `file` is a bare, sanitised file name."""

    file: str
    run_id: str
    run_name: str
    selection: str | None
    x: str
    columns: tuple[str, ...]
    steps: np.ndarray
    values: dict[str, np.ndarray]
    present: dict[str, np.ndarray]
    keys: dict[str, str | None]
    notes: tuple[str, ...] = ()
    text: str | None = None  # the CSV, when it was rendered already (where the run was digested)

    @property
    def rows(self) -> int:
        return len(self.steps)


@dataclass(frozen=True)
class GateResult:
    fail_on: str
    failed: bool
    reasons: tuple[str, ...] = ()


@dataclass(frozen=True)
class Report:
    title: str
    description: str | None
    generated_at: datetime
    reportgen_version: str
    spec_path: str
    spec_sha256: str
    source: dict[str, Any]
    runs_found: int
    runs: tuple[RunReport, ...]
    selections: tuple[SelectionReport, ...]
    tables: tuple[TableReport, ...]
    gate: GateResult
    notes: tuple[str, ...] = ()
    sampling: dict[str, Any] = field(default_factory=dict)
    plots: PlotSettings = field(default_factory=PlotSettings)
    next_experiments: tuple[NextExperiment, ...] = ()
    baseline: BaselineComparison | None = None
    analysis: Analysis = field(default_factory=Analysis)
    incomplete: bool = False  # some chosen runs could not be fetched (their notes say which)
    shortfalls: tuple[Shortfall, ...] = ()  # what the spec asks for that this report lacks
    run_pages: str = "notable"  # outputs.run_pages: which runs get a section of their own

    def run(self, run_id: str) -> RunReport:
        return next(r for r in self.runs if r.id == run_id)

    def shortfall_for(self, where: str) -> Shortfall | None:
        """The first gap at a spec path or under it (select.best → select.best.by)."""
        return next(
            (s for s in self.shortfalls if s.where == where or s.where.startswith(where + ".")),
            None,
        )

    def has_page(self, run: RunReport) -> bool:
        """Whether a run gets a section of its own: with outputs.run_pages `notable`, only runs
        with findings, runs that failed, and runs a selection picked (every run is in the
        verdict table either way)."""
        if self.run_pages == "all":
            return True
        picked = any(s.run_id == run.id for s in self.selections)
        return picked or bool(run.findings) or run.state in FAILED_STATES

    def problems(self, severity: str) -> list[RunProblems]:
        """Findings of one severity run by run, grouped by likely cause: Bad and Ugly sections."""
        found = []
        for run in self.runs:
            groups: dict[str | None, list[Finding]] = {}
            for f in run.findings:
                if f.severity == severity:
                    groups.setdefault(f.likely_cause, []).append(f)
            if groups:
                found.append(
                    RunProblems(run, tuple(CauseGroup(c, tuple(fs)) for c, fs in groups.items()))
                )
        return found

    @property
    def good_runs(self) -> list[RunReport]:
        """Runs no check found anything wrong with: the Good section."""
        return [run for run in self.runs if run.verdict == "good"]

    @property
    def unjudged_runs(self) -> list[RunReport]:
        """Runs the checks could not judge (too little data, or not checked), with why."""
        return [run for run in self.runs if run.verdict == "unjudged"]


# --- assembling --------------------------------------------------------------------------------


def assemble(
    *,
    spec: Spec,
    source: dict[str, Any],
    runs_found: int,
    runs: Sequence[Run],
    run_reports: Sequence[RunReport],
    metrics: Mapping[str, Mapping[str, ResolvedMetric]],
    selections: Sequence[SelectionResult],
    tables: Mapping[str, SampledTable],
    generated_at: datetime,
    version: str,
    notes: Sequence[str] = (),
    baseline: BaselineComparison | None = None,
    analysis: Analysis | None = None,
    incomplete: bool = False,
    shortfalls: Sequence[Shortfall] = (),
) -> Report:
    """Bind the pipeline's results into one Report (`run_reports` from `run_report`, per run)."""
    names = {run.id: run.name for run in runs}
    run_reports = tuple(run_reports)
    selection_reports = tuple(_selection_report(s, names, metrics) for s in selections)
    table_reports = _table_reports(spec, runs, selection_reports, tables, metrics)
    return Report(
        title=spec.title,
        description=spec.description,
        generated_at=generated_at,
        reportgen_version=version,
        spec_path=str(spec.path),
        spec_sha256=spec.sha256,
        source=source,
        runs_found=runs_found,
        runs=run_reports,
        selections=selection_reports,
        tables=table_reports,
        gate=with_baseline(gate_result(spec.gate.fail_on, run_reports), baseline),
        notes=(*notes, *_plot_notes(spec)),
        incomplete=incomplete,
        shortfalls=tuple(shortfalls),
        run_pages=spec.outputs.run_pages,
        sampling={
            "x": spec.sampling.x,
            "start": spec.sampling.start,
            "every": spec.sampling.every,
            "stop": spec.sampling.stop,
            "align": spec.sampling.align,
        },
        plots=PlotSettings(
            metrics=_plotted(spec),
            smoothing=spec.plots.smoothing,
            log_y=spec.plots.log_y,
            mermaid=spec.plots.mermaid,
        ),
        next_experiments=next_experiments(run_reports),
        baseline=baseline,
        analysis=analysis or Analysis(),
    )


def run_report(
    spec: Spec,
    run: Run,
    history: History,
    resolved: Mapping[str, ResolvedMetric],
    findings: Sequence[Finding],
    health: RunHealth,
) -> RunReport:
    """One run's part of the report: it depends on that run alone (see reportgen.digest)."""
    steps = history.steps()
    metric_reports = []
    notes = list(run.read_notes)
    overlaps = overlap_note(history, run)
    if overlaps:
        notes.append(overlaps)
    for alias, metric in resolved.items():
        note = None if metric.found else metric.missing_note(run.name)
        if note:
            notes.append(note)
        metric_reports.append(
            MetricReport(
                alias=alias,
                key=metric.key,
                x_key=metric.x_key,
                goal=goal_for(spec.metrics.get(alias), alias),
                stats=describe(metric.points) if metric.found else None,
                missing_note=note,
            )
        )
    return RunReport(
        id=run.id,
        name=run.name,
        state=run.state,
        exit_code=run.exit_code,
        url=run.url,
        tags=run.tags,
        group=run.group,
        entity=run.entity,
        project=run.project,
        job_type=run.job_type,
        created_at=run.created_at,
        config=run.config,
        summary=run.summary,
        first_step=int(steps[0]) if len(steps) else None,
        last_step=int(steps[-1]) if len(steps) else None,
        rows=history.row_count(),
        metrics=tuple(metric_reports),
        verdict=verdict(findings, health.unjudged),
        findings=tuple(findings),
        notes=tuple(notes),
        locations=run.locations,
        console_tail=run.console_tail,
        curves=tuple(
            _curve(metric, spec.plots.points, spec.plots.smoothing)
            for metric in resolved.values()
            if metric.found and len(metric.points)
        ),
        health=health,
        logged_name=run.logged_name,
    )


def renamed(report: RunReport, run: Run, resolved: Mapping[str, ResolvedMetric]) -> RunReport:
    """A run's report under the name the whole build gives it (`run.name`, "name (id)" where
    names repeat): a worker digests a run before the other runs' names are known."""
    if report.name == run.name:
        return report
    notes = list(report.notes)
    metric_reports = []
    for metric_report in report.metrics:
        metric = resolved.get(metric_report.alias)
        note = metric_report.missing_note
        if note is not None and metric is not None:
            new_note = metric.missing_note(run.name)
            notes = [new_note if n == note else n for n in notes]
            metric_report = replace(metric_report, missing_note=new_note)
        metric_reports.append(metric_report)
    return replace(
        report,
        name=run.name,
        logged_name=run.logged_name,
        notes=tuple(notes),
        metrics=tuple(metric_reports),
    )


# With no plots.metrics, this many aliases are charted: a spec with 120 aliases would otherwise
# spend most of its build drawing charts nobody asked for.
DEFAULT_PLOTS = 12


def _plotted(spec: Spec) -> tuple[str, ...]:
    if spec.plots.metrics is not None:
        return spec.plots.metrics
    return tuple(spec.metrics)[:DEFAULT_PLOTS]


def _plot_notes(spec: Spec) -> tuple[str, ...]:
    if spec.plots.metrics is None and len(spec.metrics) > DEFAULT_PLOTS:
        return (
            f"charts show the first {DEFAULT_PLOTS} of {len(spec.metrics)} aliases; "
            "list the ones to chart in plots.metrics",
        )
    return ()


def _curve(metric: ResolvedMetric, max_points: int, smoothing: float) -> Curve:
    """The points a chart draws for one alias: thinned, with the smoothing done on all of them."""
    steps, values = metric.points.xs, metric.points.values
    keep = thin(steps, values, max_points)
    smoothed = smooth(values, smoothing)[keep] if smoothing > 0 else None
    return Curve(metric.alias, metric.x_key, steps[keep], values[keep], smoothed, len(values))


def _selection_report(
    result: SelectionResult,
    names: Mapping[str, str],
    metrics: Mapping[str, Mapping[str, ResolvedMetric]],
) -> SelectionReport:
    s = result.selection
    best = result.ranking[0] if result.run_id else None
    key = metrics[result.run_id][s.by].key if result.run_id else None
    return SelectionReport(
        name=s.name,
        by=s.by,
        reduce=s.reduce,
        pick=s.pick,
        run_id=result.run_id,
        run_name=names.get(result.run_id) if result.run_id else None,
        value=best.value if best else None,
        key=key,
        ranking=tuple(RankedRun(r.run_id, names[r.run_id], r.value) for r in result.ranking),
        min_steps=s.min_steps,
        too_short=tuple(RankedRun(run_id, names[run_id], None) for run_id in result.too_short),
    )


_UNSAFE = re.compile(r"[^A-Za-z0-9.-]+")  # "_" too, so "a (b)_c" gives a_b_c, not a_b__c


def safe_file_name(text: str) -> str:
    """A file name from run-derived text: no separators, no dots first, nothing odd."""
    cleaned = _UNSAFE.sub("_", text).strip("._-")
    return cleaned[:120] or "run"


def _table_reports(
    spec: Spec,
    runs: Sequence[Run],
    selections: Sequence[SelectionReport],
    tables: Mapping[str, SampledTable],
    metrics: Mapping[str, Mapping[str, ResolvedMetric]],
) -> tuple[TableReport, ...]:
    """One table per selection that picked a run; with no selections, one per run."""
    names = {run.id: run.name for run in runs}
    wanted: list[tuple[str | None, str]] = []
    if spec.select:
        wanted = [(s.name, s.run_id) for s in selections if s.run_id]
    else:
        wanted = [(None, run.id) for run in runs]
    csv = spec.outputs.csv
    reports: list[TableReport] = []
    used: set[str] = set()
    for selection, run_id in wanted:
        by = spec.select[selection].by if selection else ""
        template = csv.name or (
            "{selection}_{by}_experiment.csv" if selection else "{run}_experiment.csv"
        )
        fields = {"selection": selection or "", "by": by, "run": names[run_id], "run_id": run_id}
        file = safe_file_name(template.format(**fields))
        if not file.endswith(".csv"):
            file += ".csv"
        if file in used:
            file = f"{file[:-4]}-{safe_file_name(run_id)}.csv"
        used.add(file)
        sampled = tables[run_id]
        resolved = metrics[run_id]
        columns = csv_columns(spec, resolved)
        rendered = sampled.csv[1] if sampled.csv and sampled.csv[0] == tuple(columns) else None
        reports.append(
            TableReport(
                file=file,
                run_id=run_id,
                run_name=names[run_id],
                selection=selection,
                x=spec.sampling.x,
                columns=tuple(columns),
                steps=sampled.steps,
                values={c: sampled.values[c] for c in columns},
                present={c: sampled.present[c] for c in columns},
                keys={c: resolved[c].key for c in columns},
                notes=sampled.notes,
                text=rendered,
            )
        )
    return tuple(reports)


def csv_columns(spec: Spec, resolved: Mapping[str, ResolvedMetric]) -> list[str]:
    """The aliases a run's CSV has: `outputs.csv.columns` (else every alias), less those the
    run did not log when `missing: drop`."""
    csv = spec.outputs.csv
    columns = list(csv.columns) if csv.columns is not None else list(spec.metrics)
    if csv.missing == "drop":
        columns = [c for c in columns if resolved[c].found]
    return columns


MAX_EXPERIMENTS = 6
MIN_EXPERIMENTS = 3


def next_experiments(runs: Sequence[RunReport]) -> tuple[NextExperiment, ...]:
    """3 to 6 follow-ups: one per likely cause found (ugly first), then general ones.

    Findings that share a likely cause (a divergence and the NaN it caused, say) become one
    experiment naming every run they affect; its action is the advice of the first, most
    severe, such finding.
    """
    ordered = [
        (run, f)
        for severity in reversed(SEVERITIES)
        for run in runs
        for f in run.findings
        if f.severity == severity and f.next_step
    ]
    groups: dict[str, list[tuple[RunReport, Finding]]] = {}
    for run, f in ordered:
        groups.setdefault(f.likely_cause or f.check, []).append((run, f))
    experiments = []
    for members in groups.values():
        names = tuple(dict.fromkeys(run.name for run, _ in members))
        checks = tuple(dict.fromkeys(f.check for _, f in members))
        first = members[0][1]
        assert first.next_step is not None
        reason = first.likely_cause or first.message
        experiments.append(NextExperiment(first.next_step, reason, checks, names))
    experiments = experiments[:MAX_EXPERIMENTS]
    if runs and len(experiments) < MIN_EXPERIMENTS:
        experiments += _general_experiments(runs)[: MIN_EXPERIMENTS - len(experiments)]
    return tuple(experiments)


def _general_experiments(runs: Sequence[RunReport]) -> list[NextExperiment]:
    """Follow-ups worth doing whatever the findings: confirm and extend the healthiest run."""
    healthy = [r for r in runs if r.verdict == "good"] or list(runs)
    best = healthy[0]
    fixed = "" if best.verdict == "good" else ", once the problems above are fixed"
    return [
        NextExperiment(
            f"Repeat {best.name} with two more seeds{fixed}.",
            "One seed cannot tell a robust result from a lucky one.",
            (),
            (best.name,),
        ),
        NextExperiment(
            f"Sweep the learning rate of {best.name} at 0.5× and 2×.",
            "It shows whether the run sits near the best learning rate or at the edge of "
            "instability.",
            (),
            (best.name,),
        ),
        NextExperiment(
            f"Train {best.name} for twice as many steps.",
            "It shows whether more compute still buys a better result.",
            (),
            (best.name,),
        ),
    ]


def gate_result(fail_on: str, runs: Sequence[RunReport]) -> GateResult:
    """Whether the build should fail: any run at or beyond the `fail_on` verdict."""
    if fail_on == "never":
        return GateResult(fail_on, False)
    failing = {"ugly": ("ugly",), "bad": ("bad", "ugly")}[fail_on]
    reasons = []
    for run in runs:
        if run.verdict in failing:
            checks = ", ".join(sorted({f.check for f in run.findings}))
            reasons.append(f"run {run.name} ({run.id}) is {run.verdict}: {checks}")
    return GateResult(fail_on, bool(reasons), tuple(reasons))


def with_baseline(gate: GateResult, baseline: BaselineComparison | None) -> GateResult:
    """A tolerance exceeded against the baseline fails the gate, whatever `fail_on` says."""
    if baseline is None or not baseline.failed:
        return gate
    return GateResult(gate.fail_on, True, (*gate.reasons, *baseline.reasons))
