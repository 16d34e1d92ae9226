"""Local W&B run folders: the embedded default source, no account and no network.

Every `run-<id>.wandb` below the folder is read (symlinks followed, each real file once).
Folders that share a run id (resumed runs, several writer processes of a shared-mode run) are
merged into one run: every fragment's records are kept, one after another in the order the
fragments started; the run's identity and exit come from the fragment that wrote the run and
exit records; console lines are ordered by their own timestamps.

Whether a run without an exit record is still running is judged from the newest timestamp
inside its files (history, console, system stats), compared with the build's time: never from
file modification times, which copying or cloning resets.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import time
import warnings
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reportgen.errors import SourceError
from reportgen.forking import can_fork, usable_cores
from reportgen.runs import Column, History, Run
from reportgen.sources.wandb_file import Damage, FileContents, find_wandb_files, stat_and_read
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
        # False in a process that is itself one of several readers (the local executor's two
        # processes, a Ray task): its files are decoded here, with no worker processes of its own.
        self.decode_in_workers = True
        self._paths: dict[str, list[Path]] = {}  # each run's files, in the order they were given
        # Files read from the cache without their console: the console's tail as a run of that
        # file alone has it, and the entry's metadata to read the whole console with.
        self._cached_consoles: dict[Path, tuple[tuple[str, ...], dict[str, Any]]] = {}
        self._cache: CacheArea | None = cache.area("wandb-offline", {}) if cache else None

    def describe(self) -> dict[str, Any]:
        return {"type": self.kind, "path": str(self.root)}

    @property
    def run_cache(self) -> RunCache | None:
        """The cache this source reads and fills (an executor's workers use the same one)."""
        return self._cache.cache if self._cache else None

    def list_runs(
        self,
        runs: RunsSpec | None = None,
        progress: Progress | None = None,
        now: datetime | None = None,
    ) -> list[Run]:
        """Read every run under the folder (filters are applied by the caller)."""
        files, copy_notes = self._files()
        return self.read_runs(files, progress, now, copy_notes)

    def list_files(self) -> tuple[list[Path], dict[Path, list[str]]]:
        """Every run file under the folder, in the order `list_runs` reads them, without
        reading any; with them, the notes on copies that were read once (by the file read)."""
        return self._files()

    def run_paths(self, run: Run) -> list[Path]:
        """The files `read_runs` merged into this run, in the order they were given."""
        return self._paths[run.id]

    def run_files(self) -> tuple[dict[str, list[Path]], dict[Path, list[str]]]:
        """Every run file under the folder, grouped by the run id in its name, without reading
        any: an executor hands each group to one worker (see reportgen.executors). With them,
        the notes on copies that were read once, by the file that was read, to pass on to the
        worker that reads it."""
        files, copy_notes = self._files()
        groups: dict[str, list[Path]] = defaultdict(list)
        for path in files:
            groups[_id_from_path(path)].append(path)
        return dict(groups), copy_notes

    def read_runs(
        self,
        files: list[Path],
        progress: Progress | None = None,
        now: datetime | None = None,
        copy_notes: dict[Path, list[str]] | None = None,
    ) -> list[Run]:
        """The runs these files hold, merged by the run id inside them; `now` (the build's
        time, unless the source was given its own) decides whether a run without an exit
        record is still running."""
        notes_of = copy_notes or {}
        fragments: dict[str, list[tuple[FileContents, History]]] = defaultdict(list)
        paths: dict[str, list[Path]] = defaultdict(list)
        for done, (path, (contents, history)) in enumerate(self._read_all(files), start=1):
            if progress:
                progress(done, len(files), path.parent.name)
            run_id = contents.run_id or _id_from_path(path)
            fragments[run_id].append((contents, history))
            paths[run_id].append(path)
        # The time runs are judged at: this source's own `now` if it was given one, else the
        # build's (`--now`), else the clock.
        moment = self._now if self._now is not None else (now.timestamp() if now else None)
        if moment is None:
            moment = time.time()
        found = []
        for run_id, parts in fragments.items():
            extra = [n for contents, _ in parts for n in notes_of.get(contents.path, [])]
            tail = None
            if len(parts) == 1 and parts[0][0].path in self._cached_consoles:
                tail = self._cached_consoles.pop(parts[0][0].path)[0]
            else:  # several files: their whole consoles are merged
                parts = [self._with_console(*part) for part in parts]
            run, history = self._merge(run_id, parts, moment, extra, tail)
            self._histories[run_id] = history
            self._paths[run_id] = paths[run_id]
            found.append(run)
        return found

    def _files(self) -> tuple[list[Path], dict[Path, list[str]]]:
        """The run files to read, and notes on the copies among them (by the file read)."""
        if not self.root.exists():
            raise SourceError(
                f"source.path: folder '{self.root}' does not exist "
                "(it should hold W&B run folders such as wandb/offline-run-*)"
            )
        files, copies = find_wandb_files(self.root)
        if not files:
            raise SourceError(
                f"source.path: no run-*.wandb files found under '{self.root}' "
                "(point it at the folder that holds wandb/offline-run-* or wandb/run-* folders)"
            )
        copy_notes: dict[Path, list[str]] = defaultdict(list)
        for copy, original in copies:
            copy_notes[original].append(
                f"{_short(copy)} is the same file as {_short(original)}; it was read once"
            )
        return files, dict(copy_notes)

    def history(self, run: Run, keys: Sequence[str] | None = None) -> History:
        """The run's history (already read while listing)."""
        return self._histories[run.id]

    def _read_all(self, files: list[Path]) -> Iterator[tuple[Path, tuple[FileContents, History]]]:
        """Each file's contents and history, in order: from the cache when it has not changed,
        else decoded and stored in the cache — by worker processes when there is enough to
        decode to pay for them (see `_decode`)."""
        cached = {path: self._from_cache(path) for path in files}
        missing = [path for path, hit in cached.items() if hit is None]
        decoded = _decode(missing, self._to_cache if self._cache else None, self.decode_in_workers)
        for path in files:
            hit = cached[path]
            yield path, next(decoded) if hit is None else hit
        next(decoded, None)  # its end: the cache writes done, any that raised raising here

    def _from_cache(self, path: Path) -> tuple[FileContents, History] | None:
        """A file's cached contents, if the cache holds them for its current (size, mtime)."""
        if self._cache is None:
            return None
        from reportgen.cache import CacheDamaged

        try:
            info = path.stat()
            entry = self._cache.read(str(path.resolve()))
        except CacheDamaged as exc:
            self._cache.cache.warn(
                f"cache: the entry of {path} in {self._cache.path} was damaged ({exc}); "
                "read the file again"
            )
            return None
        except OSError:
            return None
        if entry is None or entry.history is None:
            return None
        if entry.meta.get("fingerprint") != _fingerprint(info):
            return None
        try:
            contents = _contents_from_cache(path, entry.meta["contents"])
            tail = tuple(str(line) for line in entry.meta["contents"]["console_tail"])
        except (KeyError, TypeError, ValueError):
            return None  # an entry of another shape: read the file again
        self._cached_consoles[path] = (tail, entry.meta)
        return contents, entry.history

    def _with_console(
        self, contents: FileContents, history: History
    ) -> tuple[FileContents, History]:
        """A file read from the cache with its whole console, from the entry's side file
        (`<entry>.console.json`); read again from the file when that cannot be trusted."""
        cached = self._cached_consoles.pop(contents.path, None)
        if cached is None or self._cache is None:
            return contents, history  # decoded: it has its console
        from reportgen.cache import CacheDamaged

        try:
            data = self._cache.read_side(str(contents.path.resolve()), CONSOLE_FILE, cached[1])
            console = list(map(tuple, json.loads(data)))  # the floats and texts it was given
        except (CacheDamaged, OSError, ValueError, TypeError) as exc:
            self._cache.cache.warn(
                f"cache: the entry of {contents.path} in {self._cache.path} was damaged "
                f"({exc}); read the file again"
            )
            _, fresh = stat_and_read(contents.path)
            return fresh, file_history(fresh)
        return replace(contents, console=console), history

    def _to_cache(
        self, path: Path, before: os.stat_result | None, contents: FileContents, history: History
    ) -> None:
        """Cache a decoded file, unless it changed while it was read or only just now: a later
        write in the same clock tick could leave its (size, mtime) unchanged."""
        if self._cache is None or before is None:
            return
        try:
            after = path.stat()
        except OSError:
            return
        settled = time.time() - after.st_mtime > _SETTLED_SECONDS
        if settled and _fingerprint(after) == _fingerprint(before):
            meta = {"fingerprint": _fingerprint(before), "contents": _contents_to_dict(contents)}
            console = json.dumps([[moment, line] for moment, line in contents.console])
            sides = {CONSOLE_FILE: console.encode("utf-8")}
            self._cache.write(str(path.resolve()), meta, history, sides)

    def _merge(
        self,
        run_id: str,
        read: list[tuple[FileContents, History]],
        now: float,
        extra_notes: list[str],
        console_tail: tuple[str, ...] | None = None,
    ) -> tuple[Run, History]:
        """One run from its files' contents. `console_tail`: the tail of a lone file's console,
        as its cache entry keeps it (else it comes from the parts' consoles)."""
        read = sorted(read, key=lambda part: _fragment_order(part[0]))
        parts = [contents for contents, _ in read]
        identity = _identity_fragment(parts)
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
        # The identity fragment's config and summary have the last word (a run of one
        # fragment has them already).
        if len(parts) > 1:
            _deep_update(config, identity.config)
            summary.update(identity.summary)
        stamps = [p.last_time for p in parts if p.last_time is not None]
        last_alive = max(stamps) if stamps else None
        stale = last_alive is None or now - last_alive > self.stale_after
        state, exit_code = _state(parts, identity, stale)
        if len(parts) > 1:
            notes.append(
                f"merged {len(parts)} folders that share run id {run_id} "
                f"({', '.join(p.path.parent.name for p in parts)})"
            )
        if last_alive is None and exit_code is None:
            notes.append("its files hold no timestamp: whether it is still running is unknown")
        notes.extend(extra_notes)
        starts = [p.start_time for p in parts if p.start_time is not None]
        run = Run(
            id=run_id,
            name=identity.name or next((p.name for p in parts if p.name), None) or run_id,
            state=state,
            project=identity.project or next((p.project for p in parts if p.project), None),
            entity=identity.entity or next((p.entity for p in parts if p.entity), None),
            group=identity.group,
            job_type=identity.job_type,
            notes=identity.notes,
            tags=identity.tags,
            created_at=_utc(min(starts)) if starts else None,
            heartbeat_at=(
                datetime.fromtimestamp(last_alive, tz=timezone.utc) if last_alive else None
            ),
            exit_code=exit_code,
            config=config,
            summary=summary,
            step_metrics=step_metrics,
            console_tail=_console_tail(parts) if console_tail is None else console_tail,
            url=None,
            read_notes=tuple(notes),
            locations=tuple(str(p.path.parent) for p in parts),
        )
        return run, history


def file_history(contents: FileContents) -> History:
    """One file's history (rows numbered from 0 in the file)."""
    return History(
        {key: Column(rows, steps, values) for key, (rows, steps, values) in contents.points.items()}
    )


def _fragment_order(part: FileContents) -> tuple[float, str]:
    """Fragments in the order they started (the file's own start time, never its mtime)."""
    start = part.start_time.replace(tzinfo=timezone.utc).timestamp() if part.start_time else None
    return (start if start is not None else (part.last_time or 0.0), str(part.path))


def _identity_fragment(parts: list[FileContents]) -> FileContents:
    """The fragment that speaks for the run (name, tags, group, exit): the newest one that
    wrote the run record as the run's primary writer (with its metadata records). A fragment
    cut off before its run record, or a secondary process of a shared-mode run, never names
    the run nor decides its state while a primary fragment exists. `parts` is in start order."""
    ranked = sorted(
        enumerate(parts),
        key=lambda item: (item[1].has_run_record, item[1].writes_metadata, item[0]),
    )
    return ranked[-1][1]


def _console_tail(parts: list[FileContents]) -> tuple[str, ...]:
    """The last console lines of every fragment, ordered by their own timestamps: the crash
    quote of any writer process is searched, and a traceback is not buried under another
    process's later-starting log."""
    lines = sorted(
        ((moment, order, line) for order, p in enumerate(parts) for moment, line in p.console),
        key=lambda item: (item[0], item[1]),
    )
    text = "".join(line for _, _, line in lines)
    return tuple(text.splitlines()[-CONSOLE_TAIL_LINES * len(parts) :])


def _short(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


_SETTLED_SECONDS = 2.0
CONSOLE_TAIL_LINES = 60
CONSOLE_FILE = "console.json"  # a cache entry's side file: the file's [moment, text] pairs
_CACHED_FIELDS = (
    "run_id", "entity", "project", "name", "group", "job_type", "notes", "tags", "config",
    "summary", "step_metrics", "exit_code", "records", "size", "mtime", "has_run_record",
    "last_time", "history_rows", "writes_metadata",
)  # fmt: skip


def _contents_to_dict(contents: FileContents) -> dict[str, Any]:
    data = {name: getattr(contents, name) for name in _CACHED_FIELDS}
    data["tags"] = list(contents.tags)
    data["start_time"] = contents.start_time.isoformat() if contents.start_time else None
    data["damages"] = [[d.offset, d.lost_bytes, d.reason] for d in contents.damages]
    # The console itself goes to a file of its own (CONSOLE_FILE): a run of this file alone
    # needs only the tail, and the whole text is most of the metadata's bytes.
    data["console_tail"] = list(_console_tail([contents]))
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
        console=[],  # in the entry's CONSOLE_FILE, read when the run has several files
        **values,
    )


def _fingerprint(stat: os.stat_result) -> dict[str, int]:
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}


