"""Damaged .wandb files are read as far as they are intact, with a note; never a crash."""

from __future__ import annotations

import os
import time
from datetime import datetime, timedelta
from pathlib import Path

from conftest import RL_INDEX, cached_metas, rl_rows, write_spec
from runwriter import wandb_files

from reportgen import build
from reportgen.sources.offline import OfflineSource
from reportgen.sources.wandb_file import BLOCK_SIZE, read_payloads
from reportgen.spec import SourceSpec


def read_run(root: Path, run_id: str, stale_after: float = 900, now: datetime | None = None):
    source = OfflineSource(
        SourceSpec("wandb-offline", path=str(root), stale_after=timedelta(seconds=stale_after))
    )
    runs = {run.id: run for run in source.list_runs(now=now)}
    return runs[run_id], source.history(runs[run_id])


def build_over(root: Path, tmp_path: Path, run_id: str):
    spec = write_spec(
        tmp_path / "spec.yaml",
        f'version: 1\nsource: {{type: wandb-offline, path: "{root}"}}\n'
        f"runs: {{ids: [{run_id}]}}\nmetrics: {{length: response_length/mean}}\n"
        f'sampling: {{every: 100}}\noutputs: {{dir: "{tmp_path / "out"}"}}\n',
    )
    return build(spec)


def test_an_empty_file_becomes_a_run_with_a_note(project_copy, tmp_path):
    path = wandb_files(project_copy)["rlmid001"]
    path.write_bytes(b"")
    result = build_over(project_copy, tmp_path, "rlmid001")
    run = result.report.run("rlmid001")
    assert run.rows == 0 and run.state in ("running", "killed")
    assert any("the file is empty (the run died before its first write)" in n for n in run.notes)
    assert "the file is empty" in (result.out_dir / "report.md").read_text()


def test_a_file_cut_mid_record_keeps_every_record_before_the_cut(project_copy, tmp_path):
    path = wandb_files(project_copy)["rlshort1"]
    data = path.read_bytes()
    cut = int(len(data) * 0.6) + 3
    path.write_bytes(data[:cut])
    run, history = read_run(project_copy, "rlshort1")
    steps = history.series("response_length/mean").index.tolist()
    assert 0 < len(steps) < 1050
    assert steps == list(range(len(steps)))  # a prefix, nothing invented
    logged = rl_rows(RL_INDEX["rlshort1"])
    assert history.series("response_length/mean").tolist() == [
        logged[s]["response_length/mean"] for s in steps
    ]
    assert run.exit_code is None and run.state == "running"  # the exit record was cut off
    assert any("the file ends in the middle of a record" in n for n in run.read_notes)


def test_a_file_without_an_exit_record_is_killed_an_hour_after_its_last_timestamp(project_copy):
    path = wandb_files(project_copy)["rlshort1"]
    path.write_bytes(path.read_bytes()[: int(path.stat().st_size * 0.5)])
    run, history = read_run(project_copy, "rlshort1", stale_after=600)
    last_logged = float(history.series("_timestamp").iloc[-1])
    assert run.heartbeat_at is not None
    assert abs(run.heartbeat_at.timestamp() - last_logged) < 1  # the newest moment in the file
    an_hour_later = run.heartbeat_at + timedelta(hours=1)
    run, _ = read_run(project_copy, "rlshort1", stale_after=600, now=an_hour_later)
    assert run.state == "killed"
    # The file's mtime says nothing: touched just now, it is still an hour-old run.
    os.utime(path, (time.time(), time.time()))
    run, _ = read_run(project_copy, "rlshort1", stale_after=600, now=an_hour_later)
    assert run.state == "killed"
    five_minutes_later = run.heartbeat_at + timedelta(minutes=5)
    run, _ = read_run(project_copy, "rlshort1", stale_after=600, now=five_minutes_later)
    assert run.state == "running"


