"""The compact answer (`--summary`): what a build found, in a bounded number of characters.

An agent (or a person at a terminal) asks one question and reads the answer from stdout; the
full report is for reading later. The summary says which run each selection picked and why
(metric, reduction, runner-up), which tables were written (path, rows, columns), each run's
verdict with its worst findings, the notes that change the answer (a metric no run logged and
the closest keys that exist, runs left out) and the gate. It never grows with the project: when
the lines do not fit the bound, each section keeps its first items and says "… and N more".
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reportgen.render.json import jsonable
from reportgen.render.text import format_number
from reportgen.report import Finding, Report, RunReport, SelectionReport, TableReport

DEFAULT_LIMIT = 2000  # characters of text; --summary --json allows twice that
LINE_WIDTH = 200  # one item never takes more than this
FINDINGS_PER_RUN = 1
MESSAGE_WIDTH = 140  # a finding's message; report.md has the whole of it
SEVERITY_ORDER = {"ugly": 0, "bad": 1}
_PICK_WORDS = {"min": "lowest", "max": "highest"}


@dataclass
class _Caps:
    """How many items of each section are shown; shrunk until the text fits its bound.

    The least telling section gives way first: the problems list (the verdict counts stay),
    then the notes, then the tables, and the selections last.
    """

    selections: int = 12
    tables: int = 12
    runs: int = 12
    notes: int = 6

    def fit(self, counts: dict[str, int]) -> None:
        for name, count in counts.items():
            setattr(self, name, max(1, min(getattr(self, name), count)))

    def shrink(self) -> bool:
        """Halve the first section (in giving-way order) that still shows more than one item;
        False when every section is down to one."""
        for name in ("runs", "notes", "tables", "selections"):
            value = getattr(self, name)
            if value > 1:
                setattr(self, name, value // 2)
                return True
        return False


def _clip(text: str, width: int = LINE_WIDTH) -> str:
    """One line of at most `width` characters; its indentation is kept."""
    indent = text[: len(text) - len(text.lstrip(" "))]
    text = indent + " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _run_label(name: str | None, run_id: str | None) -> str:
    return f"{name} ({run_id})" if name and name != run_id else str(run_id)


def _worst_findings(run: RunReport) -> list[Finding]:
    return sorted(run.findings, key=lambda f: SEVERITY_ORDER.get(f.severity, 2))


def _step(value: float | None) -> str:
    return "" if value is None else f" @{format_number(value)}"


def selection_reason(selection: SelectionReport) -> str:
    """'lowest mean length (response_length/mean) = 143.2 of 6 runs; runner-up b (id) 150.1'."""
    how = f"{_PICK_WORDS.get(selection.pick, selection.pick)} {selection.reduce} {selection.by}"
    if selection.run_id is None:
        return f"no run logged {selection.by}, so nothing was picked by {how}"
    key = f" ({selection.key})" if selection.key and selection.key != selection.by else ""
    ranked = [r for r in selection.ranking if r.value is not None]
    text = f"{how}{key} = {format_number(selection.value)} of {len(ranked)} runs"
    if len(ranked) > 1:
        second = ranked[1]
        text += f"; runner-up {_run_label(second.run_name, second.run_id)} "
        text += format_number(second.value)
    return text


def answer_notes(report: Report) -> list[str]:
    """The notes that change the answer: missing metrics (one line per alias), left-out runs,
    read problems and sampling notes of the written tables; not chart housekeeping."""
    notes = [n for n in report.notes if not n.startswith("charts show")]
    missing: dict[str, list[tuple[RunReport, str]]] = {}
    for run in report.runs:
        for metric in run.metrics:
            if metric.missing_note:
                missing.setdefault(metric.alias, []).append((run, metric.missing_note))
    by_runs: dict[tuple[str, ...], list[str]] = {}
    for alias, where in missing.items():
        if len(where) == 1 or (len(where) == len(report.runs) and len(report.runs) > 1):
            run, note = where[0]
            if len(where) > 1:
                note = note.replace(f"is missing in run {run.name}", "is missing in every run")
            notes.append(note)
        else:
            by_runs.setdefault(tuple(r.name for r, _ in where), []).append(alias)
    for names, aliases in by_runs.items():
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        which = ", ".join(f"'{a}'" for a in aliases)
        noun = "metric" if len(aliases) == 1 else "metrics"
        notes.append(f"{noun} {which} missing in {len(names)} runs ({shown})")
    for run in report.runs:
        notes += [f"run {run.name}: {n}" for n in run.notes if not n.startswith("metric '")]
    for table in report.tables:
        notes += [f"{table.file}: {n}" for n in table.notes]
    return list(dict.fromkeys(notes))


def _table_path(table: TableReport, out_dir: Path | None) -> str:
    return str(out_dir / table.file) if out_dir is not None else table.file


def summary_data(
    report: Report,
    out_dir: Path | None = None,
    written: Sequence[Path] | None = None,
    caps: _Caps | None = None,
) -> dict[str, Any]:
    """The summary as plain data: what `--summary --json` prints, and what the text says.

    `written` are the files the build wrote: a table is listed with its path only if its CSV
    was written (with no `written`, every table is listed as if it were).
    """
    caps = caps or _Caps()
    written_names = None if written is None else {Path(p).name for p in written}
    tables = [t for t in report.tables if written_names is None or t.file in written_names]
    judged = sorted(
        (r for r in report.runs if r.verdict != "good"),
        key=lambda r: (SEVERITY_ORDER.get(r.verdict, 2), r.name),
    )
    verdicts: dict[str, int] = {}
    for run in report.runs:
        verdicts[run.verdict] = verdicts.get(run.verdict, 0) + 1
    notes = answer_notes(report)
    data: dict[str, Any] = {
        "title": report.title,
        "source": report.source,
        "runs": {"chosen": len(report.runs), "found": report.runs_found},
        "incomplete": report.incomplete,
        "selections": [_selection_data(s) for s in report.selections[: caps.selections]],
        "tables": [
            {
                "path": _table_path(t, out_dir),
                "rows": t.rows,
                "columns": ["step", *t.columns],
                "run_id": t.run_id,
                "run_name": t.run_name,
                "selection": t.selection,
            }
            for t in tables[: caps.tables]
        ],
        "verdicts": verdicts,
        "problems": [
            {
                "run_id": run.id,
                "run_name": run.name,
                "verdict": run.verdict,
                **(
                    {"unjudged_reason": _clip(run.health.unjudged or "", MESSAGE_WIDTH)}
                    if run.verdict == "unjudged"
                    else {}
                ),
                "findings": [
                    {
                        "check": f.check,
                        "severity": f.severity,
                        "step": f.step,
                        "message": _clip(f.message, MESSAGE_WIDTH),
                    }
                    for f in _worst_findings(run)[:FINDINGS_PER_RUN]
                ],
                "more_findings": max(0, len(run.findings) - FINDINGS_PER_RUN),
            }
            for run in judged[: caps.runs]
        ],
        "notes": [_clip(n) for n in notes[: caps.notes]],
        "gate": {
            "fail_on": report.gate.fail_on,
            "failed": report.gate.failed,
            "reasons": list(report.gate.reasons),
        },
    }
    data["omitted"] = {
        name: count
        for name, count in (
            ("selections", len(report.selections) - caps.selections),
            ("tables", len(tables) - caps.tables),
            ("problems", len(judged) - caps.runs),
            ("notes", len(notes) - caps.notes),
        )
        if count > 0
    }
    return data


def _selection_data(s: SelectionReport) -> dict[str, Any]:
    ranked = [r for r in s.ranking if r.value is not None]
    second = ranked[1] if len(ranked) > 1 else None
    return {
        "name": s.name,
        "run_id": s.run_id,
        "run_name": s.run_name,
        "by": s.by,
        "key": s.key,
        "reduce": s.reduce,
        "pick": s.pick,
        "value": s.value,
        "ranked": len(ranked),
        "runner_up": None
        if second is None
        else {"run_id": second.run_id, "run_name": second.run_name, "value": second.value},
        "reason": selection_reason(s),
    }


def _text(report: Report, data: dict[str, Any]) -> str:
    omitted = data["omitted"]
    source = data["source"]
    where = source.get("path") or "/".join(
        str(source.get(k)) for k in ("entity", "project") if source.get(k)
    )
    lines = [
        f"{report.title}: {data['runs']['chosen']} of {data['runs']['found']} runs from {where}"
        + (" (incomplete: some runs could not be read)" if data["incomplete"] else "")
    ]

    def more(section: str) -> None:
        if omitted.get(section):
            lines.append(f"  … and {omitted[section]} more")

    if data["selections"]:
        lines.append("selected:")
        for s in data["selections"]:
            picked = _run_label(s["run_name"], s["run_id"]) if s["run_id"] else "nothing"
            lines.append(_clip(f"  {s['name']}: {picked} — {s['reason']}"))
        more("selections")
    if data["tables"]:
        lines.append("wrote:")
        for t in data["tables"]:
            columns = ", ".join(t["columns"])
            lines.append(_clip(f"  {t['path']}: {t['rows']} rows; {columns}"))
        more("tables")
    counts = ", ".join(f"{n} {v}" for v, n in sorted(data["verdicts"].items()))
    lines.append(f"verdicts: {counts or 'no runs'}")
    for problem in data["problems"]:
        label = _run_label(problem["run_name"], problem["run_id"])
        reason = f": {problem['unjudged_reason']}" if "unjudged_reason" in problem else ""
        lines.append(f"  {problem['verdict']} {label}{reason}")
        for f in problem["findings"]:
            lines.append(_clip(f"    {f['check']}{_step(f['step'])}: {f['message']}"))
        if problem["more_findings"]:
            more_findings = problem["more_findings"]
            lines.append(
                f"    … and {more_findings} more finding{'s' if more_findings > 1 else ''}"
            )
    more("problems")
    if data["notes"]:
        lines.append("notes:")
        lines += [f"  {n}" for n in data["notes"]]
        more("notes")
    gate = data["gate"]
    if gate["failed"]:
        lines.append("gate: FAILED")
        lines += [_clip(f"  {r}") for r in gate["reasons"][:3]]
        if len(gate["reasons"]) > 3:
            lines.append(f"  … and {len(gate['reasons']) - 3} more")
    elif gate["fail_on"] != "never":
        lines.append(f"gate: passed (fail_on: {gate['fail_on']})")
    return "\n".join(lines) + "\n"


def _fitted_caps(report: Report) -> _Caps:
    caps = _Caps()
    caps.fit(
        {
            "selections": len(report.selections),
            "tables": len(report.tables),
            "runs": sum(1 for r in report.runs if r.verdict != "good"),
            "notes": len(answer_notes(report)),
        }
    )
    return caps


def render_summary(
    report: Report,
    out_dir: Path | None = None,
    written: Sequence[Path] | None = None,
    limit: int = DEFAULT_LIMIT,
) -> str:
    """The summary as text, at most `limit` characters (sections shrink to fit)."""
    caps = _fitted_caps(report)
    while True:
        text = _text(report, summary_data(report, out_dir, written, caps))
        if len(text) <= limit or not caps.shrink():
            return text if len(text) <= limit else text[: limit - 2] + "…\n"


def render_summary_json(
    report: Report,
    out_dir: Path | None = None,
    written: Sequence[Path] | None = None,
    limit: int = 2 * DEFAULT_LIMIT,
) -> str:
    """The summary as one line of JSON, shrunk the same way to at most about `limit` chars."""
    caps = _fitted_caps(report)
    while True:
        data = summary_data(report, out_dir, written, caps)
        text = dumps(data)
        if len(text) <= limit or not caps.shrink():
            return text + "\n"


def dumps(data: Any) -> str:
    """Compact JSON (NaN and infinities as strings, as in report.json)."""
    return json.dumps(jsonable(data), ensure_ascii=False, allow_nan=False, separators=(",", ":"))
