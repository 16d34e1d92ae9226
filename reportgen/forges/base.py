"""What both forges share: the target of a comment, and how our comment is recognised."""

from __future__ import annotations

from dataclasses import dataclass, field


class NotPostable(Exception):
    """The environment does not say where to post (no token, not a pull request, ...)."""


@dataclass(frozen=True)
class CommentTarget:
    """One pull or merge request on one forge; `token` is left out of every repr."""

    forge: str
    api_url: str
    project: str
    number: int
    web_url: str | None
    token: str = field(repr=False)
    token_header: str = field(default="Authorization", repr=False)


@dataclass(frozen=True)
class Found:
    id: int
    url: str | None


def has_marker(body: object, marker: str) -> bool:
    """Whether a comment body carries our marker on a line of its own."""
    if not isinstance(body, str) or marker not in body:
        return False
    return any(line.strip() == marker for line in body.splitlines())
