"""Renderers: a Report in, files out. They know nothing about W&B."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from reportgen import atomic

# Each renderer is imported when its format is written: `reportgen runs` and `keys` use
# render.console alone and should not load Jinja2 and the whole Report model with it.
if TYPE_CHECKING:
    from reportgen.render.chart_cache import ChartCache
    from reportgen.report import Report

PLOTS_DIR = "plots"


def write_outputs(
    report: Report,
    out_dir: Path,
    formats: tuple[str, ...],
    template_dirs: Sequence[Path] = (),
    unchanged: Callable[[Path, bytes], bool] | None = None,
    chart_cache: ChartCache | None = None,
) -> list[Path]:
    """Write each requested format into out_dir, each file atomically; report.json last.

    `template_dirs` are searched for templates before the built-in ones. `unchanged(path,
    data)` says whether the file `path` stands for already holds `data` where the build will put
    it (render/folder.py): such a file is listed but not written again, as a warm rebuild of
    an unchanged project would otherwise rewrite hundreds of identical CSV files.
    `chart_cache`: charts an earlier build drew from the same data are taken from it instead of
    being drawn again (render/chart_cache.py).
    """

    def write(files: Iterable[tuple[Path, bytes]]) -> list[Path]:
        return atomic.write_many(files, skip=unchanged)

    written: list[Path] = []
    charts = None
    if "markdown" in formats or "pdf" in formats:
        from reportgen.render.plots import start_charts

        # Each chart drawn once for both: the Markdown's PNG and the PDF's vector chart of an
        # alias come from one figure. Workers draw them while the PDF is laid out here.
        charts = start_charts(
            report,
            png="markdown" in formats,
            pdf="pdf" in formats,
            beside_layout="pdf" in formats,
            cache=chart_cache,
        )
    with charts or contextlib.nullcontext():
        if "csv" in formats:
            from reportgen.render.analysis import analysis_files
            from reportgen.render.csv import render_csv

            tables = [(out_dir / t.file, render_csv(t).encode("utf-8")) for t in report.tables]
            analysis = [(out_dir / name, data) for name, data in analysis_files(report.analysis)]
            written += write([*tables, *analysis])
        if "pdf" in formats:
            from reportgen.render.pdf import render_pdf

            pdf = render_pdf(report, template_dirs, charts)
            written += write([(out_dir / "report.pdf", pdf)])
        if "markdown" in formats and charts is not None:
            from reportgen.render.markdown import render_markdown
            from reportgen.render.plots import write_png_plots

            pngs = write_png_plots(report, out_dir / PLOTS_DIR, charts.images())
            written += pngs.values()
            images = {alias: path.relative_to(out_dir).as_posix() for alias, path in pngs.items()}
            text = render_markdown(report, template_dirs, images, csv_files="csv" in formats)
            written += write([(out_dir / "report.md", text.encode("utf-8"))])
    if "json" in formats:
        from reportgen.render.json import render_json

        written += write([(out_dir / "report.json", render_json(report).encode("utf-8"))])
    if chart_cache is not None and charts is not None:
        chart_cache.prune()
    return written
