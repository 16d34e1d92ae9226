"""The `reportgen` command: one function per verb; errors become one line and an exit code.

Exit codes are defined in reportgen/errors.py (EXIT_CODES) and quoted from there by `--help`.
Every line this command prints about runs goes through `safetext.visible`: a run name cannot
send terminal escape sequences or reorder the text a reviewer reads.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from reportgen.errors import (
    EXIT_INCOMPLETE,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SOURCE,
    EXIT_TERMINATED,
    EXIT_TIMEOUT,
    EXIT_USAGE,
    BuildTimeout,
    ReportgenError,
    SpecError,
    Stopped,
    UsageError,
    exit_code_lines,
)
from reportgen.safetext import visible
from reportgen.stopping import default_timeout, install_stop_handlers, stop_message, stopped_by

# Each verb imports what it uses when it runs: `--help`, `validate` and `schema` start in a
# fraction of the time that pandas, pyarrow, matplotlib or W&B's protobuf classes take to load
# (tests/test_startup.py checks which modules `import reportgen.cli` brings in).
if TYPE_CHECKING:
    from datetime import datetime

    from reportgen.build import BuildResult
    from reportgen.publish import CommentResult
    from reportgen.runs import Run
    from reportgen.sources import Source
    from reportgen.spec import ExecutorSpec

EPILOG = f"""exit codes:
{exit_code_lines()}

Quickstart: reportgen init my-report.yaml && reportgen build my-report.yaml"""


DISCOVERY_EPILOG = f"""exit codes:
  0   listed (also when nothing matches)
{exit_code_lines((EXIT_USAGE, EXIT_SOURCE, EXIT_INTERNAL, EXIT_INTERRUPTED, EXIT_TERMINATED))}"""

# Exits that may leave worker threads (a W&B fetch) running: the process ends without waiting.
ABRUPT_EXITS = (EXIT_TIMEOUT, EXIT_INTERRUPTED, EXIT_TERMINATED)


def _stderr(message: str) -> None:
    """One message on stderr; control and bidi characters from runs are shown as escapes."""
    for line in str(message).split("\n"):
        print(visible(line, one_line=True), file=sys.stderr)


# Seconds between progress lines when stderr is not a terminal (a CI log, a pipe).
PROGRESS_INTERVAL = 15.0
# A fetch waiting this long is most likely being retried (wandb retries 429 and 5xx answers
# with a backoff of up to a minute, up to 20 times) or is stuck on a slow server.
SLOW_FETCH_SECONDS = 30.0


class TerminalProgress:
    """Progress while runs are read: a bar on an interactive stderr, and elsewhere (CI logs,
    pipes) a line every PROGRESS_INTERVAL seconds (REPORTGEN_PROGRESS_SECONDS) with the runs
    done of the total and the fetches still waiting, so a slow or failing server is never
    silence. `quiet` silences the lines (the bar only ever draws on a terminal)."""

    def __init__(self, label: str, *, quiet: bool = False):
        self.label = label
        self.enabled = sys.stderr.isatty() and not os.environ.get("CI")
        self.lines = not self.enabled and not quiet
        self.interval = _progress_interval()
        self.shown = False
        self.state = (0, 0)
        self.in_flight: Callable[[], list[tuple[str, float]]] | None = None
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None

    def watch(self, in_flight: Callable[[], list[tuple[str, float]]]) -> None:
        """A source's fetches that are under way: (run name, seconds waited so far)."""
        self.in_flight = in_flight
        self._start_ticker()

    def __call__(self, done: int, total: int, item: str) -> None:
        self.state = (done, total)
        self._start_ticker()
        if not self.enabled:
            return
        width = 24
        filled = int(width * done / max(total, 1))
        bar = "█" * filled + "·" * (width - filled)
        sys.stderr.write(f"\r{self.label} {bar} {done}/{total} {item[:40]:<40}")
        sys.stderr.flush()
        self.shown = True

    def line(self) -> str | None:
        """What a progress line says now; None once every run is done and nothing waits."""
        done, total = self.state
        waiting = self.in_flight() if self.in_flight else []
        if (total == 0 or done >= total) and not waiting:
            return None
        text = f"{self.label}: {done}/{total} runs done"
        if waiting:
            text += f", {len(waiting)} in progress"
            slow = sorted((s for s in waiting if s[1] >= SLOW_FETCH_SECONDS), key=lambda s: -s[1])
            if slow:
                name, seconds = slow[0]
                text += (
                    f"; {len(slow)} waiting over {SLOW_FETCH_SECONDS:.0f} s (longest: {name}, "
                    f"{seconds:.0f} s), likely retrying after server errors or rate limits"
                )
        return text

    def _start_ticker(self) -> None:
        if not self.lines or self._ticker is not None:
            return
        self._ticker = threading.Thread(target=self._tick, name="progress", daemon=True)
        self._ticker.start()

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            line = self.line()
            if line:
                sys.stderr.write(line + "\n")
                sys.stderr.flush()

    def close(self) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=1)
        if self.shown:
            sys.stderr.write("\r" + " " * 100 + "\r")
            sys.stderr.flush()


