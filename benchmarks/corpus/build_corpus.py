"""Rebuild the development corpus of real public W&B runs from mirrored git repositories.

    .venv/bin/python benchmarks/corpus/build_corpus.py [--mirror /work/.mirror] [--out /work/corpus]

Every line of repos.txt (next to this script) names a public repository, a commit and a note.
For each, the script finds the repository's git directory under --mirror, lists the tree at that
commit and copies out only run data: in every run folder (``run-*``, ``offline-run-*`` or a real
``latest-run`` folder that holds a ``run-*.wandb`` file) the ``.wandb`` file(s) and
``files/{output.log,config.yaml,wandb-summary.json,wandb-metadata.json}``. Git symlinks named
``latest-run*`` are recreated as symlinks. Nothing else (no code) is copied.

A repository may be listed on several lines (several commits): later lines only add paths the
earlier ones did not have, so runs deleted in a newer commit can still be recovered.

The corpus carries authors' e-mails, hostnames and paths: it lives outside the repository and
must never be committed. Repositories listed in the held-out file are refused.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

HERE = Path(__file__).resolve().parent
RUN_FOLDER = re.compile(r"^(offline-)?run-.+$|^latest-run$")
WANDB_FILE = re.compile(r"^run-(?P<run_id>.+)\.wandb$")
RUN_FILES = ("output.log", "config.yaml", "wandb-summary.json", "wandb-metadata.json")
SYMLINK_MODE = "120000"


@dataclass(frozen=True)
class Source:
    """One line of repos.txt: a repository at a commit."""

    repo: str
    commit: str
    note: str

    @property
    def folder_name(self) -> str:
        return self.repo.replace("/", "__")


@dataclass(frozen=True)
class TreeEntry:
    mode: str
    sha: str
    path: PurePosixPath


@dataclass
class Claimed:
    """Paths already written for a repository, so a later commit's line only adds new ones (and
    never a symlink where an earlier commit had a real folder, or the reverse)."""

    paths: set[PurePosixPath] = field(default_factory=set)
    folders: set[PurePosixPath] = field(default_factory=set)

    def conflicts(self, path: PurePosixPath) -> bool:
        return (
            path in self.paths or path in self.folders or any(p in self.paths for p in path.parents)
        )

    def claim(self, path: PurePosixPath) -> None:
        self.paths.add(path)
        self.folders.update(path.parents)


@dataclass
class Counts:
    """What was written for one repository (or the whole corpus)."""

    wandb_files: int = 0
    files: int = 0
    symlinks: int = 0
    bytes: int = 0
    missing: list[str] = field(default_factory=list)
    run_ids: set[tuple[str, str]] = field(default_factory=set)

    def add(self, other: Counts) -> None:
        self.wandb_files += other.wandb_files
        self.files += other.files
        self.symlinks += other.symlinks
        self.bytes += other.bytes
        self.missing.extend(other.missing)
        self.run_ids |= other.run_ids


def read_sources(path: Path) -> list[Source]:
    """Parse repos.txt: ``owner/name <sha> <note>``; blank lines and ``#`` comments skipped."""
    sources = []
    for number, raw in enumerate(path.read_text().splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(maxsplit=2)
        if len(parts) < 2 or "/" not in parts[0] or not re.fullmatch(r"[0-9a-f]{40}", parts[1]):
            raise ValueError(f"{path}:{number}: expected 'owner/name <40-hex commit> <note>'")
        sources.append(Source(parts[0], parts[1], parts[2] if len(parts) > 2 else ""))
    return sources


def read_heldout(path: Path) -> set[str]:
    if not path.exists():
        return set()
    lines = (line.strip() for line in path.read_text().splitlines())
    return {line.lower() for line in lines if line and not line.startswith("#")}


def git(git_dir: Path, *args: str, stdin: bytes | None = None) -> bytes:
    result = subprocess.run(
        ["git", f"--git-dir={git_dir}", *args], input=stdin, capture_output=True, check=False
    )
    if result.returncode != 0:
        message = result.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"git {' '.join(args[:2])} in {git_dir}: {message}")
    return result.stdout


def find_git_dir(mirror: Path, repo: str) -> Path | None:
    """The search tool's fetch puts a bare repo at <mirror>/<owner>+<name>/repo; `git clone
    --mirror` into <mirror>/<owner>+<name>.git or <mirror>/<owner>/<name>.git works too."""
    owner, name = repo.split("/", 1)
    candidates = [
        mirror / f"{owner}+{name}" / "repo",
        mirror / f"{owner}+{name}",
        mirror / f"{owner}+{name}.git",
        mirror / owner / f"{name}.git",
        mirror / owner / name / ".git",
    ]
    for candidate in candidates:
        if (candidate / "HEAD").is_file() and (candidate / "objects").is_dir():
            return candidate
    return None


