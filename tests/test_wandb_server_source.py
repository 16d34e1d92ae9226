"""The W&B server as a source: the real `wandb.Api` against a loopback server (tests/wandb_server.py)
serving runs that the real client wrote offline. The report must equal the offline one, and the
cache must spare every request it promises to spare.
"""

from __future__ import annotations

import copy
import csv
import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from conftest import write_spec
from runwriter import PlannedRun, hermetic_env, write_runs
from wandb_server import Fault, ServedRun, WandbServer, runs_from_folder

from reportgen import build
from reportgen.cache import LAYOUT
from reportgen.cli import main
from reportgen.sources import cloud
from reportgen.sources.cloud import (
    OVERLAP_STEPS,
    CloudSource,
    _flat_numeric_records,
    records_to_history,
    rows_to_history,
    server_filters,
)
from reportgen.sources.offline import OfflineSource
from reportgen.spec import RunFilters, SourceSpec, TimeBound

KEY = "rgtest" + "0123456789abcdef" * 2 + "feedc0de"
HISTORY_STEPS_SHORT = 1050

SPEC = """\
version: 1
title: Sweep
source: {source}
runs:
  filters: {filters}
metrics:
  entropy_loss: [actor/entropy, actor/entropy_loss]
  length: response_length/mean
  loss: {{key: train/loss, goal: minimize}}
  val: val/loss
  acc: eval/acc
sampling: {{x: _step, start: 0, every: 100}}
outputs:
  dir: "{out}"
  formats: [csv, json, markdown]
"""


def stepper_plan() -> PlannedRun:
    """A run with define_metric step metrics, infinities, keys at two cadences, nested config."""
    rows = []
    for s in range(40):
        row = {"train/loss": float("inf") if s == 3 else 1.0 / (s + 1), "train/step": s * 10}
        if s % 5 == 0:
            row["eval/acc"] = s / 10
        rows.append(row)
    return PlannedRun(
        name="stepper",
        run_id="stepper1",
        rows=rows,
        define_metrics=[
            {"name": "train/step"},
            {"name": "train/*", "step_metric": "train/step"},
            {"name": "eval/acc", "step_metric": "train/step"},
        ],
        config={"optim": {"lr": 0.01, "betas": [0.9, 0.99]}, "seed": 7},
        summary={"best": {"acc": 0.9}, "final": 1.5},
        tags=["steps"],
    )


@pytest.fixture(scope="module")
def served_folder(project_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's real offline runs plus one more, in one folder."""
    folder = tmp_path_factory.mktemp("served")
    shutil.copytree(project_dir, folder, dirs_exist_ok=True, symlinks=True)
    return write_runs(folder, [stepper_plan()])


@pytest.fixture(scope="module")
def served_runs(served_folder: Path) -> dict[bool, list[ServedRun]]:
    return {
        exported: runs_from_folder(served_folder, export_finished=exported)
        for exported in (False, True)
    }


@pytest.fixture(scope="module", autouse=True)
def hermetic_wandb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """wandb in this process reads nothing of the developer's own setup."""
    root = tmp_path_factory.mktemp("wandb-home")
    saved = dict(os.environ)
    for name in [k for k in os.environ if k.startswith("WANDB_")]:
        del os.environ[name]
    os.environ.update(
        WANDB_CONFIG_DIR=str(root / "config"),
        WANDB_CACHE_DIR=str(root / "cache"),
        WANDB_DATA_DIR=str(root / "data"),
        WANDB_DIR=str(root),
        WANDB_SILENT="true",
        WANDB_ERROR_REPORTING="false",
        NETRC=str(root / "netrc-none"),
    )
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def wandb_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """The key in WANDB_API_KEY and a private reportgen cache; returns the cache folder."""
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    cache = tmp_path / "cache"
    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(cache))
    return cache


def serve(served_runs, *, exported: bool = False, **options) -> WandbServer:
    return WandbServer(copy.deepcopy(served_runs[exported]), api_key=KEY, **options)


def server_spec(tmp_path: Path, server: WandbServer, *, name="server", filters="{}", **source):
    fields = {"type": "wandb", "entity": "tester", "project": "tests", "base_url": server.url}
    fields.update(source)
    text = ", ".join(f"{k}: {json.dumps(v)}" for k, v in fields.items())
    return write_spec(
        tmp_path / f"{name}.yaml",
        SPEC.format(source="{" + text + "}", filters=filters, out=tmp_path / f"out-{name}"),
    )


def offline_spec(tmp_path: Path, folder: Path, *, filters="{}"):
    source = json.dumps({"type": "wandb-offline", "path": str(folder)})
    return write_spec(
        tmp_path / "offline.yaml",
        SPEC.format(source=source, filters=filters, out=tmp_path / "out-offline"),
    )


