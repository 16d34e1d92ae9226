"""Text from runs made harmless for terminals, Markdown viewers and review tools.

Run names, tags, config values and console lines are written by whoever launched the run. Raw,
ESC starts terminal control sequences (retitle the window, hide or rewrite lines), BEL rings,
and the Unicode bidirectional controls (U+202E RIGHT-TO-LEFT OVERRIDE and friends, the "Trojan
Source" characters) make text display in an order other than the one it is stored in, so a
reviewer reads something else than what is there. A lone surrogate cannot even be encoded.

`visible` writes each such character as a visible escape (`\\x1b`, `\\u202e`), so the text
still says what was there, and is applied to everything reportgen shows: report.md, the HTML
behind the PDF, the PR comment and every line on stderr.
"""

from __future__ import annotations

import re

# C0 controls but tab and newline, DEL and C1 controls; bidi embeddings, overrides, isolates and
# marks; line/paragraph separators (some viewers break lines there); surrogates.
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069"
    "\ud800-\udfff]"
)
_UNSAFE_IN_LINE = re.compile(_UNSAFE.pattern[:-1] + "\t\n]")


def _re2_class(pattern: str) -> str:
    """A character class of `pattern` in RE2's syntax (Arrow's regular expressions), each
    character as `\\x{…}`; surrogates are left out, as Arrow's UTF-8 text cannot hold them."""
    parts = []
    for char in pattern[1:-1]:
        if char == "-":
            parts.append(char)
        elif not 0xD800 <= ord(char) <= 0xDFFF:
            parts.append(f"\\x{{{ord(char):x}}}")
    return "[" + "".join(parts).replace("--", "").rstrip("-") + "]"


# `visible`'s characters for Arrow's regular expressions (vectorised CSV writing).
UNSAFE_RE2 = _re2_class(_UNSAFE.pattern)


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"


def visible(text: str, *, one_line: bool = False) -> str:
    """`text` with every control, bidi and surrogate character shown as an escape.

    Tabs and newlines are kept, unless `one_line` (a line on stderr, a table cell).
    """
    return (_UNSAFE_IN_LINE if one_line else _UNSAFE).sub(_escape, text)


def has_unsafe(text: str) -> bool:
    return _UNSAFE.search(text) is not None
