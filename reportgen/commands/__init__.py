"""Verbs beyond `build`: the spec-less commands and the agent-facing ones, one module each.

cli.py keeps the spec verbs (build, validate, runs, keys, …); these register themselves on its
parser through `add_verbs`, so the top-level parser stays the one place every verb is listed.
"""

from __future__ import annotations

from typing import Any


def add_verbs(verbs: Any) -> None:
    from reportgen.commands.agents import add_agent_verbs
    from reportgen.commands.quick import add_quick_verbs

    add_quick_verbs(verbs)
    add_agent_verbs(verbs)
