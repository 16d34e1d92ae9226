"""Benchmark: false alarms of the health checks on many noisy healthy runs, and their speed.

    .venv/bin/python benchmarks/health_checks.py [--seeds 200] [--steps 600] [--long 100000]

1. False alarms: for each seed, one healthy supervised run and one healthy GRPO-style run
   (tests/health_curves.py: power-law losses with heavy-tailed noise, saturating rewards,
   small noisy KL, …) go through every check of the `auto` preset. Prints the runs that got
   any finding, per check id. The target is zero.
2. Speed: all checks on one RL run and one supervised run of `--long` steps.

The curves are built in memory (no wandb) so thousands of runs take seconds; the tests check
the same shapes on runs written by the real wandb client.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))

from health_curves import rl_curves, supervised_curves  # noqa: E402

from reportgen.health import check_run  # noqa: E402
from reportgen.metrics import resolve_metrics  # noqa: E402
from reportgen.runs import History, Run  # noqa: E402
from reportgen.spec import HealthSpec  # noqa: E402

NOW = datetime(2026, 11, 21, tzinfo=timezone.utc)


def history_of(rows: list[dict[str, float]]) -> History:
    keys = sorted({k for row in rows for k in row})
    points = {}
    for key in keys:
        steps = [i for i, row in enumerate(rows) if key in row]
        points[key] = (steps, [rows[i][key] for i in steps])
    return History.from_points(points)


def findings_for(rows: list[dict[str, float]], name: str) -> list[str]:
    run = Run(id=name, name=name, state="finished", exit_code=0)
    history = history_of(rows)
    resolved = resolve_metrics(run, history, {})
    found, _ = check_run(HealthSpec(), {}, run, history, resolved, NOW)
    return [f"{f.check}: {f.message}" for f in found]


def false_alarms(seeds: int, steps: int) -> None:
    counts: Counter[str] = Counter()
    examples: dict[str, str] = {}
    for seed in range(seeds):
        for kind, rows in (
            ("supervised", supervised_curves(seed, steps)),
            ("rl", rl_curves(seed, steps)),
        ):
            for line in findings_for(rows, f"{kind}-{seed}"):
                check = line.split(":")[0]
                counts[f"{kind}/{check}"] += 1
                examples.setdefault(f"{kind}/{check}", f"seed {seed}: {line}")
    total = 2 * seeds
    print(f"false alarms on {total} healthy noisy runs of {steps} steps: {sum(counts.values())}")
    for name, count in counts.most_common():
        print(f"  {name}: {count}  e.g. {examples[name]}")


def speed(steps: int) -> None:
    for kind, rows in (("rl", rl_curves(0, steps)), ("supervised", supervised_curves(0, steps))):
        run = Run(id=kind, name=kind, state="finished", exit_code=0)
        history = history_of(rows)
        resolved = resolve_metrics(run, history, {})
        started = time.perf_counter()
        check_run(HealthSpec(), {}, run, history, resolved, NOW)
        elapsed = time.perf_counter() - started
        print(f"all checks on one {kind} run of {steps} steps: {elapsed:.2f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--long", type=int, default=100_000)
    args = parser.parse_args()
    false_alarms(args.seeds, args.steps)
    speed(args.long)


if __name__ == "__main__":
    main()
