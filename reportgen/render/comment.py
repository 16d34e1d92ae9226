"""The pull-request comment: a compact Markdown report that always fits the forge's limit.

It opens with a hidden marker (`<!-- reportgen:NAME -->`) by which later builds find the comment
and update it instead of adding another. It shows the gate, the verdicts, the comparison with the
baseline (with sparklines and, optionally, Mermaid charts) and the findings, with long parts
folded into `<details>` blocks.

A comment longer than the limit is shortened by dropping detail in the order of `SHORTENING`
(documented in docs/pull-requests.md), re-rendering after each step; a notice then says what was
left out and where the full report is. If even the shortest form is too long (thousands of
runs, say), its end is cut at a line boundary, leaving every HTML block and code fence closed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from reportgen.analysis.baseline import FAIL, MISSING, BaselineComparison, BaselineRow, Trace
from reportgen.curves import spark_bars
from reportgen.render.baseline import row_cells
from reportgen.render.mermaid import mermaid_number
from reportgen.render.templates import MarkdownSafe, markdown_environment
from reportgen.render.text import escape_markdown
from reportgen.report import Report
from reportgen.safetext import visible

GITHUB_LIMIT = 65_536  # characters in an issue or pull-request comment body
GITLAB_LIMIT = 1_000_000  # characters in a merge-request note
FORGE_LIMITS = {"github": GITHUB_LIMIT, "gitlab": GITLAB_LIMIT}

# What goes first when a comment is too long: (part, how the notice names it).
SHORTENING: tuple[tuple[str, str], ...] = (
    ("charts", "the Mermaid charts"),
    ("sparklines", "the sparklines"),
    ("finding_details", "findings beyond the first 3 of each run"),
    ("passing_rows", "comparison rows that passed or have no tolerance"),
    ("findings", "the list of findings"),
    ("good_runs", "runs whose verdict is good"),
)

FINDINGS_PER_RUN = 3  # kept per run once `finding_details` is dropped
REASONS_SHOWN = 10  # gate reasons listed at the top; the table has the rest
CHART_LINES = 6  # lines per Mermaid chart: the baseline and up to five candidates
VERDICT_ICONS = {
    "good": "🟢 good",
    "bad": "🟠 bad",
    "ugly": "🔴 ugly",
    "unjudged": "⚪ not judged",
}


@dataclass(frozen=True)
class CommentOptions:
    """How to render: the marker's name, the size limit, and where the full report lives."""

    marker: str
    limit: int = GITHUB_LIMIT
    charts: bool = False
    full_report: str | None = None


def marker_line(name: str) -> str:
    """The hidden HTML comment that identifies this spec's comment on a pull request."""
    return f"<!-- reportgen:{name} -->"


def default_marker(spec_path: str | Path) -> str:
    """A marker name from the spec file name: `specs/grpo-health.yaml` → `grpo-health`."""
    stem = Path(spec_path).stem
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in stem).strip(".-")
    return cleaned or "report"


def render_comment(report: Report, options: CommentOptions) -> str:
    """The comment body, at most `options.limit` characters long."""
    droppable = [(part, label) for part, label in SHORTENING if _present(report, options, part)]
    trend = _trends(report.baseline)
    text = _render(report, options, trend, dropped=())
    for level in range(1, len(droppable) + 1):
        if len(text) <= options.limit:
            return text
        text = _render(report, options, trend, dropped=tuple(droppable[:level]))
    if len(text) <= options.limit:
        return text
    return _cut(report, options, trend, tuple(droppable))


# --- what a comment shows ----------------------------------------------------------------------


def _present(report: Report, options: CommentOptions, part: str) -> bool:
    """Whether dropping `part` would change anything (so the notice never names a no-op)."""
    comparison = report.baseline
    if part == "charts":
        return options.charts and bool(comparison and comparison.traces)
    if part == "sparklines":
        return bool(comparison and comparison.rows and comparison.traces)
    if part == "finding_details":
        return any(len(run.findings) > FINDINGS_PER_RUN for run in report.runs)
    if part == "passing_rows":
        return bool(comparison and any(r.status not in (FAIL, MISSING) for r in comparison.rows))
    if part == "findings":
        return any(run.findings for run in report.runs)
    if part == "good_runs":
        return any(run.verdict == "good" for run in report.runs)
    raise ValueError(part)


