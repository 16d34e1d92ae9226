"""Local W&B run folders: the embedded default source, no account and no network.

Every `run-<id>.wandb` below the folder is read; folders that share a run id (resumed runs,
several writer processes) are merged into one run, newer fragments winning where they overlap.
"""

from __future__ import annotations

import multiprocessing
import os
import re
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reportgen.errors import SourceError
from reportgen.runs import History, Run
from reportgen.sources.wandb_file import Damage, FileContents, iter_wandb_files, read_wandb_file
from reportgen.spec import RunsSpec, SourceSpec

if TYPE_CHECKING:
    from reportgen.cache import CacheArea, RunCache

_ID_FROM_NAME = re.compile(r"^run-(?P<id>[^.]+)\.wandb$")

Progress = Callable[[int, int, str], None]


class OfflineSource:
    """Runs read from `.wandb` transaction logs under one folder."""

    kind = "wandb-offline"

    def __init__(
        self, spec: SourceSpec, *, now: float | None = None, cache: RunCache | None = None
    ):
        assert spec.path is not None
        self.root = Path(spec.path)
        self.stale_after = spec.stale_after.total_seconds()
        self._now = now
        self._histories: dict[str, History] = {}
        self._cache: CacheArea | None = cache.area("wandb-offline", {}) if cache else None

    def describe(self) -> dict[str, Any]:
        return {"type": self.kind, "path": str(self.root)}

    def list_runs(
        self,
        runs: RunsSpec | None = None,
        progress: Progress | None = None,
        now: datetime | None = None,
    ) -> list[Run]:
        """Read every run under the folder (filters are applied by the caller)."""
        return self.read_runs(self._files(), progress, now)

    def run_files(self) -> dict[str, list[Path]]:
        """Every run file under the folder, grouped by the run id in its name, without reading
        any: an executor hands each group to one worker (see reportgen.executors)."""
        groups: dict[str, list[Path]] = defaultdict(list)
        for path in self._files():
            groups[_id_from_path(path)].append(path)
        return dict(groups)

    def read_runs(
        self, files: list[Path], progress: Progress | None = None, now: datetime | None = None
    ) -> list[Run]:
        """The runs these files hold, merged by the run id inside them; `now` (the build's
        time, unless the source was given its own) decides whether a run without an exit
        record is still running."""
        fragments: dict[str, list[tuple[FileContents, History]]] = defaultdict(list)
        for done, (path, (contents, history)) in enumerate(self._read_all(files), start=1):
            if progress:
                progress(done, len(files), path.parent.name)
            run_id = contents.run_id or _id_from_path(path)
            fragments[run_id].append((contents, history))
        found = []
        for run_id, parts in fragments.items():
            run, history = self._merge(run_id, parts, now)
            self._histories[run_id] = history
            found.append(run)
        return found

    def _files(self) -> list[Path]:
        if not self.root.exists():
            raise SourceError(
                f"source.path: folder '{self.root}' does not exist "
                "(it should hold W&B run folders such as wandb/offline-run-*)"
            )
        files = list(iter_wandb_files(self.root))
        if not files:
            raise SourceError(
                f"source.path: no run-*.wandb files found under '{self.root}' "
                "(point it at the folder that holds wandb/offline-run-* or wandb/run-* folders)"
            )
        return files

    def history(self, run: Run, keys: Sequence[str] | None = None) -> History:
        """The run's history (already read while listing)."""
        return self._histories[run.id]

    def _read_all(self, files: list[Path]) -> Iterator[tuple[Path, tuple[FileContents, History]]]:
        """Each file's contents and history, in order: from the cache when it has not changed,
        else decoded — by several processes when there is enough to decode to pay for them."""
        cached = {path: self._from_cache(path) for path in files}
        missing = [path for path, hit in cached.items() if hit is None]
        decoded = _decode(missing)
        for path in files:
            hit = cached[path]
            if hit is None:
                before, contents = next(decoded)
                hit = contents, History.from_points(contents.points)
                self._to_cache(path, before, *hit)
            yield path, hit

    def _from_cache(self, path: Path) -> tuple[FileContents, History] | None:
        """A file's cached contents, if the cache holds them for its current (size, mtime)."""
        if self._cache is None:
            return None
        from reportgen.cache import CacheDamaged

        try:
            entry = self._cache.read(str(path.resolve()))
        except CacheDamaged as exc:
            self._cache.cache.warn(
                f"cache: the entry of {path} in {self._cache.path} was damaged ({exc}); "
                "read the file again"
            )
            return None
        if entry is None or entry.history is None:
            return None
        if entry.meta.get("fingerprint") != _fingerprint(path.stat()):
            return None
        return _contents_from_cache(path, entry.meta["contents"]), entry.history

    def _to_cache(
        self, path: Path, before: os.stat_result, contents: FileContents, history: History
    ) -> None:
        """Cache a decoded file, unless it changed while it was read or only just now: a later
        write in the same clock tick could leave its (size, mtime) unchanged."""
        if self._cache is None:
            return
        after = path.stat()
        settled = time.time() - after.st_mtime > _SETTLED_SECONDS
        if settled and _fingerprint(after) == _fingerprint(before):
            meta = {"fingerprint": _fingerprint(before), "contents": _contents_to_dict(contents)}
            self._cache.write(str(path.resolve()), meta, history)

    def _merge(
        self, run_id: str, read: list[tuple[FileContents, History]], moment: datetime | None
    ) -> tuple[Run, History]:
        read = sorted(read, key=lambda part: (part[0].start_time or datetime.min, part[0].mtime))
        parts = [contents for contents, _ in read]
        newest = parts[-1]
        config: dict[str, Any] = {}
        summary: dict[str, Any] = {}
        step_metrics: dict[str, str] = {}
        history = History()
        notes: list[str] = []
        for part, part_history in read:
            _deep_update(config, part.config)
            summary.update(part.summary)
            step_metrics.update(part.step_metrics)
            history = history.merged(part_history) if len(history) else part_history
            notes.extend(_damage_notes(part))
        first = parts[0]
        now = self._now if self._now is not None else (moment.timestamp() if moment else None)
        if now is None:
            now = time.time()
        heartbeat = max(p.mtime for p in parts)
        state, exit_code = _state(parts, now - heartbeat > self.stale_after)
        if len(parts) > 1:
            notes.append(f"merged {len(parts)} folders that share run id {run_id}")
        console = "".join(p.console for p in parts)
        run = Run(
            id=run_id,
            name=newest.name or first.name or run_id,
            state=state,
            project=newest.project,
            entity=newest.entity,
            group=newest.group,
            job_type=newest.job_type,
            notes=newest.notes,
            tags=newest.tags or first.tags,
            created_at=_utc(first.start_time),
            heartbeat_at=datetime.fromtimestamp(heartbeat, tz=timezone.utc),
            exit_code=exit_code,
            config=config,
            summary=summary,
            step_metrics=step_metrics,
            console_tail=tuple(console.splitlines()[-60:]),
            url=None,
            read_notes=tuple(notes),
            locations=tuple(str(p.path.parent) for p in parts),
        )
        return run, history


