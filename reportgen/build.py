"""`reportgen build`: the pipeline, top to bottom, one named step per stage.

spec → source → filter → history → metrics (aliases, sampling) → selections → report → files.
"""

from __future__ import annotations

import dataclasses
import os
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

from reportgen.analysis.baseline import BaselineComparison, compare_with_baseline
from reportgen.analysis.stage import analyse
from reportgen.cache import RunCache, default_location
from reportgen.checkpoint import resolve_checkpoints
from reportgen.collector import fewer_collections
from reportgen.errors import (
    EXIT_COMMENT,
    EXIT_GATE_FAILED,
    EXIT_INCOMPLETE,
    EXIT_OK,
    SourceError,
    UsageError,
)
from reportgen.executors import Executor, open_executor
from reportgen.metrics import ResolvedMetric
from reportgen.render import write_outputs
from reportgen.render.chart_cache import ChartCache
from reportgen.render.folder import OutputFolder
from reportgen.report import Report, assemble, renamed
from reportgen.runs import Run
from reportgen.select import choose, filter_runs
from reportgen.shortfalls import LeftOut, find_shortfalls
from reportgen.sources import RunFetchError, Source, open_source
from reportgen.spec import ExecutorSpec, Spec, load_spec
from reportgen.stopping import raise_if_stopped

if TYPE_CHECKING:
    from reportgen.publish import CommentResult

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
        """1 when the gate failed (whatever else happened: a run that is ugly stays ugly
        whatever the missing part would add); else 5 when part of what the spec asks for is
        missing and the spec did not accept it; else 4 when the comment failed to post."""
        if self.report.gate.failed:
            return EXIT_GATE_FAILED
        if any(not shortfall.accepted for shortfall in self.report.shortfalls):
            return EXIT_INCOMPLETE
        if self.comment is not None and self.comment.fails_build:
            return EXIT_COMMENT
        return EXIT_OK


