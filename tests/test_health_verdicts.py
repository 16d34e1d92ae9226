"""Verdicts a senior RL engineer would sign, on runs written by the real wandb client.

One class of mistake per block, each with the run that used to get it wrong: runs too short or
not checked ("unjudged", never "good"), how a run ended (crashed, stopped by its user, ended
early), spikes in the first points and blow-ups, trends and divergence, the meaning of RL
metrics (per-update KL against KL to the reference, TRL's β·KL loss, saturated rewards, reward
components, an early length collapse), advice that follows the config, and the direction of a
comparison.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import write_spec
from health_curves import rl_curves, supervised_curves
from runwriter import PlannedRun, write_runs

from reportgen import agent_tools, build
from reportgen.quickspec import RunChoice
from reportgen.render.summary import render_summary, render_summary_json

Rows = list[dict[str, float]]


# --- runs -----------------------------------------------------------------------------------


def short_run() -> Rows:
    """12 points of a falling loss: too few to judge."""
    return [{"train/loss": 2.0 - 0.1 * i} for i in range(12)]


def unknown_metrics() -> Rows:
    """200 points of metrics no check knows."""
    return [{"my/custom_signal": float(i % 7)} for i in range(200)]


def early_jump() -> Rows:
    """A supervised run of 100 steps whose loss (settling from 4.0 to 3.0) jumps to 9.4 and grad norm
    0.95 → 642 at step 42, for one step."""
    rng = np.random.default_rng(21)
    rows = []
    for i in range(100):
        loss = (3.0 + math.exp(-i / 15)) * (1 + 0.02 * rng.standard_normal())
        grad = 0.95 * (1 + 0.1 * rng.standard_normal())
        if i == 42:
            loss, grad = 9.4, 642.0
        rows.append({"train/loss": loss, "grad_norm": grad})
    return rows


def rl_blowups() -> Rows:
    """Healthy RL whose grad norm reaches 3e8 (median about 5.7) at steps 120–121 and whose
    train/loss (a policy loss) reaches 3.8e5 at step 200, each for one or two steps."""
    rows = rl_curves(seed=31, n=400)
    rng = np.random.default_rng(31)
    for row in rows:
        row["actor/grad_norm"] = 5.7 * float(np.exp(0.2 * rng.standard_normal()))
        row["train/loss"] = 0.5 + 0.05 * float(rng.standard_normal())
    rows[120]["actor/grad_norm"] = 3e8
    rows[121]["actor/grad_norm"] = 2e8
    rows[200]["train/loss"] = 3.8e5
    return rows


def building_instability() -> Rows:
    """A verl-style run of 300 steps: over the last 60, grad norm ×10, per-update KL ×40 and
    clip fraction ×12 (rising exponentially from step 240)."""
    rows = rl_curves(seed=41, n=300)
    rng = np.random.default_rng(41)
    for i, row in enumerate(rows):
        rise = 0.0 if i < 240 else (i - 240) / 59
        noise = float(np.exp(0.15 * rng.standard_normal()))
        row["actor/grad_norm"] = 0.3 * 10**rise * noise
        row["actor/ppo_kl"] = 0.001 * 40**rise * noise
        row["actor/pg_clipfrac"] = 0.01 * 12**rise * noise
    return rows


def noisy_short_losses() -> Rows:
    """60 points of a noisy but healthy loss (±25% batch noise) and a validation loss every
    step that wobbles: nothing diverges."""
    rng = np.random.default_rng(51)
    return [
        {
            "train/loss": (1.0 + 1.5 * math.exp(-i / 15)) * float(np.exp(0.25 * rng.normal())),
            "val/loss": (1.1 + 1.5 * math.exp(-i / 15)) * float(np.exp(0.1 * rng.normal())),
        }
        for i in range(60)
    ]


def val_jump() -> Rows:
    """Validation loss falls 3.0 → 0.3 by step 100, then jumps 33× at step 200 and stays."""
    rows = supervised_curves(seed=61, n=600, val_every=5)
    rng = np.random.default_rng(61)
    for i, row in enumerate(rows):
        if "val/loss" in row:
            level = 0.3 + 2.7 * math.exp(-i / 25) if i < 200 else 10.0
            row["val/loss"] = level * (1 + 0.02 * float(rng.standard_normal()))
    return rows


def trl_grpo(kl0: float = 0.0, accuracy_zero: bool = False) -> Rows:
    """A TRL GRPO run: train/kl grows to about 0.2 (healthy KL to the reference), train/loss
    is 0.04 × KL rounded to 4 decimals, the reward rises. With `kl0` the KL starts there
    (a policy/reference mismatch); with `accuracy_zero` the reward rises only through a
    format component while the accuracy component is 0 at every step."""
    rng = np.random.default_rng(71)
    rows = []
    for i in range(200):
        kl = 0.2 * (1 - math.exp(-i / 40)) * float(np.exp(0.1 * rng.standard_normal()))
        if kl0:
            kl = kl0 * float(np.exp(0.05 * rng.standard_normal()))
        fmt = min(1.0, 0.1 + i / 100) * (1 + 0.03 * float(rng.standard_normal()))
        acc = 0.0 if accuracy_zero else 0.2 + 0.4 * (1 - math.exp(-i / 60))
        rows.append(
            {
                "train/kl": kl,
                "train/loss": round(0.04 * kl, 4),
                "train/reward": fmt + acc,
                "train/rewards/format_reward": fmt,
                "train/rewards/accuracy_reward": acc,
                "train/completion_length": 200 * (1 + 0.05 * float(rng.standard_normal())),
                "train/grad_norm": 0.3 * float(np.exp(0.2 * rng.standard_normal())),
            }
        )
    return rows


def saturated_reward() -> Rows:
    """A GRPO run whose accuracy reward is 1.0 at nearly every step from step 0."""
    rows = rl_curves(seed=81, n=150)
    rng = np.random.default_rng(81)
    for row in rows:
        row["critic/score/mean"] = 1.0 if rng.random() > 0.05 else 0.984375
    return rows


def early_length_collapse() -> Rows:
    """Response length 31 → 9 tokens within the first 10 steps, then stays at 9 (60 steps)."""
    rows = rl_curves(seed=91, n=60)
    rng = np.random.default_rng(91)
    for i, row in enumerate(rows):
        level = 31 - 22 * min(i, 10) / 10
        row["response_length/mean"] = level * (1 + 0.02 * float(rng.standard_normal()))
    return rows


def diverging_with_clipping() -> Rows:
    """A loss that falls, then climbs 100× from step 150 and stays there."""
    rng = np.random.default_rng(95)
    return [
        {"train/loss": (1.0 if i < 150 else 100.0) * (1 + 0.02 * float(rng.standard_normal()))}
        for i in range(300)
    ]


def not_learning() -> Rows:
    """A language model's loss that stays near ln(vocabulary): 10.78 → 10.63 in 200 steps."""
    rng = np.random.default_rng(97)
    return [
        {"train_loss": 10.78 - 0.15 * i / 200 + 0.03 * rng.standard_normal()} for i in range(200)
    ]