_SETTLED_SECONDS = 2.0
_CACHED_FIELDS = (
    "run_id", "entity", "project", "name", "group", "job_type", "notes", "tags", "config",
    "summary", "step_metrics", "exit_code", "console", "records", "size", "mtime",
)  # fmt: skip


def _contents_to_dict(contents: FileContents) -> dict[str, Any]:
    data = {name: getattr(contents, name) for name in _CACHED_FIELDS}
    data["tags"] = list(contents.tags)
    data["start_time"] = contents.start_time.isoformat() if contents.start_time else None
    data["damages"] = [[d.offset, d.lost_bytes, d.reason] for d in contents.damages]
    return data


def _contents_from_cache(path: Path, data: dict[str, Any]) -> FileContents:
    """A file's metadata from its cache entry (its history comes from the entry's Parquet)."""
    values = {name: data[name] for name in _CACHED_FIELDS}
    values["tags"] = tuple(values["tags"])
    start = data.get("start_time")
    return FileContents(
        path=path,
        start_time=datetime.fromisoformat(start) if start else None,
        damages=[Damage(*d) for d in data["damages"]],
        **values,
    )


def _fingerprint(stat: os.stat_result) -> dict[str, int]:
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


# Decoding is CPU-bound Python: with several files to read, worker processes use every core.
# Starting them costs about half a second, so small reads stay in this process.
PARALLEL_MIN_BYTES = 32 * 1024 * 1024


def _stat_and_read(path: Path) -> tuple[os.stat_result, FileContents]:
    """A file's stat before reading, and its contents (run in a worker process)."""
    return path.stat(), read_wandb_file(path)


def _decode(paths: list[Path]) -> Iterator[tuple[os.stat_result, FileContents]]:
    """Decode files in order; in parallel when there are several and enough bytes."""
    workers = min(len(paths), os.cpu_count() or 1)
    total = sum(path.stat().st_size for path in paths)
    if workers < 2 or total < PARALLEL_MIN_BYTES:
        yield from map(_stat_and_read, paths)
        return
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield from pool.map(_stat_and_read, paths)


def _id_from_path(path: Path) -> str:
    match = _ID_FROM_NAME.match(path.name)
    return match.group("id") if match else path.stem


def _utc(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=timezone.utc) if moment else None


def _deep_update(tree: dict[str, Any], newer: dict[str, Any]) -> None:
    for key, value in newer.items():
        if isinstance(value, dict) and isinstance(tree.get(key), dict):
            _deep_update(tree[key], value)
        else:
            tree[key] = value


def _state(parts: list[FileContents], stale: bool) -> tuple[str, int | None]:
    """The newest fragment decides: a run that failed and was resumed to success is finished.

    With no exit record in the newest fragment, an earlier failure still stands; otherwise the
    run is killed when its files stopped changing long ago, and running when they did not.
    """
    newest = parts[-1]
    if newest.exit_code is not None:
        return ("finished" if newest.exit_code == 0 else "failed"), newest.exit_code
    failed = [p for p in parts if p.exit_code not in (None, 0)]
    if failed:
        return "failed", failed[-1].exit_code
    return ("killed" if stale else "running"), None


def _damage_notes(part: FileContents) -> list[str]:
    name = f"{part.path.parent.name}/{part.path.name}"
    notes = []
    for damage in part.damages:
        if damage.lost_bytes:
            where = f" at byte {damage.offset}" if damage.offset else ""
            notes.append(
                f"{name}: {damage.reason}{where}; {damage.lost_bytes:,} bytes could not be read"
            )
        else:
            notes.append(f"{name}: {damage.reason}")
    if part.damages and part.records:
        notes.append(f"{name}: {part.records:,} intact records were read")
    return notes
