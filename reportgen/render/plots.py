"""Charts of a Report with matplotlib: PNG files for Markdown, PDF (vector) for the PDF.

One chart per alias shows every chosen run that logged it; one chart per run shows its
aliases side by side. A run keeps one colour (and, past ten runs, a line style) in every
chart, in the PDF's verdict table and in Mermaid blocks. Findings that name a step are marked
on the curve. Output is deterministic: no dates or software versions in the files, a fixed
SVG id salt, and matplotlib's object API (no pyplot global state, no display needed).
Each chart is drawn once per build (draw_charts), in worker processes where there are cores.
"""

from __future__ import annotations

import io
import logging
import math
import warnings
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from reportgen import atomic
from reportgen.curves import thin
from reportgen.forking import can_fork, usable_cores
from reportgen.report import Curve, Finding, Report, RunReport
from reportgen.safetext import visible

T = TypeVar("T")

if TYPE_CHECKING:
    from reportgen.analysis.project import ParetoFront
    from reportgen.render.chart_cache import ChartCache

# The key (and file stem) of the Pareto chart among the alias charts: no alias has a hyphen.
PARETO_IMAGE = "pareto-front"
FRONT_LABELS = 12  # name at most this many front runs on the chart; the table lists them all

# Small multiples are a third of a page wide: this many points per curve is plenty there.
SMALL_POINTS = 150
PAGE_OF_CHARTS = 12

# Every chart is this wide (inches); its height follows from what it holds (chart_inches).
CHART_WIDTH = 7.0
PARETO_HEIGHT = 3.6

# matplotlib's "tab10": distinct, print-safe, and named so a caption can say "blue".
PALETTE = (
    ("#1f77b4", "blue"),
    ("#ff7f0e", "orange"),
    ("#2ca02c", "green"),
    ("#d62728", "red"),
    ("#9467bd", "purple"),
    ("#8c564b", "brown"),
    ("#e377c2", "pink"),
    ("#7f7f7f", "grey"),
    ("#bcbd22", "olive"),
    ("#17becf", "cyan"),
)
LINE_STYLES = (("-", "solid"), ("--", "dashed"), (":", "dotted"), ("-.", "dash-dot"))

_RC: dict[str, Any] = {
    "svg.hashsalt": "reportgen",
    "svg.fonttype": "none",
    "text.parse_math": False,
    "font.family": "DejaVu Sans",
    "font.size": 8,
    "axes.titlesize": 9,
    "axes.titleweight": "bold",
    "axes.labelsize": 8,
    "axes.edgecolor": "#888888",
    "axes.linewidth": 0.6,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "axes.grid.axis": "y",
    "grid.color": "#e4e4e4",
    "grid.linewidth": 0.6,
    "xtick.labelsize": 7,
    "ytick.labelsize": 7,
    "xtick.major.size": 2.5,
    "ytick.major.size": 0,
    "xtick.color": "#555555",
    "ytick.color": "#555555",
    "legend.fontsize": 7,
    "legend.frameon": False,
    "path.simplify": True,
}


@dataclass(frozen=True)
class RunStyle:
    colour: str
    colour_name: str
    line_style: str
    line_style_name: str

    @property
    def label(self) -> str:
        """How a caption names this style: "blue", or "blue, dashed" past ten runs."""
        if self.line_style == "-":
            return self.colour_name
        return f"{self.colour_name}, {self.line_style_name}"


def run_styles(report: Report) -> dict[str, RunStyle]:
    """Each run's colour by its place in the report, so every chart agrees."""
    styles = {}
    for i, run in enumerate(report.runs):
        colour, name = PALETTE[i % len(PALETTE)]
        dash, dash_name = LINE_STYLES[(i // len(PALETTE)) % len(LINE_STYLES)]
        styles[run.id] = RunStyle(colour, name, dash, dash_name)
    return styles


@contextmanager
def _style() -> Iterator[None]:
    import matplotlib

    settings: Any = _RC  # matplotlib types the keys as a closed set of literals
    # Values near the float limits overflow inside matplotlib's transforms, and run names may
    # hold characters no bundled font has: harmless for a chart, and never news on stderr.
    logger = logging.getLogger("matplotlib")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with (
            matplotlib.rc_context(settings),
            np.errstate(all="ignore"),
            warnings.catch_warnings(),
        ):
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)


def _figure(width: float, height: float) -> Any:
    """A figure laid out by hand: the constrained layout engine would double the drawing time."""
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height))


