"""report.pdf read back: cover, verdicts, charts with findings marked, run sections, appendix;
run-derived text escaped in Markdown, HTML and PDF. One PDF is built for the whole module.

The runs are written by the real wandb client. Health checks arrive with their own stage, so
the findings here are added to the real Report (plain data) before rendering.
"""

from __future__ import annotations

import dataclasses
import gc
import io
import math
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pypdf
import pytest
from conftest import write_spec
from pdftext import page_pixels, page_texts
from runwriter import PlannedRun, write_runs

from reportgen.build import make_report
from reportgen.render import write_outputs
from reportgen.render.html import render_html
from reportgen.render.pdf import bundled_fonts_folder, font_faces, render_pdf
from reportgen.render.plots import (
    _small_multiples,
    alias_figure,
    draw_charts,
    run_styles,
    start_charts,
)
from reportgen.report import Finding, Report, verdict
from reportgen.sources import open_source
from reportgen.spec import load_spec

HOSTILE = "<script>alert(1)</script> | `rm -rf /` @everyone"
NOW = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
STEPS = 300


def spiky_loss(step: int) -> float:
    return 5.0 if step == 150 else 1.0 / (1 + step)


def diverging_loss(step: int) -> float:
    return float("nan") if step >= 200 else 0.5 * math.exp(step / 40.0)


PLANS = [
    PlannedRun(
        name="steady",
        run_id="steady01",
        rows=[{"train/loss": 2.0 / (1 + s), "eval/score": s / STEPS} for s in range(STEPS)],
        tags=["sweep"],
    ),
    PlannedRun(
        name=HOSTILE,
        run_id="hostile1",
        rows=[{"train/loss": spiky_loss(s), "eval/score": 0.5} for s in range(STEPS)],
        tags=["sweep", "<b>tag</b>"],
    ),
    PlannedRun(
        name="diverge",
        run_id="diverge1",
        rows=[{"train/loss": diverging_loss(s)} for s in range(STEPS)],
        tags=["sweep"],
    ),
]

SPEC = """\
version: 1
title: Sweep health
source: {{type: wandb-offline, path: "{path}"}}
metrics:
  loss: {{key: train/loss, goal: minimize}}
  score: eval/score
select:
  best: {{by: loss, reduce: last, pick: min}}
sampling: {{every: 50}}
plots: {{log_y: [loss], smoothing: 0.5, mermaid: true}}
outputs:
  dir: "{out}"
  formats: [markdown, pdf, csv, json]
"""

SPIKE = Finding(
    "loss_spike",
    "bad",
    "loss jumped to 5 at step 150 (<img src=x onerror=alert(2)>)",
    metric="loss",
    key="train/loss",
    step=150,
    value=5.0,
)
NAN = Finding(
    "non_finite",
    "ugly",
    "loss became NaN at step 200 and never recovered",
    metric="loss",
    key="train/loss",
    step=200,
    value=float("nan"),
)
STALL = Finding("stalled", "bad", "no step logged after step 299 for 2 hours", step=299)


class Built(NamedTuple):
    report: Report
    out: Path
    files: list[Path]
    pdf: pypdf.PdfReader
    pages: list[str]


def with_findings(report: Report, findings: dict[str, list[Finding]]) -> Report:
    runs = tuple(
        dataclasses.replace(
            run,
            findings=tuple(findings.get(run.id, ())),
            verdict=verdict(findings.get(run.id, ())),
        )
        for run in report.runs
    )
    return dataclasses.replace(report, runs=runs)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("pdf")
    runs = write_runs(tmp / "runs", PLANS)
    spec = load_spec(write_spec(tmp / "sweep.yaml", SPEC.format(path=runs, out=tmp / "out")))
    report = make_report(spec, open_source(spec.source), NOW)
    report = with_findings(report, {"hostile1": [SPIKE], "diverge1": [NAN, STALL]})
    files = write_outputs(report, spec.outputs.dir, spec.outputs.formats)
    pdf = pypdf.PdfReader(spec.outputs.dir / "report.pdf")
    pages = page_texts(spec.outputs.dir / "report.pdf")
    return Built(report, spec.outputs.dir, files, pdf, pages)


