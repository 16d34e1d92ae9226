"""Benchmark: read a 100k-step × 10-metric run written by the real wandb client.

    .venv/bin/python benchmarks/read_offline.py [--steps 100000] [--data DIR] [--repeat 5]

Writes the run once (kept in DIR, default benchmarks/.data, reused on later calls: writing
takes about half a minute), then measures, against issue 15's goals:

  floor    framing + `Record.FromString` of every record (reportgen's framing reader and
           protobuf's decoder: what any Python reader of the file must at least do)
  reader   what `reportgen build` does to read the run: OfflineSource lists the run and hands
           over its history (no cache)

Floor and reader runs alternate (floor, reader, floor, reader, ...) so that both see the same
machine; the ratio is the median of the pairs' ratios (goal ≤ 2×). Then one `reportgen build`
of a spec over the run, in a fresh process with an empty cache, gives the peak resident memory
of a whole build (goal ≤ 500 MB), and the cache-warm read is timed for information.
"""

from __future__ import annotations

import argparse
import gc
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
METRICS = [f"train/metric_{i}" for i in range(10)]
RATIO_GOAL = 2.0
RSS_GOAL_MB = 500

WRITER = """
import math, sys, wandb
steps = int(sys.argv[2])
run = wandb.init(mode="offline", dir=sys.argv[1], project="bench", name="bench-100k")
for step in range(steps):
    run.log({f"train/metric_{i}": math.sin(step / (50.0 + i)) + i for i in range(10)}, step=step)
run.finish()
"""

SPEC = """\
version: 1
title: Reader benchmark
source: {{type: wandb-offline, path: "{source}"}}
metrics:
  m0: train/metric_0
sampling: {{every: 100}}
health: {{preset: auto}}
outputs: {{dir: "{out}", formats: [csv, json]}}
"""


def write_run(data: Path, steps: int) -> Path:
    existing = sorted(data.glob(f"s{steps}/wandb/offline-run-*/run-*.wandb"))
    if existing:
        return existing[0]
    target = data / f"s{steps}"
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        WANDB_SILENT="true", WANDB_ERROR_REPORTING="false", WANDB_CONFIG_DIR=str(target / ".cfg")
    )
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", WRITER, str(target), str(steps)], env=env, check=True)
    print(f"wrote {steps:,} steps with the real client in {time.perf_counter() - started:.1f} s")
    return sorted(target.glob("wandb/offline-run-*/run-*.wandb"))[0]


def timed(func):  # type: ignore[no-untyped-def]
    gc.collect()
    started = time.perf_counter()
    result = func()
    return time.perf_counter() - started, result


def build_peak_rss(run_folder: Path) -> tuple[float, float, int]:
    """(peak RSS in MB, wall seconds, exit code) of one cold `reportgen build` process."""
    with tempfile.TemporaryDirectory(prefix="reportgen-read-") as tmp:
        spec = Path(tmp, "spec.yaml")
        spec.write_text(SPEC.format(source=run_folder, out=Path(tmp, "out")), encoding="utf-8")
        env = {**os.environ, "REPORTGEN_CACHE_DIR": str(Path(tmp, "cache"))}
        env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
        command = [sys.executable, "-m", "reportgen", "build", str(spec), "-q"]
        started = time.perf_counter()
        child = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.DEVNULL)
        _, status, usage = os.wait4(child.pid, 0)
        seconds = time.perf_counter() - started
        child.returncode = os.waitstatus_to_exitcode(status)
    return usage.ru_maxrss / 1024, seconds, child.returncode  # ru_maxrss: KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--data", type=Path, default=HERE / ".data")
    parser.add_argument("--repeat", type=int, default=5, help="floor/reader pairs")
    args = parser.parse_args()

    from reportgen.sources.offline import OfflineSource
    from reportgen.sources.wandb_file import pb, read_payloads
    from reportgen.spec import SourceSpec

    path = write_run(args.data, args.steps)
    size = path.stat().st_size

    def floor() -> int:
        payloads, _ = read_payloads(path.read_bytes())
        parse = pb.Record.FromString
        for payload in payloads:
            parse(payload)
        return len(payloads)

    def read(cache=None):  # type: ignore[no-untyped-def]
        source = OfflineSource(SourceSpec("wandb-offline", path=str(path.parent)), cache=cache)
        (run,) = source.list_runs()
        return source.history(run)

    floors, reads, ratios = [], [], []
    records = 0
    for _ in range(args.repeat):
        floor_time, records = timed(floor)
        read_time, history = timed(read)
        floors.append(floor_time)
        reads.append(read_time)
        ratios.append(read_time / floor_time)
    # What was read is the run as written: every step of every metric, the last value exact.
    for key in METRICS:
        assert len(history.series(key)) == args.steps, key
    last = history.series(METRICS[0]).iloc[-1]
    assert math.isclose(last, math.sin((args.steps - 1) / 50.0)), last

    from reportgen.cache import RunCache

    with tempfile.TemporaryDirectory() as cache_dir:
        cache = RunCache(Path(cache_dir))
        read(cache)  # fills the cache
        cached_time = statistics.median(timed(lambda: read(cache))[0] for _ in range(3))

    peak_mb, build_seconds, code = build_peak_rss(path.parent)

    ratio = statistics.median(ratios)
    print(f"file: {size / 1e6:.1f} MB, {records:,} records, {args.steps:,} steps × {len(METRICS)} "
          f"metrics; {args.repeat} floor/reader pairs, medians")  # fmt: skip
    print(f"{'figure':<44}{'value':>10}{'floor':>10}{'ratio':>8}{'goal':>10}  ok")
    print(f"{'reader: read the run for a build':<44}{statistics.median(reads):>9.2f}s"
          f"{statistics.median(floors):>9.2f}s{ratio:>7.2f}×{'≤ 2×':>10}  "
          f"{'met' if ratio <= RATIO_GOAL else 'MISS'}")  # fmt: skip
    print(f"{'peak RSS of a cold reportgen build':<44}{peak_mb:>8.0f}MB{'':>10}{'':>8}"
          f"{'≤ 500 MB':>10}  {'met' if peak_mb <= RSS_GOAL_MB else 'MISS'}")  # fmt: skip
    print(
        f"  (that build: {build_seconds:.1f} s wall, exit {code}; "
        f"cache-warm read of the run: {cached_time:.2f} s)"
    )


if __name__ == "__main__":
    main()
