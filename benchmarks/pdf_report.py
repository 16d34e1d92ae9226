"""Benchmark: how long the PDF takes (goal: 40 runs in 8 s), and whether builds are reproducible.

    .venv/bin/python benchmarks/pdf_report.py [--copies 5] [--repeat 3] [--no-rebuild] [--code DIR]

Uses the bundled demo runs (specs/demo.yaml, 8 runs × 9 aliases), and a report with those runs
copied `--copies` times (a bigger sweep: the renderers do not care where runs came from; the
default 5 gives 40 runs). Times are wall-clock seconds (charts are drawn in worker processes),
medians of `--repeat` runs taken in turns (A B A B) with the floor: the same PDF typeset
without its charts (HTML + WeasyPrint only), so the ratio shows what the charts still cost
(they are drawn in worker processes while WeasyPrint lays the document out, so on two cores
the ratio stays above 1 only by what does not fit beside the layout). CPU seconds include the
workers'. A rebuild whose charts are all in the chart cache is timed against the same floor. Also prints the PDF's pages and size, report.md's size and
where its first selection appears (the answer a reader looks for), how long an alias's PNG and
SVG take when drawn together, and finally builds the demo twice in fresh processes with the same
SOURCE_DATE_EPOCH and says which files are byte-identical. --code DIR times another checkout of
reportgen (e.g. /work/main) with this venv, for before/after figures.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import TypeVar


def _code_folder() -> Path:
    """The checkout to time: --code DIR, read before reportgen is imported; else this one."""
    early = argparse.ArgumentParser(add_help=False)
    early.add_argument("--code", type=Path, default=Path(__file__).resolve().parent.parent)
    return early.parse_known_args()[0].code.resolve()


REPO = _code_folder()
sys.path.insert(0, str(REPO))

from reportgen.build import make_report  # noqa: E402
from reportgen.render.chart_cache import ChartCache  # noqa: E402
from reportgen.render.pdf import render_pdf  # noqa: E402
from reportgen.render.plots import draw_charts, start_charts  # noqa: E402
from reportgen.report import Report  # noqa: E402
from reportgen.sources import open_source  # noqa: E402
from reportgen.spec import load_spec  # noqa: E402

NOW = datetime(2026, 11, 1, 12, 0, tzinfo=timezone.utc)
GOAL_SECONDS = 8.0  # issue 15: a 40-run PDF
T = TypeVar("T")


def clock() -> tuple[float, float]:
    """Wall seconds, and CPU seconds of this process and its finished workers."""
    own, workers = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    cpu = own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime
    return time.perf_counter(), cpu


def timed(work: Callable[[], T]) -> tuple[T, float, float]:
    """work()'s result, wall seconds and CPU seconds."""
    wall, cpu = clock()
    result = work()
    wall_after, cpu_after = clock()
    return result, wall_after - wall, cpu_after - cpu


def paired(
    a: Callable[[], object], b: Callable[[], object], repeat: int
) -> tuple[float, float, float]:
    """Medians of A's wall time, B's wall time and A's CPU time, taken in turns A B A B."""
    a_walls, b_walls, a_cpus = [], [], []
    for _ in range(repeat):
        _, wall, cpu = timed(a)
        a_walls.append(wall)
        a_cpus.append(cpu)
        b_walls.append(timed(b)[1])
    return statistics.median(a_walls), statistics.median(b_walls), statistics.median(a_cpus)


def critical_path(report: Report) -> str:
    """CPU seconds of this process (layout, stamping, charts it drew) and of the chart workers
    for one PDF: on a machine with two free cores the wall time is near the larger of the two,
    whatever else the machine is running while the benchmark runs."""
    before_self = resource.getrusage(resource.RUSAGE_SELF)
    before_workers = resource.getrusage(resource.RUSAGE_CHILDREN)
    render_pdf(report)
    after_self = resource.getrusage(resource.RUSAGE_SELF)
    after_workers = resource.getrusage(resource.RUSAGE_CHILDREN)

    def used(after: resource.struct_rusage, before: resource.struct_rusage) -> float:
        return after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime

    parent, workers = used(after_self, before_self), used(after_workers, before_workers)
    return f"one PDF: CPU {parent:.2f} s in this process, {workers:.2f} s in chart workers"


def figure_line(name: str, value: float, floor: float, goal: float | None) -> None:
    """`figure  value  floor  ratio  goal  ok/MISS`; the goal is on the value in seconds."""
    verdict = "" if goal is None else ("ok" if value <= goal else "MISS")
    goal_text = "" if goal is None else f"<= {goal:g} s"
    print(
        f"  {name:<34} {value:6.2f} s  floor {floor:6.2f} s  {value / floor:5.2f}x  "
        f"{goal_text:<9} {verdict}"
    )


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
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--no-rebuild", action="store_true", help="skip the two-builds reproducibility check"
    )
    parser.add_argument(
        "--code",
        type=Path,
        default=REPO,
        help="time another checkout of reportgen (e.g. /work/main)",
    )
    args = parser.parse_args()
    os.chdir(REPO)
    print(f"reportgen from {REPO}")
    spec = load_spec("specs/demo.yaml")
    report, wall, _ = timed(lambda: make_report(spec, open_source(spec.source), NOW))
    print(f"demo (8 runs × 9 aliases; report assembled in {wall:.2f} s):")

    def no_charts(report: Report) -> bytes:
        """The floor: the same PDF typeset with no charts (no placeholders, no workers)."""
        return render_pdf(report, charts=start_charts(report, png=False, pdf=False))

    _, wall, cpu = timed(lambda: draw_charts(report, png=True, pdf=True))
    print(f"  every chart, PNG + PDF, drawn once   {wall:6.2f} s  (CPU {cpu:.2f} s)")
    pdf = render_pdf(report)
    print(f"  report.pdf: {pages(pdf)} pages, {len(pdf) / 1024:.0f} KiB")
    demo, floor, _ = paired(lambda: render_pdf(report), lambda: no_charts(report), args.repeat)
    figure_line("demo PDF (8 runs)", demo, floor, None)

    bigger = copied(report, args.copies)
    print(f"the demo runs copied {args.copies}× ({len(bigger.runs)} runs):")
    pdf = render_pdf(bigger)
    print(f"  report.pdf: {pages(pdf)} pages, {len(pdf) / 1024:.0f} KiB")
    print(f"  {markdown_figures(bigger)}")
    big, floor, cpu = paired(lambda: render_pdf(bigger), lambda: no_charts(bigger), args.repeat)
    goal = GOAL_SECONDS if len(bigger.runs) == 40 else None
    figure_line(f"{len(bigger.runs)}-run PDF", big, floor, goal)
    print(f"  (CPU {cpu:.2f} s with the chart workers; floor: the same PDF without charts)")
    print(f"  {critical_path(bigger)}")
    with tempfile.TemporaryDirectory() as folder:
        cache = ChartCache(Path(folder))

        def from_cache() -> bytes:
            with start_charts(bigger, pdf=True, beside_layout=True, cache=cache) as charts:
                return render_pdf(bigger, charts=charts)

        assert from_cache() == pdf  # the first fills the cache; every later one reads it
        kept, floor, _ = paired(from_cache, lambda: no_charts(bigger), args.repeat)
        figure_line("  rebuilt, charts from the cache", kept, floor, None)
    if not args.no_rebuild:
        print("two demo builds, fresh processes, same SOURCE_DATE_EPOCH:")
        reproducible()


if __name__ == "__main__":
    main()
