"""reportgen's jobs as compact JSON answers: what the MCP server's tools return.

Each function takes plain values (what a tool call carries), runs the same code as the CLI
verb of the same job — the spec-less commands build a spec and run it through `build` — and
returns plain data, small enough for an agent to read whole. Bad input raises the same
ReportgenError, with the same one-line message, as the CLI prints.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from reportgen.analysis.discover import (
    chosen_runs,
    key_rows,
    pick_run,
    run_rows,
    runs_spec_from_options,
)
from reportgen.errors import UsageError
from reportgen.quickspec import ExportRequest, RunChoice, spec_yaml
from reportgen.render.summary import SEVERITY_ORDER, summary_data
from reportgen.report import Report

MAX_ROWS_INLINE = 200


def list_runs(
    source: str,
    states: Sequence[str] = (),
    tags: Sequence[str] = (),
    name: str | None = None,
    latest: int | None = None,
) -> dict[str, Any]:
    """Runs, newest first: id, name, state, steps (first, last, rows), tags."""
    from reportgen.commands.quick import open_quick_source

    opened = open_quick_source(source)
    _check_states(states)
    runs = chosen_runs(opened, [runs_spec_from_options(states, tags, name, (), latest)])
    return {
        "runs": [
            {
                "id": r.id,
                "name": r.name,
                "state": r.state,
                "steps": [r.first_step, r.last_step, r.rows],
                "tags": list(r.tags),
            }
            for r in run_rows(opened, runs)
        ],
        "columns": {"steps": ["first", "last", "rows"]},
    }


def _check_states(states: Sequence[str]) -> None:
    from reportgen.runs import STATES

    for state in states:
        if state not in STATES:
            raise UsageError(f"state '{state}': expected one of {', '.join(STATES)}")


def list_keys(source: str, run: str | None = None, match: str | None = None) -> dict[str, Any]:
    """Metric keys: [key, type, runs, count, first step, last step, min, max, non-finite]."""
    import re

    from reportgen.commands.quick import open_quick_source

    opened = open_quick_source(source)
    runs = chosen_runs(opened, [])
    if run is not None:
        runs = [pick_run(runs, run)]
    try:
        pattern = re.compile(match) if match else None
    except re.error as exc:
        raise UsageError(f"match '{match}': not a valid regular expression: {exc}") from None
    rows = [r for r in key_rows(opened, runs) if pattern is None or pattern.search(r.key)]
    return {
        "columns": ["key", "type", "runs", "count", "first", "last", "min", "max", "non_finite"],
        "keys": [
            [r.key, r.type, r.runs, r.count, r.first_step, r.last_step, r.min, r.max, r.non_finite]
            for r in rows
        ],
    }


def export_table(
    request: ExportRequest, rows_inline: int = 0, include_spec: bool = False
) -> dict[str, Any]:
    """Sampled CSV tables through `build`: the summary, the spec it ran, and (if asked) rows."""
    from reportgen.commands.quick import run_document
    from reportgen.quickspec import export_document

    if rows_inline < 0 or rows_inline > MAX_ROWS_INLINE:
        raise UsageError(f"rows_inline {rows_inline}: give 0 to {MAX_ROWS_INLINE}")
    doc = export_document(request)
    result = run_document(doc, "export")
    answer = _summary(result.report, result.out_dir, result.files)
    if rows_inline:
        answer["rows"] = {
            table.file: [
                [int(step)]
                + [
                    float(table.values[c][i]) if table.present[c][i] else None
                    for c in table.columns
                ]
                for i, step in enumerate(table.steps[:rows_inline])
            ]
            for table in result.report.tables
        }
    if include_spec:
        answer["spec"] = spec_yaml(doc)
    return answer


def _summary(report: Report, out_dir: Path | None, files: Sequence[Path] | None) -> dict[str, Any]:
    """The --summary --json data, slimmed for reading: a selection is its pick and its reason
    (which names the metric, reduction and runner-up); the gate only when it can fail."""
    data = summary_data(report, out_dir, files)
    for key in ("title", "source"):
        data.pop(key, None)
    if not data["incomplete"]:
        del data["incomplete"]
    data["selections"] = [
        {k: s[k] for k in ("name", "run_id", "run_name", "value", "reason")}
        for s in data["selections"]
    ]
    for table in data["tables"]:
        del table["run_name"]
    for problem in data["problems"]:
        if not problem["more_findings"]:
            del problem["more_findings"]
    if data["gate"]["fail_on"] == "never":
        del data["gate"]
    return {k: v for k, v in data.items() if v not in ({}, [], None)}


def health(source: str, runs: RunChoice) -> dict[str, Any]:
    """Every run's verdict with all its findings (ugly first), and the next experiments."""
    from reportgen.commands import quick

    report = quick.health(source, runs).report
    return {
        "runs": [
            {
                "id": run.id,
                "name": run.name,
                "state": run.state,
                "verdict": run.verdict,
                **({"unjudged_reason": run.health.unjudged} if run.verdict == "unjudged" else {}),
                "findings": [
                    [f.severity, f.check, f.step, f.message]
                    for f in sorted(run.findings, key=lambda f: SEVERITY_ORDER.get(f.severity, 2))
                ],
            }
            for run in report.runs
        ],
        "columns": {"findings": ["severity", "check", "step", "message"]},
        "next_experiments": [e.action for e in report.next_experiments],
    }


