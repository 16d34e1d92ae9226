"""The `Spec` dataclasses built from a document that passed every check."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from reportgen.spec.model import (
    DEFAULT_STATS,
    BaselineSpec,
    CacheSpec,
    CommentSpec,
    CompareSpec,
    CsvSpec,
    ExecutorSpec,
    GateSpec,
    HealthSpec,
    MetricAlias,
    OutputsSpec,
    ParetoSpec,
    PivotSpec,
    PlotsSpec,
    ProjectTableSpec,
    RunFilters,
    RunsSpec,
    Sampling,
    Selection,
    SourceSpec,
    Spec,
    StatsSpec,
    Tolerance,
    parse_duration,
    time_bound,
)

# --- building the Spec -------------------------------------------------------------------------


def _strings(value: Any) -> tuple[str, ...]:
    if value is None:
        return ()
    return (value,) if isinstance(value, str) else tuple(value)


def _alias(name: str, rule: Any) -> MetricAlias:
    if isinstance(rule, str):
        return MetricAlias(name, keys=(rule,))
    if isinstance(rule, list):
        return MetricAlias(name, keys=tuple(rule))
    return MetricAlias(
        name,
        keys=_strings(rule.get("key")),
        expr=rule.get("expr"),
        goal=rule.get("goal"),
        x=rule.get("x"),
    )


def _plots(plots: dict[str, Any]) -> PlotsSpec:
    return PlotsSpec(
        metrics=tuple(plots["metrics"]) if "metrics" in plots else None,
        smoothing=float(plots.get("smoothing", 0.0)),
        log_y=tuple(plots.get("log_y", ())),
        points=plots.get("points", 600),
        mermaid=plots.get("mermaid", False),
    )


def _comparison(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {"eq": value}


def _executor(rule: str | dict[str, Any]) -> ExecutorSpec:
    if isinstance(rule, str):
        return ExecutorSpec.parse(rule)
    return ExecutorSpec(rule["type"], rule.get("address"))


def _runs_spec(runs: dict[str, Any]) -> RunsSpec:
    filters = runs.get("filters", {})
    tags = filters.get("tags", {})
    return RunsSpec(
        filters=RunFilters(
            states=tuple(filters.get("state", ())),
            tags_any=tuple(tags.get("any", ())),
            tags_all=tuple(tags.get("all", ())),
            tags_none=tuple(tags.get("none", ())),
            name=filters.get("name"),
            groups=_strings(filters.get("group")),
            job_types=_strings(filters.get("job_type")),
            config={k: _comparison(v) for k, v in filters.get("config", {}).items()},
            created_after=time_bound(filters.get("created_after")),
            created_before=time_bound(filters.get("created_before")),
            min_steps=filters.get("min_steps"),
        ),
        ids=tuple(runs.get("ids", ())),
        limit=runs.get("limit"),
        allow_partial=runs.get("allow_partial", False),
    )


def _baseline(data: dict[str, Any]) -> BaselineSpec | None:
    baseline = data.get("baseline")
    if baseline is None:
        return None
    candidate = data.get("candidate")
    return BaselineSpec(
        runs=_runs_spec(baseline),
        candidate=_runs_spec(candidate) if candidate is not None else None,
        metrics=tuple(baseline["metrics"]) if "metrics" in baseline else None,
        reduce=baseline.get("reduce", "last"),
        tolerances={
            alias: Tolerance(alias, rule.get("abs"), rule.get("rel"), rule.get("reduce"))
            for alias, rule in baseline.get("tolerances", {}).items()
        },
        missing=baseline.get("missing", "fail"),
    )


def _comment(outputs: dict[str, Any]) -> CommentSpec | None:
    comment = outputs.get("comment")
    if comment is None:
        return None
    return CommentSpec(
        forge=comment.get("forge"),
        marker=comment.get("marker"),
        limit=comment.get("limit"),
        charts=comment.get("charts", False),
        report_url=comment.get("report_url"),
        on_error=comment.get("on_error", "fail"),
    )


def build_spec(data: dict[str, Any], path: Path, text: str) -> Spec:
    source = data["source"]
    outputs = data.get("outputs", {})
    csv = outputs.get("csv", {})
    health = data.get("health", {})
    sampling = data.get("sampling", {})
    return Spec(
        path=path,
        text=text,
        title=data.get("title", "Training report"),
        description=data.get("description"),
        source=SourceSpec(
            type=source["type"],
            path=source.get("path"),
            entity=source.get("entity"),
            project=source.get("project"),
            base_url=source.get("base_url"),
            stale_after=parse_duration(source.get("stale_after", "15m")),
            workers=source.get("workers", 6),
            projects=tuple(source.get("projects", ())),
            executor=_executor(source.get("executor", "local")),
        ),
        runs=_runs_spec(data.get("runs", {})),
        metrics={name: _alias(name, rule) for name, rule in data.get("metrics", {}).items()},
        select={
            name: Selection(
                name,
                rule["by"],
                rule.get("reduce", "mean"),
                rule.get("pick", "min"),
                rule.get("min_steps"),
            )
            for name, rule in data.get("select", {}).items()
        },
        sampling=Sampling(
            x=sampling.get("x", "_step"),
            start=sampling.get("start", 0),
            every=sampling.get("every", 1),
            stop=sampling.get("stop"),
            align=sampling.get("align", "asof"),
        ),
        health=HealthSpec(
            preset=health.get("preset", "auto"),
            checks={k: dict(v) for k, v in health.get("checks", {}).items()},
            disable=tuple(health.get("disable", ())),
        ),
        outputs=OutputsSpec(
            dir=Path(outputs.get("dir", f"outputs/{path.stem}")),
            formats=tuple(outputs.get("formats", ("markdown", "csv", "json"))),
            csv=CsvSpec(
                name=csv.get("name"),
                columns=tuple(csv["columns"]) if "columns" in csv else None,
                missing=csv.get("missing", "empty"),
                where=csv.get("where"),
            ),
            comment=_comment(outputs),
            templates=Path(outputs["templates"]) if "templates" in outputs else None,
            run_pages=outputs.get("run_pages", "notable"),
        ),
        gate=GateSpec(fail_on=data.get("gate", {}).get("fail_on", "never")),
        raw=data,
        baseline=_baseline(data),
        stats=_stats_spec(data.get("stats")),
        compare=_compare_spec(data.get("compare"), data.get("sampling", {})),
        project_table=_project_table_spec(data.get("project_table"), list(data.get("metrics", {}))),
        plots=_plots(data.get("plots", {})),
        cache=CacheSpec(dir=Path(data["cache"]["dir"]) if "dir" in data.get("cache", {}) else None),
    )


def _stats_spec(section: dict[str, Any] | None) -> StatsSpec | None:
    if section is None:
        return None
    metrics = section.get("metrics")
    return StatsSpec(
        metrics=tuple(metrics) if metrics is not None else None,
        stats=tuple(section.get("stats", DEFAULT_STATS)),
    )


def _compare_spec(section: dict[str, Any] | None, sampling: dict[str, Any]) -> CompareSpec | None:
    """The history comparison's grid is the spec's sampling with compare.sampling's changes."""
    if section is None:
        return None
    metrics = section.get("metrics")
    grid = {**sampling, **section.get("sampling", {})}
    return CompareSpec(
        runs=tuple(section["runs"]),
        metrics=tuple(metrics) if metrics is not None else None,
        reduce=section.get("reduce", "summary"),
        history=section.get("history", True),
        sampling=Sampling(
            x=grid.get("x", "_step"),
            start=grid.get("start", 0),
            every=grid.get("every", 1),
            stop=grid.get("stop"),
            align=grid.get("align", "asof"),
        ),
    )


