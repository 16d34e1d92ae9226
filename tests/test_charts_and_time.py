"""The spec's `plots` and `outputs.templates`, the report's timestamp (--now, SOURCE_DATE_EPOCH),
and the pure helpers behind the charts: thinning that keeps spikes, smoothing, sparklines."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import write_spec

from reportgen.cli import main
from reportgen.curves import smooth, sparkline, thin
from reportgen.errors import SpecError
from reportgen.spec import parse_spec

HEAD = "version: 1\nsource: {type: wandb-offline, path: runs}\nmetrics: {loss: train/loss, kl: train/kl}\n"


def problems(text: str) -> list[str]:
    with pytest.raises(SpecError) as caught:
        parse_spec(text, "spec.yaml")
    return [str(p) for p in caught.value.problems]


def test_plots_options_are_read_with_their_defaults():
    spec = parse_spec(HEAD, "spec.yaml")
    assert (spec.plots.metrics, spec.plots.smoothing, spec.plots.log_y) == (None, 0.0, ())
    assert (spec.plots.points, spec.plots.mermaid) == (600, False)
    spec = parse_spec(
        HEAD + "plots: {metrics: [kl], smoothing: 0.6, log_y: [loss], mermaid: true}\n"
        "outputs: {templates: my-templates}\n",
        "spec.yaml",
    )
    assert (spec.plots.metrics, spec.plots.smoothing, spec.plots.log_y) == (("kl",), 0.6, ("loss",))
    assert spec.plots.mermaid is True
    assert spec.outputs.templates == Path("my-templates")


def test_plots_name_only_defined_aliases():
    assert problems(HEAD + "plots:\n  metrics: [loss, los]\n  log_y: [kll]\n") == [
        "spec.yaml:5:19: plots.metrics[1]: unknown alias 'los'; did you mean 'loss'?",
        "spec.yaml:6:11: plots.log_y[0]: unknown alias 'kll'; did you mean 'kl'?",
    ]


def test_smoothing_must_be_below_one():
    assert problems(HEAD + "plots: {smoothing: 1}\n") == [
        "spec.yaml:4:20: plots.smoothing: expected a value below 1, got 1"
    ]


# --- the report's timestamp ------------------------------------------------------------------


def small_spec(project_dir: Path, tmp_path: Path) -> Path:
    return write_spec(
        tmp_path / "s.yaml",
        f'version: 1\nsource: {{type: wandb-offline, path: "{project_dir}"}}\n'
        "runs: {ids: [sftnan01]}\nmetrics: {loss: train/loss}\nplots: {metrics: []}\n"
        f'outputs: {{dir: "{tmp_path / "out"}", formats: [json]}}\n',
    )


def generated_at(tmp_path: Path) -> str:
    return json.loads((tmp_path / "out" / "report.json").read_text())["generated_at"]


def test_now_fixes_the_report_time(project_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "0")
    spec = small_spec(project_dir, tmp_path)
    assert main(["build", str(spec), "-q", "--now", "2026-03-04T05:06:07+02:00"]) == 0
    assert generated_at(tmp_path) == "2026-03-04T03:06:07Z"  # --now wins, shown in UTC


def test_source_date_epoch_fixes_the_report_time(project_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert main(["build", str(small_spec(project_dir, tmp_path)), "-q"]) == 0
    assert generated_at(tmp_path) == "2023-11-14T22:13:20Z"


def test_a_bad_now_exits_2_with_one_line(project_dir, tmp_path, capsys):
    assert main(["build", str(small_spec(project_dir, tmp_path)), "--now", "tuesday"]) == 2
    assert capsys.readouterr().err == (
        "error: --now: expected a date or time such as 2026-11-01T12:00:00Z, or @1700000000; "
        "got 'tuesday'\n"
    )


def test_a_bad_source_date_epoch_exits_2_with_one_line(project_dir, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "yesterday")
    assert main(["build", str(small_spec(project_dir, tmp_path))]) == 2
    assert capsys.readouterr().err == (
        "error: SOURCE_DATE_EPOCH must be whole seconds since 1970-01-01, got 'yesterday'\n"
    )


def test_an_empty_plot_list_draws_no_charts(project_dir, tmp_path):
    spec = small_spec(project_dir, tmp_path)
    spec.write_text(spec.read_text().replace("formats: [json]", "formats: [markdown]"))
    assert main(["build", str(spec), "-q"]) == 0
    text = (tmp_path / "out" / "report.md").read_text()
    assert "## Plots" not in text
    assert not (tmp_path / "out" / "plots").exists()


# --- thinning, smoothing, sparklines -----------------------------------------------------------


def test_thinning_keeps_every_point_of_a_short_curve():
    steps = np.arange(50)
    assert list(thin(steps, steps * 1.0, 600)) == list(range(50))


def test_thinning_keeps_a_one_step_spike_and_both_ends():
    steps = np.arange(100_000)
    values = np.sin(steps / 1000.0)
    values[31_337] = 40.0
    keep = thin(steps, values, 600)
    assert len(keep) <= 600
    assert 31_337 in keep and keep[0] == 0 and keep[-1] == 99_999
    assert values[keep].min() == values.min()


def test_thinning_keeps_where_values_turn_non_finite():
    steps = np.arange(10_000)
    values = np.where(steps >= 7_001, np.nan, 1.0)
    keep = thin(steps, values, 300)
    assert 7_001 in keep  # the drawn line breaks exactly where the run went NaN


def test_smoothing_is_a_debiased_moving_average_that_skips_non_finite_values():
    smoothed = smooth(np.array([1.0, 2.0, np.nan, 4.0]), 0.5)
    # weights 1, 0.5, 0.25 ... over finite points, normalised: (2 + 0.5) / 1.5, (4 + 1 + 0.25) / 1.75
    assert smoothed[0] == 1.0
    assert smoothed[1] == pytest.approx(2.5 / 1.5)
    assert np.isnan(smoothed[2])
    assert smoothed[3] == pytest.approx(5.25 / 1.75)


def test_sparkline_draws_the_mean_of_each_equal_stretch_of_steps():
    assert sparkline(np.arange(8), np.arange(8) * 1.0, width=8) == "▁▂▃▄▅▆▇█"
    assert sparkline(np.arange(100), np.full(100, 3.0), width=4) == "▁▁▁▁"


def test_sparkline_marks_non_finite_and_empty_stretches():
    steps = np.array([0, 1, 2, 3, 7])
    values = np.array([1.0, 2.0, np.nan, np.inf, 1.0])
    assert sparkline(steps, values, width=8) == "▁█××···▁"


def test_sparkline_on_a_log_scale_spreads_decades_evenly():
    values = np.array([1.0, 10.0, 100.0, 1000.0])
    assert sparkline(np.arange(4), values, width=4) == "▁▁▂█"
    assert sparkline(np.arange(4), values, width=4, log=True) == "▁▃▆█"


def test_without_plots_metrics_the_first_twelve_aliases_are_charted(project_dir, tmp_path):
    aliases = "".join(f"  m{i:02d}: train/loss\n" for i in range(13))
    spec = write_spec(
        tmp_path / "s.yaml",
        f'version: 1\nsource: {{type: wandb-offline, path: "{project_dir}"}}\n'
        f"runs: {{ids: [sftnan01]}}\nmetrics:\n{aliases}"
        f'outputs: {{dir: "{tmp_path / "out"}", formats: [json]}}\n',
    )
    assert main(["build", str(spec), "-q"]) == 0
    data = json.loads((tmp_path / "out" / "report.json").read_text())
    assert data["notes"] == [
        "charts show the first 12 of 13 aliases; list the ones to chart in plots.metrics"
    ]
