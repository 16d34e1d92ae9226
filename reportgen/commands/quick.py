"""The spec-less commands: `export`, `health`, `show`, `compare`.

Each one turns its command line into a spec (reportgen.quickspec), then either prints that spec
(`--print-spec`) or runs it through the same `build` as `reportgen build` and prints the answer.
The functions without `cmd_` are the same jobs for Python callers and the MCP server.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, NamedTuple

from reportgen.choices import ALIGNS, STATES
from reportgen.errors import (
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_TERMINATED,
    UsageError,
    exit_code_lines,
)

# The jobs import the pipeline when they run: registering these verbs on the parser (which
# every `reportgen` command, even `--help`, does) must not load pandas, numpy or the spec's
# YAML and schema libraries.
if TYPE_CHECKING:
    from reportgen.analysis.discover import KeyRow
    from reportgen.build import BuildResult
    from reportgen.quickspec import ExportRequest, RunChoice
    from reportgen.runs import Run
    from reportgen.sources import Source

QUICK_EPILOG = f"""exit codes:
  0   answered
  1   answered, but the gate failed (health --fail-on)
  2   bad usage (a bad option, an unknown run or metric name)
  3   the data source failed (missing folder, auth, network)
{exit_code_lines((EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_TERMINATED))}

SOURCE is a folder of W&B runs (searched for offline-run-*/run-* folders) or
wandb://ENTITY/PROJECT on a W&B server (WANDB_API_KEY or ~/.netrc; WANDB_BASE_URL for a
self-hosted one)."""


# --- the jobs, for the CLI, Python and the MCP server -------------------------------------------


def open_quick_source(source: str) -> Source:
    from reportgen.analysis.discover import source_from_argument
    from reportgen.cache import RunCache, default_location
    from reportgen.sources import open_source

    return open_source(source_from_argument(source), RunCache.at(default_location(None)))


def run_document(
    doc: dict[str, Any], name: str, source: Source | None = None, progress: Any = None
) -> BuildResult:
    """Validate a command's spec document exactly as a spec file and build it."""
    from reportgen.build import build
    from reportgen.quickspec import to_spec

    return build(to_spec(doc, name), source=source, progress=progress)


def export(request: ExportRequest, progress: Any = None) -> BuildResult:
    from reportgen.quickspec import export_document

    return run_document(export_document(request), "export", progress=progress)


def health(
    source: str, runs: RunChoice, fail_on: str = "never", out_dir: str | None = None
) -> BuildResult:
    from reportgen.quickspec import health_document

    return run_document(health_document(source, runs, fail_on, out_dir), "health")


def find_runs(source: Source, refs: Sequence[str]) -> list[Run]:
    """Each RUN argument (an id, or a unique display name) among the source's runs."""
    from reportgen.analysis.discover import pick_run

    runs = source.list_runs()
    found = []
    for ref in refs:
        try:
            found.append(pick_run(runs, ref))
        except UsageError as exc:
            raise UsageError(str(exc).replace("--run '", "run '", 1)) from None
    return found


class ShowAnswer(NamedTuple):  # not a dataclass: `dataclasses` would slow every command's start
    doc: dict[str, Any]
    result: BuildResult | None
    key_rows: tuple[KeyRow, ...]
    aliases: dict[str, str]  # shown key → its alias in the spec
    history: tuple[str, ...]  # aliases [HISTORY] prints


def show(
    source_text: str,
    run_ref: str,
    *,
    select: str | None = None,
    where: str | None = None,
    evals: Sequence[str] = (),
    stats: bool = False,
    every: int | None = None,
    out_dir: str | None = None,
    dry_run: bool = False,
) -> ShowAnswer:
    """One run: its keys (those matching `select`), stats, and rows where `where` holds."""
    from reportgen.analysis.discover import key_rows
    from reportgen.quickspec import show_document

    pattern = _regex(select, "--select") if select else None
    source = open_quick_source(source_text)
    run = find_runs(source, [run_ref])[0]
    rows = tuple(
        row
        for row in key_rows(source, [run])
        if row.count and (pattern is None or pattern.search(row.key))
    )
    doc = show_document(
        source_text,
        run.id,
        [row.key for row in rows],
        evals=evals,
        stats=stats,
        where=where,
        every=every or 1,
        out_dir=out_dir,
    )
    aliases = {key: name for name, key in doc["metrics"].items() if isinstance(key, str)}
    history: tuple[str, ...] = ()
    if where or evals or every:
        derived = [name for name, rule in doc["metrics"].items() if isinstance(rule, dict)]
        picked = [aliases[r.key] for r in rows] if (select or not derived) else []
        history = (*picked, *derived)
    if dry_run:
        return ShowAnswer(doc, None, rows, aliases, history)
    result = run_document(doc, "show", source=source)
    return ShowAnswer(doc, result, rows, aliases, history)


