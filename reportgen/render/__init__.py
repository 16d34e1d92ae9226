"""Renderers: a Report in, files out. They know nothing about W&B."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from reportgen import atomic
from reportgen.render.csv import render_csv
from reportgen.render.json import render_json
from reportgen.render.markdown import render_markdown
from reportgen.report import Report

PLOTS_DIR = "plots"


def write_outputs(
    report: Report,
    out_dir: Path,
    formats: tuple[str, ...],
    template_dirs: Sequence[Path] = (),
) -> list[Path]:
    """Write each requested format into out_dir, each file atomically; report.json last.

    `template_dirs` are searched for templates before the built-in ones.
    """
    written: list[Path] = []
    if "csv" in formats:
        for table in report.tables:
            path = out_dir / table.file
            atomic.write_text(path, render_csv(table))
            written.append(path)
    if "markdown" in formats:
        from reportgen.render.plots import write_png_plots

        pngs = write_png_plots(report, out_dir / PLOTS_DIR)
        written += pngs.values()
        images = {alias: path.relative_to(out_dir).as_posix() for alias, path in pngs.items()}
        path = out_dir / "report.md"
        atomic.write_text(path, render_markdown(report, template_dirs, images))
        written.append(path)
    if "pdf" in formats:
        from reportgen.render.pdf import render_pdf

        path = out_dir / "report.pdf"
        atomic.write_bytes(path, render_pdf(report, template_dirs))
        written.append(path)
    if "json" in formats:
        path = out_dir / "report.json"
        atomic.write_text(path, render_json(report))
        written.append(path)
    return written
