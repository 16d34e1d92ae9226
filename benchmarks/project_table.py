"""Benchmark: the project-table stage over 10^5 runs against pyarrow writing the same table.

    .venv/bin/python benchmarks/project_table.py [--runs 100000] [--repeat 3]

The runs' cells are made in memory, as digests would hand them over (6 config keys, one a
list; 2 numeric summary values; 3 reduced aliases, one run in 50 ending NaN; names with two
fields), so that only the table stage is timed: building the table with top N, group-by
aggregates, correlations, a Pareto front and a pivot, then writing its CSV and Parquet files.

The floor is what Arrow alone needs for the same rows: `pa.Table.from_pylist` of the same
cells, `pyarrow.csv.write_csv` and `pyarrow.parquet.write_table` (no analysis, no escaping of
formula-like text, Arrow's own number format). Each side runs in a fresh process, interleaved
(A B A B …), and the median of --repeat runs is kept, for wall time and for the memory the stage
added (peak RSS minus RSS before the stage). Goals (issue 17): within 5× the floor's time and
2× its memory, and under 10 s at 10^5 runs.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

TIME_GOAL = 5.0
MEMORY_GOAL = 2.0
SECONDS_GOAL = 10.0


def _rss_mib() -> float:
    with open("/proc/self/statm") as handle:
        pages = int(handle.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def make_cells(count: int):  # type: ignore[no-untyped-def]
    """Runs, spans and per-run cells as the digests of `count` runs would give them."""
    from datetime import datetime, timedelta, timezone

    import numpy as np

    from reportgen.analysis.project import RunCells, json_text
    from reportgen.digest import StepSpan
    from reportgen.runs import Run

    rng = np.random.default_rng(0)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    runs, spans, cells = [], {}, {}
    lrs = rng.choice([1e-4, 3e-4, 1e-3], count).tolist()
    batches = rng.choice([32, 64, 128], count).tolist()
    scores, losses, entropies = rng.random((3, count)).tolist()
    for i in range(count):
        config = {
            "optim": {"lr": lrs[i], "betas": [0.9, 0.999]},
            "seed": i % 5,
            "model": f"m{i % 3}",
            "batch_size": batches[i],
            "note": "=cmd" if i % 1000 == 0 else "plain",
        }
        summary = {"loss": losses[i], "acc": scores[i]}
        run = Run(
            id=f"r{i:07d}", name=f"sweep-lr{lrs[i]}-bs{batches[i]}", state="finished",
            group=f"g{i % 10}", created_at=start + timedelta(seconds=i), config=config,
            summary=summary, tags=("scale",),
        )  # fmt: skip
        runs.append(run)
        spans[run.id] = StepSpan(300, 299)
        cells[run.id] = RunCells(
            cells={
                "name.lr": lrs[i],
                "name.bs": batches[i],
                "config.optim.lr": lrs[i],
                "config.seed": i % 5,
                "config.model": f"m{i % 3}",
                "config.batch_size": batches[i],
                "config.note": config["note"],
                "metric.acc": scores[i],
                "metric.score": scores[i],
                "metric.loss": float("nan") if i % 50 == 0 else losses[i],
                "metric.entropy": entropies[i],
            },
            nested={"config.optim.betas": "[0.9, 0.999]"},
            shadowed=("loss",),
            name_matched=True,
            config_json=json_text(config),
            summary_json=json_text(summary),
        )
    return runs, spans, cells


def run_side(side: str, count: int) -> dict[str, float]:
    """One measured run of one side, in this (fresh) process."""
    import io

    import pyarrow as pa
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from reportgen.analysis.project import project_table
    from reportgen.render.analysis import project_csv, project_parquet
    from reportgen.spec import MetricAlias, ParetoSpec, PivotSpec, ProjectTableSpec

    runs, spans, cells = make_cells(count)
    before = _rss_mib()
    started, cpu = time.perf_counter(), time.process_time()
    if side == "reportgen":
        spec = ProjectTableSpec(
            metrics={"score": "last", "loss": "last", "entropy": "mean"},
            primary="score",
            group_by=("config.seed", "config.model"),
            name_fields=r"lr(?P<lr>[0-9.e-]+)-bs(?P<bs>[0-9]+)",
            pareto=ParetoSpec("score", "loss"),
            pivot=PivotSpec("config.optim.lr", "config.batch_size", "score"),
        )
        aliases = {"loss": MetricAlias("loss", ("train/loss",), goal="minimize")}
        table = project_table(spec, aliases, runs, spans, cells)
        size = len(project_csv(table)) + len(project_csv(table, rank=True))
        size += len(project_parquet(table))
    else:
        rows = [
            {"run_id": r.id, "run_name": r.name, **cells[r.id].cells} for r in runs
        ]  # the same cells, flat
        arrow = pa.Table.from_pylist(rows)
        sink = io.BytesIO()
        pacsv.write_csv(arrow, sink)
        size = sink.tell()
        sink = io.BytesIO()
        pq.write_table(arrow, sink)
        size += sink.tell()
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"seconds": seconds, "cpu": cpu, "added_mib": max(peak - before, 0.0), "bytes": size}


def measure(side: str, count: int) -> dict[str, float]:
    done = subprocess.run(
        [sys.executable, __file__, "--side", side, "--runs", str(count)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"the {side} side failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--side", choices=["reportgen", "floor"], help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        print(json.dumps(run_side(args.side, args.runs)))
        return
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    ours, floor = [], []
    for _ in range(args.repeat):
        ours.append(measure("reportgen", args.runs))
        floor.append(measure("floor", args.runs))

    def median(side: list[dict[str, float]], figure: str) -> float:
        return statistics.median(r[figure] for r in side)

    print(f"project table over {args.runs:,} runs (median of {args.repeat}, interleaved)")
    print(f"{'figure':<34} {'value':>9} {'floor':>9} {'ratio':>6} {'goal':>7}  ok")
    lines = [
        ("table + CSV + Parquet, CPU (s)", "cpu", TIME_GOAL),
        ("table + CSV + Parquet, wall (s)", "seconds", TIME_GOAL),
        ("memory added by the stage (MiB)", "added_mib", MEMORY_GOAL),
    ]
    for label, figure, goal in lines:
        value, base = median(ours, figure), median(floor, figure)
        ratio = value / base if base else float("inf")
        ok = "ok" if ratio <= goal else "MISS"
        print(f"{label:<34} {value:>9.2f} {base:>9.2f} {ratio:>6.2f} {f'≤{goal:g}×':>7}  {ok}")
    wall = median(ours, "seconds")
    ok = "ok" if wall <= SECONDS_GOAL else "MISS"
    print(
        f"{'wall time against a fixed goal (s)':<34} {wall:>9.2f} {'':>9} {'':>6} {f'≤{SECONDS_GOAL:g}':>7}  {ok}"
    )


if __name__ == "__main__":
    main()
