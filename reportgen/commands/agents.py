"""`reportgen skill` and `reportgen mcp`: reportgen for coding agents.

`skill` hands out SKILL.md (the Agent Skills format: front matter that says when to use it,
then the commands, what they print, exit codes and real examples); `mcp` serves the same jobs
as tools over the Model Context Protocol on stdio.
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from reportgen.errors import EXIT_OK, UsageError

if TYPE_CHECKING:
    from pathlib import Path

SKILL_NAME = "reportgen"


def skill_path() -> Path:
    from pathlib import Path

    """SKILL.md: packaged beside the code in a wheel, at skills/reportgen/ in a source tree."""
    package = Path(__file__).resolve().parent.parent
    packaged = package / "SKILL.md"
    if packaged.is_file():
        return packaged
    return package.parent / "skills" / SKILL_NAME / "SKILL.md"


def skill_text() -> str:
    return skill_path().read_text(encoding="utf-8")


def cmd_skill(args: argparse.Namespace) -> int:
    from pathlib import Path

    text = skill_text()
    if args.dir is None:
        print(text, end="")
        return EXIT_OK
    target = Path(args.dir) / SKILL_NAME / "SKILL.md"
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UsageError(f"cannot write {target}: {exc.strerror or exc}") from None
    print(f"wrote {target}")
    return EXIT_OK


def cmd_mcp(args: argparse.Namespace) -> int:
    from reportgen.mcp_server import serve

    serve()
    return EXIT_OK


def add_agent_verbs(verbs: Any) -> None:
    skill = verbs.add_parser(
        "skill",
        help="print SKILL.md (how an agent uses reportgen), or install it into a skills folder",
        description="Print SKILL.md, the Agent Skills file that tells a coding agent when and "
        "how to use reportgen; with DIR, write it to DIR/reportgen/SKILL.md "
        "(e.g. reportgen skill ~/.claude/skills).",
    )
    skill.add_argument("dir", nargs="?", metavar="DIR", help="a skills folder")
    skill.set_defaults(func=cmd_skill)

    mcp = verbs.add_parser(
        "mcp",
        help="serve reportgen's tools to an agent over MCP (stdio)",
        description="Speak the Model Context Protocol on stdin/stdout (needs the `mcp` extra: "
        "pip install 'reportgen[mcp]'). Tools: list_runs, list_keys, export_table, "
        "health, compare_runs, build_spec. Results are compact JSON; errors are tool errors "
        "with the CLI's one-line messages.",
    )
    mcp.set_defaults(func=cmd_mcp)
