"""GitLab: one note per spec on a merge request, found by its hidden marker.

REST endpoints used (under CI_API_V4_URL, e.g. https://gitlab.com/api/v4):
  GET /projects/{id}/merge_requests/{iid}/notes?per_page=100&page=N   (every page, X-Next-Page)
  PUT /projects/{id}/merge_requests/{iid}/notes/{note_id}
  POST /projects/{id}/merge_requests/{iid}/notes
In a merge-request pipeline CI_PROJECT_ID and CI_MERGE_REQUEST_IID name the merge request. The
token is GITLAB_TOKEN (a project or personal access token with the api scope, sent as
PRIVATE-TOKEN), else CI_JOB_TOKEN (sent as JOB-TOKEN; only instances that let job tokens write
notes accept it).
"""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator, Mapping
from typing import Any

from reportgen.forges.base import CommentTarget, Found, NotPostable, has_marker
from reportgen.forges.http import ForgeHTTPError, request

NAME = "GitLab"
PER_PAGE = 100
MAX_PAGES = 1000


def target_from_env(env: Mapping[str, str]) -> CommentTarget:
    """The merge request to comment on, or NotPostable listing everything that is missing."""
    missing = []
    token, header = env.get("GITLAB_TOKEN", ""), "PRIVATE-TOKEN"
    if not token:
        token, header = env.get("CI_JOB_TOKEN", ""), "JOB-TOKEN"
    if not token:
        missing.append(
            "neither GITLAB_TOKEN nor CI_JOB_TOKEN is set (add a project access token with the "
            "api scope as the CI/CD variable GITLAB_TOKEN)"
        )
    api = env.get("CI_API_V4_URL", "").rstrip("/")
    if not api:
        missing.append("CI_API_V4_URL is not set")
    project = env.get("CI_PROJECT_ID", "")
    if not project:
        missing.append("CI_PROJECT_ID is not set")
    iid = env.get("CI_MERGE_REQUEST_IID", "")
    if not iid.isdigit():
        missing.append(
            "this is not a merge-request pipeline (CI_MERGE_REQUEST_IID is not set): add "
            'rules: [{if: $CI_PIPELINE_SOURCE == "merge_request_event"}] to the job'
        )
    if missing:
        raise NotPostable("; ".join(missing))
    web = env.get("CI_MERGE_REQUEST_PROJECT_URL") or env.get("CI_PROJECT_URL")
    return CommentTarget(
        forge="gitlab",
        api_url=api,
        project=project,
        number=int(iid),
        web_url=f"{web.rstrip('/')}/-/merge_requests/{iid}" if web else None,
        token=token,
        token_header=header,
    )


def job_url(env: Mapping[str, str]) -> str | None:
    """The CI job's page, where its artifacts (the full report) can be browsed."""
    return env.get("CI_JOB_URL") or None


def _notes_url(target: CommentTarget) -> str:
    project = urllib.parse.quote(target.project, safe="")
    return f"{target.api_url}/projects/{project}/merge_requests/{target.number}/notes"


def _headers(target: CommentTarget) -> dict[str, str]:
    from reportgen import __version__

    return {target.token_header: target.token, "User-Agent": f"reportgen/{__version__}"}


def _pages(target: CommentTarget) -> Iterator[list[dict[str, Any]]]:
    """Every page of the merge request's notes, oldest first, following X-Next-Page."""
    page: int | None = 1
    count = 0
    while page is not None and count < MAX_PAGES:
        query = f"?per_page={PER_PAGE}&page={page}&sort=asc&order_by=created_at"
        answer = request("GET", _notes_url(target) + query, _headers(target))
        items = answer.data if isinstance(answer.data, list) else []
        yield items
        following = answer.headers.get("X-Next-Page")
        if following is not None:
            page = int(following) if following.strip().isdigit() else None
        else:  # the header is left out on very long lists: count pages instead
            page = page + 1 if len(items) >= PER_PAGE else None
        count += 1


def find(target: CommentTarget, marker: str) -> Found | None:
    for items in _pages(target):
        for item in items:
            if (
                isinstance(item, dict)
                and not item.get("system")
                and has_marker(item.get("body"), marker)
            ):
                note_id = int(item["id"])
                return Found(note_id, _note_url(target, note_id))
    return None


def update(target: CommentTarget, note_id: int, body: str) -> str | None:
    request("PUT", f"{_notes_url(target)}/{note_id}", _headers(target), {"body": body})
    return _note_url(target, note_id)


def create(target: CommentTarget, body: str) -> str | None:
    answer = request("POST", _notes_url(target), _headers(target), {"body": body})
    note_id = answer.data.get("id") if isinstance(answer.data, dict) else None
    return _note_url(target, int(note_id)) if note_id is not None else target.web_url


def _note_url(target: CommentTarget, note_id: int) -> str | None:
    return f"{target.web_url}#note_{note_id}" if target.web_url else None


def explain(error: ForgeHTTPError, target: CommentTarget) -> str:
    """What went wrong, in GitLab's words, and what to do about it."""
    where = f"project {target.project} merge request !{target.number}"
    said = error.said
    token_name = "GITLAB_TOKEN" if target.token_header == "PRIVATE-TOKEN" else "CI_JOB_TOKEN"
    if error.status == 401:
        return (
            f"GitLab refused the token {said}: check that {token_name} holds a valid token "
            "with the api scope"
        )
    if error.status == 403:
        return (
            f"GitLab denied the request on {where} {said}: the token needs the api scope and "
            "at least the Reporter role; job tokens often cannot write notes (set GITLAB_TOKEN)"
        )
    if error.status == 404:
        return (
            f"GitLab found no {where} {said}: check CI_PROJECT_ID and CI_MERGE_REQUEST_IID, "
            "and that the token can see the project"
        )
    if error.status in (400, 422):
        return f"GitLab rejected the note on {where} {said}"
    if error.status is None:
        return f"GitLab could not be reached {said}: check CI_API_V4_URL and the network"
    return f"GitLab failed on {where} {said}: try again later"