def page_of(pages: list[str], text: str) -> int:
    return next(i for i, page in enumerate(pages) if text in page)


def test_the_cover_has_title_source_spec_hash_and_time(built):
    report = built.report
    pages = built.pages
    cover = pages[0]
    assert "Sweep health" in cover
    assert "local runs in" in cover
    assert report.spec_sha256 in cover
    assert "2026-11-01 12:00 UTC" in cover


def test_the_verdict_table_lists_every_run_with_its_verdict(built):
    pages = built.pages
    cover = " ".join(pages[0].split())
    assert "Verdicts" in cover
    assert "steady steady01 finished GOOD 0" in cover
    assert "diverge diverge1 finished UGLY 2" in cover
    assert f"{HOSTILE} hostile1 finished BAD 1" in cover


def test_runs_with_findings_or_picked_have_a_section_starting_a_page(built):
    pages = built.pages
    firsts = [page.splitlines()[0] for page in pages]
    assert [s.run_id for s in built.report.selections] == ["hostile1"]
    for name in ("diverge", HOSTILE):  # findings (and hostile1 is picked as best)
        assert name in firsts
    assert "steady" not in firsts  # healthy and not picked: its row in the verdicts is enough
    cover = " ".join(pages[0].split())
    assert "1 run without findings and not picked by a selection has no page of its own" in cover


def test_run_pages_all_gives_every_run_a_section(built, tmp_path):
    path = tmp_path / "all.pdf"
    path.write_bytes(render_pdf(dataclasses.replace(built.report, run_pages="all")))
    firsts = [page.splitlines()[0] for page in page_texts(path)]
    for name in ("steady", "diverge", HOSTILE):
        assert name in firsts


def test_finding_messages_are_in_the_run_sections(built):
    pages = built.pages
    diverge = pages[page_of(pages, "loss became NaN")]
    assert diverge.splitlines()[0] == "diverge"
    assert "non_finite" in diverge and "stalled" in diverge
    assert "no step logged after step 299 for 2 hours" in diverge
    hostile = " ".join(pages[page_of(pages, "loss jumped to 5")].split())
    assert "loss jumped to 5 at step 150 (<img src=x onerror=alert(2)>)" in hostile


def test_pages_are_numbered_page_x_of_n(built):
    pdf = built.pdf
    pages = built.pages
    total = len(pdf.pages)
    assert total >= 5  # cover, charts, selections, two notable runs, appendix
    for number, page in enumerate(pages, start=1):
        assert f"Page {number} of {total}" in page


def test_headings_become_bookmarks(built):
    pdf = built.pdf
    top = pdf.outline[0].title
    sections = [item.title for item in pdf.outline[1] if not isinstance(item, list)]
    assert top == "Sweep health"
    assert sections[0] == "Verdicts"
    assert sections.index("Metrics across runs") < sections.index("Selections")
    assert {"diverge", HOSTILE, "Appendix: CSV attachments"} <= set(sections)
    assert "steady" not in sections  # no findings, not picked: no section of its own


def test_the_appendix_lists_the_csv_attachments(built):
    report = built.report
    pages = built.pages
    appendix = pages[-1]
    assert appendix.startswith("Appendix: CSV attachments")
    assert report.tables[0].file == "best_loss_experiment.csv"
    assert "best_loss_experiment.csv" in appendix


def test_the_csv_tables_are_embedded_in_the_pdf(built):
    out = built.out
    pdf = built.pdf
    assert dict(pdf.attachments) == {
        "best_loss_experiment.csv": [(out / "best_loss_experiment.csv").read_bytes()]
    }


