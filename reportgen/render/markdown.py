"""report.md, rendered from templates/report.md.j2."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from reportgen.curves import sparkline
from reportgen.render.baseline import row_cells
from reportgen.render.plots import PARETO_IMAGE
from reportgen.render.templates import (
    MarkdownSafe,
    code_span,
    markdown_environment,
    render_template,
)
from reportgen.render.text import escape_markdown, format_number
from reportgen.report import Report, RunProblems, RunReport


def source_label(source: dict[str, Any]) -> str:
    """`wandb-offline examples/wandb` or `wandb entity/project (server)`, as Markdown."""
    if source.get("type") == "wandb":
        projects = source.get("projects") or [f"{source.get('entity')}/{source.get('project')}"]
        where = ", ".join(code_span(p) for p in projects)
        server = f" on {escape_markdown(source['base_url'])}" if source.get("base_url") else ""
        return f"W&B {where}{server}"
    return f"local runs in {code_span(source.get('path', ''))}"


def sampling_label(sampling: dict[str, Any]) -> str:
    stop = f" to {sampling['stop']}" if sampling.get("stop") is not None else " to the last step"
    every = sampling["every"]
    step_word = "every step" if every == 1 else f"every {every} steps"
    axis = code_span(sampling["x"])
    return f"{step_word} of {axis} from {sampling['start']}{stop} ({sampling['align']})"


def state_label(run: RunReport) -> str:
    if run.state == "failed" and run.exit_code is not None:
        return f"failed (exit {run.exit_code})"
    return run.state


def all_notes(report: Report) -> list[str]:
    """The report's own notes, then each run's, prefixed with the run where it is not named.

    A metric missing in many runs for the same reason (an RL alias in SFT runs) is one note
    naming those runs, not one per run: in a 40-run sweep these were half of report.md.
    """
    notes = list(report.notes)
    missing: dict[tuple[str, str], list[str]] = {}
    for run in report.runs:
        for metric in run.metrics:
            if metric.missing_note:
                reason = _missing_reason(metric.missing_note)
                missing.setdefault((metric.alias, reason), []).append(run.name)
    grouped = {key: names for key, names in missing.items() if len(names) > 1 and key[1]}
    for run in report.runs:
        for note in run.notes:
            alias = next((m.alias for m in run.metrics if m.missing_note == note), None)
            if alias is not None:
                reason = _missing_reason(note)
                names = grouped.get((alias, reason))
                if names is not None:
                    if names[0] == run.name:
                        notes.append(_missing_in_runs(alias, names, reason))
                    continue
            notes.append(note if run.name in note else f"{run.name}: {note}")
    return notes


def _missing_reason(note: str) -> str:
    """'none of [a, b] was logged; closest …' from a metric's missing note ("" if not one)."""
    at = note.find(": none of [")
    return note[at + 2 :] if at >= 0 else ""


def _missing_in_runs(alias: str, names: list[str], reason: str, shown: int = 5) -> str:
    listed = ", ".join(names[:shown]) + (
        f" and {len(names) - shown} more" if len(names) > shown else ""
    )
    return f"metric '{alias}' is missing in {len(names)} runs ({listed}): {reason}"


def sparkline_for(report: Report) -> Callable[[RunReport, str], str]:
    """`sparkline(run, alias)` for templates: the alias's curve in block characters, or ""."""

    def spark(run: RunReport, alias: str) -> str:
        curve = run.curve(alias)
        if curve is None:
            return ""
        return sparkline(curve.steps, curve.values, log=alias in report.plots.log_y)

    return spark


def markdown_plots(report: Report, images: Mapping[str, str]) -> list[dict[str, Any]]:
    """Per plotted alias: its image path (when a PNG was written) and its Mermaid block."""
    from reportgen.render.mermaid import mermaid_chart
    from reportgen.render.plots import plotted_aliases, run_styles

    styles = run_styles(report)
    plots = []
    for alias in plotted_aliases(report):
        chart = mermaid_chart(report, alias, styles) if report.plots.mermaid else None
        if alias not in images and chart is None:
            continue
        plots.append(
            {
                "alias": alias,
                "image": images.get(alias),
                "mermaid": MarkdownSafe(chart.text) if chart else None,
                "lines": chart.runs if chart else (),
                "left_out": chart.left_out if chart else 0,
            }
        )
    return plots


def finding_ids(run: RunReport) -> MarkdownSafe:
    """The distinct check ids of a run's findings, as code spans."""
    ids = dict.fromkeys(f.check for f in run.findings)
    return MarkdownSafe(", ".join(code_span(i) for i in ids))


def problem_block(problem: RunProblems) -> MarkdownSafe:
    """One run's findings of a severity: a bullet each, the likely cause once per group."""
    run = problem.run
    lines = [f"**{escape_markdown(run.name)}** ({code_span(run.id)})", ""]
    for group in problem.groups:
        for f in group.findings:
            lines.append(f"- {code_span(f.check)}: {escape_markdown(f.message)}.")
        if group.cause:
            lines.append(f"  *Likely cause:* {escape_markdown(group.cause)}.")
    return MarkdownSafe("\n".join(lines) + "\n")


def value_cell(value: Any, present: bool = True) -> MarkdownSafe:
    """A config value exactly as logged, as inline code; a dash where the key is missing."""
    if not present:
        return MarkdownSafe("–")
    if isinstance(value, str):
        return code_span(value)
    return code_span(json.dumps(value, sort_keys=True, default=str))


def pivot_label(value: Any) -> MarkdownSafe:
    """A pivot's row or column value, exactly, as inline code; "(missing)" for runs without it."""
    return MarkdownSafe("(missing)") if value is None else value_cell(value)


def signed(value: float | None, suffix: str = "") -> MarkdownSafe:
    """A change with its sign (+0.12, -3.4%); a dash where there is none."""
    if value is None:
        return MarkdownSafe("–")
    sign = "+" if value > 0 else ""
    return MarkdownSafe(f"{sign}{format_number(value)}{suffix}")


def render_markdown(
    report: Report,
    template_dirs: Sequence[Path] = (),
    images: Mapping[str, str] | None = None,
    *,
    csv_files: bool = True,
) -> str:
    """report.md; `images` maps an alias to its chart's path relative to report.md, and
    `csv_files` says whether the tables' CSV files exist to link to."""
    env = markdown_environment(template_dirs)
    spark = sparkline_for(report)
    return render_template(
        env,
        "report.md.j2",
        report=report,
        source_label=source_label(report.source),
        sampling_label=sampling_label(report.sampling),
        generated=report.generated_at.strftime("%Y-%m-%d %H:%M UTC"),
        state_label=state_label,
        finding_ids=finding_ids,
        problem_block=problem_block,
        notes=all_notes(report),
        value_cell=value_cell,
        pivot_label=pivot_label,
        pareto_image=(images or {}).get(PARETO_IMAGE),
        signed=signed,
        csv_files=csv_files,
        baseline_cells=row_cells,
        plots=markdown_plots(report, images or {}),
        sparkline=lambda run, alias: MarkdownSafe(spark(run, alias)),
    )
