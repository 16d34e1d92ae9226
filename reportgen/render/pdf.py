"""report.pdf: the HTML report typeset by WeasyPrint, with the CSV tables attached inside it.

Fonts come from matplotlib's package (DejaVu Sans and Mono), so the PDF looks the same on any
machine with no system fonts installed. For byte-identical output, every date in the file is
the report's own time: the PDF's creation and modification dates (set in the template's
<meta> tags), the attachments' dates, and the font subsets' timestamps (fontTools reads
SOURCE_DATE_EPOCH, set for the duration of the typesetting).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reportgen.errors import UsageError
from reportgen.render.csv import render_csv
from reportgen.render.html import draw_figures, render_html
from reportgen.render.templates import builtin_template_dir
from reportgen.report import Report

if TYPE_CHECKING:
    from reportgen.render.plots import ChartImages

_FONT_FILES = {
    ("DejaVu Sans", "normal", "normal"): "DejaVuSans.ttf",
    ("DejaVu Sans", "bold", "normal"): "DejaVuSans-Bold.ttf",
    ("DejaVu Sans", "normal", "italic"): "DejaVuSans-Oblique.ttf",
    ("DejaVu Sans", "bold", "italic"): "DejaVuSans-BoldOblique.ttf",
    ("DejaVu Sans Mono", "normal", "normal"): "DejaVuSansMono.ttf",
    ("DejaVu Sans Mono", "bold", "normal"): "DejaVuSansMono-Bold.ttf",
}


def font_faces() -> str:
    """@font-face rules for the DejaVu fonts that ship inside matplotlib's wheel."""
    import matplotlib

    folder = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
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


def render_pdf(
    report: Report, template_dirs: Sequence[Path] = (), images: ChartImages | None = None
) -> bytes:
    """The report as PDF bytes: cover, verdicts, charts, a section per run, CSVs attached.

    `images` from draw_charts(svg=True) when the Markdown's PNGs were drawn in the same pass.
    """
    weasyprint = _weasyprint()
    from weasyprint.text.fonts import FontConfiguration

    html = render_html(report, template_dirs, draw_figures(report, images))
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
    document = weasyprint.HTML(string=html, base_url=str(_base_folder(template_dirs)))
    with _source_date_epoch(moment):
        pdf: bytes = document.write_pdf(
            stylesheets=stylesheets, font_config=fonts, attachments=attachments
        )
    return pdf
