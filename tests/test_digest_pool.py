"""The local executor's forked worker: a build on two processes writes the same files."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import shutil
import signal
import subprocess
import sys
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pytest
from conftest import cached_metas, write_spec

from reportgen import build, digest_pool
from reportgen.cache import LAYOUT, RunCache, default_location
from reportgen.render.csv import render_step_table
from reportgen.select import filter_runs
from reportgen.sources.offline import OfflineSource
from reportgen.spec import load_spec

NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)


def assert_same(found: object, expected: object, where: str = "report") -> None:
    """Equal values, arrays compared element by element (NaN equal to NaN)."""
    if isinstance(expected, np.ndarray):
        assert isinstance(found, np.ndarray) and found.dtype == expected.dtype, where
        assert np.array_equal(found, expected, equal_nan=expected.dtype.kind == "f"), where
    elif isinstance(expected, dict):
        assert isinstance(found, dict) and list(found) == list(expected), where
        for key, value in expected.items():
            assert_same(found[key], value, f"{where}.{key}")
    elif isinstance(expected, list | tuple):
        assert type(found) is type(expected) and len(found) == len(expected), where
        for i, (one, two) in enumerate(zip(found, expected, strict=True)):
            assert_same(one, two, f"{where}[{i}]")
    elif isinstance(expected, float) and expected != expected:
        assert isinstance(found, float) and found != found, where
    else:
        assert found == expected, where


def spec_over(tmp_path: Path, root: Path) -> Path:
    return write_spec(
        tmp_path / "spec.yaml",
        f'version: 1\ntitle: two processes\nsource: {{type: wandb-offline, path: "{root}"}}\n'
        "metrics: {length: response_length/mean, loss: train/loss}\n"
        "health: {preset: auto}\n"
        f'outputs: {{dir: "{tmp_path / "unused"}", formats: [markdown, csv, json]}}\n',
    )


def entry_files(cache: Path) -> dict[Path, tuple[int, int]]:
    """Each file of a cache's run entries, with its inode and modification time."""
    files = (cache / LAYOUT).rglob("*")
    return {p: (p.stat().st_ino, p.stat().st_mtime_ns) for p in files if p.is_file()}


def assert_same_files(build: Path, *others: Path) -> list[str]:
    """Each other build wrote the files of `build`, byte for byte; their names."""
    names = sorted(p.name for p in build.iterdir() if p.is_file())
    for other in others:
        assert names == sorted(p.name for p in other.iterdir() if p.is_file())
        for name in names:
            assert (build / name).read_bytes() == (other / name).read_bytes(), (other, name)
    return names


def test_digests_from_the_worker_are_those_of_one_process_in_the_same_order(project_dir, tmp_path):
    spec = load_spec(spec_over(tmp_path, project_dir))
    source = OfflineSource(spec.source)
    chosen = [(run, source.history(run)) for run in source.list_runs(now=NOW)]
    assert len(chosen) >= 3  # the worker gets a share of its own
    alone = digest_pool.digest_runs(spec, chosen, NOW, workers=1)
    shared = digest_pool.digest_runs(spec, chosen, NOW, workers=2)
    assert [d.run.id for d in shared] == [run.id for run, _ in chosen]
    for one, two in zip(alone, shared, strict=True):
        assert two.run == one.run and two.run.logged_steps == one.run.logged_steps
        assert_same(dataclasses.asdict(two.report), dataclasses.asdict(one.report))
        assert two.span == one.span
        assert two.table.notes == one.table.notes
        assert np.array_equal(two.table.steps, one.table.steps)
        assert two.table.values.keys() == one.table.values.keys()
        for alias, values in one.table.values.items():
            assert np.array_equal(two.table.values[alias], values, equal_nan=True)
            assert np.array_equal(two.table.present[alias], one.table.present[alias])


def test_a_build_on_two_processes_writes_the_files_of_one(project_dir, tmp_path, monkeypatch):
    spec = load_spec(spec_over(tmp_path, project_dir))
    monkeypatch.setattr(digest_pool, "MIN_RUNS", 10**9)
    alone = build(spec, out_dir=tmp_path / "alone", now=NOW).out_dir
    monkeypatch.setattr(digest_pool, "MIN_RUNS", 1)
    shared = build(spec, out_dir=tmp_path / "shared", now=NOW).out_dir
    names = assert_same_files(alone, shared)
    assert "report.json" in names and any(name.endswith(".csv") for name in names)