def build(
    spec: Spec | str | Path,
    *,
    out_dir: Path | str | None = None,
    now: datetime | str | None = None,
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
    `source.executor` (the CLI's `--executor`). `out_dir` and `now` may be strings, as on the
    command line ("2026-01-01T00:00:00Z" or "@1767225600"); every argument is checked before
    any data is read.

    The outputs appear together or not at all (render/folder.py): files are rendered into a
    staging folder and moved into place as a set, and files an earlier build wrote that this
    one no longer writes are removed.
    """
    target = _out_dir_argument(out_dir)
    moment = _now_argument(now)
    if cache_mode not in CACHE_MODES:
        raise UsageError(
            f"cache_mode: expected one of {', '.join(CACHE_MODES)}; got {cache_mode!r}"
        )
    if not isinstance(spec, Spec):
        spec = load_spec(spec)
    if executor is not None:
        spec = replace(spec, source=replace(spec.source, executor=executor))
    moment = moment or build_time()
    template_dirs = _template_dirs(spec)
    _check_output_folder(target or spec.outputs.dir, "--out" if target else "outputs.dir")
    cache = None
    if source is None:
        cache = RunCache.at(default_location(spec.cache.dir), cache_mode)
        source = open_source(spec.source, cache)
    with fewer_collections():  # reading, digesting and rendering allocate by the million
        report = make_report(spec, source, moment, progress)
        target = target or spec.outputs.dir
        files, posted = _write_files(spec, report, target, template_dirs, cache, comment, env)
    warnings = tuple(cache.warnings) if cache else ()
    return BuildResult(report, target, tuple(files), posted, warnings)


def _write_files(
    spec: Spec,
    report: Report,
    target: Path,
    template_dirs: tuple[Path, ...],
    cache: RunCache | None,
    comment: bool,
    env: Mapping[str, str] | None,
) -> tuple[list[Path], CommentResult | None]:
    """Render the outputs (and the PR comment) into a staging folder and move them into
    place together; the files, and the comment posted if any."""
    posted = None
    owner = str(spec.path) if spec.path.is_file() else ""  # "": no spec file, remove nothing
    try:
        with OutputFolder(target, spec=owner) as folder:
            staged = write_outputs(
                report,
                folder.staging,
                spec.outputs.formats,
                template_dirs,
                folder.holds,
                _chart_cache(cache),
            )
            raise_if_stopped()  # a build stopped, or past its deadline, posts and commits nothing
            if comment or spec.outputs.comment is not None:
                environment = os.environ if env is None else env
                from reportgen.publish import publish_comment  # jinja2 and the forges: only here

                posted = publish_comment(spec, report, target, environment, folder=folder.staging)
                staged.append(folder.staging / posted.path.name)
            return folder.commit(staged), posted
    except OSError as exc:  # the disk filled up, or the folder changed under the build
        raise UsageError(f"outputs: cannot write into '{target}': {exc.strerror or exc}") from None


CACHE_MODES = ("normal", "refresh", "offline")


def _chart_cache(cache: RunCache | None) -> ChartCache | None:
    """Charts kept beside the runs: --refresh draws them again, a read-only cache keeps none."""
    if cache is None:
        return None
    return ChartCache(cache.charts_folder, reads=cache.reads, stores=not cache.read_only)


def _out_dir_argument(out_dir: object) -> Path | None:
    if out_dir is None or isinstance(out_dir, Path):
        return out_dir
    if isinstance(out_dir, str) and out_dir.strip():
        return Path(out_dir)
    raise UsageError(f"out_dir: expected a folder (a str or Path); got {out_dir!r}")


def _now_argument(now: object) -> datetime | None:
    """A datetime (UTC when it has no zone), an ISO 8601 string, or "@" epoch seconds."""
    if now is None:
        return None
    if isinstance(now, datetime):
        return now if now.tzinfo else now.replace(tzinfo=timezone.utc)
    if isinstance(now, str):
        return parse_moment(now, "now")
    raise UsageError(
        f"now: expected a datetime or a string such as 2026-11-01T12:00:00Z; got {now!r}"
    )


def parse_moment(text: str, name: str = "--now") -> datetime:
    """An ISO 8601 date or time (UTC unless it says otherwise) or @seconds since 1970."""
    stripped = text.strip()
    try:
        if stripped.lstrip("@").isdigit():
            return datetime.fromtimestamp(int(stripped.lstrip("@")), timezone.utc)
        moment = datetime.fromisoformat(stripped.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise UsageError(
            f"{name}: expected a date or time such as 2026-11-01T12:00:00Z, or @1700000000; "
            f"got {text!r}"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(
        timezone.utc
    )


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
    failures = mapped.failures
    if failures and not mapped.digests:
        raise SourceError(_none_read(failures, len(failures)))
    # Runs too short for `min_steps` are known only once read: they leave here, and runs whose
    # names repeat are told apart, before anything compares runs.
    kept = {run.id for run in filter_runs([d.run for d in mapped.digests], spec.runs, now)}
    digests = [d for d in mapped.digests if d.run.id in kept]
    short = [d.run for d in mapped.digests if d.run.id not in kept]
    runs = distinct_names([digest.run for digest in digests])
    notes = [
        *resolved,
        *getattr(source, "notes", ()),
        *(_left_out(f, len(runs)) for f in failures),
        *_too_short(short, spec.runs.filters.min_steps),
    ]
    metrics = {digest.run.id: digest.metrics for digest in digests}
    steps = {run.id: run.logged_steps or 0 for run in runs}
    selections = [choose(selection, metrics, steps) for selection in spec.select.values()]
    left_out = [LeftOut(f.run_id, f.run_name, f.reason) for f in failures]
    shortfalls = find_shortfalls(spec, runs, metrics, selections, left_out)
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
        run_reports=[
            renamed(digest.report, run, digest.metrics)
            for digest, run in zip(digests, runs, strict=True)
        ],
        metrics=metrics,
        selections=selections,
        tables={digest.run.id: digest.table for digest in digests},
        generated_at=now,
        version=__version__,
        baseline=baseline,
        analysis=analysis,
        notes=notes,
        incomplete=bool(failures),
        shortfalls=shortfalls,
    )


def _none_read(failures: list[RunFetchError], chosen: int) -> str:
    """Not one chosen run could be read: a source failure, whatever the spec accepts."""
    first = failures[0]
    return (
        f"source: none of the {chosen} chosen runs could be read; {first.run_name} "
        f"({first.run_id}): {first.reason}"
    )


def _too_short(runs: list[Run], min_steps: int | None) -> list[str]:
    if not runs:
        return []
    names = ", ".join(f"{run.name} ({run.logged_steps})" for run in runs[:10])
    more = f" and {len(runs) - 10} more" if len(runs) > 10 else ""
    return [
        f"{len(runs)} runs logged fewer than {min_steps} steps (runs.filters.min_steps) and are "
        f"left out: {names}{more}"
    ]


def distinct_names(runs: list[Run]) -> list[Run]:
    """Runs whose names repeat are shown as "name (id)", so tables and chart legends can tell
    them apart; `logged_name` keeps the name as W&B has it (report.json's `name`)."""
    counts = Counter(run.name for run in runs)
    return [
        dataclasses.replace(run, name=f"{run.name} ({run.id})", logged_name=run.name)
        if counts[run.name] > 1
        else run
        for run in runs
    ]


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