def per_update_kl_high() -> Rows:
    """A verl-style run whose per-update KL sits at 0.3 from step 100 on."""
    rows = rl_curves(seed=99, n=300)
    for i, row in enumerate(rows):
        if i >= 100:
            row["actor/ppo_kl"] = 0.3
    return rows


def cut_schedule() -> Rows:
    """A healthy run whose cosine learning-rate schedule (1000 steps) stops at step 399."""
    rows = supervised_curves(seed=7, n=400)
    for i, row in enumerate(rows):
        row["lr"] = 3e-4 * 0.5 * (1 + math.cos(math.pi * i / 1000))
    return rows


def steady(seed: int, n: int = 100) -> Rows:
    return supervised_curves(seed=seed, n=n)


RUN_TOGETHER = (
    '[rank0]:   File "train.py", line 88, in <module>[rank0]:     trainer.train()'
    "[rank0]: KeyboardInterrupt"
)
RUN_TOGETHER_CRASH = (
    '[rank1]:   File "train.py", line 88, in step    loss.backward()'
    "[rank1]: torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
)

PLANS = [
    PlannedRun(name="no-step", run_id="nostep01", rows=[]),
    PlannedRun(name="too-short", run_id="short001", rows=short_run()),
    PlannedRun(name="unknown-metrics", run_id="unknown1", rows=unknown_metrics()),
    PlannedRun(
        name="ranks-interrupted",
        run_id="rankint1",
        rows=steady(1),
        prints=[RUN_TOGETHER],
        exit_code=1,
    ),
    PlannedRun(
        name="ranks-oom",
        run_id="rankoom1",
        rows=steady(2),
        prints=[RUN_TOGETHER_CRASH],
        exit_code=1,
    ),
    PlannedRun(
        name="ctrl-c-exit-0",
        run_id="ctrlc001",
        rows=steady(3),
        prints=["Ctrl + C detected. Stopping training and saving the model…"],
    ),
    PlannedRun(name="interrupted", run_id="kbint001", rows=steady(4), interrupt=True),
    PlannedRun(
        name="ended-early",
        run_id="early001",
        rows=steady(5, n=52),
        config={"trainer": {"max_steps": 900}},
    ),
    PlannedRun(
        name="finished-plan",
        run_id="planned1",
        rows=steady(6, n=300),
        config={"trainer": {"max_steps": 300}},
    ),
    PlannedRun(name="crash-at-start", run_id="crash000", rows=[], crash="ValueError: bad config"),
    PlannedRun(name="early-jump", run_id="jump0042", rows=early_jump()),
    PlannedRun(name="rl-blowups", run_id="blowup01", rows=rl_blowups()),
    PlannedRun(name="building-instability", run_id="trend001", rows=building_instability()),
    PlannedRun(name="noisy-short", run_id="noisy060", rows=noisy_short_losses()),
    PlannedRun(name="val-jump", run_id="valjump1", rows=val_jump()),
    PlannedRun(name="trl-grpo", run_id="trlgrpo1", rows=trl_grpo(), config={"beta": 0.04}),
    PlannedRun(
        name="trl-mismatch", run_id="trlkl010", rows=trl_grpo(kl0=10.0), config={"beta": 0.04}
    ),
    PlannedRun(name="trl-format-only", run_id="trlhack1", rows=trl_grpo(accuracy_zero=True)),
    PlannedRun(name="saturated", run_id="satur001", rows=saturated_reward()),
    PlannedRun(name="short-early", run_id="lencol01", rows=early_length_collapse()),
    PlannedRun(name="not-learning", run_id="flat0001", rows=not_learning()),
    PlannedRun(name="cut-schedule", run_id="lrcut001", rows=cut_schedule()),
    PlannedRun(
        name="one-epoch-kl",
        run_id="klepoch1",
        rows=per_update_kl_high(),
        config={"actor": {"ppo_epochs": 1, "optim": {"lr": 1e-6}}},
    ),
    PlannedRun(
        name="clipped-diverged",
        run_id="clipdiv1",
        rows=diverging_with_clipping(),
        config={"optim": {"lr": 0.5, "gradient_clipping": True}},
    ),
]


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_runs(tmp_path_factory.mktemp("verdict-runs"), PLANS)


