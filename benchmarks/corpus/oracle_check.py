"""Check reportgen's reader against wandb's own (`wandb leet inspect --json`) on a corpus.

    .venv/bin/python benchmarks/corpus/oracle_check.py [--corpus /work/corpus] [--jobs 2]

For every repository folder of the corpus (see /work/corpus/INDEX.md; the files are never
committed) it compares two things:
  keys    `reportgen keys --source FOLDER --json` value counts per key, against the number of
          numeric values leet prints for that key in the folder's files (each real file once);
  values  every (key, step, x, value) reportgen's reader gets from each file, against the same
          tuples derived from leet's records (tests/leet_oracle.py states the rules).
It prints files, runs and values (ours vs leet's) and the % agreement of each, and lists the
disagreeing files. Figures go in the issue's closing note.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent.parent / "tests"))

from leet_oracle import leet_records, leet_values, reportgen_values  # noqa: E402


def keys_counts(folder: Path) -> tuple[Counter[str], str]:
    """`reportgen keys` value counts per key for one folder (and stderr, if it failed)."""
    done = subprocess.run(
        [
            str(Path(sys.executable).with_name("reportgen")),
            "keys",
            "--source",
            str(folder),
            "--json",
        ],
        capture_output=True,
        text=True,
        check=False,
        env=dict(
            os.environ,
            REPORTGEN_CACHE_DIR=os.environ.get("REPORTGEN_CACHE_DIR", "/tmp/oracle-cache"),
        ),
    )
    if done.returncode != 0:
        return Counter(), done.stderr.strip()
    data = json.loads(done.stdout)
    rows = data.get("keys", data) if isinstance(data, dict) else data
    return Counter({row["key"]: int(row["count"]) for row in rows if row.get("count")}), ""


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--corpus", type=Path, default=Path("/work/corpus"))
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()

    from reportgen.sources.offline import OfflineSource
    from reportgen.sources.wandb_file import find_wandb_files
    from reportgen.spec import SourceSpec

    started = time.perf_counter()
    folders = sorted(p for p in args.corpus.iterdir() if p.is_dir() and any(p.rglob("*.wandb")))
    totals = Counter()
    bad_files: list[str] = []
    bad_keys: list[str] = []
    for folder in folders:
        files, _copies = find_wandb_files(folder)
        with ThreadPoolExecutor(args.jobs) as pool:
            leet = list(pool.map(lambda p: leet_values(leet_records(p)), files))
        ours_counts, error = keys_counts(folder)
        if error:
            bad_keys.append(f"{folder.name}: reportgen keys failed: {error}")
        runs = OfflineSource(SourceSpec("wandb-offline", path=str(folder))).list_runs()
        leet_counts: Counter[str] = Counter()
        for path, expected in zip(files, leet, strict=True):
            ours = reportgen_values(path)
            totals["files"] += 1
            totals["tuples_leet"] += sum(expected.values())
            totals["tuples_ours"] += sum(ours.values())
            totals["tuples_equal"] += sum((expected & ours).values())
            if ours != expected:
                missing = sum((expected - ours).values())
                extra = sum((ours - expected).values())
                bad_files.append(f"{path}: {missing} of leet's values missing, {extra} extra")
            for (key, *_), n in expected.items():
                leet_counts[key] += n
        totals["runs"] += len(runs)
        totals["values_leet"] += sum(leet_counts.values())
        totals["values_ours"] += sum(ours_counts.values())
        totals["values_equal"] += sum((leet_counts & ours_counts).values())
        for key in sorted(set(leet_counts) | set(ours_counts)):
            if leet_counts[key] != ours_counts[key]:
                bad_keys.append(
                    f"{folder.name}: {key}: ours {ours_counts[key]}, leet {leet_counts[key]}"
                )
        print(
            f"{folder.name}: {len(files)} files, {len(runs)} runs, "
            f"{sum(ours_counts.values()):,} / {sum(leet_counts.values()):,} values",
            flush=True,
        )

    def pct(equal: int, total: int) -> str:
        return f"{100.0 * equal / total:.2f} %" if total else "n/a"

    print()
    print(f"corpus: {args.corpus} ({len(folders)} folders), {time.perf_counter() - started:.0f} s")
    print(f"files: {totals['files']:,}   runs: {totals['runs']:,}")
    print(
        f"reportgen keys values: ours {totals['values_ours']:,}, leet {totals['values_leet']:,}, "
        f"agreement {pct(totals['values_equal'], max(totals['values_leet'], totals['values_ours']))}"
    )
    print(
        f"(key, step, x, value) per file: ours {totals['tuples_ours']:,}, "
        f"leet {totals['tuples_leet']:,}, agreement "
        f"{pct(totals['tuples_equal'], max(totals['tuples_leet'], totals['tuples_ours']))}"
    )
    print(f"files that disagree: {len(bad_files)}; keys whose counts disagree: {len(bad_keys)}")
    for line in (bad_files + bad_keys)[:40]:
        print("  " + line)


if __name__ == "__main__":
    main()
