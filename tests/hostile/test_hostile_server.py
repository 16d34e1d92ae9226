"""A faulty W&B server, through the loopback server in tests/wandb_server.py and the real
`wandb.Api` client: malformed answers, rate limits on the login check, a `Retry-After: 3600`,
a history that fails forever, and a run rewound at a step and grown again."""

from __future__ import annotations

import copy
import csv
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from runwriter import PlannedRun, hermetic_env, write_runs
from wandb_server import Fault, ServedRun, WandbServer, runs_from_folder

from reportgen import build
from reportgen.cli import main
from reportgen.sources.cloud import ATTEMPTS, RETRY_LIMITS

KEY = "rghostile" + "0123456789abcdef" * 2 + "c0ffee0"
SPEC = """\
version: 1
title: faults
source: {{type: wandb, entity: tester, project: tests, base_url: "{url}"}}
metrics:
  loss: train/loss
sampling: {{x: _step, start: 0, every: 10}}
outputs: {{dir: "{out}", formats: [csv, json]}}
"""


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> list[ServedRun]:
    plans = [
        PlannedRun(
            name=f"run-{i}",
            run_id=f"faulty0{i}",
            rows=[{"train/loss": (i + 1.0) / (1 + s)} for s in range(100)],
        )
        for i in range(3)
    ]
    return runs_from_folder(write_runs(tmp_path_factory.mktemp("faulty"), plans))


@pytest.fixture(scope="module", autouse=True)
def hermetic_wandb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    root = tmp_path_factory.mktemp("wandb-home")
    saved = dict(os.environ)
    for name in [k for k in os.environ if k.startswith("WANDB_")]:
        del os.environ[name]
    os.environ.update(hermetic_env(root), NETRC=str(root / "netrc-none"), WANDB_API_KEY=KEY)
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def serve(served: list[ServedRun]) -> WandbServer:
    return WandbServer(copy.deepcopy(served), api_key=KEY)


def spec_for(tmp_path: Path, server: WandbServer, name: str = "spec") -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(SPEC.format(url=server.url, out=tmp_path / f"out-{name}"), encoding="utf-8")
    return path


def csv_rows(path: Path) -> dict[str, str]:
    with path.open(newline="") as handle:
        return {row["step"]: row["loss"] for row in csv.DictReader(handle)}


def test_one_malformed_answer_is_retried_and_the_run_kept(served, cache, tmp_path):
    with serve(served) as server:
        server.faults.append(Fault("RunsHistory", 200, times=1, run="faulty01"))
        result = build(spec_for(tmp_path, server))
    asked = [r for r in server.requests if "faulty01" in r.runs and r.history]
    # The cut answer to the runs' batch, then the run's 100 records by a scan of its own.
    assert asked[0].op == "RunsHistory" and asked[0].rows == 0
    assert [r.rows for r in asked[1:] if r.op == "HistoryPage"] == [100]
    assert not result.report.incomplete
    assert sorted(run.id for run in result.report.runs) == ["faulty00", "faulty01", "faulty02"]


def test_a_malformed_run_answer_is_retried_too(served, cache, tmp_path):
    with serve(served) as server:
        server.faults.append(Fault("RunsMetadata", 200, times=1, run="faulty02"))
        result = build(spec_for(tmp_path, server))
    assert [r.op for r in server.requests if "faulty02" in r.runs and not r.history] == [
        "RunsMetadata",  # cut short: the runs are asked for again one by one
        "Run",
    ]
    assert not result.report.incomplete and len(result.report.runs) == 3


def test_a_history_that_fails_forever_is_given_up_after_bounded_tries(served, cache, tmp_path):
    with serve(served) as server:
        server.faults += [
            Fault(op, 500, times=None, run="faulty00") for op in ("RunsHistory", "HistoryPage")
        ]
        result = build(spec_for(tmp_path, server))
    failing = [r for r in server.requests if r.run == "faulty00" and r.op == "HistoryPage"]
    tries_per_attempt = RETRY_LIMITS["x_graphql_retry_max"][1] + 1
    assert len(failing) == ATTEMPTS * tries_per_attempt
    assert result.report.incomplete
    assert sorted(run.id for run in result.report.runs) == ["faulty01", "faulty02"]


def test_a_429_on_the_login_check_is_reported_as_rate_limiting(served, cache, tmp_path, capsys):
    with serve(served) as server:
        server.faults.append(Fault("Viewer", 429, times=None, retry_after="0"))
        assert main(["build", str(spec_for(tmp_path, server))]) == 3
    (line,) = capsys.readouterr().err.splitlines()
    assert "is rate limiting or not answering" in line and "HTTP 429" in line
    assert "refused" not in line and "not valid" not in line


def test_retry_after_an_hour_waits_one_request_timeout_not_an_hour(served, tmp_path):
    """wandb-core honours Retry-After, and `scan_history` would wait for it; reportgen caps one
    wait (REPORTGEN_MAX_WAIT, here 3 s) and the run's next attempt gets its history."""
    with serve(served) as server:
        server.faults.append(Fault("RunsHistory", 429, times=1, run="faulty01", retry_after="3600"))
        env = hermetic_env(tmp_path / "wandb")
        env.update(
            WANDB_API_KEY=KEY,
            REPORTGEN_MAX_WAIT="3",
            REPORTGEN_CACHE_DIR=str(tmp_path / "cache"),
            NETRC=str(tmp_path / "none"),
        )
        done = subprocess.run(
            [sys.executable, "-m", "reportgen", "build", str(spec_for(tmp_path, server)), "-q"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,  # a hang guard: the unbounded wait would be an hour
        )
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "out-spec" / "report.json").read_text())
    assert report["incomplete"] is False and len(report["runs"]) == 3


def test_a_run_rewound_and_grown_again_is_not_kept_with_its_old_values(served, cache, tmp_path):
    with serve(served) as server:
        spec = spec_for(tmp_path, server)
        first = build(spec)
        before = csv_rows(first.out_dir / "run-1_experiment.csv")
        # resume_from="faulty01?_step=50": other values from step 50 on, and 50 more steps
        server.rewind("faulty01", 50, {s: {"train/loss": 7.0 + s} for s in range(50, 150)})
        second = build(spec)
    after = csv_rows(second.out_dir / "run-1_experiment.csv")
    assert before["40"] == after["40"] == repr(2.0 / 41)
    assert before["60"] == repr(2.0 / 61)
    assert after["60"] == "67" and after["90"] == "97" and after["149"] == "156"