def _progress_interval() -> float:
    text = os.environ.get("REPORTGEN_PROGRESS_SECONDS", "")
    try:
        value = float(text) if text.strip() else PROGRESS_INTERVAL
    except ValueError:
        value = PROGRESS_INTERVAL
    return value if value > 0 else PROGRESS_INTERVAL


# --- verbs -------------------------------------------------------------------------------------


def cmd_build(args: argparse.Namespace) -> int:
    from reportgen.build import build
    from reportgen.spec import load_spec
    from reportgen.stopping import deadline

    timeout = parse_timeout(args.timeout) if args.timeout is not None else None
    if args.timeout is None:
        timeout = default_timeout(os.environ)
    with deadline(timeout):
        spec = load_spec(args.spec)
        now = parse_moment(args.now) if args.now is not None else None
        progress = TerminalProgress("reading runs", quiet=args.quiet)
        mode = "refresh" if args.refresh else "offline" if args.offline else "normal"
        try:
            result = build(
                spec,
                out_dir=args.out,
                now=now,
                progress=progress,
                comment=args.comment,
                cache_mode=mode,
                executor=parse_executor(args.executor) if args.executor else None,
            )
        finally:
            progress.close()
    report = result.report
    for warning in result.warnings:
        _stderr(f"warning: {warning}")
    for shortfall in report.shortfalls:
        label = "warning" if shortfall.accepted else "error"
        _stderr(f"{label}: {report.spec_path}: {shortfall.where}: {shortfall.message}")
    if not report.runs and not report.shortfalls:
        _stderr(f"warning: {report.spec_path}: runs: no run matched the spec's filters")
    if args.summary or args.json:
        print_summary(result, as_json=args.json)
    elif not args.quiet:
        _stderr(
            f"built {len(result.files)} files in {result.out_dir} "
            f"({len(report.runs)} of {report.runs_found} runs)"
        )
        for path in result.files:
            _stderr(f"  {path}")
    if result.comment is not None:
        _report_comment(result.comment, args.quiet)
    if report.gate.failed:
        _stderr("gate failed:")
        for reason in report.gate.reasons:
            _stderr(f"  {reason}")
    if result.exit_code == EXIT_INCOMPLETE:
        _stderr(
            f"the report is incomplete: exit {EXIT_INCOMPLETE} (the files were written and "
            "say what is missing)"
        )
    return result.exit_code


def parse_executor(text: str) -> ExecutorSpec:
    """`--executor`: local, ray, ray:ADDRESS (auto, HOST:PORT) or ray://HOST:PORT."""
    from reportgen.spec import ExecutorSpec

    executor = ExecutorSpec.parse(text.strip())
    if executor.type not in ("local", "ray") or (executor.type == "local" and executor.address):
        raise UsageError(
            f"--executor: expected local, ray, ray:auto, ray:HOST:PORT or ray://HOST:PORT; "
            f"got {text!r}"
        )
    return executor


def parse_timeout(text: str) -> float | None:
    """`--timeout`: seconds, or a duration such as 90s, 20m, 2h; 0 means no deadline."""
    from reportgen.spec import DURATION_UNITS

    stripped = text.strip().lower()
    unit = DURATION_UNITS.get(stripped[-1:], None) if stripped else None
    number = stripped[:-1] if unit is not None else stripped
    try:
        seconds = float(number) * (unit or 1)
    except ValueError:
        seconds = -1.0
    if not (0 <= seconds <= 7 * 86400):
        raise UsageError(
            f"--timeout: expected seconds or a duration such as 90s, 20m or 2h (at most 7d; "
            f"0 for none); got {text!r}"
        )
    return seconds or None


