"""The local executor's forked worker: a build on two processes writes the same files."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from conftest import write_spec

from reportgen import build, digest_pool
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
    names = sorted(p.name for p in alone.iterdir() if p.is_file())
    assert "report.json" in names and any(name.endswith(".csv") for name in names)
    assert names == sorted(p.name for p in shared.iterdir() if p.is_file())
    for name in names:
        assert (alone / name).read_bytes() == (shared / name).read_bytes(), name
