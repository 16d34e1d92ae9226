"""Verbs beyond `build`: the spec-less commands and the agent-facing ones, one module each.

cli.py keeps the spec verbs (build, validate, runs, keys, …); these register themselves on its
parser through `add_verbs`, so the top-level parser stays the one place every verb is listed.
"""

from __future__ import annotations

from typing import Any

QUICK_VERBS = ("export", "health", "show", "compare")
AGENT_VERBS = ("skill", "mcp")
VERBS = QUICK_VERBS + AGENT_VERBS


def add_verbs(verbs: Any, only: str | None = None) -> None:
    """Register this package's verbs (all, or the family holding `only`), after cli.py's."""
    if only in (None, *QUICK_VERBS):
        from reportgen.commands.quick import add_quick_verbs

        add_quick_verbs(verbs)
    if only in (None, *AGENT_VERBS):
        from reportgen.commands.agents import add_agent_verbs

        add_agent_verbs(verbs)
