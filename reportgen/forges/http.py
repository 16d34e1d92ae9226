"""The little HTTP the forges need: JSON in and out over urllib, errors as one exception.

Only the standard library is used (no new dependency). Nothing here prints, logs or keeps a
request's headers, so a token passed in `headers` goes to the server and nowhere else.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from email.message import Message
from typing import Any

TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Response:
    status: int
    headers: Message
    data: Any


class ForgeHTTPError(Exception):
    """A request that failed: an HTTP status with the server's message, or no answer at all."""

    def __init__(self, status: int | None, detail: str, retry_after: float | None = None):
        self.status = status
        self.detail = detail
        self.retry_after = retry_after
        super().__init__(f"{status or 'no answer'}: {detail}")

    @property
    def said(self) -> str:
        """`(404 Not Found)`: the status and the server's words, the status once."""
        if self.status is None or self.detail.startswith(str(self.status)):
            return f"({self.detail})"
        return f"({self.status} {self.detail})"

    @property
    def retryable(self) -> bool:
        """Worth another try: no answer, rate limited, or a server error."""
        return self.status is None or self.status == 429 or self.status >= 500


def request(
    method: str, url: str, headers: dict[str, str], payload: dict[str, Any] | None = None
) -> Response:
    """Send one request; a JSON body in, the decoded JSON body out."""
    data = json.dumps(payload).encode("utf-8") if payload is not None else None
    all_headers = {"Accept": "application/json", **headers}
    if data is not None:
        all_headers["Content-Type"] = "application/json"
    req = urllib.request.Request(url, data=data, headers=all_headers, method=method)
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_SECONDS) as answer:
            body = answer.read()
            return Response(answer.status, answer.headers, _decode(body))
    except urllib.error.HTTPError as exc:
        body = exc.read() if exc.fp is not None else b""
        raise ForgeHTTPError(
            exc.code, _server_message(_decode(body), exc.reason), _retry_after(exc.headers)
        ) from None
    except (urllib.error.URLError, TimeoutError, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ForgeHTTPError(None, f"cannot reach {_origin(url)}: {reason}") from None


def same_origin(url: str, base: str) -> bool:
    """Whether `url` is on the host of `base` (a token is never sent anywhere else)."""
    a, b = urllib.parse.urlsplit(url), urllib.parse.urlsplit(base)
    return (a.scheme, a.netloc) == (b.scheme, b.netloc)


def _origin(url: str) -> str:
    parts = urllib.parse.urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _decode(body: bytes) -> Any:
    if not body:
        return None
    try:
        return json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        return body.decode("utf-8", errors="replace")[:200]


def _server_message(data: Any, reason: object) -> str:
    """The forge's own words: GitHub's `message` (+ `errors`), GitLab's `message` or `error`."""
    if isinstance(data, dict):
        parts = []
        message = data.get("message") or data.get("error")
        if message:
            parts.append(message if isinstance(message, str) else json.dumps(message))
        for error in data.get("errors") or []:
            if isinstance(error, dict) and error.get("message"):
                parts.append(str(error["message"]))
            elif isinstance(error, str):
                parts.append(error)
        if parts:
            return "; ".join(parts)[:300]
    if isinstance(data, str) and data.strip():
        return " ".join(data.split())[:200]
    return str(reason)


def _retry_after(headers: Message | None) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None
