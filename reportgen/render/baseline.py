"""Cells of the baseline comparison table, shared by report.md and the PR comment."""

from __future__ import annotations

from reportgen.analysis.baseline import BaselineRow
from reportgen.render.text import format_number


def row_cells(row: BaselineRow) -> dict[str, str]:
    """The text of a comparison row's cells (numbers and marks, never run-derived text)."""
    change = row.change
    percent = row.percent
    if change is None:
        change_text, percent_text = "–", "–"
    else:
        if row.goal not in ("minimize", "maximize") and change != 0:
            arrow = " (no direction)"
        else:
            arrow = "" if row.better is None else (" better" if row.better else " worse")
        change_text = f"{_signed(change)}{arrow}"
        percent_text = "–" if percent is None else f"{percent:+.2f}%"
    allowed = ""
    if row.allowed is not None:
        allowed = f" (tol {format_number(row.allowed)})"
    status = {
        "pass": f"✅ pass{allowed}",
        "fail": f"❌ fail{allowed}",
        "missing": "⚠️ missing",
        "info": "–",
    }[row.status]
    return {
        "baseline": format_number(row.baseline),
        "candidate": format_number(row.candidate),
        "change": change_text,
        "percent": percent_text,
        "status": status,
    }


def _signed(value: float) -> str:
    text = format_number(value)
    return text if text.startswith("-") or value == 0 else f"+{text}"