def test_the_pdf_dates_are_the_report_time(built):
    pdf = built.pdf
    assert pdf.metadata["/CreationDate"] == "D:20261101120000Z"
    assert pdf.metadata["/ModDate"] == "D:20261101120000Z"
    assert pdf.metadata["/Title"] == "Sweep health"


def test_the_first_page_renders_to_a_non_blank_a4_image(built):
    out = built.out
    (width, height), pixels = page_pixels(out / "report.pdf")
    assert (round(width), round(height)) == (595, 842)  # A4 in points
    inked = float((pixels.min(axis=2) < 200).mean())
    assert 0.01 < inked < 0.5
    colours = np.unique(pixels.reshape(-1, 3), axis=0)
    assert len(colours) > 20  # swatches and badges, not flat grey


def test_charts_are_vector_graphics_in_the_pdf(built):
    pdf = built.pdf
    pages = built.pages
    charts = pdf.pages[page_of(pages, "Metrics across runs")]
    assert "loss" in pages[page_of(pages, "Metrics across runs")]
    # SVG is drawn as PDF path operators: no raster image on the chart page.
    assert not charts.images


CHART_DRAWN = re.compile(
    rb"q ([0-9.]+) 0 0 ([0-9.]+) ([0-9.]+) ([0-9.]+) cm /ReportgenChart(\d+) Do Q"
)


def test_each_chart_is_drawn_once_into_its_placeholder_box(built):
    pdf = built.pdf
    pages = built.pages
    drawn = {
        number: CHART_DRAWN.findall(page.get_contents().get_data())
        for number, page in enumerate(pdf.pages)
    }
    charts_page = page_of(pages, "Metrics across runs")
    assert len(drawn[charts_page]) == 2  # loss and score
    assert len(drawn[page_of(pages, "loss became NaN")]) == 1  # diverge's small multiples
    assert len(drawn[page_of(pages, "loss jumped to 5")]) == 1  # hostile's
    assert sum(len(found) for found in drawn.values()) == 4
    numbers = [int(found[4]) for page in drawn.values() for found in page]
    assert sorted(numbers) == [0, 1, 2, 3]
    # A 7-inch (504 pt) chart scaled into the A4 text column: 595 pt less two 17 mm margins.
    margin = 17 / 25.4 * 72
    for sx, sy, x, y, _n in drawn[charts_page]:
        width = float(sx) * 504
        assert 0.95 * (595.276 - 2 * margin) < width <= 595.276 - 2 * margin
        assert float(sx) == pytest.approx(float(sy), rel=1e-3)  # the aspect ratio kept
        assert margin <= float(x) and float(x) + width <= 595.276 - margin
        assert float(y) >= 22 / 25.4 * 72  # above the bottom margin


def test_charts_drawn_in_worker_processes_are_the_bytes_drawn_in_process(built):
    report = built.report
    here = draw_charts(report, png=True, pdf=True, processes=0)
    workers = draw_charts(report, png=True, pdf=True, processes=2)
    assert here == workers
    assert sorted(here.aliases) == ["loss", "score"]
    assert all(sorted(drawn) == ["pdf", "png"] for drawn in here.aliases.values())
    assert sorted(here.runs) == ["diverge1", "hostile1"]  # steady has no page: no charts
    assert all(sorted(drawn) == ["pdf"] for pages in here.runs.values() for drawn in pages)


def copied_runs(report: Report, copies: int) -> Report:
    """The report with every run copied (a bigger sweep: legends of several rows)."""
    runs = tuple(
        dataclasses.replace(run, id=f"{run.id}-{i}", name=f"{run.name} #{i}")
        for i in range(copies)
        for run in report.runs
    )
    return dataclasses.replace(report, runs=runs, runs_found=len(runs), run_pages="all")


