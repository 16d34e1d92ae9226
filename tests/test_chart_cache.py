"""Charts kept by content in the cache folder: a rebuild takes unchanged charts from it (the
same bytes drawing gives), and a chart whose data changed is drawn again.

Runs are written by the real wandb client (conftest.project_dir); builds are real builds.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import stat
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import write_spec

from reportgen.build import build
from reportgen.cache import CHARTS
from reportgen.render.chart_cache import ChartCache, chart_keys
from reportgen.render.plots import chart_jobs, start_charts
from reportgen.report import Report

SPEC = """\
version: 1
title: Chart cache
source: {{type: wandb-offline, path: "{path}"}}
cache: {{dir: "{cache}"}}
metrics:
  loss: train/loss
  length: response_length/mean
outputs:
  dir: "{out}"
  formats: [markdown, pdf]
  run_pages: all
"""


def spec_file(tmp_path: Path, project_dir: Path, out: str = "out") -> Path:
    text = SPEC.format(path=project_dir, cache=tmp_path / "cache", out=tmp_path / out)
    return write_spec(tmp_path / "spec.yaml", text)


def kept_charts(cache: Path) -> list[Path]:
    return sorted((cache / CHARTS).glob("??/*.*"))


@pytest.fixture(autouse=True)
def _spec_cache_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    # The session's private REPORTGEN_CACHE_DIR would win over the spec's cache.dir.
    monkeypatch.delenv("REPORTGEN_CACHE_DIR", raising=False)


@pytest.fixture(scope="module")
def built(project_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Report, Path]:
    """One build's report and its cache folder (which now holds every chart of it)."""
    tmp = tmp_path_factory.mktemp("built")
    with pytest.MonkeyPatch.context() as patch:
        patch.delenv("REPORTGEN_CACHE_DIR", raising=False)
        report = build(spec_file(tmp, project_dir), now="2026-11-01T12:00:00Z").report
    return report, tmp / "cache"


def test_a_rebuild_takes_every_chart_from_the_cache(project_dir, tmp_path):
    spec = spec_file(tmp_path, project_dir)
    first = build(spec, now="2026-11-01T12:00:00Z")
    report = first.report
    jobs = chart_jobs(report, png=True, pdf=True)
    kept = kept_charts(tmp_path / "cache")
    # One file per chart and format: two aliases as PNG and PDF, a page per run as PDF.
    assert len(kept) == sum(len(job.formats) for job in jobs)
    assert {p.suffix for p in kept} == {".png", ".pdf"}
    assert {stat.S_IMODE(p.stat().st_mode) for p in kept} == {0o600}  # like the run cache
    pdf = (tmp_path / "out" / "report.pdf").read_bytes()
    png = (tmp_path / "out" / "plots" / "loss.png").read_bytes()

    # Mark one kept chart: a rebuild that reads the cache shows the marked bytes.
    loss = jobs.index(next(j for j in jobs if j.kind == "alias" and j.key == "loss"))
    key = chart_keys(report, jobs)[loss]
    marked = ChartCache(tmp_path / "cache" / CHARTS).path(key, "png")
    assert marked.read_bytes() == png
    marked.write_bytes(png + b"marked")
    build(spec, now="2026-11-01T12:00:00Z")
    assert (tmp_path / "out" / "plots" / "loss.png").read_bytes() == png + b"marked"
    assert (tmp_path / "out" / "report.pdf").read_bytes() == pdf  # kept PDF charts: same bytes

    # --refresh draws every chart again (and keeps the new drawing).
    build(spec, now="2026-11-01T12:00:00Z", cache_mode="refresh")
    assert (tmp_path / "out" / "plots" / "loss.png").read_bytes() == png
    assert marked.read_bytes() == png


