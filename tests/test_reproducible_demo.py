"""`make demo` writes the PDF, and the same inputs build the same bytes.

The demo is built twice in this process: as the Makefile's demo target does it, with --now;
then through the Python API with SOURCE_DATE_EPOCH set to the same moment, without the PDF
(whose determinism test_pdf_report checks on a smaller report, to keep the suite fast).
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from pathlib import Path

import pytest
from pdftext import page_texts

from reportgen import build
from reportgen.cli import main
from reportgen.render.plots import alias_figure, run_styles
from reportgen.report import Report
from reportgen.spec import load_spec

REPO = Path(__file__).resolve().parent.parent
MOMENT = "2026-11-01T12:00:00Z"
EPOCH = "1793534400"  # the same moment


def demo_command() -> list[str]:
    """The arguments the Makefile's `demo` target gives reportgen."""
    makefile = (REPO / "Makefile").read_text()
    recipe = re.search(r"^demo:.*\n\t(.+)$", makefile, re.MULTILINE)
    assert recipe is not None
    words = shlex.split(recipe.group(1))
    return words[words.index("$(BIN)/reportgen") + 1 :]


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Report]:
    first = tmp_path_factory.mktemp("demo-now")
    second = tmp_path_factory.mktemp("demo-epoch")
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(REPO)
        patch.delenv("SOURCE_DATE_EPOCH", raising=False)
        assert main([*demo_command(), "--out", str(first), "--now", MOMENT, "-q"]) == 0
        patch.setenv("SOURCE_DATE_EPOCH", EPOCH)
        spec = load_spec("specs/demo.yaml")
        outputs = dataclasses.replace(spec.outputs, formats=("markdown", "csv", "json"))
        report = build(dataclasses.replace(spec, outputs=outputs), out_dir=second).report
    return first, second, report


def test_the_makefile_demo_builds_the_demo_spec():
    assert demo_command() == ["build", "specs/demo.yaml"]


def test_the_demo_command_writes_a_pdf_with_every_demo_run(two_builds):
    first, _, _ = two_builds
    pages = page_texts(first / "report.pdf")
    assert pages[0].splitlines()[1] == "reportgen demo — GRPO and SFT"
    runs = json.loads((first / "report.json").read_text())["runs"]
    assert len(runs) == 8
    picked = set(json.loads((first / "report.json").read_text())["selections"].values())
    firsts = {page.splitlines()[0] for page in pages}
    notable = [run for run in runs if run["findings"] or run["id"] in picked]
    assert 0 < len(notable) < len(runs)
    for run in runs:  # a notable run's section starts a page; the others are in the verdicts
        assert (run["name"] in firsts) == (run in notable), run["name"]
    assert pages[-1].startswith("Appendix: CSV attachments")


def test_two_builds_give_byte_identical_markdown_and_csv(two_builds):
    first, second, _ = two_builds
    names = sorted(p.name for p in first.iterdir() if p.suffix in (".md", ".csv"))
    assert names == [
        "best_loss_loss_experiment.csv",
        "best_score_score_experiment.csv",
        "report.md",
        "shortest_length_experiment.csv",
    ]
    for name in names:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_two_builds_give_byte_identical_json_and_charts(two_builds):
    first, second, _ = two_builds
    charts = sorted(f"plots/{p.name}" for p in (first / "plots").iterdir())
    assert len(charts) == 9
    for name in ["report.json", *charts]:
        assert (first / name).read_bytes() == (second / name).read_bytes(), name


def test_source_date_epoch_is_the_report_time(two_builds):
    _, second, _ = two_builds
    assert json.loads((second / "report.json").read_text())["generated_at"] == MOMENT
    assert "| Generated | 2026-11-01 12:00 UTC" in (second / "report.md").read_text()


def test_the_health_findings_of_the_demo_are_in_the_pdf(two_builds):
    first, _, _ = two_builds
    pages = page_texts(first / "report.pdf")
    text = " ".join(" ".join(pages).split())
    runs = json.loads((first / "report.json").read_text())["runs"]
    findings = [(run["name"], f) for run in runs for f in run["findings"]]
    assert {f["check"] for _, f in findings} >= {"non_finite", "crashed", "entropy_collapse"}
    for name, finding in findings:
        page = next(p for p in pages if p.splitlines()[0] == name)
        assert finding["check"] in page
        assert " ".join(finding["message"].split()) in text


def test_the_demo_findings_are_marked_on_their_curves(two_builds):
    _, _, report = two_builds
    styles = run_styles(report)
    marked = 0
    for run in report.runs:
        for finding in run.findings:
            if finding.metric is None or finding.step is None:
                continue
            fig = alias_figure(report, finding.metric, styles)
            lines = fig.axes[0].get_lines()
            marks = [m for m in lines if m.get_gid() == f"finding-{finding.check}"]
            assert any(list(m.get_xdata()) == [finding.step] for m in marks), finding
            marked += 1
    assert marked >= 5