def list_tree(git_dir: Path, commit: str) -> list[TreeEntry]:
    out = git(git_dir, "ls-tree", "-r", "-z", commit)
    entries = []
    for record in out.split(b"\0"):
        if not record:
            continue
        meta, path = record.split(b"\t", 1)
        mode, kind, sha = meta.decode().split()
        if kind == "blob":
            entries.append(
                TreeEntry(mode, sha, PurePosixPath(path.decode(errors="surrogateescape")))
            )
    return entries


def select_run_data(entries: list[TreeEntry]) -> Iterator[TreeEntry]:
    """The run-data entries of a tree: files of run folders that hold a .wandb file, and
    latest-run symlinks."""
    run_folders = {
        entry.path.parent
        for entry in entries
        if WANDB_FILE.match(entry.path.name) and RUN_FOLDER.match(entry.path.parent.name)
    }
    for entry in entries:
        path = entry.path
        is_latest_link = entry.mode == SYMLINK_MODE and path.name.startswith("latest-run")
        is_wandb = path.parent in run_folders and WANDB_FILE.match(path.name) is not None
        is_run_file = (
            path.parent.name == "files"
            and path.parent.parent in run_folders
            and path.name in RUN_FILES
        )
        if is_latest_link or is_wandb or is_run_file:
            yield entry


def read_blobs(git_dir: Path, shas: list[str]) -> dict[str, bytes]:
    """Contents of the given blobs through one `git cat-file --batch`; absent ones (a snapshot
    lacks files of 4 MiB and more) are left out."""
    if not shas:
        return {}
    out = git(git_dir, "cat-file", "--batch", stdin="".join(f"{s}\n" for s in shas).encode())
    blobs: dict[str, bytes] = {}
    position = 0
    for sha in shas:
        header_end = out.index(b"\n", position)
        header = out[position:header_end].decode().split()
        position = header_end + 1
        if len(header) == 3:
            size = int(header[2])
            blobs[sha] = out[position : position + size]
            position += size + 1
    return blobs


def build_source(source: Source, git_dir: Path, out: Path, claimed: Claimed) -> Counts:
    counts = Counts()
    entries = select_run_data(list_tree(git_dir, source.commit))
    wanted = [entry for entry in entries if not claimed.conflicts(entry.path)]
    blobs = read_blobs(git_dir, sorted({e.sha for e in wanted}))
    for entry in wanted:
        claimed.claim(entry.path)
        content = blobs.get(entry.sha)
        if content is None:
            counts.missing.append(str(entry.path))
            continue
        target = out / source.folder_name / Path(*entry.path.parts)
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.is_symlink() or target.is_file():
            target.unlink()
        if entry.mode == SYMLINK_MODE:
            target.symlink_to(content.decode(errors="surrogateescape"))
            counts.symlinks += 1
            continue
        target.write_bytes(content)
        counts.files += 1
        counts.bytes += len(content)
        match = WANDB_FILE.match(entry.path.name)
        if match:
            counts.wandb_files += 1
            counts.run_ids.add((source.repo, match["run_id"]))
    return counts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mirror", type=Path, default=Path("/work/.mirror"))
    parser.add_argument("--out", type=Path, default=Path("/work/corpus"))
    parser.add_argument("--repos", type=Path, default=HERE / "repos.txt")
    parser.add_argument("--heldout", type=Path, default=Path("/work/shared/heldout-repos.txt"))
    args = parser.parse_args(argv)

    heldout = read_heldout(args.heldout)
    try:
        sources = read_sources(args.repos)
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    claimed: dict[str, Claimed] = {}
    per_repo: dict[str, Counts] = {}
    skipped: list[str] = []
    for source in sources:
        if source.repo.lower() in heldout:
            print(f"refused {source.repo}: it is held out ({args.heldout})", file=sys.stderr)
            skipped.append(source.repo)
            continue
        git_dir = find_git_dir(args.mirror, source.repo)
        if git_dir is None:
            print(f"skipped {source.repo}: no git dir under {args.mirror}", file=sys.stderr)
            skipped.append(source.repo)
            continue
        try:
            counts = build_source(
                source, git_dir, args.out, claimed.setdefault(source.repo, Claimed())
            )
        except RuntimeError as exc:
            print(f"skipped {source.repo} at {source.commit[:12]}: {exc}", file=sys.stderr)
            skipped.append(source.repo)
            continue
        per_repo.setdefault(source.repo, Counts()).add(counts)

    total = Counts()
    for repo, counts in per_repo.items():
        total.add(counts)
        print(
            f"{repo:55} {counts.wandb_files:4} .wandb {len(counts.run_ids):4} runs "
            f"{counts.bytes / 1e6:8.1f} MB {len(counts.missing):3} absent"
        )
    print(
        f"total: {len(per_repo)} repos, {total.wandb_files} .wandb files, "
        f"{len(total.run_ids)} runs, {total.files} files, {total.symlinks} symlinks, "
        f"{total.bytes} bytes, {len(total.missing)} absent from the snapshots"
        + (f", {len(skipped)} skipped" if skipped else "")
    )
    # 1: some listed repository could not be read (held out, no mirror, commit missing).
    return 1 if skipped else 0


if __name__ == "__main__":
    sys.exit(main())
