"""Formatting shared by the text renderers: numbers, and escaping of text that comes from runs.

Run names, tags and config values are written by whoever launched the run: in Markdown they
could open a table cell, start a code span, ping @everyone or inject HTML. `escape_markdown`
makes such text print literally.
"""

from __future__ import annotations

import math
import re

# Characters that start Markdown markup anywhere in a line (inline code, emphasis, links,
# table cells, strikethrough). HTML and mentions are neutralised separately, with entities.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def escape_markdown(value: object) -> str:
    """Text shown literally in Markdown (tables included): no markup, HTML, or mentions."""
    text = " ".join(str(value).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = _MARKDOWN_SPECIAL.sub(r"\\\1", text)
    return text.replace("@", "&#64;")


def format_number(value: float | int | None, digits: int = 4) -> str:
    """A compact human reading of a number: 4 significant digits, NaN and inf spelled out."""
    if value is None:
        return "–"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, int):
        return str(value)
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value == int(value) and abs(value) < 1e9:
        return str(int(value))
    return f"{value:.{digits}g}"


def exact_number(value: float) -> str:
    """A number exactly as logged (shortest round-trip form), for CSV cells."""
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(value)