def plotted_aliases(report: Report) -> list[str]:
    """The aliases the spec asks to plot that at least one run logged, in the spec's order."""
    return [
        alias
        for alias in report.plots.metrics
        if any(run.curve(alias) is not None for run in report.runs)
    ]


def _short(text: str, limit: int = 42) -> str:
    text = visible(" ".join(text.split()), one_line=True)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _finite(values: np.ndarray) -> np.ndarray:
    """Non-finite values as NaN: matplotlib breaks the line there instead of drawing to inf."""
    return np.where(np.isfinite(values), values, np.nan)


def _use_log(report: Report, alias: str, curves: Sequence[Curve]) -> bool:
    if alias not in report.plots.log_y:
        return False
    return any(np.any(np.isfinite(c.values) & (c.values > 0)) for c in curves)


def _decade_label(value: float, _position: object = None) -> str:
    """Log-axis tick text without mathtext (which is off, so run names print as written)."""
    if not math.isfinite(value) or value <= 0:
        return ""
    exponent = math.log10(value)
    if -3 <= exponent <= 4:
        return f"{value:g}"
    mantissa = value / 10 ** math.floor(exponent)
    head = "" if abs(mantissa - 1) < 1e-9 else f"{mantissa:g}×"
    return f"{head}1e{math.floor(exponent)}"


def _scale_y(ax: Any, curves: Sequence[Curve], log: bool) -> None:
    """Log or linear y, with limits from the finite values. A run that diverged to 1e305 would
    otherwise push matplotlib's automatic margins past the largest float."""
    values = np.concatenate([c.values for c in curves]) if curves else np.array([])
    values = values[np.isfinite(values)]
    if log:
        from matplotlib.ticker import FuncFormatter

        ax.set_yscale("log", nonpositive="mask")
        ax.yaxis.set_major_formatter(FuncFormatter(_decade_label))
        values = values[values > 0]
        if len(values):
            from matplotlib.ticker import FixedLocator, NullLocator

            lo, hi = float(np.log10(values.min())), float(np.log10(values.max()))
            pad = max(0.05 * (hi - lo), 0.1)
            ax.set_ylim(10 ** max(lo - pad, -307.0), 10 ** min(hi + pad, 308.0))
            # matplotlib's LogLocator reaches decades past the top and overflows near 1e308.
            first, last = math.floor(lo - pad), min(math.ceil(hi + pad), 308)
            stride = max(1, math.ceil((last - first) / 6))
            ax.yaxis.set_major_locator(
                FixedLocator([10.0**e for e in range(first, last + 1, stride)])
            )
            if stride > 1:
                ax.yaxis.set_minor_locator(NullLocator())
        return
    if len(values) == 0:
        return
    lo, hi = float(values.min()), float(values.max())
    if hi > lo:
        pad = 0.05 * (hi / 2 - lo / 2) * 2 if math.isfinite(hi - lo) else 0.0
        top = hi + pad if math.isfinite(hi + pad) else hi
        bottom = lo - pad if math.isfinite(lo - pad) else lo
        ax.set_ylim(bottom, top)


def _set_title(ax: Any, text: str) -> None:
    """The chart's title, on the left, pinned to the top of the axes when nothing can collide.

    matplotlib places titles itself by default, measuring every tick label of the y axis at
    each draw to see whether its offset text ("1e3" above the axis) is in the way: a fifth of
    the time of drawing a chart. That text exists only when the formatter chooses an offset for
    these ticks; the ticks and the formatter are the ones the draw will use, so asking them now
    gives the same answer. With no offset text the title stays at the top, as matplotlib would
    put it, and pinning it there skips the measuring.
    """
    formatter = ax.yaxis.get_major_formatter()
    formatter.format_ticks(ax.yaxis.get_majorticklocs())
    if formatter.get_offset():
        ax.set_title(text, loc="left")
    else:
        ax.set_title(text, loc="left", y=1.0)


