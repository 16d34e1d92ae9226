"""A loopback W&B server for tests: answers the GraphQL operations `wandb.Api` 0.31 sends.

The client under test is the real one (its Go core does the HTTP); this server speaks the wire
format measured from it (see /work/shared/wandb-facts.md and the request log of a real client):

  Viewer                 credentials check on `wandb.Api()` (HTTP 401 for a wrong key)
  Runs                   lazy listing with `filters` (MongoDB-style JSON), order, cursor paging
  Run                    one run with the full fragment (config, summaryMetrics, historyKeys...)
  RunHistoryKeys         `historyKeys` (an object with lastStep), first step of scan_history
  RunParquetHistory      `parquetHistory(liveKeys)`: exported Parquet URLs + live rows
  GET <parquet url>      the exported history file
  HistoryPage            `history(minStep, maxStep, samples)`: rows as JSON strings
  SampledHistoryPage     scan_history(keys=...): one spec, minStep/maxStep inclusive
  RunSampledHistory      run.history(keys=...): server-sampled
  RunFullHistory         run.history(): server-sampled rows as JSON strings
  RunConsoleLogTail      run.console_logs(last=N): the end of the console output
  RunExitCode            a run's `exitcode` field (reportgen asks for it for failed runs)
  GetViewer              `api.viewer`: the user, its entity and the teams it belongs to
  GetProjects            `api.projects(entity)`: `models(entityName, after, first)`, paged

Any other query is answered field by field (parse_operation): `project(name, entityName)` with
aliased `run(name)` fields, each asking for fields of the run fragment, `exitcode`, or
`history(minStep, maxStep, samples)` — every record with a step in [minStep, maxStep), evenly
sampled only when there are more than `samples` (the field the client's HistoryPage reads, and
the one the pre-wandb-core client's scan_history paged through). Several runs in one request is
ordinary GraphQL; an unknown field is an HTTP 400 with `errors`, as a GraphQL server answers.
`history_cap` makes the `history` field answer at most that many records (a server that bounds
its answers; the client's own scan asks for pages of 1,000).

A server holds one project by default (`entity`/`project`); `projects` adds more, each under
"name" (the same entity) or "entity/name" (a team's), and `teams` names the viewer's teams.

Shapes that bite are kept: `config` is a JSON string of {"key": {"value": v, "desc": null}},
`summaryMetrics` is a JSON string, history rows are JSON strings with bare NaN/Infinity,
`projectId` is an integer, timestamps are UTC without a zone and with whole seconds.

Runs come from folders written by the real client in offline mode, read with reportgen's
offline reader. Faults (429, 500, ...) and per-request latency can be injected; every request
is logged so tests can count them.
"""

from __future__ import annotations

import base64
import io
import json
import math
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from reportgen.sources.offline import OfflineSource
from reportgen.spec import SourceSpec

HISTORY_OPS = frozenset(
    {
        "RunHistoryKeys",
        "RunParquetHistory",
        "HistoryPage",
        "SampledHistoryPage",
        "RunSampledHistory",
        "RunFullHistory",
        "GET",
    }
)
MISSING = object()
KNOWN_OPS = frozenset(
    {
        "Viewer",
        "GetViewer",
        "GetProjects",
        "Runs",
        "Run",
        "RunHistoryKeys",
        "RunParquetHistory",
        "HistoryPage",
        "SampledHistoryPage",
        "RunSampledHistory",
        "RunConsoleLogTail",
        "RunExitCode",
        "RunFullHistory",
    }
)
BATCH_RUN_VARIABLE = re.compile(r"run\d+")


def named_runs(variables: dict[str, Any]) -> list[str]:
    """The run ids a request names: `name`/`runName`/`run`, or `run0`, `run1`... of a batch."""
    found = [variables.get("name") or variables.get("runName") or variables.get("run")]
    found += [v for k, v in variables.items() if BATCH_RUN_VARIABLE.fullmatch(k)]
    return [run for run in found if isinstance(run, str) and run]