def print_summary(result: BuildResult, *, as_json: bool = False) -> None:
    """`--summary`: the compact answer on stdout (the list of files is in it)."""
    from reportgen.render.summary import render_summary, render_summary_json

    render = render_summary_json if as_json else render_summary
    print(render(result.report, result.out_dir, result.files), end="")


def parse_moment(text: str) -> datetime:
    """`--now`: an ISO 8601 date or time (UTC unless it says otherwise) or @seconds since 1970."""
    from reportgen.build import parse_moment as parse

    return parse(text, "--now")


def _report_comment(comment: CommentResult, quiet: bool) -> None:
    """One line on what happened to the PR comment; failures are printed even with --quiet."""
    outcome = comment.outcome
    for warning in comment.warnings:
        _stderr(f"warning: {warning}")
    if outcome.posted:
        if not quiet:
            _stderr(f"comment: {outcome.message}" + (f" ({outcome.url})" if outcome.url else ""))
    elif outcome.failed:
        label = "error" if comment.fails_build else "warning"
        _stderr(f"{label}: comment not posted: {outcome.message}; it is in {comment.path}")
    elif not quiet:
        _stderr(f"comment not posted: {outcome.message}; it is in {comment.path}")


def cmd_validate(args: argparse.Namespace) -> int:
    from reportgen.spec import load_spec

    problems: list[str] = []
    for path in args.specs:
        try:
            load_spec(path)
        except SpecError as exc:
            problems += [str(p) for p in exc.problems]
        else:
            if not args.quiet:
                print(f"{path}: valid")
    if problems:
        for line in problems:
            _stderr(line)
        return EXIT_USAGE
    return EXIT_OK


def cmd_schema(args: argparse.Namespace) -> int:
    import json

    from reportgen.spec import load_schema

    print(json.dumps(load_schema(), indent=2))
    return EXIT_OK


def _cache_for(args: argparse.Namespace) -> Any:
    from reportgen.cache import RunCache, default_location
    from reportgen.spec import load_spec

    spec_dir = load_spec(args.spec).cache.dir if args.spec else None
    return RunCache.at(default_location(spec_dir))


def cmd_cache_info(args: argparse.Namespace) -> int:
    cache = _cache_for(args)
    print(f"cache: {cache.root} ({cache.origin})")
    areas = cache.areas()
    if not areas:
        print("  empty")
    for area in areas:
        print(f"  {area.label}: {area.entries} entries, {_size(area.bytes)}  [{area.path.name}]")
    charts, chart_bytes = cache.charts()
    if charts:
        print(f"  charts kept for rebuilds: {charts} files, {_size(chart_bytes)}  [charts]")
    if areas or charts:
        print(f"total {_size(sum(a.bytes for a in areas) + chart_bytes)}")
    for path, size in cache.old_layouts():
        print(
            f"  an older layout, never read: {path.name}, {_size(size)} "
            "(`reportgen cache clear` removes it)"
        )
    return EXIT_OK


def cmd_cache_clear(args: argparse.Namespace) -> int:
    cache = _cache_for(args)
    freed = cache.clear()
    print(f"cleared {cache.root} ({_size(freed)} freed)")
    return EXIT_OK


def _size(count: int) -> str:
    value = float(count)
    for unit in ("B", "KB", "MB", "GB"):
        if value < 1024 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} GB"  # pragma: no cover


STARTER_SPEC = """\
# reportgen spec: `reportgen validate {name}` checks it, `reportgen build {name}` runs it.
# `reportgen schema` prints the JSON Schema (point your editor's YAML plugin at it).
version: 1
title: My training report

source:
  type: wandb-offline          # local run folders; or `wandb` for a W&B server
  path: wandb                  # searched recursively for offline-run-* / run-* folders
  # type: wandb
  # entity: my-team
  # project: my-project

runs:
  filters:
    state: [finished, failed, killed, running]
    # tags: {{any: [baseline]}}
    # name: "^grpo-"
    # config: {{actor.lr: {{gte: 1.0e-6}}}}
  # limit: 20                  # newest N runs

metrics:                       # alias: key, or fallback keys tried in order
  loss: [train/loss, train_loss, loss]
  # entropy: [actor/entropy, actor/entropy_loss, train/entropy]
  # length: response_length/mean

select:                        # named picks the report focuses on
  best: {{by: loss, reduce: last, pick: min}}

sampling: {{x: _step, start: 0, every: 100, align: asof}}

outputs:
  dir: outputs/my-report
  formats: [markdown, csv, json]
"""