def _draw_curve(
    ax: Any, curve: Curve, style: RunStyle, label: str | None, max_points: int | None = None
) -> None:
    keep = thin(curve.steps, curve.values, max_points) if max_points else slice(None)
    steps, values = curve.steps[keep], _finite(curve.values[keep])
    line = {"color": style.colour, "linestyle": style.line_style}
    if curve.smoothed is not None:
        ax.plot(steps, values, lw=0.8, alpha=0.25, **line)
        ax.plot(steps, _finite(curve.smoothed[keep]), lw=1.4, label=label, **line)
    else:
        ax.plot(steps, values, lw=1.2, label=label, **line)


def _shade_non_finite(ax: Any, curve: Curve) -> None:
    """Keep the whole run on the x axis and tint where it logged NaN or inf, so a line that
    stops early reads as "went non-finite", not as "ended"."""
    if len(curve.steps) > 1:
        ax.set_xlim(float(curve.steps[0]), float(curve.steps[-1]))
    bad = ~np.isfinite(curve.values)
    if bad.any():
        start = float(curve.steps[bad][0])
        ax.axvspan(start, float(curve.steps[-1]), color="#d62728", alpha=0.08, lw=0)
        ax.annotate(
            "non-finite",
            (start, 1.0),
            xycoords=("data", "axes fraction"),
            xytext=(3, -9),
            textcoords="offset points",
            fontsize=6,
            color="#a3160e",
        )


def marker_point(curve: Curve, finding: Finding) -> tuple[float, float] | None:
    """Where a finding sits on its curve: the curve's last finite value at or before the
    finding's step. Not the finding's own `value`, which a check may set to something else
    (a median, a final value); and a NaN has no height, so its mark goes where the line stopped.
    """
    if finding.step is None:
        return None
    step = float(finding.step)
    finite = np.isfinite(curve.values)
    before = finite & (curve.steps <= step)
    if before.any():
        return step, float(curve.values[before][-1])
    if finite.any():
        return step, float(curve.values[finite][0])
    return None


def findings_on(run: RunReport, alias: str, key: str | None = None) -> list[Finding]:
    """The run's findings about this alias (by alias, or by the key it resolved to)."""
    return [
        f
        for f in run.findings
        if f.step is not None and (f.metric == alias or (key is not None and f.key == key))
    ]


def _mark(ax: Any, curve: Curve, findings: Sequence[Finding], style: RunStyle, text: bool) -> None:
    for finding in findings:
        point = marker_point(curve, finding)
        if point is None:
            ax.axvline(float(finding.step or 0), color=style.colour, lw=0.8, ls=":")
            continue
        ugly = finding.severity == "ugly"
        ax.plot(
            [point[0]],
            [point[1]],
            marker="X" if ugly else "o",
            markersize=8 if ugly else 6,
            markerfacecolor=style.colour,
            markeredgecolor="#111111",
            markeredgewidth=0.8,
            linestyle="none",
            zorder=5,
            gid=f"finding-{finding.check}",
        )
        if text:
            ax.annotate(
                finding.check,
                point,
                xytext=(4, 4),
                textcoords="offset points",
                fontsize=6.5,
                color="#111111",
            )


def _inches(fig: Any, left: float, bottom: float, right: float, top: float) -> list[float]:
    """An axes rectangle from margins in inches, as the figure fractions matplotlib wants."""
    width, height = fig.get_size_inches()
    return [left / width, bottom / height, 1 - (left + right) / width, 1 - (bottom + top) / height]


def _legend_inches(lines: int) -> float:
    """The band under an alias chart: the x label, then the legend, three runs a row."""
    return 0.5 + 0.17 * math.ceil(lines / 3)


def _small_multiples_shape(charts: int) -> tuple[int, int, float]:
    """Columns, rows and height in inches of a figure of this many small charts."""
    columns = min(3, charts)
    rows = math.ceil(charts / columns)
    return columns, rows, 1.7 * rows + 0.2


def chart_inches(report: Report, job: ChartJob) -> tuple[float, float]:
    """A chart's width and height in inches, known before it is drawn: the PDF's layout
    reserves the box while the chart is still being drawn. The figure functions take their
    sizes from the same helpers, and matplotlib's PDF page is the figure's size."""
    if job.kind == "alias":
        lines = sum(1 for run in report.runs if run.curve(job.key) is not None)
        return CHART_WIDTH, 2.25 + _legend_inches(lines)
    if job.kind == "pareto":
        return CHART_WIDTH, PARETO_HEIGHT
    curves = _run_curves(report, report.run(job.key))
    page = curves[job.page * PAGE_OF_CHARTS : (job.page + 1) * PAGE_OF_CHARTS]
    return CHART_WIDTH, _small_multiples_shape(len(page))[2]


