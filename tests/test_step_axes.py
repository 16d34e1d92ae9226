"""Every logged value is kept, on the axis the run declared, whatever wrote the file.

The shapes come from real writers: legacy files written by wandb 0.15.12 (committed under
tests/data/legacy, see make_legacy_runs.py there), shared-mode runs written at test time by
two real wandb 0.31 processes against a loopback server (tests/wandb_ingest_server.py), and a
resumed run that logs steps again. `wandb leet inspect --json` checks every value of every file.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import write_spec
from leet_oracle import leet_records, leet_values, reportgen_values

from reportgen import build
from reportgen.sources.offline import OfflineSource
from reportgen.spec import SourceSpec

HERE = Path(__file__).parent
LEGACY = HERE / "data" / "legacy" / "wandb"
DEMO = HERE.parent / "examples" / "wandb"


def read(root: Path, now: datetime | None = None):
    source = OfflineSource(SourceSpec("wandb-offline", path=str(root)))
    runs = {run.id: run for run in source.list_runs(now=now)}
    return runs, {run_id: source.history(run) for run_id, run in runs.items()}


def test_legacy_records_keep_their_step_items():
    runs, histories = read(LEGACY)
    ppo = histories["legacyppo"]
    assert ppo.row_count() == 40
    returns = ppo.series("charts/episodic_return")
    assert returns.index.tolist() == list(range(40))
    assert returns.tolist() == [float(10 + i) for i in range(40)]
    steps = histories["legacysteps"]
    # wandb 0.15 left step.num unset on most of these records: the `_step` item places them.
    loss = steps.series("train/loss")
    assert loss.index.tolist() == list(range(0, 30, 3))
    assert loss.tolist() == [1.0 / (s + 1) for s in range(0, 30, 3)]
    weird = steps.series("train/weird")
    assert weird.index.tolist() == [30, 31]
    assert math.isnan(weird.iloc[0]) and weird.iloc[1] == math.inf
    run = runs["legacysteps"]
    assert run.x_key_for("eval/acc") == "eval/step"
    assert steps.series("eval/acc", "eval/step").to_dict() == {0: 0.0, 1: 0.09, 2: 0.18, 3: 0.27}
    assert run.state == "finished" and run.name == "steps-legacy"


def test_shared_mode_writers_keep_every_record_on_their_declared_axes(shared_dir):
    runs, histories = read(shared_dir)
    assert list(runs) == ["shared01"]
    run, history = runs["shared01"], histories["shared01"]
    # Identity from the primary writer (the secondary started later and names nothing).
    assert (run.name, run.group, run.tags) == ("rl-shared", "slime-like", ("shared",))
    assert run.state == "failed" and run.exit_code == 1
    assert len(run.locations) == 2
    assert run.x_key_for("rollout/response_len") == "rollout/step"
    rollout = history.series("rollout/response_len", "rollout/step")
    assert rollout.to_dict() == {0: 10.0, 1: 11.0, 2: 12.0}
    assert history.series("rollout/raw_reward", "rollout/step").tolist() == [0.0, 0.0, 0.0]
    # Both writers logged train/loss at train/step 3 and 4: all seven values are kept; the
    # series shows the later fragment's values there, and the overlap is counted.
    assert history.count("train/loss") == 7
    loss = history.series("train/loss", "train/step")
    assert loss.to_dict() == {0: 1.0, 1: 0.5, 2: 1.0 / 3, 3: 10.0, 4: 11.0}
    assert history.overlaps("train/loss", "train/step") == (2, 0)
    assert history.series("train/grad_norm", "train/step").tolist() == [0.0] * 5


def test_shared_mode_crash_is_quoted_from_the_primary_and_the_overlap_is_reported(
    shared_dir, tmp_path
):
    runs, _ = read(shared_dir)
    console = runs["shared01"].console_tail
    # Ordered by the lines' own timestamps: the secondary's lines come before the crash.
    assert console.index("secondary: rollout log line 2") < console.index("primary: giving up")
    assert any("RuntimeError: TaskCancelledError" in line for line in console[-5:])
    spec = write_spec(
        tmp_path / "spec.yaml",
        f'version: 1\nsource: {{type: wandb-offline, path: "{shared_dir}"}}\n'
        "metrics: {loss: train/loss, reward: rollout/raw_reward}\n"
        f'outputs: {{dir: "{tmp_path / "out"}", formats: [json]}}\n',
    )
    result = build(spec)
    report = json.loads((result.out_dir / "report.json").read_text())
    (run,) = report["runs"]
    crash = next(f for f in run["findings"] if f["check"] == "crashed")
    assert "RuntimeError: TaskCancelledError: the rollout actor died" in crash["message"]
    notes = " ".join(result.report.run("shared01").notes)
    # train/loss and train/step itself, at train/step 3 and 4.
    assert "4 logged values of 2 keys share their x with a value written later" in notes
    assert "train/loss (2)" in notes and "train/step (2)" in notes


def test_a_resumed_run_that_logs_steps_again_keeps_both_and_says_so(relogged_dir, tmp_path):
    runs, histories = read(relogged_dir)
    run, history = runs["relog001"], histories["relog001"]
    assert history.count("train/loss") == 70  # 40 + 30: nothing dropped
    loss = history.series("train/loss")
    assert loss.index.tolist() == list(range(60))
    assert loss[29] == 29.0 and loss[30] == 1030.0 and loss[59] == 1059.0  # the resume wins
    assert history.overlaps("train/loss") == (10, 0)
    assert run.state == "finished" and run.exit_code == 0  # the resumed fragment decides
    spec = write_spec(
        tmp_path / "spec.yaml",
        f'version: 1\nsource: {{type: wandb-offline, path: "{relogged_dir}"}}\n'
        f'metrics: {{loss: train/loss}}\noutputs: {{dir: "{tmp_path / "out"}"}}\n',
    )
    notes = build(spec).report.run("relog001").notes
    assert any(n.startswith("10 logged values of 1 key share their x") for n in notes)


def test_a_folder_of_symlinks_to_chosen_runs_is_read_and_latest_run_never_doubles(
    relogged_dir, tmp_path
):
    chosen = tmp_path / "chosen"
    chosen.mkdir()
    for folder in sorted(LEGACY.iterdir()):
        (chosen / folder.name).symlink_to(folder, target_is_directory=True)
    # A `latest-run` that is a real copied folder, and one that is a symlink.
    last = sorted(LEGACY.iterdir())[-1]
    shutil.copytree(last, chosen / "latest-run")
    (chosen / "nested").mkdir()
    (chosen / "nested" / "latest-run").symlink_to(last, target_is_directory=True)
    runs, histories = read(chosen)
    assert sorted(runs) == ["legacyppo", "legacysteps"]
    assert histories["legacysteps"].count("train/loss") == 10  # read once, not two or three times
    assert len(runs["legacysteps"].locations) == 1
    assert any("is the same file as" in n for n in runs["legacysteps"].read_notes)


def test_two_builds_a_month_apart_in_mtime_and_a_day_apart_in_time_agree(project_dir, tmp_path):
    root = tmp_path / "runs"
    shutil.copytree(project_dir, root, symlinks=True)
    reports = []
    for days, now in ((0, "2026-12-01T00:00:00Z"), (30, "2026-12-02T00:00:00Z")):
        moment = (datetime(2026, 12, 1, tzinfo=timezone.utc) - timedelta(days=days)).timestamp()
        for path in root.rglob("*"):
            os.utime(path, (moment, moment), follow_symlinks=False)
        out = tmp_path / f"out{days}"
        spec = write_spec(
            tmp_path / f"spec{days}.yaml",
            f'version: 1\nsource: {{type: wandb-offline, path: "{root}"}}\n'
            "metrics: {loss: train/loss, length: response_length/mean}\n"
            f'outputs: {{dir: "{out}", formats: [json]}}\n',
        )
        env = dict(os.environ, REPORTGEN_CACHE_DIR=str(tmp_path / f"cache{days}"))
        done = subprocess.run(
            [sys.executable, "-m", "reportgen", "build", str(spec), "--now", now],
            env=env,
            capture_output=True,
            text=True,
            check=False,
        )
        assert done.returncode in (0, 1), done.stderr
        report = json.loads((out / "report.json").read_text())
        report.pop("generated_at", None)
        report.pop("spec", None)  # the two specs differ only in their output folder
        reports.append(report)
    assert reports[0]["runs"] and reports[0] == reports[1]
    states = {run["id"]: run["state"] for run in reports[0]["runs"]}
    assert states["rllong01"] == "finished" and states["crash001"] == "failed"


@pytest.mark.parametrize("root", ["legacy", "shared", "relogged", "demo"])
def test_every_logged_value_equals_what_wandb_leet_reads(root, request):
    folder = {
        "legacy": LEGACY,
        "shared": request.getfixturevalue("shared_dir") if root == "shared" else None,
        "relogged": request.getfixturevalue("relogged_dir") if root == "relogged" else None,
        "demo": DEMO,
    }[root]
    assert folder is not None
    files = sorted(p for p in folder.rglob("run-*.wandb") if "latest-run" not in p.parts)
    assert files
    for path in files:
        expected = leet_values(leet_records(path))
        assert expected, path
        assert reportgen_values(path) == expected, path


def test_files_of_different_runs_with_the_same_bytes_are_both_read(tmp_path):
    """Only a copy under the same name is a copy: two runs that died after writing the same
    bytes (a header) are two runs."""
    from reportgen.sources.wandb_file import HEADER

    for run_id in ("deadrun1", "deadrun2"):
        folder = tmp_path / "wandb" / f"run-20260101_000000-{run_id}"
        folder.mkdir(parents=True)
        (folder / f"run-{run_id}.wandb").write_bytes(HEADER)
    runs, _ = read(tmp_path)
    assert sorted(runs) == ["deadrun1", "deadrun2"]
    assert all(run.state == "killed" for run in runs.values())