# Decoding is CPU-bound Python: with several files to read, worker processes use every core.
# Forked workers start in milliseconds (they inherit the reader's modules), so only a read of
# a few files stays in this process.
PARALLEL_MIN_BYTES = 4 * 1024 * 1024

Store = Callable[[Path, "os.stat_result | None", FileContents, History], None]


def _decode(
    paths: list[Path], store: Store | None, in_workers: bool = True
) -> Iterator[tuple[FileContents, History]]:
    """Each file's contents and history, in order; `store` (the cache's writer) is given each
    file decoded, by the process that decoded it. Several files with enough bytes between them
    are decoded by forked worker processes (unless `in_workers` is False), each taking the next file as it finishes one (and
    storing its cache entry itself: only the decoded arrays come back). Without fork (macOS,
    Windows) or with one core, this process decodes, and a thread beside it stores the
    entries: most of a write is waiting for the disk, which then overlaps the decoding."""
    workers = min(len(paths), usable_cores())
    total = sum(_size(path) for path in paths)
    if in_workers and workers >= 2 and total >= PARALLEL_MIN_BYTES and can_fork():
        yield from _decode_in_workers(paths, store, workers)
        return
    writer = ThreadPoolExecutor(max_workers=1) if store is not None and paths else None
    writes = []
    try:
        for path in paths:
            before, contents = stat_and_read(path)
            history = file_history(contents)
            if writer is not None and store is not None:
                writes.append(writer.submit(store, path, before, contents, history))
            yield contents, history
        for write in writes:
            write.result()  # a write that failed fails here, as it would have in line
    finally:
        if writer is not None:
            writer.shutdown(wait=True)