def _project_table_spec(
    section: dict[str, Any] | None, aliases: list[str]
) -> ProjectTableSpec | None:
    if section is None:
        return None
    reduce = section.get("reduce", "last")
    chosen = section.get("metrics", aliases)
    metrics = dict(chosen) if isinstance(chosen, dict) else dict.fromkeys(chosen, reduce)
    primary = section.get("primary", next(iter(metrics), None))
    return ProjectTableSpec(
        name=section.get("name", "project"),
        metrics=metrics,
        reduce=reduce,
        summary=section.get("summary", True),
        primary=primary,
        top=section.get("top", 10),
        group_by=tuple(section.get("group_by", ())),
        aggregate=tuple(section.get("aggregate", ("count", "mean", "std", "min", "max"))),
        correlate=section.get("correlate", True),
        min_runs=section.get("min_runs", 5),
        name_fields=section.get("name_fields"),
        pareto=ParetoSpec(**section["pareto"]) if "pareto" in section else None,
        pivot=_pivot_spec(section.get("pivot"), primary),
    )


def _pivot_spec(section: dict[str, Any] | None, primary: str | None) -> PivotSpec | None:
    if section is None:
        return None
    metric = section.get("metric", primary)
    assert metric is not None  # checked: a pivot without a metric needs a primary
    return PivotSpec(
        rows=section["rows"],
        columns=section["columns"],
        metric=metric,
        aggregate=section.get("aggregate", "mean"),
    )
