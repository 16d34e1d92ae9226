"""Where runs come from. Every source lists runs (metadata) and then loads chosen runs' history.

A source knows nothing about reports: it hands `Run` and `History` objects down the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, Protocol

from reportgen.runs import History, Run
from reportgen.spec import RunsSpec, SourceSpec

Progress = Callable[[int, int, str], None]


class Source(Protocol):
    kind: str

    def describe(self) -> dict[str, Any]:
        """What report.json records under "source" (never credentials)."""
        ...

    def list_runs(
        self, runs: RunsSpec | None = None, progress: Progress | None = None
    ) -> list[Run]:
        """Every run the spec could mean; a source may pre-filter with `runs`, never more."""
        ...

    def history(self, run: Run, keys: Sequence[str] | None = None) -> History:
        """The run's logged values (all keys when `keys` is None)."""
        ...


def open_source(spec: SourceSpec) -> Source:
    if spec.type == "wandb-offline":
        from reportgen.sources.offline import OfflineSource

        return OfflineSource(spec)
    from reportgen.errors import UsageError

    raise UsageError(f"source.type: '{spec.type}' is not supported by this version of reportgen")