def metadata_requests(server: WandbServer) -> list[list[str]]:
    """The runs each config-and-summary request named (several runs in one request)."""
    return [r.runs for r in server.requests if r.op in ("Run", "RunsMetadata")]


def history_faults(status: int, run: str | None = None) -> list[Fault]:
    """Every history request (several runs' at once, and one run's scan) fails, for good."""
    return [Fault(op, status, times=None, run=run) for op in ("RunsHistory", "HistoryPage")]


def by_run(item: dict) -> str:
    return item["run_id"]


def csv_files(folder: Path) -> dict[str, list[list[str]]]:
    found = {}
    for path in sorted(folder.glob("*.csv")):
        with path.open(newline="") as handle:
            found[path.name] = list(csv.reader(handle))
    return found


def comparable_runs(report_json: Path, local_notes: set[str]) -> dict[str, dict]:
    """report.json runs by id, without what only one kind of source can know.

    url: only the server has one. created_at: the server keeps whole seconds. Notes about local
    files (merged folders) exist only offline.
    """
    data = json.loads(report_json.read_text())
    runs = {}
    for run in data["runs"]:
        run = dict(run)
        run.pop("url")
        run["created_at"] = run["created_at"][:19]
        run["notes"] = [n for n in run["notes"] if n not in local_notes]
        runs[run["id"]] = run
    return runs


