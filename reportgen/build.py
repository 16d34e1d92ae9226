"""`reportgen build`: the pipeline, top to bottom, one named step per stage.

spec → source → filter → history → metrics (aliases, sampling) → selections → report → files.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path

from reportgen.analysis import analyse
from reportgen.baseline import BaselineComparison, compare_with_baseline
from reportgen.cache import RunCache, default_location
from reportgen.checkpoint import resolve_checkpoints
from reportgen.errors import EXIT_COMMENT, EXIT_GATE_FAILED, EXIT_OK, UsageError
from reportgen.executors import Executor, open_executor
from reportgen.metrics import ResolvedMetric
from reportgen.publish import CommentResult, publish_comment
from reportgen.render import write_outputs
from reportgen.report import Report, assemble
from reportgen.runs import Run
from reportgen.select import choose
from reportgen.sources import RunFetchError, Source, open_source
from reportgen.spec import ExecutorSpec, Spec, load_spec

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
    executor: ExecutorSpec | None = None,
) -> BuildResult:
    """Build every output the spec asks for; the caller decides what the gate means.

    With `comment` (or `outputs.comment` in the spec) the PR comment is written and posted to
    the forge that `env` (default: os.environ) describes. `cache_mode`: "normal" (use and update
    the cache), "refresh" (ignore what is cached, fetch everything again) or "offline" (use only
    the cache; fail when something is missing). `executor` replaces the spec's
    `source.executor` (the CLI's `--executor`).
    """
    if not isinstance(spec, Spec):
        spec = load_spec(spec)
    if executor is not None:
        spec = replace(spec, source=replace(spec.source, executor=executor))
    now = now or build_time()
    template_dirs = _template_dirs(spec)
    cache = None
    if source is None:
        cache = RunCache.at(default_location(spec.cache.dir), cache_mode)
        source = open_source(spec.source, cache)
    report = make_report(spec, source, now, progress)
    target = out_dir or spec.outputs.dir
    files = write_outputs(report, target, spec.outputs.formats, template_dirs)
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
    spec: Spec,
    source: Source,
    now: datetime,
    progress: Progress | None = None,
    executor: Executor | None = None,
) -> Report:
    """Everything up to the Report, without writing a file: the map over runs (by the
    executor the spec names), then the reduce over their digests."""
    from reportgen import __version__

    spec, resolved = resolve_checkpoints(spec)
    executor = executor or open_executor(spec.source.executor, source)
    mapped = executor.map_runs(spec, source, now, progress)
    digests = mapped.digests
    runs = [digest.run for digest in digests]
    notes = [
        *resolved,
        *getattr(source, "notes", ()),
        *(_left_out(f, len(runs)) for f in mapped.failures),
    ]
    metrics = {digest.run.id: digest.metrics for digest in digests}
    selections = [choose(selection, metrics) for selection in spec.select.values()]
    baseline = _compare_with_baseline(spec, runs, metrics, now)
    analysis = analyse(
        spec,
        runs,
        {digest.run.id: digest.history for digest in digests},
        {digest.run.id: digest.span for digest in digests},
        {digest.run.id: digest.project for digest in digests if digest.project is not None},
        metrics,
        selections,
    )
    return assemble(
        spec=spec,
        source=source.describe(),
        runs_found=mapped.found,
        runs=runs,
        run_reports=[digest.report for digest in digests],
        metrics=metrics,
        selections=selections,
        tables={digest.run.id: digest.table for digest in digests},
        generated_at=now,
        version=__version__,
        baseline=baseline,
        analysis=analysis,
        notes=notes,
        incomplete=bool(mapped.failures),
    )


def _left_out(failure: RunFetchError, kept: int) -> str:
    return (
        f"Incomplete: run {failure.run_name} ({failure.run_id}) is left out of this report, "
        f"{failure.reason}; the report covers the other {kept} runs."
    )


def _compare_with_baseline(
    spec: Spec, runs: list[Run], metrics: dict[str, dict[str, ResolvedMetric]], now: datetime
) -> BaselineComparison | None:
    """Candidate runs against the spec's baseline runs (only when the spec has a baseline)."""
    if spec.baseline is None:
        return None
    return compare_with_baseline(spec.baseline, spec.metrics, runs, metrics, now)