def _build(runs_dir: Path, out: Path, extra: str = ""):
    spec = write_spec(
        out / "spec.yaml",
        f'version: 1\nsource: {{type: wandb-offline, path: "{runs_dir}", stale_after: 1000d}}\n'
        f"{extra}"
        f'outputs: {{dir: "{out / "out"}", formats: [markdown, json]}}\n',
    )
    return build(spec).report


@pytest.fixture(scope="module")
def report(runs_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    return _build(runs_dir, tmp_path_factory.mktemp("verdict-out"))


def checks(report, run_id: str) -> list[tuple[str, str, float | None]]:
    return [(f.check, f.key or "", f.step) for f in report.run(run_id).findings]


def only(report, run_id: str, check: str):
    found = [f for f in report.run(run_id).findings if f.check == check]
    assert len(found) == 1, checks(report, run_id)
    return found[0]


# --- 1. "good" only with evidence -------------------------------------------------------------


def test_a_run_without_a_logged_step_is_unjudged(report):
    run = report.run("nostep01")
    assert (run.verdict, run.findings) == ("unjudged", ())
    assert run.health.unjudged == "not enough data: the run logged no step"


def test_a_run_of_12_points_is_unjudged_not_good(report):
    run = report.run("short001")
    assert run.verdict == "unjudged" and run.findings == ()
    assert run.health.unjudged == (
        "not enough data: its longest tracked curve (train/loss) has 12 finite points; at least "
        "20 are needed to judge it"
    )


def test_a_run_with_only_unknown_metrics_is_unjudged(report):
    run = report.run("unknown1")
    assert run.verdict == "unjudged"
    assert "none of its metrics is one the checks know" in run.health.unjudged


def test_unjudged_runs_have_their_own_section_and_json_reason(report):
    text = (Path(report.spec_path).parent / "out" / "report.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| no-step |"))
    assert "| `nostep01` | finished |" in row and "| **unjudged** |" in row
    not_judged = text.split("\n## Not judged\n", 1)[1].split("\n## ", 1)[0]
    assert "- **too-short**: not enough data: its longest tracked curve" in not_judged
    assert "**too-short**" not in text.split("\n## Good\n", 1)[1].split("\n## ", 1)[0]
    data = json.loads((Path(report.spec_path).parent / "out" / "report.json").read_text())
    runs = {r["id"]: r for r in data["runs"]}
    assert runs["nostep01"]["verdict"] == "unjudged"
    assert runs["nostep01"]["unjudged_reason"] == "not enough data: the run logged no step"
    assert runs["early001"]["unjudged_reason"] is None


