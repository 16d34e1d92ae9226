"""Loopback GitHub and GitLab: the REST endpoints reportgen uses, over a real socket.

One `ForgeServer` answers both APIs:
  GitHub  {url}/api/v3   GET/POST /repos/{owner}/{repo}/issues/{n}/comments (per_page, page,
                         Link header), PATCH /repos/{owner}/{repo}/issues/comments/{id}
  GitLab  {url}/api/v4   GET/POST /projects/{id}/merge_requests/{iid}/notes (per_page, page,
                         X-Next-Page), PUT …/notes/{note_id}
It checks tokens the way the forges do (401 with their messages), answers 404 for unknown pull
requests and 422/400 for bodies over the forges' limits, and can be told to fail the next
requests with any status (5xx answers carry `Retry-After: 0`). Every request is recorded.
"""

from __future__ import annotations

import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

GITHUB_LIMIT = 65_536
GITLAB_LIMIT = 1_000_000

_GH_LIST = re.compile(r"^/api/v3/repos/([^/]+/[^/]+)/issues/(\d+)/comments$")
_GH_EDIT = re.compile(r"^/api/v3/repos/([^/]+/[^/]+)/issues/comments/(\d+)$")
_GL_LIST = re.compile(r"^/api/v4/projects/([^/]+)/merge_requests/(\d+)/notes$")
_GL_EDIT = re.compile(r"^/api/v4/projects/([^/]+)/merge_requests/(\d+)/notes/(\d+)$")


@dataclass
class Recorded:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


@dataclass
class Failure:
    status: int
    method: str | None
    times: int
    echo_token: bool


@dataclass
class ForgeState:
    token: str
    comments: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)
    notes: dict[tuple[str, int], list[dict[str, Any]]] = field(default_factory=dict)
    requests: list[Recorded] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)
    link_headers: bool = True
    next_id: int = 1000


