"""Baselines: which runs they are, the comparison table, and tolerances that gate the build."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from baseline_runs import BASELINE_IDS, CANDIDATE_IDS, comparison_plans, comparison_spec
from runwriter import write_runs

from reportgen import build
from reportgen.cli import main
from reportgen.errors import SpecError
from reportgen.spec import load_spec

LOSS_BASELINE = (0.50 + 0.52) / 2
SCORE_BASELINE = (0.80 + 0.82) / 2

TOLERANCES = """\
baseline:
  filters: {config: {git_sha: aaa111}}
  tolerances:
    loss: {abs: 0.05}
    score: {rel: 0.05}
"""


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_runs(tmp_path_factory.mktemp("baseline-runs"), comparison_plans())


def build_with(runs_dir: Path, tmp_path: Path, body: str, **kwargs):
    spec = comparison_spec(tmp_path / "pr.yaml", runs_dir, tmp_path / "out", body, **kwargs)
    return build(spec)


def rows_by(result) -> dict[tuple[str, str], object]:
    return {(row.alias, row.run_id): row for row in result.report.baseline.rows}


def test_a_config_value_picks_the_baselines_and_the_rest_are_candidates(runs_dir, tmp_path):
    comparison = build_with(runs_dir, tmp_path, TOLERANCES).report.baseline
    assert sorted(comparison.baseline_ids) == BASELINE_IDS
    assert sorted(comparison.candidate_ids) == sorted(CANDIDATE_IDS)


@pytest.mark.parametrize(
    "rule",
    [
        "ids: [basea001, baseb002]",
        "filters: {tags: {any: [main]}}",
        "filters: {group: main}",
        "filters: {config: {git_sha: aaa111}}",
    ],
)
def test_baselines_can_be_chosen_by_id_tag_group_or_config(runs_dir, tmp_path, rule):
    result = build_with(runs_dir, tmp_path, f"baseline: {{{rule}}}\n")
    assert sorted(result.report.baseline.baseline_ids) == BASELINE_IDS


def test_limit_keeps_the_newest_baseline(runs_dir, tmp_path):
    result = build_with(runs_dir, tmp_path, "baseline: {ids: [basea001, baseb002], limit: 1}\n")
    newest = max((result.report.run(i) for i in BASELINE_IDS), key=lambda r: (r.created_at, r.id))
    assert result.report.baseline.baseline_ids == (newest.id,)


def test_a_candidate_rule_limits_what_is_compared(runs_dir, tmp_path):
    body = TOLERANCES + "candidate: {ids: [candok01]}\n"
    comparison = build_with(runs_dir, tmp_path, body).report.baseline
    assert comparison.candidate_ids == ("candok01",)
    assert {row.run_id for row in comparison.rows} == {"candok01"}


def test_metrics_limits_the_compared_aliases_but_toleranced_ones_stay(runs_dir, tmp_path):
    body = "baseline:\n  ids: [basea001]\n  metrics: [score]\n  tolerances: {loss: {abs: 1}}\n"
    comparison = build_with(runs_dir, tmp_path, body).report.baseline
    assert comparison.aliases == ("score", "loss")
    assert len(comparison.rows) == 3 * 2  # baseb002 is a candidate here


def test_each_row_holds_baseline_candidate_change_and_percent(runs_dir, tmp_path):
    rows = rows_by(build_with(runs_dir, tmp_path, TOLERANCES))
    loss = rows[("loss", "candbad1")]
    assert loss.baseline == pytest.approx(LOSS_BASELINE, rel=1e-12)
    assert loss.candidate == 0.60
    assert loss.change == pytest.approx(0.60 - LOSS_BASELINE, rel=1e-9)
    assert loss.percent == pytest.approx(100 * (0.60 - LOSS_BASELINE) / LOSS_BASELINE, rel=1e-9)
    assert (loss.goal, loss.reduce, loss.key) == ("minimize", "last", "train/loss")


def test_tolerances_are_direction_aware(runs_dir, tmp_path):
    rows = rows_by(build_with(runs_dir, tmp_path, TOLERANCES))
    # loss (minimize): lower is better; score (maximize): higher is better.
    assert rows[("loss", "candok01")].status == "pass"  # 0.49 < 0.51
    assert rows[("loss", "candbad1")].status == "fail"  # 0.09 worse > 0.05
    assert rows[("score", "candok01")].status == "pass"  # 0.815 > 0.81
    assert rows[("score", "candbad1")].status == "fail"  # 0.11 worse > 5% of 0.81
    assert rows[("score", "candbad1")].allowed == pytest.approx(0.05 * SCORE_BASELINE)
    assert rows[("loss", "candok01")].better is True
    assert rows[("score", "candbad1")].better is False


def test_an_improvement_passes_any_tolerance(runs_dir, tmp_path):
    body = (
        "baseline:\n  ids: [basea001, baseb002]\n  tolerances: {loss: {abs: 0}, score: {abs: 0}}\n"
    )
    rows = rows_by(build_with(runs_dir, tmp_path, body))
    assert rows[("loss", "candok01")].status == "pass"
    assert rows[("score", "candok01")].status == "pass"


@pytest.mark.parametrize(
    ("tolerance", "status"),
    [
        ("{abs: 0.1}", "pass"),  # 0.09 worse, 0.1 allowed
        ("{abs: 0.09}", "pass"),  # exactly the allowance
        ("{abs: 0.08}", "fail"),
        ("{rel: 0.1}", "fail"),  # 0.051 allowed
        ("{rel: 0.2}", "pass"),  # 0.102 allowed
        ("{abs: 0.01, rel: 0.2}", "pass"),  # the larger allowance applies
        ("{abs: 0.1, rel: 0.01}", "pass"),
        ("{abs: 0.01, rel: 0.01}", "fail"),
    ],
)
def test_abs_and_rel_tolerances(runs_dir, tmp_path, tolerance, status):
    body = f"baseline:\n  ids: [basea001, baseb002]\n  tolerances: {{loss: {tolerance}}}\n"
    assert rows_by(build_with(runs_dir, tmp_path, body))[("loss", "candbad1")].status == status


@pytest.mark.parametrize(
    ("how", "baseline", "candidate"),
    [
        ("last", LOSS_BASELINE, 0.60),
        ("min", LOSS_BASELINE, 0.60),
        ("max", LOSS_BASELINE + 1, 1.60),
        ("mean", LOSS_BASELINE + 0.5, 1.10),
    ],
)
def test_each_tolerance_may_reduce_its_own_way(runs_dir, tmp_path, how, baseline, candidate):
    body = f"baseline:\n  ids: [basea001, baseb002]\n  tolerances: {{loss: {{abs: 1, reduce: {how}}}}}\n"
    row = rows_by(build_with(runs_dir, tmp_path, body))[("loss", "candbad1")]
    assert row.reduce == how
    assert row.baseline == pytest.approx(baseline, rel=1e-9)
    assert row.candidate == pytest.approx(candidate, rel=1e-9)


def test_gate_reasons_list_each_exceeded_tolerance(runs_dir, tmp_path):
    gate = build_with(runs_dir, tmp_path, TOLERANCES).report.gate
    assert gate.failed
    assert gate.reasons == (
        "loss (last) in run pr-regressed (candbad1): 0.6 vs baseline 0.51 is worse by 0.09 "
        "(+17.6%), more than the allowed 0.05 (abs 0.05; goal: minimize)",
        "score (last) in run pr-regressed (candbad1): 0.7 vs baseline 0.81 is worse by 0.11 "
        "(-13.6%), more than the allowed 0.0405 (rel 5%; goal: maximize)",
    )


def test_aliases_without_a_tolerance_are_shown_but_never_gate(runs_dir, tmp_path):
    result = build_with(runs_dir, tmp_path, "baseline: {ids: [basea001, baseb002]}\n")
    assert {row.status for row in result.report.baseline.rows} == {"info"}
    assert not result.report.gate.failed
    assert len(result.report.baseline.rows) == 4  # 2 candidates × 2 aliases


def test_a_missing_metric_fails_the_gate_unless_told_to_pass(runs_dir, tmp_path):
    body = "baseline:\n  ids: [basea001]\n  tolerances: {score: {abs: 1}}\n"
    result = build_with(runs_dir, tmp_path, body, tags="[main, partial]")
    row = rows_by(result)[("score", "candpart")]
    assert row.status == "missing" and row.candidate is None
    assert result.report.gate.reasons == (
        "score (last) in run pr-no-score (candpart): no finite value in the candidate run",
    )
    relaxed = build_with(runs_dir, tmp_path, body + "  missing: pass\n", tags="[main, partial]")
    assert not relaxed.report.gate.failed


def test_no_matching_baseline_fails_the_gate(runs_dir, tmp_path):
    body = "baseline:\n  filters: {config: {git_sha: nope}}\n  tolerances: {loss: {abs: 1}}\n"
    result = build_with(runs_dir, tmp_path, body)
    assert result.report.baseline.baseline_ids == ()
    assert result.report.gate.reasons[0] == (
        "no baseline run: none of the chosen runs matched the baseline rule"
    )


def test_build_exits_1_when_a_tolerance_is_exceeded(runs_dir, tmp_path, capsys):
    spec = comparison_spec(tmp_path / "pr.yaml", runs_dir, tmp_path / "out", TOLERANCES)
    assert main(["build", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "gate failed" in err
    assert "loss (last) in run pr-regressed (candbad1)" in err


def test_build_exits_0_when_every_tolerance_holds(runs_dir, tmp_path):
    body = "baseline:\n  ids: [basea001, baseb002]\n  tolerances: {loss: {abs: 0.1}, score: {rel: 0.2}}\n"
    spec = comparison_spec(tmp_path / "pr.yaml", runs_dir, tmp_path / "out", body)
    assert main(["build", str(spec), "-q"]) == 0


def test_report_json_carries_the_baseline_comparison(runs_dir, tmp_path):
    result = build_with(runs_dir, tmp_path, TOLERANCES)
    data = json.loads((result.out_dir / "report.json").read_text())
    comparison = data["baseline"]
    assert sorted(comparison["baseline_runs"]) == BASELINE_IDS
    assert comparison["failed"] is True and len(comparison["reasons"]) == 2
    row = next(r for r in comparison["rows"] if (r["metric"], r["run_id"]) == ("loss", "candbad1"))
    assert set(row) == {
        "metric", "key", "goal", "reduce", "run_id", "baseline", "candidate", "change",
        "percent", "tolerance", "allowed", "status",
    }  # fmt: skip
    assert row["tolerance"] == {"abs": 0.05, "rel": None}
    assert (row["candidate"], row["allowed"], row["status"]) == (0.6, 0.05, "fail")
    assert data["gate"]["failed"] is True


def test_report_md_has_the_comparison_table(runs_dir, tmp_path):
    result = build_with(runs_dir, tmp_path, TOLERANCES)
    text = (result.out_dir / "report.md").read_text()
    assert "## Compared with the baseline" in text
    assert "Baseline runs: main-seed" in text and "(values averaged)" in text
    assert (
        "| loss (last, minimize) | pr-regressed | 0.51 | 0.6 | +0.09 worse | +17.65% "
        "| ❌ fail (tol 0.05) |" in text
    )


def test_unknown_tolerance_alias_is_a_located_spec_error(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "version: 1\nsource: {type: wandb-offline, path: x}\nmetrics: {loss: train/loss}\n"
        "baseline:\n  ids: [a]\n  tolerances:\n    los: {abs: 1}\n"
    )
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    assert [str(p) for p in caught.value.problems] == [
        f"{spec}:7:5: baseline.tolerances.los: unknown alias 'los'; did you mean 'loss'?"
    ]


def test_a_baseline_must_say_which_runs_it_is(tmp_path):
    spec = tmp_path / "bad.yaml"
    spec.write_text(
        "version: 1\nsource: {type: wandb-offline, path: x}\nmetrics: {loss: train/loss}\n"
        "baseline:\n  tolerances: {loss: {abs: 1}}\n"
    )
    with pytest.raises(SpecError) as caught:
        load_spec(spec)
    assert [str(p) for p in caught.value.problems] == [
        f"{spec}:4:1: baseline: say which runs are the baseline: give ids, filters, or both"
    ]


def test_the_pr_demo_spec_fails_on_the_run_whose_entropy_collapsed(tmp_path, monkeypatch):
    monkeypatch.chdir(Path(__file__).resolve().parent.parent)
    result = build("specs/pr-demo.yaml", out_dir=tmp_path, env={})
    assert result.exit_code == 1
    assert [r.split(":")[0] for r in result.report.gate.reasons] == [
        "score (last) in run grpo-lr3e-1-ent0 (8e054617)"
    ]
    assert result.comment is not None and result.comment.outcome.status == "not posted"
