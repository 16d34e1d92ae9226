"""Plain-text tables for the terminal (`reportgen runs`, `reportgen keys`)."""

from __future__ import annotations

from collections.abc import Sequence


def printable(text: str) -> str:
    """Run-derived text without control characters (no escape sequences reach the terminal)."""
    return "".join(ch if ch.isprintable() else "?" for ch in " ".join(text.split()))


def text_table(
    headers: Sequence[str], rows: Sequence[Sequence[str]], right: Sequence[int] = ()
) -> str:
    """Columns padded to their widest cell, two spaces apart; `right` columns right-aligned."""
    cells = [[printable(c) for c in row] for row in [list(headers), *rows]]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = []
    for row in cells:
        parts = [
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(row)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines) + "\n"
