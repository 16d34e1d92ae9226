"""report.pdf: the HTML report typeset by WeasyPrint, with the CSV tables attached inside it.

Charts are matplotlib's own PDF drawings, placed as Form XObjects where WeasyPrint laid out an
empty placeholder of the same size. They stay vector graphics with real text, and WeasyPrint
never parses them: handing it SVG instead (its pure-Python SVG renderer lays out every letter
of every tick label on its own) cost more than everything else in a 40-run report together.

Fonts come from matplotlib's package (DejaVu Sans and Mono), so the PDF looks the same on any
machine with no system fonts installed. For byte-identical output, every date in the file is
the report's own time: the PDF's creation and modification dates (set in the template's
<meta> tags), the attachments' dates, and the font subsets' timestamps (fontTools reads
SOURCE_DATE_EPOCH, set for the duration of the typesetting).
"""

from __future__ import annotations

import base64
import importlib.util
import io
import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from reportgen.collector import paused
from reportgen.errors import UsageError
from reportgen.render.csv import render_csv
from reportgen.render.html import Figures, render_html
from reportgen.render.plots import PendingCharts, by_kind, start_charts
from reportgen.render.templates import builtin_template_dir
from reportgen.report import Report

PX_TO_PT = 0.75  # WeasyPrint lays out in CSS pixels (1/96 in); PDF points are 1/72 in

_FONT_FILES = {
    ("DejaVu Sans", "normal", "normal"): "DejaVuSans.ttf",
    ("DejaVu Sans", "bold", "normal"): "DejaVuSans-Bold.ttf",
    ("DejaVu Sans", "normal", "italic"): "DejaVuSans-Oblique.ttf",
    ("DejaVu Sans", "bold", "italic"): "DejaVuSans-BoldOblique.ttf",
    ("DejaVu Sans Mono", "normal", "normal"): "DejaVuSansMono.ttf",
    ("DejaVu Sans Mono", "bold", "normal"): "DejaVuSansMono-Bold.ttf",
}


def bundled_fonts_folder() -> Path:
    """Where matplotlib's wheel keeps its TrueType fonts (matplotlib.get_data_path()'s fonts/ttf).

    Found without importing matplotlib: the layout runs in this process while workers draw the
    charts, and importing matplotlib here would only delay it.
    """
    found = importlib.util.find_spec("matplotlib")
    if found is None or found.origin is None:
        raise UsageError("formats: pdf needs matplotlib, whose package ships the PDF's fonts")
    return Path(found.origin).parent / "mpl-data" / "fonts" / "ttf"


def font_faces() -> str:
    """@font-face rules for the DejaVu fonts that ship inside matplotlib's wheel."""
    folder = bundled_fonts_folder()
    rules = []
    for (family, weight, style), name in _FONT_FILES.items():
        path = folder / name
        if path.is_file():
            rules.append(
                f'@font-face {{ font-family: "{family}"; font-weight: {weight}; '
                f"font-style: {style}; src: url({path.as_uri()}); }}"
            )
    return "\n".join(rules)


@contextmanager
def _source_date_epoch(moment: datetime) -> Iterator[None]:
    """SOURCE_DATE_EPOCH = the report's time while fontTools stamps the font subsets."""
    before = os.environ.get("SOURCE_DATE_EPOCH")
    os.environ["SOURCE_DATE_EPOCH"] = str(int(moment.timestamp()))
    try:
        yield
    finally:
        if before is None:
            os.environ.pop("SOURCE_DATE_EPOCH", None)
        else:
            os.environ["SOURCE_DATE_EPOCH"] = before


def stylesheet_paths(template_dirs: Sequence[Path] = ()) -> list[Path]:
    """The built-in report.css, then the first user folder's report.css: a user's stylesheet
    holds only the rules it changes, and wins where both set something."""
    paths = [builtin_template_dir() / "report.css"]
    for folder in template_dirs:
        if (Path(folder) / "report.css").is_file():
            paths.append(Path(folder) / "report.css")
            break
    return paths


def _base_folder(template_dirs: Sequence[Path]) -> Path:
    """Where relative links in the HTML (a logo in a user's template) are looked up."""
    return Path(template_dirs[0]).resolve() if template_dirs else builtin_template_dir()


def _weasyprint() -> Any:
    try:
        import weasyprint
    except (ImportError, OSError) as exc:
        raise UsageError(
            "formats: pdf needs WeasyPrint and the Pango library it draws text with "
            f"(Debian: apt-get install libpango-1.0-0 libpangoft2-1.0-0): {exc}"
        ) from None
    return weasyprint


@dataclass(frozen=True)
class ChartPlacement:
    """Where one chart goes: page index, and its box in PDF points from the bottom left."""

    page: int
    chart: int
    x: float
    y: float
    width: float
    height: float


def placeholders(charts: PendingCharts) -> tuple[Figures, dict[str, int]]:
    """The HTML's chart URIs (empty SVGs of each chart's size, each one distinct), and which
    URI stands for which chart (its place among charts.jobs). Only the sizes are needed, so
    the document is laid out while the charts are still being drawn."""
    index: dict[str, int] = {}
    uris: list[str | None] = []
    for number, (job, (width_in, height_in)) in enumerate(
        zip(charts.jobs, charts.inches, strict=True)
    ):
        if "pdf" not in job.formats:
            uris.append(None)
            continue
        width, height = width_in * 72, height_in * 72
        svg = (
            f'<svg xmlns="http://www.w3.org/2000/svg" id="reportgen-chart-{number}" '
            f'width="{width:g}pt" height="{height:g}pt" viewBox="0 0 {width:g} {height:g}"/>'
        )
        uri = "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode("ascii")
        index[uri] = number
        uris.append(uri)
    return Figures(*by_kind(charts.jobs, uris)), index