def warm_folder(project_dir: Path, tmp_path: Path, copies: int = 1) -> Path:
    """The project, plus renamed copies of one run's file (`run-zz…`: files named for other
    runs that hold resume01's records), so that one run has files named for several runs."""
    root = tmp_path / "runs"
    shutil.copytree(project_dir, root, symlinks=True)
    original = next(root.rglob("run-resume01.wandb"))
    for copy in range(copies):
        name = "zzrenamed" if copy == 0 else f"zzrenamed{copy}"
        renamed = root / "wandb" / f"offline-run-20261130_23595{copy}-{name}" / f"run-{name}.wandb"
        renamed.parent.mkdir()
        shutil.copy2(original, renamed)
    for path in root.rglob("*.wandb"):  # settled files: the cache stores them (see offline.py)
        os.utime(path, (path.stat().st_atime - 60, path.stat().st_mtime - 60))
    return root


def test_a_warm_build_read_on_two_processes_writes_the_files_of_one(
    project_dir, tmp_path, monkeypatch
):
    """Every file cached: the worker reads its share of the cache too; the files written are
    those of a build on one process, byte for byte, and so are the runs found."""
    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(tmp_path / "cache"))
    spec = load_spec(spec_over(tmp_path, warm_folder(project_dir, tmp_path)))
    monkeypatch.setattr(digest_pool, "MIN_RUNS", 10**9)
    cold = build(spec, out_dir=tmp_path / "cold", now=NOW).out_dir  # fills the cache
    alone = build(spec, out_dir=tmp_path / "alone", now=NOW).out_dir
    monkeypatch.setattr(digest_pool, "MIN_RUNS", 1)
    cache = RunCache.at(default_location(), "normal")
    source = OfflineSource(spec.source, cache=cache)
    split = digest_pool.read_and_digest(spec, source, NOW)
    assert split is not None  # every file was cached: read on two processes
    found, digests = split
    one = OfflineSource(spec.source, cache=cache)
    listed = one.list_runs(now=NOW)
    assert found == len(listed) == 7
    expected = [
        replace(run, logged_steps=len(one.history(run).steps()))
        for run in filter_runs(listed, spec.runs, NOW)
    ]
    assert_same(
        [dataclasses.asdict(d.run) for d in digests], [dataclasses.asdict(run) for run in expected]
    )
    shared = build(spec, out_dir=tmp_path / "shared", now=NOW).out_dir
    names = assert_same_files(shared, alone, cold)
    assert "report.json" in names and sum(name.endswith(".csv") for name in names) == 7


def test_a_run_whose_files_were_taken_in_several_groups_is_merged_from_all_of_them(
    project_dir, tmp_path, monkeypatch
):
    """resume01's files are named for five runs, so they are taken in five groups, by either
    process (each takes the next group whenever it is free): wherever its files were read, the
    run is read again here from all six, and digested here, as one process reads it."""
    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(tmp_path / "cache"))
    spec = load_spec(spec_over(tmp_path, warm_folder(project_dir, tmp_path, copies=4)))
    cache = RunCache.at(default_location(), "normal")
    one = OfflineSource(spec.source, cache=cache)
    listed = one.list_runs(now=NOW)  # fills the cache
    files, _ = one.list_files()
    assert sum(path.name.startswith("run-zzrenamed") for path in files) == 4
    alone = digest_pool.digest_runs(
        spec, [(run, one.history(run)) for run in filter_runs(listed, spec.runs, NOW)], NOW, 1
    )
    monkeypatch.setattr(digest_pool, "MIN_RUNS", 1)
    split = digest_pool.read_and_digest(spec, OfflineSource(spec.source, cache=cache), NOW)
    assert split is not None
    found, digests = split
    assert found == len(listed) == 7
    assert [d.run.id for d in digests] == [d.run.id for d in alone]
    merged = next(d for d in digests if d.run.id == "resume01")
    expected = next(d for d in alone if d.run.id == "resume01")
    assert len(merged.run.locations) == 6 and merged.run == expected.run
    assert merged.span.steps == 100 and merged.span == expected.span
    for two, one_digest in zip(digests, alone, strict=True):
        assert_same(dataclasses.asdict(two.report), dataclasses.asdict(one_digest.report))


