"""Benchmark: builds over 10^3 and 10^4 runs, locally and on Ray, and a projection for a cluster.

    .venv/bin/python benchmarks/scale.py [--runs 1000 10000] [--executors local ray]
                                         [--cpus 2] [--steps 300] [--data DIR] [--warm]

Writes four small template runs once with the real wandb client (an RL run, an RL run whose
entropy collapses, a supervised run, a supervised run that diverges to NaN; kept in DIR,
default benchmarks/.data/scale) and copies them under new run ids into N run folders. The run
id lives in the run record inside each .wandb file, so each copy is re-framed: its records are
split with the LevelDB-log framing, the run record gets its new id and name, and the records
are framed again (checksums and all), as wandb itself writes them.

Each (N, executor) case runs in a fresh process that builds one spec (aliases, a selection,
health checks, a project table with group-by and correlations; report.json and CSVs) and prints
  map       reading, resolving, sampling and checking every run (the part an executor spreads)
  reduce    selections, project table, assembling the report
  write     report.json and the CSV/Parquet files
  peak RSS  of the process that runs the build (the driver, for Ray)
Ray runs on a local instance with --cpus CPUs, started before the clock starts (its start-up
is printed on its own). With --warm, each case is built with a run cache of its own, twice: the
second ("warm") build finds every file in the cache and decodes nothing, on Ray as locally. From the measured map time per run and CPU, it projects the wall time
of 10^5 runs on clusters of several sizes. Figures go in the issue's closing note and in
docs/scale.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK = 32 * 1024
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4

# Four shapes of run, logged by the real client; `kind` picks the curves.
WRITER = """
import math, sys, wandb
root, kind, steps = sys.argv[1], sys.argv[2], int(sys.argv[3])
config = {"optim": {"lr": 1e-4 if kind.startswith("sft") else 1e-6}, "seed": len(kind),
          "model": "tiny", "batch_size": 32}
run = wandb.init(mode="offline", dir=root, project="scale", name=f"{kind}-template",
                 config=config, tags=["scale", kind])
for step in range(steps):
    if kind.startswith("rl"):
        collapse = kind == "rl-collapse" and step > steps // 2
        row = {
            "actor/entropy": 0.01 if collapse else 1.2 - step / (4 * steps),
            "actor/ppo_kl": 0.002 + 0.0005 * math.sin(step / 9),
            "actor/pg_clipfrac": 0.05 + 0.01 * math.cos(step / 7),
            "response_length/mean": 300 + 40 * math.sin(step / 30) - step / 10,
            "critic/score/mean": 0.2 + 0.5 * step / steps + 0.02 * math.sin(step / 5),
            "actor/grad_norm": 1.0 + 0.1 * math.sin(step / 3),
        }
    else:
        loss = 2.0 / (1 + step / 20)
        if kind == "sft-nan" and step >= steps * 2 // 3:
            loss = float("nan")
        row = {"train/loss": loss, "grad_norm": 0.5 + 0.05 * math.sin(step / 4),
               "learning_rate": 1e-4}
        if step % 10 == 0:
            row["val/loss"] = 2.2 / (1 + step / 20)
    run.log(row, step=step)
run.finish()
"""
KINDS = ("rl", "rl-collapse", "sft", "sft-nan")

SPEC = """version: 1
title: scale benchmark
source: {{type: wandb-offline, path: "{root}"}}
runs: {{filters: {{tags: {{any: [scale]}}}}}}
metrics:
  entropy: [actor/entropy, train/entropy]
  kl: [actor/ppo_kl, train/kl]
  length: response_length/mean
  score: critic/score/mean
  loss: {{key: [train/loss], goal: minimize}}
  val_loss: {{key: [val/loss], goal: minimize}}
select:
  best_score: {{by: score, reduce: last, pick: max}}
sampling: {{x: _step, start: 0, every: 50, align: asof}}
project_table:
  metrics: {{score: last, loss: last, entropy: mean}}
  primary: score
  group_by: [config.seed]