@dataclass
class ServedRun:
    """One run as the server stores it."""

    id: str
    display_name: str
    state: str
    created_at: datetime
    heartbeat_at: datetime
    tags: list[str] = field(default_factory=list)
    group: str | None = None
    job_type: str | None = None
    notes: str | None = None
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    step_metrics: dict[str, str] = field(default_factory=dict)
    # History records in the order logged: several may share a `_step`, and records written
    # by a shared-mode writer may have none (those are served only from the Parquet export).
    rows: list[dict[str, Any]] = field(default_factory=list)
    exported_through: int = -1  # steps up to here are in the exported Parquet file
    storage_id: str = ""
    exit_code: int | None = None
    console: list[str] = field(default_factory=list)
    # Each record's JSON text, made once (a server stores history records as JSON text).
    _texts: dict[int, tuple[dict[str, Any], str]] = field(
        default_factory=dict, repr=False, compare=False
    )

    def record_text(self, row: dict[str, Any]) -> str:
        known = self._texts.get(id(row))
        if known is None or known[0] is not row:
            known = self._texts[id(row)] = (row, json.dumps(row))
        return known[1]

    @property
    def last_step(self) -> int:
        steps = [row["_step"] for row in self.rows if "_step" in row]
        return max(steps) if steps else -1

    def stepped(self) -> list[tuple[int, dict[str, Any]]]:
        return [(row["_step"], row) for row in self.rows if "_step" in row]

    def exported(self) -> list[dict[str, Any]]:
        """The records in the Parquet export: those up to `exported_through`, and every
        record without a step once anything was exported."""
        if self.exported_through < 0:
            return []
        return [r for r in self.rows if r.get("_step", -1) <= self.exported_through]

    def history_keys(self) -> dict[str, Any]:
        counts: Counter[str] = Counter()
        for row in self.rows:
            counts.update(k for k in row if k != "_step")
        keys = {k: {"typeCounts": [{"type": "number", "count": n}]} for k, n in counts.items()}
        return {"lastStep": self.last_step, "keys": keys}

    def metric_definitions(self) -> list[dict[str, Any]]:
        """define_metric as wandb-core stores it in config _wandb.m (fields by number)."""
        encoded: list[dict[str, Any]] = []
        index: dict[str, int] = {}

        def add(name: str, step: str | None) -> None:
            if name in index:
                return
            index[name] = len(encoded)
            entry: dict[str, Any] = {"2" if any(c in name for c in "*?") else "1": name}
            encoded.append(entry)
            if step:
                add(step, None)
                entry["5"] = index[step] + 1

        for name, step in self.step_metrics.items():
            add(name, step)
        return encoded


def runs_from_folder(root: Path, *, export_finished: bool = False) -> list[ServedRun]:
    """The runs under a folder of offline runs, as a server would hold them after syncing."""
    source = OfflineSource(SourceSpec("wandb-offline", path=str(root)))
    served = []
    for number, run in enumerate(sorted(source.list_runs(), key=lambda r: r.id), start=1):
        history = source.history(run)
        # One served record per history record of the files (a sync uploads each of them).
        by_row: dict[int, dict[str, Any]] = {}
        for key in history:
            column = history.column(key)
            assert column is not None
            for row, step, value in zip(column.rows, column.steps, column.values, strict=True):
                by_row.setdefault(int(row), {"_step": int(step)})[key] = float(value)
        rows = [by_row[row] for row in sorted(by_row)]
        created = run.created_at or datetime.now(timezone.utc)
        heartbeat = run.heartbeat_at or created
        served.append(
            ServedRun(
                id=run.id,
                display_name=run.name,
                state=run.state,
                created_at=created,
                heartbeat_at=heartbeat,
                tags=list(run.tags),
                group=run.group,
                job_type=run.job_type,
                notes=run.notes,
                config=run.config,
                summary=run.summary,
                step_metrics=dict(run.step_metrics),
                rows=rows,
                exported_through=(
                    max(r["_step"] for r in rows) if export_finished and rows else -1
                ),
                storage_id=base64.b64encode(f"Run:v1:{run.id}:{number}".encode()).decode(),
                exit_code=run.exit_code,
                console=list(run.console_tail),
            )
        )
    return served


