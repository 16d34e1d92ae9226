"""report.json: the machine-readable contract other tools rely on (keys documented in README).

JSON has no NaN or infinity: such numbers are written as the strings "NaN", "Infinity" and
"-Infinity", so a logged NaN is never turned into a silent null.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, replace
from json.encoder import encode_basestring
from typing import Any

from reportgen.analysis.baseline import BaselineComparison
from reportgen.jsonvalues import jsonable
from reportgen.render.analysis_json import analysis_dict
from reportgen.report import MetricReport, Report, RunReport, TableReport


def _metric(metric: MetricReport) -> dict[str, Any]:
    stats = asdict(metric.stats) if metric.stats else None
    return {
        "alias": metric.alias,
        "key": metric.key,
        "x": metric.x_key,
        "goal": metric.goal,
        "stats": stats,
        "missing": metric.missing_note,
    }


def _run(run: RunReport) -> dict[str, Any]:
    return {
        "id": run.id,
        "name": run.logged_name or run.name,
        "label": run.name,
        "entity": run.entity,
        "project": run.project,
        "state": run.state,
        "exit_code": run.exit_code,
        "url": run.url,
        "tags": list(run.tags),
        "group": run.group,
        "job_type": run.job_type,
        "created_at": run.created_at,
        "config": run.encoded.get("config", run.config),
        "summary": run.encoded.get("summary", run.summary),
        "steps": {"first": run.first_step, "last": run.last_step, "rows": run.rows},
        "verdict": run.verdict,
        "unjudged_reason": run.health.unjudged if run.verdict == "unjudged" else None,
        "findings": [
            {
                "check": f.check,
                "severity": f.severity,
                "metric": f.metric,
                "key": f.key,
                "step": f.step,
                "value": f.value,
                "message": f.message,
                "likely_cause": f.likely_cause,
                "next_step": f.next_step,
            }
            for f in run.findings
        ],
        "health": {
            "preset": run.health.preset,
            "checks": list(run.health.checks),
            "healthy": list(run.health.healthy),
        },
        "metrics": [_metric(m) for m in run.metrics],
        "notes": list(run.notes),
    }


def _table(table: TableReport) -> dict[str, Any]:
    return {
        "name": table.file.removesuffix(".csv"),
        "path": table.file,
        "run_id": table.run_id,
        "selection": table.selection,
        "x": table.x,
        "columns": ["step", *table.columns],
        "keys": table.keys,
        "rows": table.rows,
        "notes": list(table.notes),
    }


def _baseline(comparison: BaselineComparison) -> dict[str, Any]:
    return {
        "baseline_runs": list(comparison.baseline_ids),
        "candidate_runs": list(comparison.candidate_ids),
        "metrics": list(comparison.aliases),
        "failed": comparison.failed,
        "reasons": list(comparison.reasons),
        "rows": [
            {
                "metric": row.alias,
                "key": row.key,
                "goal": row.goal,
                "reduce": row.reduce,
                "run_id": row.run_id,
                "baseline": row.baseline,
                "candidate": row.candidate,
                "change": row.change,
                "percent": row.percent,
                "tolerance": (
                    {"abs": row.tolerance.abs, "rel": row.tolerance.rel} if row.tolerance else None
                ),
                "allowed": row.allowed,
                "status": row.status,
            }
            for row in comparison.rows
        ],
    }


def report_dict(report: Report) -> dict[str, Any]:
    """The report as the documented report.json structure."""
    return jsonable(
        {
            "reportgen_version": report.reportgen_version,
            "title": report.title,
            "generated_at": report.generated_at,
            "spec": {"path": report.spec_path, "sha256": report.spec_sha256},
            "source": report.source,
            "runs_found": report.runs_found,
            "sampling": report.sampling,
            "runs": [_run(r) for r in report.runs],
            "selections": {s.name: s.run_id for s in report.selections},
            "selection_details": [
                {
                    "name": s.name,
                    "by": s.by,
                    "key": s.key,
                    "reduce": s.reduce,
                    "pick": s.pick,
                    "run_id": s.run_id,
                    "value": s.value,
                    "ranking": [{"run_id": r.run_id, "value": r.value} for r in s.ranking],
                    "min_steps": s.min_steps,
                    "too_short": [r.run_id for r in s.too_short],
                }
                for s in report.selections
            ],
            "tables": [_table(t) for t in report.tables],
            "next_experiments": [
                {"action": e.action, "reason": e.reason, "checks": e.checks, "runs": e.runs}
                for e in report.next_experiments
            ],
            "notes": list(report.notes),
            "incomplete": report.incomplete,
            "missing": [
                {"where": m.where, "message": m.message, "accepted": m.accepted}
                for m in report.shortfalls
            ],
            "baseline": _baseline(report.baseline) if report.baseline else None,
            "gate": {
                "fail_on": report.gate.fail_on,
                "failed": report.gate.failed,
                "reasons": list(report.gate.reasons),
            },
            **analysis_dict(report.analysis),
        }
    )


def render_json(report: Report) -> str:
    return dumps_indented(report_dict(report)) + "\n"


@dataclass(frozen=True)
class Encoded:
    """A value already encoded by `dumps_indented` at the place `newline` (a newline and that
    place's indent): its text is used as is there, and anywhere else the value is encoded."""

    value: Any
    text: str
    newline: str


# Where a run's config and summary sit in report.json: {"runs": [{"config": ...}]}.
RUN_PART_NEWLINE = "\n" + " " * 6
ENCODED_PARTS = ("config", "summary")


def with_encoded_parts(run: RunReport) -> RunReport:
    """The run's report with its config and summary encoded as report.json writes them: done
    by the process that digested the run, since they are most of a report.json of many runs
    (the same text, see `dumps_indented`). A part that is not plain JSON is left out."""
    encoded = {}
    for part in ENCODED_PARTS:
        value = jsonable(getattr(run, part))
        out: list[str] = []
        try:
            _encode(value, RUN_PART_NEWLINE, out)
        except _NotPlain:
            continue
        encoded[part] = Encoded(value, "".join(out), RUN_PART_NEWLINE)
    return replace(run, encoded=encoded)


def dumps_indented(value: Any) -> str:
    """`json.dumps(value, indent=2, ensure_ascii=False, allow_nan=False)`, the same text, but
    about twice as fast on plain data: with an indent, the standard library encodes in Python
    one token at a time, and a report of hundreds of runs is megabytes of JSON. Anything but
    plain JSON data (a non-finite number, a key that is not text, another type) is left to the
    standard library, errors included. `Encoded` values are their text where they were encoded
    for, else their value."""
    out: list[str] = []
    try:
        _encode(value, "\n", out)
    except _NotPlain:
        return json.dumps(
            value, indent=2, ensure_ascii=False, allow_nan=False, default=_encoded_value
        )
    return "".join(out)


def _encoded_value(value: Any) -> Any:
    if isinstance(value, Encoded):
        return value.value
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


class _NotPlain(Exception):
    pass


def _encode(value: Any, newline: str, out: list[str]) -> None:
    """Append `value` as indented JSON; `newline` is a newline and the current indent."""
    if isinstance(value, str):
        out.append(encode_basestring(value))
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        inner = newline + "  "
        opening = "{"
        for key, item in value.items():
            if not isinstance(key, str):
                raise _NotPlain
            # Text, whole and finite numbers (most values) are written here, without a call.
            kind = type(item)
            if kind is str:
                out.append(f"{opening}{inner}{encode_basestring(key)}: {encode_basestring(item)}")
            elif kind is int:
                out.append(f"{opening}{inner}{encode_basestring(key)}: {int.__repr__(item)}")
            elif kind is float and math.isfinite(item):
                out.append(f"{opening}{inner}{encode_basestring(key)}: {float.__repr__(item)}")
            else:
                out.append(opening + inner + encode_basestring(key) + ": ")
                _encode(item, inner, out)
            opening = ","
        out.append(newline + "}")
    elif isinstance(value, (list, tuple)):
        if not value:
            out.append("[]")
            return
        inner = newline + "  "
        opening = "["
        for item in value:
            kind = type(item)
            if kind is str:
                out.append(f"{opening}{inner}{encode_basestring(item)}")
            elif kind is int:
                out.append(f"{opening}{inner}{int.__repr__(item)}")
            elif kind is float and math.isfinite(item):
                out.append(f"{opening}{inner}{float.__repr__(item)}")
            else:
                out.append(opening + inner)
                _encode(item, inner, out)
            opening = ","
        out.append(newline + "]")
    elif value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        out.append(int.__repr__(value))
    elif isinstance(value, float) and math.isfinite(value):
        out.append(float.__repr__(value))
    elif isinstance(value, Encoded):
        if value.newline == newline:
            out.append(value.text)
        else:
            _encode(value.value, newline, out)
    else:
        raise _NotPlain