def test_agents_read_why_a_run_is_unjudged(runs_dir, tmp_path):
    report = _build(runs_dir, tmp_path, "runs: {ids: [nostep01, crash000]}\n")
    text = render_summary(report)
    assert "  unjudged no-step (nostep01): not enough data: the run logged no step\n" in text
    data = json.loads(render_summary_json(report))
    problems = {p["run_id"]: p for p in data["problems"]}
    assert problems["nostep01"]["unjudged_reason"] == "not enough data: the run logged no step"
    assert "unjudged_reason" not in problems["crash000"]
    answer = agent_tools.health(str(runs_dir), RunChoice(ids=("nostep01", "crash000")))
    runs = {r["id"]: r for r in answer["runs"]}
    assert runs["nostep01"]["unjudged_reason"] == "not enough data: the run logged no step"
    assert "unjudged_reason" not in runs["crash000"]


def test_preset_none_judges_nothing_even_a_crash(runs_dir, tmp_path):
    report = _build(
        runs_dir, tmp_path, "runs: {ids: [crash000, planned1]}\nhealth: {preset: none}\n"
    )
    for run in report.runs:
        assert (run.verdict, run.findings) == ("unjudged", ())
        assert run.health.unjudged == "no health check is enabled (health.preset is none)"


# --- 2. how a run ended ------------------------------------------------------------------------


def test_run_together_rank_lines_show_a_user_stop_not_a_crash(report):
    assert checks(report, "rankint1") == [("stopped", "", 99)]
    finding = report.run("rankint1").findings[0]
    assert finding.message.startswith("the run was stopped by its user after step 99: its console")
    assert "KeyboardInterrupt" in finding.message
    assert report.run("rankint1").verdict == "bad"


def test_run_together_rank_lines_still_quote_the_exception_of_a_crash(report):
    finding = only(report, "rankoom1", "crashed")
    assert finding.message.endswith(
        ": torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB"
    )
    assert finding.likely_cause == "GPU memory ran out (CUDA out of memory)"


def test_ctrl_c_caught_and_exit_0_is_stopped(report):
    run = report.run("ctrlc001")
    assert (run.state, run.exit_code) == ("finished", 0)
    assert checks(report, "ctrlc001") == [("stopped", "", 99)]
    assert "Ctrl + C detected" in run.findings[0].message