@pytest.fixture(scope="module")
def offline_build(served_folder: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("offline-build")
    result = build(offline_spec(tmp, served_folder))
    local_notes = {
        note
        for run in OfflineSource(SourceSpec("wandb-offline", path=str(served_folder))).list_runs()
        for note in run.read_notes
    }
    return result, local_notes


# --- the same report as offline ----------------------------------------------------------------


@pytest.mark.parametrize("exported", [False, True], ids=["live-history", "parquet-export"])
def test_the_report_from_the_server_equals_the_offline_report(
    served_runs, offline_build, wandb_env, tmp_path, exported
):
    offline, local_notes = offline_build
    with serve(served_runs, exported=exported) as server:
        result = build(server_spec(tmp_path, server))
    assert not result.report.incomplete and result.warnings == ()
    assert csv_files(result.out_dir) == csv_files(offline.out_dir)
    assert len(csv_files(result.out_dir)) == 8
    assert KEY not in "".join(files_text(wandb_env))
    ours = json.loads((result.out_dir / "report.json").read_text())
    theirs = json.loads((offline.out_dir / "report.json").read_text())
    # Runs created within one second may be listed in another order (the server keeps seconds).
    assert sorted(ours["tables"], key=by_run) == sorted(theirs["tables"], key=by_run)
    assert comparable_runs(result.out_dir / "report.json", local_notes) == comparable_runs(
        offline.out_dir / "report.json", local_notes
    )
    assert ours["source"] == {
        "type": "wandb",
        "entity": "tester",
        "project": "tests",
        "base_url": server.url,
    }


def test_define_metric_steps_and_infinities_come_through(served_runs, wandb_env, tmp_path):
    with serve(served_runs) as server:
        result = build(server_spec(tmp_path, server, filters="{tags: {any: [steps]}}"))
    run = result.report.run("stepper1")
    assert run.metric("loss").x_key == "train/step"
    assert run.metric("acc").x_key == "train/step"
    assert run.metric("loss").stats.non_finite == 1
    assert run.config == {"optim": {"lr": 0.01, "betas": [0.9, 0.99]}, "seed": 7}
    assert run.summary["best"] == {"acc": 0.9} and "_wandb" not in run.summary


# --- what the server is asked ------------------------------------------------------------------


def test_filters_the_server_can_evaluate_are_sent_with_the_listing(
    served_runs, wandb_env, tmp_path
):
    filters = (
        '{state: [finished], tags: {any: [grpo]}, name: "^grpo-", '
        "config: {seed: {gte: 1}, actor.lr: {lte: 2.5e-6}}}"
    )
    with serve(served_runs) as server:
        result = build(server_spec(tmp_path, server, filters=filters))
    listing = [r for r in server.requests if r.op == "Runs"]
    assert len(listing) == 1
    assert json.loads(listing[0].variables["filters"]) == {
        "$and": [
            {"state": {"$in": ["finished"]}},
            {"tags": {"$in": ["grpo"]}},
            {"display_name": {"$regex": "^grpo-"}},
            {"config.seed.value": {"$gte": 1}},
        ]
    }
    # The server returned the runs with seed >= 1; the dotted key was applied here.
    assert [run.id for run in result.report.runs] == ["rlmid001"]
    assert result.report.runs_found == 2
    # Config and summary of the two runs the server kept, in one request.
    assert metadata_requests(server) == [["rllong01", "rlmid001"]]  # newest first
    assert {r.run for r in server.history_requests()} == {"rlmid001"}


def test_only_the_newest_runs_within_the_limit_load_config(served_runs, wandb_env, tmp_path):
    with serve(served_runs) as server:
        spec = server_spec(tmp_path, server)
        text = spec.read_text().replace("runs:\n", "runs:\n  limit: 2\n")
        spec.write_text(text)
        result = build(spec)
    chosen = [run.id for run in result.report.runs]
    assert len(chosen) == 2
    assert [sorted(runs) for runs in metadata_requests(server)] == [sorted(chosen)]
    assert {run for r in server.history_requests() for run in r.runs} == set(chosen)


def test_named_run_ids_are_fetched_without_listing_the_project(served_runs, wandb_env, tmp_path):
    with serve(served_runs) as server:
        spec = server_spec(tmp_path, server)
        spec.write_text(spec.read_text().replace("runs:\n", "runs:\n  ids: [rlshort1, nosuch99]\n"))
        result = build(spec)
    assert [run.id for run in result.report.runs] == ["rlshort1"]
    assert server.ops()["Runs"] == 0
    assert any("nosuch99" in note for note in result.report.notes)


def test_what_cannot_be_evaluated_exactly_by_the_server_is_not_sent():
    filters = RunFilters(
        states=("running", "killed"),
        tags_all=("a", "b"),
        tags_none=("old",),
        name=r"^(?!tmp)grpo",  # a lookahead: Python's re has it, RE2 does not
        config={
            "actor.lr": {"gte": 1e-6},  # dotted: the server would read it as nesting
            "lr": {"eq": 0.1, "gt": 0.0},
            "opt": {"in": ["adam", "sgd"], "ne": "x"},
            "flag": {"eq": True},
        },
        created_after=TimeBound("7d", age=timedelta(days=7)),
    )
    now = datetime(2026, 11, 20, 12, 0, 0, 500000, tzinfo=timezone.utc)
    assert server_filters(filters, now) == {
        "$and": [
            {"state": {"$in": ["killed", "pending", "preempted", "preempting", "running"]}},
            {"tags": {"$in": ["a"]}},
            {"tags": {"$in": ["b"]}},
            {"tags": {"$nin": ["old"]}},
            {"createdAt": {"$gte": "2026-11-13T11:59:59"}},
            {"config.lr.value": {"$gte": 0.1 - 1e-10, "$lte": 0.1 + 1e-10}},
            {"config.lr.value": {"$gt": 0.0}},
            {"config.opt.value": {"$in": ["adam", "sgd"]}},
        ]
    }


def test_no_filters_send_an_empty_filter():
    assert server_filters(RunFilters(), datetime.now(timezone.utc)) == {}


def test_a_cold_build_asks_for_many_runs_in_each_request(
    served_runs, offline_build, wandb_env, tmp_path
):
    with serve(served_runs) as server:
        result = build(server_spec(tmp_path, server))
        records = sum(len(run.rows) for run in server.runs.values())
    ops = server.ops()
    # Config and summary of all 8 runs in one request; their histories in at most one request
    # per worker; the failed run's console tail and exit code on their own.
    assert ops == {
        "Viewer": 1,
        "Runs": 1,
        "RunsMetadata": 1,
        "RunsHistory": ops["RunsHistory"],
        "RunConsoleLogTail": 1,
        "RunExitCode": 1,
    }
    assert 1 <= ops["RunsHistory"] <= 6
    # Every record of every run served once, and the report is the offline one.
    assert sum(r.rows for r in server.requests if r.op == "RunsHistory") == records
    offline, _ = offline_build
    assert csv_files(result.out_dir) == csv_files(offline.out_dir)


def test_a_server_that_refuses_batched_queries_still_gives_every_record(
    served_runs, offline_build, wandb_env, tmp_path
):
    """A server whose schema lacks something the batched queries ask for answers HTTP 400:
    each run is then read on its own, as the client's own calls read it."""
    with serve(served_runs) as server:
        server.faults += [Fault(op, 400, times=None) for op in ("RunsMetadata", "RunsHistory")]
        result = build(server_spec(tmp_path, server))
    assert server.ops()["Run"] == 8 and server.ops()["HistoryPage"] >= 8
    assert not result.report.incomplete
    offline, _ = offline_build
    assert csv_files(result.out_dir) == csv_files(offline.out_dir)


def test_batches_are_bounded_by_logged_values_and_bigger_runs_are_scanned(
    served_runs, offline_build, wandb_env, tmp_path, monkeypatch
):
    """Runs that log many keys get fewer records per request: the size of a batch is counted in
    values (from each run's historyKeys), and a run bigger than a whole batch is scanned."""
    monkeypatch.setattr(cloud, "HISTORY_BATCH_VALUES", 6000)
    with serve(served_runs) as server:
        result = build(server_spec(tmp_path, server))
        size = {
            run.id: len(run.rows) + sum(len(row) - 1 for row in run.rows)
            for run in server.runs.values()
        }
    batches = [r.runs for r in server.requests if r.op == "RunsHistory"]
    assert batches and all(sum(size[run] for run in batch) <= 6000 for batch in batches)
    scanned = {r.run for r in server.requests if r.op == "HistoryPage"}
    assert scanned == {run for run, values in size.items() if values > 6000} != set()
    offline, _ = offline_build
    assert csv_files(result.out_dir) == csv_files(offline.out_dir)


def test_a_run_whose_batched_answer_was_sampled_is_scanned_instead(
    served_runs, offline_build, wandb_env, tmp_path
):
    """A server that answers at most 1,000 records per `history` field (the page the client's
    own scan asks for) samples a longer run's answer: fewer records than the listing counts,
    so that run is scanned page by page instead, and the report keeps every value."""
    with serve(served_runs, history_cap=1000) as server:
        result = build(server_spec(tmp_path, server))
        long_runs = {run.id for run in server.runs.values() if len(run.rows) > 1000}
    assert long_runs and {r.run for r in server.requests if r.op == "HistoryPage"} == long_runs
    offline, _ = offline_build
    assert csv_files(result.out_dir) == csv_files(offline.out_dir)


# --- the cache ---------------------------------------------------------------------------------


def test_a_second_build_of_an_unchanged_project_makes_no_history_request(
    served_runs, wandb_env, tmp_path
):
    with serve(served_runs) as server:
        spec = server_spec(tmp_path, server)
        first = csv_files(build(spec).out_dir)
        server.reset_log()
        second = build(spec)
    assert server.history_requests() == []
    assert server.ops() == {"Viewer": 1, "Runs": 1}
    assert csv_files(second.out_dir) == first


def test_a_run_that_grew_fetches_only_its_new_steps(
    served_runs, offline_build, wandb_env, tmp_path
):
    runs = copy.deepcopy(served_runs[False])
    growing = next(run for run in runs if run.id == "rlshort1")
    later = {row["_step"]: row for row in growing.rows if row["_step"] >= 1000}
    growing.rows = [row for row in growing.rows if row["_step"] < 1000]
    growing.state = "running"
    with WandbServer(runs, api_key=KEY) as server:
        spec = server_spec(tmp_path, server, filters="{tags: {any: [grpo]}}")
        build(spec)
        server.append(
            "rlshort1",
            {s: {k: v for k, v in r.items() if k != "_step"} for s, r in later.items()},
            state="finished",
        )
        server.reset_log()
        result = build(spec)
    fetched = server.history_requests()
    assert {r.run for r in fetched} == {"rlshort1"}
    pages = [r for r in fetched if r.op == "HistoryPage"]
    # The last OVERLAP_STEPS cached steps are fetched again, to notice a rewound run.
    assert pages and min(r.variables["minStep"] for r in pages) == 1000 - OVERLAP_STEPS
    assert sum(r.rows for r in pages) == len(later) + OVERLAP_STEPS == 55
    assert metadata_requests(server) == [["rlshort1"]]
    offline, _ = offline_build
    name = "grpo-rlshort1_experiment.csv"
    assert csv_files(result.out_dir)[name] == csv_files(offline.out_dir)[name]


@pytest.mark.parametrize("damage", ["truncated-parquet", "bad-json"])
def test_a_damaged_cache_entry_is_reported_and_fetched_again(
    served_runs, wandb_env, tmp_path, damage
):
    with serve(served_runs) as server:
        spec = server_spec(tmp_path, server)
        first = csv_files(build(spec).out_dir)
        (meta,) = wandb_env.glob(f"{LAYOUT}/wandb-*/entries/rlmid001.json")
        parquet = meta.with_suffix(".parquet")
        if damage == "truncated-parquet":
            data = parquet.read_bytes()
            parquet.write_bytes(data[: len(data) // 2])
            reason = f"(rlmid001.parquet has {len(data) // 2:,} bytes, {len(data):,} expected)"
        else:
            meta.write_text('{"fingerprint": {"state": "fin')
            reason = "(rlmid001.json is not valid JSON ("
        server.reset_log()
        result = build(spec)
    assert len(result.warnings) == 1
    assert "rlmid001" in result.warnings[0] and "damaged" in result.warnings[0]
    assert reason in result.warnings[0]
    assert {r.run for r in server.history_requests()} == {"rlmid001"}
    assert csv_files(result.out_dir) == first
    server.reset_log()


def test_refresh_fetches_everything_again(served_runs, wandb_env, tmp_path):
    with serve(served_runs) as server:
        spec = server_spec(tmp_path, server)
        build(spec)
        server.reset_log()
        build(spec, cache_mode="refresh")
    assert len({run for r in server.history_requests() for run in r.runs}) == 8


def test_offline_builds_from_the_cache_alone(served_runs, wandb_env, tmp_path):
    with serve(served_runs) as server:
        spec = server_spec(tmp_path, server)
        online = csv_files(build(spec).out_dir)
    # The server is gone: nothing but the cache can answer.
    result = build(spec, cache_mode="offline")
    assert csv_files(result.out_dir) == online
    assert len(result.report.runs) == 8


def test_offline_exits_3_when_a_selected_run_is_not_cached(
    served_runs, wandb_env, tmp_path, capsys
):
    with serve(served_runs) as server:
        spec = server_spec(tmp_path, server)
        spec.write_text(spec.read_text().replace("runs:\n", "runs:\n  limit: 2\n"))
        build(spec)  # lists all 8 runs, caches the newest 2
        wider = server_spec(tmp_path, server, name="wider")
    assert main(["build", str(wider), "--offline"]) == 3
    err = capsys.readouterr().err
    assert err.startswith(f"error: --offline: the cache at {wandb_env} lacks 6 run(s) of ")
    assert err.endswith("; build once without --offline\n")


def test_offline_names_the_entry_file_whose_run_record_is_damaged_and_exits_3(
    served_runs, wandb_env, tmp_path, capsys
):
    with serve(served_runs) as server:
        spec = server_spec(tmp_path, server)
        build(spec)
    (meta,) = wandb_env.glob(f"{LAYOUT}/wandb-*/entries/rlmid001.json")
    entry = json.loads(meta.read_text())
    entry["run"]["id"] = 5  # valid JSON, a valid history record, but no run
    meta.write_text(json.dumps(entry))
    assert main(["build", str(spec), "--offline"]) == 3
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: --offline: the cached entry of run ")
    assert line.endswith(
        "(rlmid001) is damaged (rlmid001.json does not hold a run (id is not text)); "
        "build once without --offline to fetch it again"
    )


def test_offline_with_an_empty_cache_exits_3(served_runs, wandb_env, tmp_path, capsys):
    with serve(served_runs) as server:
        spec = server_spec(tmp_path, server)
    assert main(["build", str(spec), "--offline"]) == 3
    assert "holds no runs of W&B project tester/tests" in capsys.readouterr().err


# --- failures ----------------------------------------------------------------------------------


def test_a_429_then_success_still_yields_a_complete_report(
    served_runs, offline_build, wandb_env, tmp_path
):
    with serve(served_runs) as server:
        server.faults += [Fault("Runs", 429), Fault("RunsHistory", 429, times=3)]
        result = build(server_spec(tmp_path, server))
    refused = [r for r in server.requests if r.status == 429]
    assert len(refused) == 4
    assert not result.report.incomplete and len(result.report.runs) == 8
    offline, _ = offline_build
    assert csv_files(result.out_dir) == csv_files(offline.out_dir)


def test_a_run_that_keeps_failing_is_left_out_and_the_build_exits_5(
    served_runs, wandb_env, tmp_path, capsys
):
    with serve(served_runs) as server:
        server.faults += history_faults(500, run="rlmid001")
        spec = server_spec(tmp_path, server)
        assert main(["build", str(spec), "-q"]) == 5
    line, last = capsys.readouterr().err.splitlines()
    assert line.startswith(
        f"error: {spec}: runs: 1 of 8 chosen runs could not be read: grpo-rlmid001 (rlmid001): "
        "its history could not be fetched: "
    )
    assert "HTTP 500" in line
    assert line.endswith(
        "the report is incomplete (build again, or set runs.allow_partial: true to accept a "
        "report without them)"
    )
    assert last.startswith("the report is incomplete: exit 5")
    report = json.loads((tmp_path / "out-server" / "report.json").read_text())
    assert report["incomplete"] is True
    assert len(report["runs"]) == 7 and "rlmid001" not in {r["id"] for r in report["runs"]}
    (note,) = report["notes"]
    assert note.startswith("Incomplete: run grpo-rlmid001 (rlmid001) is left out of this report")
    assert "HTTP 500" in note and note.endswith("the report covers the other 7 runs.")
    assert "**Incomplete:**" in (tmp_path / "out-server" / "report.md").read_text()


def test_allow_partial_accepts_a_report_without_the_runs_that_failed(
    served_runs, wandb_env, tmp_path, capsys
):
    with serve(served_runs) as server:
        server.faults += history_faults(500, run="rlmid001")
        spec = server_spec(tmp_path, server)
        spec.write_text(spec.read_text().replace("runs:\n", "runs:\n  allow_partial: true\n"))
        assert main(["build", str(spec), "-q"]) == 0
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith(f"warning: {spec}: runs: 1 of 8 chosen runs could not be read")
    assert line.endswith("the report is incomplete (accepted by runs.allow_partial)")
    report = json.loads((tmp_path / "out-server" / "report.json").read_text())
    assert report["incomplete"] is True and report["missing"][0]["accepted"] is True


def test_a_build_that_could_read_no_run_fails_even_when_partial_results_are_allowed(
    served_runs, wandb_env, tmp_path, capsys
):
    with serve(served_runs) as server:
        server.faults += history_faults(500)
        spec = server_spec(tmp_path, server)
        spec.write_text(spec.read_text().replace("runs:\n", "runs:\n  allow_partial: true\n"))
        assert main(["build", str(spec), "-q"]) == 3
    (line,) = capsys.readouterr().err.splitlines()
    assert line.startswith("error: source: none of the 8 chosen runs could be read; ")
    assert "its history could not be fetched" in line and "HTTP 500" in line
    assert not (tmp_path / "out-server").exists()


def test_a_server_failing_every_request_is_named_as_failing_not_the_api_key(served_runs, tmp_path):
    with serve(served_runs) as server:
        for op in ("Viewer", "Runs", "Run", "RunsMetadata", "RunsHistory", "HistoryPage"):
            server.faults.append(Fault(op, 500, times=None))
        done = run_cli(["build", str(server_spec(tmp_path, server))], tmp_path, tmp_path, key=KEY)
    assert done.returncode == 3
    (line,) = done.stderr.splitlines()
    assert line.startswith(
        f"error: source: the W&B server at {server.url} is failing: it answered HTTP 500 (a "
        "server error, not a problem with the API key) to every attempt while checking the "
        "credentials ("
    )
    assert line.endswith("); try again later, or ask the server's administrator")
    assert "WANDB_API_KEY" not in line and "refused" not in line


def test_without_a_terminal_progress_lines_say_how_many_runs_are_done(served_runs, tmp_path):
    # Each request waits 0.4 s, several progress periods: a line falls while fetches wait even
    # when a loaded machine is slow to start the build (at 0.1 s, one run printed only 0/8).
    with serve(served_runs, latency=0.4) as server:
        spec = server_spec(tmp_path, server, workers=2)
        env_extra = {"REPORTGEN_PROGRESS_SECONDS": "0.15"}
        done = run_cli(["build", str(spec)], tmp_path, tmp_path / "cache", key=KEY, **env_extra)
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stderr.splitlines() if line.startswith("reading runs: ")]
    assert lines, done.stderr
    counts = [re.match(r"reading runs: (\d+)/(\d+) runs done", line) for line in lines]
    assert all(counts), lines
    assert {m.group(2) for m in counts if m} <= {"8"}
    # History fetches under way are named while they wait: several runs ride in one request.
    waiting = [re.search(r"(\d+)/8 runs done, (\d+) in progress", line) for line in lines]
    assert any(m and int(m[1]) < 8 and 0 < int(m[2]) <= 8 for m in waiting), lines


def test_quiet_builds_print_no_progress_lines(served_runs, tmp_path):
    with serve(served_runs, latency=0.02) as server:
        spec = server_spec(tmp_path, server, workers=2)
        done = run_cli(
            ["build", str(spec), "-q"],
            tmp_path,
            tmp_path / "cache",
            key=KEY,
            REPORTGEN_PROGRESS_SECONDS="0.3",
        )
    assert (done.returncode, done.stderr) == (0, "")


def test_an_unknown_project_exits_3(served_runs, wandb_env, tmp_path, capsys):
    with serve(served_runs) as server:
        spec = server_spec(tmp_path, server, project="nosuchproject")
        assert main(["build", str(spec)]) == 3
    err = capsys.readouterr().err
    assert err == (
        f"error: source: W&B project tester/nosuchproject was not found on {server.url} "
        "(check source.entity and source.project, and that these credentials can see it)\n"
    )


def test_missing_credentials_exit_3(served_runs, wandb_env, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY")
    with serve(served_runs) as server:
        assert main(["build", str(server_spec(tmp_path, server))]) == 3
    err = capsys.readouterr().err
    assert err == (
        f"error: source: no W&B credentials for {server.url}: set WANDB_API_KEY, or run "
        "`wandb login` (which stores the key in ~/.netrc)\n"
    )
    assert server.requests == []


def test_credentials_are_read_from_netrc(served_runs, wandb_env, tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY")
    with serve(served_runs) as server:
        netrc = tmp_path / "netrc"
        netrc.write_text(f"machine {server.url.split('//')[1]}\n  login user\n  password {KEY}\n")
        netrc.chmod(0o600)
        monkeypatch.setenv("NETRC", str(netrc))
        result = build(server_spec(tmp_path, server, filters="{tags: {any: [sft]}}"))
    assert len(result.report.runs) == 3


def test_refused_credentials_exit_3_and_the_key_is_shown_nowhere(served_runs, tmp_path):
    wrong = "rgwrong" + "9876543210fedcba" * 2 + "deadbeef"
    cache = tmp_path / "cache"
    with serve(served_runs) as server:
        spec = server_spec(tmp_path, server)
        done = run_cli(["build", str(spec)], tmp_path, cache, key=wrong)
    assert done.returncode == 3
    assert done.stderr.startswith(f"error: source: the W&B server at {server.url} refused")
    assert "Traceback" not in done.stderr
    for text in (
        done.stdout,
        done.stderr,
        *files_text(cache),
        *files_text(tmp_path / "out-server"),
    ):
        assert wrong not in text and KEY not in text


# --- two builds at once ------------------------------------------------------------------------


def test_two_builds_racing_on_one_cache_both_succeed_and_leave_it_whole(
    served_runs, offline_build, wandb_env, tmp_path
):
    with serve(served_runs, latency=0.005) as server:
        specs = [server_spec(tmp_path, server, name=f"racer{i}", workers=3) for i in (1, 2)]
        racers = [
            start_cli(["build", str(spec), "-q"], tmp_path, wandb_env, key=KEY) for spec in specs
        ]
        outcomes = [racer.communicate(timeout=120) for racer in racers]
        assert [racer.returncode for racer in racers] == [0, 0], outcomes
        assert [err for _, err in outcomes] == ["", ""]  # -q: nothing but errors
        offline, _ = offline_build
        for name in ("racer1", "racer2"):
            assert csv_files(tmp_path / f"out-{name}") == csv_files(offline.out_dir)
        server.reset_log()
        third = build(specs[0])
    assert third.warnings == () and server.history_requests() == []


# --- helpers for command-line processes --------------------------------------------------------


def cli_env(tmp_path: Path, cache: Path, key: str) -> dict[str, str]:
    env = hermetic_env(tmp_path / "wandb-cli")
    env.update(WANDB_API_KEY=key, REPORTGEN_CACHE_DIR=str(cache), NETRC=str(tmp_path / "none"))
    return env


def run_cli(args: list[str], tmp_path: Path, cache: Path, *, key: str, **extra_env: str):
    return subprocess.run(
        [sys.executable, "-m", "reportgen", *args],
        env={**cli_env(tmp_path, cache, key), **extra_env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def start_cli(args: list[str], tmp_path: Path, cache: Path, *, key: str):
    return subprocess.Popen(
        [sys.executable, "-m", "reportgen", *args],
        env=cli_env(tmp_path, cache, key),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def files_text(root: Path) -> Iterator[str]:
    for path in root.rglob("*") if root.exists() else ():
        if path.is_file():
            yield path.read_bytes().decode("utf-8", errors="replace")


@pytest.mark.parametrize("exported", [False, True])
def test_a_shared_mode_run_reads_from_the_server_as_the_offline_reader_reads_it(
    shared_dir, wandb_env, tmp_path, exported
):
    """Two writers, custom step metrics, one key logged by both at the same step-metric values.
    The server numbers a shared-mode run's records in arrival order (its `_step` is unique per
    record: the real client keeps one record per `_step`), so the x values of every metric, and
    every value, must come out as the offline reader's, from live pages and from the export."""
    offline = OfflineSource(SourceSpec("wandb-offline", path=str(shared_dir)))
    (expected_run,) = offline.list_runs()
    expected = offline.history(expected_run)
    served = runs_from_folder(shared_dir, export_finished=exported)
    for number, row in enumerate(served[0].rows):
        row["_step"] = number
    if exported:
        served[0].exported_through = len(served[0].rows) - 1
    with WandbServer(served, api_key=KEY) as server:
        spec = SourceSpec("wandb", entity="tester", project="tests", base_url=server.url)
        source = CloudSource(spec)
        (run,) = source.list_runs()
        history = source.history(run)
    assert run.step_metrics == expected_run.step_metrics
    assert history.row_count() == expected.row_count() == 10
    for key in expected:
        axis = run.x_key_for(key)
        assert history.count(key) == expected.count(key), key
        if axis != "_step":
            assert history.series(key, axis).equals(expected.series(key, axis)), key
            assert history.overlaps(key, axis) == expected.overlaps(key, axis), key
    assert history.count("train/loss") == 7
    assert history.series("train/loss", "train/step").to_dict() == {
        0: 1.0, 1: 0.5, 2: 1.0 / 3, 3: 10.0, 4: 11.0
    }  # fmt: skip


def test_history_rows_without_a_step_or_several_at_one_step_are_all_kept(shared_dir):
    """Rows as the client hands them over: without `_step` (what a shared-mode writer sets),
    or several at one `_step` (both writers numbered from 0): every record is kept, a row
    without a step is placed by its position, and each metric lands on its declared axis."""
    offline = OfflineSource(SourceSpec("wandb-offline", path=str(shared_dir)))
    (run,) = offline.list_runs()
    expected = offline.history(run)
    rows = [row for served in runs_from_folder(shared_dir) for row in served.rows]
    assert sorted(row["_step"] for row in rows) == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]
    at_shared_steps = rows_to_history(rows)
    for row in rows:
        del row["_step"]
    without_steps = rows_to_history(rows)
    assert without_steps.series("_timestamp").index.tolist() == list(range(10))  # by position
    for history in (at_shared_steps, without_steps):
        assert history.row_count() == expected.row_count() == 10
        for key in expected:
            axis = run.x_key_for(key)
            assert history.count(key) == expected.count(key), key
            if axis != "_step":
                assert history.series(key, axis).equals(expected.series(key, axis)), key
    assert at_shared_steps.overlaps("_timestamp") == expected.overlaps("_timestamp") == (5, 0)


def same_history(left, right) -> bool:
    """Every key, and each key's records, steps and values (NaN equal to NaN, bit for bit)."""
    if sorted(left) != sorted(right):
        return False
    for key in left:
        a, b = left.column(key), right.column(key)
        if not (np.array_equal(a.rows, b.rows) and np.array_equal(a.steps, b.steps)):
            return False
        if not np.array_equal(a.values.view(np.int64), b.values.view(np.int64)):
            return False
    return True


FLAT = [
    {"_step": 0, "loss": 1.5, "lr": 3, "ok": True, "tiny": 5e-324},
    {"_step": 2, "loss": float("nan"), "ok": False, "big": 12345678901234567890},
    {"_step": 3, "loss": float("inf"), "lr": 2.5, "neg": -0.0},
    {"_step": 7, "loss": float("-inf"), "late": 1 / 3},
]


@pytest.mark.parametrize(
    "records, fast",
    [
        (FLAT, True),
        ([{"_step": s, "x": s * 0.1, **({"y": -s} if s % 3 else {})} for s in range(500)], True),
        ([*FLAT, {"_step": 7, "loss": 2.0}], False),  # two records at one step
        ([*FLAT, {"_step": 9, "nested": {"a": 1.0, "b": {"c": 2}}}], False),
        ([*FLAT, {"_step": 9, "image": {"_type": "image-file", "path": "x.png"}}], False),
        ([*FLAT, {"_step": 9, "text": "hello", "loss": 0.5}], False),
        ([*FLAT, {"_step": 9, "ok": 2.0}], False),  # a type that changes (bool, then number)
        ([*FLAT, '{"_step": 9, "huge": 1e400}'], False),  # inf to Python, too big for Arrow
        ([{"_step": 1, "a": 1.0}, {"_step": 0, "a": 2.0}], False),  # steps not ascending
        ([], True),
    ],
    ids=[
        "flat", "two-cadences", "repeat-step", "nested", "media", "text", "type-change",
        "overflow", "descending", "empty",
    ],
)  # fmt: skip
def test_history_records_as_text_read_as_the_general_path_reads_them(records, fast):
    texts = [r if isinstance(r, str) else json.dumps(r) for r in records]
    expected = rows_to_history(json.loads(text) for text in texts)
    assert same_history(records_to_history(texts), expected)
    assert (_flat_numeric_records(texts) is not None) is fast


def test_export_from_a_wandb_url_equals_the_export_from_the_folder(
    served_runs, served_folder, wandb_env, tmp_path, monkeypatch, capsys
):
    """`reportgen export wandb://ENTITY/PROJECT` (spec-less) reads the server like a spec does."""
    args = ["--metrics", "length,entropy", "--every", "100", "--pick", "min mean length"]
    args += ["--tag", "sweep"]
    local = tmp_path / "local.csv"
    assert main(["export", str(served_folder), *args, "-o", str(local)]) == 0
    capsys.readouterr()
    with serve(served_runs) as server:
        monkeypatch.setenv("WANDB_BASE_URL", server.url)
        remote = tmp_path / "remote.csv"
        assert main(["export", "wandb://tester/tests", *args, "-o", str(remote)]) == 0
    printed = capsys.readouterr().out
    assert "lowest: grpo-rlshort1 (rlshort1) — lowest mean length" in printed
    assert remote.read_text() == local.read_text()
    assert len(remote.read_text().splitlines()) == 1 + 12
