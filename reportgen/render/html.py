"""The report as one HTML document (templates/report.html.j2): the source the PDF is typeset from.

Autoescaping is on for every template, so a run named `<script>` arrives as text. Charts are
image URIs: for the PDF, empty SVG placeholders of each chart's size that render_pdf draws the
chart over, so the document needs no files beside it. The variables a template
receives are listed in docs/pdf-and-templates.md; keep the two in step.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path
from typing import Any

import jinja2

from reportgen.render.markdown import all_notes, sparkline_for, state_label
from reportgen.render.templates import render_template, template_loader
from reportgen.render.text import format_number
from reportgen.report import CONSOLE_LINES, FAILED_STATES, Report


@dataclass(frozen=True)
class Figures:
    """Charts' image URIs: per plotted alias, per run (its small multiples), the Pareto chart."""

    aliases: dict[str, str] = field(default_factory=dict)
    runs: dict[str, list[str]] = field(default_factory=dict)
    pareto: str | None = None


def html_environment(extra_dirs: Sequence[Path] = ()) -> jinja2.Environment:
    """Jinja2 for HTML: autoescaping always on, and an undefined name is an error, not blank."""
    env = jinja2.Environment(
        loader=template_loader(extra_dirs),
        autoescape=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = format_number
    return env


def source_text(source: dict[str, Any]) -> str:
    """Where the runs came from, as plain text (the template escapes it)."""
    if source.get("type") == "wandb":
        projects = source.get("projects") or [f"{source.get('entity')}/{source.get('project')}"]
        where = f"W&B {', '.join(projects)}"
        return f"{where} on {source['base_url']}" if source.get("base_url") else where
    return f"local runs in {source.get('path', '')}"


def sampling_text(sampling: dict[str, Any]) -> str:
    stop = f" to {sampling['stop']}" if sampling.get("stop") is not None else " to the last step"
    every = "every step" if sampling["every"] == 1 else f"every {sampling['every']} steps"
    return f"{every} of {sampling['x']} from {sampling['start']}{stop} ({sampling['align']})"


def attachment_rows(report: Report) -> list[dict[str, Any]]:
    """The CSV tables, as the appendix lists them (and the PDF embeds them)."""
    return [
        {
            "file": table.file,
            "run_id": table.run_id,
            "run_name": table.run_name,
            "selection": table.selection,
            "x": table.x,
            "rows": table.rows,
            "columns": ["step", *table.columns],
        }
        for table in report.tables
    ]


CONSOLE_WIDTH = 160  # characters kept of one console line (the end, where the error is)


def console_excerpt(lines: Sequence[str], count: int = CONSOLE_LINES) -> list[str]:
    """The last lines of a failed run's console output, each short enough to read.

    A progress bar redraws itself with carriage returns, so one "line" can hold thousands of
    redraws: only what follows the last one is what a terminal showed.
    """
    shown = []
    for line in lines:
        text = line.rsplit("\r", 1)[-1].rstrip()
        if text:
            shown.append(text if len(text) <= CONSOLE_WIDTH else "…" + text[-CONSOLE_WIDTH + 1 :])
    return shown[-count:]


def value_text(value: Any, present: bool = True) -> str:
    """A config value exactly as logged (JSON unless it is text); a dash where it is missing."""
    if not present:
        return "–"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def signed_text(value: float | None, suffix: str = "") -> str:
    """A change with its sign (+0.12, -3.4%); a dash where there is none."""
    if value is None:
        return "–"
    return f"{'+' if value > 0 else ''}{format_number(value)}{suffix}"


def render_html(
    report: Report, template_dirs: Sequence[Path] = (), figures: Figures | None = None
) -> str:
    """The whole report as HTML; `figures`: the charts' image URIs (none: a report without
    charts; render_pdf passes placeholders it draws the charts over)."""
    from reportgen.render.plots import run_styles

    figures = figures or Figures()
    selected: dict[str, list[str]] = {}
    for selection in report.selections:
        if selection.run_id:
            selected.setdefault(selection.run_id, []).append(selection.name)
    moment = report.generated_at.astimezone(timezone.utc)
    return render_template(
        html_environment(template_dirs),
        "report.html.j2",
        report=report,
        generated=moment.strftime("%Y-%m-%d %H:%M UTC"),
        generated_iso=moment.strftime("%Y-%m-%dT%H:%M:%SZ"),
        source_label=source_text(report.source),
        sampling_label=sampling_text(report.sampling),
        state_label=state_label,
        styles=run_styles(report),
        alias_plots=list(figures.aliases.items()),
        run_plots=figures.runs,
        pareto_plot=figures.pareto,
        sparkline=sparkline_for(report),
        selected=selected,
        notes=all_notes(report),
        attachments=attachment_rows(report),
        value_text=value_text,
        signed=signed_text,
        console_lines=CONSOLE_LINES,
        console=console_excerpt,
        failed_states=FAILED_STATES,
        paged_runs=sum(1 for run in report.runs if report.has_page(run)),
    )