outputs: {{dir: "{out}", formats: [csv, json]}}
"""


# --- making runs -------------------------------------------------------------------------------


def write_templates(data: Path, steps: int) -> list[Path]:
    """The four template runs, written once by the real client and reused."""
    target = data / f"templates-{steps}"
    found = sorted(target.glob("wandb/offline-run-*/run-*.wandb"))
    if len(found) == len(KINDS):
        return found
    shutil.rmtree(target, ignore_errors=True)
    target.mkdir(parents=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        WANDB_SILENT="true", WANDB_ERROR_REPORTING="false", WANDB_CONFIG_DIR=str(target / ".cfg")
    )
    for kind in KINDS:
        subprocess.run(
            [sys.executable, "-c", WRITER, str(target), kind, str(steps)], env=env, check=True
        )
    return sorted(target.glob("wandb/offline-run-*/run-*.wandb"))


def split_records(data: bytes) -> list[bytes]:
    """The record payloads of an intact transaction log (the framing in wandb-facts.md)."""
    assert data.startswith(HEADER)
    payloads: list[bytes] = []
    pending = b""
    pos = len(HEADER)
    while pos < len(data):
        room = BLOCK - pos % BLOCK
        if room < CHUNK_HEADER:
            pos += room
            continue
        _checksum, length, kind = struct.unpack_from("<IHB", data, pos)
        if length == 0 and kind == 0:
            break
        chunk = data[pos + CHUNK_HEADER : pos + CHUNK_HEADER + length]
        pos += CHUNK_HEADER + length
        if kind == FULL:
            payloads.append(chunk)
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        else:
            payloads.append(pending + chunk)
    return payloads


def frame_records(payloads: list[bytes]) -> bytes:
    """The inverse of `split_records`: 32 KiB blocks, chunks with their CRC-32."""
    out = bytearray(HEADER)
    for payload in payloads:
        rest = payload
        first = True
        while True:
            room = BLOCK - len(out) % BLOCK
            if room < CHUNK_HEADER:
                out += bytes(room)
                continue
            piece, rest = rest[: room - CHUNK_HEADER], rest[room - CHUNK_HEADER :]
            last = not rest
            kind = FULL if first and last else FIRST if first else LAST if last else MIDDLE
            checksum = zlib.crc32(piece, zlib.crc32(bytes([kind])))
            out += struct.pack("<IHB", checksum, len(piece), kind) + piece
            first = False
            if last:
                break
    return bytes(out)


def make_runs(data: Path, templates: list[Path], count: int) -> Path:
    """`count` run folders copied round-robin from the templates, each with its own run id."""
    from wandb.proto import wandb_internal_pb2 as pb

    root = data / f"runs-{count}-{templates[0].parent.parent.parent.name}"
    done = root / "complete"
    if done.exists():
        return root
    shutil.rmtree(root, ignore_errors=True)
    started = time.perf_counter()
    parsed = []
    for template in templates:
        payloads = split_records(template.read_bytes())
        at = next(
            i
            for i, p in enumerate(payloads)
            if pb.Record.FromString(p).WhichOneof("record_type") == "run"
        )
        parsed.append((template, payloads, at, pb.Record.FromString(payloads[at])))
    for index in range(count):
        template, payloads, at, record = parsed[index % len(parsed)]
        run_id = f"s{index:07d}"
        record.run.run_id = run_id
        record.run.display_name = f"{template.stem.removeprefix('run-')}-{index}"
        copied = list(payloads)
        copied[at] = record.SerializeToString()
        folder = root / "wandb" / f"offline-run-20261121_000000-{run_id}"
        folder.mkdir(parents=True)
        (folder / f"run-{run_id}.wandb").write_bytes(frame_records(copied))
    done.write_text("")
    print(f"  made {count:,} runs in {time.perf_counter() - started:.1f} s ({root})")
    return root


# --- one measured build (in its own process) -------------------------------------------------


def measure(root: Path, out: Path, executor: str, cpus: int, cache: str = "") -> dict[str, float]:
    import resource
    from datetime import datetime, timezone

    from reportgen.build import make_report
    from reportgen.cache import CacheLocation, RunCache
    from reportgen.executors import LocalExecutor, MappedRuns, RayExecutor
    from reportgen.render import write_outputs
    from reportgen.sources import open_source
    from reportgen.spec import load_spec

    spec_path = root / "scale.yaml"  # one spec per run folder: the same report.json either way
    spec_path.write_text(SPEC.format(root=root, out=root / "out"))
    spec = load_spec(spec_path)
    now = datetime(2026, 11, 30, tzinfo=timezone.utc)
    figures: dict[str, float] = {}
    started = time.perf_counter()
    if executor == "ray":
        import ray

        ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False, logging_level=40)
        figures["start"] = time.perf_counter() - started
    run_cache = RunCache.at(CacheLocation(Path(cache), "the benchmark")) if cache else None
    source = open_source(spec.source, run_cache)
    runner = RayExecutor() if executor == "ray" else LocalExecutor()
    started = time.perf_counter()
    mapped = runner.map_runs(spec, source, now)
    figures["map"] = time.perf_counter() - started

    class Mapped:  # hands the measured map to the reduce
        name = executor

        def map_runs(self, *args: object, **kwargs: object) -> MappedRuns:
            return mapped

    started = time.perf_counter()
    report = make_report(spec, source, now, executor=Mapped())
    figures["reduce"] = time.perf_counter() - started
    started = time.perf_counter()
    write_outputs(report, out, spec.outputs.formats, ())
    figures["write"] = time.perf_counter() - started
    figures["runs"] = len(report.runs)
    figures["peak_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    figures["children_peak_mib"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return figures


def run_case(
    root: Path, out: Path, executor: str, cpus: int, cache: Path | None = None
) -> dict[str, float]:
    """One build in a fresh process, so peak memory is that build's alone."""
    done = subprocess.run(
        [
            sys.executable,
            __file__,
            "--measure",
            str(root),
            str(out),
            executor,
            str(cpus),
            str(cache or ""),
        ],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"the {executor} build over {root} failed:\n{done.stderr[-3000:]}")
    result: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def per_run_cost(root: Path, count: int = 20) -> None:
    """Read and digest `count` runs in this one process: the cost of a run on one core, apart
    from any executor (the floor of the projection when a cluster's cores are not shared)."""
    from datetime import datetime, timezone

    from reportgen.digest import digest_run
    from reportgen.sources.offline import OfflineSource
    from reportgen.spec import load_spec

    spec_path = root / "scale.yaml"
    spec_path.write_text(SPEC.format(root=root, out=root / "out"))
    spec = load_spec(spec_path)
    files = sorted(root.glob("wandb/offline-run-*/run-*.wandb"))[:count]
    now = datetime(2026, 11, 30, tzinfo=timezone.utc)
    source = OfflineSource(spec.source)
    started = time.perf_counter()
    runs = source.read_runs(files, now=now)
    read = time.perf_counter() - started
    started = time.perf_counter()
    for run in runs:
        digest_run(spec, run, source.history(run), now)
    digest = time.perf_counter() - started
    print(
        f"one process, {len(files)} runs: read {1000 * read / len(files):.0f} ms + digest "
        f"{1000 * digest / len(files):.0f} ms per run"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--executors", nargs="+", default=["local", "ray"])
    parser.add_argument("--cpus", type=int, default=2, help="CPUs of the local Ray instance")
    parser.add_argument("--steps", type=int, default=300, help="steps per template run")
    parser.add_argument("--data", type=Path, default=HERE / ".data" / "scale")
    parser.add_argument(
        "--warm",
        action="store_true",
        help="build each case twice with a run cache (its own per executor): cold, then warm",
    )
    parser.add_argument("--measure", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.measure:
        root, out, executor, cpus, cache = args.measure
        print(json.dumps(measure(Path(root), Path(out), executor, int(cpus), cache)))
        return

    templates = write_templates(args.data, args.steps)
    size = sum(t.stat().st_size for t in templates) / len(templates)
    print(
        f"templates: {len(templates)} real-client runs of {args.steps} steps, {size / 1024:.0f} KiB each"
    )
    header = f"{'runs':>7} {'executor':<9} {'map s':>8} {'reduce s':>9} {'write s':>8} {'total s':>8} {'ms/run':>7} {'peak MiB':>9}"
    rows = []
    for count in args.runs:
        root = make_runs(args.data, templates, count)
        if count == args.runs[0]:
            per_run_cost(root)
        for executor in args.executors:
            out = args.data / f"out-{count}-{executor}"
            cache = args.data / f"cache-{count}-{executor}" if args.warm else None
            if cache is not None:
                shutil.rmtree(cache, ignore_errors=True)
            for label in ("", "warm") if args.warm else ("",):
                figures = run_case(root, out, executor, args.cpus, cache)
                assert figures["runs"] == count, figures
                if not label:
                    rows.append((count, executor, figures))
                total = figures["map"] + figures["reduce"] + figures["write"]
                if len(rows) == 1 and not label:
                    print(header)
                start = f" (+{figures['start']:.1f} s Ray start-up)" if "start" in figures else ""
                name = f"{executor} {label}".strip()
                print(
                    f"{count:>7,} {name:<9} {figures['map']:>8.1f} {figures['reduce']:>9.1f} "
                    f"{figures['write']:>8.1f} {total:>8.1f} {1000 * total / count:>7.2f} "
                    f"{figures['peak_mib']:>9.0f}{start}"
                )
        same = [
            (args.data / f"out-{count}-{e}" / "report.json").read_bytes() for e in args.executors
        ]
        print(f"  report.json identical across executors: {all(s == same[0] for s in same)}")
    project(rows, args.cpus)


def project(rows: list[tuple[int, str, dict[str, float]]], cpus: int) -> None:
    """Wall time of 10^5 runs on K CPUs: map cost per run and CPU from the largest Ray case,
    spread over K; reduce and write scaled linearly from the same case; Ray start-up added."""
    ray_rows = [r for r in rows if r[1] == "ray"]
    if not ray_rows:
        return
    count, _, figures = max(ray_rows, key=lambda r: r[0])
    per_run_cpu = figures["map"] * cpus / count
    target = 100_000
    tail = (figures["reduce"] + figures["write"]) * target / count
    print(
        f"projection for {target:,} runs like these: {1000 * per_run_cpu:.1f} ms of map per run "
        f"and CPU (measured at {count:,} runs on {cpus} CPUs), reduce + write {tail:.0f} s"
    )
    for workers in (2, 32, 128, 512):
        wall = figures["start"] + per_run_cpu * target / workers + tail
        print(f"  {workers:>4} CPUs: ~{wall / 60:6.1f} min")


if __name__ == "__main__":
    main()
