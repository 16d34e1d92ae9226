"""How long the analysis stages take on a project of many real runs (run on demand, prints figures).

Writes N runs with the real wandb client (offline) once into a cache folder, then times
`reportgen runs`, `reportgen keys` and a build with stats, compare and project_table sections
(with name fields, a Pareto front and a pivot)
against a build without them, and prints wall time and peak memory of each.

    .venv/bin/python benchmarks/analysis.py [--runs 200] [--steps 500]
"""

from __future__ import annotations

import argparse
import contextlib
import io
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from runwriter import PlannedRun, write_runs  # noqa: E402

SPEC = """\
version: 1
source: {{type: wandb-offline, path: "{path}"}}
metrics:
  loss: train/loss
  val_loss: val/loss
  accuracy: eval/accuracy
  grad_norm: grad_norm
  gap: {{expr: "val_loss - loss"}}
select:
  best: {{by: loss, reduce: last, pick: min}}
  worst: {{by: loss, reduce: last, pick: max}}
sampling: {{every: 50}}
{analysis}
outputs: {{dir: "{out}", formats: [markdown, csv, json]}}
"""

ANALYSIS = """\
stats: {}
compare: {runs: [best, worst]}
project_table:
  metrics: {loss: last, accuracy: max, grad_norm: mean}
  group_by: [config.optim.lr]
  name_fields: '^bench-(?P<index>\\d+)$'
  pareto: {quality: accuracy, cost: grad_norm}
  pivot: {rows: config.optim.lr, columns: config.seed, metric: loss}
"""


def plans(runs: int, steps: int) -> list[PlannedRun]:
    result = []
    for i in range(runs):
        lr, seed = 10 ** -(1 + i % 4), i // 4
        rows = []
        for s in range(steps):
            loss = 2.0 / (1 + s * lr * 10) + 0.01 * (seed % 7) + 0.001 * math.sin(s + i)
            row = {"train/loss": loss, "eval/accuracy": 1 - loss / 3, "grad_norm": 1 + (s % 13)}
            if s % 10 == 0:
                row["val/loss"] = loss + 0.1
            rows.append(row)
        config = {"optim": {"lr": lr, "momentum": 0.9}, "seed": seed, "model": {"width": 64}}
        result.append(
            PlannedRun(name=f"bench-{i}", run_id=f"bench{i:04d}", rows=rows, config=config)
        )
    return result


def measure(label: str, argv: list[str]) -> None:
    """Run `python -m reportgen …` in a child so each figure has its own peak memory."""
    code = (
        "import resource, sys, time\n"
        "from reportgen.cli import main\n"
        "t = time.perf_counter(); rc = main(sys.argv[1:]); t = time.perf_counter() - t\n"
        "peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(f'{rc} {t:.2f} {peak:.0f}', file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, *argv], capture_output=True, text=True, check=False
    )
    rc, seconds, peak = done.stderr.strip().splitlines()[-1].split()
    print(f"{label:<44} exit {rc}  {float(seconds):6.2f} s  peak {int(peak):5d} MiB")


def measure_stage(spec_path: Path) -> None:
    """The analysis stage alone, in this process, on runs already digested (median of 3)."""
    from datetime import datetime, timezone

    from reportgen.analysis.stage import analyse
    from reportgen.executors import LocalExecutor
    from reportgen.render.analysis import analysis_files
    from reportgen.select import choose
    from reportgen.sources import open_source
    from reportgen.spec import load_spec

    spec = load_spec(spec_path)
    source = open_source(spec.source)
    digests = LocalExecutor().map_runs(spec, source, datetime.now(timezone.utc)).digests
    runs = [d.run for d in digests]
    histories = {d.run.id: d.history for d in digests}
    spans = {d.run.id: d.span for d in digests}
    cells = {d.run.id: d.project for d in digests if d.project is not None}
    metrics = {d.run.id: d.metrics for d in digests}
    selections = [choose(s, metrics) for s in spec.select.values()]
    times = []
    for _ in range(3):
        started = time.perf_counter()
        analysis = analyse(spec, runs, histories, spans, cells, metrics, selections)
        files = analysis_files(analysis)
        times.append(time.perf_counter() - started)
    size = sum(len(data) for _, data in files)
    print(
        f"{'analyse() + its CSV/Parquet, in process':<44}         {sorted(times)[1]:6.2f} s"
        f"  ({len(files)} files, {size / 1024:.0f} KiB)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument(
        "--cache", type=Path, default=Path(tempfile.gettempdir()) / "reportgen-bench"
    )
    args = parser.parse_args()
    folder = args.cache / f"analysis-{args.runs}x{args.steps}"
    if not (folder / "wandb").exists():
        started = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            write_runs(folder, plans(args.runs, args.steps))
        print(
            f"wrote {args.runs} runs × {args.steps} steps in {time.perf_counter() - started:.1f} s"
        )
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "plain.yaml"
        full = Path(tmp) / "full.yaml"
        plain.write_text(SPEC.format(path=folder, out=Path(tmp) / "p", analysis=""))
        full.write_text(SPEC.format(path=folder, out=Path(tmp) / "f", analysis=ANALYSIS))
        print(f"{args.runs} runs × {args.steps} steps, 4 metrics; wall time and peak RSS:")
        measure("reportgen runs --source", ["runs", "--source", str(folder)])
        measure("reportgen keys --source", ["keys", "--source", str(folder)])
        measure("reportgen build (no analysis sections)", ["build", "-q", str(plain)])
        measure("reportgen build (stats, compare, project)", ["build", "-q", str(full)])
        measure_stage(full)


if __name__ == "__main__":
    main()