def chart_placements(document: Any, index: dict[str, int]) -> list[ChartPlacement]:
    """Where WeasyPrint laid out each placeholder <img>: its content box on its page."""
    from weasyprint.formatting_structure import boxes

    found = []
    for number, page in enumerate(document.pages):
        for box in page._page_box.descendants():
            if not isinstance(box, boxes.ReplacedBox) or box.element is None:
                continue
            chart = index.get(box.element.get("src") or "")
            if chart is None or not box.width or not box.height:
                continue
            found.append(
                ChartPlacement(
                    number,
                    chart,
                    box.content_box_x() * PX_TO_PT,
                    (page.height - box.content_box_y() - box.height) * PX_TO_PT,
                    box.width * PX_TO_PT,
                    box.height * PX_TO_PT,
                )
            )
    return found


def stamp_charts(
    pdf: bytes, charts: Sequence[bytes], placements: Sequence[ChartPlacement]
) -> bytes:
    """The PDF with each chart's page drawn as a Form XObject into its placeholder's box.

    WeasyPrint's page content leaves its coordinate change in force, so it is wrapped in q/Q
    before the charts are drawn after it. Everything else (outline, attachments, metadata, the
    file identifier) is copied as it is, so the output stays byte-for-byte reproducible.
    """
    if not placements:
        return pdf
    import pypdf
    from pypdf.generic import (
        ArrayObject,
        DecodedStreamObject,
        DictionaryObject,
        FloatObject,
        NameObject,
    )

    writer = pypdf.PdfWriter(clone_from=pypdf.PdfReader(io.BytesIO(pdf)))
    forms: dict[int, Any] = {}

    def stream(data: bytes) -> Any:
        content = DecodedStreamObject()
        content.set_data(data)
        return writer._add_object(content)  # pypdf has no public name for this

    for placement in placements:
        if placement.chart not in forms:
            page = pypdf.PdfReader(io.BytesIO(charts[placement.chart])).pages[0]
            form = page.raw_get("/Contents").clone(writer).get_object()
            box = page.mediabox
            form[NameObject("/Type")] = NameObject("/XObject")
            form[NameObject("/Subtype")] = NameObject("/Form")
            form[NameObject("/BBox")] = ArrayObject(
                [FloatObject(0), FloatObject(0), FloatObject(box.width), FloatObject(box.height)]
            )
            form[NameObject("/Resources")] = page["/Resources"].clone(writer)
            forms[placement.chart] = (form.indirect_reference, float(box.width), float(box.height))
        form_ref, width, height = forms[placement.chart]
        target = writer.pages[placement.page]
        resources: Any = target["/Resources"].get_object()
        if "/XObject" not in resources:
            resources[NameObject("/XObject")] = DictionaryObject()
        name = NameObject(f"/ReportgenChart{placement.chart}")
        resources["/XObject"].get_object()[name] = form_ref
        contents = target.raw_get("/Contents")
        if not isinstance(contents, ArrayObject):  # the first chart on this page
            contents = ArrayObject([stream(b"q"), contents, stream(b"Q")])
        draw = (
            f"q {placement.width / width:.6f} 0 0 {placement.height / height:.6f} "
            f"{placement.x:.4f} {placement.y:.4f} cm {name} Do Q"
        )
        target[NameObject("/Contents")] = ArrayObject([*contents, stream(draw.encode())])
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def _typeset(
    weasyprint: Any, report: Report, template_dirs: Sequence[Path], charts: PendingCharts
) -> tuple[bytes, list[ChartPlacement]]:
    """WeasyPrint's PDF of the report with empty boxes for the charts, and where those are."""
    from weasyprint.text.fonts import FontConfiguration

    figures, index = placeholders(charts)
    html = render_html(report, template_dirs, figures)
    fonts = FontConfiguration()
    stylesheets = [weasyprint.CSS(string=font_faces(), font_config=fonts)]
    for css_path in stylesheet_paths(template_dirs):
        stylesheets.append(weasyprint.CSS(filename=str(css_path), font_config=fonts))
    moment = report.generated_at.replace(microsecond=0)
    attachments = [
        weasyprint.Attachment(
            string=render_csv(table),
            name=table.file,
            description=f"{table.rows} rows of run {table.run_name} ({table.run_id})",
            created=moment,
            modified=moment,
        )
        for table in report.tables
    ]
    options: dict[str, Any] = {"stylesheets": stylesheets, "attachments": attachments}
    source = weasyprint.HTML(string=html, base_url=str(_base_folder(template_dirs)))
    with _source_date_epoch(moment):
        document = source.render(font_config=fonts, **options)
        placements = chart_placements(document, index)
        pdf: bytes = document.write_pdf(**options)
    return pdf, placements


def render_pdf(
    report: Report, template_dirs: Sequence[Path] = (), charts: PendingCharts | None = None
) -> bytes:
    """The report as PDF bytes: cover, verdicts, charts, a section per run, CSVs attached.

    `charts` from start_charts(pdf=True) when the Markdown's PNGs are drawn in the same pass
    (the caller closes it); by default the charts are started here. Either way WeasyPrint lays
    the document out while worker processes draw the charts.
    """
    weasyprint = _weasyprint()
    if charts is None:
        with start_charts(report, png=False, pdf=True, beside_layout=True) as own:
            return render_pdf(report, template_dirs, own)
    with paused():  # WeasyPrint's layout keeps its boxes: see collector.paused
        pdf, placements = _typeset(weasyprint, report, template_dirs, charts)
    drawn = [chart.get("pdf", b"") for chart in charts.drawn()]
    with paused():
        return stamp_charts(pdf, drawn, [p for p in placements if drawn[p.chart]])
