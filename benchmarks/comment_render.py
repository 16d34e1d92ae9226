"""How long rendering a PR comment takes when the report is far over the forge's limit.

A comment that does not fit is re-rendered once per shortening step (up to 7 times), so the
worst case is a huge report that only the last-resort cut brings under the limit. This builds
the demo PR report (specs/pr-demo.yaml), multiplies its runs, findings and comparison rows, and
times render_comment for GitHub's limit.

    .venv/bin/python benchmarks/comment_render.py --runs 2000
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from pathlib import Path

from reportgen.build import make_report
from reportgen.report import Finding
from reportgen.sources import open_source
from reportgen.spec import load_spec

HERE = Path(__file__).resolve().parent


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=2000, help="runs in the blown-up report")
    parser.add_argument("--findings", type=int, default=5, help="findings per run")
    args = parser.parse_args()

    from datetime import datetime, timezone

    from reportgen.render.comment import GITHUB_LIMIT, CommentOptions, render_comment

    spec = load_spec(HERE.parent / "specs" / "pr-demo.yaml")
    spec = replace(spec, source=replace(spec.source, path=str(HERE.parent / "examples" / "wandb")))
    report = make_report(spec, open_source(spec.source), datetime.now(timezone.utc))
    assert report.baseline is not None
    findings = tuple(
        Finding("loss_spike", "bad", f"train/loss spiked at step {i * 10}", step=float(i * 10))
        for i in range(args.findings)
    )
    runs = tuple(
        replace(
            report.runs[i % len(report.runs)], id=f"run{i:05d}", verdict="bad", findings=findings
        )
        for i in range(args.runs)
    )
    rows = tuple(
        replace(row, run_id=f"run{i:05d}", run_name=f"candidate {i}")
        for i in range(args.runs // 4)
        for row in report.baseline.rows
    )
    comparison = replace(report.baseline, rows=rows)
    big = replace(report, runs=runs, comparison=comparison)

    options = CommentOptions("bench", GITHUB_LIMIT, charts=True, full_report="https://ci/job")
    started = time.perf_counter()
    whole = render_comment(big, replace(options, limit=10**9))
    one = time.perf_counter() - started
    started = time.perf_counter()
    body = render_comment(big, options)
    fitted = time.perf_counter() - started
    print(
        f"report: {len(runs):,} runs, {len(rows):,} comparison rows, {len(runs) * args.findings:,} findings"
    )
    print(f"one full render: {len(whole):,} chars in {one:.2f} s")
    print(f"fitted to {GITHUB_LIMIT:,}: {len(body):,} chars in {fitted:.2f} s")


if __name__ == "__main__":
    main()
