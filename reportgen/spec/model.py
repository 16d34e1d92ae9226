"""What a spec says, as frozen dataclasses: the `Spec` the rest of reportgen reads."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

SpecPath = tuple[str | int, ...]

DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
CSV_NAME_FIELDS = {"selection", "by", "run", "run_id"}


# --- the Spec ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SourceSpec:
    """`source:` — where runs come from: a folder of run files, or a W&B server project."""

    type: str
    path: str | None = None
    entity: str | None = None
    project: str | None = None
    base_url: str | None = None
    stale_after: timedelta = timedelta(minutes=15)
    projects: tuple[str, ...] = ()
    workers: int = 6
    executor: ExecutorSpec = field(default_factory=lambda: ExecutorSpec())


@dataclass(frozen=True)
class ExecutorSpec:
    """Where the per-run work runs: `local` (this machine) or `ray` (a Ray cluster at
    `address`: `auto`, `host:port`, `ray://host:port`; None: Ray's default)."""

    type: str = "local"
    address: str | None = None

    @classmethod
    def parse(cls, text: str) -> ExecutorSpec:
        """`local`, `ray`, `ray:ADDRESS` or `ray://host:port`, as `--executor` takes them."""
        if text.startswith("ray://"):
            return cls("ray", text)
        kind, _, address = text.partition(":")
        return cls(kind, address or None)


@dataclass(frozen=True)
class TimeBound:
    """A creation-time limit: an absolute moment, or an age measured back from 'now'."""

    text: str
    moment: datetime | None = None
    age: timedelta | None = None

    def resolve(self, now: datetime) -> datetime:
        if self.moment is not None:
            return self.moment
        assert self.age is not None
        return now - self.age


@dataclass(frozen=True)
class RunFilters:
    """`runs.filters:` — which runs are kept; each given field must hold for a run to stay."""

    states: tuple[str, ...] = ()
    tags_any: tuple[str, ...] = ()
    tags_all: tuple[str, ...] = ()
    tags_none: tuple[str, ...] = ()
    name: str | None = None
    groups: tuple[str, ...] = ()
    job_types: tuple[str, ...] = ()
    config: dict[str, dict[str, Any]] = field(default_factory=dict)
    created_after: TimeBound | None = None
    created_before: TimeBound | None = None
    min_steps: int | None = None  # checked once a run's history is read (Run.logged_steps)


@dataclass(frozen=True)
class RunsSpec:
    """`runs:` (and a baseline's or candidate's runs) — filters, explicit ids and a limit."""

    filters: RunFilters = field(default_factory=RunFilters)
    ids: tuple[str, ...] = ()
    limit: int | None = None
    allow_partial: bool = False  # runs that cannot be read leave a report that exits 0, not 5


@dataclass(frozen=True)
class MetricAlias:
    """A name for a metric: candidate keys tried in order, or an expression over other aliases."""

    name: str
    keys: tuple[str, ...] = ()
    expr: str | None = None
    goal: str | None = None
    x: str | None = None


@dataclass(frozen=True)
class Selection:
    """A named pick under `select:` — the run whose reduced alias is the smallest or largest."""

    name: str
    by: str
    reduce: str = "mean"
    pick: str = "min"
    min_steps: int | None = None


@dataclass(frozen=True)
class Sampling:
    """`sampling:` — the x values the CSV rows sit at, and how a value is found for each."""

    x: str = "_step"
    start: int = 0
    every: int = 1
    stop: int | None = None
    align: str = "asof"


@dataclass(frozen=True)
class HealthSpec:
    """`health:` — the preset, parameters of single checks, and checks turned off."""

    preset: str = "auto"
    checks: dict[str, dict[str, Any]] = field(default_factory=dict)
    disable: tuple[str, ...] = ()


@dataclass(frozen=True)
class CsvSpec:
    """`outputs.csv:` — the sampled table's file name, columns and treatment of gaps."""

    name: str | None = None
    columns: tuple[str, ...] | None = None
    missing: str = "empty"
    where: str | None = None


@dataclass(frozen=True)
class CommentSpec:
    """`outputs.comment:` — the pull-request comment: forge, marker, size and failure policy."""

    forge: str | None = None
    marker: str | None = None
    limit: int | None = None
    charts: bool = False
    report_url: str | None = None
    on_error: str = "fail"


@dataclass(frozen=True)
class OutputsSpec:
    """`outputs:` — the folder, the formats written into it, and their options."""

    dir: Path
    formats: tuple[str, ...] = ("markdown", "csv", "json")
    csv: CsvSpec = field(default_factory=CsvSpec)
    comment: CommentSpec | None = None
    templates: Path | None = None
    run_pages: str = "notable"  # or "all": which runs get a section (a PDF page) of their own


@dataclass(frozen=True)
class PlotsSpec:
    """What the charts show; `metrics=None` means every alias."""

    metrics: tuple[str, ...] | None = None
    smoothing: float = 0.0
    log_y: tuple[str, ...] = ()
    points: int = 600
    mermaid: bool = False


@dataclass(frozen=True)
class CacheSpec:
    """`cache:` — where run data is kept between builds (None: the default cache folder)."""

    dir: Path | None = None


@dataclass(frozen=True)
class GateSpec:
    """`gate:` — which verdict makes `build` exit 1."""

    fail_on: str = "never"


DEFAULT_STATS = ("min", "p10", "p25", "p50", "p75", "p90", "max", "last")


@dataclass(frozen=True)
class StatsSpec:
    """`stats:` — which aliases (None: all) and which statistics, in column order."""

    metrics: tuple[str, ...] | None = None
    stats: tuple[str, ...] = DEFAULT_STATS


@dataclass(frozen=True)
class CompareSpec:
    """`compare:` — runs by selection name or id; the first is the reference."""

    runs: tuple[str, ...]
    metrics: tuple[str, ...] | None = None
    reduce: str = "summary"
    history: bool = True
    sampling: Sampling = field(default_factory=Sampling)


@dataclass(frozen=True)
class ParetoSpec:
    """`project_table.pareto` — two aliases among the table's metrics."""

    quality: str
    cost: str


@dataclass(frozen=True)
class PivotSpec:
    """`project_table.pivot` — `metric` aggregated over the values of two columns."""

    rows: str
    columns: str
    metric: str
    aggregate: str = "mean"


@dataclass(frozen=True)
class ProjectTableSpec:
    """`project_table:` — `metrics` maps each alias to its reduction (None: every alias)."""

    name: str = "project"
    metrics: dict[str, str] | None = None
    reduce: str = "last"
    summary: bool = True
    primary: str | None = None
    top: int = 10
    group_by: tuple[str, ...] = ()
    aggregate: tuple[str, ...] = ("count", "mean", "std", "min", "max")
    correlate: bool = True
    min_runs: int = 5
    name_fields: str | None = None
    pareto: ParetoSpec | None = None
    pivot: PivotSpec | None = None


@dataclass(frozen=True)
class Tolerance:
    """How much worse than the baseline an alias may get; the larger allowance applies."""

    alias: str
    abs: float | None = None
    rel: float | None = None
    reduce: str | None = None


@dataclass(frozen=True)
class BaselineSpec:
    """Baseline runs (a rule over the chosen runs), the candidates, and per-alias tolerances."""

    runs: RunsSpec
    candidate: RunsSpec | None = None
    metrics: tuple[str, ...] | None = None
    reduce: str = "last"
    tolerances: dict[str, Tolerance] = field(default_factory=dict)
    missing: str = "fail"


@dataclass(frozen=True)
class Spec:
    """A validated spec: what every stage after loading reads."""

    path: Path
    text: str = field(repr=False)  # the file as read, for its digest
    title: str
    description: str | None
    source: SourceSpec
    runs: RunsSpec
    metrics: dict[str, MetricAlias]
    select: dict[str, Selection]
    sampling: Sampling
    health: HealthSpec
    outputs: OutputsSpec
    gate: GateSpec
    raw: dict[str, Any]
    baseline: BaselineSpec | None = None
    stats: StatsSpec | None = None
    compare: CompareSpec | None = None
    project_table: ProjectTableSpec | None = None
    plots: PlotsSpec = field(default_factory=PlotsSpec)
    cache: CacheSpec = field(default_factory=CacheSpec)

    @property
    def sha256(self) -> str:
        """The spec file's SHA-256, as report.json records it (hashlib loads OpenSSL: it is
        imported here, not by `validate`)."""
        import hashlib

        return hashlib.sha256(self.text.encode("utf-8")).hexdigest()


def parse_duration(text: str) -> timedelta:
    """A duration such as `90s` or `2.5d` (already checked against the schema's pattern)."""
    return timedelta(seconds=float(text[:-1]) * DURATION_UNITS[text[-1]])


def time_bound(text: str | None) -> TimeBound | None:
    """`runs.filters.created_after` and its kin: an age (`7d`) or a moment (ISO 8601)."""
    if text is None:
        return None
    if text[-1] in DURATION_UNITS and text[:-1].replace(".", "", 1).isdigit():
        return TimeBound(text, age=parse_duration(text))
    moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return TimeBound(text, moment=moment)