def _render(
    report: Report,
    options: CommentOptions,
    trend: Callable[[BaselineRow], str],
    dropped: Sequence[tuple[str, str]],
    cut: bool = False,
) -> str:
    gone = {part for part, _ in dropped}
    comparison = report.baseline
    rows = list(comparison.rows) if comparison else []
    shown_rows = (
        [r for r in rows if r.status in (FAIL, MISSING)] if "passing_rows" in gone else rows
    )
    runs = list(report.runs)
    shown_runs = [r for r in runs if r.verdict != "good"] if "good_runs" in gone else runs
    per_run = FINDINGS_PER_RUN if "finding_details" in gone else None
    return _visible_render(
        report=report,
        marker=MarkdownSafe(marker_line(options.marker)),
        roles=_roles(comparison),
        names={run.id: run.name for run in runs},
        reasons=report.gate.reasons[:REASONS_SHOWN],
        more_reasons=max(0, len(report.gate.reasons) - REASONS_SHOWN),
        counts={v: sum(1 for r in runs if r.verdict == v) for v in VERDICT_ICONS},
        verdict_icons=VERDICT_ICONS,
        comparison=comparison,
        baseline_names=_baseline_names(report),
        rows=shown_rows,
        hidden_rows=len(rows) - len(shown_rows),
        row_cells=row_cells,
        sparklines=comparison is not None and "sparklines" not in gone and bool(comparison.traces),
        trend=trend,
        runs=shown_runs,
        hidden_runs=len(runs) - len(shown_runs),
        show_findings="findings" not in gone and any(r.findings for r in runs),
        findings_of=lambda run: run.findings[:per_run] if per_run else run.findings,
        finding_count=sum(len(r.findings) for r in runs),
        charts=_charts(report) if options.charts and "charts" not in gone else [],
        notice=_notice(report, options, [label for _, label in dropped], cut),
        full_report=_link(options.full_report),
    )


def _visible_render(**variables: Any) -> str:
    """The comment with control and bidi characters from runs shown as escapes (safetext)."""
    return visible(_template().render(**variables))


@cache
def _template() -> jinja2.Template:
    """Compiled once per process: a comment may be rendered up to seven times."""
    return markdown_environment().get_template("comment.md.j2")


def _trends(comparison: BaselineComparison | None) -> Callable[[BaselineRow], str]:
    """Trend cells, each computed once however often the comment is re-rendered."""
    done: dict[tuple[str, str], str] = {}
    curves: dict[str, list[float | None]] = {}

    def trend(row: BaselineRow) -> str:
        if comparison is None:
            return ""
        key = (row.alias, row.run_id)
        if key not in done:
            if row.alias not in curves:
                curves[row.alias] = baseline_curve(comparison, row.alias)
            done[key] = MarkdownSafe(trend_cell(comparison, row, curves[row.alias]))
        return done[key]

    return trend


def _roles(comparison: BaselineComparison | None) -> dict[str, str]:
    if comparison is None:
        return {}
    roles = dict.fromkeys(comparison.candidate_ids, "candidate")
    roles.update(dict.fromkeys(comparison.baseline_ids, "baseline"))
    return roles


def _baseline_names(report: Report) -> str:
    if report.baseline is None:
        return ""
    names = {run.id: run.name for run in report.runs}
    return ", ".join(
        f"{escape_markdown(names.get(i, i))} (`{escape_markdown(i)}`)"
        for i in report.baseline.baseline_ids
    )


def _link(where: str | None) -> MarkdownSafe | None:
    if not where:
        return None
    if where.startswith(("http://", "https://")):
        return MarkdownSafe(f"<{where.replace('>', '%3E').replace(' ', '%20')}>")
    return MarkdownSafe(f"`{where.replace('`', '')}`")


def _notice(report: Report, options: CommentOptions, dropped: list[str], cut: bool) -> str | None:
    if not dropped and not cut:
        return None
    what = ", ".join(dropped)
    if cut:
        what = f"{what}, and the end of the comment" if what else "the end of the comment"
    where = f" The full report is at {_link(options.full_report)}." if options.full_report else ""
    return (
        f"✂️ Shortened to fit the {options.limit:,}-character limit of a comment: left out "
        f"{what}.{where}"
    )


