"""What the spec-less commands print on stdout: `health`, `show` and `compare`.

Plain text meant to be read in a terminal or by an agent: sections in capitals (`[CONFIG]`,
`GOOD`), one item a line, numbers at 4 significant digits (the CSV files keep exact values).
Renderers read a Report (and, for `show`, the key rows `reportgen keys` prints) and nothing else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from reportgen.analysis.discover import KeyRow
from reportgen.render.json import jsonable
from reportgen.render.summary import SEVERITY_ORDER, _clip, _run_label, _step
from reportgen.render.text import format_number
from reportgen.report import Report, RunReport
from reportgen.runs import flatten


def _value(value: Any) -> str:
    if isinstance(value, float):
        return format_number(value)
    if isinstance(value, str):
        return value
    return json.dumps(jsonable(value), ensure_ascii=False)


# --- health ------------------------------------------------------------------------------------


def render_health(report: Report) -> str:
    """Good / Bad / Ugly, one line per finding (ugly first), then the next experiments."""
    where = report.source.get("path") or report.source.get("project") or ""
    lines = [f"health of {len(report.runs)} runs from {where}"]
    if not report.runs:
        return lines[0] + ": no run matches\n"
    good = report.good_runs
    lines.append(f"GOOD ({len(good)}): " + (", ".join(_run_label(r.name, r.id) for r in good)))
    for verdict in ("bad", "ugly"):
        runs = [r for r in report.runs if r.verdict == verdict]
        lines.append(f"{verdict.upper()} ({len(runs)}):")
        for run in runs:
            lines += _run_findings(run)
    unjudged = [r for r in report.runs if r.verdict not in ("good", "bad", "ugly")]
    for run in unjudged:
        lines.append(f"{run.verdict.upper()}: {_run_label(run.name, run.id)}")
    if report.next_experiments:
        lines.append("NEXT EXPERIMENTS:")
        for i, experiment in enumerate(report.next_experiments, 1):
            lines.append(_clip(f"  {i}. {experiment.action} ({experiment.reason})", 300))
    if report.gate.failed:
        lines.append("gate: FAILED")
        lines += [f"  {reason}" for reason in report.gate.reasons]
    return "\n".join(lines) + "\n"


def _run_findings(run: RunReport) -> list[str]:
    lines = [f"  {_run_label(run.name, run.id)} [{run.state}]"]
    ordered = sorted(
        (f for f in run.findings if f.severity in SEVERITY_ORDER),
        key=lambda f: SEVERITY_ORDER[f.severity],
    )
    for finding in ordered:
        lines.append(
            _clip(f"    {finding.severity} {finding.check}{_step(finding.step)}: {finding.message}")
        )
    return lines


# --- show --------------------------------------------------------------------------------------


def render_show(
    report: Report,
    key_rows: Sequence[KeyRow],
    aliases: Mapping[str, str],
    *,
    select: str | None = None,
    history: Sequence[str] = (),
    max_rows: int = 20,
) -> str:
    """[RUN], [CONFIG], [SUMMARY], [SCHEMA], then [STATS] and [HISTORY] when asked for.

    `aliases` maps each shown key to its alias (the name --where and --eval use); `history`
    the aliases whose sampled values [HISTORY] prints.
    """
    import re

    pattern = re.compile(select) if select else None

    def shown(key: str) -> bool:
        return pattern is None or pattern.search(key) is not None

    run = report.runs[0]
    steps = "no steps" if run.first_step is None else f"steps {run.first_step}–{run.last_step}"
    exit_code = "" if run.exit_code is None else f", exit code {run.exit_code}"
    lines = [
        "[RUN]",
        f"  {_run_label(run.name, run.id)}: {run.state}{exit_code}; {steps} ({run.rows} rows); "
        f"verdict {run.verdict}",
    ]
    if run.tags:
        lines.append(f"  tags: {', '.join(run.tags)}")
    if run.url:
        lines.append(f"  url: {run.url}")
    lines.append("[CONFIG]")
    lines += [f"  {k}: {_value(v)}" for k, v in sorted(flatten(run.config).items()) if shown(k)]
    lines.append("[SUMMARY]")
    summary = flatten(run.summary)
    lines += [
        f"  {k}: {_value(v)}"
        for k, v in sorted(summary.items())
        if not k.startswith("_") and shown(k) and not isinstance(v, dict)
    ]
    lines.append("[SCHEMA] key (alias): type, count, steps first–last, min–max, non-finite")
    for row in key_rows:
        alias = aliases.get(row.key)
        name = f"{row.key} ({alias})" if alias and alias != row.key else row.key
        span = "" if row.first_step is None else f", steps {row.first_step}–{row.last_step}"
        values = "" if row.min is None else f", {format_number(row.min)}–{format_number(row.max)}"
        bad = f", {row.non_finite} non-finite" if row.non_finite else ""
        lines.append(f"  {name}: {row.type}, {row.count}{span}{values}{bad}")
    keyed = set(aliases.values())
    for metric in run.metrics:
        if metric.alias not in keyed and metric.stats is not None:  # an --eval expression
            s = metric.stats
            lines.append(
                f"  {metric.alias} (eval): float, {s.points}, "
                f"{format_number(s.min)}–{format_number(s.max)}"
            )
    if report.analysis.stats is not None:
        table = report.analysis.stats
        lines.append("[STATS] " + ", ".join(table.stats))
        for stats_row in table.rows:
            cells = ", ".join(format_number(stats_row.values.get(s)) for s in table.stats)
            lines.append(f"  {stats_row.alias}: {cells}")
    if history and report.tables:
        lines += _history(report, history, max_rows)
    return "\n".join(lines) + "\n"


def _history(report: Report, columns: Sequence[str], max_rows: int) -> list[str]:
    table = report.tables[0]
    names = [c for c in columns if c in table.values]
    lines = ["[HISTORY] step, " + ", ".join(names)]
    for i, step in enumerate(table.steps[:max_rows]):
        cells = [
            format_number(float(table.values[c][i])) if table.present[c][i] else "" for c in names
        ]
        lines.append("  " + ", ".join([format_number(int(step)), *cells]))
    if table.rows > max_rows:
        lines.append(f"  … and {table.rows - max_rows} more rows (--rows N shows more)")
    if not table.rows:
        lines.append("  no rows")
    return lines


# --- compare -----------------------------------------------------------------------------------


def render_compare(report: Report, max_config: int = 30, max_metrics: int = 40) -> str:
    """Config keys that differ, then each metric against the first run (better/worse)."""
    comparison = report.analysis.comparison
    if comparison is None or not comparison.complete:
        notes = comparison.notes if comparison is not None else ()
        return "\n".join(["nothing to compare: fewer than two of the runs were found", *notes])
    runs = comparison.runs
    names = [_run_label(c.run_name, c.run_id) for c in runs]
    lines = [f"compare {names[0]} (reference) with " + ", ".join(names[1:])]
    lines.append(
        f"[CONFIG] {len(comparison.config)} of {comparison.config_keys} keys differ: "
        + " | ".join(c.run_id for c in runs)
    )
    for diff in comparison.config[:max_config]:
        cells = [
            _value(v) if present else "(unset)"
            for v, present in zip(diff.values, diff.present, strict=False)
        ]
        lines.append(_clip(f"  {diff.key}: " + " | ".join(cells)))
    if len(comparison.config) > max_config:
        lines.append(f"  … and {len(comparison.config) - max_config} more")
    lines.append(f"[METRICS] {comparison.reduce}; change against {runs[0].run_id}")
    for metric in comparison.metrics[:max_metrics]:
        key = f" ({metric.reference_key})" if metric.reference_key else ""
        cells = [format_number(metric.reference)]
        for c in metric.changes:
            if c.delta is None:
                cells.append(f"{format_number(c.value)} n/a")
                continue
            percent = "" if c.percent is None else f", {c.percent:+.1f}%"
            cells.append(f"{format_number(c.value)} ({c.delta:+.4g}{percent}, {c.mark})")
        lines.append(_clip(f"  {metric.alias}{key}, {metric.goal}: " + " | ".join(cells), 300))
    if len(comparison.metrics) > max_metrics:
        hidden = len(comparison.metrics) - max_metrics
        lines.append(f"  … and {hidden} more (--metrics K,K chooses which)")
    lines += [f"note: {n}" for n in comparison.notes]
    return "\n".join(lines) + "\n"
