"""Charts as Mermaid `xychart-beta` text, for Markdown that is shown where no image can be hosted
(a PR comment, a wiki page): GitHub and GitLab draw these blocks themselves.

xychart-beta has one shared x axis, no legend, no gaps and no log scale. So each run is put on
a common grid of steps (the last finite value at or before each step), lines take the run's
colour from the same palette as the PNG and PDF charts, and the caption (escaped Markdown,
written by the template) names the runs and their colours. Nothing from a run goes inside the
block but numbers and a sanitised axis name.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from reportgen.render.plots import RunStyle
from reportgen.report import Report

MAX_LINES = 10
_AXIS_UNSAFE = re.compile(r"[^A-Za-z0-9_./ -]+")


@dataclass(frozen=True)
class MermaidChart:
    alias: str
    text: str
    runs: tuple[tuple[str, str], ...]  # (run name, colour label), in line order
    left_out: int  # runs that logged the alias but were not drawn (past MAX_LINES)
    log: bool


def mermaid_number(value: float) -> str:
    """4 significant digits, never an exponent: xychart's grammar reads only plain decimals."""
    return str(
        np.format_float_positional(value, precision=4, unique=False, fractional=False, trim="-")
    )


def _asof(steps: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    finite = np.isfinite(values)
    xs, ys = steps[finite].astype(float), values[finite]
    idx = np.clip(np.searchsorted(xs, grid, side="right") - 1, 0, len(xs) - 1)
    return ys[idx]


def mermaid_chart(
    report: Report, alias: str, styles: dict[str, RunStyle], points: int = 24
) -> MermaidChart | None:
    """One alias as an xychart-beta block, or None when no run has a finite value of it."""
    log = alias in report.plots.log_y
    lines = []
    for run in report.runs:
        curve = run.curve(alias)
        if curve is None:
            continue
        usable = np.isfinite(curve.values) & (curve.values > 0 if log else True)
        if usable.any():
            lines.append((run, curve.steps[usable], curve.values[usable], curve.x_key))
    if not lines:
        return None
    drawn, left_out = lines[:MAX_LINES], max(0, len(lines) - MAX_LINES)
    lo = min(float(steps[0]) for _, steps, _, _ in drawn)
    hi = max(float(steps[-1]) for _, steps, _, _ in drawn)
    grid = np.linspace(lo, hi, points) if hi > lo else np.array([lo, lo + 1])
    whole = all(np.all(np.mod(steps, 1) == 0) for _, steps, _, _ in drawn)
    if whole:
        grid = np.round(grid)
    palette = ", ".join(styles[run.id].colour for run, *_ in drawn)
    x_name = _AXIS_UNSAFE.sub("", ", ".join(sorted({x for *_, x in drawn}))) or "step"
    body = [
        '%%{init: {"themeVariables": {"xyChart": {"plotColorPalette": "' + palette + '"}}}}%%',
        "xychart-beta",
        f'    title "{alias}"',
        f'    x-axis "{x_name}" {mermaid_number(grid[0])} --> {mermaid_number(grid[-1])}',
        f'    y-axis "{f"log10 {alias}" if log else alias}"',
    ]
    for _run, steps, values, _x in drawn:
        ys = _asof(steps, np.log10(values) if log else values, grid)
        body.append(f"    line [{', '.join(mermaid_number(float(y)) for y in ys)}]")
    return MermaidChart(
        alias=alias,
        text="\n".join(body),
        runs=tuple((run.name, styles[run.id].label) for run, *_ in drawn),
        left_out=left_out,
        log=log,
    )