# --- table cells, sparklines and charts --------------------------------------------------------


def baseline_curve(comparison: BaselineComparison, alias: str) -> list[float | None]:
    """The baseline runs' curves of an alias averaged point by point."""
    traces = [t for t in comparison.traces if t.alias == alias and t.role == "baseline"]
    if not traces:
        return []
    curve: list[float | None] = []
    for i in range(len(traces[0].values)):
        known = [v for t in traces if (v := t.values[i]) is not None]
        curve.append(sum(known) / len(known) if known else None)
    return curve


def trend_cell(
    comparison: BaselineComparison, row: BaselineRow, base: list[float | None] | None = None
) -> str:
    """`baseline → candidate` sparklines of a row's alias on one scale."""
    if base is None:
        base = baseline_curve(comparison, row.alias)
    trace = comparison.trace(row.alias, row.run_id)
    cand = list(trace.values) if trace else []
    known = [v for v in (*base, *cand) if v is not None]
    if not known:
        return ""
    lo, hi = min(known), max(known)
    left = spark_bars(base, lo, hi) if base else "–"
    right = spark_bars(cand, lo, hi) if cand else "–"
    return f"{left} → {right}"


@dataclass(frozen=True)
class Chart:
    alias: str
    mermaid: str
    legend: tuple[str, ...]


def _charts(report: Report) -> list[Chart]:
    """One Mermaid xychart-beta per compared alias: the baseline mean and the candidates."""
    comparison = report.baseline
    if comparison is None:
        return []
    names = {run.id: run.name for run in report.runs}
    charts = []
    for alias in comparison.aliases:
        candidates = [t for t in comparison.traces if t.alias == alias and t.role == "candidate"][
            : CHART_LINES - 1
        ]
        base = baseline_curve(comparison, alias)
        lines: list[tuple[str, list[float | None]]] = []
        if base:
            count = len(comparison.baseline_ids)
            lines.append((f"baseline (mean of {count} runs)" if count > 1 else "baseline", base))
        lines += [
            (escape_markdown(names.get(t.run_id, t.run_id)), list(t.values)) for t in candidates
        ]
        lines = [
            (label, _filled(values))
            for label, values in lines
            if any(v is not None for v in values)
        ]
        if not lines:
            continue
        first = next(t for t in comparison.traces if t.alias == alias)
        charts.append(
            Chart(alias, _mermaid(alias, first, lines), tuple(label for label, _ in lines))
        )
    return charts


def _filled(values: list[float | None]) -> list[float | None]:
    """Mermaid lines cannot have gaps: carry the last value forward (and the first back)."""
    out: list[float | None] = []
    last: float | None = next((v for v in values if v is not None), None)
    for value in values:
        last = value if value is not None else last
        out.append(last)
    return out


def _mermaid(alias: str, grid: Trace, lines: list[tuple[str, list[float | None]]]) -> str:
    xs = ", ".join(mermaid_number(x) for x in grid.steps)
    body = [
        "xychart-beta",
        f'    title "{alias}"',
        f'    x-axis "{grid.x_key}" [{xs}]',
        f'    y-axis "{alias}"',
    ]
    for _, values in lines:
        body.append(
            "    line [" + ", ".join(mermaid_number(v) for v in values if v is not None) + "]"
        )
    return "\n".join(body)


# --- the last resort ---------------------------------------------------------------------------


def _cut(
    report: Report,
    options: CommentOptions,
    trend: Callable[[BaselineRow], str],
    dropped: tuple[tuple[str, str], ...],
) -> str:
    """The shortest form, cut at a line boundary with its blocks closed and the footer kept."""
    text = _render(report, options, trend, dropped, cut=True)
    footer_at = text.rfind("\n---\n")
    body, footer = (text[:footer_at], text[footer_at:]) if footer_at >= 0 else (text, "")
    closing_room = 64
    room = options.limit - len(footer) - closing_room
    body = body[: max(room, 0)]
    body = body[: body.rfind("\n") + 1] if "\n" in body else ""
    if body.count("```") % 2:
        body += "```\n"
    body += "</details>\n" * max(0, body.count("<details") - body.count("</details>"))
    return (body + "\n…" + footer)[: options.limit]
