"""A build runs the cycle collector less often, and leaves the caller's settings as they were."""

from __future__ import annotations

import gc

from conftest import write_spec

from reportgen import build
from reportgen.collector import YOUNG_THRESHOLD, fewer_collections


def test_collections_are_rarer_inside_and_as_before_after():
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        with fewer_collections():
            assert gc.get_threshold() == (YOUNG_THRESHOLD, 10, 10)
        assert gc.get_threshold() == (700, 10, 10)
        gc.set_threshold(50_000, 5, 5)  # a caller that runs them rarer still keeps its own
        with fewer_collections():
            assert gc.get_threshold() == (50_000, 5, 5)
        assert gc.get_threshold() == (50_000, 5, 5)
    finally:
        gc.set_threshold(*before)


def test_a_build_restores_the_callers_thresholds(tmp_path, project_dir, monkeypatch):
    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(tmp_path / "cache"))
    spec = write_spec(
        tmp_path / "spec.yaml",
        f"version: 1\nsource: {{type: wandb-offline, path: '{project_dir}'}}\n"
        f"outputs: {{dir: '{tmp_path / 'out'}', formats: [json]}}\n",
    )
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)
        result = build(spec)
        assert gc.get_threshold() == (700, 10, 10)
    finally:
        gc.set_threshold(*before)
    assert (tmp_path / "out" / "report.json").is_file() and result.report.runs
