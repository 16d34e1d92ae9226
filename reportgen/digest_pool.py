"""The local executor's map on both cores: half the chosen runs digested by a forked worker.

On a warm rebuild every run comes from the cache, and digesting (aliases, sampling, health
checks, the run's report) is most of what is left: a CPU-bound loop over independent runs. A
worker forked after the runs were read already holds their histories, so it is handed only
indices and returns only digests. The runs are dealt out alternately (neighbouring runs tend to
be alike in size), and the digests come back in the runs' order: the report is byte for byte
the one a single process builds.

A run folder is read on the two processes as well (`read_and_digest`, below): the worker is
forked before anything is read, and each process takes the next few runs' files whenever it
is free, reads and digests them, so that both finish together however unevenly the files
cost to decode.

Where fork is not the platform's safe default (macOS, Windows), with one core, or with few
runs (a fork and the pickled digests cost more than they save), the loop runs in this process
as before. A worker that dies leaves its runs to this process; an error inside `digest_run`
is raised here as it would be without the worker.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import queue
import signal
import threading
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from itertools import accumulate
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reportgen.digest import RunDigest, digest_run
from reportgen.forking import can_fork
from reportgen.runs import History, Run
from reportgen.select import filter_runs, may_be_chosen
from reportgen.spec import Spec

if TYPE_CHECKING:
    from reportgen.sources.offline import OfflineSource

Progress = Callable[[int, int, str], None]
Taken = list[tuple[Run, list[int]]]  # runs read, each with its files' places in the folder

MIN_RUNS = 24  # below this a fork and the pickled digests cost about what they save

# What the forked worker reads: set just before the fork, cleared after the map.
_shared: tuple[Spec, Sequence[tuple[Run, History]], datetime] | None = None


def digest_runs(
    spec: Spec, chosen: Sequence[tuple[Run, History]], now: datetime, workers: int | None = None
) -> list[RunDigest]:
    """`digest_run` of every (run, history), in order; on two processes when it pays.
    `workers`: 1 forces one process, 2 forces the worker (tests); None decides."""
    if workers is None:
        workers = 2 if _worth_forking(len(chosen)) else 1
    if workers < 2 or not chosen:
        return [digest_run(spec, run, history, now) for run, history in chosen]
    global _shared
    _shared = (spec, chosen, now)
    theirs = list(range(1, len(chosen), 2))
    digests: list[RunDigest | None] = [None] * len(chosen)
    context = multiprocessing.get_context("fork")
    receiving, sending = context.Pipe(duplex=False)
    worker = context.Process(target=_worker, args=(theirs, sending), daemon=True)
    gc.freeze()  # the worker's collections skip what it inherited: fewer pages copied
    try:
        _start(worker)
        gc.unfreeze()
        sending.close()
        for at in range(0, len(chosen), 2):
            run, history = chosen[at]
            digests[at] = digest_run(spec, run, history, now)
        returned = _receive(receiving, len(theirs))
    finally:
        gc.unfreeze()
        _shared = None
        receiving.close()
        if worker.is_alive():
            worker.terminate()  # the build stopped (Ctrl-C, an error): the worker's share is moot
        worker.join()
    for at, digest in zip(theirs, returned, strict=True):
        run, history = chosen[at]
        if digest is None:  # the worker failed: this process digests its runs (and raises
            digests[at] = digest_run(spec, run, history, now)  # what the worker ran into)
        else:  # the run was left out of the pickle: this process holds it already
            digests[at] = replace(digest, run=replace(run, logged_steps=digest.span.steps))
    return [digest for digest in digests if digest is not None]


_STOPPING = {signal.SIGINT, signal.SIGTERM}


def _start(worker: multiprocessing.process.BaseProcess) -> None:
    """Fork the worker with Ctrl-C and SIGTERM held back until it has set its own handlers:
    one arriving in between would find this process's handlers in the worker, which would
    print a traceback. In this process they are delivered as soon as the fork is done."""
    held = signal.pthread_sigmask(signal.SIG_BLOCK, _STOPPING)
    try:
        worker.start()
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, held)


def _receive(receiving: Connection, count: int) -> list[RunDigest | None]:
    """The worker's digests; Nones when it sent none (it raised, or died)."""
    try:
        returned: list[RunDigest] = receiving.recv()
    except (EOFError, OSError):
        return [None] * count
    return list(returned)