def compare_runs(source: str, runs: Sequence[str], metrics: Sequence[str] = ()) -> dict[str, Any]:
    """Config keys that differ, and each metric against the first run."""
    from reportgen.commands import quick

    _, result = quick.compare(source, runs, metrics)
    assert result is not None
    comparison = result.report.analysis.comparison
    if comparison is None or not comparison.complete:
        raise UsageError("compare: fewer than two of the runs could be read")
    return {
        "runs": [[c.run_id, c.run_name] for c in comparison.runs],
        "config": {d.key: list(d.values) for d in comparison.config},
        "metrics": {
            m.alias: {
                "key": m.reference_key,
                "goal": m.goal,
                "reference": m.reference,
                "others": [[c.run_id, c.value, c.delta, c.percent, c.mark] for c in m.changes],
            }
            for m in comparison.metrics
        },
        "columns": {"others": ["run_id", "value", "change", "percent", "mark"]},
    }


def show_run(source: str, run: str, match: str | None = None) -> dict[str, Any]:
    """One run: config, summary and schema (key: type, count, first, last, min, max)."""
    from reportgen.commands import quick
    from reportgen.runs import flatten

    answer = quick.show(source, run, select=match)
    assert answer.result is not None
    report_run = answer.result.report.runs[0]
    summary = {
        k: v
        for k, v in flatten(report_run.summary).items()
        if not k.startswith("_") and not isinstance(v, dict)
    }
    return {
        "run": {
            "id": report_run.id,
            "name": report_run.name,
            "state": report_run.state,
            "verdict": report_run.verdict,
            "steps": [report_run.first_step, report_run.last_step, report_run.rows],
        },
        "config": flatten(report_run.config),
        "summary": summary,
        "schema": {
            r.key: [r.type, r.count, r.first_step, r.last_step, r.min, r.max]
            for r in answer.key_rows
        },
        "columns": {"schema": ["type", "count", "first", "last", "min", "max"]},
    }


def build_spec(spec: str, out_dir: str | None = None) -> dict[str, Any]:
    """`reportgen build SPEC --summary`: a spec file's path, or spec YAML text itself."""
    from reportgen.build import build
    from reportgen.spec import load_spec, parse_spec

    looks_like_yaml = "\n" in spec or spec.lstrip().startswith(("version", "{"))
    loaded = parse_spec(spec, Path("agent-spec.yaml")) if looks_like_yaml else load_spec(spec)
    result = build(loaded, out_dir=Path(out_dir) if out_dir else None)
    answer = _summary(result.report, result.out_dir, result.files)
    answer["exit_code"] = result.exit_code
    answer["files"] = [str(p) for p in result.files if p.suffix in (".md", ".json", ".pdf")]
    return answer
