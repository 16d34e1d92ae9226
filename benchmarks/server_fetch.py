"""Benchmark: fetching a project of 100+ runs from a W&B server, reportgen versus common scripts.

    .venv/bin/python benchmarks/server_fetch.py [--runs 120] [--steps 2000] [--latency 0.05]
                                                [--workers 6] [--exported] [--data DIR]

A loopback W&B server (tests/wandb_server.py) adds `--latency` seconds to every request, like a
remote server would. It serves `--runs` runs cloned from a few runs written once by the real
wandb client in offline mode (kept in DIR, default benchmarks/.data). Each contender runs in its
own process with the real `wandb.Api`:

  script: history()        for run in api.runs(): run.config, run.summary, run.history()
                           (the pattern of common export scripts; server-sampled, NOT exact)
  script: scan_history()   the same with the exact run.scan_history(), one run after another
  reportgen cold           reportgen build, empty cache, a pool of --workers
  reportgen warm           the same build again: nothing changed on the server

For each it prints the requests the server answered, the wall time, the CPU time of the Python
process (all threads), the CPU time the loopback server spent answering (it shares the machine;
a real server would not) and the peak memory (RSS) of the Python process. wandb-core, the client's
Go helper, is a separate process whose CPU and memory are not counted.
"""

from __future__ import annotations

import argparse
import copy
import json
import math
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "tests"))

KEY = "bench" + "0123456789abcdef" * 2 + "0123456789"
TEMPLATES = 6

SPEC = """\
version: 1
title: Benchmark
source: {{type: wandb, entity: tester, project: tests, base_url: "{url}", workers: {workers}}}
metrics:
  loss: train/loss
  reward: rollout/reward
  length: response_length/mean
  val: val/loss
select:
  best: {{by: loss, reduce: last, pick: min}}
sampling: {{every: 100}}
outputs: {{dir: "{out}", formats: [csv, json]}}
"""


def write_templates(data: Path, steps: int) -> Path:
    """A few real runs (8 metrics, one logged every 10 steps), written once and kept."""
    from runwriter import PlannedRun, write_runs

    target = data / f"server-s{steps}"
    if list(target.glob("wandb/offline-run-*/run-*.wandb")):
        return target
    shutil.rmtree(target, ignore_errors=True)
    plans = []
    for t in range(TEMPLATES):
        rows = []
        for s in range(steps):
            row = {f"train/m{i}": math.sin(s / (40.0 + i + t)) for i in range(4)}
            row["train/loss"] = 2.0 / (1 + s / 100) + 0.01 * t
            row["rollout/reward"] = math.tanh(s / 500) + 0.05 * t
            row["response_length/mean"] = 200 + 50 * math.sin(s / 90 + t)
            if s % 10 == 0:
                row["val/loss"] = 2.2 / (1 + s / 100) + 0.01 * t
            rows.append(row)
        config = {"actor": {"lr": 1e-6 * (t + 1)}, "seed": t}
        plans.append(PlannedRun(name=f"tmpl-{t}", run_id=f"tmpl{t:04d}", rows=rows, config=config))
    started = time.perf_counter()
    write_runs(target, plans)
    print(f"wrote {TEMPLATES} runs x {steps} steps with the real client in "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    return target


def served_runs(folder: Path, count: int, exported: bool) -> list:
    from wandb_server import runs_from_folder

    templates = runs_from_folder(folder, export_finished=exported)
    runs = []
    for k in range(count):
        run = copy.deepcopy(templates[k % len(templates)])
        run.id = f"r{k:04d}{run.id[-2:]}"
        run.display_name = f"run-{k:04d}"
        run.created_at = run.created_at + timedelta(seconds=k)
        run.storage_id = f"UnVuOnYx{k:06d}"
        runs.append(run)
    return runs


# --- the contenders (each in its own process) --------------------------------------------------


def child(mode: str, url: str, spec: str) -> None:
    """One contender; the clock starts after imports (both sides import wandb and pandas)."""
    import pandas as pd
    import wandb

    from reportgen import build

    _ = wandb.Api  # wandb imports its public API lazily: do it before the clock starts too
    started = time.perf_counter()
    if mode.startswith("script"):
        api = wandb.Api(overrides={"base_url": url, "entity": "tester"})
        frames = 0
        for run in api.runs("tester/tests"):
            _ = run.config, dict(run.summary)
            if mode == "script-history":
                frame = run.history()
            else:
                frame = pd.DataFrame(list(run.scan_history()))
            frames += len(frame)
        detail = f"{frames:,} rows"
    else:
        result = build(spec)
        rows = sum(run.rows for run in result.report.runs)
        detail = f"{rows:,} steps in {len(result.report.runs)} runs"
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime + usage.ru_stime
    peak = usage.ru_maxrss / 1024
    print(json.dumps({"wall": wall, "cpu": cpu, "peak_mb": peak, "detail": detail}))


def run_child(mode: str, url: str, spec: Path, env: dict[str, str]) -> dict:
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, url, str(spec)],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"{mode} failed:\n{done.stdout}\n{done.stderr}")
    result: dict = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=120)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--exported", action="store_true", help="serve Parquet history exports")
    parser.add_argument("--data", type=Path, default=HERE / ".data")
    parser.add_argument("--ops", action="store_true", help="count requests by operation")
    parser.add_argument("--child", nargs=3, metavar=("MODE", "URL", "SPEC"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return

    from runwriter import hermetic_env
    from wandb_server import WandbServer

    folder = write_templates(args.data, args.steps)
    runs = served_runs(folder, args.runs, args.exported)
    tmp = Path(tempfile.mkdtemp(prefix="reportgen-bench-"))
    env = hermetic_env(tmp / "wandb")
    env.update(WANDB_API_KEY=KEY, REPORTGEN_CACHE_DIR=str(tmp / "cache"), NETRC=str(tmp / "no"))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    history = "Parquet exports" if args.exported else "live history pages"
    print(f"{args.runs} runs x {args.steps} steps x 8 metrics, {history}; "
          f"{args.latency * 1000:.0f} ms per request; reportgen workers: {args.workers}")  # fmt: skip
    contenders = [
        ("script-history", "script: history()"),
        ("script-scan", "script: scan_history()"),
        ("reportgen-cold", "reportgen cold"),
        ("reportgen-warm", "reportgen warm"),
    ]
    print(f"{'':<24}{'requests':>10}{'wall s':>8}{'cpu s':>8}{'server':>8}{'peak MB':>9}  result")
    walls: dict[str, float] = {}
    with WandbServer(runs, api_key=KEY, latency=args.latency) as server:
        spec = tmp / "bench.yaml"
        spec.write_text(SPEC.format(url=server.url, workers=args.workers, out=tmp / "out"))
        for mode, label in contenders:
            server.reset_log()
            serving = time.process_time()
            figures = run_child(mode, server.url, spec, env)
            serving = time.process_time() - serving
            requests = len(server.requests)
            walls[mode] = figures["wall"]
            print(
                f"{label:<24}{requests:>10,}{figures['wall']:>8.1f}{figures['cpu']:>8.1f}"
                f"{serving:>8.1f}{figures['peak_mb']:>9.0f}  {figures['detail']}"
            )
            if args.ops:
                ops = sorted(server.ops().items(), key=lambda item: -item[1])
                print("  " + ", ".join(f"{op} {count}" for op, count in ops))
    ratio = walls["reportgen-cold"] / walls["script-history"]
    print(f"reportgen cold / script history() wall time: {ratio:.2f}× (goal ≤ 1×, exact "
          f"histories against server-sampled ones; {'met' if ratio <= 1 else 'MISSED'})")  # fmt: skip
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
