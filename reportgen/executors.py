"""Where the per-run half of a build runs: in this process (`local`) or on a Ray cluster (`ray`).

A build maps over runs (read one run's files, resolve its metrics, sample them, run the health
checks: `reportgen.digest`) and then reduces (selections, baseline, analysis, the Report). An
executor does the map and hands the reduce a `MappedRuns`; both executors call the same
`digest_run`, so the report is byte for byte the same whichever built it.

`ray` gives each run folder to one Ray task. The task reads the run's files where they are (a
file system every node mounts at the same path), decides alone whether the run passes the
spec's filters, and returns only the run's metadata and, for a chosen run, its digest — never
its whole history. A task that fails (a worker lost, a file removed meanwhile) leaves its run
out of the report with the reason, and marks the build incomplete, as a run that could not be
fetched from a server does.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from reportgen.errors import ReportgenError, SourceError, UsageError
from reportgen.runs import Run
from reportgen.select import filter_runs, may_be_chosen
from reportgen.sources import RunFetchError, Source, fetch_histories

if TYPE_CHECKING:
    from reportgen.cache import RunCache
    from reportgen.digest import RunDigest
    from reportgen.spec import ExecutorSpec, Spec

Progress = Callable[[int, int, str], None]

_SCAN_BATCH = 256  # files whose start times one Ray task reads


@dataclass(frozen=True)
class MappedRuns:
    """What the map over runs hands the reduce.

    `found`: how many runs the source holds; `digests`: the chosen runs, newest first (the
    order of `filter_runs`); `failures`: runs that could not be read at all.
    """

    found: int
    digests: list[RunDigest]
    failures: list[RunFetchError]


class Executor(Protocol):
    name: str

    def map_runs(
        self, spec: Spec, source: Source, now: datetime, progress: Progress | None = None
    ) -> MappedRuns:
        """List the source's runs, choose, and digest each chosen run."""
        ...


def open_executor(spec: ExecutorSpec, source: Source) -> Executor:
    """The executor a spec (or `--executor`) names, checked before any data is read."""
    if spec.type == "local":
        return LocalExecutor()
    if source.kind != "wandb-offline":
        raise UsageError(
            f"source.executor: ray reads run folders where they lie and works with "
            f"source.type wandb-offline, not {source.kind}; use executor: local"
        )
    if not _ray_installed():
        raise UsageError(
            "source.executor: ray is not installed; install it with "
            "pip install 'reportgen[ray]', or use executor: local"
        )
    return RayExecutor(spec.address)


def _ray_installed() -> bool:
    try:
        return importlib.util.find_spec("ray") is not None
    except ValueError:  # sys.modules["ray"] is None: imports of ray are blocked
        return False


class LocalExecutor:
    """One machine. A run folder with enough runs is read and digested on two processes, each
    taking the next few runs' files when it is free, cold or cached
    (`digest_pool.read_and_digest`). Otherwise
    the source reads (decoding in worker processes when there is much to decode) and this
    process digests the chosen runs, with one forked worker taking every other run when there
    are enough of them to pay for it (see reportgen.digest_pool)."""

    name = "local"

    def map_runs(
        self, spec: Spec, source: Source, now: datetime, progress: Progress | None = None
    ) -> MappedRuns:
        from reportgen.digest_pool import digest_runs, read_and_digest

        if spec.runs.limit is None and source.kind == "wandb-offline":
            split = read_and_digest(spec, source, now, progress)  # type: ignore[arg-type]
            if split is not None:  # read and digested on two processes
                return MappedRuns(split[0], split[1], [])
        if spec.runs.limit is not None and source.kind == "wandb-offline":
            found, runs = read_newest(spec, source, now, progress)
        else:
            listed = source.list_runs(spec.runs, progress, now=now)
            found, runs = len(listed), filter_runs(listed, spec.runs, now)
        fetched = fetch_histories(source, runs, progress)
        chosen = []
        failures = []
        for run in runs:
            history = fetched[run.id]
            if isinstance(history, RunFetchError):
                failures.append(history)
            else:
                chosen.append((run, history))
        return MappedRuns(found, digest_runs(spec, chosen, now), failures)


