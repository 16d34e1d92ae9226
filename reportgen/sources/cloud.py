"""A W&B server (cloud or self-hosted) through the official `wandb.Api` client.

What it costs, per build (see docs/wandb-server.md):
- one `Viewer` request (the client checks the credentials) and one `Runs` request per 100 runs
  listed: the listing is lazy (no config, no summary) and the spec's filters that the server can
  evaluate are sent with it (state, tags, creation time, display-name regex, config values whose
  keys have no dots). Every filter is applied locally again afterwards.
- config and summary of the runs that pass the filters and are new or changed since the cache
  last saw them, METADATA_BATCH runs per request (aliased `run` fields); an unchanged run's
  come from the cache.
- history, exact (never the server's sampling), by a bounded pool of workers: nothing for an
  unchanged run; the whole history of several new runs per request (`_history_batch`, kept only
  when provably every record); `scan_history` for a long run, a run that grew (only the steps
  after the cached last step) and any run a batch could not answer exactly.

Rate limits (429) and server errors are retried with backoff inside wandb-core, a bounded
number of times (RETRY_LIMITS, unless the user set wandb's own variables), and one request waits
at most WANDB_HTTP_TIMEOUT (wandb's default, 19 s) even when the server asks for
`Retry-After: 3600`. A run whose metadata or history fails (a malformed answer, a timeout) is
tried again ATTEMPTS times in all, then reported as a failure for that run, and the rest is
built. Cached history is trusted only where a fetch overlapping its last steps agrees with it:
a run rewound to an earlier step and grown again is fetched anew.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, as_completed, wait
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import numpy as np

from reportgen.cache import (
    META,
    CacheArea,
    CacheDamaged,
    RunCache,
    run_from_dict,
    run_to_dict,
)
from reportgen.errors import SourceError
from reportgen.runs import STEP, Column, History, Run
from reportgen.select import matches
from reportgen.sources import Progress, RunFetchError
from reportgen.spec import RunFilters, RunsSpec, SourceSpec

# Server states → reportgen states. Runs not started yet or being preempted still run.
SERVER_STATES = {
    "running": "running",
    "pending": "running",
    "preempting": "running",
    "finished": "finished",
    "failed": "failed",
    "crashed": "crashed",
    "killed": "killed",
    "preempted": "killed",
}
LISTING_PAGE = 100
ATTEMPTS = 3  # a run's metadata or history: tries in all before the run is left out
RETRY_PAUSES = (1.0, 3.0)  # seconds between those tries
OVERLAP_STEPS = 5  # cached steps fetched again to check that the run was not rewound
# wandb-core's GraphQL retries (defaults: 20 tries, waits up to 60 s) unless the user set them.
RETRY_LIMITS = {
    "x_graphql_retry_max": ("WANDB__GRAPHQL_RETRY_MAX", 4),
    "x_graphql_retry_wait_min_seconds": ("WANDB__GRAPHQL_RETRY_WAIT_MIN_SECONDS", 1.0),
    "x_graphql_retry_wait_max_seconds": ("WANDB__GRAPHQL_RETRY_WAIT_MAX_SECONDS", 10.0),
}
# One wait for wandb-core's answer. `scan_history` waits without a limit (wandb 0.31), so a server
# answering `Retry-After: 3600` would hold a run for an hour; other requests already stop after
# WANDB_HTTP_TIMEOUT. Generous, because a history page may be a large Parquet download.
MAX_WAIT_ENV = "REPORTGEN_MAX_WAIT"
MAX_WAIT_SECONDS = 120.0
RATE_LIMIT_WORDS = ("429", "rate limit", "too many requests", "did not respond in time")
HISTORY_PAGE = 1000
# Several runs in one GraphQL request (aliased `run` fields): a round trip and a rate-limit
# token per batch instead of per run. Bounded so that one answer stays a few megabytes.
METADATA_BATCH = 25  # runs whose config and summary one request asks for
HISTORY_BATCH_RUNS = 20  # runs whose whole history one request asks for...
# ...holding at most this many logged values in all (~10 MB of JSON): runs logging hundreds of
# keys get fewer records per request. A run with more is scanned page by page.
HISTORY_BATCH_VALUES = 250_000
LAST_STEP = 2**53  # `history(maxStep:)` past any step (exclusive; JSON-safe)
LISTING = "listing.json"
CONSOLE_TAIL_LINES = 60  # as many as the offline reader keeps
EXIT_CODE_QUERY = """
query RunExitCode($project: String!, $entity: String!, $name: String!) {
    project(name: $project, entityName: $entity) { run(name: $name) { exitcode } }
}
"""


class _QuietScanCleanup(logging.Filter):
    """wandb 0.31 logs an ERROR each time a finished `scan_history` is garbage collected (the
    cleanup's reply has no mailbox slot). It is harmless; users would only see noise on stderr."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Received response with no mailbox slot" not in record.getMessage()


logging.getLogger("wandb.sdk.mailbox.mailbox").addFilter(_QuietScanCleanup())


class CloudSource:
    """Runs of one W&B project, listed lazily and fetched through the local cache."""

    kind = "wandb"

    def __init__(self, spec: SourceSpec, cache: RunCache | None = None):
        assert spec.entity and spec.project
        self.entity = spec.entity
        self.project = spec.project
        self.base_url = _without_credentials(spec.base_url) if spec.base_url else None
        self.workers = max(1, spec.workers)
        self.cache = cache
        self.area: CacheArea | None = (
            cache.area(
                "wandb",
                {"base_url": self.base_url or "", "entity": self.entity, "project": self.project},
            )
            if cache
            else None
        )
        self.notes: list[str] = []
        self._api: Any = None
        self._handles: dict[str, Any] = {}
        self._fingerprints: dict[str, dict[str, Any]] = {}
        self._values: dict[str, int] = {}  # run id → values logged, from its historyKeys
        self._failed: dict[str, str] = {}
        self._lock = threading.Lock()
        self._started: dict[str, tuple[str, float]] = {}  # run id → (name, monotonic start)
        self._started_lock = threading.Lock()

    @property
    def path(self) -> str:
        return f"{self.entity}/{self.project}"

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "type": self.kind,
            "entity": self.entity,
            "project": self.project,
        }
        if self.base_url:
            described["base_url"] = self.base_url
        return described

    # --- listing -------------------------------------------------------------------------------

    def list_runs(
        self,
        runs: RunsSpec | None = None,
        progress: Progress | None = None,
        now: datetime | None = None,
    ) -> list[Run]:
        """Every run the server offers for the spec, with full metadata for those that pass it."""
        runs = runs or RunsSpec()
        now = now or datetime.now(timezone.utc)
        if self.cache is not None and self.cache.offline:
            return self._list_from_cache(runs, now)
        api = self._connect()
        if runs.ids:
            listed = self._fetch_by_id(api, runs.ids, progress)
        else:
            listed = self._list(api, server_filters(runs.filters, now), progress)
        if self.area is not None and listed:
            self.area.update_document(LISTING, {run.id: _listing_entry(run) for run in listed})
        full = self._complete(listed, runs, now, progress)
        return [full.get(run.id, run) for run in listed]

    def _list(self, api: Any, filters: dict[str, Any], progress: Progress | None) -> list[Run]:
        listed = []
        try:
            pages = api.runs(
                self.path, filters=filters, order="-created_at", per_page=LISTING_PAGE, lazy=True
            )
            for public in pages:
                run = self._light_run(public)
                self._handles[run.id] = public
                listed.append(run)
                if progress:
                    progress(len(listed), max(len(pages), len(listed)), f"listing {run.name}")
        except Exception as exc:
            raise self._listing_error(exc) from None
        return listed

    def _fetch_by_id(self, api: Any, ids: Sequence[str], progress: Progress | None) -> list[Run]:
        """Runs named in the spec: one `Run` request each, no listing of the whole project."""

        def fetch(run_id: str) -> Any:
            return api.run(f"{self.path}/{run_id}")

        listed, missing, errors = [], [], []
        with _pool(self.workers) as pool:
            futures = {pool.submit(fetch, run_id): run_id for run_id in ids}
            for done, future in enumerate(as_completed(futures), start=1):
                run_id = futures[future]
                try:
                    public = future.result()
                except Exception as exc:
                    if _not_found(exc):
                        missing.append(run_id)
                    else:
                        errors.append(exc)
                    continue
                run = self._light_run(public)
                self._handles[run.id] = public
                listed.append(run)
                if progress:
                    progress(done, len(ids), f"reading {run.name}")
        if errors and not listed:
            raise self._listing_error(errors[0])
        if missing and not listed and not errors:
            raise SourceError(
                f"source: none of the runs in runs.ids was found in W&B project {self.path} on "
                f"{self._host()} (is the project name right, and can these credentials see it?)"
            )
        for run_id in sorted(missing):
            self.notes.append(f"run id {run_id} (runs.ids) was not found in {self.path}")
        for error in errors:
            self.notes.append(f"a run named in runs.ids could not be read: {self._message(error)}")
        return listed

    def _complete(
        self, listed: list[Run], runs: RunsSpec, now: datetime, progress: Progress | None
    ) -> dict[str, Run]:
        """Config and summary for the runs the spec can choose (cache first, then the server)."""
        cheap = dataclasses.replace(runs.filters, config={})
        candidates = [run for run in listed if matches(run, cheap, now)]
        candidates.sort(key=_newest_first)
        config_filters = RunFilters(config=runs.filters.config)
        if runs.limit is not None and not runs.filters.config:
            candidates = candidates[: runs.limit]
        full: dict[str, Run] = {}
        passed = 0
        start = 0
        while start < len(candidates):
            if runs.limit is not None and passed >= runs.limit:
                break
            size = len(candidates) if runs.limit is None else max(self.workers, runs.limit)
            batch = candidates[start : start + size]
            start += size
            loaded = self._load_metadata(batch, progress, done=len(full), total=len(candidates))
            full.update(loaded)
            passed += sum(1 for run in loaded.values() if matches(run, config_filters, now))
        return full

    def _load_metadata(
        self, batch: list[Run], progress: Progress | None, *, done: int, total: int
    ) -> dict[str, Run]:
        loaded: dict[str, Run] = {}
        to_fetch: list[Run] = []
        for run in batch:
            cached = self._cached_run(run)
            if cached is not None:
                loaded[run.id] = cached
            else:
                to_fetch.append(run)
        if not to_fetch:
            return loaded

        def fetched(run: Run) -> None:
            nonlocal done
            done += 1
            if progress:
                progress(min(done, total), total, f"reading {run.name}")

        # Listed (lazy) runs: their config and summary METADATA_BATCH at a time; runs named by
        # id were read whole already. A batch that fails is asked for again run by run, so one
        # run the server cannot answer costs only that run.
        lazy = [run for run in to_fetch if getattr(self._handles.get(run.id), "_lazy", True)]
        single = [run for run in to_fetch if run not in lazy]
        with _pool(self.workers) as pool:
            batches = {
                pool.submit(self._metadata_batch, group): group
                for group in _chunks(lazy, METADATA_BATCH)
            }
            for batch_done in as_completed(batches):
                group = batches[batch_done]
                try:
                    answered = batch_done.result()
                except Exception:
                    answered = {}
                for run in group:
                    if run.id in answered:
                        loaded[run.id] = answered[run.id]
                        fetched(run)
                    else:
                        single.append(run)
            futures = {
                pool.submit(self._attempts, self._full_run, run, what="metadata"): run
                for run in single
            }
            for future in as_completed(futures):
                run = futures[future]
                try:
                    loaded[run.id] = future.result()
                except Exception as exc:
                    self._failed[run.id] = (
                        f"its config and summary could not be read: {self._message(exc)}"
                    )
                fetched(run)
        return loaded

    def _metadata_batch(self, group: Sequence[Run]) -> dict[str, Run]:
        """Config, summary and size (history keys) of several runs in one request; a run the
        answer lacks (deleted since the listing, or an answer of the wrong shape) is left out of
        the result."""
        fields = "name config summaryMetrics historyKeys"
        nodes = self._runs_query("RunsMetadata", group, lambda i: fields)
        found = {}
        for run, node in zip(group, nodes, strict=True):
            if node is None:
                continue
            self._note_values(run, node.get("historyKeys"))
            config, internal = _config_from_server(node.get("config"))
            full = dataclasses.replace(
                run,
                config=config,
                summary=_summary(_json_object(node.get("summaryMetrics"))),
                step_metrics=_step_metrics(internal),
            )
            if full.state == "failed":
                full = self._failure_details(self._handles[run.id], full)
            found[run.id] = full
        return found

    def _runs_query(
        self,
        operation: str,
        group: Sequence[Run],
        fields: Callable[[int], str],
        variables: Mapping[str, tuple[str, Any]] | None = None,
        timeout: float | None = None,
    ) -> list[dict[str, Any] | None]:
        """One GraphQL request asking the same questions of several runs, one aliased `run`
        field each (`fields(i)` is the selection for the i-th run); the answers in order, None
        for a run the server did not return."""
        names = {f"run{i}": ("String!", run.id) for i, run in enumerate(group)}
        names.update(variables or {})
        declared = ", ".join(f"${name}: {kind}" for name, (kind, _) in names.items())
        selections = "\n".join(
            f"        run{i}: run(name: $run{i}) {{ {fields(i)} }}" for i in range(len(group))
        )
        query = (
            f"query {operation}($entity: String!, $project: String!, {declared}) {{\n"
            f"    project(name: $project, entityName: $entity) {{\n{selections}\n    }}\n}}"
        )
        values = {name: value for name, (_, value) in names.items()}
        values.update(entity=self.entity, project=self.project)
        data = self._connect()._service_api.execute_graphql(query, values, timeout=timeout)
        project = data.get("project") if isinstance(data, dict) else None
        if not isinstance(project, dict):
            raise ValueError(f"the server's answer to {operation} has no project {self.path}")
        answers: list[dict[str, Any] | None] = []
        for i, run in enumerate(group):
            node = project.get(f"run{i}")
            answers.append(node if isinstance(node, dict) and node.get("name") == run.id else None)
        return answers

    def _cached_run(self, light: Run) -> Run | None:
        """The cached full run when its fingerprint still matches the listing's."""
        if self.area is None:
            return None
        try:
            entry = self.area.read(light.id, history=False)
            if entry is None or entry.meta.get("fingerprint") != self._fingerprints.get(light.id):
                return None
            return _with_listing_fields(run_from_dict(entry.meta.get("run") or {}), light)
        except CacheDamaged:
            return None  # reported (and replaced) when its history is read

    def _full_run(self, light: Run) -> Run:
        public = self._handles[light.id]
        if getattr(public, "_lazy", False):
            public.load_full_data()
        internal = public.rawconfig.get("_wandb") or {}
        self._note_values(light, public._attrs.get("historyKeys"))
        run = dataclasses.replace(
            light,
            config=dict(public.config),
            summary=_summary(public.summary_metrics),
            step_metrics=_step_metrics(internal),
        )
        if run.state == "failed":
            run = self._failure_details(public, run)
        return run

    def _failure_details(self, public: Any, run: Run) -> Run:
        """A failed run's exit code and the end of its console output (the crash's cause).

        The console tail comes through `run.console_logs(last=...)`. The public run fragment
        has no exit code, so it is asked for with the field the client's own sweep queries
        use; a server without it leaves the code unknown.
        """
        notes = list(run.read_notes)
        tail: tuple[str, ...] = ()
        try:
            tail = tuple(line.content for line in public.console_logs(last=CONSOLE_TAIL_LINES))
        except Exception as exc:
            notes.append(f"its console output could not be read: {self._message(exc)}")
        code = None
        try:
            found = public._exec(EXIT_CODE_QUERY)["project"]["run"]["exitcode"]
            code = int(found) if found is not None else None
        except Exception:
            code = None
        return dataclasses.replace(run, exit_code=code, console_tail=tail, read_notes=tuple(notes))

    def _light_run(self, public: Any) -> Run:
        attrs = public._attrs
        state = str(attrs.get("state") or public.state or "")
        self._fingerprints[public.id] = {
            "state": state,
            "heartbeat_at": attrs.get("heartbeatAt"),
            "history_line_count": attrs.get("historyLineCount"),
        }
        mapped = SERVER_STATES.get(state, state or "running")
        return Run(
            id=public.id,
            name=attrs.get("displayName") or public.id,
            state=mapped,
            project=self.project,
            entity=self.entity,
            group=attrs.get("group") or None,
            job_type=attrs.get("jobType") or None,
            notes=attrs.get("notes") or None,
            tags=tuple(attrs.get("tags") or ()),
            created_at=_timestamp(attrs.get("createdAt")),
            heartbeat_at=_timestamp(attrs.get("heartbeatAt")),
            exit_code=0 if mapped == "finished" else None,
            url=_safe_url(public),
        )

    def _list_from_cache(self, runs: RunsSpec, now: datetime) -> list[Run]:
        """--offline: the last listing and the cached entries, or a clear error."""
        listing = self.area.read_document(LISTING) if self.area is not None else None
        if not isinstance(listing, dict) or not listing:
            raise SourceError(
                f"--offline: the cache at {self._cache_root()} holds no runs of W&B project "
                f"{self.path}; build once without --offline to fill it"
            )
        try:
            listed = [_listing_run(node, self.entity, self.project) for node in listing.values()]
        except (CacheDamaged, AttributeError) as exc:
            raise SourceError(
                f"--offline: the cached run listing in {self._cache_root()} is damaged ({exc}); "
                "build once without --offline to fetch it again"
            ) from None
        if runs.ids:
            wanted = set(runs.ids)
            listed = [run for run in listed if run.id in wanted]
        cheap = dataclasses.replace(runs.filters, config={})
        full: dict[str, Run] = {}
        missing = []
        for run in listed:
            if not matches(run, cheap, now):
                continue
            entry = self._offline_entry(run, history=False)
            if entry is None:
                missing.append(run)
                continue
            try:
                where = self.area.entry_file(run.id, META).name  # type: ignore[union-attr]
                full[run.id] = run_from_dict(entry.meta.get("run") or {}, where)
            except CacheDamaged as exc:
                raise SourceError(
                    f"--offline: the cached entry of run {run.name} ({run.id}) is damaged "
                    f"({exc}); build once without --offline to fetch it again"
                ) from None
        if missing:
            raise self._missing_offline(missing)
        return [full.get(run.id, run) for run in listed]

    # --- history -------------------------------------------------------------------------------

    def history(self, run: Run, keys: Sequence[str] | None = None) -> History:
        """One run's full history (through the cache); raises RunFetchError when it fails."""
        result = self.histories([run])[run.id]
        if isinstance(result, RunFetchError):
            raise result
        return result

    def histories(
        self, runs: Sequence[Run], progress: Progress | None = None
    ) -> dict[str, History | RunFetchError]:
        """Every run's history: cached when unchanged, else fetched by the pool of workers.

        New runs that are not long come several to a request (`_history_batch`); a run that
        grew, a long run, and any run a batch could not answer exactly are scanned on their own.
        """
        results: dict[str, History | RunFetchError] = {}
        plans = []
        for run in runs:
            if run.id in self._failed:
                results[run.id] = RunFetchError(run.id, run.name, self._failed[run.id])
                continue
            plan = self._plan(run)
            if isinstance(plan, History):
                results[run.id] = plan
            else:
                plans.append((run, *plan))
        done = len(results)
        if progress:  # restarts the count the metadata phase left at its total
            progress(done, len(runs), "cached history" if results else "history")
        if not plans:
            return {run.id: results[run.id] for run in runs}
        watch = getattr(progress, "watch", None)
        if watch is not None:
            watch(self.in_flight)
        whole = [run for run, min_step, base in plans if base is None and self._batchable(run)]
        batched = {run.id for run in whole}
        scans = [plan for plan in plans if plan[0].id not in batched]
        with _pool(min(self.workers, len(plans))) as pool:
            pending: dict[Future[Any], list[Run]] = {}
            batches: set[Future[Any]] = set()

            def scan(run: Run, min_step: int = 0, base: History | None = None) -> None:
                future = pool.submit(
                    self._attempts, self._timed_fetch, run, min_step, base, what="history"
                )
                pending[future] = [run]

            for group in self._history_groups(whole):
                batch = pool.submit(self._history_batch, group)
                pending[batch] = group
                batches.add(batch)
            for scanned in scans:
                scan(*scanned)
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in finished:
                    group = pending.pop(future)
                    try:
                        answer = future.result()
                    except Exception as exc:
                        answer = exc
                    if future in batches:
                        # A batch: runs it could not answer exactly are scanned on their own.
                        answered = answer if isinstance(answer, dict) else {}
                        for run in group:
                            if run.id in answered:
                                results[run.id] = answered[run.id]
                                done += 1
                                if progress:
                                    progress(done, len(runs), f"history {run.name}")
                            else:
                                scan(run)
                        continue
                    (run,) = group
                    done += 1
                    if isinstance(answer, Exception):
                        message = f"its history could not be fetched: {self._message(answer)}"
                        results[run.id] = RunFetchError(run.id, run.name, message)
                    else:
                        results[run.id] = answer
                    if progress:
                        progress(done, len(runs), f"history {run.name}")
        return {run.id: results[run.id] for run in runs}

    def _note_values(self, run: Run, history_keys: Any) -> None:
        """How many values the run logged: per key, the records holding it (`typeCounts`)."""
        try:
            keys = _json_object(history_keys).get("keys") or {}
            self._values[run.id] = sum(
                int(kind.get("count") or 0)
                for entry in keys.values()
                for kind in entry.get("typeCounts") or ()
            )
        except (TypeError, ValueError, AttributeError):
            self._values.pop(run.id, None)

    def _batchable(self, run: Run) -> bool:
        """A new run whose whole history fits in one request (its size known)."""
        lines = (self._fingerprints.get(run.id) or {}).get("history_line_count") or 0
        values = self._values.get(run.id)
        return lines > 0 and values is not None and values + lines <= HISTORY_BATCH_VALUES

    def _history_groups(self, runs: Sequence[Run]) -> list[list[Run]]:
        """Runs in groups of at most HISTORY_BATCH_RUNS runs and HISTORY_BATCH_VALUES values,
        and at least one group per worker while there are runs enough, of about equal size:
        the requests go out together, and none waits for a round of its own."""
        if not runs:
            return []
        sizes = [
            self._values[run.id] + self._fingerprints[run.id]["history_line_count"] for run in runs
        ]  # the values, and each record's step
        total = sum(sizes)
        count = max(
            min(self.workers, len(runs)),
            -(-total // HISTORY_BATCH_VALUES),
            -(-len(runs) // HISTORY_BATCH_RUNS),
        )
        share = total / count
        groups: list[list[Run]] = [[]]
        before = 0  # values in the groups before this run
        in_group = 0
        for run, size in zip(runs, sizes, strict=True):
            over = in_group + size > HISTORY_BATCH_VALUES or len(groups[-1]) >= HISTORY_BATCH_RUNS
            next_share = before + size / 2 > share * len(groups)  # mostly the next group's share
            if groups[-1] and (over or next_share):
                groups.append([])
                in_group = 0
            groups[-1].append(run)
            in_group += size
            before += size
        return groups

    def _history_batch(self, group: Sequence[Run]) -> dict[str, History]:
        """The whole history of several runs in one request, through the run's `history`
        field (every record in the step range unless there are more than `samples`).

        A run's answer is kept only when it is provably every record: at least as many as the
        listing counted (records without a step are not served by this field) and fewer than
        `samples` asked (so none were sampled away). Any other run is left out of the result.
        """
        asked = {}
        for run in group:
            lines = self._fingerprints[run.id]["history_line_count"]
            asked[run.id] = lines + max(100, lines // 4)  # room for records logged meanwhile
        with self._started_lock:
            for run in group:
                self._started[run.id] = (run.name, time.monotonic())
        try:
            nodes = self._runs_query(
                "RunsHistory",
                group,
                lambda i: f"name history(minStep: 0, maxStep: $last, samples: $samples{i})",
                {"last": ("Int64!", LAST_STEP)}
                | {f"samples{i}": ("Int!", asked[run.id]) for i, run in enumerate(group)},
                timeout=max_wait_seconds(),  # as long as a history scan may wait
            )
        finally:
            with self._started_lock:
                for run in group:
                    self._started.pop(run.id, None)
        found = {}
        for run, node in zip(group, nodes, strict=True):
            records = node.get("history") if node is not None else None
            if not isinstance(records, list):
                continue
            listed = self._fingerprints[run.id]["history_line_count"]
            if not listed <= len(records) < asked[run.id]:
                continue
            try:
                history = records_to_history(records)
            except (TypeError, ValueError, AttributeError):
                continue
            self._store(run, history)
            found[run.id] = history
        return found

    def _plan(self, run: Run) -> History | tuple[int, History | None]:
        """The cached history, or where to start fetching and what to add the new steps to."""
        if self.cache is not None and self.cache.offline:
            entry = self._offline_entry(run, history=True)
            if entry is None or entry.history is None:
                raise self._missing_offline([run])
            return entry.history
        fingerprint = self._fingerprints.get(run.id)
        if fingerprint and not fingerprint.get("history_line_count"):
            self._store(run, History())
            return History()
        entry = None
        if self.area is not None:
            try:
                entry = self.area.read(run.id)
            except CacheDamaged as exc:
                self.cache.warn(  # type: ignore[union-attr]
                    f"cache: the entry of run {run.name} ({run.id}) in {self.area.path} was "
                    f"damaged ({exc}); fetched it again"
                )
        if entry is None or entry.history is None:
            return (0, None)
        if entry.meta.get("fingerprint") == fingerprint:
            return entry.history
        cached_lines = (entry.meta.get("fingerprint") or {}).get("history_line_count") or 0
        if fingerprint and (fingerprint.get("history_line_count") or 0) < cached_lines:
            return (0, None)  # the history shrank (rewound or deleted): start over
        steps = entry.history.steps()
        if not len(steps):
            return (0, None)
        # Fetch the last few cached steps again: `_fetch` compares them to notice a rewind.
        return (int(steps[max(0, len(steps) - OVERLAP_STEPS)]), entry.history)

    def _attempts(self, fetch: Any, run: Run, *args: Any, what: str) -> Any:
        """`fetch(run, *args)`, tried again after a pause when it fails (a malformed answer,
        a timeout); a run that is not found is not tried again."""
        for attempt in range(ATTEMPTS):
            try:
                return fetch(run, *args)
            except Exception as exc:
                if attempt == ATTEMPTS - 1 or _not_found(exc):
                    raise
                if what == "history":
                    self._handles.pop(run.id, None)  # a fresh handle for the next try
                threading.Event().wait(RETRY_PAUSES[min(attempt, len(RETRY_PAUSES) - 1)])
        raise AssertionError("unreachable")  # pragma: no cover

    def in_flight(self) -> list[tuple[str, float]]:
        """History fetches under way: (run name, seconds so far), for progress lines."""
        now = time.monotonic()
        with self._started_lock:
            return [(name, now - start) for name, start in self._started.values()]

    def _timed_fetch(self, run: Run, min_step: int, base: History | None) -> History:
        with self._started_lock:
            self._started[run.id] = (run.name, time.monotonic())
        try:
            return self._fetch(run, min_step, base)
        finally:
            with self._started_lock:
                self._started.pop(run.id, None)

    def _fetch(self, run: Run, min_step: int, base: History | None) -> History:
        fetched = self._scan(run, min_step)
        if base is not None and not _agrees(base, fetched, min_step):
            # The run was rewound (or its history rewritten) since it was cached.
            base, fetched = None, self._scan(run, 0)
        history = base.merged(fetched) if base is not None else fetched
        self._store(run, history)
        return history

    def _scan(self, run: Run, min_step: int) -> History:
        public = self._handles.get(run.id)
        if public is None:
            public = self._connect().run(f"{self.path}/{run.id}")
            self._handles[run.id] = public
        rows = public.scan_history(page_size=HISTORY_PAGE, min_step=min_step, use_cache=False)
        return rows_to_history(rows)

    def _store(self, run: Run, history: History) -> None:
        if self.area is None:
            return
        steps = history.steps()
        meta = {
            "fingerprint": self._fingerprints.get(run.id),
            "run": run_to_dict(run),
            "last_step": int(steps[-1]) if len(steps) else -1,
        }
        self.area.write(run.id, meta, history)

    # --- connecting and errors -----------------------------------------------------------------

    def _connect(self) -> Any:
        """A `wandb.Api` for the project's server; credentials exactly as wandb reads them."""
        with self._lock:
            if self._api is not None:
                return self._api
            try:
                import wandb
                from wandb.errors import AuthenticationError
                from wandb.errors import UsageError as WandbUsageError
            except ImportError:  # pragma: no cover - wandb is a dependency
                raise SourceError("source.type wandb needs the `wandb` package") from None
            host = self._host()
            self._check_credentials(host)
            _limit_retries()
            overrides = {"entity": self.entity}
            if self.base_url:
                overrides["base_url"] = self.base_url
            try:
                self._api = wandb.Api(overrides=overrides)
                _bound_waits(self._api, max_wait_seconds())
            except AuthenticationError as exc:
                if _rate_limited(exc):
                    raise SourceError(
                        f"source: the W&B server at {host} is rate limiting or not answering "
                        f"(HTTP 429 or a timeout while checking the credentials: "
                        f"{self._message(exc)}); try again later"
                    ) from None
                raise self._server_failing(host, exc) or SourceError(
                    f"source: the W&B server at {host} refused the credentials "
                    f"({self._message(exc)}); check WANDB_API_KEY or ~/.netrc"
                ) from None
            except WandbUsageError:
                raise self._no_credentials(host) from None
            except Exception as exc:
                raise SourceError(
                    f"source: cannot reach the W&B server at {host}: {self._message(exc)}"
                ) from None
            return self._api

    def _check_credentials(self, host: str) -> None:
        """Fail before wandb would prompt for a key on a terminal."""
        try:
            from wandb.errors import AuthenticationError
            from wandb.sdk.lib import wbauth
        except ImportError:  # pragma: no cover - the internal module moved: let wandb decide
            return
        try:
            auth = wbauth.authenticate_session(
                host=host, source="reportgen", prompt=False, update_session=False
            )
        except AuthenticationError as exc:
            raise self._server_failing(host, exc) or SourceError(
                f"source: the W&B credentials for {host} are not valid: {self._message(exc)}"
            ) from None
        if auth is None:
            raise self._no_credentials(host)

    def _server_failing(
        self, host: str, exc: BaseException, doing: str = "checking the credentials"
    ) -> SourceError | None:
        """A credentials check that failed because the server kept answering 5xx is a server
        failure, not a wrong key: say so, or the user goes hunting for a key problem."""
        message = self._message(exc)
        status = re.search(r"HTTP (5\d\d)", message)
        if status is None:
            return None
        return SourceError(
            f"source: the W&B server at {host} is failing: it answered HTTP {status.group(1)} "
            f"(a server error, not a problem with the API key) to every attempt while {doing} "
            f"({message}); try again later, or ask the server's administrator"
        )

    def _no_credentials(self, host: str) -> SourceError:
        return SourceError(
            f"source: no W&B credentials for {host}: set WANDB_API_KEY, or run `wandb login` "
            "(which stores the key in ~/.netrc)"
        )

    def _host(self) -> str:
        if self.base_url:
            return self.base_url
        url = os.environ.get("WANDB_BASE_URL")
        if url:
            return _without_credentials(url)
        try:
            from wandb.sdk import wandb_setup

            return _without_credentials(str(wandb_setup.singleton().settings.base_url))
        except Exception:  # pragma: no cover - defensive
            return "https://api.wandb.ai"

    def _listing_error(self, exc: Exception) -> SourceError:
        message = self._message(exc)
        if _not_found(exc):
            return SourceError(
                f"source: W&B project {self.path} was not found on {self._host()} "
                "(check source.entity and source.project, and that these credentials can see it)"
            )
        failing = self._server_failing(self._host(), exc, f"listing the runs of {self.path}")
        if failing is not None:
            return failing
        lowered = message.lower()
        if any(
            word in lowered for word in ("permission", "forbidden", "not authorized", "http 401")
        ):
            return SourceError(
                f"source: the W&B server at {self._host()} refused access to {self.path}: {message}"
            )
        return SourceError(
            f"source: listing the runs of {self.path} on {self._host()} failed: {message}"
        )

    def _message(self, exc: BaseException) -> str:
        """An exception as one line, with any credential removed."""
        text = " ".join(str(exc).split()) or type(exc).__name__
        for secret in self._secrets():
            text = text.replace(secret, "[hidden]")
        return text[:300]

    def _secrets(self) -> list[str]:
        found = [os.environ.get("WANDB_API_KEY") or ""]
        api = self._api
        if api is not None:
            found.append(getattr(api, "api_key", None) or "")
        return [s for s in found if len(s) >= 8]

    def _offline_entry(self, run: Run, *, history: bool) -> Any:
        if self.area is None:
            return None
        try:
            return self.area.read(run.id, history=history)
        except CacheDamaged as exc:
            raise SourceError(
                f"--offline: the cached entry of run {run.name} ({run.id}) is damaged ({exc}); "
                "build once without --offline to fetch it again"
            ) from None

    def _missing_offline(self, missing: Sequence[Run]) -> SourceError:
        names = ", ".join(f"{run.name} ({run.id})" for run in missing[:5])
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        return SourceError(
            f"--offline: the cache at {self._cache_root()} lacks {len(missing)} run(s) of "
            f"{self.path} that the spec selects: {names}{more}; build once without --offline"
        )

    def _cache_root(self) -> str:
        return str(self.cache.root) if self.cache is not None else "(no cache)"


# --- pushing filters to the server -------------------------------------------------------------


@contextlib.contextmanager
def _pool(workers: int) -> Iterator[ThreadPoolExecutor]:
    """A pool of fetch threads that, when the build is stopped (a signal, the deadline), is
    left behind instead of waited for: a fetch may be inside a long wait for the server."""
    pool = ThreadPoolExecutor(workers)
    try:
        yield pool
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown(wait=True)


def _limit_retries() -> None:
    """Bound wandb-core's retries for the Api clients made from now on (each copies these
    settings), unless the user chose through wandb's environment variables."""
    try:
        from wandb.sdk import wandb_setup

        settings = wandb_setup.singleton().settings
    except Exception:  # pragma: no cover - wandb's internals moved: keep its defaults
        return
    for name, (variable, value) in RETRY_LIMITS.items():
        if variable not in os.environ and hasattr(settings, name):
            setattr(settings, name, value)


def max_wait_seconds() -> float:
    """REPORTGEN_MAX_WAIT (seconds), else MAX_WAIT_SECONDS; a bad value is a usage error."""
    text = os.environ.get(MAX_WAIT_ENV, "").strip()
    if not text:
        return MAX_WAIT_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = 0.0
    if not 0 < seconds <= 86400:
        from reportgen.errors import UsageError

        raise UsageError(f"{MAX_WAIT_ENV} must be seconds between 0 and 86400, got {text!r}")
    return seconds


def _bound_waits(api: Any, seconds: float) -> None:
    """Give the Api's requests that would wait without a limit (history scans) a limit."""
    service: Any = getattr(api, "_service_api", None)
    send = getattr(service, "send_api_request", None)
    if send is None:  # pragma: no cover - wandb's internals moved: keep its behaviour
        return

    def send_with_limit(request: Any, timeout: float | None = None) -> Any:
        return send(request, timeout=seconds if timeout is None else timeout)

    service.send_api_request = send_with_limit


def _rate_limited(exc: BaseException) -> bool:
    text = str(exc).lower()
    return any(word in text for word in RATE_LIMIT_WORDS)


def _agrees(cached: History, fetched: History, from_step: int) -> bool:
    """Whether the fetched steps from `from_step` on match what the cache holds for them."""
    keys = cached.keys()
    for key in keys:
        old = cached.points(key)
        kept = old.xs >= from_step
        xs, before = old.xs[kept], old.values[kept]
        if not len(xs):
            continue
        now, _ = fetched.points(key).at(xs)  # NaN where the fetched steps lack a cached one
        same = (before == now) | (np.isnan(before) & np.isnan(now))
        if not bool(np.all(same)):
            return False
    return True


def server_filters(filters: RunFilters, now: datetime) -> dict[str, Any]:
    """The part of the filters the server can evaluate, as W&B's MongoDB-style filter.

    It never rejects a run the local filters would keep (they are applied again afterwards):
    whatever cannot be expressed exactly is left out — config keys with dots (the server reads
    dots as nesting), regular expressions outside the syntax RE2 shares with Python, booleans
    and nulls. Numbers are compared as numbers, with a tolerance wider than the local one.
    """
    clauses: list[dict[str, Any]] = []
    if filters.states:
        states = sorted(s for s, ours in SERVER_STATES.items() if ours in filters.states)
        clauses.append({"state": {"$in": states}})
    if filters.tags_any:
        clauses.append({"tags": {"$in": list(filters.tags_any)}})
    clauses.extend({"tags": {"$in": [tag]}} for tag in filters.tags_all)
    if filters.tags_none:
        clauses.append({"tags": {"$nin": list(filters.tags_none)}})
    if filters.name is not None and _portable_regex(filters.name):
        clauses.append({"display_name": {"$regex": filters.name}})
    if filters.created_after:
        moment = filters.created_after.resolve(now) - timedelta(seconds=1)
        clauses.append({"createdAt": {"$gte": _server_time(moment)}})
    if filters.created_before:
        moment = filters.created_before.resolve(now) + timedelta(seconds=1)
        clauses.append({"createdAt": {"$lte": _server_time(moment)}})
    for key, comparison in filters.config.items():
        if "." in key or "$" in key:
            continue
        clauses.extend(_config_clauses(f"config.{key}.value", comparison))
    if not clauses:
        return {}
    return clauses[0] if len(clauses) == 1 else {"$and": clauses}


def _config_clauses(field: str, comparison: Mapping[str, Any]) -> Iterable[dict[str, Any]]:
    for op, expected in comparison.items():
        if op == "eq" and isinstance(expected, str):
            yield {field: {"$eq": expected}}
        elif op == "eq" and _is_number(expected):
            yield {field: _around(expected)}
        elif op == "in" and expected and all(isinstance(e, str) for e in expected):
            yield {field: {"$in": list(expected)}}
        elif op == "in" and expected and all(_is_number(e) for e in expected):
            yield {"$or": [{field: _around(e)} for e in expected]}
        elif op in ("gt", "gte", "lt", "lte") and _is_number(expected):
            yield {field: {f"${op}": expected}}


def _around(value: float) -> dict[str, float]:
    spread = abs(float(value)) * 1e-9
    return {"$gte": float(value) - spread, "$lte": float(value) + spread}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


_REGEX_ESCAPES = set("dDwWsSbB.-/\\()[]{}*+?|^$")


def _portable_regex(pattern: str) -> bool:
    """Whether a pattern means the same to Python's `re` and to RE2 (used by the server)."""
    if any(token in pattern for token in ("(?=", "(?!", "(?<", "(?P", "(?>", "*+", "++", "?+")):
        return False
    escapes = re.findall(r"\\(.)", pattern)
    return all(char in _REGEX_ESCAPES for char in escapes)


def _server_time(moment: datetime) -> str:
    """W&B's createdAt format: UTC, no zone, whole seconds."""
    utc = moment.astimezone(timezone.utc).replace(tzinfo=None, microsecond=0)
    return utc.isoformat()


# --- converting what the client returns --------------------------------------------------------


def records_to_history(records: Sequence[str]) -> History:
    """History records as the `history` field sends them (each a JSON object as text), as
    `rows_to_history` gives them.

    The common case — flat records of numbers, one per step, steps ascending — is parsed by
    Arrow's JSON reader (C++, off the GIL, so the pool's other fetches go on; its numbers are
    the same doubles Python's json gives, NaN and ±Infinity included). Anything else (nested
    or text values, several records at one step, a type that changes) takes the general path.
    """
    fast = _flat_numeric_records(records)
    if fast is not None:
        return fast
    return rows_to_history(json.loads("[" + ",".join(records) + "]"))


def _flat_numeric_records(records: Sequence[str]) -> History | None:
    if not records:
        return History()
    try:
        import pyarrow as pa
        import pyarrow.json as pa_json

        table = pa_json.read_json(io.BytesIO("\n".join(records).encode("utf-8")))
    except Exception:  # any record Arrow cannot read the same way: the general path decides
        return None
    if table.num_rows != len(records) or STEP not in table.column_names:
        return None
    step_column = table.column(STEP)
    if step_column.null_count or not pa.types.is_integer(step_column.type):
        return None
    steps = step_column.to_numpy().astype(np.int64)
    if len(steps) > 1 and not bool(np.all(steps[1:] > steps[:-1])):
        return None  # repeated steps: the general path keeps each record once
    numbers = np.arange(len(records), dtype=np.int64)
    columns = {}
    for key, column in zip(table.column_names, table.columns, strict=True):
        kind = column.type
        if key == STEP or pa.types.is_null(kind):
            continue
        if not (
            pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_boolean(kind)
        ):
            return None
        logged = ~column.is_null().to_numpy(zero_copy_only=False)
        values = column.cast(pa.float64()).to_numpy(zero_copy_only=False)
        columns[key] = Column(numbers[logged], steps[logged], np.asarray(values[logged], float))
    return History(columns)


def rows_to_history(rows: Iterable[Mapping[str, Any]]) -> History:
    """History rows as the client yields them, as the offline reader gives them: one row per
    history record, several records at one `_step` kept, a record without `_step` (written by
    a shared-mode process) placed by its position among the records, like the offline reader.

    Keys logged at different cadences are simply absent from rows where they were not logged
    (the Parquet path says None); both mean "not logged". A logged NaN stays NaN. Nested dicts
    (other than W&B media, which carry "_type") become dotted keys, like the offline reader's.
    A record served twice (pages at the Parquet/live boundary can repeat) is kept once.
    """
    points: dict[str, tuple[list[int], list[int], list[float]]] = {}
    seen: dict[int, set[int]] = {}
    place = 0
    for row in rows:
        raw_step = row.get(STEP)
        if raw_step is not None:
            step = int(raw_step)
            try:
                fingerprint = hash(tuple(row.items()))
            except TypeError:  # a value that cannot be hashed (media dicts, lists)
                fingerprint = hash(repr(sorted(row.items(), key=lambda item: item[0])))
            at_step = seen.setdefault(step, set())
            if fingerprint in at_step:
                continue
            at_step.add(fingerprint)
        else:
            step = place
        number = place
        place += 1
        # The hot loop of a fetch (one pass per logged value): kept flat on purpose.
        for key, raw in row.items():
            kind = type(raw)
            if kind is float or kind is int:
                value = float(raw)
            elif kind is dict:
                if "_type" not in raw:
                    _add_nested(points, number, step, key, raw)
                continue
            else:
                maybe = _number(raw)
                if maybe is None:
                    continue
                value = maybe
            if key == STEP:
                continue
            column = points.get(key)
            if column is None:
                column = points[key] = ([], [], [])
            column[0].append(number)
            column[1].append(step)
            column[2].append(value)
    return History(
        {
            key: Column(
                np.asarray(rows_, dtype=np.int64),
                np.asarray(steps, dtype=np.int64),
                np.asarray(values, dtype=float),
            )
            for key, (rows_, steps, values) in points.items()
        }
    )


def _add_nested(
    points: dict[str, tuple[list[int], list[int], list[float]]],
    number: int,
    step: int,
    prefix: str,
    tree: Mapping,
) -> None:
    for key, raw in tree.items():
        name = f"{prefix}.{key}"
        if isinstance(raw, Mapping):
            if "_type" not in raw:
                _add_nested(points, number, step, name, raw)
            continue
        value = _number(raw)
        if value is not None:
            column = points.setdefault(name, ([], [], []))
            column[0].append(number)
            column[1].append(step)
            column[2].append(value)


_SPECIAL_FLOATS = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return _SPECIAL_FLOATS.get(value)
    return None


def _chunks(items: Sequence[Run], size: int) -> list[list[Run]]:
    return [list(items[start : start + size]) for start in range(0, len(items), size)]


def _json_object(text: Any) -> dict[str, Any]:
    """A JSON object the server sends as a string (config, summaryMetrics, history records);
    control characters inside strings are accepted, as the client accepts them."""
    if isinstance(text, dict):
        return text
    if not text:
        return {}
    found = json.loads(text, strict=False)
    if not isinstance(found, dict):
        raise ValueError(f"expected a JSON object, got {type(found).__name__}")
    return found


def _config_from_server(text: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(the user's config, wandb's internal `_wandb` entry) from the `config` field, which holds
    {"key": {"value": v, "desc": ...}}; split as the client splits it."""
    config: dict[str, Any] = {}
    internal: dict[str, Any] = {}
    for key, entry in _json_object(text).items():
        value = entry["value"] if isinstance(entry, dict) and "value" in entry else entry
        if key == "_wandb":
            internal = value if isinstance(value, dict) else {}
        elif key != "wandb_version":
            config[key] = value
    return config, internal


def _summary(raw: Mapping[str, Any]) -> dict[str, Any]:
    """The summary as the offline reader gives it: sorted keys, no W&B-internal entries."""
    return {k: raw[k] for k in sorted(raw) if not str(k).startswith("_wandb")}


def _step_metrics(internal: Mapping[str, Any]) -> dict[str, str]:
    """define_metric's step metrics, from the `m` list wandb-core stores in config `_wandb`.

    Each entry is a MetricRecord encoded by field number: "1" name, "2" glob name, "5" the
    1-based index of its step metric in the same list.
    """
    encoded = internal.get("m") if isinstance(internal, Mapping) else None
    if not isinstance(encoded, list):
        return {}
    found = {}
    for entry in encoded:
        if not isinstance(entry, Mapping):
            continue
        name = entry.get("1") or entry.get("2")
        index = entry.get("5")
        if not name or not isinstance(index, int) or not 1 <= index <= len(encoded):
            continue
        step = encoded[index - 1]
        step_name = step.get("1") if isinstance(step, Mapping) else None
        if step_name:
            found[str(name)] = str(step_name)
    return found


def _timestamp(text: Any) -> datetime | None:
    """W&B's timestamps are UTC without a zone ("2026-11-01T10:00:00")."""
    if not text:
        return None
    try:
        moment = datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _newest_first(run: Run) -> tuple[float, str]:
    created = run.created_at.timestamp() if run.created_at else float("-inf")
    return (-created, run.id)


def _listing_entry(run: Run) -> dict[str, Any]:
    return run_to_dict(run)


def _listing_run(node: Mapping[str, Any], entity: str, project: str) -> Run:
    run = run_from_dict(node, LISTING)
    return dataclasses.replace(run, entity=run.entity or entity, project=run.project or project)


def _with_listing_fields(cached: Run, light: Run) -> Run:
    """A cached run with what the listing says now (tags and notes can change after a run)."""
    return dataclasses.replace(
        cached,
        name=light.name,
        state=light.state,
        tags=light.tags,
        group=light.group,
        job_type=light.job_type,
        notes=light.notes,
        heartbeat_at=light.heartbeat_at,
        url=light.url,
    )


def _safe_url(public: Any) -> str | None:
    try:
        return _without_credentials(str(public.url))
    except Exception:
        return None


def _without_credentials(url: str) -> str:
    """A URL without user:password@ (a base URL may carry them; they never reach a file)."""
    parts = urlsplit(url.rstrip("/"))
    if parts.username or parts.password:
        host = parts.hostname or ""
        if parts.port:
            host = f"{host}:{parts.port}"
        parts = parts._replace(netloc=host)
    return urlunsplit(parts)


def _not_found(exc: BaseException) -> bool:
    text = str(exc).lower()
    return "could not find" in text or "not found" in text
