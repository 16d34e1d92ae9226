"""Benchmark: how long the PDF and the charts take, and whether two builds give the same bytes.

    .venv/bin/python benchmarks/pdf_report.py [--copies 5]

Uses the bundled demo runs (specs/demo.yaml, 8 runs × 9 aliases). Times, in CPU seconds of
this process: assembling the Report, drawing the PNG charts, drawing the SVG charts, and the
whole PDF (charts + HTML + WeasyPrint). Then renders a report with the runs copied `--copies`
times (a bigger sweep: the renderers do not care where runs came from; the default 5 gives 40
runs) and prints the PDF's pages, size and time and report.md's size and where its first
selection appears (the answer a reader looks for). Finally builds the demo twice in fresh processes with the same SOURCE_DATE_EPOCH and
says which files are byte-identical.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from reportgen.build import make_report  # noqa: E402
from reportgen.render.html import draw_figures  # noqa: E402
from reportgen.render.pdf import render_pdf  # noqa: E402
from reportgen.render.plots import write_png_plots  # noqa: E402
from reportgen.report import Report  # noqa: E402
from reportgen.sources import open_source  # noqa: E402
from reportgen.spec import load_spec  # noqa: E402

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)


def timed(label: str, work):  # type: ignore[no-untyped-def]
    start = time.process_time()
    result = work()
    print(f"  {label:<38} {time.process_time() - start:6.2f} s")
    return result


def copied(report: Report, copies: int) -> Report:
    """The report with every run copied; selections and tables point at the first copies."""
    runs = tuple(
        dataclasses.replace(run, id=f"{run.id}-{i}", name=f"{run.name} #{i}")
        for i in range(copies)
        for run in report.runs
    )
    selections = tuple(
        dataclasses.replace(s, run_id=f"{s.run_id}-0" if s.run_id else None)
        for s in report.selections
    )
    tables = tuple(dataclasses.replace(t, run_id=f"{t.run_id}-0") for t in report.tables)
    return dataclasses.replace(
        report, runs=runs, runs_found=len(runs), selections=selections, tables=tables
    )


def markdown_figures(report: Report) -> str:
    """report.md's size, and how far into it the first selection's answer comes."""
    from reportgen.render.markdown import render_markdown

    text = render_markdown(report)
    first = text.find("## Selection:")
    return (
        f"report.md {len(text.encode()) / 1024:.1f} KiB, first selection at {first / len(text):.0%}"
    )


def pages(pdf: bytes) -> int:
    import io

    import pypdf

    return len(pypdf.PdfReader(io.BytesIO(pdf)).pages)


def reproducible() -> None:
    """Two demo builds in fresh processes, same SOURCE_DATE_EPOCH: which files match?"""
    with tempfile.TemporaryDirectory() as tmp:
        outs = [Path(tmp) / "a", Path(tmp) / "b"]
        env = {**os.environ, "SOURCE_DATE_EPOCH": "1793534400"}
        for out in outs:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "reportgen",
                    "build",
                    "specs/demo.yaml",
                    "--out",
                    str(out),
                    "-q",
                ],
                cwd=REPO,
                env=env,
                check=True,
            )
        files = sorted(p.relative_to(outs[0]) for p in outs[0].rglob("*") if p.is_file())
        same = [f for f in files if (outs[0] / f).read_bytes() == (outs[1] / f).read_bytes()]
        differ = sorted(set(files) - set(same))
        print(f"  byte-identical: {len(same)} of {len(files)} files")
        for name in differ:
            print(f"  DIFFERENT: {name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--copies", type=int, default=5)
    parser.add_argument(
        "--no-rebuild", action="store_true", help="skip the two-builds reproducibility check"
    )
    args = parser.parse_args()
    os.chdir(REPO)
    spec = load_spec("specs/demo.yaml")
    print("demo (8 runs × 9 aliases):")
    report = timed(
        "report (read runs, assemble)", lambda: make_report(spec, open_source(spec.source), NOW)
    )
    with tempfile.TemporaryDirectory() as tmp:
        timed("PNG charts (one per alias)", lambda: write_png_plots(report, Path(tmp)))
    timed("SVG charts (per alias and per run)", lambda: draw_figures(report))
    pdf = timed("report.pdf (charts + HTML + WeasyPrint)", lambda: render_pdf(report))
    print(f"  {pages(pdf)} pages, {len(pdf) / 1024:.0f} KiB")
    bigger = copied(report, args.copies)
    print(f"the demo runs copied {args.copies}× ({len(bigger.runs)} runs):")
    start = time.process_time()
    pdf = timed("report.pdf", lambda: render_pdf(bigger))
    seconds = time.process_time() - start
    print(f"  {pages(pdf)} pages, {len(pdf) / 1024:.0f} KiB")
    print(f"  {markdown_figures(bigger)}")
    if len(bigger.runs) == 40:
        verdict = "met" if seconds <= 8 else "MISSED"
        print(f"  40-run PDF: {seconds:.1f} s, {seconds / 8:.2f}× the goal of 8 s ({verdict})")
    if not args.no_rebuild:
        print("two demo builds, fresh processes, same SOURCE_DATE_EPOCH:")
        reproducible()


if __name__ == "__main__":
    main()
