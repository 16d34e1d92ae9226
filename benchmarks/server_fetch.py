"""Benchmark: fetching a project of runs from a W&B server, reportgen versus common scripts.

    .venv/bin/python benchmarks/server_fetch.py [--runs 46] [--steps 2000] [--latency 0.05]
                          [--workers 6] [--repeat 3] [--scan] [--exported] [--ops] [--data DIR]

A loopback W&B server (tests/wandb_server.py) adds `--latency` seconds to every request, like a
remote server would. It serves `--runs` runs cloned from a few runs written once by the real
wandb client in offline mode (kept in DIR, default benchmarks/.data). Each contender runs in its
own process with the real `wandb.Api`:

  script: history()        for run in api.runs(): run.config, run.summary, run.history()
                           (the pattern of common export scripts; server-sampled, NOT exact)
  script: scan_history()   the same with the exact run.scan_history(), one run after another
                           (only with --scan: it is slow)
  reportgen cold           reportgen build, empty cache, a pool of --workers
  reportgen warm           the same build again: nothing changed on the server

The floor is the history() script (issue 15's goal: a cold build, which keeps every logged
value, takes no longer than that script, which gets 500 sampled rows a run). The contenders run
interleaved, --repeat times; the figures are medians, and the wall-time ratio is the median of
the paired ratios (each cold build against the script run just before it).

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
import statistics
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
    parser.add_argument("--runs", type=int, default=46)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds per request")
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--repeat", type=int, default=3, help="paired repetitions (median kept)")
    parser.add_argument("--scan", action="store_true", help="also time the scan_history script")
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
    env.update(WANDB_API_KEY=KEY, NETRC=str(tmp / "no"))
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    history = "Parquet exports" if args.exported else "live history pages"
    print(f"{args.runs} runs x {args.steps} steps x 8 metrics, {history}; "
          f"{args.latency * 1000:.0f} ms per request; reportgen workers: {args.workers}; "
          f"median of {args.repeat} interleaved repetitions")  # fmt: skip
    labels = {
        "script-history": "script: history()",
        "script-scan": "script: scan_history()",
        "reportgen-cold": "reportgen cold",
        "reportgen-warm": "reportgen warm",
    }
    # One repetition: the floor, then reportgen on an empty cache, then again on that cache.
    order = ["script-history", "reportgen-cold", "reportgen-warm"]
    seen: dict[str, list[dict]] = {mode: [] for mode in labels}
    with WandbServer(runs, api_key=KEY, latency=args.latency) as server:
        spec = tmp / "bench.yaml"
        spec.write_text(SPEC.format(url=server.url, workers=args.workers, out=tmp / "out"))
        # A server keeps history records as JSON text: the loopback one makes them up front.
        for run in runs:
            for row in run.rows:
                run.record_text(row)
        plan = [(0, "script-scan")] if args.scan else []
        plan += [(rep, mode) for rep in range(args.repeat) for mode in order]
        for rep, mode in plan:
            env["REPORTGEN_CACHE_DIR"] = str(tmp / f"cache-{rep}")
            server.reset_log()
            serving = time.process_time()
            figures = run_child(mode, server.url, spec, env)
            figures["server"] = time.process_time() - serving
            figures["requests"] = len(server.requests)
            figures["ops"] = dict(server.ops())
            seen[mode].append(figures)
    print(f"{'':<24}{'requests':>10}{'wall s':>8}{'cpu s':>8}{'server':>8}{'peak MB':>9}  result")
    for mode, label in labels.items():
        if not seen[mode]:
            continue
        middle = sorted(seen[mode], key=lambda f: f["wall"])[len(seen[mode]) // 2]
        print(
            f"{label:<24}{middle['requests']:>10,}{middle['wall']:>8.1f}{middle['cpu']:>8.1f}"
            f"{middle['server']:>8.1f}{middle['peak_mb']:>9.0f}  {middle['detail']}"
        )
        if args.ops:
            ops = sorted(middle["ops"].items(), key=lambda item: -item[1])
            print("  " + ", ".join(f"{op} {count}" for op, count in ops))
    cold, floor = seen["reportgen-cold"], seen["script-history"]
    walls = [c["wall"] / f["wall"] for c, f in zip(cold, floor, strict=True)]
    print("paired wall ratios (cold / history()): " + " ".join(f"{r:.2f}" for r in walls))
    print(f"\n{'figure':<44}{'value':>9}{'floor':>9}{'ratio':>8}  goal   ")
    figure_line(
        "server: cold build wall s / history() script",
        statistics.median(c["wall"] for c in cold),
        statistics.median(f["wall"] for f in floor),
        statistics.median(walls),
    )
    requests = [c["requests"] / f["requests"] for c, f in zip(cold, floor, strict=True)]
    figure_line(
        "server: cold build requests / history() script",
        statistics.median(c["requests"] for c in cold),
        statistics.median(f["requests"] for f in floor),
        statistics.median(requests),
    )
    print("(reportgen: every logged value of every run; history(): 500 server-sampled rows a run)")
    shutil.rmtree(tmp, ignore_errors=True)


def figure_line(name: str, value: float, floor: float, ratio: float, goal: float = 1.0) -> None:
    verdict = "ok" if ratio <= goal else "MISS"
    print(f"{name:<44}{value:>9.1f}{floor:>9.1f}{ratio:>7.2f}×  ≤ {goal:g}×  {verdict}")


if __name__ == "__main__":
    main()