def compare(
    source_text: str,
    run_refs: Sequence[str],
    metrics: Sequence[str] = (),
    out_dir: str | None = None,
    dry_run: bool = False,
) -> tuple[dict[str, Any], BuildResult | None]:
    """Runs against the first: config differences, and every key they all logged (or
    `metrics`) as summary values with change, percent and better/worse."""
    from reportgen.quickspec import compare_document

    source = open_quick_source(source_text)
    runs = find_runs(source, run_refs)
    keys: list[str] = []
    if not metrics:
        logged = [set(source.history(run).keys()) for run in runs]
        keys = sorted(set.intersection(*logged)) if logged else []
        keys = [k for k in keys if not k.startswith("_")]
    doc = compare_document(source_text, [r.id for r in runs], keys, metrics, out_dir)
    if dry_run:
        return doc, None
    return doc, run_document(doc, "compare", source=source)


def _regex(text: str, option: str) -> re.Pattern[str]:
    try:
        return re.compile(text)
    except re.error as exc:
        raise UsageError(f"{option} '{text}': not a valid regular expression: {exc}") from None


# --- the verbs ----------------------------------------------------------------------------------


def _print_spec(doc: dict[str, Any], verb: str) -> int:
    from reportgen.quickspec import spec_yaml

    print(spec_yaml(doc, f"reportgen {verb} …"), end="")
    return EXIT_OK


def _finish(result: BuildResult, args: argparse.Namespace, answer: str | None) -> int:
    """Print the answer (or the --summary) and say where files went; the build's exit code."""
    from reportgen.cli import print_summary

    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if args.summary or args.json or answer is None:
        print_summary(result, as_json=args.json)
    else:
        print(answer, end="")
        if result.files:
            print(f"wrote {len(result.files)} files in {result.out_dir}", file=sys.stderr)
    return result.exit_code


def _run_choice(args: argparse.Namespace) -> RunChoice:
    from reportgen.quickspec import RunChoice

    return RunChoice(
        ids=tuple(args.run or ()),
        states=tuple(args.state or ()),
        tags=tuple(args.tag or ()),
        name=args.name,
        latest=args.latest,
    )


def cmd_export(args: argparse.Namespace) -> int:
    from reportgen.quickspec import ExportRequest, export_document, split_items

    request = ExportRequest(
        source=args.source,
        metrics=tuple(split_items(args.metrics)),
        every=args.every,
        start=args.start,
        stop=args.stop,
        align=args.align,
        x=args.x,
        pick=args.pick,
        output=args.output,
        runs=_run_choice(args),
    )
    doc = export_document(request)
    if args.print_spec:
        return _print_spec(doc, "export")
    return _finish(_run_with_progress(doc, "export"), args, None)


def cmd_health(args: argparse.Namespace) -> int:
    from reportgen.quickspec import health_document
    from reportgen.render.answers import render_health

    doc = health_document(args.source, _run_choice(args), args.fail_on, args.out)
    if args.print_spec:
        return _print_spec(doc, "health")
    result = _run_with_progress(doc, "health")
    return _finish(result, args, render_health(result.report))


def _run_with_progress(doc: dict[str, Any], verb: str) -> BuildResult:
    """Build a command's spec document with the CLI's progress bar (or CI progress lines)."""
    from reportgen.cli import TerminalProgress

    progress = TerminalProgress("reading runs")
    try:
        return run_document(doc, verb, progress=progress)
    finally:
        progress.close()


def cmd_show(args: argparse.Namespace) -> int:
    from reportgen.render.answers import render_show

    answer = show(
        args.source,
        args.run,
        select=args.select,
        where=args.where,
        evals=args.eval or (),
        stats=args.stats,
        every=args.every,
        out_dir=args.out,
        dry_run=args.print_spec,
    )
    if answer.result is None:
        return _print_spec(answer.doc, "show")
    text = render_show(
        answer.result.report,
        answer.key_rows,
        answer.aliases,
        select=args.select,
        history=answer.history,
        max_rows=args.rows,
    )
    return _finish(answer.result, args, text)


def cmd_compare(args: argparse.Namespace) -> int:
    from reportgen.quickspec import split_items
    from reportgen.render.answers import render_compare

    doc, result = compare(
        args.source, args.runs, split_items(args.metrics), args.out, dry_run=args.print_spec
    )
    if result is None:
        return _print_spec(doc, "compare")
    return _finish(result, args, render_compare(result.report))


# --- parsers ------------------------------------------------------------------------------------


