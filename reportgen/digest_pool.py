"""The local executor's map on both cores: half the chosen runs digested by a forked worker.

On a warm rebuild every run comes from the cache, and digesting (aliases, sampling, health
checks, the run's report) is most of what is left: a CPU-bound loop over independent runs. A
worker forked after the runs were read already holds their histories, so it is handed only
indices and returns only digests. The runs are dealt out alternately (neighbouring runs tend to
be alike in size), and the digests come back in the runs' order: the report is byte for byte
the one a single process builds.

Where fork is not the platform's safe default (macOS, Windows), with one core, or with few
runs (a fork and the pickled digests cost more than they save), the loop runs in this process
as before. A worker that dies leaves its runs to this process; an error inside `digest_run`
is raised here as it would be without the worker.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reportgen.digest import RunDigest, digest_run
from reportgen.runs import History, Run
from reportgen.select import filter_runs
from reportgen.spec import Spec

if TYPE_CHECKING:
    from reportgen.sources.offline import OfflineSource

Progress = Callable[[int, int, str], None]

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
        worker.start()
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


def _receive(receiving: Connection, count: int) -> list[RunDigest | None]:
    """The worker's digests; Nones when it sent none (it raised, or died)."""
    try:
        returned: list[RunDigest] = receiving.recv()
    except (EOFError, OSError):
        return [None] * count
    return list(returned)


def _worth_forking(runs: int) -> bool:
    return (
        runs >= MIN_RUNS
        and (os.cpu_count() or 1) >= 2
        and sys.platform == "linux"
        and "fork" in multiprocessing.get_all_start_methods()
    )


