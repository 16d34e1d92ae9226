"""The output folder as one unit: a build's files appear together, and stale ones go away.

A build renders every file into a hidden staging folder inside the output folder (same file
system, so a rename is atomic), then moves them into place in one short step during which
SIGINT and SIGTERM wait. An interrupted build therefore leaves the previous build's files as
they were: never a new report.md beside an old report.json.

`.reportgen-manifest.json` records what each build wrote, with each file's SHA-256. The next
build removes the files the previous one wrote and this one no longer writes (another
selection's CSV, charts of a dropped alias), and only those whose bytes are still what reportgen
wrote: a file someone else put in the folder, or edited since, is never touched. Files another
spec's build wrote into the same folder are not this build's to remove either: the manifest
names the spec, and removal happens only when the previous build was of the same spec.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import signal
import stat
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any

from reportgen import atomic
from reportgen.errors import UsageError

MANIFEST = ".reportgen-manifest.json"
STAGING_PREFIX = ".reportgen-staging-"


class OutputFolder:
    """`with OutputFolder(target) as out:` write into `out.staging`, then `out.commit(files)`.

    Leaving the block without a commit (an error, Ctrl-C) removes the staging folder and
    leaves the target as it was.
    """

    def __init__(self, target: Path, spec: str = ""):
        self.target = Path(target)
        self.spec = spec
        self.staging: Path = self.target
        self._kept: dict[str, str] = {}  # relative path: sha256 of files left as they are

    def holds(self, staged: Path, data: bytes) -> bool:
        """Whether the file that `staged` (a path in the staging folder) becomes is already in
        the target with exactly `data`. Such a file need not be staged: `commit` leaves it in
        place (and touches its time). Writing, renaming over and removing files costs the
        file system's journal milliseconds each, and a warm rebuild of an unchanged project
        would rewrite hundreds of identical files."""
        rel = PurePosixPath(staged.relative_to(self.staging).as_posix())
        destination = self.target / rel
        try:
            there = destination.lstat()
            same = (
                stat.S_ISREG(there.st_mode)
                and there.st_size == len(data)
                and destination.read_bytes() == data
            )
        except OSError:
            same = False
        if same:
            self._kept[str(rel)] = hashlib.sha256(data).hexdigest()
        else:
            self._kept.pop(str(rel), None)
        return same

    def __enter__(self) -> OutputFolder:
        try:
            self.target.mkdir(parents=True, exist_ok=True)
            prefix = f"{STAGING_PREFIX}{os.getpid()}-"
            self.staging = Path(tempfile.mkdtemp(prefix=prefix, dir=self.target))
        except OSError as exc:
            raise UsageError(
                f"outputs.dir: cannot write to the output folder {self.target}: "
                f"{exc.strerror or exc}; choose another folder with --out or outputs.dir"
            ) from None
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)

    def commit(self, files: Sequence[Path]) -> list[Path]:
        """Move the staged files into the target, drop stale ones, record the new set."""
        relative = [PurePosixPath(Path(f).relative_to(self.staging).as_posix()) for f in files]
        previous, by_spec = read_manifest(self.target)
        if not self.spec or by_spec != self.spec:
            # Another spec's files, or a command-line build with no spec file (`export -o F`
            # into a shared folder): overwritten where names meet, never removed.
            previous = {}
        digests = {
            str(rel): self._kept.get(str(rel)) or _sha256(self.staging / rel) for rel in relative
        }
        try:
            with signals_deferred():
                for rel in relative:
                    destination = self.target / rel
                    if str(rel) in self._kept:
                        os.utime(destination)  # rebuilt now, as `make` expects
                        continue
                    destination.parent.mkdir(parents=True, exist_ok=True)
                    os.replace(self.staging / rel, destination)
                for name, digest in previous.items():
                    if name not in digests:
                        _remove_if_ours(self.target, name, digest)
                write_manifest(self.target, digests, self.spec)
        except OSError as exc:
            raise UsageError(
                f"outputs.dir: cannot move the new files into {self.target}: {exc.strerror or exc}"
            ) from None
        _remove_abandoned_staging(self.target, keep=self.staging)
        return [self.target / rel for rel in relative]


def read_manifest(folder: Path) -> tuple[dict[str, str], str]:
    """{relative path: sha256} of the last build's files and its spec; ({}, "") when there is
    no usable record.

    Entries that could point outside the folder (absolute, `..`) are ignored: the manifest is
    a file anyone could edit, and removal must never reach beyond the output folder.
    """
    try:
        data = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}, ""
    files = data.get("files") if isinstance(data, dict) else None
    if not isinstance(files, dict):
        return {}, ""
    safe = {}
    for name, digest in files.items():
        path = PurePosixPath(str(name))
        if (
            path.is_absolute()
            or ".." in path.parts
            or not path.parts
            or not isinstance(digest, str)
        ):
            continue
        if path.parts[0] == MANIFEST or path.parts[0].startswith(STAGING_PREFIX):
            continue
        safe[str(path)] = digest
    return safe, str(data.get("spec") or "")


def write_manifest(folder: Path, files: dict[str, str], spec: str) -> None:
    record: dict[str, Any] = {
        "about": "files the last reportgen build wrote here; the next build of the same spec "
        "removes those it no longer writes (and only if unchanged)",
        "spec": spec,
        "files": dict(sorted(files.items())),
    }
    atomic.write_text(folder / MANIFEST, json.dumps(record, indent=2) + "\n")


def _remove_if_ours(folder: Path, rel: str, digest: str) -> None:
    path = folder / rel
    if path.is_symlink() or not path.is_file() or _sha256(path) != digest:
        return
    path.unlink()
    parent = path.parent
    while parent != folder and folder in parent.parents:
        try:
            parent.rmdir()  # only when empty: a folder with anything else in it stays
        except OSError:
            break
        parent = parent.parent


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _remove_abandoned_staging(folder: Path, keep: Path) -> None:
    """Staging folders of builds that died without cleaning up (SIGKILL, power loss)."""
    for candidate in folder.glob(f"{STAGING_PREFIX}*"):
        if candidate == keep or not candidate.is_dir():
            continue
        pid_text = candidate.name[len(STAGING_PREFIX) :].split("-", 1)[0]
        if pid_text.isdigit() and not _alive(int(pid_text)):
            shutil.rmtree(candidate, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):
        return True
    return True


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done, then act as they would have.

    Only the main thread can set handlers; elsewhere the block simply runs.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []

    def hold(signum: int, frame: object) -> None:
        caught.append(signum)

    wanted = [signal.SIGINT, signal.SIGTERM]
    previous = {sig: signal.signal(sig, hold) for sig in wanted}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler if handler is not None else signal.SIG_DFL)
        for number in dict.fromkeys(caught):
            signal.raise_signal(number)