def test_the_largest_groups_of_files_are_handed_out_first_and_the_last_few_at_a_time(
    project_dir, tmp_path
):
    """Groups (the files named for one run) by their bytes, largest first, each take a quarter
    of what is left: the last ones handed out are small, so neither process is left reading a
    big one while the other waits."""
    root = warm_folder(project_dir, tmp_path, copies=30)
    (next(root.rglob("run-zzrenamed2.wandb"))).write_bytes(bytes(10**7))  # the largest
    files, _ = OfflineSource(load_spec(spec_over(tmp_path, root)).source).list_files()
    groups: dict[str, list[int]] = {}
    for at, path in enumerate(files):
        groups.setdefault(digest_pool._named_run(path), []).append(at)
    shares = digest_pool._Shares(files, list(groups.values()), multiprocessing.get_context("fork"))
    weights = [
        sum(files[at].stat().st_size + digest_pool.FILE_COST for at in group)
        for group in shares.order
    ]
    assert len(weights) == len(groups) == 37 and weights == sorted(weights, reverse=True)
    assert [files[at].name for at in shares.order[0]] == ["run-zzrenamed2.wandb"]
    takes = []
    while (taking := shares.take(lambda: True)) is not None:
        takes.append(taking)
    assert takes[0] == range(0, 1)  # the big file is a quarter of all there is, alone
    assert [place for taking in takes for place in taking] == list(range(37))
    for taking in takes:
        left = sum(weights[taking.start :])
        assert sum(weights[taking.start : taking.stop]) >= min(left, sum(weights) / 400)
        assert sum(weights[taking.start : taking.stop - 1]) < max(left / 4, sum(weights) / 400)
    assert len(takes[-1]) < len(takes[len(takes) // 2]) and weights[-1] < weights[0] / 10


def test_each_group_is_taken_by_exactly_one_of_two_processes_taking_at_once(project_dir):
    """Both processes take groups as fast as they can, at the same time: each of 20,000 goes
    to exactly one of them, and each takes them in the order they are handed out."""
    files = sorted(project_dir.rglob("*.wandb"))
    context = multiprocessing.get_context("fork")
    shares = digest_pool._Shares(files, [[at % len(files)] for at in range(20_000)], context)
    first = shares.take(lambda: True)  # one take each before both take at once
    assert first is not None and first.start == 0
    mine = list(first)
    receiving, sending = context.Pipe(duplex=False)
    started, going = context.Pipe(duplex=False)

    def take_all() -> None:
        taken: list[int] = []
        going.send(True)
        while (taking := shares.take(lambda: True)) is not None:
            taken += taking
        sending.send(taken)

    worker = context.Process(target=take_all)
    worker.start()
    assert started.recv()
    while (taking := shares.take(worker.is_alive)) is not None:
        mine += taking
    theirs = receiving.recv()
    worker.join()
    assert sorted(mine + theirs) == list(range(20_000))
    assert mine == sorted(mine) and theirs == sorted(theirs)


def test_a_worker_killed_while_it_reads_leaves_every_run_to_this_process(
    project_dir, tmp_path, monkeypatch
):
    """The worker is killed (SIGKILL) as soon as it starts: this process reads what the
    worker took (taking alone once the worker is gone), and the runs and their digests are
    those of one process."""
    import signal
    import threading

    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(tmp_path / "cache"))
    spec = load_spec(spec_over(tmp_path, warm_folder(project_dir, tmp_path, copies=4)))
    one = OfflineSource(spec.source)
    listed = one.list_runs(now=NOW)
    alone = digest_pool.digest_runs(
        spec, [(run, one.history(run)) for run in filter_runs(listed, spec.runs, NOW)], NOW, 1
    )
    monkeypatch.setattr(digest_pool, "MIN_RUNS", 1)
    killed: list[int] = []

    def kill_the_worker() -> None:
        while not killed:
            for child in multiprocessing.active_children():
                if child.pid is not None:
                    os.kill(child.pid, signal.SIGKILL)
                    killed.append(child.pid)

    killer = threading.Thread(target=kill_the_worker, daemon=True)
    killer.start()
    split = digest_pool.read_and_digest(
        spec, OfflineSource(spec.source, cache=RunCache.at(default_location())), NOW
    )
    killed.append(0)
    killer.join()
    assert split is not None and killed[0] != 0
    found, digests = split
    assert found == len(listed) == 7
    assert [d.run for d in digests] == [d.run for d in alone]
    for two, one_digest in zip(digests, alone, strict=True):
        assert_same(dataclasses.asdict(two.report), dataclasses.asdict(one_digest.report))


def test_a_cold_build_split_on_two_processes_writes_the_files_and_the_cache_of_one(
    project_dir, tmp_path, monkeypatch
):
    """Nothing cached: each process decodes its share and stores it in the cache. The files
    written, and every cache entry, are byte for byte those of a build on one process."""
    spec = load_spec(spec_over(tmp_path, warm_folder(project_dir, tmp_path)))
    monkeypatch.setattr(digest_pool, "MIN_RUNS", 10**9)
    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(tmp_path / "cache-alone"))
    alone = build(spec, out_dir=tmp_path / "alone", now=NOW).out_dir
    monkeypatch.setattr(digest_pool, "MIN_RUNS", 1)
    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(tmp_path / "cache-split"))
    split = digest_pool.read_and_digest(
        spec, OfflineSource(spec.source, cache=RunCache.at(default_location())), NOW
    )
    assert split is not None and split[0] == 7  # read on two processes, from the files
    shutil.rmtree(tmp_path / "cache-split")
    shared = build(spec, out_dir=tmp_path / "shared", now=NOW).out_dir
    names = assert_same_files(alone, shared)
    assert "report.json" in names and sum(name.endswith(".csv") for name in names) == 7
    one = sorted(
        p.relative_to(tmp_path / "cache-alone") for p in (tmp_path / "cache-alone").rglob("*")
    )
    two = sorted(
        p.relative_to(tmp_path / "cache-split") for p in (tmp_path / "cache-split").rglob("*")
    )
    assert one == two and len(cached_metas(tmp_path / "cache-alone")) == 9  # every file's entry
    for path in one:
        if path.parent.name == "entries":  # every file of every entry
            assert (tmp_path / "cache-alone" / path).read_bytes() == (
                tmp_path / "cache-split" / path
            ).read_bytes(), path


