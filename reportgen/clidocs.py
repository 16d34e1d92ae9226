"""docs/cli.md: every command's --help, generated from the parser so that it cannot drift.

python -m reportgen.clidocs > docs/cli.md      (tests/test_cli_docs.py checks it is current)
"""

from __future__ import annotations

import argparse
import os


def _subparsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found: list[tuple[str, argparse.ArgumentParser]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found.append((name, child))
    return found


def cli_reference() -> str:
    """The Markdown reference: the top-level help, then each command's (and sub-command's)."""
    from reportgen.cli import make_parser

    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # the same line width wherever it is generated
    try:
        return _reference(make_parser())
    finally:
        if saved is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = saved


def _reference(parser: argparse.ArgumentParser) -> str:
    parts = [
        "# Command-line reference\n",
        "Generated from the parser by `python -m reportgen.clidocs > docs/cli.md`; do not edit.\n",
        f"## reportgen\n\n```\n{parser.format_help()}```\n",
    ]
    for name, child in _subparsers(parser):
        parts.append(f"## reportgen {name}\n\n```\n{child.format_help()}```\n")
        for sub_name, grandchild in _subparsers(child):
            parts.append(f"### reportgen {name} {sub_name}\n\n```\n{grandchild.format_help()}```\n")
    return "\n".join(parts)


if __name__ == "__main__":
    print(cli_reference(), end="")