def cmd_init(args: argparse.Namespace) -> int:
    from pathlib import Path

    path = Path(args.path)
    if path.exists() and not args.force:
        raise UsageError(f"{path} already exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STARTER_SPEC.format(name=path), encoding="utf-8")
    print(f"wrote {path}; edit source.path, then: reportgen build {path}")
    return EXIT_OK


def _discovered(args: argparse.Namespace) -> tuple[Source, list[Run]]:
    """The runs `runs`/`keys` describe: a spec's source and filters, or --source, then flags."""
    from reportgen.analysis.discover import (
        chosen_runs,
        runs_spec_from_options,
        source_from_argument,
    )
    from reportgen.checkpoint import with_checkpoint_runs
    from reportgen.sources import open_source
    from reportgen.spec import load_spec

    if (args.spec is None) == (args.source is None):
        raise UsageError("give either a SPEC or --source PATH (a folder of W&B runs)")
    specs = []
    if args.spec is not None:
        spec = with_checkpoint_runs(load_spec(args.spec))
        source_spec = spec.source
        specs.append(spec.runs)
    else:
        source_spec = source_from_argument(args.source)
    if args.state or args.tag or args.name is not None or args.group or args.limit:
        specs.append(
            runs_spec_from_options(
                args.state or (), args.tag or (), args.name, args.group or (), args.limit
            )
        )
    from reportgen.cache import RunCache, default_location

    cache_dir = spec.cache.dir if args.spec is not None else None
    source = open_source(source_spec, RunCache.at(default_location(cache_dir)))
    progress = TerminalProgress("reading runs")
    try:
        return source, chosen_runs(source, specs, progress=progress)
    finally:
        progress.close()


def _print_json(rows: list[dict[str, Any]]) -> None:
    import json

    from reportgen.render.json import jsonable

    print(json.dumps(jsonable(rows), indent=2, ensure_ascii=False, allow_nan=False))


def cmd_runs(args: argparse.Namespace) -> int:
    from reportgen.analysis.discover import run_rows
    from reportgen.render.console import text_table

    source, runs = _discovered(args)
    rows = run_rows(source, runs)
    if args.json:
        _print_json([row.as_json() for row in rows])
        return EXIT_OK
    if not rows:
        _stderr("no runs match")
        return EXIT_OK
    table = [
        [
            r.id,
            r.name,
            r.state,
            str(r.rows),
            r.created_at.strftime("%Y-%m-%d %H:%M") if r.created_at else "",
            ", ".join(r.tags),
        ]
        for r in rows
    ]
    headers = ["id", "name", "state", "steps", "created", "tags"]
    if len({(r.entity, r.project) for r in rows}) > 1:  # runs of several projects: say whose
        headers.insert(1, "project")
        for line, r in zip(table, rows, strict=True):
            line.insert(1, f"{r.entity}/{r.project}")
    print(text_table(headers, table, right=[headers.index("steps")]), end="")
    return EXIT_OK


def cmd_keys(args: argparse.Namespace) -> int:
    from reportgen.analysis.discover import key_rows, pick_run
    from reportgen.checkpoint import resolve_run_ref
    from reportgen.render.console import text_table
    from reportgen.render.text import format_number

    source, runs = _discovered(args)
    if args.run is not None:
        runs = [pick_run(runs, resolve_run_ref(args.run, "--run"))]
    rows = key_rows(source, runs)
    if args.json:
        _print_json([row.as_json() for row in rows])
        return EXIT_OK
    if not rows:
        _stderr("no keys: no run matches" if not runs else "no keys were logged")
        return EXIT_OK

    def step(value: int | None) -> str:
        return "" if value is None else str(value)

    table = [
        [
            r.key,
            r.type,
            str(r.runs),
            str(r.count),
            step(r.first_step),
            step(r.last_step),
            "" if r.min is None else format_number(r.min),
            "" if r.max is None else format_number(r.max),
            str(r.non_finite),
            r.x,
        ]
        for r in rows
    ]
    headers = ["key", "type", "runs", "count", "first", "last", "min", "max", "non-finite", "x"]
    print(text_table(headers, table, right=[2, 3, 4, 5, 6, 7, 8]), end="")
    return EXIT_OK


def cmd_projects(args: argparse.Namespace) -> int:
    from reportgen.render.console import text_table
    from reportgen.sources.projects import project_rows

    entities = []
    for text in args.entities:
        entity = text.removeprefix("wandb://").strip("/")
        if not entity or "/" in entity:
            raise UsageError(
                f"'{text}': expected an entity name (a user or team), or wandb://ENTITY"
            )
        entities.append(entity)
    progress = TerminalProgress("counting runs")
    try:
        rows = project_rows(entities, args.base_url, args.match, progress)
    finally:
        progress.close()
    if args.json:
        _print_json([row.as_json() for row in rows])
        return EXIT_OK
    if not rows:
        _stderr("no projects")
        return EXIT_OK
    table = [
        [
            r.entity,
            r.project,
            "" if r.runs is None else str(r.runs),
            r.created_at.strftime("%Y-%m-%d %H:%M") if r.created_at else "",
        ]
        for r in rows
    ]
    print(text_table(["entity", "project", "runs", "created"], table, right=[2]), end="")
    return EXIT_OK


# --- parser ------------------------------------------------------------------------------------


def make_parser(verb: str | None = None) -> argparse.ArgumentParser:
    """The command line. Given the `verb` being run, only its sub-parser is built: building
    all of them is a tenth of a short command's start-up. `--help`, a mistyped verb and the
    generated docs get every verb."""
    parser = argparse.ArgumentParser(
        prog="reportgen",
        description="Turn a YAML spec into reports about Weights & Biases training runs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--version", action=_ShowVersion, nargs=0, help="show program's version number and exit"
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    verbs = parser.add_subparsers(dest="verb", metavar="COMMAND")
    for name, add in SPEC_VERBS.items():
        if verb in (None, name):
            add(verbs)
    from reportgen.commands import add_verbs

    add_verbs(verbs, only=verb)
    return parser


def verb_in(argv: Sequence[str]) -> str | None:
    """The verb `argv` runs, when it names one before anything else (`--debug` aside)."""
    words = [word for word in argv if word != "--debug"]
    from reportgen.commands import VERBS

    if words and (words[0] in SPEC_VERBS or words[0] in VERBS):
        return words[0]
    return None


def _add_build(verbs: Any) -> None:
    build = verbs.add_parser(
        "build",
        help="validate a spec, read its runs and write the report",
        description="Validate SPEC, read its runs, and write the outputs it asks for.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build.add_argument("spec", help="the YAML spec, e.g. specs/demo.yaml")
    build.add_argument("--out", type=_path, help="output folder (overrides outputs.dir)")
    build.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    build.add_argument(
        "--summary",
        action="store_true",
        help="print the compact answer on stdout: each selection and why, each table written "
        "(path, rows), verdicts with top findings, notes that change the answer "
        "(at most 2,000 characters)",
    )
    build.add_argument(
        "--json",
        action="store_true",
        help="print the summary as one line of JSON (implies --summary)",
    )
    build.add_argument(
        "--now",
        metavar="TIME",
        help="the report's timestamp and the 'now' that ages such as 7d count back from "
        "(ISO 8601 or @epoch-seconds; default: SOURCE_DATE_EPOCH, else the clock), "
        "so the same inputs give the same files",
    )
    build.add_argument(
        "--timeout",
        metavar="DURATION",
        help="stop the build (exit 5) when it has not finished after DURATION: seconds, or "
        "90s, 20m, 2h; 0 for none (default: none, or 1h when the CI variable is set)",
    )
    build.add_argument(
        "--comment",
        action="store_true",
        help="post (or update) the pull-request comment; the forge, PR and token come from CI",
    )
    build.add_argument(
        "--executor",
        metavar="WHERE",
        help="where the per-run work runs (overrides source.executor): local (default), ray "
        "(Ray's default address), ray:auto, ray:HOST:PORT or ray://HOST:PORT; Ray needs "
        "pip install 'reportgen[ray]' and run folders every node sees (docs/scale.md)",
    )
    fetching = build.add_mutually_exclusive_group()
    fetching.add_argument(
        "--refresh", action="store_true", help="ignore the cache: fetch every run again"
    )
    fetching.add_argument(
        "--offline",
        action="store_true",
        help="use only the cache, no network (exit 3 when something is not cached)",
    )
    build.set_defaults(func=cmd_build)


def _add_cache(verbs: Any) -> None:
    cache = verbs.add_parser(
        "cache",
        help="show or empty the local cache of run data",
        description="The cache of run history (Parquet) and metadata (JSON). Location: "
        "REPORTGEN_CACHE_DIR, else the spec's cache.dir, else ~/.cache/reportgen.",
    )
    cache_verbs = cache.add_subparsers(dest="cache_verb", metavar="ACTION", required=True)
    info = cache_verbs.add_parser("info", help="where the cache is and what it holds")
    info.add_argument("spec", nargs="?", help="a spec whose cache.dir to use")
    info.set_defaults(func=cmd_cache_info)
    clear = cache_verbs.add_parser("clear", help="remove every cached run and kept chart")
    clear.add_argument("spec", nargs="?", help="a spec whose cache.dir to use")
    clear.set_defaults(func=cmd_cache_clear)


def _add_validate(verbs: Any) -> None:
    validate = verbs.add_parser(
        "validate",
        help="check specs without touching any data",
        description="Check each SPEC; print one line per problem (file:line:col: path: message).",
    )
    validate.add_argument("specs", nargs="+", metavar="SPEC")
    validate.add_argument("-q", "--quiet", action="store_true", help="print only problems")
    validate.set_defaults(func=cmd_validate)


def _add_schema(verbs: Any) -> None:
    schema = verbs.add_parser(
        "schema",
        help="print the spec's JSON Schema (for editor completion)",
        description="Print the JSON Schema (2020-12) that specs are validated against.",
    )
    schema.set_defaults(func=cmd_schema)


def _add_init(verbs: Any) -> None:
    init = verbs.add_parser(
        "init",
        help="write a commented starter spec",
        description="Write a commented starter spec to PATH.",
    )
    init.add_argument("path", nargs="?", default="reportgen.yaml", help="default: reportgen.yaml")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(func=cmd_init)


def _add_runs(verbs: Any) -> None:
    runs = verbs.add_parser(
        "runs",
        help="list the runs a spec (or a folder) covers",
        description="List runs: id, name, state, steps, created, tags. Give a SPEC (its source "
        "and runs.filters apply) or --source; the options below narrow either.",
        epilog=DISCOVERY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _discovery_arguments(runs)
    runs.set_defaults(func=cmd_runs)


def _add_keys(verbs: Any) -> None:
    keys = verbs.add_parser(
        "keys",
        help="list the metric keys the runs logged, with counts, steps and ranges",
        description="List every metric key: type, runs, count, first/last step, min/max, "
        "non-finite count and x axis. Give a SPEC or --source; --run restricts to one run.",
        epilog=DISCOVERY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _discovery_arguments(keys)
    keys.add_argument(
        "--run",
        metavar="ID",
        help="only this run: an id, a unique name, or a training checkpoint that stores "
        "wandb_run_path (read without unpickling any object)",
    )
    keys.set_defaults(func=cmd_keys)


def _add_projects(verbs: Any) -> None:
    projects = verbs.add_parser(
        "projects",
        help="list the projects of W&B entities, with their run counts",
        description="List the projects of each ENTITY on a W&B server with the number of runs "
        "in each; without an ENTITY, of every entity the credentials can see (yours and your "
        "teams'). A project list feeds source.projects, or a glob such as wandb://ENTITY/proj-*.",
        epilog=DISCOVERY_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    projects.add_argument(
        "entities", nargs="*", metavar="ENTITY", help="a user or team (or wandb://ENTITY)"
    )
    projects.add_argument(
        "--base-url",
        metavar="URL",
        help="a self-hosted W&B server (default: WANDB_BASE_URL, else the W&B cloud)",
    )
    projects.add_argument("--match", metavar="GLOB", help="only projects whose name matches")
    projects.add_argument("--json", action="store_true", help="print JSON instead of a table")
    projects.set_defaults(func=cmd_projects)


SPEC_VERBS: dict[str, Callable[[Any], None]] = {
    "build": _add_build,
    "cache": _add_cache,
    "validate": _add_validate,
    "schema": _add_schema,
    "init": _add_init,
    "runs": _add_runs,
    "keys": _add_keys,
    "projects": _add_projects,
}
# The spec verbs, in the order --help lists them; reportgen.commands adds the others after.


def _path(text: str) -> Any:
    """argparse `type=` for folders: a Path, with pathlib imported only when one is given."""
    from pathlib import Path

    return Path(text)


class _ShowVersion(argparse.Action):
    """argparse's "version" action, with the version looked up only when it is asked for."""

    def __call__(self, parser: argparse.ArgumentParser, *_: Any) -> None:
        from reportgen import __version__

        print(f"reportgen {__version__}")
        parser.exit()


def _discovery_arguments(parser: argparse.ArgumentParser) -> None:
    from reportgen.choices import STATES

    parser.add_argument("spec", nargs="?", help="a YAML spec (its source and runs.filters)")
    parser.add_argument(
        "--source",
        metavar="PATH",
        help="instead of a spec: a folder of W&B runs (searched for offline-run-*/run-* "
        "folders), or wandb://ENTITY/PROJECT on a W&B server (PROJECT may be a glob such as "
        "proj-*, or names joined by commas)",
    )
    parser.add_argument(
        "--state", action="append", choices=STATES, help="keep runs in this state (repeatable)"
    )
    parser.add_argument(
        "--tag", action="append", help="keep runs with this tag (repeatable: any of them)"
    )
    parser.add_argument("--name", metavar="REGEX", help="keep runs whose name matches")
    parser.add_argument("--group", action="append", help="keep runs in this group (repeatable)")
    parser.add_argument("--limit", type=int, metavar="N", help="keep the newest N runs")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")


def main(argv: Sequence[str] | None = None) -> int:
    """The command line: the exit code of what was asked (errors.EXIT_CODES says them all)."""
    install_stop_handlers()
    try:
        words = sys.argv[1:] if argv is None else list(argv)
        parser = make_parser(verb_in(words))
        args = parser.parse_args(words)
        if not getattr(args, "func", None):
            parser.print_help(sys.stderr)
            return EXIT_USAGE
        func: Callable[[argparse.Namespace], int] = args.func
        return _run_verb(func, args)
    except Stopped as exc:
        return _stopped(exc)
    except KeyboardInterrupt:
        _stderr("interrupted")
        return EXIT_INTERRUPTED


def _run_verb(func: Callable[[argparse.Namespace], int], args: argparse.Namespace) -> int:
    try:
        code = func(args)
    except ReportgenError as exc:
        if args.debug:
            import traceback

            traceback.print_exc()
        _stderr(f"error: {exc}" if not isinstance(exc, SpecError) else str(exc))
        return exc.exit_code
    except BuildTimeout as exc:
        _stderr(f"error: {exc}")
        return exc.exit_code
    except (Stopped, KeyboardInterrupt):
        raise
    except BrokenPipeError:
        # The reader went away (`reportgen keys … | head`): not an error of ours.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:
        import traceback  # in each branch that needs it: a bound name in one is unbound in another

        if args.debug:
            traceback.print_exc()
        if stopped_by():  # a stop signal whose exception an import wrapped in another
            return _stopped(Stopped(stopped_by()))
        where = traceback.extract_tb(exc.__traceback__)[-1]
        _stderr(
            f"internal error: {type(exc).__name__}: {' '.join(str(exc).split())[:300]} "
            f"(at {os.path.basename(where.filename)}:{where.lineno}). This is a bug in reportgen: "
            "please report it with the output of --debug"
        )
        return EXIT_INTERNAL
    return code


def _stopped(exc: Stopped) -> int:
    _stderr(stop_message(exc))
    return exc.exit_code


def run() -> None:
    """The console script: `main`, then the process ends at once. A finished command waits for
    its threads and runs the exit handlers, as any exit does, but skips tearing the interpreter
    down: freeing a build's objects one by one took 0.1-0.2 s, a tenth of a warm rebuild. A
    stopped build does not wait for its workers either."""
    code = main()
    if code not in ABRUPT_EXITS:
        for thread in threading.enumerate():
            if thread is not threading.main_thread() and not thread.daemon:
                thread.join()
        atexit._run_exitfuncs()  # what sys.exit would run: logging, finalizers, pools
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(BrokenPipeError, ValueError):  # the reader went away
            stream.flush()
    os._exit(code)


if __name__ == "__main__":
    run()
