"""`reportgen build`: the pipeline, top to bottom, one named step per stage.

spec → source → filter → history → metrics (aliases, sampling) → selections → report → files.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from reportgen.cache import RunCache, default_location
from reportgen.errors import EXIT_GATE_FAILED, EXIT_OK
from reportgen.metrics import ResolvedMetric, SampledTable, resolve_metrics, sample
from reportgen.render import write_outputs
from reportgen.report import Finding, Report, assemble
from reportgen.runs import History, Run
from reportgen.select import choose, filter_runs
from reportgen.sources import RunFetchError, Source, fetch_histories, open_source
from reportgen.spec import Spec, load_spec

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class BuildResult:
    report: Report
    out_dir: Path
    files: tuple[Path, ...]
    warnings: tuple[str, ...] = ()  # about this machine (e.g. a damaged cache entry), not runs

    @property
    def exit_code(self) -> int:
        return EXIT_GATE_FAILED if self.report.gate.failed else EXIT_OK


def build(
    spec: Spec | str | Path,
    *,
    out_dir: Path | None = None,
    now: datetime | None = None,
    source: Source | None = None,
    progress: Progress | None = None,
    cache_mode: str = "normal",
) -> BuildResult:
    """Build every output the spec asks for; the caller decides what the gate means.

    `cache_mode`: "normal" (use and update the cache), "refresh" (ignore what is cached and
    fetch everything again) or "offline" (use only the cache; fail when something is missing).
    """
    if not isinstance(spec, Spec):
        spec = load_spec(spec)
    now = now or datetime.now(timezone.utc)
    cache = None
    if source is None:
        cache = RunCache.at(default_location(spec.cache.dir), cache_mode)
        source = open_source(spec.source, cache)
    report = make_report(spec, source, now, progress)
    target = out_dir or spec.outputs.dir
    files = write_outputs(report, target, spec.outputs.formats)
    warnings = tuple(cache.warnings) if cache else ()
    return BuildResult(report, target, tuple(files), warnings)


def make_report(
    spec: Spec, source: Source, now: datetime, progress: Progress | None = None
) -> Report:
    """Everything up to the Report, without writing a file."""
    from reportgen import __version__

    found = source.list_runs(spec.runs, progress, now=now)
    runs = filter_runs(found, spec.runs, now)
    fetched = fetch_histories(source, runs, progress)
    failures = [f for f in fetched.values() if isinstance(f, RunFetchError)]
    runs = [run for run in runs if not isinstance(fetched[run.id], RunFetchError)]
    histories: dict[str, History] = {}
    for run in runs:
        history = fetched[run.id]
        assert isinstance(history, History)
        histories[run.id] = history
    notes = [*getattr(source, "notes", ()), *(_left_out(f, len(runs)) for f in failures)]
    metrics = {run.id: resolve_metrics(run, histories[run.id], spec.metrics) for run in runs}
    selections = [choose(selection, metrics) for selection in spec.select.values()]
    tables = _sampled_tables(spec, runs, histories)
    findings = _health(spec, runs, histories, metrics)
    return assemble(
        spec=spec,
        source=source.describe(),
        runs_found=len(found),
        runs=runs,
        histories=histories,
        metrics=metrics,
        selections=selections,
        tables=tables,
        findings=findings,
        generated_at=now,
        version=__version__,
        notes=notes,
        incomplete=bool(failures),
    )


def _left_out(failure: RunFetchError, kept: int) -> str:
    return (
        f"Incomplete: run {failure.run_name} ({failure.run_id}) is left out of this report, "
        f"{failure.reason}; the report covers the other {kept} runs."
    )


def _sampled_tables(
    spec: Spec, runs: list[Run], histories: dict[str, History]
) -> dict[str, SampledTable]:
    """Each run's aliases on the spec's one sampling axis."""
    tables = {}
    for run in runs:
        on_axis = resolve_metrics(run, histories[run.id], spec.metrics, x=spec.sampling.x)
        tables[run.id] = sample(on_axis, spec.sampling)
    return tables


def _health(
    spec: Spec,
    runs: list[Run],
    histories: dict[str, History],
    metrics: dict[str, dict[str, ResolvedMetric]],
) -> dict[str, list[Finding]]:
    """Health checks arrive with their own stage; until then no run has findings."""
    return {run.id: [] for run in runs}