def test_a_real_keyboard_interrupt_is_stopped_not_crashed(report):
    run = report.run("kbint001")
    assert run.exit_code == 255
    assert [f.check for f in run.findings] == ["stopped"]
    assert run.findings[0].likely_cause.startswith("someone stopped the run by hand")


def test_exit_0_at_step_51_of_900_planned_is_ended_early(report):
    finding = only(report, "early001", "ended_early")
    assert (finding.step, finding.value, finding.severity) == (51, 51, "bad")
    assert finding.message == (
        "the run ended at step 51 of 900 planned (trainer.max_steps is 900): 6% of its planned "
        "length"
    )
    assert report.run("early001").verdict == "bad"
    assert checks(report, "planned1") == []
    assert report.run("planned1").verdict == "good"


def test_a_learning_rate_schedule_cut_short_is_ended_early(report):
    finding = only(report, "lrcut001", "ended_early")
    assert finding.step == 399
    assert finding.message.startswith(
        "the run ended while its learning rate was still decaying: lr was 0.0001968 at the end, "
        "66% of its peak 0.0003 (step 0)"
    )


def test_a_crash_before_any_step_says_so(report):
    finding = only(report, "crash000", "crashed")
    assert finding.step is None
    assert finding.message.startswith(
        "the run failed with exit code 1 before logging any step: RuntimeError: ValueError: bad "
        "config"
    )


# --- 3. spikes ---------------------------------------------------------------------------------


def test_a_jump_at_point_42_is_a_spike_of_loss_and_grad_norm(report):
    assert checks(report, "jump0042") == [
        ("loss_spike", "train/loss", 42),
        ("grad_norm_spike", "grad_norm", 42),
    ]
    assert "9.4 at step 42" in report.run("jump0042").findings[0].message


def test_huge_blowups_are_spikes_on_rl_runs_too(report):
    assert checks(report, "blowup01") == [
        ("loss_spike", "train/loss", 200),
        ("grad_norm_spike", "actor/grad_norm", 120),
    ]
    grad = only(report, "blowup01", "grad_norm_spike")
    assert grad.value == 3e8 and "against a rolling median of 5." in grad.message


# --- 4. trends and divergence -------------------------------------------------------------------


def test_instability_building_up_is_a_rising_trend_of_each_diagnostic(report):
    found = {f.key: f for f in report.run("trend001").findings if f.check == "instability_trend"}
    assert set(found) == {"actor/grad_norm", "actor/ppo_kl", "actor/pg_clipfrac"}
    for finding in found.values():
        assert 240 <= finding.step <= 275
        assert "kept rising to the end of the run" in finding.message
        assert finding.next_step.startswith("Lower the learning rate")


def test_noisy_short_curves_do_not_diverge(report):
    assert checks(report, "noisy060") == []
    assert report.run("noisy060").verdict == "good"


def test_a_validation_loss_that_jumps_33x_and_stays_diverged_and_is_no_plateau(report):
    found = [f for f in report.run("valjump1").findings if f.key == "val/loss"]
    assert [(f.check, f.step) for f in found] == [("diverged", 200)]
    assert "never came back down" in found[0].message


# --- 5. RL meaning -----------------------------------------------------------------------------


def test_a_healthy_trl_grpo_run_with_kl_to_reference_of_02_is_good(report):
    run = report.run("trlgrpo1")
    assert run.health.preset == "rl"
    assert run.findings == ()  # a β·KL loss at 4 decimals is no flatline, 0.2 is no kl_high
    assert run.verdict == "good"


def test_a_kl_to_reference_of_10_at_the_first_step_is_a_mismatch(report):
    finding = only(report, "trlkl010", "ref_kl_high")
    assert (finding.key, finding.step) == ("train/kl", 0)
    assert "differ from the start" in finding.likely_cause
    assert "reference model is the policy's starting checkpoint" in finding.next_step
    assert "learning rate" not in finding.next_step


