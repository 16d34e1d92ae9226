"""Atomic file writes: a reader sees the old file or the new one, never half of either."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Most of a small file's write is waiting for fsync, which releases the GIL: a report with a
# CSV per run writes them from a few threads at once.
WRITERS = 8


def write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str) -> None:
    write_bytes(path, text.encode("utf-8"))


def write_many(files: Iterable[tuple[Path, bytes]]) -> list[Path]:
    """Write each (path, data) atomically, several at once; the paths, in the order given.

    A path given twice ends up with its last data, as if the files were written in order.
    """
    pairs = list(files)
    latest = dict(pairs)
    if len(latest) < 2:
        for path, data in latest.items():
            write_bytes(path, data)
    else:
        with ThreadPoolExecutor(min(WRITERS, len(latest))) as pool:
            list(pool.map(lambda pair: write_bytes(*pair), latest.items()))
    return [path for path, _ in pairs]
