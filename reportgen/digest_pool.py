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
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime
from multiprocessing.connection import Connection

from reportgen.digest import RunDigest, digest_run
from reportgen.runs import History, Run
from reportgen.spec import Spec

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