def read_newest(
    spec: Spec, source: Source, now: datetime, progress: Progress | None = None
) -> tuple[int, list[Run]]:
    """`runs.limit` over run folders: every file's start time from its run records, then the
    runs read in full newest first, until `limit` of them pass the filters (see
    reportgen.sources.starts). Returns how many runs the folder holds, and the chosen runs."""
    from reportgen.sources.starts import file_start, run_starts

    assert spec.runs.limit is not None
    groups, copy_notes = source.run_files()  # type: ignore[attr-defined]
    files = [path for paths in groups.values() for path in paths]
    scanned = []
    for done, path in enumerate(files, start=1):
        scanned.append(file_start(path))
        if progress:
            progress(done, len(files), path.parent.name)
    starts = run_starts(scanned)
    chosen: list[Run] = []
    at = 0
    while len(chosen) < spec.runs.limit and at < len(starts):
        batch = starts[at : at + spec.runs.limit - len(chosen)]
        at += len(batch)
        files = [path for start in batch for path in start.files]
        read = source.read_runs(files, progress, now, copy_notes)  # type: ignore[attr-defined]
        chosen += [run for run in read if may_be_chosen(run, spec.runs, now)]
    return len(starts), filter_runs(chosen, spec.runs, now)


@dataclass(frozen=True)
class RunOutcome:
    """What one Ray task returns per run its files hold: the metadata (so the reduce can apply
    `limit` across every run) and, when the run passed the filters, its digest."""

    run: Run
    digest: RunDigest | None
    files: tuple[str, ...]


