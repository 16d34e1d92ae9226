"""Finding and loading the Jinja2 templates, built-in or a spec's own folder.

The built-in templates live in the repository's top-level `templates/` folder and are packaged
into the wheel as `reportgen/templates`. A user's folder is searched first, so it may override
one template and inherit the rest.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

import jinja2

from reportgen.render.text import escape_markdown, format_number


def builtin_template_dir() -> Path:
    packaged = Path(__file__).resolve().parent.parent / "templates"
    if packaged.is_dir():
        return packaged
    return Path(__file__).resolve().parent.parent.parent / "templates"


class MarkdownSafe(str):
    """Markdown that a filter produced on purpose, so it is not escaped again."""


def _finalize(value: object) -> str:
    if isinstance(value, MarkdownSafe):
        return value
    if value is None:
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_number(value)
    return escape_markdown(value)


def code_span(value: object) -> MarkdownSafe:
    """Inline code that survives any backticks or pipes inside it (tables included)."""
    text = " ".join(str(value).split()).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall("`+", text)), default=0) + 1)
    pad = " " if text.startswith("`") or text.endswith("`") else ""
    return MarkdownSafe(f"{fence}{pad}{text}{pad}{fence}")


def markdown_environment(extra_dirs: Sequence[Path] = ()) -> jinja2.Environment:
    """Jinja2 for Markdown: every {{ value }} is escaped unless a filter marked it as Markdown."""
    loader = jinja2.FileSystemLoader([*map(str, extra_dirs), str(builtin_template_dir())])
    env = jinja2.Environment(
        loader=loader,
        autoescape=False,
        finalize=_finalize,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        undefined=jinja2.StrictUndefined,
    )
    env.filters["num"] = lambda v, digits=4: MarkdownSafe(format_number(v, digits))
    env.filters["code"] = code_span
    env.filters["md"] = lambda v: MarkdownSafe(escape_markdown(v))
    env.filters["markdown"] = MarkdownSafe
    return env