def test_chart_sizes_known_before_drawing_are_the_sizes_drawn(built):
    # The PDF reserves each chart's box before the chart is drawn: the sizes must agree.
    report = copied_runs(built.report, 5)
    pending = start_charts(report, png=False, pdf=True, processes=0)
    assert len(pending.jobs) == 2 + 15  # two aliases, a page of small charts per run
    heights = set()
    for (width, height), drawn in zip(pending.inches, pending.drawn(), strict=True):
        box = pypdf.PdfReader(io.BytesIO(drawn["pdf"])).pages[0].mediabox
        assert float(box.width) == pytest.approx(width * 72)
        assert float(box.height) == pytest.approx(height * 72)
        heights.add(round(height, 2))
    assert len(heights) >= 3  # alias charts with 5 legend rows (and fewer), small multiples


def test_charts_split_between_a_worker_and_this_process_are_the_bytes_drawn_here(built):
    # One worker takes charts from the front while this process, asking at once, draws the
    # ones not yet started from the back: every chart once, in the jobs' order.
    report = copied_runs(built.report, 2)
    with start_charts(report, png=True, pdf=True, processes=1) as shared:
        split = shared.drawn()
    with start_charts(report, png=True, pdf=True, processes=0) as alone:
        assert split == alone.drawn()
    assert len(split) == 2 + 6 and all("pdf" in chart for chart in split)


def test_the_pdf_laid_out_while_workers_draw_is_the_pdf_drawn_in_process(built):
    report = built.report
    here = render_pdf(report, charts=start_charts(report, png=False, pdf=True, processes=0))
    beside = render_pdf(report, charts=start_charts(report, png=False, pdf=True, processes=2))
    assert here == beside == (built.out / "report.pdf").read_bytes()
    assert gc.isenabled()  # paused only while typesetting


def test_markdown_pngs_come_from_the_pass_that_drew_the_pdf_charts(built):
    alone = draw_charts(built.report, png=True, pdf=False, processes=0)
    assert sorted(alone.aliases) == ["loss", "score"] and not alone.runs
    for alias in ("loss", "score"):
        assert (built.out / "plots" / f"{alias}.png").read_bytes() == alone.aliases[alias]["png"]


def test_hostile_run_name_prints_literally_in_the_pdf_and_runs_no_script(built):
    pdf = built.pdf
    pages = built.pages
    assert any(HOSTILE in page for page in pages)
    root = pdf.trailer["/Root"]
    assert "/OpenAction" not in root and "/AA" not in root
    names = root.get("/Names", {})
    assert "/JavaScript" not in names


def test_hostile_run_name_is_escaped_in_the_html(built):
    report = built.report
    html = render_html(report)
    assert "&lt;script&gt;alert(1)&lt;/script&gt; | `rm -rf /` @everyone" in html
    assert "<script" not in html
    assert "<img src=x" not in html
    assert "&lt;b&gt;tag&lt;/b&gt;" in html


def test_hostile_run_name_is_escaped_in_markdown(built):
    out = built.out
    text = (out / "report.md").read_text()
    escaped = r"&lt;script&gt;alert(1)&lt;/script&gt; \| \`rm -rf /\` &#64;everyone"
    assert f"| {escaped} | `hostile1` |" in text
    assert "<script>" not in text and "@everyone" not in text


def test_markdown_links_a_png_chart_per_alias(built):
    out = built.out
    files = built.files
    text = (out / "report.md").read_text()
    assert "![loss](plots/loss.png)" in text and "![score](plots/score.png)" in text
    for name in ("loss.png", "score.png"):
        path = out / "plots" / name
        assert path in files
        assert path.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_markdown_tables_carry_a_sparkline_per_metric(built):
    out = built.out
    text = (out / "report.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| loss | `train/loss` |"))
    spark = row.split("|")[-2].split()[0]
    # best is the spiky run: 1/(1+step) falls on the log axis; the step-150 spike lifts bar 9.
    assert spark == "█▆▅▄▃▃▃▂▃▂▂▂▁▁▁▁"