def alias_figure(report: Report, alias: str, styles: dict[str, RunStyle]) -> Any | None:
    """One alias across every run that logged it; None when no run did."""
    drawn = [(run, run.curve(alias)) for run in report.runs]
    pairs = [(run, curve) for run, curve in drawn if curve is not None]
    if not pairs:
        return None
    below = _legend_inches(len(pairs))
    with _style():
        fig = _figure(CHART_WIDTH, 2.25 + below)
        ax = fig.add_axes(_inches(fig, 0.75, below, 0.15, 0.35))
        ax.locator_params(nbins=6)
        for run, curve in pairs:
            _draw_curve(ax, curve, styles[run.id], _short(run.name))
        for run, curve in pairs:
            metric = run.metric(alias)
            key = metric.key if metric else None
            _mark(ax, curve, findings_on(run, alias, key), styles[run.id], False)
        curves = [c for _, c in pairs]
        _scale_y(ax, curves, _use_log(report, alias, curves))
        keys = sorted({m.key for run, _ in pairs if (m := run.metric(alias)) and m.key})
        shown = ", ".join(keys[:3]) + ("…" if len(keys) > 3 else "")
        _set_title(ax, _short(f"{alias}  ({shown})" if keys else alias, 90))
        ax.set_xlabel(", ".join(sorted({c.x_key for _, c in pairs})), labelpad=2)
        fig.legend(
            loc="lower center",
            bbox_to_anchor=(0.5, 0.02),
            ncols=min(3, len(pairs)),
            handlelength=2.2,
            columnspacing=1.5,
        )
    return fig


def _run_curves(report: Report, run: RunReport) -> list[Curve]:
    return [c for alias in report.plots.metrics if (c := run.curve(alias)) is not None]


def run_figures(report: Report, run: RunReport, styles: dict[str, RunStyle]) -> list[Any]:
    """A run's plotted aliases as small multiples, at most a page (12 charts) per figure."""
    curves = _run_curves(report, run)
    return [
        _small_multiples(report, run, curves[i : i + PAGE_OF_CHARTS], styles[run.id])
        for i in range(0, len(curves), PAGE_OF_CHARTS)
    ]


