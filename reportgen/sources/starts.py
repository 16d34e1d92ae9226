"""When each run in a folder started, from its files' run records alone (for `runs.limit`).

`limit: N` keeps the newest N runs that pass the filters, and "newest" is the start time the
run record holds. Knowing it for every run costs a pass over the framing of each file, decoding
only its run records (a few per file) and skipping every history, summary and console record,
which are what make reading slow. The runs are then read in full newest first, only until N of
them pass the filters: a `limit: 10` over 10^5 runs decodes about ten.

The start time and the run id found here are the ones the full reader finds (the same records,
the last run record winning, the id in the file name when there is none), and a run's start is
the earliest of its files', as when fragments are merged, so the order is exactly the order
`filter_runs` gives the fully read runs.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import timezone
from pathlib import Path

from reportgen.sources.offline import _id_from_path
from reportgen.sources.wandb_file import (
    Damage,
    UnreadableFile,
    iter_payloads,
    open_run_file,
    pb,
    record_kind,
)


@dataclass(frozen=True)
class FileStart:
    """One file's run id (None: no run record read) and start time (seconds since 1970)."""

    path: str
    run_id: str | None
    started: float | None


def file_start(path: Path, cwd: str = "") -> FileStart:
    """The run id and start time in the file's run records (the file read from `cwd`, named as
    given); damage is passed over as the full reader passes it over."""
    run_id: str | None = None
    started: float | None = None
    try:
        stream, info = open_run_file(Path(cwd, path))
    except UnreadableFile:
        return FileStart(str(path), None, None)
    damages: list[Damage] = []
    try:
        with stream:
            for payload in iter_payloads(stream, info.st_size, damages):
                if record_kind(payload) != "run":
                    continue
                try:
                    run = pb.Record.FromString(payload).run
                except Exception:  # a payload that passed its checksum but does not decode
                    continue
                run_id = run.run_id or run_id
                if run.HasField("start_time"):  # as the reader keeps it: to the microsecond
                    moment = run.start_time.ToDatetime().replace(tzinfo=timezone.utc)
                    started = moment.timestamp()
    except OSError:
        pass  # read as far as it could be, as the full reader does
    return FileStart(str(path), run_id, started)


def file_starts(paths: Sequence[str], cwd: str = "") -> list[FileStart]:
    """`file_start` of several files (one Ray task reads a batch of them)."""
    return [file_start(Path(path), cwd) for path in paths]


@dataclass(frozen=True)
class RunStart:
    """One run: its id, its files and when it started (None: no file says)."""

    run_id: str
    files: tuple[Path, ...]
    started: float | None

    def newest_first(self) -> tuple[float, str]:
        """The key `select.filter_runs` sorts runs by."""
        return (-self.started if self.started is not None else float("inf"), self.run_id)


def run_starts(starts: Iterable[FileStart]) -> list[RunStart]:
    """Files grouped into runs by the run id inside them, newest run first."""
    files: dict[str, list[Path]] = defaultdict(list)
    times: dict[str, list[float]] = defaultdict(list)
    for start in starts:
        path = Path(start.path)
        run_id = start.run_id or _id_from_path(path)
        files[run_id].append(path)
        if start.started is not None:
            times[run_id].append(start.started)
    runs = [
        RunStart(run_id, tuple(paths), min(times[run_id]) if times[run_id] else None)
        for run_id, paths in files.items()
    ]
    return sorted(runs, key=RunStart.newest_first)