def test_mermaid_blocks_carry_numbers_and_run_colours_but_no_run_text(built):
    out = built.out
    text = (out / "report.md").read_text()
    block = text.split("```mermaid\n")[1].split("```")[0]
    lines = block.splitlines()
    assert lines[0] == (
        '%%{init: {"themeVariables": {"xyChart": '
        '{"plotColorPalette": "#1f77b4, #ff7f0e, #2ca02c"}}}}%%'
    )
    assert lines[1:4] == ["xychart-beta", '    title "loss"', '    x-axis "_step" 0 --> 299']
    assert lines[4] == '    y-axis "log10 loss"'
    data = [line for line in lines if line.startswith("    line [")]
    assert len(data) == 3 and all(line.count(",") == 23 for line in data)
    # xychart reads plain decimals only: no exponents, even for 1/(1+step) on a log axis.
    numbers = re.findall(r"[^\s\[\],]+", " ".join(line[10:-1] for line in data))
    assert all(re.fullmatch(r"[+-]?(\d+(\.\d+)?|\.\d+)", n) for n in numbers), numbers
    assert "script" not in block and "@" not in block.replace("%%", "")
    caption = text.split("```mermaid\n")[1].split("```")[1].strip().splitlines()[0]
    assert caption.startswith("`loss`: ")
    assert "&lt;script&gt;" in caption and "(orange)" in caption


def test_a_finding_is_marked_on_its_curve_at_its_step_and_value(built):
    report = built.report
    fig = alias_figure(report, "loss", run_styles(report))
    marks = {line.get_gid(): line for line in fig.axes[0].get_lines() if line.get_gid()}
    spike = marks["finding-loss_spike"]
    assert list(spike.get_xdata()) == [150.0] and list(spike.get_ydata()) == [5.0]


def test_a_nan_finding_is_marked_where_the_line_stopped(built):
    report = built.report
    fig = alias_figure(report, "loss", run_styles(report))
    marks = {line.get_gid(): line for line in fig.axes[0].get_lines() if line.get_gid()}
    nan = marks["finding-non_finite"]
    assert list(nan.get_xdata()) == [200.0]
    assert list(nan.get_ydata()) == [pytest.approx(diverging_loss(199))]


def test_log_scale_where_the_spec_asks(built):
    report = built.report
    styles = run_styles(report)
    assert alias_figure(report, "loss", styles).axes[0].get_yscale() == "log"
    assert alias_figure(report, "score", styles).axes[0].get_yscale() == "linear"


