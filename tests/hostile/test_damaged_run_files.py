"""Damaged or unreadable run files: each becomes a noted problem of its run, never an aborted
build, a hang, or a clean-looking "running" run with no rows and no note.

Every case starts from real files written by the real client (the session's project) and
damages a copy of them; the rest of the project must still be built.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from conftest import write_spec
from runwriter import wandb_files

from reportgen.sources.offline import OfflineSource
from reportgen.sources.wandb_file import BLOCK_SIZE, HEADER, read_payloads
from reportgen.spec import SourceSpec


def read_all(root: Path):
    source = OfflineSource(
        SourceSpec("wandb-offline", path=str(root), stale_after=timedelta(minutes=15))
    )
    runs = {run.id: run for run in source.list_runs()}
    return runs, {run_id: source.history(run) for run_id, run in runs.items()}


def build_in_child(root: Path, tmp_path: Path, timeout: float = 120) -> subprocess.CompletedProcess:
    """`reportgen build` over the folder in its own process, so that a hang fails the test."""
    spec = write_spec(
        tmp_path / "spec.yaml",
        f'version: 1\nsource: {{type: wandb-offline, path: "{root}"}}\n'
        "metrics: {length: response_length/mean}\n"
        f'outputs: {{dir: "{tmp_path / "out"}", formats: [json]}}\n',
    )
    env = dict(os.environ, REPORTGEN_CACHE_DIR=str(tmp_path / "cache"))
    return subprocess.run(
        [sys.executable, "-m", "reportgen", "build", str(spec)],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def report_runs(tmp_path: Path) -> dict[str, dict]:
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    return {run["id"]: run for run in report["runs"]}


def replace_with(path: Path, make) -> None:  # type: ignore[no-untyped-def]
    path.unlink()
    make(path)


def test_a_dangling_symlink_is_a_noted_problem_and_the_rest_is_built(project_copy, tmp_path):
    path = wandb_files(project_copy)["rlmid001"]
    replace_with(path, lambda p: p.symlink_to(p.parent / "gone.wandb"))
    done = build_in_child(project_copy, tmp_path)
    assert done.returncode in (0, 1), done.stderr
    runs = report_runs(tmp_path)
    assert runs["rllong01"]["steps"]["rows"] == 1050  # the healthy runs are all there
    runs_read, _ = read_all(project_copy)
    notes = " ".join(runs_read["rlmid001"].read_notes)
    assert "the file does not exist (a dangling symlink?)" in notes


def test_a_fifo_named_like_a_run_file_never_hangs(project_copy, tmp_path):
    path = wandb_files(project_copy)["rlmid001"]
    replace_with(path, lambda p: os.mkfifo(p))
    done = build_in_child(project_copy, tmp_path, timeout=120)  # a hang raises TimeoutExpired
    assert done.returncode in (0, 1), done.stderr
    assert report_runs(tmp_path)["rllong01"]["steps"]["rows"] == 1050
    runs_read, _ = read_all(project_copy)
    assert any("not a regular file" in n for n in runs_read["rlmid001"].read_notes)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_an_unreadable_file_is_a_noted_problem(project_copy):
    path = wandb_files(project_copy)["rlmid001"]
    path.chmod(0)
    runs, _ = read_all(project_copy)
    assert any("permission denied" in n for n in runs["rlmid001"].read_notes)
    assert runs["rllong01"].state == "finished"


def test_a_file_with_only_its_header_is_not_a_clean_running_run(project_copy):
    path = wandb_files(project_copy)["rlmid001"]
    path.write_bytes(HEADER)
    runs, histories = read_all(project_copy)
    run = runs["rlmid001"]
    assert len(histories["rlmid001"]) == 0
    assert "the file holds only its header (no record was written)" in " ".join(run.read_notes)
    assert run.state == "killed"  # no timestamp inside: never "running"
    assert any("hold no timestamp" in n for n in run.read_notes)


def test_zeros_after_the_header_are_counted_as_lost(project_copy):
    path = wandb_files(project_copy)["rlmid001"]
    path.write_bytes(HEADER + bytes(100_000))
    runs, _ = read_all(project_copy)
    notes = " ".join(runs["rlmid001"].read_notes)
    assert "a region of zeros" in notes and "100,000 bytes could not be read" in notes
    assert runs["rlmid001"].state == "killed"


def test_a_zeroed_32_kib_region_costs_only_what_it_covers(project_copy):
    path = wandb_files(project_copy)["rllong01"]
    data = bytearray(path.read_bytes())
    assert len(data) > 6 * BLOCK_SIZE
    start = 2 * BLOCK_SIZE + 1000
    data[start : start + BLOCK_SIZE] = bytes(BLOCK_SIZE)
    path.write_bytes(bytes(data))
    payloads, damages = read_payloads(bytes(data))
    intact, _ = read_payloads(bytes(data[:start]))
    # One loss: the chunk the zeros begin in fails its checksum, and the reader scans on.
    assert len(damages) == 1
    # What is lost: the zeros, plus the records they cut into at either end (a record is small).
    assert BLOCK_SIZE <= damages[0].lost_bytes < BLOCK_SIZE + 2_000
    assert start - 1_000 < damages[0].offset <= start
    runs, histories = read_all(project_copy)
    steps = histories["rllong01"].series("response_length/mean").index.tolist()
    assert steps[-1] == 1049 and len(steps) > 900  # everything after the region is read
    assert runs["rllong01"].state == "finished"  # the exit record at the end survived
    note = next(n for n in runs["rllong01"].read_notes if "could not be read" in n)
    assert f"{damages[0].lost_bytes:,} bytes could not be read" in note
    assert len(payloads) > len(intact)
