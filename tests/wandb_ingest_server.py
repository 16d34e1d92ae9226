"""A loopback W&B server that accepts what the real client sends while a run is online.

Shared mode (several processes writing one run) exists only for online runs, so tests that need
shared-mode `.wandb` files run the real client against this server: it answers the GraphQL
operations wandb-core sends to create and update a run, accepts the file stream and file
uploads, and keeps nothing but a log of the operations. The `.wandb` files the client writes
locally are the test data; nothing here shapes them.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class IngestServer:
    """Start with `with IngestServer() as server:`; point WANDB_BASE_URL at `server.url`."""

    def __init__(self) -> None:
        self.ops: Counter[str] = Counter()
        self._lock = threading.Lock()
        handler = type("Handler", (_Handler,), {"owner": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> IngestServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def count(self, op: str) -> None:
        with self._lock:
            self.ops[op] += 1

    def answer(self, op: str, variables: dict[str, Any]) -> dict[str, Any]:
        if op == "UpsertBucket":
            run = variables.get("name") or "run"
            project = variables.get("modelName") or "project"
            entity = variables.get("entityName") or "entity"
            return {
                "upsertBucket": {
                    "bucket": {
                        "id": f"bucket-{run}",
                        "name": run,
                        "displayName": variables.get("displayName") or run,
                        "description": "",
                        "config": "{}",
                        "sweepName": None,
                        "historyLineCount": 0,
                        "summaryMetrics": "{}",
                        "eventsLineCount": 0,
                        "createdAt": "2026-01-01T00:00:00",
                        "project": {
                            "id": "p",
                            "name": project,
                            "entity": {"id": "e", "name": entity},
                        },
                    },
                    "inserted": True,
                }
            }
        if op == "Viewer":
            return {
                "viewer": {
                    "id": "u",
                    "entity": "tester",
                    "username": "tester",
                    "flags": "{}",
                    "teams": {"edges": []},
                }
            }
        if op == "CreateRunFiles":
            files = variables.get("files") or []
            return {
                "createRunFiles": {
                    "runID": "bucket",
                    "uploadHeaders": [],
                    "files": [{"name": n, "uploadUrl": f"{self.url}/upload/{n}"} for n in files],
                }
            }
        return {}


class _Handler(BaseHTTPRequestHandler):
    owner: IngestServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _reply(self, status: int, body: dict[str, Any]) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length") or 0))

    def do_POST(self) -> None:
        body = self._body()
        if self.path.endswith("/file_stream"):
            self.owner.count("file_stream")
            self._reply(200, {})
            return
        if self.path.startswith("/graphql"):
            try:
                request = json.loads(body)
            except ValueError:
                self._reply(400, {"errors": [{"message": "bad json"}]})
                return
            op = request.get("operationName") or ""
            self.owner.count(op)
            self._reply(200, {"data": self.owner.answer(op, request.get("variables") or {})})
            return
        self.owner.count(f"POST {self.path}")
        self._reply(200, {})

    def do_PUT(self) -> None:
        self._body()
        self.owner.count("upload")
        self._reply(200, {})

    def do_GET(self) -> None:
        self.owner.count(f"GET {self.path}")
        self._reply(200, {})