MALFORMED_BODY = b'{"data": {"project": {"run": {"history": ["{\\"_step\\": 0'


@dataclass
class Fault:
    """Answer matching requests with an HTTP error (`times` None: forever); status 200 answers
    with a malformed body instead (JSON cut short, as from a proxy that dropped the connection)."""

    op: str
    status: int
    times: int | None = 1
    run: str | None = None
    retry_after: str | None = "0"


@dataclass(frozen=True)
class Request:
    op: str
    variables: dict[str, Any]
    status: int
    rows: int = 0
    history: bool = False  # it asked for history records (by operation, or a `history` field)

    @property
    def run(self) -> str | None:
        """The run the request is about (the first, for a batch)."""
        runs = named_runs(self.variables)
        return runs[0] if runs else None

    @property
    def runs(self) -> list[str]:
        return named_runs(self.variables)


class WandbServer:
    """Start with `with WandbServer(runs) as server:`; `server.url` is the base_url."""

    def __init__(
        self,
        runs: list[ServedRun],
        *,
        entity: str = "tester",
        project: str = "tests",
        api_key: str = "k" * 40,
        latency: float = 0.0,
        projects: dict[str, list[ServedRun]] | None = None,
        teams: tuple[str, ...] = (),
        history_cap: int | None = None,
    ):
        self.runs = {run.id: run for run in runs}
        self.entity = entity
        self.project = project
        self.teams = teams
        # (entity, project) → that project's runs; the default project is `self.runs` itself.
        self.projects: dict[tuple[str, str], dict[str, ServedRun]] = {(entity, project): self.runs}
        for name, served in (projects or {}).items():
            owner, _, short = name.rpartition("/")
            self.projects[(owner or entity, short)] = {run.id: run for run in served}
        self.api_key = api_key
        self.latency = latency
        # At most this many records in one answer of the `history` field (sampled evenly).
        self.history_cap = history_cap
        self.faults: list[Fault] = []
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None

    # --- lifecycle ---

    def __enter__(self) -> WandbServer:
        handler = type("Handler", (_Handler,), {"server_state": self})
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        assert self._httpd is not None
        self._httpd.shutdown()
        self._httpd.server_close()

    @property
    def url(self) -> str:
        assert self._httpd is not None
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    # --- what tests look at ---

    def ops(self) -> Counter[str]:
        with self._lock:
            return Counter(r.op for r in self.requests if r.status == 200)

    def history_requests(self, run: str | None = None) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.history and (run is None or run in r.runs)]

    def reset_log(self) -> None:
        with self._lock:
            self.requests.clear()

    def append(
        self,
        run_id: str,
        rows: dict[int, dict[str, Any]] | list[dict[str, Any]],
        state: str | None = None,
    ):
        """The run logged more records (and maybe finished) since the last listing: {step:
        row}, or a list of records as logged (with or without `_step`)."""
        with self._lock:
            run = self.runs[run_id]
            if isinstance(rows, dict):
                run.rows.extend({"_step": step, **row} for step, row in rows.items())
            else:
                run.rows.extend(dict(row) for row in rows)
            run.heartbeat_at = datetime.now(timezone.utc)
            if state:
                run.state = state

    def rewind(self, run_id: str, step: int, rows: dict[int, dict[str, Any]]) -> None:
        """W&B's `resume_from="<run>?_step=N"`: the steps from N on are dropped, and the run
        logs `rows` from there (other values at the same steps)."""
        with self._lock:
            run = self.runs[run_id]
            run.rows = [row for row in run.rows if row.get("_step", -1) < step]
            run.rows.extend({"_step": at, **row} for at, row in rows.items())
            run.heartbeat_at = datetime.now(timezone.utc)

    # --- answering ---

    def record(self, request: Request) -> None:
        with self._lock:
            self.requests.append(request)

    def fault_for(self, op: str, variables: dict[str, Any]) -> Fault | None:
        with self._lock:
            runs = named_runs(variables)
            for fault in self.faults:
                if fault.op != op or fault.times == 0:
                    continue
                if fault.run is not None and fault.run not in runs:
                    continue
                if fault.times is not None:
                    fault.times -= 1
                return fault
        return None

    def answer(self, op: str, query: str, v: dict[str, Any]) -> tuple[Any, int]:
        """(data, rows served) for one GraphQL operation."""
        if op in ("Viewer", "GetViewer"):
            return {"viewer": self._viewer()}, 0
        if op == "GetProjects":
            return {"models": self._projects_page(v)}, 0
        if op not in KNOWN_OPS:
            return self.resolve(query, v)
        runs = self.projects.get((v.get("entity"), v.get("project")))
        if runs is None:
            return {"project": None}, 0
        if op == "Runs":
            return {"project": self._runs_page(runs, query, v)}, 0
        run = runs.get(v.get("name") or v.get("runName") or v.get("run") or "")
        if run is None:
            return {"project": {"run": None}}, 0
        if op == "Run":
            full = "...RunFragment" in query
            return {"project": {"run": _node(run, full=full)}}, 0
        if op == "RunHistoryKeys":
            return {"project": {"run": {"historyKeys": run.history_keys()}}}, 0
        if op == "RunParquetHistory":
            live = [{"_step": s} for s, _ in run.stepped() if s > run.exported_through]
            urls = []
            if run.exported_through >= 0:
                urls.append(
                    f"{self.url}/files/{v['entity']}/{v['project']}/{run.id}/"
                    f"history-{run.exported_through}.parquet"
                )
            history = {"parquetUrls": urls, "liveData": live}
            return {"project": {"run": {"parquetHistory": history}}}, 0
        if op == "HistoryPage":
            rows = [
                row
                for step, row in run.stepped()
                if v["minStep"] <= step < v["maxStep"] and step > run.exported_through
            ][: min(v["pageSize"], self.history_cap or v["pageSize"])]
            return {"project": {"run": {"history": [run.record_text(r) for r in rows]}}}, len(rows)
        if op in ("SampledHistoryPage", "RunSampledHistory"):
            specs = [v["spec"]] if op == "SampledHistoryPage" else v["specs"]
            answers = [self._sampled(run, json.loads(spec)) for spec in specs]
            served = sum(len(a) for a in answers)
            return {"project": {"run": {"sampledHistory": answers}}}, served
        if op == "RunConsoleLogTail":
            first = max(0, len(run.console) - v["last"])
            edges = [
                {
                    "node": {
                        "number": n,
                        "timestamp": _time(run.heartbeat_at),
                        "level": "",
                        "label": "",
                        "line": run.console[n],
                    }
                }
                for n in range(first, len(run.console))
            ]
            logs = {"logLineCount": len(run.console), "logLines": {"edges": edges}}
            return {"project": {"run": logs}}, 0
        if op == "RunExitCode":  # the field the client's sweep queries read
            return {"project": {"run": {"exitcode": run.exit_code}}}, 0
        if op == "RunFullHistory":
            rows = _evenly([row for _, row in run.stepped()], v.get("samples") or 500)
            return {"project": {"run": {"history": [run.record_text(r) for r in rows]}}}, len(rows)
        raise KeyError(op)

    def resolve(self, query: str, variables: dict[str, Any]) -> tuple[Any, int]:
        """(data, rows served) for a query answered field by field (see the module's doc)."""
        data: dict[str, Any] = {}
        served = 0
        for top in parse_operation(query, variables):
            if top.name != "project":
                raise GraphQLError(f'Cannot query field "{top.name}" on type "Query".')
            key = (top.arguments.get("entityName"), top.arguments.get("name"))
            runs = self.projects.get(key)  # type: ignore[arg-type]
            if runs is None:
                data[top.alias] = None
                continue
            project: dict[str, Any] = {}
            for selected in top.fields:
                if selected.name != "run":
                    raise GraphQLError(f'Cannot query field "{selected.name}" on type "Project".')
                run = runs.get(selected.arguments.get("name") or "")
                if run is None:
                    project[selected.alias] = None
                    continue
                node: dict[str, Any] = {}
                fragment: dict[str, Any] = {}
                for asked in selected.fields:
                    if asked.name not in ("history", "exitcode") and not fragment:
                        fragment = _node(run, full=True)
                    node[asked.alias], rows = self._run_field(run, fragment, asked)
                    served += rows
                project[selected.alias] = node
            data[top.alias] = project
        return data, served

    def _run_field(
        self, run: ServedRun, fragment: dict[str, Any], field: Selection
    ) -> tuple[Any, int]:
        if field.name == "history":
            low = field.arguments.get("minStep", 0)
            high = field.arguments.get("maxStep", math.inf)
            rows = [row for step, row in run.stepped() if low <= step < high]
            samples = field.arguments.get("samples") or 500
            rows = _evenly(rows, min(samples, self.history_cap or samples))
            return [run.record_text(r) for r in rows], len(rows)
        if field.name == "exitcode":
            return run.exit_code, 0
        if field.name not in fragment:
            raise GraphQLError(f'Cannot query field "{field.name}" on type "Run".')
        return fragment[field.name], 0

    def _viewer(self) -> dict[str, Any]:
        """The UserFragment of `GetViewer` (the older `Viewer` reads a subset of it)."""
        return {
            "id": "VXNlcjox",
            "name": "Tester",
            "username": self.entity,
            "email": None,
            "admin": False,
            "flags": None,
            "entity": self.entity,
            "deletedAt": None,
            "apiKeys": {"edges": []},
            "teams": {"edges": [{"node": {"name": team}} for team in self.teams]},
        }

    def _projects_page(self, v: dict[str, Any]) -> dict[str, Any]:
        """`models(entityName, after, first)`: the entity's projects by name, cursor-paged."""
        names = sorted(name for owner, name in self.projects if owner == v.get("entity"))
        start = int(v["cursor"].split("-")[1]) + 1 if v.get("cursor") else 0
        per_page = v.get("perPage") or 50
        page = names[start : start + per_page]
        edges = []
        for i, name in enumerate(page):
            number = start + i + 1
            node = {
                "__typename": "Project",
                "id": base64.b64encode(f"Project:v1:{name}:{number}".encode()).decode(),
                "name": name,
                "entityName": v.get("entity"),
                "createdAt": "2026-11-01T10:00:00",
                "isBenchmark": False,
                "user": None,
            }
            edges.append({"node": node, "cursor": f"cursor-{start + i}"})
        return {
            "pageInfo": {
                "__typename": "PageInfo",
                "endCursor": edges[-1]["cursor"] if edges else None,
                "hasNextPage": start + per_page < len(names),
            },
            "edges": edges,
        }

    def parquet(self, path: str) -> bytes | None:
        match = re.fullmatch(r"/files/([^/]+)/([^/]+)/([^/]+)/history-(-?\d+)\.parquet", path)
        runs = self.projects.get((match[1], match[2])) if match else None
        if not match or runs is None:
            return None
        run = runs.get(match[3])
        if run is None:
            return None
        through = int(match[4])
        rows = [r for r in run.rows if r.get("_step", -1) <= through]
        keys = sorted({k for row in rows for k in row if k != "_step"})
        columns = {"_step": pa.array([row.get("_step") for row in rows], pa.int64())}
        for key in keys:
            columns[key] = pa.array([row.get(key) for row in rows], pa.float64())
        sink = io.BytesIO()
        pq.write_table(pa.table(columns), sink)
        return sink.getvalue()

    def _runs_page(
        self, runs: dict[str, ServedRun], query: str, v: dict[str, Any]
    ) -> dict[str, Any]:
        filters = json.loads(v.get("filters") or "{}")
        chosen = [run for run in runs.values() if matches_filter(_document(run), filters)]
        order = v.get("order") or "+created_at"
        chosen.sort(key=lambda r: (r.created_at, r.id), reverse=order.startswith("-"))
        start = int(v["cursor"].split("-")[1]) + 1 if v.get("cursor") else 0
        per_page = v.get("perPage") or 50
        page = chosen[start : start + per_page]
        full = "...RunFragment" in query
        edges = [
            {"node": _node(run, full=full), "cursor": f"cursor-{start + i}"}
            for i, run in enumerate(page)
        ]
        return {
            "internalId": "UHJvamVjdDox",
            "runCount": len(chosen),
            "readOnly": False,
            "runs": {
                "edges": edges,
                "pageInfo": {
                    "endCursor": edges[-1]["cursor"] if edges else None,
                    "hasNextPage": start + per_page < len(chosen),
                },
            },
        }

    def _sampled(self, run: ServedRun, spec: dict[str, Any]) -> list[dict[str, Any]]:
        keys = [k for k in dict.fromkeys(spec.get("keys") or []) if k != "_step"]
        low = spec.get("minStep", -math.inf)
        high = spec.get("maxStep", math.inf)  # inclusive, as wandb-core expects
        rows = [
            {"_step": step, **{k: row[k] for k in keys}}
            for step, row in run.stepped()
            if low <= step <= high and all(k in row for k in keys)
        ]
        return _evenly(rows, spec.get("samples") or 500)


