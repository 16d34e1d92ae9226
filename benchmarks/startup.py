"""Benchmark: how long the commands that read no run data take to start, against their floors.

    .venv/bin/python benchmarks/startup.py [--repeat 15] [--code DIR]

Each command runs as a fresh process (`reportgen` is the installed console script), interleaved
with its floor, and the best of --repeat runs is kept, both wall time and CPU time (user + system)
of the child: on a shared machine the minimum is the figure least disturbed by other work, and
CPU time is disturbed less than wall time. Floors and goals (issue 15):

  reportgen --help           vs  python -c "import argparse"            goal ≤ 3×
  reportgen validate SPEC    vs  python -c "import yaml, jsonschema"    goal ≤ 1.5×

SPEC is specs/demo.yaml and specs/analysis-demo.yaml (expressions, conditions), and a spec that
tunes health checks (`health.checks`, checked against reportgen/check_catalogue.py without
loading the checks, numpy or pandas), each against the same floor. --code DIR times another checkout of
reportgen with this venv (before/after figures on the same machine).
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

TUNED = """\
version: 1
source: {type: wandb-offline, path: examples/wandb}
metrics: {loss: [train/loss, loss]}
health: {checks: {kl_high: {threshold: 0.2}}, disable: [plateau]}
"""


ENV = dict(os.environ)


def timed(command: list[str]) -> tuple[float, float]:
    """Wall and CPU seconds of one run of `command` in a fresh process."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    subprocess.run(command, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, check=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument(
        "--code", type=Path, help="time another checkout of reportgen (e.g. /work/main)"
    )
    args = parser.parse_args()
    if args.code is not None:
        ENV["PYTHONPATH"] = os.pathsep.join([str(args.code.resolve()), ENV.get("PYTHONPATH", "")])
    python, reportgen = str(BIN / "python"), str(BIN / "reportgen")
    # Time what an installed reportgen does, not a compile of every source file: with
    # PYTHONDONTWRITEBYTECODE set (common in containers and CI) or after an edit, each run would
    # otherwise compile the changed modules again.
    code = (args.code or REPO).resolve() / "reportgen"
    subprocess.run([python, "-m", "compileall", "-q", str(code)], check=True)
    with tempfile.TemporaryDirectory() as tmp:
        tuned = Path(tmp) / "tuned.yaml"
        tuned.write_text(TUNED, encoding="utf-8")
        rows = [
            ("reportgen --help", [reportgen, "--help"], "import argparse", 3.0),
            ("validate specs/demo.yaml", [reportgen, "validate", "specs/demo.yaml"],
             "import yaml, jsonschema", 1.5),
            ("validate specs/analysis-demo.yaml",
             [reportgen, "validate", "specs/analysis-demo.yaml"], "import yaml, jsonschema", 1.5),
            ("validate (spec tunes checks)", [reportgen, "validate", os.fspath(tuned)],
             "import yaml, jsonschema", 1.5),
        ]  # fmt: skip
        floors: dict[str, tuple[float, float]] = {}
        print(f"{'command':<36}{'wall s':>8}{'floor':>7}{'ratio':>7}{'cpu s':>8}{'floor':>7}"
              f"{'ratio':>7}  goal")  # fmt: skip
        for label, command, floor_code, goal in rows:
            # Interleave the command with its floor so both see the same load.
            wall, cpu = float("inf"), float("inf")
            floor_wall, floor_cpu = floors.get(floor_code, (float("inf"), float("inf")))
            for _ in range(args.repeat):
                w, c = timed(command)
                wall, cpu = min(wall, w), min(cpu, c)
                w, c = timed([python, "-c", floor_code])
                floor_wall, floor_cpu = min(floor_wall, w), min(floor_cpu, c)
            floors[floor_code] = (floor_wall, floor_cpu)
            by_wall, by_cpu = wall / floor_wall, cpu / floor_cpu
            verdict = ""
            if goal is not None:
                met = "met" if max(by_wall, by_cpu) <= goal else "MISSED"
                verdict = f"≤ {goal:g}×  {met}"
            print(f"{label:<36}{wall:>8.3f}{floor_wall:>7.3f}{by_wall:>6.2f}×"
                  f"{cpu:>8.3f}{floor_cpu:>7.3f}{by_cpu:>6.2f}×  {verdict}")  # fmt: skip


if __name__ == "__main__":
    main()
