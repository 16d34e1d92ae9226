"""Post the pull-request comment: find ours by its marker on every page, update it, or create it.

Where to post comes from the CI environment only (see github.py and gitlab.py). An environment
that does not say where (no token, not a pull request) is not an error: the comment is still
written to a file and the reason is reported. A forge that answers with an error is retried when
that can help (no answer, 429, 5xx): each try searches for the comment again before writing, so
a create that succeeded despite an error answer is updated rather than duplicated.

Tokens never leave this package except in request headers: messages are built from our own words
and the forge's error text, and any token that a server echoes back is redacted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import ModuleType

from reportgen.forges import github, gitlab
from reportgen.forges.base import CommentTarget, NotPostable
from reportgen.forges.http import ForgeHTTPError

FORGES: dict[str, ModuleType] = {"github": github, "gitlab": gitlab}
ATTEMPTS = 3
BACKOFF_SECONDS = (2.0, 5.0)
MAX_WAIT_SECONDS = 15.0

CREATED, UPDATED, NOT_POSTED, FAILED = "created", "updated", "not posted", "failed"


@dataclass(frozen=True)
class PostOutcome:
    """What happened to the comment; `message` is safe to print (it holds no token)."""

    status: str
    message: str
    url: str | None = None

    @property
    def failed(self) -> bool:
        return self.status == FAILED

    @property
    def posted(self) -> bool:
        return self.status in (CREATED, UPDATED)


def detect_forge(configured: str | None, env: Mapping[str, str]) -> str | None:
    """The spec's forge, else the CI system we run in, else None."""
    if configured:
        return configured
    if env.get("GITHUB_ACTIONS") == "true":
        return "github"
    if env.get("GITLAB_CI") == "true":
        return "gitlab"
    return None


def job_url(forge: str | None, env: Mapping[str, str]) -> str | None:
    """The CI job's page (where the full report is kept as an artifact), when known."""
    return FORGES[forge].job_url(env) if forge in FORGES else None


def post_comment(
    body: str,
    marker: str,
    forge: str | None,
    env: Mapping[str, str],
    sleep: Callable[[float], None] = time.sleep,
) -> PostOutcome:
    """Update the comment carrying `marker` (the full marker line), or create it."""
    if forge is None:
        return PostOutcome(
            NOT_POSTED,
            "not running in GitHub Actions or GitLab CI, and outputs.comment.forge is not set",
        )
    module = FORGES[forge]
    try:
        target: CommentTarget = module.target_from_env(env)
    except NotPostable as exc:
        return PostOutcome(NOT_POSTED, str(exc))
    for attempt in range(ATTEMPTS):
        try:
            outcome = _post_once(module, target, body, marker)
        except (KeyError, TypeError, ValueError) as exc:
            message = (
                f"{module.NAME} answered in an unexpected form ({type(exc).__name__}): check "
                "that the API URL points at the forge's REST API"
            )
            return PostOutcome(FAILED, message)
        except ForgeHTTPError as error:
            if error.retryable and attempt + 1 < ATTEMPTS:
                wait = (
                    error.retry_after if error.retry_after is not None else BACKOFF_SECONDS[attempt]
                )
                sleep(min(wait, MAX_WAIT_SECONDS))
                continue
            tries = f" (after {attempt + 1} tries)" if attempt else ""
            message = redact(module.explain(error, target) + tries, target.token)
            return PostOutcome(FAILED, message)
        else:
            url = redact(outcome.url, target.token) if outcome.url else None
            return PostOutcome(outcome.status, redact(outcome.message, target.token), url)
    raise AssertionError("unreachable")


def _post_once(module: ModuleType, target: CommentTarget, body: str, marker: str) -> PostOutcome:
    name = module.NAME
    where = target.web_url or f"{target.project}#{target.number}"
    found = module.find(target, marker)
    if found is not None:
        url = module.update(target, found.id, body) or found.url
        return PostOutcome(UPDATED, f"updated the {name} comment on {where}", url)
    url = module.create(target, body)
    return PostOutcome(CREATED, f"created a {name} comment on {where}", url)


def redact(text: str, secret: str) -> str:
    """The text with every occurrence of the secret replaced (servers may echo what they got)."""
    return text.replace(secret, "***") if len(secret) >= 4 else text


def append_step_summary(body: str, env: Mapping[str, str]) -> str | None:
    """Add the comment to the GitHub Actions job summary; a message if that failed."""
    path = env.get("GITHUB_STEP_SUMMARY")
    if not path:
        return None
    try:
        with open(path, "a", encoding="utf-8") as handle:
            handle.write(body.rstrip("\n") + "\n\n")
    except OSError as exc:
        return f"could not append to GITHUB_STEP_SUMMARY ({exc.strerror or exc})"
    return None


__all__ = [
    "FORGES",
    "PostOutcome",
    "append_step_summary",
    "detect_forge",
    "job_url",
    "post_comment",
]
