"""GitHub: one issue comment per spec on a pull request, found by its hidden marker.

REST endpoints used (GitHub and GitHub Enterprise Server alike, under GITHUB_API_URL):
  GET   /repos/{owner}/{repo}/issues/{number}/comments?per_page=100&page=N   (every page)
  PATCH /repos/{owner}/{repo}/issues/comments/{id}
  POST  /repos/{owner}/{repo}/issues/{number}/comments
In GitHub Actions the repository, the pull-request number (in the event JSON at
GITHUB_EVENT_PATH) and the token (GITHUB_TOKEN, passed to the step's env) all come from the
environment.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from reportgen.forges.base import CommentTarget, Found, NotPostable, has_marker
from reportgen.forges.http import ForgeHTTPError, request, same_origin

NAME = "GitHub"
PER_PAGE = 100
MAX_PAGES = 1000  # 100,000 comments: far beyond any real pull request
_NEXT = re.compile(r'<([^>]+)>\s*;\s*rel="next"')


def target_from_env(env: Mapping[str, str]) -> CommentTarget:
    """The pull request to comment on, or NotPostable listing everything that is missing."""
    missing = []
    token = env.get("GITHUB_TOKEN", "")
    if not token:
        missing.append(
            "GITHUB_TOKEN is not set (in a workflow: env: GITHUB_TOKEN: ${{ secrets.GITHUB_TOKEN }})"
        )
    repo = env.get("GITHUB_REPOSITORY", "")
    if not repo:
        missing.append("GITHUB_REPOSITORY is not set (it names owner/repo)")
    number = _pull_request_number(env.get("GITHUB_EVENT_PATH"))
    if number is None:
        missing.append(
            "this is not a pull-request event (GITHUB_EVENT_PATH has no pull request number): "
            "run the workflow on: pull_request"
        )
    if missing:
        raise NotPostable("; ".join(missing))
    assert number is not None
    api = env.get("GITHUB_API_URL", "https://api.github.com").rstrip("/")
    server = env.get("GITHUB_SERVER_URL", "https://github.com").rstrip("/")
    return CommentTarget(
        forge="github",
        api_url=api,
        project=repo,
        number=number,
        web_url=f"{server}/{repo}/pull/{number}",
        token=token,
    )


def _pull_request_number(event_path: str | None) -> int | None:
    """pull_request and pull_request_target events carry it; so do issue_comment events on a PR."""
    if not event_path:
        return None
    try:
        event = json.loads(Path(event_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(event, dict):
        return None
    pull = event.get("pull_request")
    if isinstance(pull, dict) and isinstance(pull.get("number"), int):
        return int(pull["number"])
    issue = event.get("issue")
    if isinstance(issue, dict) and "pull_request" in issue and isinstance(issue.get("number"), int):
        return int(issue["number"])
    return None


def job_url(env: Mapping[str, str]) -> str | None:
    """The workflow run's page, where its artifacts (the full report) can be downloaded."""
    server, repo, run = (
        env.get("GITHUB_SERVER_URL"),
        env.get("GITHUB_REPOSITORY"),
        env.get("GITHUB_RUN_ID"),
    )
    if server and repo and run:
        return f"{server.rstrip('/')}/{repo}/actions/runs/{run}"
    return None


def _headers(target: CommentTarget) -> dict[str, str]:
    from reportgen import __version__

    return {
        "Authorization": f"Bearer {target.token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
        "User-Agent": f"reportgen/{__version__}",
    }


def _pages(target: CommentTarget) -> Iterator[list[dict[str, Any]]]:
    """Every page of the pull request's comments, following Link: rel="next"."""
    base = f"{target.api_url}/repos/{target.project}/issues/{target.number}/comments"
    url: str | None = f"{base}?per_page={PER_PAGE}&page=1"
    page = 1
    while url and page <= MAX_PAGES:
        answer = request("GET", url, _headers(target))
        items = answer.data if isinstance(answer.data, list) else []
        yield items
        link = _NEXT.search(answer.headers.get("Link") or "")
        if link and same_origin(link.group(1), target.api_url):
            url = link.group(1)
        elif len(items) >= PER_PAGE and not answer.headers.get("Link"):
            url = f"{base}?per_page={PER_PAGE}&page={page + 1}"  # no Link header: count pages
        else:
            url = None
        page += 1


def find(target: CommentTarget, marker: str) -> Found | None:
    """The first comment (oldest) carrying the marker, searching every page."""
    for items in _pages(target):
        for item in items:
            if isinstance(item, dict) and has_marker(item.get("body"), marker):
                return Found(int(item["id"]), item.get("html_url"))
    return None


def update(target: CommentTarget, comment_id: int, body: str) -> str | None:
    url = f"{target.api_url}/repos/{target.project}/issues/comments/{comment_id}"
    answer = request("PATCH", url, _headers(target), {"body": body})
    return _html_url(answer.data)


def create(target: CommentTarget, body: str) -> str | None:
    url = f"{target.api_url}/repos/{target.project}/issues/{target.number}/comments"
    answer = request("POST", url, _headers(target), {"body": body})
    return _html_url(answer.data)


def _html_url(data: Any) -> str | None:
    return data.get("html_url") if isinstance(data, dict) else None


def explain(error: ForgeHTTPError, target: CommentTarget) -> str:
    """What went wrong, in the forge's words, and what to do about it."""
    where = f"{target.project}#{target.number}"
    said = error.said
    if error.status == 401:
        return f"GitHub refused the token {said}: check that GITHUB_TOKEN holds a valid token"
    if error.status == 403:
        return (
            f"GitHub denied the request on {where} {said}: give the job "
            "`permissions: pull-requests: write`; pull requests from forks get a read-only "
            "token (use outputs.comment.on_error: warn there)"
        )
    if error.status == 404:
        return (
            f"GitHub found no pull request {where} {said}: check GITHUB_REPOSITORY and the "
            "event, and that the token can see the repository"
        )
    if error.status == 422:
        return f"GitHub rejected the comment on {where} {said}"
    if error.status is None:
        return f"GitHub could not be reached {said}: check GITHUB_API_URL and the network"
    return f"GitHub failed on {where} {said}: try again later"
