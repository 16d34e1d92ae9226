"""Benchmark: building a report over a folder of hundreds of real runs, cold and warm.

    .venv/bin/python benchmarks/folder_build.py [--source /work/corpus] [--files N] [--repeat 2]
                                                 [--code DIR]

The folder (default: the development corpus at /work/corpus, else the demo runs) is searched for
`.wandb` files; with --files N only the first N (by path) are used, copied into a temporary
folder. The spec reads every run, resolves a loss alias, runs the `auto` health checks
and writes report.json and one CSV per run (every 10th step). Each build is a fresh process
(`python -m reportgen build`), timed by wall clock:

  start-up   a process that imports what a build imports, and exits
  cold       the build with an empty cache: every file is decoded (--cold times; each cold
             build is set against the mean of the floors measured just before and just after
             it, and the ratio is the median of those)
  warm       the same build again: every run comes from the cache

and it prints, against issue 15's goals:
  warm − start-up                    goal ≤ 1 s
  cold / floor                       goal ≤ 3×, where the floor is framing + protobuf-decoding
                                     every record of every file (reportgen's framing reader and
                                     `Record.FromString`, in this process)

--code DIR times another checkout of reportgen (e.g. /work/main) with this venv: the figures
before and after a change, on the same machine, in one run.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from itertools import pairwise
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CORPUS = Path("/work/corpus")

SPEC = """\
version: 1
title: Folder benchmark
source: {{type: wandb-offline, path: "{source}"}}
metrics:
  loss: [train/loss, loss, train_loss, train/train_loss, losses/loss]
sampling: {{every: 10}}
health: {{preset: auto}}
outputs: {{dir: "{out}", formats: [csv, json]}}
"""

STARTUP = (
    "import reportgen.build, reportgen.sources.offline, reportgen.health, "
    "reportgen.render.csv, reportgen.render.json"
)


def gather(source: Path, files: int | None, into: Path) -> tuple[Path, list[Path]]:
    """The folder to build, and its .wandb files (copied into `into` when limited)."""
    found = sorted(p for p in source.rglob("run-*.wandb") if p.is_file())
    found = [p for p in found if "latest-run" not in p.parts]
    if files is None or files >= len(found):
        return source, found
    chosen = []
    for i, path in enumerate(found[:files]):
        copy = into / f"f{i:04d}" / path.parent.name / path.name
        copy.parent.mkdir(parents=True)
        shutil.copy2(path, copy)  # keeps the mtime: the file looks as settled as the original
        chosen.append(copy)
    return into, chosen


def decode_floor(files: list[Path]) -> tuple[float, int]:
    """Seconds to frame and protobuf-decode every record of every file, and the record count."""
    from reportgen.sources.wandb_file import pb, read_payloads

    records = 0
    started = time.perf_counter()
    for path in files:
        payloads = read_payloads(path.read_bytes())[0]
        for payload in payloads:
            pb.Record.FromString(payload)
        records += len(payloads)
    return time.perf_counter() - started, records


def timed(command: list[str], env: dict[str, str], code: Path = REPO) -> float:
    """Wall seconds of one process, run in the checkout `code` (whose reportgen it imports:
    `python -m` puts the working directory first on the path)."""
    started = time.perf_counter()
    done = subprocess.run(command, env=env, cwd=code, capture_output=True, text=True)
    if done.returncode not in (0, 1):
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    default = CORPUS if CORPUS.is_dir() else REPO / "examples" / "wandb"
    parser.add_argument("--source", type=Path, default=default)
    parser.add_argument("--files", type=int, help="use only the first N .wandb files")
    parser.add_argument("--repeat", type=int, default=2, help="warm builds (the best is kept)")
    parser.add_argument("--cold", type=int, default=3, help="cold builds, each with its floor")
    parser.add_argument("--code", type=Path, default=REPO, help="the reportgen checkout to time")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="reportgen-folder-"))
    try:
        folder, files = gather(args.source.resolve(), args.files, tmp / "runs")
        spec = tmp / "spec.yaml"
        spec.write_text(SPEC.format(source=folder, out=tmp / "out"), encoding="utf-8")
        env = {**os.environ, "REPORTGEN_CACHE_DIR": str(tmp / "cache")}
        env["PYTHONPATH"] = os.pathsep.join([str(args.code.resolve()), env.get("PYTHONPATH", "")])
        env.pop("SOURCE_DATE_EPOCH", None)
        python = [sys.executable]
        build = [*python, "-m", "reportgen", "build", str(spec), "-q"]

        size = sum(p.stat().st_size for p in files)
        code = args.code.resolve()
        startup = min(timed([*python, "-c", STARTUP], env, code) for _ in range(3))
        floors, colds = [], []
        for _ in range(max(1, args.cold)):  # floor, cold, floor, cold, ..., floor
            shutil.rmtree(tmp / "cache", ignore_errors=True)
            floor, records = decode_floor(files)
            floors.append(floor)
            colds.append(timed(build, env, code))
        floors.append(decode_floor(files)[0])
        # The host's speed drifts within seconds: each cold build against the mean of the
        # floors measured just before and just after it.
        around = [(before + after) / 2 for before, after in pairwise(floors)]
        ratios = sorted(c / f for c, f in zip(colds, around, strict=True))
        cold_ratio = ratios[len(ratios) // 2]
        floor, cold = sorted(floors)[len(floors) // 2], sorted(colds)[len(colds) // 2]
        warm = min(timed(build, env, code) for _ in range(args.repeat))
        print(f"{len(files)} .wandb files, {size / 1e6:.0f} MB, {records:,} records "
              f"under {args.source}; code: {args.code}")  # fmt: skip
        print(f"  floor: framing + protobuf decode of every record   {floor:7.2f} s")
        print(f"  start-up (imports of a build)                      {startup:7.2f} s")
        print(f"  cold build (empty cache)                           {cold:7.2f} s   "
              f"{cold_ratio:.2f}× the floor (goal ≤ 3×: "
              f"{'met' if cold_ratio <= 3 else 'MISS'}; median of {len(ratios)}: "
              f"{' '.join(f'{r:.2f}' for r in ratios)})")  # fmt: skip
        print(f"  warm build (every run cached)                      {warm:7.2f} s   "
              f"{warm - startup:.2f} s beyond start-up (goal ≤ 1 s)")  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
