"""Renderers: a Report in, files out. They know nothing about W&B."""

from __future__ import annotations

from pathlib import Path

from reportgen import atomic
from reportgen.render.analysis import analysis_files
from reportgen.render.csv import render_csv
from reportgen.render.json import render_json
from reportgen.render.markdown import render_markdown
from reportgen.report import Report


def write_outputs(report: Report, out_dir: Path, formats: tuple[str, ...]) -> list[Path]:
    """Write each requested format into out_dir, each file atomically; report.json last."""
    written: list[Path] = []
    if "csv" in formats:
        for table in report.tables:
            path = out_dir / table.file
            atomic.write_text(path, render_csv(table))
            written.append(path)
        for name, data in analysis_files(report.analysis):
            atomic.write_bytes(out_dir / name, data)
            written.append(out_dir / name)
    if "markdown" in formats:
        path = out_dir / "report.md"
        atomic.write_text(path, render_markdown(report, csv_files="csv" in formats))
        written.append(path)
    if "json" in formats:
        path = out_dir / "report.json"
        atomic.write_text(path, render_json(report))
        written.append(path)
    return written
