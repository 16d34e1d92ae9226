"""The report.json keys of the analysis sections: `stats`, `comparison` and `project`.

Each is null when the spec has no such section. docs/analysis.md documents every key.
"""

from __future__ import annotations

from typing import Any

from reportgen.analysis.compare import Comparison
from reportgen.analysis.project import ParetoFront, PivotTable, ProjectTable
from reportgen.analysis.stage import Analysis, StatsTable


def _stats(table: StatsTable) -> dict[str, Any]:
    return {
        "path": table.file,
        "stats": list(table.stats),
        "metrics": list(table.metrics),
        "rows": [
            {"run_id": r.run_id, "alias": r.alias, "key": r.key, "values": r.values}
            for r in table.rows
        ],
    }


def _comparison(c: Comparison) -> dict[str, Any]:
    history = c.history
    return {
        "reference": c.runs[0].run_id if c.runs else None,
        "runs": [
            {"ref": r.ref, "id": r.run_id, "name": r.run_name, "selection": r.selection}
            for r in c.runs
        ],
        "reduce": c.reduce,
        "config": {
            "path": c.config_file if c.complete else None,
            "keys_compared": c.config_keys,
            "differences": [
                {
                    "key": d.key,
                    "values": {
                        r.run_id: v
                        for r, v, p in zip(c.runs, d.values, d.present, strict=True)
                        if p
                    },
                    "missing": [r.run_id for r, p in zip(c.runs, d.present, strict=True) if not p],
                }
                for d in c.config
            ],
        },
        "metrics": {
            "path": c.metrics_file if c.complete else None,
            "items": [
                {
                    "alias": m.alias,
                    "goal": m.goal,
                    "goal_from": m.goal_from,
                    "reference": {"key": m.reference_key, "value": m.reference},
                    "changes": [
                        {
                            "run_id": ch.run_id,
                            "key": ch.key,
                            "value": ch.value,
                            "delta": ch.delta,
                            "percent": ch.percent,
                            "mark": ch.mark,
                        }
                        for ch in m.changes
                    ],
                }
                for m in c.metrics
            ],
        },
        "history": (
            {
                "path": history.file,
                "x": history.x,
                "sampling": {
                    "start": history.sampling.start,
                    "every": history.sampling.every,
                    "stop": history.sampling.stop,
                    "align": history.sampling.align,
                },
                "columns": ["step", *history.columns],
                "rows": history.rows,
                "notes": list(history.notes),
            }
            if history
            else None
        ),
        "notes": list(c.notes),
    }


def _pareto(front: ParetoFront) -> dict[str, Any]:
    def point(p: Any) -> dict[str, Any]:
        return {"run_id": p.run_id, "run_name": p.run_name, "quality": p.quality, "cost": p.cost}

    return {
        "path": front.file,
        "quality": {"alias": front.quality, "goal": front.quality_goal},
        "cost": {"alias": front.cost, "goal": front.cost_goal},
        "front": [point(p) for p in front.front],
        "points": [{**point(p), "on_front": p.on_front} for p in front.points],
        "without_values": list(front.without_values),
    }


def _pivot(pivot: PivotTable) -> dict[str, Any]:
    return {
        "path": pivot.file,
        "rows": pivot.rows,
        "columns": pivot.columns,
        "metric": pivot.metric,
        "aggregate": pivot.aggregate,
        "row_values": list(pivot.row_values),
        "column_values": list(pivot.column_values),
        "cells": [list(r) for r in pivot.cells],
        "runs": [list(r) for r in pivot.runs],
    }


def _project(p: ProjectTable) -> dict[str, Any]:
    groups = p.groups
    return {
        "name": p.name,
        "paths": {
            "csv": p.csv_file,
            "parquet": p.parquet_file,
            "top": p.top_file if p.top else None,
            "groups": groups.file if groups else None,
            "correlations": p.correlations_file if p.correlations else None,
            "pareto": p.pareto.file if p.pareto else None,
            "pivot": p.pivot.file if p.pivot else None,
        },
        "columns": [{"name": c.name, "type": c.kind} for c in p.columns],
        "rows": p.row_count,
        "metrics": p.reductions,
        "primary": p.primary_column,
        "goal": p.goal,
        "top": [
            {"rank": t.rank, "run_id": t.run_id, "run_name": t.run_name, "value": t.value}
            for t in p.top
        ],
        "groups": (
            {
                "by": list(groups.by),
                "aggregates": list(groups.aggregates),
                "metrics": list(groups.metrics),
                "rows": [
                    {
                        "keys": dict(zip(groups.by, g.keys, strict=True)),
                        "runs": g.runs,
                        "values": g.values,
                    }
                    for g in groups.rows
                ],
            }
            if groups
            else None
        ),
        "correlations": {
            "method": "spearman",
            "enabled": p.correlate,
            "min_runs": p.min_runs,
            "runs": p.correlation_runs,
            "items": [{"column": c.column, "rho": c.rho, "runs": c.runs} for c in p.correlations],
            "note": p.correlation_note,
        },
        "name_fields": [f"name.{f}" for f in p.name_fields],
        "pareto": _pareto(p.pareto) if p.pareto else None,
        "pivot": _pivot(p.pivot) if p.pivot else None,
        "notes": list(p.notes),
    }


def analysis_dict(analysis: Analysis) -> dict[str, Any]:
    """`stats`, `comparison` and `project`, ready for `jsonable`."""
    return {
        "stats": _stats(analysis.stats) if analysis.stats else None,
        "comparison": _comparison(analysis.comparison) if analysis.comparison else None,
        "project": _project(analysis.project) if analysis.project else None,
    }
