"""Health checks on runs written by the real wandb client: known pathologies, healthy noise.

One module-scoped folder holds every run (one `write_runs` call). Each pathological run is
built so the step where its problem starts is unambiguous; healthy runs carry realistic noise
and must get no finding at all.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest
from conftest import write_spec
from health_curves import rl_curves, supervised_curves
from runwriter import PlannedRun, write_runs

from reportgen import build
from reportgen.cli import main
from reportgen.sources.offline import OfflineSource
from reportgen.spec import load_spec

OOM = "CUDA out of memory. Tried to allocate 1.50 GiB (GPU 0; 79.15 GiB total capacity)"


def nan_from_10() -> list[dict[str, float]]:
    """750 steps of train/loss: finite for steps 0–9, NaN from step 10 to the end."""
    return [{"train/loss": 2.0 / (1 + s) if s < 10 else float("nan")} for s in range(750)]


def with_spikes() -> list[dict[str, float]]:
    rows = supervised_curves(seed=11, n=600)
    for step in (150, 300, 450):
        rows[step]["train/loss"] *= 4.0
    rows[200]["grad_norm"] *= 12.0
    return rows


def zeros() -> list[dict[str, float]]:
    return [{"train/loss": 0.0, "grad_norm": 0.0} for _ in range(300)]


def falling_length() -> list[dict[str, float]]:
    """Healthy RL, but mean response length drops from ~300 to ~60 tokens at step 300."""
    rng = np.random.default_rng(5)
    rows = rl_curves(seed=5, n=600)
    for step, row in enumerate(rows):
        level = 300.0 if step < 300 else 60.0
        row["response_length/mean"] = level * (1 + 0.02 * rng.standard_normal())
    return rows


def rising_kl() -> list[dict[str, float]]:
    """Healthy RL, but from step 300 the KL climbs 0.0025 per step (0.1 is crossed at 340)."""
    rng = np.random.default_rng(6)
    rows = rl_curves(seed=6, n=600)
    for step, row in enumerate(rows):
        noisy = 0.002 * (1 + 0.2 * rng.standard_normal())
        row["actor/ppo_kl"] = noisy if step < 300 else 0.002 + 0.0025 * (step - 300)
    return rows


def entropy_collapse() -> list[dict[str, float]]:
    """Healthy RL, but entropy drops from ~1.2 to ~0.01 at step 100 and stays there."""
    rng = np.random.default_rng(7)
    rows = rl_curves(seed=7, n=600)
    for step, row in enumerate(rows):
        level = 1.2 if step < 100 else 0.01
        row["actor/entropy"] = level * (1 + 0.03 * rng.standard_normal())
    return rows


def reward_up_accuracy_flat() -> list[dict[str, float]]:
    rng = np.random.default_rng(8)
    rows = rl_curves(seed=8, n=600)
    for row in rows:
        row["eval/accuracy"] = 0.42 + 0.01 * rng.standard_normal()
    return rows


def overfitting() -> list[dict[str, float]]:
    """Training keeps falling; validation falls until step 300 and then rises by 40%."""
    rows = supervised_curves(seed=12, n=600)
    for step, row in enumerate(rows):
        if "val/loss" in row:
            row["val/loss"] = 1.0 - step / 600 if step <= 300 else 0.5 + (step - 300) / 1500
    return rows


def still_falling() -> list[dict[str, float]]:
    """A loss that falls in a straight line to the last step: undertrained."""
    rng = np.random.default_rng(9)
    return [
        {"train/loss": (3.0 - step / 150) * (1 + 0.02 * rng.standard_normal())}
        for step in range(300)
    ]


def plateau() -> list[dict[str, float]]:
    """A loss that falls to its floor by step 50 and stays there, noisy, for 550 more steps."""
    rng = np.random.default_rng(10)
    return [
        {
            "train/loss": (2.0 - 0.03 * step if step < 50 else 0.5)
            * (1 + 0.02 * rng.standard_normal())
        }
        for step in range(600)
    ]


PLANS = [
    PlannedRun(name="rl-noisy-a", run_id="rlnoisya", rows=rl_curves(seed=101), tags=["healthy"]),
    PlannedRun(name="rl-noisy-b", run_id="rlnoisyb", rows=rl_curves(seed=102), tags=["healthy"]),
    PlannedRun(
        name="sft-noisy-a", run_id="sftnoisa", rows=supervised_curves(seed=201), tags=["healthy"]
    ),
    PlannedRun(
        name="sft-noisy-b",
        run_id="sftnoisb",
        rows=supervised_curves(seed=202, n=1000, val_every=50),
        tags=["healthy"],
    ),
    PlannedRun(name="nan-from-10", run_id="nanfrom1", rows=nan_from_10()),
    PlannedRun(name="spiky", run_id="spiky001", rows=with_spikes()),
    PlannedRun(name="zeros", run_id="zeros001", rows=zeros()),
    PlannedRun(name="short-answers", run_id="shortans", rows=falling_length()),
    PlannedRun(name="kl-rising", run_id="klrising", rows=rising_kl()),
    PlannedRun(name="collapse", run_id="collapse", rows=entropy_collapse()),
    PlannedRun(name="hacker", run_id="hacker01", rows=reward_up_accuracy_flat()),
    PlannedRun(name="overfit", run_id="overfit1", rows=overfitting()),
    PlannedRun(name="undertrained", run_id="undertr1", rows=still_falling()),
    PlannedRun(name="plateaued", run_id="plateau1", rows=plateau()),
    PlannedRun(
        name="oom",
        run_id="oom00001",
        rows=supervised_curves(seed=13, n=120),
        crash=OOM,
    ),
    PlannedRun(name="killed", run_id="killed01", rows=supervised_curves(seed=14, n=400), kill=True),
]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_runs(tmp_path_factory.mktemp("health-runs"), PLANS)


@pytest.fixture(scope="module")
def report(runs_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """Every run except the killed one (whose state depends on the clock), default health."""
    out = tmp_path_factory.mktemp("health-out")
    spec = write_spec(
        out / "spec.yaml",
        f'version: 1\nsource: {{type: wandb-offline, path: "{runs_dir}"}}\n'
        f"runs: {{ids: [{', '.join(p.run_id for p in PLANS if not p.kill)}]}}\n"
        f'outputs: {{dir: "{out / "out"}", formats: [markdown, json]}}\n',
    )
    return build(spec).report


VERDICTS = {
    "rlnoisya": "good",
    "rlnoisyb": "good",
    "sftnoisa": "good",
    "sftnoisb": "good",
    "nanfrom1": "ugly",
    "spiky001": "bad",
    "zeros001": "ugly",
    "shortans": "ugly",
    "klrising": "bad",
    "collapse": "ugly",
    "hacker01": "good",
    "overfit1": "bad",
    "undertr1": "bad",
    "plateau1": "bad",
    "oom00001": "ugly",
}


def test_each_run_gets_the_verdict_of_its_worst_finding(report):
    assert {run.id: run.verdict for run in report.runs} == VERDICTS


def findings(report, run_id: str) -> list[tuple[str, str, float | None]]:
    return [(f.check, f.severity, f.step) for f in report.run(run_id).findings]


@pytest.mark.parametrize("run_id", ["rlnoisya", "rlnoisyb", "sftnoisa", "sftnoisb"])
def test_healthy_noisy_runs_get_no_finding(report, run_id):
    run = report.run(run_id)
    assert run.findings == ()
    assert run.verdict == "good"


def test_auto_preset_checks_rl_runs_as_rl_and_the_rest_as_supervised(report):
    assert report.run("rlnoisya").health.preset == "rl"
    assert report.run("sftnoisa").health.preset == "supervised"
    assert "entropy_collapse" in report.run("rlnoisya").health.checks
    assert "entropy_collapse" not in report.run("sftnoisa").health.checks


def test_nan_from_step_10_is_one_ugly_non_finite_finding(report):
    run = report.run("nanfrom1")
    assert findings(report, "nanfrom1") == [("non_finite", "ugly", 10)]
    finding = run.findings[0]
    assert finding.message == (
        "train/loss became NaN at step 10 and stayed NaN for the remaining 740 logged steps, "
        "although the run exited with code 0"
    )
    assert (finding.metric, finding.key) == ("loss", "train/loss")
    assert np.isnan(finding.value)
    assert run.verdict == "ugly"


def test_injected_spikes_are_counted_from_their_first_step(report):
    assert findings(report, "spiky001") == [
        ("loss_spike", "bad", 150),
        ("grad_norm_spike", "bad", 200),
    ]
    loss_spike = report.run("spiky001").findings[0]
    assert loss_spike.message.startswith("train/loss spiked 3 times (worst ")
    assert report.run("spiky001").verdict == "bad"


def test_constant_zeros_are_a_flatline(report):
    assert findings(report, "zeros001") == [("flatline", "ugly", 0), ("flatline", "ugly", 0)]
    messages = [f.message for f in report.run("zeros001").findings]
    assert messages[0] == "train/loss was exactly 0 at every one of its 300 logged steps"


def test_falling_length_is_a_length_collapse(report):
    assert findings(report, "shortans") == [("length_collapse", "ugly", 300)]


def test_rising_kl_is_kl_high_from_the_first_step_above_the_threshold(report):
    assert findings(report, "klrising") == [("kl_high", "bad", 340)]
    assert (
        report.run("klrising")
        .findings[0]
        .message.startswith("actor/ppo_kl stayed above 0.1 from step 340 to the end of the run")
    )


def test_entropy_drop_is_an_entropy_collapse(report):
    assert findings(report, "collapse") == [("entropy_collapse", "ugly", 100)]
    finding = report.run("collapse").findings[0]
    assert finding.next_step.startswith("Add or raise the entropy bonus")


def test_validation_rising_while_training_falls_is_overfitting(report):
    assert findings(report, "overfit1") == [("overfitting", "bad", 300)]


def test_a_loss_still_falling_at_the_end_is_still_improving(report):
    assert findings(report, "undertr1") == [("still_improving", "bad", 240)]


def test_a_loss_flat_after_an_early_drop_is_a_plateau(report):
    assert findings(report, "plateau1") == [("plateau", "bad", 50)]


def test_an_exception_is_crashed_quoting_the_console(report):
    run = report.run("oom00001")
    assert findings(report, "oom00001") == [("crashed", "ugly", 119)]
    assert run.findings[0].message == (
        f"the run failed with exit code 1 after step 119: RuntimeError: {OOM}"
    )
    assert run.findings[0].likely_cause == "GPU memory ran out (CUDA out of memory)"


def test_reward_hacking_needs_a_task_metric(report, runs_dir, tmp_path):
    assert findings(report, "hacker01") == []
    spec = write_spec(
        tmp_path / "spec.yaml",
        f'version: 1\nsource: {{type: wandb-offline, path: "{runs_dir}"}}\n'
        "runs: {ids: [hacker01]}\nmetrics: {acc: eval/accuracy}\n"
        "health: {checks: {reward_hacking: {task_metric: acc}}}\n"
        f'outputs: {{dir: "{tmp_path / "out"}", formats: [json]}}\n',
    )
    run = build(spec).report.run("hacker01")
    assert [(f.check, f.severity) for f in run.findings] == [("reward_hacking", "ugly")]
    assert "while eval/accuracy did not improve" in run.findings[0].message


def test_a_check_can_read_another_alias(runs_dir, tmp_path):
    spec = write_spec(
        tmp_path / "spec.yaml",
        f'version: 1\nsource: {{type: wandb-offline, path: "{runs_dir}"}}\n'
        "runs: {ids: [klrising]}\nmetrics: {drift: actor/ppo_kl}\n"
        "health:\n  checks: {kl_high: {metric: drift, threshold: 0.3}}\n"
        f'outputs: {{dir: "{tmp_path / "out"}", formats: [json]}}\n',
    )
    finding = build(spec).report.run("klrising").findings[0]
    assert (finding.check, finding.metric, finding.step) == ("kl_high", "drift", 420)


def test_disable_and_severity_overrides(runs_dir, tmp_path):
    spec = write_spec(
        tmp_path / "spec.yaml",
        f'version: 1\nsource: {{type: wandb-offline, path: "{runs_dir}"}}\n'
        "runs: {ids: [spiky001]}\n"
        "health: {disable: [grad_norm_spike], checks: {loss_spike: {severity: ugly}}}\n"
        f'outputs: {{dir: "{tmp_path / "out"}", formats: [json]}}\n',
    )
    run = build(spec).report.run("spiky001")
    assert [(f.check, f.severity) for f in run.findings] == [("loss_spike", "ugly")]
    assert run.verdict == "ugly"


def _killed_spec(runs_dir: Path, tmp_path: Path, extra: str = "") -> Path:
    return write_spec(
        tmp_path / "spec.yaml",
        f'version: 1\nsource: {{type: wandb-offline, path: "{runs_dir}"}}\n'
        f"runs: {{ids: [killed01]}}\n{extra}"
        f'outputs: {{dir: "{tmp_path / "out"}", formats: [json]}}\n',
    )


def test_a_run_without_exit_record_whose_log_stopped_is_killed(runs_dir, tmp_path):
    spec = load_spec(_killed_spec(runs_dir, tmp_path))
    source = OfflineSource(spec.source, now=time.time() + 3600)
    run = build(spec, source=source).report.run("killed01")
    assert run.state == "killed"
    assert [(f.check, f.severity, f.step) for f in run.findings] == [
        ("killed", "ugly", run.last_step)
    ]
    assert run.findings[0].message.startswith(
        f"the run stopped without an exit record after step {run.last_step}"
    )


def test_a_running_run_with_no_new_step_is_stalled(runs_dir, tmp_path):
    spec = load_spec(_killed_spec(runs_dir, tmp_path))
    source = OfflineSource(spec.source, now=time.time())
    run = source.list_runs()[0]
    last_step_time = datetime.fromtimestamp(
        float(source.history(run).series("_timestamp").iloc[-1]), tz=timezone.utc
    )
    report = build(spec, source=source, now=last_step_time + timedelta(minutes=45)).report
    checked = report.run("killed01")
    assert checked.state == "running"
    assert [(f.check, f.severity) for f in checked.findings] == [("stalled", "bad")]
    assert checked.findings[0].message.startswith(
        "the run is marked running but has logged no new step for 45 min"
    )


def test_markdown_has_verdicts_good_bad_ugly_and_next_experiments(report, tmp_path):
    text = (Path(report.spec_path).parent / "out" / "report.md").read_text()
    sections = ["## Verdicts", "## Good", "## Bad", "## Ugly", "## Next experiments"]
    positions = [text.index(s) for s in sections]
    assert positions == sorted(positions)
    good, bad, ugly, nxt = (
        text[positions[1] : positions[2]],
        text[positions[2] : positions[3]],
        text[positions[3] : positions[4]],
        text[positions[4] :].split("\n## ")[0],
    )
    assert "**rl-noisy-a** passed all" in good and "**spiky**" not in good
    assert "**spiky** (`spiky001`)" in bad and "`loss_spike`: train/loss spiked 3 times" in bad
    assert "**oom** (`oom00001`)" in ugly and f"RuntimeError: {OOM}" in ugly
    assert "*Likely cause:* GPU memory ran out (CUDA out of memory)." in ugly
    experiments = [line for line in nxt.splitlines() if line[:1].isdigit()]
    assert 3 <= len(experiments) <= 6
    assert re.search(r"\| nan-from-10 \| `nanfrom1` \| finished \| \d+ \| \*\*ugly\*\* \|", text)


def test_report_json_carries_verdicts_findings_and_next_experiments(report):
    data = json.loads((Path(report.spec_path).parent / "out" / "report.json").read_text())
    run = next(r for r in data["runs"] if r["id"] == "nanfrom1")
    assert run["verdict"] == "ugly"
    assert run["findings"][0] == {
        "check": "non_finite",
        "severity": "ugly",
        "metric": "loss",
        "key": "train/loss",
        "step": 10,
        "value": "NaN",
        "message": report.run("nanfrom1").findings[0].message,
        "likely_cause": report.run("nanfrom1").findings[0].likely_cause,
        "next_step": report.run("nanfrom1").findings[0].next_step,
    }
    assert run["health"]["preset"] == "supervised" and "non_finite" in run["health"]["checks"]
    assert 3 <= len(data["next_experiments"]) <= 6
    assert set(data["next_experiments"][0]) == {"action", "reason", "checks", "runs"}


@pytest.mark.parametrize(
    ("run_id", "fail_on", "code"),
    [
        ("nanfrom1", "ugly", 1),
        ("spiky001", "ugly", 0),
        ("spiky001", "bad", 1),
        ("nanfrom1", "never", 0),
        ("rlnoisya", "bad", 0),
    ],
)
def test_gate_exit_code_comes_after_every_output(runs_dir, tmp_path, capsys, run_id, fail_on, code):
    out = tmp_path / "out"
    spec = write_spec(
        tmp_path / "spec.yaml",
        f'version: 1\nsource: {{type: wandb-offline, path: "{runs_dir}"}}\n'
        f"runs: {{ids: [{run_id}]}}\nmetrics: {{loss: train/loss}}\n"
        f'outputs: {{dir: "{out}", formats: [markdown, csv, json], csv: {{missing: drop}}}}\n'
        f"gate: {{fail_on: {fail_on}}}\n",
    )
    assert main(["build", str(spec)]) == code
    assert {p.suffix for p in out.iterdir() if p.is_file()} == {".md", ".csv", ".json"}
    gate = json.loads((out / "report.json").read_text())["gate"]
    assert gate["failed"] is (code == 1)
    if code == 1:
        err = capsys.readouterr().err
        assert f"gate failed:\n  run {gate['reasons'][0].removeprefix('run ')}\n" in err
        assert gate["reasons"][0].startswith("run ") and f"is {fail_on}" in gate["reasons"][0]