def test_a_bad_checksum_costs_one_record_and_the_rest_is_read(project_copy, tmp_path):
    path = wandb_files(project_copy)["rllong01"]
    data = bytearray(path.read_bytes())
    assert len(data) > 4 * BLOCK_SIZE
    data[BLOCK_SIZE + 5000] ^= 0xFF  # inside block 1
    path.write_bytes(bytes(data))
    _payloads, damages = read_payloads(bytes(data))
    assert len(damages) == 1 and damages[0].reason == "a checksum does not match"
    assert BLOCK_SIZE < damages[0].offset <= BLOCK_SIZE + 5000
    # The reader resynchronises at the next intact chunk: one record is lost, not the block.
    assert damages[0].lost_bytes < 2_000
    run, history = read_run(project_copy, "rllong01")
    steps = history.series("response_length/mean").index.tolist()
    assert steps[0] == 0 and steps[-1] == 1049  # records after the damage are read
    assert 1048 <= len(steps) <= 1050  # at most the damaged record is missing
    assert run.state == "finished" and run.exit_code == 0  # the exit record survived
    note = next(n for n in run.read_notes if "checksum" in n)
    assert "bytes could not be read" in note
    result = build_over(project_copy, tmp_path, "rllong01")
    assert "a checksum does not match" in (result.out_dir / "report.md").read_text()


def test_a_file_that_is_not_a_wandb_log_is_reported(project_copy):
    path = wandb_files(project_copy)["grpotiny"]
    path.write_bytes(b"this is not a transaction log at all")
    run, history = read_run(project_copy, "grpotiny")
    assert len(history) == 0
    assert any("not a W&B transaction log" in n for n in run.read_notes)


def test_garbage_in_every_block_never_raises(project_copy):
    path = wandb_files(project_copy)["rlmid001"]
    data = bytearray(path.read_bytes())
    for offset in range(100, len(data), 9973):
        data[offset] ^= 0x5A
    path.write_bytes(bytes(data))
    run, history = read_run(project_copy, "rlmid001")
    assert run.read_notes  # damage is reported, and reading finished
    assert all(step >= 0 for step in history.steps())


def test_decoding_in_worker_processes_reads_exactly_what_one_process_reads(
    project_dir, monkeypatch
):
    from reportgen.sources import offline

    def read_everything():
        source = OfflineSource(SourceSpec("wandb-offline", path=str(project_dir)))
        runs = sorted(source.list_runs(), key=lambda r: r.id)
        return [(run, source.history(run).to_long()) for run in runs]

    alone = read_everything()
    monkeypatch.setattr(offline, "PARALLEL_MIN_BYTES", 0)
    together = read_everything()
    assert [repr(run) for run, _ in together] == [repr(run) for run, _ in alone]  # NaN-safe
    for (_, a), (_, b) in zip(alone, together, strict=True):
        assert a.equals(b)


def test_files_decoded_in_worker_processes_are_cached_as_one_process_caches_them(
    project_copy, tmp_path, monkeypatch
):
    """The workers store the cache entries of the files they decode (a cut file among them):
    the same entries, byte for byte, as one process stores; a rebuild reads them back."""
    from reportgen.cache import CacheLocation, RunCache
    from reportgen.sources import offline

    cut = max(project_copy.rglob("run-*.wandb"), key=lambda path: path.stat().st_size)
    cut.write_bytes(cut.read_bytes()[: cut.stat().st_size // 2])
    for path in project_copy.rglob("*.wandb"):  # settled files: the cache stores them
        os.utime(path, (time.time() - 60, time.time() - 60))

    def read_into(cache_dir: Path) -> list[str]:
        cache = RunCache.at(CacheLocation(cache_dir, "test"))
        source = OfflineSource(SourceSpec("wandb-offline", path=str(project_copy)), cache=cache)
        return sorted(repr(run) for run in source.list_runs())

    alone = read_into(tmp_path / "alone")
    monkeypatch.setattr(offline, "PARALLEL_MIN_BYTES", 0)
    together = read_into(tmp_path / "together")
    assert together == alone and any("bytes could not be read" in run for run in alone)
    entries = sorted(p.relative_to(tmp_path / "alone") for p in (tmp_path / "alone").rglob("*"))
    assert len(cached_metas(tmp_path / "alone")) == len(list(project_copy.rglob("*.wandb")))
    assert entries == sorted(
        p.relative_to(tmp_path / "together") for p in (tmp_path / "together").rglob("*")
    )
    for path in entries:
        if path.parent.name == "entries":  # every file of every entry
            alone_bytes = (tmp_path / "alone" / path).read_bytes()
            assert alone_bytes == (tmp_path / "together" / path).read_bytes(), path
    assert read_into(tmp_path / "together") == alone  # read back from the workers' entries