def _decode_in_workers(
    paths: list[Path], store: Store | None, workers: int
) -> Iterator[tuple[FileContents, History]]:
    """`_decode` on forked workers. The largest files are handed out first, so that no worker
    is left with a big file at the end while the others wait; results come back in order."""
    context = multiprocessing.get_context("fork")
    order = sorted(range(len(paths)), key=lambda at: -_size(paths[at]))
    # A build's progress line runs in a thread; Python >= 3.12 warns on any fork with threads.
    # The workers only read files and write cache entries: never what that thread may hold.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=context,
            initializer=_start_worker,
            initargs=(store,),
        )
    try:
        futures = {at: pool.submit(_read_in_worker, paths[at]) for at in order}
        for at in range(len(paths)):
            yield futures[at].result()
    finally:
        # Stopped (Ctrl-C, --timeout, an error): files not started are not read.
        pool.shutdown(wait=True, cancel_futures=True)


# What a forked decoding worker stores each file with: inherited, never pickled.
_worker_store: Store | None = None


def _start_worker(store: Store | None) -> None:
    """Ctrl-C and SIGTERM are the parent's to handle: it stops the build and ends the pool."""
    import signal

    global _worker_store
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    _worker_store = store


def _read_in_worker(path: Path) -> tuple[FileContents, History]:
    """Decode one file, store it in the cache, and send back what the parent merges (the
    contents without their points: the history holds the same arrays)."""
    before, contents = stat_and_read(path)
    history = file_history(contents)
    if _worker_store is not None:
        _worker_store(path, before, contents, history)
    return replace(contents, points={}), history


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


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


def _state(
    parts: list[FileContents], identity: FileContents, stale: bool
) -> tuple[str, int | None]:
    """The identity fragment's exit record decides: a run that failed and was resumed to
    success is finished. Without one, an earlier failure still stands; otherwise the run is
    killed when the newest moment its files record is older than `stale_after` before the
    build's time, and running when it is not."""
    if identity.exit_code is not None:
        return ("finished" if identity.exit_code == 0 else "failed"), identity.exit_code
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
    elif not part.damages and not part.records:
        notes.append(f"{name}: the file holds no record")
    return notes
