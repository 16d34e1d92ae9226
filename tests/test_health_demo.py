"""The demo report over the bundled runs: failures under Ugly, healthy runs as good."""

from __future__ import annotations

from pathlib import Path

import pytest

from reportgen import build

ROOT = Path(__file__).resolve().parents[1]

VERDICTS = {
    "6b000021": "good",  # grpo-lr1e-2-ent0.03-len12
    "47a724db": "good",  # grpo-lr1e-2-ent0.03-len4
    "3092b5db": "good",  # grpo-lr1e-2-ent0.05-clip0.3
    "447a55b7": "good",  # sft-lr3e-2
    "a3e0e489": "good",  # sft-lr1e-2
    "8e054617": "ugly",  # grpo-lr3e-1-ent0: entropy collapse
    "21c233f8": "ugly",  # grpo-lr1e-2-ent0.03-oom: crash
    "22a2978e": "ugly",  # sft-lr2e0-noclip: divergence to NaN
}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("demo")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(ROOT)
        result = build(ROOT / "specs" / "demo.yaml", out_dir=out)
    return result, (out / "report.md").read_text()


def section(text: str, title: str) -> str:
    return text.split(f"\n## {title}\n", 1)[1].split("\n## ", 1)[0]


def test_every_demo_run_gets_its_expected_verdict(demo):
    result, _ = demo
    assert {run.id: run.verdict for run in result.report.runs} == VERDICTS


def test_divergence_is_ugly_with_infinity_at_170_and_nan_from_173(demo):
    result, text = demo
    run = result.report.run("22a2978e")
    assert {f.check for f in run.findings} == {"non_finite", "diverged"}
    non_finite = next(f for f in run.findings if f.check == "non_finite")
    assert (non_finite.key, non_finite.step) == ("train/loss", 170)
    assert non_finite.message.startswith(
        "train/loss became Infinity at step 170, NaN from step 173 and stayed non-finite"
    )
    ugly = section(text, "Ugly")
    assert "**sft-lr2e0-noclip** (`22a2978e`)" in ugly
    assert "train/loss became Infinity at step 170, NaN from step 173" in ugly


def test_entropy_collapse_is_ugly(demo):
    result, text = demo
    run = result.report.run("8e054617")
    collapse = next(f for f in run.findings if f.check == "entropy_collapse")
    assert (collapse.severity, collapse.key) == ("ugly", "actor/entropy")
    assert collapse.step < 40  # the README: entropy is below 0.05 by step ~33
    assert "**grpo-lr3e-1-ent0** (`8e054617`)\n\n- `entropy_collapse`" in section(text, "Ugly")


def test_the_crash_is_ugly_and_quotes_cuda_out_of_memory(demo):
    result, text = demo
    run = result.report.run("21c233f8")
    assert [f.check for f in run.findings] == ["crashed"]
    assert "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB" in run.findings[0].message
    assert "RuntimeError: CUDA out of memory" in section(text, "Ugly")


def test_healthy_demo_runs_are_listed_under_good(demo):
    result, text = demo
    good = section(text, "Good")
    for run in result.report.runs:
        listed = f"- **{run.name}** passed all" in good
        assert listed is (run.verdict == "good")


def test_next_experiments_follow_from_the_failures(demo):
    result, text = demo
    actions = [e.action for e in result.report.next_experiments]
    assert 3 <= len(actions) <= 6
    assert actions[0].startswith("Lower the learning rate 3–10× (optim.lr is 2)")
    assert any(
        a.startswith("Add or raise the entropy bonus (actor.entropy_coef is 0)") for a in actions
    )
    assert any("smaller micro-batch" in a for a in actions)
    assert section(text, "Next experiments").count("\n1. ") + 1 >= 1
