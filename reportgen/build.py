"""`reportgen build`: the pipeline, top to bottom, one named step per stage.

spec → source → filter → history → metrics (aliases, sampling) → selections → report → files.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from reportgen.errors import EXIT_GATE_FAILED, EXIT_OK, UsageError
from reportgen.metrics import ResolvedMetric, SampledTable, resolve_metrics, sample
from reportgen.render import write_outputs
from reportgen.report import Finding, Report, assemble
from reportgen.runs import History, Run
from reportgen.select import choose, filter_runs
from reportgen.sources import Source, open_source
from reportgen.spec import Spec, load_spec

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class BuildResult:
    report: Report
    out_dir: Path
    files: tuple[Path, ...]

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
) -> BuildResult:
    """Build every output the spec asks for; the caller decides what the gate means."""
    if not isinstance(spec, Spec):
        spec = load_spec(spec)
    now = now or build_time()
    template_dirs = _template_dirs(spec)
    source = source or open_source(spec.source)
    report = make_report(spec, source, now, progress)
    target = out_dir or spec.outputs.dir
    files = write_outputs(report, target, spec.outputs.formats, template_dirs)
    return BuildResult(report, target, tuple(files))


def build_time() -> datetime:
    """The moment a report is "generated at": SOURCE_DATE_EPOCH when set, so builds can be
    repeated byte for byte (reproducible-builds.org), else the current time."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch is None or not epoch.strip():
        return datetime.now(timezone.utc)
    try:
        return datetime.fromtimestamp(int(epoch), timezone.utc)
    except (ValueError, OverflowError, OSError):
        raise UsageError(
            f"SOURCE_DATE_EPOCH must be whole seconds since 1970-01-01, got {epoch!r}"
        ) from None


def _template_dirs(spec: Spec) -> tuple[Path, ...]:
    """The spec's own template folder, checked before any data is read."""
    folder = spec.outputs.templates
    if folder is None:
        return ()
    if not folder.is_dir():
        raise UsageError(
            f"outputs.templates: folder '{folder}' does not exist (relative to the working "
            f"directory {Path.cwd()}); it should hold report.md.j2, report.html.j2 or report.css"
        )
    return (folder,)


def make_report(
    spec: Spec, source: Source, now: datetime, progress: Progress | None = None
) -> Report:
    """Everything up to the Report, without writing a file."""
    from reportgen import __version__

    found = source.list_runs(spec.runs, progress)
    runs = filter_runs(found, spec.runs, now)
    histories = {run.id: source.history(run) for run in runs}
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