def test_csv_files_rendered_where_runs_were_digested_are_those_of_their_tables(
    project_dir, tmp_path
):
    """Each run's CSV is rendered by the process that digested it: the file holds exactly the
    table's cells, with the columns `outputs.csv` names (less the missing, dropped ones)."""
    spec_path = write_spec(
        tmp_path / "spec.yaml",
        f'version: 1\ntitle: csv\nsource: {{type: wandb-offline, path: "{project_dir}"}}\n'
        "metrics: {length: response_length/mean, loss: train/loss, reward: reward/mean}\n"
        "select: {best: {by: loss}}\n"
        "outputs:\n"
        f'  dir: "{tmp_path / "out"}"\n'
        "  formats: [csv, json]\n"
        "  csv: {columns: [loss, length], missing: drop}\n",
    )
    result = build(load_spec(spec_path), now=NOW)
    assert [table.selection for table in result.report.tables] == ["best"]
    for table in result.report.tables:
        assert table.text is not None and table.columns == ("loss",)  # length: not logged
        assert (result.out_dir / table.file).read_text() == render_step_table(
            table.steps, table.columns, table.values, table.present
        )


def test_entries_gone_stale_are_decoded_by_whichever_process_reads_them(
    project_dir, tmp_path, monkeypatch
):
    """Every file has an entry but none is current (each file's mtime changed): each process
    decodes its share and stores it; the files written are those of one process, and the next
    build reads every run from the cache."""
    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(tmp_path / "cache"))
    root = warm_folder(project_dir, tmp_path)
    spec = load_spec(spec_over(tmp_path, root))
    monkeypatch.setattr(digest_pool, "MIN_RUNS", 10**9)
    alone = build(spec, out_dir=tmp_path / "alone", now=NOW).out_dir  # fills the cache
    for path in root.rglob("*.wandb"):
        os.utime(path, (path.stat().st_atime - 30, path.stat().st_mtime - 30))
    monkeypatch.setattr(digest_pool, "MIN_RUNS", 1)
    shared = build(spec, out_dir=tmp_path / "shared", now=NOW)
    assert not shared.warnings
    assert_same_files(alone, shared.out_dir)
    stored = entry_files(tmp_path / "cache")
    assert any(path.parent.name == "entries" and path.suffix == ".json" for path in stored)
    again = build(spec, out_dir=tmp_path / "again", now=NOW).out_dir
    # Every entry was stored again, by the process that decoded it: this build decodes and
    # stores nothing (a file decoded again would be stored again, with a new inode).
    assert entry_files(tmp_path / "cache") == stored
    assert_same_files(alone, again)


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="needs Linux /proc")
@pytest.mark.parametrize(
    ("sent", "code", "line"),
    [("SIGINT", 130, "interrupted"), ("SIGTERM", 143, "terminated (SIGTERM)")],
)
def test_a_signal_while_both_processes_read_ends_the_build_and_the_worker(
    sent, code, line, project_dir, tmp_path
):
    """Ctrl-C (or SIGTERM) sent to the build's process group while the worker reads: the
    build ends with its one line and exit code, and the worker is gone with it."""
    root = warm_folder(project_dir, tmp_path, copies=30)  # 37 groups: read on two processes
    spec = spec_over(tmp_path, root)
    env = {**os.environ, "REPORTGEN_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("CI", None)
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "reportgen",
            "build",
            str(spec),
            "-q",
            "--out",
            str(tmp_path / "out"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    children = Path(f"/proc/{process.pid}/task/{process.pid}/children")
    workers: list[int] = []
    while not workers:
        assert process.poll() is None, process.communicate()  # still reading
        workers = [int(pid) for pid in children.read_text().split()]
    assert Path(f"/proc/{workers[0]}").exists()
    os.killpg(process.pid, getattr(signal, sent))
    _, err = process.communicate(timeout=60)
    assert process.returncode == code, err
    assert err.strip().splitlines() == [line]
    assert not Path(f"/proc/{workers[0]}").exists()  # reaped: gone
    assert not (tmp_path / "out" / "report.json").exists()


def _send_takes_then(connection, takes: list, end: list | None) -> None:
    """A forked sender speaking the worker's protocol: takes, then its end (or none)."""
    for take in takes:
        connection.send(take)
    if end is not None:
        connection.send(end)
    connection.close()


@pytest.mark.parametrize("ends", [True, False])
def test_the_worker_s_takes_are_received_between_takes_and_used_only_when_it_ends(ends):
    """The worker sends each take's runs and digests as the take ends, and its warnings last.
    This process receives whatever has arrived whenever it is between takes of its own (the
    pipe would otherwise hold the worker up) and then the rest; a worker that stops before its
    end (it raised, or was killed) sent nothing usable: this process reads every file."""
    context = multiprocessing.get_context("fork")
    receiving, sending = context.Pipe(duplex=False)
    takes = [([("run-a", [0])], {"a": "digest of a"}), ([("run-b", [1, 2])], {"b": "b's"})]
    end = ["cache: a warning"] if ends else None
    sender = context.Process(target=_send_takes_then, args=(sending, takes, end))
    sender.start()
    sending.close()
    sender.join()
    inbox = digest_pool._Inbox(receiving)
    inbox.between_takes()  # all of it has arrived: received now, up to the end
    assert inbox.runs == [("run-a", [0]), ("run-b", [1, 2])]
    assert inbox.digests == {"a": "digest of a", "b": "b's"}
    if ends:
        assert inbox.everything() == (inbox.runs, inbox.digests, ["cache: a warning"])
    else:
        assert inbox.everything() is None and inbox.closed
    receiving.close()