def test_kept_charts_are_the_bytes_drawing_gives(built):
    report, folder = built
    cache = ChartCache(folder / CHARTS)
    with start_charts(report, png=True, pdf=True, processes=0, cache=cache) as kept:
        from_cache = kept.drawn()
    assert kept.kept == len(kept.jobs) > 5
    with start_charts(report, png=True, pdf=True, processes=0) as fresh:
        assert fresh.kept == 0
        assert fresh.drawn() == from_cache


def with_loss_scaled(report: Report, run_id: str, factor: float) -> Report:
    """The report with one run's loss curve multiplied: new data for that run's charts."""
    runs = []
    for run in report.runs:
        if run.id == run_id:
            curves = tuple(
                dataclasses.replace(c, values=c.values * factor) if c.alias == "loss" else c
                for c in run.curves
            )
            run = dataclasses.replace(run, curves=curves)
        runs.append(run)
    return dataclasses.replace(report, runs=tuple(runs))


def test_a_chart_whose_data_changed_is_drawn_again(built, tmp_path):
    report, folder = built
    shutil.copytree(folder, tmp_path / "cache")  # this test adds charts to its cache
    changed = with_loss_scaled(report, "sftnan01", 3.0)
    assert not np.array_equal(
        changed.run("sftnan01").curve("loss").values, report.run("sftnan01").curve("loss").values
    )
    jobs = chart_jobs(report, png=True, pdf=True)
    before, after = chart_keys(report, jobs), chart_keys(changed, jobs)
    differ = {(j.kind, j.key) for j, b, a in zip(jobs, before, after, strict=True) if b != a}
    # The loss chart shows that run; so does its own page. Other runs' pages are unchanged.
    assert ("alias", "loss") in differ and ("run", "sftnan01") in differ
    assert not {key for kind, key in differ if kind == "run"} - {"sftnan01"}

    cache = ChartCache(tmp_path / "cache" / CHARTS)
    with start_charts(changed, png=True, pdf=True, processes=2, cache=cache) as pending:
        drawn = pending.drawn()
    assert pending.kept == len(jobs) - len(differ)
    with start_charts(changed, png=True, pdf=True, processes=0) as fresh:
        assert drawn == fresh.drawn()  # the changed charts are new drawings, not kept ones
    # ...and they are kept now too: asking again draws nothing.
    with start_charts(changed, png=True, pdf=True, processes=0, cache=cache) as again:
        assert again.kept == len(jobs)


def test_plot_settings_are_part_of_a_charts_key(built):
    report, _ = built
    jobs = chart_jobs(report, png=False, pdf=True)
    logged = dataclasses.replace(report, plots=dataclasses.replace(report.plots, log_y=("loss",)))
    before, after = chart_keys(report, jobs), chart_keys(logged, jobs)
    assert all(a != b for a, b in zip(before, after, strict=True))


def test_a_read_only_cache_serves_charts_and_keeps_none(built, tmp_path):
    report, folder = built
    other = tmp_path / "other"
    jobs = chart_jobs(report, png=False, pdf=True)
    with start_charts(report, pdf=True, processes=0, cache=ChartCache(other, stores=False)) as p:
        p.drawn()
    assert not other.exists()
    served = ChartCache(folder / CHARTS, stores=False)
    with start_charts(report, pdf=True, processes=0, cache=served) as pending:
        pending.drawn()
    assert pending.kept == len(jobs)


def test_charts_unused_for_a_month_are_pruned(project_dir, tmp_path):
    build(spec_file(tmp_path, project_dir), now="2026-11-01T12:00:00Z")
    kept = kept_charts(tmp_path / "cache")
    old = time.time() - 40 * 86400
    os.utime(kept[0], (old, old))
    cache = ChartCache(tmp_path / "cache" / CHARTS)
    assert cache.prune() == 1
    assert kept_charts(tmp_path / "cache") == kept[1:]
    # A build uses (touches) what it reads, so charts in use are never pruned by age.
    build(spec_file(tmp_path, project_dir), now="2026-11-01T12:00:00Z")
    assert all(p.stat().st_mtime > old + 86400 for p in kept_charts(tmp_path / "cache"))