class RayExecutor:
    """One Ray task per run folder group, on the cluster at `address`.

    `address`: None for Ray's own default (RAY_ADDRESS, else a cluster started on this machine
    with `ray start`, else a new local instance), `auto`, `host:port` or `ray://host:port`
    (Ray Client). A Ray instance this process already started (`ray.init(...)`) is used as is.
    """

    name = "ray"

    def __init__(self, address: str | None = None):
        self.address = address

    def map_runs(
        self, spec: Spec, source: Source, now: datetime, progress: Progress | None = None
    ) -> MappedRuns:
        cache = getattr(source, "run_cache", None)
        groups, copy_notes = self.list_groups(spec)
        if spec.runs.limit is not None:
            return self.map_newest(spec, groups, copy_notes, now, progress, cache)
        outcomes, failures = self.digest_groups(spec, groups, now, progress, copy_notes, cache)
        # Files named for one run that hold another (copied, renamed) are read again together,
        # so that every run is merged from all its files, as the local reader merges them.
        by_run: dict[str, list[RunOutcome]] = {}
        for outcome in outcomes:
            by_run.setdefault(outcome.run.id, []).append(outcome)
        split = {run_id: parts for run_id, parts in by_run.items() if len(parts) > 1}
        if split:
            regrouped = {
                run_id: sorted({Path(f) for part in parts for f in part.files})
                for run_id, parts in split.items()
            }
            again, failed = self.digest_groups(spec, regrouped, now, progress, copy_notes, cache)
            outcomes = [o for o in outcomes if o.run.id not in split] + again
            failures += failed
        found = [outcome.run for outcome in outcomes]
        digests = {o.run.id: o.digest for o in outcomes if o.digest is not None}
        chosen = filter_runs(found, spec.runs, now)
        failures.sort(key=lambda failure: failure.run_id)  # not in the order tasks happened to end
        return MappedRuns(len(found), [digests[run.id] for run in chosen], failures)

    def map_newest(
        self,
        spec: Spec,
        groups: dict[str, list[Path]],
        copy_notes: dict[Path, list[str]],
        now: datetime,
        progress: Progress | None,
        cache: RunCache | None,
    ) -> MappedRuns:
        """`runs.limit`: the start times of all runs from their run records (tasks of a few
        hundred files each), then the newest runs digested a batch at a time until `limit` of
        them pass the filters (see reportgen.sources.starts)."""
        from reportgen.sources.starts import file_starts, run_starts

        assert spec.runs.limit is not None
        ray = self._connect()
        scan = ray.remote(num_cpus=1)(file_starts)
        files = [str(path) for paths in groups.values() for path in paths]
        cwd = os.getcwd()
        batches = [files[i : i + _SCAN_BATCH] for i in range(0, len(files), _SCAN_BATCH)]
        found = [
            start for batch in ray.get([scan.remote(b, cwd) for b in batches]) for start in batch
        ]
        starts = run_starts(found)
        width = max(1, int(ray.cluster_resources().get("CPU", 1)))
        outcomes: list[RunOutcome] = []
        failures: list[RunFetchError] = []
        passed = 0
        at = 0
        while passed < spec.runs.limit and at < len(starts):
            batch = starts[at : at + max(spec.runs.limit - passed, width)]
            at += len(batch)
            done, failed = self.digest_groups(
                spec, {s.run_id: list(s.files) for s in batch}, now, progress, copy_notes, cache
            )
            outcomes += done
            failures += failed
            passed += sum(1 for o in done if o.digest is not None)
        digests = {o.run.id: o.digest for o in outcomes if o.digest is not None}
        chosen = filter_runs([o.run for o in outcomes], spec.runs, now)
        failures.sort(key=lambda failure: failure.run_id)
        return MappedRuns(len(starts), [digests[run.id] for run in chosen], failures)

    def list_groups(self, spec: Spec) -> tuple[dict[str, list[Path]], dict[Path, list[str]]]:
        """The run files under source.path, grouped by the run id in their names, listed by a
        task on the cluster: the machine that starts the build need not mount the folder. With
        them, the notes on copies read once, by the file read (for the task that reads it)."""
        ray = self._connect()
        listing = ray.remote(num_cpus=1)(list_run_files)
        try:
            listed: tuple[dict[str, list[str]], dict[str, list[str]]] = ray.get(
                listing.remote(spec, os.getcwd())
            )
        except ray.exceptions.RayTaskError as exc:
            cause = getattr(exc, "cause", None)
            if isinstance(cause, ReportgenError):
                raise cause from None
            raise
        groups, notes = listed
        return (
            {run_id: [Path(f) for f in files] for run_id, files in groups.items()},
            {Path(f): lines for f, lines in notes.items()},
        )

    def digest_groups(
        self,
        spec: Spec,
        groups: dict[str, list[Path]],
        now: datetime,
        progress: Progress | None = None,
        copy_notes: dict[Path, list[str]] | None = None,
        cache: RunCache | None = None,
    ) -> tuple[list[RunOutcome], list[RunFetchError]]:
        """Run one task per group of files; collect outcomes as they finish. `copy_notes`:
        notes on copies read once, by the file read, handed to the task that reads it.

        With `cache`, each task reads and fills the same cache folder (at the same path on its
        node) under the same keys as the local reader: a rebuild of unchanged files decodes
        nothing, on the cluster or here. What the tasks warn about is added to `cache`."""
        ray = self._connect()
        task = ray.remote(num_cpus=1)(read_and_digest)
        spec_ref = ray.put(spec)
        cwd = os.getcwd()
        notes = copy_notes or {}
        where = CacheSetting.of(cache) if cache is not None else None
        pending = {
            task.remote(
                spec_ref,
                cwd,
                [str(p) for p in paths],
                now,
                {str(p): notes[p] for p in paths if p in notes},
                where,
            ): group_id
            for group_id, paths in groups.items()
        }
        outcomes: list[RunOutcome] = []
        failures: list[RunFetchError] = []
        done = 0
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=min(len(pending), 64), timeout=1.0)
            for ref in ready:
                group_id = pending.pop(ref)
                try:
                    done_task: TaskResult = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    failures.append(_task_failure(group_id, groups[group_id], exc))
                else:
                    outcomes.extend(done_task.outcomes)
                    for warning in done_task.warnings:
                        if cache is not None and warning not in cache.warnings:
                            cache.warn(warning)
                done += 1
                if progress:
                    progress(done, len(groups), group_id)
        return outcomes, failures

    def _connect(self) -> Any:
        import ray

        if ray.is_initialized():
            return ray
        _check_reachable(self.address)
        try:
            ray.init(
                address=self.address,
                logging_level=logging.ERROR,
                log_to_driver=False,
                configure_logging=True,
            )
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = self.address or "Ray's default address"
            raise SourceError(
                f"source.executor: could not connect to the Ray cluster at {where} ({exc}); "
                "start one with `ray start --head`, or check the address"
            ) from None
        return ray


