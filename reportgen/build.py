"""`reportgen build`: the pipeline, top to bottom, one named step per stage.

spec → source → filter → history → metrics (aliases, sampling) → selections → report → files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from reportgen.analysis import analyse
from reportgen.baseline import BaselineComparison, compare_with_baseline
from reportgen.cache import RunCache, default_location
from reportgen.checkpoint import resolve_checkpoints
from reportgen.errors import EXIT_COMMENT, EXIT_GATE_FAILED, EXIT_OK, UsageError
from reportgen.metrics import ResolvedMetric, SampledTable, keep_rows, resolve_metrics, sample
from reportgen.publish import CommentResult, publish_comment
from reportgen.render import write_outputs
from reportgen.report import Finding, Report, RunHealth, assemble
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
    comment: CommentResult | None = None
    warnings: tuple[str, ...] = ()  # about this machine (e.g. a damaged cache entry), not runs

    @property
    def exit_code(self) -> int:
        """1 when the gate failed (whatever else happened), 4 when the comment failed to post."""
        if self.report.gate.failed:
            return EXIT_GATE_FAILED
        if self.comment is not None and self.comment.fails_build:
            return EXIT_COMMENT
        return EXIT_OK


def build(
    spec: Spec | str | Path,
    *,
    out_dir: Path | None = None,
    now: datetime | None = None,
    source: Source | None = None,
    progress: Progress | None = None,
    comment: bool = False,
    env: Mapping[str, str] | None = None,
    cache_mode: str = "normal",
) -> BuildResult:
    """Build every output the spec asks for; the caller decides what the gate means.

    With `comment` (or `outputs.comment` in the spec) the PR comment is written and posted to
    the forge that `env` (default: os.environ) describes. `cache_mode`: "normal" (use and update
    the cache), "refresh" (ignore what is cached, fetch everything again) or "offline" (use only
    the cache; fail when something is missing).
    """
    if not isinstance(spec, Spec):
        spec = load_spec(spec)
    now = now or build_time()
    template_dirs = _template_dirs(spec)
    target = out_dir or spec.outputs.dir
    _check_output_folder(target, "--out" if out_dir else "outputs.dir")
    cache = None
    if source is None:
        cache = RunCache.at(default_location(spec.cache.dir), cache_mode)
        source = open_source(spec.source, cache)
    report = make_report(spec, source, now, progress)
    try:
        files = write_outputs(report, target, spec.outputs.formats, template_dirs)
    except OSError as exc:  # the disk filled up, or the folder changed under the build
        raise UsageError(f"outputs: cannot write into '{target}': {exc.strerror or exc}") from None
    posted = None
    if comment or spec.outputs.comment is not None:
        posted = publish_comment(spec, report, target, os.environ if env is None else env)
        files.append(posted.path)
    warnings = tuple(cache.warnings) if cache else ()
    return BuildResult(report, target, tuple(files), posted, warnings)


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


def _check_output_folder(folder: Path, setting: str) -> None:
    """Refuse, before any data is read, an output folder that cannot be one."""
    if "\x00" in str(folder):
        raise UsageError(f"{setting}: the folder name contains a NUL character")
    existing = folder
    try:
        while not existing.exists() and existing.parent != existing:
            existing = existing.parent
    except OSError as exc:  # a name too long, a loop of links
        raise UsageError(f"{setting}: '{folder}' cannot be a folder: {exc.strerror}") from None
    if not existing.is_dir():
        raise UsageError(
            f"{setting}: '{existing}' is a file, not a folder; choose another output folder"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(
            f"{setting}: '{existing}' is read-only for this user; choose another output folder"
        )


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

    spec, resolved = resolve_checkpoints(spec)
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
    notes = [
        *resolved,
        *getattr(source, "notes", ()),
        *(_left_out(f, len(runs)) for f in failures),
    ]
    metrics = {run.id: resolve_metrics(run, histories[run.id], spec.metrics) for run in runs}
    selections = [choose(selection, metrics) for selection in spec.select.values()]
    tables = _sampled_tables(spec, runs, histories, metrics)
    findings, health = _health(spec, runs, histories, metrics, now)
    baseline = _compare_with_baseline(spec, runs, metrics, now)
    analysis = analyse(spec, runs, histories, metrics, selections)
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
        health=health,
        baseline=baseline,
        analysis=analysis,
        notes=notes,
        incomplete=bool(failures),
    )


def _left_out(failure: RunFetchError, kept: int) -> str:
    return (
        f"Incomplete: run {failure.run_name} ({failure.run_id}) is left out of this report, "
        f"{failure.reason}; the report covers the other {kept} runs."
    )


def _sampled_tables(
    spec: Spec,
    runs: list[Run],
    histories: dict[str, History],
    metrics: dict[str, dict[str, ResolvedMetric]],
) -> dict[str, SampledTable]:
    """Each run's aliases on the spec's one sampling axis.

    Where every alias's natural axis already is that axis (the common case), the metrics
    resolved for stats are the same and are reused rather than resolved again.
    """
    x = spec.sampling.x
    tables = {}
    for run in runs:
        on_axis = metrics[run.id]
        if any(metric.x_key != x for metric in on_axis.values()):
            on_axis = resolve_metrics(run, histories[run.id], spec.metrics, x=x)
        tables[run.id] = sample(on_axis, spec.sampling)
        if spec.outputs.csv.where:
            tables[run.id] = keep_rows(tables[run.id], spec.outputs.csv.where)
    return tables


def _health(
    spec: Spec,
    runs: list[Run],
    histories: dict[str, History],
    metrics: dict[str, dict[str, ResolvedMetric]],
    now: datetime,
) -> tuple[dict[str, list[Finding]], dict[str, RunHealth]]:
    """Training-health checks on each run's whole history: findings, and what looks healthy."""
    from reportgen.health import check_runs

    return check_runs(spec.health, spec.metrics, runs, histories, metrics, now)


def _compare_with_baseline(
    spec: Spec, runs: list[Run], metrics: dict[str, dict[str, ResolvedMetric]], now: datetime
) -> BaselineComparison | None:
    """Candidate runs against the spec's baseline runs (only when the spec has a baseline)."""
    if spec.baseline is None:
        return None
    return compare_with_baseline(spec.baseline, spec.metrics, runs, metrics, now)
