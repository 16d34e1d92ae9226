"""Where runs come from. Every source lists runs (metadata) and then loads chosen runs' history.

A source knows nothing about reports: it hands `Run` and `History` objects down the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # (worker processes that only decode files import nothing heavy here)
    from reportgen.cache import RunCache
    from reportgen.runs import History, Run
    from reportgen.spec import RunsSpec, SourceSpec

Progress = Callable[[int, int, str], None]


class Source(Protocol):
    kind: str

    def describe(self) -> dict[str, Any]:
        """What report.json records under "source" (never credentials)."""
        ...

    def list_runs(
        self,
        runs: RunsSpec | None = None,
        progress: Progress | None = None,
        now: datetime | None = None,
    ) -> list[Run]:
        """Every run the spec could mean; a source may pre-filter with `runs`, never more."""
        ...

    def history(self, run: Run, keys: Sequence[str] | None = None) -> History:
        """The run's logged values (all keys when `keys` is None)."""
        ...


class RunFetchError(Exception):
    """One run's data could not be fetched; the report is built without it, and says so."""

    def __init__(self, run_id: str, run_name: str, reason: str):
        super().__init__(f"run {run_name} ({run_id}): {reason}")
        self.run_id = run_id
        self.run_name = run_name
        self.reason = reason


def fetch_histories(
    source: Source, runs: Sequence[Run], progress: Progress | None = None
) -> dict[str, History | RunFetchError]:
    """Each run's history; a source with a bulk `histories` (a pool of workers) uses it."""
    bulk = getattr(source, "histories", None)
    if bulk is not None:
        result: dict[str, History | RunFetchError] = bulk(runs, progress)
        return result
    found: dict[str, History | RunFetchError] = {}
    for run in runs:
        try:
            found[run.id] = source.history(run)
        except RunFetchError as exc:
            found[run.id] = exc
    return found


def open_source(spec: SourceSpec, cache: RunCache | None = None) -> Source:
    if spec.type == "wandb-offline":
        from reportgen.sources.offline import OfflineSource

        return OfflineSource(spec, cache=cache)
    if spec.type == "wandb":
        from reportgen.sources.cloud import CloudSource
        from reportgen.sources.projects import ManyProjectsSource, many_projects

        if many_projects(spec):
            return ManyProjectsSource(spec, cache=cache)

        return CloudSource(spec, cache=cache)
    from reportgen.errors import UsageError

    raise UsageError(f"source.type: '{spec.type}' is not supported by this version of reportgen")