class _Handler(BaseHTTPRequestHandler):
    server_state: WandbServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str, headers=None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def _error(self, status: int, message: str, retry_after: str | None = None) -> None:
        body = json.dumps({"errors": [{"message": message}]}).encode()
        headers = {"Retry-After": retry_after} if retry_after is not None else {}
        if status == 429:
            headers.update({"RateLimit-Limit": "100", "RateLimit-Remaining": "0"})
        self._send(status, body, "application/json", headers)

    def do_GET(self) -> None:
        state = self.server_state
        time.sleep(state.latency)
        fault = state.fault_for("GET", {})
        if fault:
            state.record(Request("GET", {"path": self.path}, fault.status, history=True))
            self._error(fault.status, "injected", fault.retry_after)
            return
        data = state.parquet(self.path)
        run = self.path.split("/")[4] if self.path.count("/") >= 4 else None
        status = 200 if data else 404
        state.record(Request("GET", {"path": self.path, "name": run}, status, history=True))
        if data is None:
            self._error(404, "not found")
        else:
            self._send(200, data, "application/octet-stream")

    def do_POST(self) -> None:
        state = self.server_state
        length = int(self.headers.get("Content-Length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        query = body.get("query") or ""
        found = re.search(r"\b(query|mutation)\s+(\w+)", query)
        op = found.group(2) if found else "?"
        variables = body.get("variables") or {}
        history = op in HISTORY_OPS or re.search(r"\bhistory\s*\(", query) is not None
        time.sleep(state.latency)
        expected = "Basic " + base64.b64encode(f"api:{state.api_key}".encode()).decode()
        if self.headers.get("Authorization") != expected:
            state.record(Request(op, variables, 401, history=history))
            self._error(401, "user is not logged in")
            return
        fault = state.fault_for(op, variables)
        if fault and fault.status == 200:
            state.record(Request(op, variables, 200, history=history))
            self._send(200, MALFORMED_BODY, "application/json")
            return
        if fault:
            state.record(Request(op, variables, fault.status, history=history))
            self._error(fault.status, f"injected HTTP {fault.status}", fault.retry_after)
            return
        try:
            data, rows = state.answer(op, query, variables)
        except GraphQLError as exc:
            state.record(Request(op, variables, 400, history=history))
            self._error(400, str(exc))
            return
        except KeyError:
            state.record(Request(op, variables, 400, history=history))
            self._error(400, f"the test server does not know the operation {op}")
            return
        state.record(Request(op, variables, 200, rows, history))
        self._send(200, json.dumps({"data": data}).encode(), "application/json")


# --- the run fragments -------------------------------------------------------------------------


def _time(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).replace(tzinfo=None, microsecond=0).isoformat()


def _node(run: ServedRun, *, full: bool) -> dict[str, Any]:
    node: dict[str, Any] = {
        "projectId": 1,
        "id": run.storage_id,
        "tags": run.tags,
        "name": run.id,
        "displayName": run.display_name,
        "sweepName": None,
        "state": run.state,
        "group": run.group,
        "jobType": run.job_type,
        "commit": None,
        "readOnly": False,
        "createdAt": _time(run.created_at),
        "heartbeatAt": _time(run.heartbeat_at),
        "description": None,
        "notes": run.notes,
        "historyLineCount": len(run.rows),
        "user": {"name": "Tester", "username": "tester"},
    }
    if full:
        config = {k: {"value": v, "desc": None} for k, v in run.config.items()}
        internal = {"cli_version": "0.31.0", "m": run.metric_definitions(), "t": {"1": [1]}}
        config["_wandb"] = {"value": internal, "desc": None}
        summary = dict(run.summary)
        summary["_wandb"] = {"runtime": 3}
        node.update(
            config=json.dumps(config),
            summaryMetrics=json.dumps(summary),
            systemMetrics="{}",
            historyKeys=run.history_keys(),
        )
    return node


def _evenly(rows: list[Any], samples: int) -> list[Any]:
    if len(rows) <= samples:
        return rows
    picks = sorted({round(i * (len(rows) - 1) / (samples - 1)) for i in range(samples)})
    return [rows[i] for i in picks]


# --- MongoDB-style filters, as the W&B server reads them ---------------------------------------


def _document(run: ServedRun) -> dict[str, Any]:
    return {
        "state": run.state,
        "tags": run.tags,
        "createdAt": _time(run.created_at),
        "display_name": run.display_name,
        "name": run.id,
        "group": run.group,
        "jobType": run.job_type,
        "config": {k: {"value": v} for k, v in run.config.items()},
        "summary_metrics": run.summary,
    }


def matches_filter(doc: dict[str, Any], filters: dict[str, Any]) -> bool:
    for key, condition in filters.items():
        if key == "$and":
            ok = all(matches_filter(doc, f) for f in condition)
        elif key == "$or":
            ok = any(matches_filter(doc, f) for f in condition)
        elif key == "$nor":
            ok = not any(matches_filter(doc, f) for f in condition)
        else:
            ok = _condition(_resolve(doc, key), condition, key)
        if not ok:
            return False
    return True


def _resolve(doc: dict[str, Any], key: str) -> Any:
    if key.startswith(("config.", "summary_metrics.")):
        head, _, rest = key.partition(".")
        node: Any = doc[head]
        for part in rest.split("."):
            if not isinstance(node, dict) or part not in node:
                return MISSING
            node = node[part]
        return node
    return doc.get(key, MISSING)


def _condition(value: Any, condition: Any, key: str) -> bool:
    if not (isinstance(condition, dict) and any(k.startswith("$") for k in condition)):
        return _equal(value, condition)
    for op, arg in condition.items():
        if op == "$eq":
            ok = _equal(value, arg)
        elif op == "$ne":
            ok = not _equal(value, arg)
        elif op == "$in":
            ok = any(_equal(value, a) for a in arg)
        elif op == "$nin":
            ok = not any(_equal(value, a) for a in arg)
        elif op == "$exists":
            ok = (value is not MISSING) == bool(arg)
        elif op == "$regex":
            ok = isinstance(value, str) and re.search(arg, value) is not None
        elif op in ("$gt", "$gte", "$lt", "$lte"):
            ok = _ordered(value, op, arg, key)
        else:
            raise ValueError(f"unsupported filter operator {op}")
        if not ok:
            return False
    return True


def _equal(value: Any, expected: Any) -> bool:
    if isinstance(value, list):
        return any(_equal(v, expected) for v in value)
    if value is MISSING:
        return expected is None
    if isinstance(value, bool) or isinstance(expected, bool):
        return type(value) is type(expected) and value == expected
    return bool(value == expected)


def _ordered(value: Any, op: str, bound: Any, key: str) -> bool:
    if key == "createdAt":
        value, bound = _moment(value), _moment(bound)
    elif not (_number(value) and _number(bound)) and not (
        isinstance(value, str) and isinstance(bound, str)
    ):
        return False
    return {
        "$gt": value > bound,
        "$gte": value >= bound,
        "$lt": value < bound,
        "$lte": value <= bound,
    }[op]


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _moment(text: str) -> datetime:
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


# --- batched queries: aliased `run` fields under one `project`, resolved field by field ---------

_TOKEN = re.compile(
    r"\s+|,|#[^\n]*|(?P<tok>\.\.\.|[{}():\[\]!=$@]|-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?"
    r'|"(?:[^"\\]|\\.)*"|[_A-Za-z][_0-9A-Za-z]*)'
)


class GraphQLError(Exception):
    """A query the server cannot answer: HTTP 400 with `errors`, as a GraphQL server does."""


@dataclass
class Selection:
    name: str
    alias: str
    arguments: dict[str, Any]
    fields: list[Selection]


def parse_operation(query: str, variables: dict[str, Any]) -> list[Selection]:
    """The top selection set of a query's operation, variables substituted. Enough GraphQL for
    what clients send to a W&B server: aliases, arguments (variables, literals, lists), nested
    selections; fragments are not used by the operations answered this way."""
    tokens = [m["tok"] for m in _TOKEN.finditer(query) if m["tok"]]
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take(expected: str | None = None) -> str:
        nonlocal position
        token = peek()
        if token is None or (expected is not None and token != expected):
            raise GraphQLError(f"Syntax Error: expected {expected or 'a token'}, found {token}")
        position += 1
        return token

    def value() -> Any:
        token = take()
        if token == "$":
            name = take()
            if name not in variables:
                raise GraphQLError(f'Variable "${name}" is not defined')
            return variables[name]
        if token == "[":
            items = []
            while peek() != "]":
                items.append(value())
            take("]")
            return items
        if token.startswith('"'):
            return json.loads(token)
        if token in ("true", "false", "null"):
            return {"true": True, "false": False, "null": None}[token]
        if re.fullmatch(r"-?\d+", token):
            return int(token)
        if re.fullmatch(r"-?\d[\d.eE+-]*", token):
            return float(token)
        return token  # an enum value

    def selection_set() -> list[Selection]:
        take("{")
        found = []
        while peek() != "}":
            name = take()
            alias = name
            if peek() == ":":
                take(":")
                name = take()
            arguments = {}
            if peek() == "(":
                take("(")
                while peek() != ")":
                    key = take()
                    take(":")
                    arguments[key] = value()
                take(")")
            fields = selection_set() if peek() == "{" else []
            found.append(Selection(name, alias, arguments, fields))
        take("}")
        return found

    take("query")
    if peek() not in ("{", "("):
        take()  # the operation's name
    if peek() == "(":  # variable definitions: checked against use, not against types
        depth = 0
        while True:
            token = take()
            depth += {"(": 1, ")": -1}.get(token, 0)
            if depth == 0:
                break
    return selection_set()