def add_quick_verbs(verbs: Any) -> None:
    """Register export, health, show and compare on the top-level parser's sub-parsers."""

    def verb(name: str, help: str, description: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = verbs.add_parser(
            name,
            help=help,
            description=description,
            epilog=QUICK_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.add_argument("source", metavar="SOURCE", help="a folder of runs, or wandb://E/P")
        return parser

    def common(parser: argparse.ArgumentParser, out_help: str | None) -> None:
        parser.add_argument(
            "--print-spec",
            action="store_true",
            help="print the spec this command runs (YAML) instead of running it",
        )
        parser.add_argument(
            "--summary",
            action="store_true",
            help="print the compact answer `reportgen build --summary` prints",
        )
        parser.add_argument(
            "--json", action="store_true", help="print the summary as JSON (implies --summary)"
        )
        if out_help:
            parser.add_argument("--out", metavar="DIR", help=out_help)

    def run_filters(parser: argparse.ArgumentParser) -> None:
        parser.add_argument(
            "--run", action="append", metavar="ID", help="only this run id (repeatable)"
        )
        parser.add_argument("--state", action="append", choices=STATES, help="(repeatable)")
        parser.add_argument("--tag", action="append", help="runs with this tag (repeatable: any)")
        parser.add_argument("--name", metavar="REGEX", help="runs whose name matches")
        parser.add_argument("--latest", type=int, metavar="N", help="the newest N runs")

    export = verb(
        "export",
        "write metrics every N steps to CSV, for a picked run or each run",
        "Sample --metrics on the step grid start, start+N, … (and each run's last step) and "
        "write a CSV per run, or one for the run --pick chooses. A metric is a key "
        "(response_length/mean), NAME=KEY|KEY, or a well-known name (entropy, kl, clipfrac, "
        "length, clip_ratio, reward, score, loss, val_loss, grad_norm) that tries the keys "
        "verl, TRL, slime, the HF Trainer and PPO code log. Prints the --summary.",
    )
    export.add_argument(
        "--metrics", action="append", required=True, metavar="K[,K…]", help="what to export"
    )
    export.add_argument("--every", type=int, required=True, metavar="N", help="step interval")
    export.add_argument("--start", type=int, default=0, metavar="S", help="first step (0)")
    export.add_argument("--stop", type=int, metavar="S", help="last grid step")
    export.add_argument(
        "--align", choices=ALIGNS, default="asof", help="value at a grid step (default: asof)"
    )
    export.add_argument("--x", default="_step", help="the step key of the grid (_step)")
    export.add_argument(
        "--pick",
        metavar='"min|max REDUCE METRIC"',
        help='export only the run this picks, e.g. "min mean length"',
    )
    export.add_argument(
        "-o",
        "--output",
        metavar="FILE.csv",
        help="the CSV file (several runs without --pick: FILE_<run>.csv; default: outputs/export/)",
    )
    run_filters(export)
    common(export, None)
    export.set_defaults(func=cmd_export)

    health = verb(
        "health",
        "Good / Bad / Ugly verdicts and next experiments for runs",
        "Run every training-health check (preset auto: RL or supervised, from the keys the "
        "runs logged) and print each run's verdict, its findings and next experiments.",
    )
    run_filters(health)
    health.add_argument(
        "--fail-on",
        choices=("ugly", "bad", "never"),
        default="never",
        help="exit 1 when a run is this unhealthy (default: never)",
    )
    common(health, "also write report.md, report.json and CSVs into DIR")
    health.set_defaults(func=cmd_health)

    show_parser = verb(
        "show",
        "one run: config, summary, schema (type, count, range of each key), stats, rows",
        "Print a run's [CONFIG], [SUMMARY] and [SCHEMA] (each key's alias, type, count, "
        "steps, range, non-finite); --stats adds percentiles; --where, --eval or --every "
        "print [HISTORY] rows. Expressions name keys by their alias (/ and . become _).",
    )
    show_parser.add_argument("run", metavar="RUN", help="a run id, or a unique run name")
    show_parser.add_argument("--select", metavar="REGEX", help="only keys matching REGEX")
    show_parser.add_argument(
        "--where", metavar="EXPR", help='rows where EXPR holds, e.g. "step >= 100 and kl > 0.1"'
    )
    show_parser.add_argument(
        "--eval",
        action="append",
        metavar="NAME=EXPR",
        help="a derived column, e.g. ratio=a / b (repeatable)",
    )
    show_parser.add_argument("--stats", action="store_true", help="add count, mean, p50, …")
    show_parser.add_argument("--every", type=int, metavar="N", help="[HISTORY] every N steps")
    show_parser.add_argument(
        "--rows", type=int, default=20, metavar="N", help="[HISTORY] rows shown (20)"
    )
    common(show_parser, "also write report.md, report.json and the run's CSV into DIR")
    show_parser.set_defaults(func=cmd_show)

    compare_parser = verb(
        "compare",
        "runs against the first: config differences, metric changes",
        "Compare RUNs with the first: config keys that differ, and each metric's summary "
        "value with change, percent and better/worse (by its name's direction).",
    )
    compare_parser.add_argument("runs", nargs="+", metavar="RUN", help="ids or unique names")
    compare_parser.add_argument(
        "--metrics",
        action="append",
        metavar="K[,K…]",
        help="what to compare (default: every key all the runs logged)",
    )
    common(compare_parser, "also write report.md, report.json and compare CSVs into DIR")
    compare_parser.set_defaults(func=cmd_compare)