def test_the_fonts_come_from_matplotlibs_folder_without_importing_matplotlib():
    import matplotlib

    assert bundled_fonts_folder() == Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    assert f"src: url({(bundled_fonts_folder() / 'DejaVuSans.ttf').as_uri()})" in font_faces()
    # The PDF's layout process reads the fonts' folder without paying for matplotlib's import.
    probe = (
        "import sys; from reportgen.render.pdf import font_faces; "
        "faces = font_faces(); print('matplotlib' in sys.modules, faces.count('@font-face'))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert shown.stdout.split() == ["False", "6"]


def test_small_multiples_give_axes_only_to_the_cells_that_hold_a_chart(built):
    # Four charts fill four of a 3 × 2 grid's cells, row by row; the two empty cells get no
    # axes at all (hidden axes cost as much to create as drawn ones).
    report = built.report
    run = report.run("steady01")
    loss, score = run.curve("loss"), run.curve("score")
    assert loss is not None and score is not None
    fig = _small_multiples(report, run, [loss, score, score, loss], run_styles(report)[run.id])
    assert [ax.get_title(loc="left") for ax in fig.axes] == ["loss", "score", "score", "loss"]
    cells = [(ax.get_position().x0, ax.get_position().y0) for ax in fig.axes]
    columns = sorted({round(x, 6) for x, _ in cells})
    rows = sorted({round(y, 6) for _, y in cells}, reverse=True)
    assert len(columns) == 3 and len(rows) == 2
    placed = [(columns.index(round(x, 6)), rows.index(round(y, 6))) for x, y in cells]
    assert placed == [(0, 0), (1, 0), (2, 0), (0, 1)]


def test_each_run_keeps_one_colour_in_every_chart(built):
    report = built.report
    styles = run_styles(report)
    for alias in ("loss", "score"):
        fig = alias_figure(report, alias, styles)
        legend = fig.legends[0]
        for text, handle in zip(legend.get_texts(), legend.legend_handles, strict=True):
            run = next(r for r in report.runs if r.name.startswith(text.get_text().rstrip("…")))
            assert handle.get_color() == styles[run.id].colour


def test_smoothing_draws_the_average_over_the_faded_raw_curve(built):
    report = built.report
    styles = run_styles(report)
    fig = alias_figure(report, "score", styles)
    colour = styles["steady01"].colour
    steady = [line for line in fig.axes[0].get_lines() if line.get_color() == colour]
    raw, smoothed = steady
    assert raw.get_alpha() == 0.25 and smoothed.get_alpha() is None
    expected = report.run("steady01").curve("score")
    assert expected is not None and expected.smoothed is not None
    assert np.allclose(smoothed.get_ydata(), expected.smoothed)
    # A debiased average of a rising line lags below it.
    assert expected.smoothed[-1] < expected.values[-1]


def test_the_same_report_renders_to_the_same_pdf_bytes(built):
    report = built.report
    out = built.out
    assert render_pdf(report) == (out / "report.pdf").read_bytes()


def test_charts_are_listed_among_the_files_written(built):
    out = built.out
    files = built.files
    assert sorted(p.relative_to(out).as_posix() for p in files) == [
        "best_loss_experiment.csv",
        "plots/loss.png",
        "plots/score.png",
        "report.json",
        "report.md",
        "report.pdf",
    ]


def test_runs_no_check_looked_at_are_marked_not_judged(project_dir, tmp_path):
    spec = write_spec(
        tmp_path / "s.yaml",
        f'version: 1\nsource: {{type: wandb-offline, path: "{project_dir}"}}\n'
        "runs: {ids: [sftnan01]}\nmetrics: {loss: train/loss}\nhealth: {preset: none}\n"
        f'plots: {{metrics: []}}\noutputs: {{dir: "{tmp_path / "out"}", formats: [pdf], '
        "run_pages: all}\n",
    )
    from reportgen import build

    pages = page_texts(build(spec).out_dir / "report.pdf")
    assert "sft-nan sftnan01 finished NOT JUDGED 0" in " ".join(pages[0].split())
    run_page = " ".join(next(p for p in pages if p.startswith("sft-nan")).split())
    assert "Not judged: no health check is enabled (health.preset is none)." in run_page


def test_a_failed_run_shows_the_last_few_console_lines_each_cut_short(project_dir, tmp_path):
    spec = load_spec(
        write_spec(
            tmp_path / "s.yaml",
            f'version: 1\nsource: {{type: wandb-offline, path: "{project_dir}"}}\n'
            "runs: {ids: [crash001, sftnan01]}\nmetrics: {loss: train/loss}\n",
        )
    )
    report = make_report(spec, open_source(spec.source), NOW)
    crasher = report.run("crash001")
    long_line = "0%|" + "█" * 500 + "| 20/4545\r 1%|" + "█" * 400 + "| 45/4545"
    crasher = dataclasses.replace(crasher, console_tail=(*crasher.console_tail, long_line))
    report = dataclasses.replace(report, runs=(crasher, report.run("sftnan01")))
    html = render_html(report)
    (console,) = re.findall(r'<pre class="console">(.*?)</pre>', html, re.DOTALL)
    lines = console.split("\n")
    assert len(lines) == 5  # of the run's longer tail
    assert lines[-1] == "…" + (" 1%|" + "█" * 400 + "| 45/4545")[-159:]
    assert any("CUDA out of memory" in line for line in lines)
    assert html.count('<pre class="console">') == 1  # the finished run shows none