def _small_multiples(report: Report, run: RunReport, curves: list[Curve], style: RunStyle) -> Any:
    """Charts of one run in its colour, three a row; findings marked and named."""
    columns, rows, height = _small_multiples_shape(len(curves))
    with _style():
        fig = _figure(CHART_WIDTH, height)
        # Only the cells that hold a chart get axes: an empty cell's axes would be hidden, but
        # creating them costs as much as a drawn chart's (a run with 7 aliases fills 7 of 9).
        grid = fig.add_gridspec(rows, columns)
        axes = [fig.add_subplot(grid[i // columns, i % columns]) for i in range(len(curves))]
        fig.subplots_adjust(
            left=0.5 / CHART_WIDTH,
            right=1 - 0.1 / CHART_WIDTH,
            bottom=0.3 / height,
            top=1 - 0.25 / height,
            wspace=0.28,
            hspace=0.5 / (1.7 - 0.5),
        )
        stepless = [f for f in run.findings if f.step is not None and f.metric is None]
        for ax, curve in zip(axes, curves, strict=True):
            ax.locator_params(nbins=4)
            _draw_curve(ax, curve, style, None, SMALL_POINTS)
            _shade_non_finite(ax, curve)
            metric = run.metric(curve.alias)
            key = metric.key if metric else None
            _mark(ax, curve, findings_on(run, curve.alias, key), style, True)
            for finding in stepless:
                ax.axvline(float(finding.step or 0), color="#555555", lw=0.8, ls=":")
            _scale_y(ax, [curve], _use_log(report, curve.alias, [curve]))
            _set_title(ax, curve.alias)
            ax.tick_params(labelsize=6.5)
    return fig


def pareto_figure(front: ParetoFront) -> Any | None:
    """Quality against cost: every run as a dot, the front as a line through its runs (named).

    Axes run in the metrics' own directions; a note in the corner says where "better" is.
    None when no run has both values.
    """
    if not front.points:
        return None
    on = [p for p in front.points if p.on_front]
    off = [p for p in front.points if not p.on_front]
    with _style():
        fig = _figure(CHART_WIDTH, PARETO_HEIGHT)
        ax = fig.add_axes(_inches(fig, 0.85, 0.55, 0.2, 0.35))
        ax.locator_params(nbins=6)
        if off:
            ax.scatter(
                [p.cost for p in off],
                [p.quality for p in off],
                s=14,
                color="#9a9a9a",
                label="dominated",
                zorder=2,
            )
        ax.plot(
            [p.cost for p in on],
            [p.quality for p in on],
            color=PALETTE[0][0],
            marker="o",
            markersize=5,
            linewidth=1.2,
            drawstyle="steps-post" if len(on) > 1 else "default",
            label="Pareto front",
            zorder=3,
        )
        costs = [p.cost for p in front.points]
        qualities = [p.quality for p in front.points]
        if min(costs) > 0 and max(costs) / min(costs) > 100:
            ax.set_xscale("log")
        if min(qualities) > 0 and max(qualities) / min(qualities) > 100:
            ax.set_yscale("log")
        ax.margins(x=0.08, y=0.12)
        # Runs at one point (ties) share one label; labels in the right third point left.
        names: dict[tuple[float, float], list[str]] = {}
        for p in on:
            names.setdefault((p.cost, p.quality), []).append(p.run_name)
        low, high = min(costs), max(costs)
        for (cost, quality), together in list(names.items())[:FRONT_LABELS]:
            label = _short(together[0], 28)
            if len(together) > 1:
                label += f" +{len(together) - 1}"
            right = high > low and (cost - low) / (high - low) > 0.66
            ax.annotate(
                label,
                (cost, quality),
                xytext=(-4 if right else 4, 4),
                textcoords="offset points",
                ha="right" if right else "left",
                fontsize=6.5,
            )
        better_x = "left" if front.cost_goal == "minimize" else "right"
        better_y = "down" if front.quality_goal == "minimize" else "up"
        ax.set_title(
            _short(f"{front.quality} against {front.cost} (better: {better_x}, {better_y})", 90),
            loc="left",
        )
        ax.set_xlabel(_short(front.cost, 60), labelpad=2)
        ax.set_ylabel(_short(front.quality, 40))
        ax.legend(loc="best", fontsize=7)
    return fig


_NO_METADATA: dict[str, dict[str, None]] = {
    "png": {"Software": None},
    "svg": {"Date": None, "Creator": None},
    "pdf": {"CreationDate": None, "Creator": None, "Producer": None},
}


def figure_bytes(fig: Any, fmt: str, dpi: int = 110) -> bytes:
    """The figure as PNG, SVG or PDF bytes, with nothing in them that changes between builds."""
    buffer = io.BytesIO()
    metadata = _NO_METADATA[fmt]
    with _style():
        fig.savefig(buffer, format=fmt, dpi=dpi, metadata=metadata, facecolor="white")
    return buffer.getvalue()


@dataclass(frozen=True)
class ChartJob:
    """One chart to draw and the formats it is wanted in ("png", "pdf", "svg").

    kind is "alias" (key: the alias), "run" (key: the run id, page: which figure of its small
    multiples) or "pareto".
    """

    kind: str
    key: str = ""
    page: int = 0
    formats: tuple[str, ...] = ("pdf",)


def by_kind(
    jobs: Sequence[ChartJob], values: Iterable[T | None]
) -> tuple[dict[str, T], dict[str, list[T]], T | None]:
    """Each chart's value (its bytes, its placeholder) placed by what the chart shows: per
    alias, per run (its figures in order), the Pareto front. A chart without one is left out."""
    aliases: dict[str, T] = {}
    runs: dict[str, list[T]] = {}
    pareto = None
    for job, value in zip(jobs, values, strict=True):
        if not value:
            continue
        if job.kind == "alias":
            aliases[job.key] = value
        elif job.kind == "pareto":
            pareto = value
        else:
            runs.setdefault(job.key, []).append(value)
    return aliases, runs, pareto


@dataclass(frozen=True)
class ChartImages:
    """Every chart of a report as image bytes by format ("png" for Markdown, "pdf" for the PDF):
    drawn once, in worker processes, for both. Charts with nothing to show are absent."""

    aliases: dict[str, dict[str, bytes]] = field(default_factory=dict)
    runs: dict[str, list[dict[str, bytes]]] = field(default_factory=dict)
    pareto: dict[str, bytes] | None = None


def chart_jobs(report: Report, png: bool, pdf: bool) -> list[ChartJob]:
    """The charts Markdown (png) and the PDF (pdf) show, in the PDF's order.

    An alias chart wanted by both is one job drawing both formats. Runs' small multiples are
    drawn only for runs that get a page in the PDF: nobody would see the others.
    """
    formats = tuple(fmt for fmt, wanted in (("png", png), ("pdf", pdf)) if wanted)
    if not formats:
        return []
    jobs = [ChartJob("alias", alias, formats=formats) for alias in plotted_aliases(report)]
    project = report.analysis.project
    if project and project.pareto and project.pareto.points:
        jobs.append(ChartJob("pareto", formats=formats))
    if pdf:
        for run in report.runs:
            if report.has_page(run):
                pages = math.ceil(len(_run_curves(report, run)) / PAGE_OF_CHARTS)
                jobs += [ChartJob("run", run.id, page) for page in range(pages)]
    return jobs


def draw_chart(report: Report, job: ChartJob) -> dict[str, bytes]:
    """One chart's bytes per format; empty when it has nothing to show."""
    styles = run_styles(report)
    fig: Any | None
    if job.kind == "alias":
        fig = alias_figure(report, job.key, styles)
    elif job.kind == "pareto":
        project = report.analysis.project
        fig = pareto_figure(project.pareto) if project and project.pareto else None
    else:
        run = report.run(job.key)
        curves = _run_curves(report, run)
        page = curves[job.page * PAGE_OF_CHARTS : (job.page + 1) * PAGE_OF_CHARTS]
        fig = _small_multiples(report, run, page, styles[run.id]) if page else None
    if fig is None:
        return {}
    return {fmt: figure_bytes(fig, fmt) for fmt in job.formats}


# The report a forked worker draws from: inherited from the parent, never pickled.
_WORKER_REPORT: Report | None = None


def _adopt(report: Report) -> None:
    global _WORKER_REPORT
    _WORKER_REPORT = report


def _draw_in_worker(job: ChartJob) -> dict[str, bytes]:
    assert _WORKER_REPORT is not None
    return draw_chart(_WORKER_REPORT, job)


def chart_processes(jobs: int, beside_layout: bool = False) -> int:
    """Worker processes for this many charts: one per usable core (at most 4), none for a few
    charts or on one core, and none where processes cannot be forked (forking copies the
    Report for free; starting Python afresh would cost each worker a second of imports).

    `beside_layout`: this process lays out the PDF while the workers draw, so it keeps a core
    to itself and a single worker is already worth starting.
    """
    if not can_fork():
        return 0
    if beside_layout:
        return min(4, usable_cores() - 1, jobs)
    workers = min(4, usable_cores(), jobs // 2)
    return workers if workers >= 2 else 0


class PendingCharts:
    """Charts being drawn: their sizes at once, their bytes when drawn (images()).

    The PDF's layout needs only each chart's size, so render_pdf lays the document out while
    worker processes draw, and waits for the bytes only to put them in. With no workers the
    charts are drawn here when first asked for. Use it as a context manager (or call close())
    so that on an error, --timeout or a signal the charts not started are dropped, not drawn.
    """

    def __init__(
        self,
        report: Report,
        jobs: list[ChartJob],
        processes: int,
        cache: ChartCache | None = None,
    ) -> None:
        self.jobs = jobs
        self.inches = [chart_inches(report, job) for job in jobs]
        self._report = report
        self._cache = cache
        self._keys: list[str] = []
        # Charts kept from an earlier build, by their place among the jobs; the rest are drawn.
        self._kept: dict[int, dict[str, bytes]] = {}
        if cache is not None and jobs:
            from reportgen.render.chart_cache import chart_keys

            self._keys = chart_keys(report, jobs)
            for number, (job, key) in enumerate(zip(jobs, self._keys, strict=True)):
                kept = cache.get(key, job.formats)
                if kept is not None:
                    self._kept[number] = kept
        self._todo = [number for number in range(len(jobs)) if number not in self._kept]
        self._drawn: list[dict[str, bytes]] | None = None
        self._pool: Any = None
        self._futures: dict[int, Any] = {}
        processes = min(processes, len(self._todo))
        if processes >= 1 and can_fork():
            import multiprocessing
            from concurrent.futures import ProcessPoolExecutor

            # A build's progress line runs in a thread; Python >= 3.12 warns on any fork with
            # threads. The workers only draw and return bytes: they never touch what that
            # thread may hold.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                self._pool = ProcessPoolExecutor(
                    processes,
                    mp_context=multiprocessing.get_context("fork"),
                    initializer=_adopt,
                    initargs=(report,),
                )
                self._futures = {
                    number: self._pool.submit(_draw_in_worker, jobs[number])
                    for number in self._todo
                }

    @property
    def kept(self) -> int:
        """How many charts came from the cache instead of being drawn."""
        return len(self._kept)

    def drawn(self) -> list[dict[str, bytes]]:
        """Each job's bytes by format, in the jobs' order.

        Charts no worker has started yet are drawn here, from the end of the list while the
        workers go on from its front: once the caller's own work (the PDF's layout) is done,
        this process is one more core drawing, instead of waiting for the workers.
        """
        if self._drawn is None:
            try:
                drawn: dict[int, dict[str, bytes]] = {}
                for number in reversed(self._todo):
                    future = self._futures.get(number)
                    if future is not None and not future.cancel():  # a worker has (had) it
                        break
                    drawn[number] = draw_chart(self._report, self.jobs[number])
                for number in self._todo:
                    if number not in drawn:
                        drawn[number] = self._futures[number].result()
            finally:
                self.close()
            if self._cache is not None:
                for number, chart in drawn.items():
                    self._cache.put(self._keys[number], chart)
            self._drawn = [
                self._kept[number] if number in self._kept else drawn[number]
                for number in range(len(self.jobs))
            ]
        return self._drawn

    def images(self) -> ChartImages:
        """The charts by what they show (waits for the workers)."""
        return ChartImages(*by_kind(self.jobs, self.drawn()))

    def close(self) -> None:
        """Stop the workers; charts not started yet are dropped."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> PendingCharts:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_charts(
    report: Report,
    png: bool = False,
    pdf: bool = True,
    processes: int | None = None,
    beside_layout: bool = False,
    cache: ChartCache | None = None,
) -> PendingCharts:
    """Start drawing every chart Markdown (png) and the PDF (pdf) show, each once.

    Charts are independent and matplotlib holds the GIL, so they are drawn in forked worker
    processes when there are cores to spare, in the PDF's order. The bytes are the same either
    way: each chart is drawn by the same code from the same Report. `processes`: how many
    workers (0: draw here); by default chart_processes decides (`beside_layout`: the caller
    lays out the PDF meanwhile). `cache`: charts drawn by an earlier build with the same
    content are taken from it, and the others are kept in it.
    """
    jobs = chart_jobs(report, png, pdf)
    if processes is None:
        processes = chart_processes(len(jobs), beside_layout)
    return PendingCharts(report, jobs, processes, cache)


def draw_charts(
    report: Report, png: bool = False, pdf: bool = True, processes: int | None = None
) -> ChartImages:
    """Every chart Markdown (png) and the PDF (pdf) show, each drawn once (see start_charts)."""
    with start_charts(report, png, pdf, processes) as pending:
        return pending.images()


def write_png_plots(
    report: Report, plots_dir: Path, images: ChartImages | None = None
) -> dict[str, Path]:
    """One PNG per plotted alias in plots_dir; stale PNGs of earlier builds are removed.

    `images` from draw_charts(png=True) when the PDF's charts are drawn in the same pass.
    """
    images = images if images is not None else draw_charts(report, png=True, pdf=False)
    written: dict[str, Path] = {}
    for alias, drawn in images.aliases.items():
        path = plots_dir / f"{alias}.png"
        atomic.write_bytes(path, drawn["png"])
        written[alias] = path
    if images.pareto is not None:
        path = plots_dir / f"{PARETO_IMAGE}.png"
        atomic.write_bytes(path, images.pareto["png"])
        written[PARETO_IMAGE] = path
    if plots_dir.is_dir():
        for old in plots_dir.glob("*.png"):
            if old not in written.values():
                old.unlink()
    return written
