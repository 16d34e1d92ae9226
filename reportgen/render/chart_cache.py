"""Charts kept by content in the cache folder, so a rebuild redraws only what changed.

Drawing is most of a PDF's time. A chart's key is the SHA-256 of everything it is drawn from:
the drawing code itself (plots.py and the modules it draws with, matplotlib's version,
reportgen's), which chart it is, the plot settings, and for each run on it, its colour and a
digest of the whole run (its curves, name, findings). Any change there is a new key; a key
seen before gives the bytes drawn then, which are the bytes drawing would give now (charts are
deterministic). At worst an irrelevant change in a run (a finding's wording) costs a redraw;
it never serves a stale chart.

Layout: <cache root>/charts/<first two hex digits>/<key>.<png|pdf>. Files are written
atomically; a chart read back is touched, and charts unused for PRUNE_DAYS are removed at the
end of a build, so the folder holds about what recent builds show.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from reportgen import atomic

if TYPE_CHECKING:
    from reportgen.render.plots import ChartJob
    from reportgen.report import Report

PRUNE_DAYS = 30


def _code_version() -> bytes:
    """What the drawing code is: a change to plots.py or the modules it draws with (thinning,
    escaping, the Report's accessors) or a new matplotlib is a new key."""
    import matplotlib

    from reportgen import __version__, curves, report, safetext
    from reportgen.render import plots

    sources = b"".join(
        Path(m.__file__ or "").read_bytes() for m in (plots, curves, safetext, report)
    )
    return b"\0".join(
        [__version__.encode(), matplotlib.__version__.encode(), hashlib.sha256(sources).digest()]
    )


def _pickled(value: object) -> bytes:
    """The value's pickle, without the memo: equal values give equal bytes whether or not they
    share objects (a run read in another process and sent back shares fewer strings)."""
    buffer = io.BytesIO()
    pickler = pickle.Pickler(buffer, protocol=5)
    pickler.fast = True  # no memo: every object written out in full, wherever it repeats
    pickler.dump(value)
    return buffer.getvalue()


def _digest(value: object) -> bytes:
    return hashlib.sha256(_pickled(value)).digest()


def chart_keys(report: Report, jobs: Sequence[ChartJob]) -> list[str]:
    """Each job's content key (hex), from what its chart is drawn with."""
    from reportgen.render.plots import run_styles

    styles = run_styles(report)
    code = _code_version()
    runs: dict[str, bytes] = {}

    def run_digest(run_id: str) -> bytes:
        if run_id not in runs:
            runs[run_id] = _digest(report.run(run_id))
        return runs[run_id]

    keys = []
    for job in jobs:
        parts: list[object] = [code, job.kind, job.key, job.page, report.plots]
        if job.kind == "alias":
            parts += [
                (styles[run.id], run_digest(run.id))
                for run in report.runs
                if run.curve(job.key) is not None
            ]
        elif job.kind == "run":
            parts += [styles[job.key], run_digest(job.key)]
        else:
            project = report.analysis.project
            parts.append(project.pareto if project else None)
        keys.append(hashlib.sha256(_pickled(parts)).hexdigest())
    return keys


@dataclass(frozen=True)
class ChartCache:
    """The charts folder of a cache; `reads`: serve charts from it (not with --refresh),
    `stores`: keep newly drawn charts (not in a read-only cache)."""

    folder: Path
    reads: bool = True
    stores: bool = True

    def path(self, key: str, fmt: str) -> Path:
        return self.folder / key[:2] / f"{key}.{fmt}"

    def get(self, key: str, formats: Sequence[str]) -> dict[str, bytes] | None:
        """The chart in every format asked for, or None when any of them is not kept."""
        if not self.reads:
            return None
        found = {}
        for fmt in formats:
            path = self.path(key, fmt)
            try:
                found[fmt] = path.read_bytes()
            except OSError:
                return None
            if self.stores:
                with contextlib.suppress(OSError):
                    os.utime(path)  # in use: not pruned
        return found

    def put(self, key: str, drawn: dict[str, bytes]) -> None:
        """Keep a drawn chart; a cache that cannot be written only costs the next build time."""
        if not self.stores:
            return
        for fmt, data in drawn.items():
            with contextlib.suppress(OSError):
                atomic.write_bytes(self.path(key, fmt), data, private=True, durable=False)

    def prune(self, days: float = PRUNE_DAYS) -> int:
        """Remove charts no build has used for `days`; returns how many."""
        if not self.stores or not self.folder.is_dir():
            return 0
        before = time.time() - days * 86400
        removed = 0
        for path in self.folder.glob("??/*.*"):
            with contextlib.suppress(OSError):
                if path.stat().st_mtime < before:
                    path.unlink()
                    removed += 1
        return removed