def _worker(indices: list[int], sending: Connection) -> None:
    """The forked worker: the digests of these runs, each without its run (the parent holds
    it). Ctrl-C and SIGTERM are the parent's to handle: it stops the build and ends this."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
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


# --- a warm rebuild of a run folder: each process reads, as well as digests, its share --------

# What the forked reader reads: set just before the fork, cleared after the map.
_split: (
    tuple[Spec, OfflineSource, list[Path], list[int], dict[Path, list[str]], datetime] | None
) = None


def read_and_digest(
    spec: Spec, source: OfflineSource, now: datetime, progress: Progress | None = None
) -> tuple[int, list[RunDigest]] | None:
    """A run folder read and digested on two processes: `(runs found, digests of the chosen
    runs in filter_runs' order)`, or None when it does not pay (few runs, one core, no fork),
    and the caller reads as before.

    Reading is most of the work (decoding the files on a cold build, a third of it from the
    cache on a warm rebuild), so the worker is forked before anything is read: each process
    reads its share of the files (whole groups of files named for one run; the files the cache
    does not hold are decoded, and stored in the cache, by the process whose share they are,
    so that no history crosses between processes), the worker sends back the runs' metadata
    only, this process chooses among all of them (`filter_runs`, as ever), and each process
    digests the chosen runs it holds.
    A run whose files turn out to be in both shares (a copied or renamed file) is read again
    here from all its files. The runs are ordered as one process orders them (by their first
    file), so the report is byte for byte the one a single process builds. A worker that
    fails leaves its share to this process, which then raises what the worker ran into.
    """
    files, copy_notes = source.list_files()
    groups: dict[str, list[int]] = {}
    for index, path in enumerate(files):
        groups.setdefault(_named_run(path), []).append(index)
    if spec.runs.limit is not None or not _worth_forking(len(groups)):
        return None
    theirs = _deal(files, list(groups.values()))
    mine = [at for at in range(len(files)) if at not in theirs]
    global _split
    _split = (spec, source, files, sorted(theirs), copy_notes, now)
    source.decode_in_workers = False  # each of the two processes decodes its own share
    context = multiprocessing.get_context("fork")
    here, there = context.Pipe(duplex=True)
    worker = context.Process(target=_reader, args=(there,), daemon=True)
    gc.freeze()
    try:
        worker.start()
        gc.unfreeze()
        there.close()
        return _lead(spec, source, files, mine, copy_notes, now, progress, here)
    finally:
        gc.unfreeze()
        _split = None
        source.decode_in_workers = True
        here.close()
        if worker.is_alive():
            worker.terminate()
        worker.join()


def _lead(
    spec: Spec,
    source: OfflineSource,
    files: list[Path],
    mine: list[int],
    copy_notes: dict[Path, list[str]],
    now: datetime,
    progress: Progress | None,
    worker: Connection,
) -> tuple[int, list[RunDigest]]:
    """This process's side of `read_and_digest`."""
    total = len(files)
    share = max(len(mine), 1)

    def reading(done: int, _: int, item: str) -> None:  # the worker reads as fast, meanwhile
        if progress:
            progress(min(total, done * total // share), total, item)

    index = {path: at for at, path in enumerate(files)}
    first: dict[str, int] = {}  # run id → the position of its first file (one process's order)
    runs: dict[str, Run] = {}
    for run in source.read_runs([files[at] for at in mine], reading, now, copy_notes):
        runs[run.id] = run
        first[run.id] = index[source.run_paths(run)[0]]
    sent = _receive_any(worker)
    if sent is None:  # the worker failed to read its share: read every file here
        everything = source.read_runs(files, progress, now, copy_notes)
        return len(everything), digest_runs(
            spec,
            [(run, source.history(run)) for run in filter_runs(everything, spec.runs, now)],
            now,
        )
    their_runs, their_paths, warnings = sent
    for warning in warnings:
        source.run_cache.warn(warning)  # type: ignore[union-attr]
    held: dict[str, list[int]] = {}  # the worker's runs: their files
    both: set[str] = set()
    for run, at in zip(their_runs, their_paths, strict=True):
        if run.id in runs:
            both.add(run.id)
        runs.setdefault(run.id, run)
        held[run.id] = at
        first[run.id] = min(first.get(run.id, at[0]), at[0])
    if both:  # runs with files in both shares: merged here from all their files
        again = sorted(
            {at for run_id in both for at in held.pop(run_id)}
            | {index[p] for run_id in both for p in source.run_paths(runs[run_id])}
        )
        for run in source.read_runs([files[at] for at in again], None, now, copy_notes):
            runs[run.id] = run
    if progress:
        progress(total, total, "")
    everything = sorted(runs.values(), key=lambda run: first[run.id])
    chosen = filter_runs(everything, spec.runs, now)
    theirs = [run for run in chosen if run.id in held]
    worker.send([run.id for run in theirs])
    digests = {
        run.id: digest_run(spec, run, source.history(run), now)
        for run in chosen
        if run.id not in held
    }
    returned = _receive_any(worker)
    if returned is None:  # the worker failed: its chosen runs are read and digested here
        again = sorted(at for run in theirs for at in held[run.id])
        source.read_runs([files[at] for at in again], None, now, copy_notes)
        for run in theirs:
            digests[run.id] = digest_run(spec, run, source.history(run), now)
    else:
        for run, digest in zip(theirs, returned, strict=True):
            digests[run.id] = replace(digest, run=replace(run, logged_steps=digest.span.steps))
    return len(everything), [digests[run.id] for run in chosen]


def _named_run(path: Path) -> str:
    """The run id in a file's name (`run-<id>.wandb`): files named alike are read together."""
    name = path.name
    return name[4:-6] if name.startswith("run-") and name.endswith(".wandb") else path.stem


def _deal(files: list[Path], groups: list[list[int]]) -> set[int]:
    """The worker's files: whole groups, dealt in turn to whichever share has fewer bytes so far
    (the cost of a cached run follows its size). Even shares: the worker also pickles its
    digests, about what the reduce after the map costs this process."""
    sizes = [_size(path) for path in files]
    mine = theirs = 0
    dealt: set[int] = set()
    for group in groups:
        size = sum(sizes[at] for at in group) + 1
        if theirs <= mine * WORKER_SHARE:
            theirs += size
            dealt.update(group)
        else:
            mine += size
    return dealt


WORKER_SHARE = 1.0  # the worker's bytes for each byte this process reads


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _receive_any(connection: Connection) -> Any:
    """What the other process sent; None when it sent nothing (it raised, or died)."""
    try:
        return connection.recv()
    except (EOFError, OSError):
        return None


def _reader(connection: Connection) -> None:
    """The forked worker of `read_and_digest`: read its share, send the runs' metadata, digest
    the runs it is asked for, send the digests (each without its run: the parent holds it)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    assert _split is not None, "digest_pool's reader was not forked from read_and_digest"
    spec, source, files, share, copy_notes, now = _split
    cache = source.run_cache
    warned = len(cache.warnings) if cache else 0
    try:
        index = {path: at for at, path in enumerate(files)}
        runs = source.read_runs([files[at] for at in share], None, now, copy_notes)
        positions = [[index[p] for p in source.run_paths(run)] for run in runs]
    except Exception:
        connection.close()  # nothing sent: the parent reads this share, and raises it there
        return
    connection.send((runs, positions, cache.warnings[warned:] if cache else []))
    wanted = _receive_any(connection)
    if wanted is None:
        return
    by_id = {run.id: run for run in runs}
    done = []
    try:
        for run_id in wanted:
            run = by_id[run_id]
            digest = digest_run(spec, run, source.history(run), now)
            done.append(replace(digest, run=None))  # type: ignore[arg-type]
    except Exception:
        connection.close()
        return
    connection.send(done)
    connection.close()
