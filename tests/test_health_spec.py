"""Health settings in a spec: unknown ids and parameters are located errors; docs stay in sync."""

from __future__ import annotations

import pytest

from reportgen.check_catalogue import CATALOGUE
from reportgen.errors import SpecError
from reportgen.health import CHECKS, preset_checks
from reportgen.health.docs import BEGIN, DOC, END, generated
from reportgen.health.registry import check as register_check
from reportgen.spec import parse_spec

HEAD = """\
version: 1
source: {type: wandb-offline, path: runs}
metrics:
  my_kl: actor/ppo_kl
health:
"""


def problems(health: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(HEAD + health, "spec.yaml")
    return [str(p) for p in caught.value.problems]


def test_the_design_check_ids_are_all_registered():
    assert list(CHECKS) == [
        "crashed", "stopped", "ended_early", "killed", "stalled", "non_finite", "diverged",
        "loss_spike", "grad_norm_spike", "flatline", "instability_trend", "plateau",
        "still_improving", "overfitting", "loss_flat", "entropy_collapse", "kl_high",
        "kl_spike", "kl_low", "ref_kl_high", "clipfrac_high", "length_collapse",
        "length_explosion", "length_clipping", "reward_flat", "reward_saturated",
        "reward_hacking",
    ]  # fmt: skip


def test_every_check_in_the_catalogue_has_its_function_in_the_catalogues_order():
    assert list(CHECKS) == list(CATALOGUE)
    for check_id, registered in CHECKS.items():
        assert registered.spec is CATALOGUE[check_id] and callable(registered.function)


def test_a_check_function_with_an_id_the_catalogue_lacks_is_refused():
    with pytest.raises(ValueError, match=r"'kl_hihg' is not in reportgen/check_catalogue\.py"):
        register_check("kl_hihg", looks_at="kl", cause="c", advice="a")(lambda ctx, p: [])


def test_presets_split_rl_and_supervised_checks():
    assert "entropy_collapse" in preset_checks("rl")
    assert "entropy_collapse" not in preset_checks("supervised")
    assert "overfitting" in preset_checks("supervised")
    assert set(preset_checks("rl")) | set(preset_checks("supervised")) == set(CHECKS)


def test_valid_health_settings_load():
    spec = parse_spec(
        HEAD + "  preset: rl\n  checks:\n    kl_high: {threshold: 0.2, metric: my_kl}\n"
        "    stalled: {after: 2h}\n  disable: [plateau]\n",
        "spec.yaml",
    )
    assert spec.health.checks == {
        "kl_high": {"threshold": 0.2, "metric": "my_kl"},
        "stalled": {"after": "2h"},
    }
    assert spec.health.disable == ("plateau",)


def test_an_unknown_check_id_is_located_with_a_suggestion():
    assert problems("  checks:\n    kl_hgh: {threshold: 0.2}\n") == [
        "spec.yaml:7:5: health.checks.kl_hgh: unknown check 'kl_hgh'; did you mean 'kl_high'?"
    ]


def test_an_unknown_parameter_is_located_with_a_suggestion():
    assert problems("  checks:\n    kl_high:\n      treshold: 0.2\n") == [
        "spec.yaml:8:7: health.checks.kl_high.treshold: unknown parameter 'treshold' of "
        "kl_high; did you mean 'threshold'?"
    ]


def test_a_metric_parameter_must_name_an_alias_or_role():
    assert problems("  checks:\n    kl_high: {metric: my_kll}\n") == [
        "spec.yaml:7:23: health.checks.kl_high.metric: unknown alias 'my_kll'; did you mean 'my_kl'?"
    ]
    assert problems("  checks:\n    flatline: {metrics: [loss, rewrd]}\n") == [
        "spec.yaml:7:32: health.checks.flatline.metrics[1]: unknown alias 'rewrd'; did you mean 'reward'?"
    ]


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("entropy_collapse: {ratio: 2}", "expected a fraction between 0 and 1, got 2"),
        ("killed: {after: soon}", 'expected a duration such as 30m, 2h or 1d, got "soon"'),
        ("stalled: {severity: awful}", 'expected bad or ugly, got "awful"'),
        ("kl_high: {threshold: high}", 'expected a number, got "high"'),
        ("loss_spike: {window: 0}", "expected a whole number of at least 1, got 0"),
    ],
)
def test_parameter_values_of_the_wrong_kind_are_errors(setting, message):
    (found,) = problems(f"  checks:\n    {setting}\n")
    assert found.endswith(message)


def test_an_unknown_disabled_check_is_an_error():
    assert problems("  disable: [plateu]\n") == [
        "spec.yaml:6:13: health.disable[0]: unknown check 'plateu'; did you mean 'plateau'?"
    ]


def test_every_check_is_documented_and_the_doc_is_in_sync():
    text = DOC.read_text(encoding="utf-8")
    assert text.split(BEGIN, 1)[1].split(END, 1)[0].strip() == generated().strip(), (
        "docs/health-checks.md is stale: run python -m reportgen.health.docs --write"
    )
    for check in CHECKS.values():
        assert check.doc and check.looks_at and check.cause and check.advice
        assert f"### `{check.id}`" in text
        for param in check.all_params:
            assert param.doc, f"{check.id}.{param.name} has no documentation"