class ForgeServer:
    def __init__(self, token: str):
        self.state = ForgeState(token)
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    def __enter__(self) -> ForgeServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def github_api(self) -> str:
        return f"{self.url}/api/v3"

    @property
    def gitlab_api(self) -> str:
        return f"{self.url}/api/v4"

    # --- arranging ------------------------------------------------------------------------

    def open_pull_request(self, repo: str, number: int, others: int = 0) -> None:
        """A GitHub pull request with `others` comments by other people already on it."""
        with self.lock:
            self.state.comments[(repo, number)] = [
                self._item(f"comment {i} by someone else", url=f"{repo}/{number}")
                for i in range(others)
            ]

    def open_merge_request(self, project: str, iid: int, others: int = 0) -> None:
        """A GitLab merge request with `others` notes (every tenth one a system note)."""
        with self.lock:
            self.state.notes[(project, iid)] = [
                {**self._item(f"note {i}"), "system": i % 10 == 0} for i in range(others)
            ]

    def fail(
        self, status: int, *, method: str | None = None, times: int = 1, echo_token: bool = False
    ) -> None:
        """Answer the next `times` matching requests with `status`."""
        with self.lock:
            self.state.failures.append(Failure(status, method, times, echo_token))

    def comments(self, repo: str, number: int) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(c) for c in self.state.comments[(repo, number)]]

    def notes(self, project: str, iid: int) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(n) for n in self.state.notes[(project, iid)]]

    @property
    def requests(self) -> list[Recorded]:
        with self.lock:
            return list(self.state.requests)

    def _item(self, body: str, url: str = "") -> dict[str, Any]:
        self.state.next_id += 1
        item = {"id": self.state.next_id, "body": body, "user": {"login": "someone"}}
        if url:
            item["html_url"] = f"https://github.invalid/{url}#issuecomment-{self.state.next_id}"
        return item

    # --- answering ------------------------------------------------------------------------

    def answer(self, method: str, target: str, headers: dict[str, str], body: Any):
        parts = urlsplit(target)
        path = parts.path
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        with self.lock:
            self.state.requests.append(Recorded(method, path, query, headers, body))
            failure = self._take_failure(method)
            if failure is not None:
                return self._failure(failure, headers, gitlab=path.startswith("/api/v4/"))
            if path.startswith("/api/v3/"):
                return self._github(method, path, query, headers, body)
            if path.startswith("/api/v4/"):
                return self._gitlab(method, path, query, headers, body)
        return 404, {}, {"message": "Not Found"}

    def _take_failure(self, method: str) -> Failure | None:
        for failure in self.state.failures:
            if failure.times > 0 and failure.method in (None, method):
                failure.times -= 1
                return failure
        return None

    def _failure(self, failure: Failure, headers: dict[str, str], gitlab: bool):
        words = _GITLAB_WORDS if gitlab else _GITHUB_WORDS
        message = words.get(failure.status, "Server Error")
        if failure.echo_token:
            sent = [v for k, v in headers.items() if k.lower() in _TOKEN_HEADERS]
            message += f" (you sent {sent})"
        extra = {"Retry-After": "0"} if failure.status >= 500 or failure.status == 429 else {}
        return failure.status, extra, {"message": message}

    def _github(self, method, path, query, headers, body):
        auth = headers.get("authorization", "")
        if auth not in (f"Bearer {self.state.token}", f"token {self.state.token}"):
            return 401, {}, {"message": "Bad credentials"}
        if m := _GH_LIST.match(path):
            key = (m.group(1), int(m.group(2)))
            if key not in self.state.comments:
                return 404, {}, {"message": "Not Found"}
            items = self.state.comments[key]
            if method == "GET":
                return self._github_page(path, query, items)
            if method == "POST":
                return self._github_write(items, None, body, key)
        if (m := _GH_EDIT.match(path)) and method == "PATCH":
            for key, items in self.state.comments.items():
                if key[0] == m.group(1):
                    for item in items:
                        if item["id"] == int(m.group(2)):
                            return self._github_write(items, item, body, key)
            return 404, {}, {"message": "Not Found"}
        return 404, {}, {"message": "Not Found"}

    def _github_page(self, path, query, items):
        per_page = min(int(query.get("per_page", 30)), 100)
        page = int(query.get("page", 1))
        chunk = items[(page - 1) * per_page : page * per_page]
        headers = {}
        last = max(1, -(-len(items) // per_page))
        if self.state.link_headers and last > 1:
            links = []
            link = f"{self.url}{path}?per_page={per_page}&page="
            if page < last:
                links += [f'<{link}{page + 1}>; rel="next"', f'<{link}{last}>; rel="last"']
            if page > 1:
                links += [f'<{link}{page - 1}>; rel="prev"', f'<{link}1>; rel="first"']
            headers["Link"] = ", ".join(links)
        return 200, headers, chunk

    def _github_write(self, items, item, body, key):
        text = body.get("body") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text:
            return 422, {}, {"message": "Validation Failed", "errors": [{"field": "body"}]}
        if len(text) > GITHUB_LIMIT:
            return (
                422,
                {},
                {
                    "message": "Validation Failed",
                    "errors": [
                        {
                            "resource": "IssueComment",
                            "code": "custom",
                            "field": "body",
                            "message": "body is too long (maximum is 65536 characters)",
                        }
                    ],
                },
            )
        if item is None:
            item = self._item(text, url=f"{key[0]}/pull/{key[1]}")
            items.append(item)
            return 201, {}, dict(item)
        item["body"] = text
        return 200, {}, dict(item)

    def _gitlab(self, method, path, query, headers, body):
        sent = headers.get("private-token") or headers.get("job-token")
        if sent != self.state.token:
            return 401, {}, {"message": "401 Unauthorized"}
        if m := _GL_LIST.match(path):
            key = (unquote(m.group(1)), int(m.group(2)))
            if key not in self.state.notes:
                return 404, {}, {"message": "404 Not found"}
            items = self.state.notes[key]
            if method == "GET":
                return self._gitlab_page(query, items)
            if method == "POST":
                return self._gitlab_write(items, None, body)
        if (m := _GL_EDIT.match(path)) and method == "PUT":
            key = (unquote(m.group(1)), int(m.group(2)))
            for item in self.state.notes.get(key, []):
                if item["id"] == int(m.group(3)):
                    return self._gitlab_write(self.state.notes[key], item, body)
            return 404, {}, {"message": "404 Not found"}
        return 404, {}, {"message": "404 Not found"}

    def _gitlab_page(self, query, items):
        per_page = min(int(query.get("per_page", 20)), 100)
        page = int(query.get("page", 1))
        chunk = items[(page - 1) * per_page : page * per_page]
        pages = max(1, -(-len(items) // per_page))
        headers = {
            "X-Page": str(page),
            "X-Per-Page": str(per_page),
            "X-Total": str(len(items)),
            "X-Total-Pages": str(pages),
            "X-Next-Page": str(page + 1) if page < pages else "",
            "X-Prev-Page": str(page - 1) if page > 1 else "",
        }
        return 200, headers, chunk

    def _gitlab_write(self, items, item, body):
        text = body.get("body") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text:
            return 400, {}, {"message": "400 Bad request - body is missing"}
        if len(text) > GITLAB_LIMIT:
            return 400, {}, {"message": {"note": ["is too long (maximum is 1000000 characters)"]}}
        if item is None:
            item = {**self._item(text), "system": False}
            items.append(item)
            return 201, {}, dict(item)
        item["body"] = text
        return 200, {}, dict(item)


_TOKEN_HEADERS = {"authorization", "private-token", "job-token"}
_GITHUB_WORDS = {401: "Bad credentials", 403: "Resource not accessible by integration",
                 404: "Not Found", 422: "Validation Failed"}  # fmt: skip
_GITLAB_WORDS = {401: "401 Unauthorized", 403: "403 Forbidden", 404: "404 Not found",
                 422: "422 Unprocessable Entity"}  # fmt: skip


def _handler(server: ForgeServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            body = json.loads(raw) if raw else None
            headers = {k.lower(): v for k, v in self.headers.items()}
            status, extra, payload = server.answer(self.command, self.path, headers, body)
            data = json.dumps(payload).encode("utf-8")
            self.send_response(status)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in extra.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_PUT = _serve

        def log_message(self, format: str, *args: Any) -> None:
            pass  # keep test output clean

    return Handler