def _check_reachable(address: str | None, timeout: float = 5.0) -> None:
    """Fail in seconds, with the address named, where Ray itself would wait for minutes for a
    head node that does not answer. `auto` and Ray's default are Ray's to resolve."""

    if address is None or address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise UsageError(
            f"source.executor: Ray address '{address}' should be auto, HOST:PORT or ray://HOST:PORT"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SourceError(
            f"source.executor: no Ray cluster answers at {address} ({reason}); start one "
            "with `ray start --head`, or check the address and port"
        ) from None


def list_run_files(spec: Spec, cwd: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """A Ray task: the source's run files by run id, as paths relative to `cwd` when it is,
    and the notes on copies read once, by the file read."""
    from reportgen.sources.offline import OfflineSource

    root = Path(cwd, spec.source.path or "")
    given = spec.source.path or ""
    source = OfflineSource(replace(spec.source, path=str(root)))
    groups, copy_notes = source.run_files()
    return (
        {
            run_id: [_as_given(path, root, given) for path in paths]
            for run_id, paths in groups.items()
        },
        {_as_given(path, root, given): lines for path, lines in copy_notes.items()},
    )


def _as_given(path: Path, root: Path, given: str) -> str:
    """`path` under `root`, written as if found under the folder the spec named."""
    return str(Path(given, path.relative_to(root)))


@dataclass(frozen=True)
class CacheSetting:
    """The driver's run cache, as a task needs it: its folder and mode."""

    path: str
    origin: str
    mode: str

    @classmethod
    def of(cls, cache: RunCache) -> CacheSetting:
        return cls(str(cache.root.resolve()), cache.origin, cache.mode)

    def open(self) -> tuple[RunCache | None, list[str]]:
        """The cache on this node; None, with a warning, when the folder cannot hold one here."""
        from reportgen.cache import CacheLocation, RunCache

        try:
            cache = RunCache.at(CacheLocation(Path(self.path), self.origin), self.mode)
        except (ReportgenError, OSError) as exc:
            return None, [
                f"cache: a Ray task on {socket.gethostname()} cannot use the cache folder "
                f"{self.path} ({exc}); its runs were read without it"
            ]
        return cache, cache.warnings


@dataclass(frozen=True)
class TaskResult:
    """What one Ray task returns: the runs its files hold, and the cache's warnings."""

    outcomes: list[RunOutcome]
    warnings: list[str]


def read_and_digest(
    spec: Spec,
    cwd: str,
    files: Sequence[str],
    now: datetime,
    copy_notes: dict[str, list[str]] | None = None,
    cache_setting: CacheSetting | None = None,
) -> TaskResult:
    """One Ray task: read one run folder group's files and digest the runs they hold.

    Paths are as the driver found them, relative to its working directory `cwd`; they are read
    from there and named as the driver names them, so the report shows the same paths. With
    `cache_setting`, unchanged files come from the run cache and decoded ones are stored in it,
    exactly as the local reader does (same keys: the files' resolved paths; atomic writes).
    """
    from reportgen.digest import digest_run
    from reportgen.sources.offline import OfflineSource

    assert spec.source.path is not None
    cache, warnings = cache_setting.open() if cache_setting else (None, [])
    source = OfflineSource(spec.source, cache=cache)
    source.decode_in_workers = False  # a task has one CPU: it decodes its files itself
    absolute = {str(Path(cwd, f).parent): str(Path(f).parent) for f in files}
    notes = {Path(cwd, f): lines for f, lines in (copy_notes or {}).items()}
    runs = source.read_runs([Path(cwd, f) for f in files], now=now, copy_notes=notes)
    outcomes = []
    for found in runs:
        run = replace(found, locations=tuple(absolute.get(p, p) for p in found.locations))
        digest = None
        if may_be_chosen(run, spec.runs, now):
            digest = digest_run(spec, run, source.history(found), now)
        outcomes.append(RunOutcome(run, digest, tuple(files)))
    return TaskResult(outcomes, warnings)


def _task_failure(group_id: str, files: Sequence[Path], exc: Exception) -> RunFetchError:
    """A task that raised or whose worker was lost: the run is left out, with the reason."""
    cause = getattr(exc, "cause", None) or exc
    detail = str(cause).strip().splitlines()[-1] if str(cause).strip() else type(cause).__name__
    where = ", ".join(str(f) for f in files[:3])
    return RunFetchError(
        group_id,
        group_id,
        f"its files ({where}) could not be read by a Ray task: {type(cause).__name__}: {detail}",
    )