def test_accuracy_component_at_0_while_the_total_rises_is_reward_hacking(report):
    finding = only(report, "trlhack1", "reward_hacking")
    assert finding.severity == "ugly" and finding.key == "train/reward"
    assert "while train/rewards/accuracy_reward stayed at 0 at every step" in finding.message


def test_a_reward_at_its_ceiling_from_step_0_is_saturated_not_flat(report):
    assert [c for c, _, _ in checks(report, "satur001")] == ["reward_saturated"]
    finding = report.run("satur001").findings[0]
    assert (finding.step, finding.value) == (0, 1)
    assert "no learning signal" in finding.likely_cause
    assert "harder prompts" in finding.next_step and "easier" not in finding.next_step


def test_a_length_collapse_inside_the_first_window_is_found(report):
    finding = only(report, "lencol01", "length_collapse")
    assert finding.step <= 10
    assert finding.message == (
        "response_length/mean collapsed from 29.22 (step 0) to 8.92 at the end: below 50% of its "
        "peak from step 8 on"
    )


def test_a_loss_that_hardly_moves_is_loss_flat_not_good(report):
    assert checks(report, "flat0001") == [("loss_flat", "train_loss", 0)]
    finding = report.run("flat0001").findings[0]
    assert finding.message.startswith("train_loss hardly moved: it opened at 10.7")
    assert "not learning" in finding.likely_cause
    assert report.run("flat0001").verdict == "bad"


# --- 6. advice and the config ------------------------------------------------------------------


def test_advice_tightens_clipping_that_the_config_already_turns_on(report):
    finding = only(report, "clipdiv1", "diverged")
    assert finding.step == 150
    assert finding.next_step == (
        "Lower the learning rate 3–10× (optim.lr is 0.5) and tighten gradient clipping "
        "(optim.gradient_clipping is true)."
    )


def test_advice_never_asks_for_fewer_than_one_epoch(report):
    finding = only(report, "klepoch1", "kl_high")
    assert finding.step == 100
    assert finding.next_step == (
        "Lower the learning rate (actor.optim.lr is 1e-06), or tighten the clip range."
    )


# --- 7. direction ------------------------------------------------------------------------------


def test_comparisons_give_grad_norm_and_lr_no_direction(runs_dir, tmp_path):
    report = _build(
        runs_dir,
        tmp_path,
        "runs: {ids: [planned1, early001]}\n"
        "metrics: {loss: train/loss, grad_norm: grad_norm, lr: lr}\n"
        "compare: {runs: [planned1, early001], metrics: [loss, grad_norm, lr]}\n",
    )
    by_alias = {m.alias: m for m in report.analysis.comparison.metrics}
    assert {a: m.goal for a, m in by_alias.items()} == {
        "loss": "minimize",
        "grad_norm": "none",
        "lr": "none",
    }
    for alias in ("grad_norm", "lr"):
        assert by_alias[alias].changes[0].mark == "no direction"
    assert by_alias["loss"].changes[0].mark in ("better", "worse")


def test_a_nan_ended_run_makes_its_group_mean_nan(tmp_path):
    rows = [{"train/loss": 1.0 - i / 100} for i in range(50)]
    ended_nan = [*rows[:-1], {"train/loss": float("nan")}]
    runs = write_runs(
        tmp_path / "runs",
        [
            PlannedRun(name="a", run_id="grpa0001", rows=rows, config={"lr": 1}),
            PlannedRun(name="b", run_id="grpa0002", rows=ended_nan, config={"lr": 1}),
        ],
    )
    report = _build(
        runs,
        tmp_path,
        "metrics: {loss: train/loss}\n"
        "project_table: {metrics: {loss: last}, primary: loss, group_by: [config.lr]}\n",
    )
    table = report.analysis.project
    cells = {row["run_id"]: row["metric.loss"] for row in table.rows}
    assert cells["grpa0001"] == pytest.approx(0.51) and math.isnan(cells["grpa0002"])
    (group,) = table.groups.rows
    assert math.isnan(group.values["metric.loss"]["mean"])
