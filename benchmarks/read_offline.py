"""Benchmark: read a 100k-step × 10-metric run written by the real wandb client.

    .venv/bin/python benchmarks/read_offline.py [--steps 100000] [--data DIR]

Writes the run once (kept in DIR, default benchmarks/.data, reused on later calls), then times:
  framing   splitting the file into record payloads (reportgen's framing reader)
  protobuf  framing + Record.FromString for every record (the floor for any Python reader)
  reportgen reading the run with OfflineSource into a History and then a wide DataFrame
  cached    the same with reportgen's run cache warm (what a rebuild of an unchanged run costs)
  files     decoding --copies copies of the file in one process, then in worker processes
and prints rows per second for each. Figures go in the closing note of the issue.
"""

from __future__ import annotations

import argparse
import math
import os
import shutil
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

HERE = Path(__file__).resolve().parent
METRICS = [f"train/metric_{i}" for i in range(10)]

WRITER = """
import math, sys, wandb
steps = int(sys.argv[2])
run = wandb.init(mode="offline", dir=sys.argv[1], project="bench", name="bench-100k")
for step in range(steps):
    run.log({f"train/metric_{i}": math.sin(step / (50.0 + i)) + i for i in range(10)}, step=step)
run.finish()
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


def best_of(repeat: int, func):  # type: ignore[no-untyped-def]
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - started)
    return min(times), result


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--data", type=Path, default=HERE / ".data")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--copies", type=int, default=4, help="files for the parallel figure")
    args = parser.parse_args()

    from reportgen.sources.offline import OfflineSource
    from reportgen.sources.wandb_file import pb, read_payloads
    from reportgen.spec import SourceSpec

    path = write_run(args.data, args.steps)
    size = path.stat().st_size
    data = path.read_bytes()

    framing, _ = best_of(args.repeat, lambda: read_payloads(data))

    def decode_all() -> int:
        found, _ = read_payloads(data)
        for payload in found:
            pb.Record.FromString(payload)
        return len(found)

    protobuf, records = best_of(args.repeat, decode_all)

    def read_frame(cache=None):  # type: ignore[no-untyped-def]
        source = OfflineSource(SourceSpec("wandb-offline", path=str(path.parent)), cache=cache)
        (run,) = source.list_runs()
        history = source.history(run)
        import pandas as pd

        return pd.concat([history.series(k) for k in METRICS], axis=1)

    reportgen_time, frame = best_of(args.repeat, read_frame)
    assert frame.shape == (args.steps, len(METRICS)), frame.shape
    assert math.isclose(frame.iloc[-1, 0], math.sin((args.steps - 1) / 50.0))

    import tempfile

    from reportgen.cache import RunCache

    with tempfile.TemporaryDirectory() as cache_dir:
        cache = RunCache(Path(cache_dir))
        read_frame(cache)  # fills the cache
        cached_time, cached_frame = best_of(args.repeat, lambda: read_frame(cache))
    assert cached_frame.equals(frame)

    from reportgen.sources import offline

    copies = [path] * args.copies
    saved = offline.PARALLEL_MIN_BYTES
    offline.PARALLEL_MIN_BYTES = 1 << 62
    one_process, _ = best_of(1, lambda: list(offline._decode(copies)))
    offline.PARALLEL_MIN_BYTES = 0
    pooled, _ = best_of(1, lambda: list(offline._decode(copies)))
    offline.PARALLEL_MIN_BYTES = saved

    tracemalloc.start()
    read_frame()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    rows = args.steps
    print(
        f"file: {size / 1e6:.1f} MB, {records:,} records, {rows:,} steps × {len(METRICS)} metrics"
    )
    print(f"{'stage':<34}{'seconds':>9}{'rows/s':>14}")
    for label, seconds in [
        ("framing only", framing),
        ("framing + protobuf decode (all)", protobuf),
        ("reportgen → DataFrame", reportgen_time),
        ("reportgen → DataFrame, cache warm", cached_time),
    ]:
        print(f"{label:<34}{seconds:>9.3f}{rows / seconds:>14,.0f}")
    ratio = reportgen_time / protobuf
    verdict = "met" if ratio <= 2 else "MISSED"
    print(f"reportgen / protobuf-decode time: {ratio:.2f}× (goal ≤ 2×: {verdict})")
    workers = min(args.copies, os.cpu_count() or 1)
    print(
        f"decoding {args.copies} such files: {one_process:.2f} s in one process, "
        f"{pooled:.2f} s in {workers} worker processes ({one_process / pooled:.2f}× faster)"
    )
    print(f"peak Python memory while reading: {peak / 1e6:.0f} MB (file {size / 1e6:.0f} MB)")


if __name__ == "__main__":
    main()
