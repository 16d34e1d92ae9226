"""Atomic file writes: a reader sees the old file or the new one, never half of either.

Files are created with mode 0666 minus the umask, like any other tool's files (0644 under the
usual umask 022), so CI artifacts and shared folders can be read by others; `private=True`
(the run cache) keeps them 0600.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# Most of a small file's write is waiting for fsync, which releases the GIL: a report with a
# CSV per run writes them from a few threads at once.
WRITERS = 8


def write_bytes(path: Path, data: bytes, *, private: bool = False, durable: bool = True) -> None:
    """Write to a temporary file beside `path`, flush it to disk, then rename it into place.

    The rename alone makes the write atomic for every process; the flush (fsync) makes it
    survive a crash of the whole machine too. `durable=False` skips it where the reader checks
    what it reads anyway (the run cache: a checksum vouches for each history), as the wait for
    the disk was half of a cold build's cache writes.
    """
    mode = 0o600 if private else 0o666
    try:
        fd, tmp = _create_beside(path, mode)
    except FileNotFoundError:  # a new folder
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_beside(path, mode)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_text(path: Path, text: str, *, private: bool = False, durable: bool = True) -> None:
    write_bytes(path, text.encode("utf-8"), private=private, durable=durable)


def _create_beside(path: Path, mode: int) -> tuple[int, str]:
    """A new hidden file in path's folder; the kernel applies the umask to `mode`.

    (tempfile.mkstemp would always give 0600, whatever the umask.)
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(tmp, flags, mode), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name beside {path}")  # pragma: no cover


def write_many(
    files: Iterable[tuple[Path, bytes]], skip: Callable[[Path, bytes], bool] | None = None
) -> list[Path]:
    """Write each (path, data) atomically, several at once; the paths, in the order given.

    A path given twice ends up with its last data, as if the files were written in order.
    `skip(path, data)` true: that file is listed but not written (it already holds the data).
    """
    pairs = list(files)
    latest = {
        path: data for path, data in dict(pairs).items() if skip is None or not skip(path, data)
    }
    if len(latest) < 2:
        for path, data in latest.items():
            write_bytes(path, data)
    else:
        with ThreadPoolExecutor(min(WRITERS, len(latest))) as pool:
            list(pool.map(lambda pair: write_bytes(*pair), latest.items()))
    return [path for path, _ in pairs]