def _worth_forking(runs: int) -> bool:
    return runs >= MIN_RUNS and (os.cpu_count() or 1) >= 2 and can_fork()


def _worker(indices: list[int], sending: Connection) -> None:
    """The forked worker: the digests of these runs, each without its run (the parent holds
    it). Ctrl-C and SIGTERM are the parent's to handle: it stops the build and ends this."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPPING)  # held back since the fork
    assert _shared is not None, "digest_pool's worker was not forked from digest_runs"
    spec, chosen, now = _shared
    done = []
    try:
        for at in indices:
            run, history = chosen[at]
            digest = digest_run(spec, run, history, now)
            done.append(replace(digest, run=None))  # type: ignore[arg-type]
    except Exception:
        sending.close()  # nothing sent: the parent digests these runs, and raises it there
        return
    sending.send(done)
    sending.close()


# --- a run folder: each process reads, as well as digests, the files it takes -----------------

# What the forked reader reads: set just before the fork, cleared after the map.
_split: tuple[Spec, OfflineSource, _Shares, dict[Path, list[str]], datetime] | None = None


def read_and_digest(
    spec: Spec, source: OfflineSource, now: datetime, progress: Progress | None = None
) -> tuple[int, list[RunDigest]] | None:
    """A run folder read and digested on two processes: `(runs found, digests of the chosen
    runs in filter_runs' order)`, or None when it does not pay (few runs, one core, no fork),
    and the caller reads as before.

    Reading is most of the work (decoding the files on a cold build, a third of it from the
    cache on a warm rebuild), so the worker is forked before anything is read. The files are
    taken a few groups at a time (a group: the files named for one run), largest first, each
    process taking the next few whenever it is done with those before (see `_Shares`), and
    digesting each run it read that the filters let through (a run is digested on its own:
    only the order of the chosen runs, newest first, needs them all). What a byte costs to
    decode and to digest differs a great deal between files (huge summaries, long consoles,
    dense histories), and so both processes finish at about the same moment whatever the
    files hold. The files the cache does not hold are decoded, and stored in the cache, by the
    process that took them, so that no history crosses between processes: the worker sends
    back the runs' metadata and their digests, and this process orders them (`filter_runs`,
    as ever).
    A run whose files were taken in more than one take (a copied or renamed file) is read
    again here from all its files, and digested here. The runs are ordered as one process
    orders them (by their first file), so the report is byte for byte the one a single
    process builds. A worker that fails leaves the runs it took to this process, which then
    raises what the worker ran into.
    """
    files, copy_notes = source.list_files()
    named: dict[str, list[int]] = {}
    for index, path in enumerate(files):
        named.setdefault(_named_run(path), []).append(index)
    if spec.runs.limit is not None or not _worth_forking(len(named)):
        return None
    context = multiprocessing.get_context("fork")
    shares = _Shares(files, list(named.values()), context)
    global _split
    _split = (spec, source, shares, copy_notes, now)
    source.decode_in_workers = False  # each of the two processes decodes what it takes
    receiving, sending = context.Pipe(duplex=False)
    worker = context.Process(target=_reader, args=(sending,), daemon=True)
    gc.freeze()
    try:
        _start(worker)
        gc.unfreeze()
        sending.close()
        return _lead(spec, source, shares, copy_notes, now, progress, receiving, worker.is_alive)
    finally:
        gc.unfreeze()
        _split = None
        source.decode_in_workers = True
        receiving.close()
        if worker.is_alive():
            worker.terminate()
        worker.join()


class _Shares:
    """The groups of files of a folder, handed out to whichever of the two processes asks
    next, from a counter in memory both share. Largest groups first (by bytes, each file
    counted `FILE_COST` more), a few at a time: each take is the next groups that hold a
    quarter of the bytes not yet taken (at least 1/400 of them all). The first takes are big
    (one read of several files costs less than several reads: the cache's writes overlap the
    decoding), the last ones small, so the process that takes the last finishes soon after
    the other."""

    def __init__(self, files: list[Path], groups: list[list[int]], context: Any) -> None:
        sizes = [_size(path) + FILE_COST for path in files]
        weights = {id(group): sum(sizes[at] for at in group) for group in groups}
        self.files = files
        self.order = sorted(groups, key=lambda group: -weights[id(group)])
        self._before = list(accumulate((len(group) for group in self.order), initial=0))
        held = list(accumulate((weights[id(group)] for group in self.order), initial=0))
        total = held[-1]
        self._ends = [  # a take that starts at a place in `order` ends before this one
            max(at + 1, bisect_left(held, held[at] + max((total - held[at]) / 4, total / 400)))
            for at in range(len(self.order))
        ]
        self._next = context.RawValue("q", 0)
        self._lock = context.Lock()
        self._alone = False

    def take(self, other_alive: Callable[[], bool]) -> range | None:
        """The places in `order` of the next groups, or None when every group is taken."""
        while not self._alone and not self._lock.acquire(timeout=0.25):
            # The other process may have ended while it held the lock: take turns no longer.
            self._alone = not other_alive()
        try:
            at = self._next.value
            end = self._ends[at] if at < len(self.order) else at
            self._next.value = end
        finally:
            if not self._alone:
                self._lock.release()
        return range(at, min(end, len(self.order))) if at < len(self.order) else None

    def read_and_digest(
        self,
        spec: Spec,
        source: OfflineSource,
        copy_notes: dict[Path, list[str]],
        now: datetime,
        other_alive: Callable[[], bool],
        progress: Progress | None = None,
        after_take: Callable[[Taken, dict[str, RunDigest]], None] | None = None,
    ) -> tuple[Taken, dict[str, RunDigest]]:
        """Groups taken, read and digested until none is left: each run read, with its files'
        places (a run whose files are in two takes is here twice, each time with one take's),
        and the digests of those the filters let through, by run id. A run whose
        digest raised has none: it is digested again where the runs are put in order, and
        raises there. `after_take` is given each take's runs and digests as it ends."""
        index = {path: at for at, path in enumerate(self.files)}
        total = len(self.files)
        read: Taken = []
        digests: dict[str, RunDigest] = {}
        while (taking := self.take(other_alive)) is not None:
            read_before, made = len(read), {}

            def reading(
                done: int, _: int, item: str, before: int = self._before[taking[0]]
            ) -> None:
                if progress:  # the files of the groups taken before, by either process
                    progress(min(total, before + done), total, item)

            # In the folder's order, as one process reads them (a run's files merge in it).
            paths = [self.files[at] for at in sorted(a for p in taking for a in self.order[p])]
            for run in source.read_runs(paths, reading, now, copy_notes):
                read.append((run, [index[path] for path in source.run_paths(run)]))
                if may_be_chosen(run, spec.runs, now):
                    try:
                        digests[run.id] = made[run.id] = digest_run(
                            spec, run, source.history(run), now
                        )
                    except Exception:
                        digests.pop(run.id, None)
                        made.pop(run.id, None)
            if after_take is not None:
                after_take(read[read_before:], made)
        return read, digests


# What a file costs beyond its bytes (opening it, storing its cache entry, digesting its run),
# in bytes of decoding that cost as much.
FILE_COST = 256 * 1024


def _lead(
    spec: Spec,
    source: OfflineSource,
    shares: _Shares,
    copy_notes: dict[Path, list[str]],
    now: datetime,
    progress: Progress | None,
    worker: Connection,
    worker_alive: Callable[[], bool],
) -> tuple[int, list[RunDigest]]:
    """This process's side of `read_and_digest`."""
    files = shares.files
    inbox = _Inbox(worker)
    mine, digests = shares.read_and_digest(
        spec, source, copy_notes, now, worker_alive, progress, inbox.between_takes
    )
    sent = inbox.everything()
    if sent is None:  # the worker failed to read what it took: read every file here
        everything = source.read_runs(files, progress, now, copy_notes)
        return len(everything), digest_runs(
            spec,
            [(run, source.history(run)) for run in filter_runs(everything, spec.runs, now)],
            now,
        )
    theirs, their_digests, warnings = sent
    for warning in warnings:
        source.run_cache.warn(warning)  # type: ignore[union-attr]
    places: dict[str, list[int]] = defaultdict(list)  # run id → its files, from every take
    reads: Counter[str] = Counter()  # run id → the takes it was read from
    runs: dict[str, Run] = {}
    for run, at in mine + theirs:
        places[run.id] += at
        reads[run.id] += 1
        runs[run.id] = run
    for run, _ in theirs:
        digest = their_digests.get(run.id)
        if digest is not None and reads[run.id] == 1:  # the run was left out of the pickle
            digests[run.id] = replace(digest, run=replace(run, logged_steps=digest.span.steps))
    held = {run.id for run, _ in theirs if reads[run.id] == 1}  # histories the worker holds
    again = {run_id for run_id, count in reads.items() if count > 1}
    if again:  # runs with files in more than one take: merged here from all their files
        for run_id in again:
            digests.pop(run_id, None)
        merged = sorted({at for run_id in again for at in places[run_id]})
        for run in source.read_runs([files[at] for at in merged], None, now, copy_notes):
            runs[run.id] = run
    if progress:
        progress(len(files), len(files), "")
    first = {run_id: min(at) for run_id, at in places.items()}  # one process's order
    everything = sorted(runs.values(), key=lambda run: first[run.id])
    chosen = filter_runs(everything, spec.runs, now)
    for run in chosen:
        if run.id not in digests:  # its digest raised (or was not made): it raises here
            if run.id in held:
                paths = [files[at] for at in places[run.id]]
                source.read_runs(paths, None, now, copy_notes)
            digests[run.id] = digest_run(spec, run, source.history(run), now)
    return len(everything), [digests[run.id] for run in chosen]


def _named_run(path: Path) -> str:
    """The run id in a file's name (`run-<id>.wandb`): files named alike are read together."""
    name = path.name
    return name[4:-6] if name.startswith("run-") and name.endswith(".wandb") else path.stem


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


class _Inbox:
    """What the worker of `read_and_digest` sends: each take's runs and digests as the take
    ends, then its warnings. This process receives them whenever it is between two takes of
    its own, so that little is left to receive (and unpickle) once both are done."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.runs: Taken = []
        self.digests: dict[str, RunDigest] = {}
        self.warnings: list[str] | None = None  # set by the worker's last message
        self.closed = False

    def between_takes(self, *_: Any) -> None:
        self._receive(wait=False)

    def everything(self) -> tuple[Taken, dict[str, RunDigest], list[str]] | None:
        """All the worker sent; None when it did not get to its end (it raised, or died):
        then what it sent is not used, and this process reads every file."""
        self._receive(wait=True)
        if self.warnings is None:
            return None
        return self.runs, self.digests, self.warnings

    def _receive(self, *, wait: bool) -> None:
        while not self.closed and self.warnings is None and (wait or self.connection.poll()):
            try:
                message = self.connection.recv()
            except (EOFError, OSError):
                self.closed = True
                return
            if isinstance(message, list):  # the worker's warnings: it is done
                self.warnings = message
            else:
                runs, digests = message
                self.runs += runs
                self.digests.update(digests)


def _reader(connection: Connection) -> None:
    """The forked worker of `read_and_digest`: read and digest the groups of files it takes,
    and send the runs' metadata and their digests (each without its run: the parent holds it),
    a take at a time, from a thread (this one goes on reading while the parent is busy), then
    the warnings it gave (the end)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, _STOPPING)  # held back since the fork
    assert _split is not None, "digest_pool's reader was not forked from read_and_digest"
    spec, source, shares, copy_notes, now = _split
    parent = os.getppid()
    cache = source.run_cache
    warned = len(cache.warnings) if cache else 0
    outbox: queue.SimpleQueue[Any] = queue.SimpleQueue()
    sender = threading.Thread(target=_send_each, args=(outbox, connection), daemon=True)
    sender.start()

    def taken(read: Taken, digests: dict[str, RunDigest]) -> None:
        bare = {  # the runs are left out of the pickle: the parent holds them
            run_id: replace(digest, run=None)  # type: ignore[arg-type]
            for run_id, digest in digests.items()
        }
        outbox.put((read, bare))

    try:
        shares.read_and_digest(
            spec, source, copy_notes, now, lambda: os.getppid() == parent, after_take=taken
        )
    except Exception:  # no end sent: the parent reads every file, and raises it there
        outbox.put(None)
    else:
        outbox.put(cache.warnings[warned:] if cache else [])
    sender.join()
    connection.close()


def _send_each(outbox: queue.SimpleQueue[Any], connection: Connection) -> None:
    """Send what is put in `outbox` until its end: the warnings (a list), or None (the worker
    failed, and sends no end)."""
    while (message := outbox.get()) is not None:
        try:
            connection.send(message)
        except OSError:  # the parent has gone: nothing more to send
            return
        if isinstance(message, list):
            return
