"""The `reportgen` command: one function per verb; errors become one line and an exit code.

Exit codes: 0 built; 1 built, but the gate failed; 2 bad spec or usage; 3 the data source failed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from reportgen.errors import EXIT_OK, EXIT_USAGE, ReportgenError, SpecError, UsageError

EPILOG = """exit codes:
  0  built
  1  built, but the gate failed (gate.fail_on)
  2  bad spec or usage
  3  the data source failed (missing folder, auth, network)

Quickstart: reportgen init my-report.yaml && reportgen build my-report.yaml"""


def _stderr(message: str) -> None:
    print(message, file=sys.stderr)


class TerminalProgress:
    """A one-line counter on an interactive stderr; silent in CI logs and pipes."""

    def __init__(self, label: str):
        self.label = label
        self.enabled = sys.stderr.isatty() and not os.environ.get("CI")
        self.shown = False

    def __call__(self, done: int, total: int, item: str) -> None:
        if not self.enabled:
            return
        width = 24
        filled = int(width * done / max(total, 1))
        bar = "█" * filled + "·" * (width - filled)
        sys.stderr.write(f"\r{self.label} {bar} {done}/{total} {item[:40]:<40}")
        sys.stderr.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            sys.stderr.write("\r" + " " * 100 + "\r")
            sys.stderr.flush()


# --- verbs -------------------------------------------------------------------------------------


def cmd_build(args: argparse.Namespace) -> int:
    from reportgen.build import build
    from reportgen.spec import load_spec

    spec = load_spec(args.spec)
    now = parse_moment(args.now) if args.now is not None else None
    progress = TerminalProgress("reading runs")
    try:
        result = build(spec, out_dir=args.out, now=now, progress=progress)
    finally:
        progress.close()
    report = result.report
    if not args.quiet:
        _stderr(
            f"built {len(result.files)} files in {result.out_dir} "
            f"({len(report.runs)} of {report.runs_found} runs)"
        )
        for path in result.files:
            _stderr(f"  {path}")
    if report.gate.failed:
        _stderr(f"gate failed (fail_on: {report.gate.fail_on}):")
        for reason in report.gate.reasons:
            _stderr(f"  {reason}")
    return result.exit_code


def parse_moment(text: str) -> datetime:
    """`--now`: an ISO 8601 date or time (UTC unless it says otherwise) or @seconds since 1970."""
    stripped = text.strip()
    try:
        if stripped.lstrip("@").isdigit():
            return datetime.fromtimestamp(int(stripped.lstrip("@")), timezone.utc)
        moment = datetime.fromisoformat(stripped.replace("Z", "+00:00"))
    except (ValueError, OverflowError, OSError):
        raise UsageError(
            f"--now: expected a date or time such as 2026-11-01T12:00:00Z, or @1700000000; "
            f"got {text!r}"
        ) from None
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).astimezone(
        timezone.utc
    )


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
    from reportgen.spec import load_schema

    print(json.dumps(load_schema(), indent=2))
    return EXIT_OK


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
    path = Path(args.path)
    if path.exists() and not args.force:
        raise UsageError(f"{path} already exists; pass --force to overwrite it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(STARTER_SPEC.format(name=path), encoding="utf-8")
    print(f"wrote {path}; edit source.path, then: reportgen build {path}")
    return EXIT_OK


# --- parser ------------------------------------------------------------------------------------


def make_parser() -> argparse.ArgumentParser:
    from reportgen import __version__

    parser = argparse.ArgumentParser(
        prog="reportgen",
        description="Turn a YAML spec into reports about Weights & Biases training runs.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"reportgen {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    verbs = parser.add_subparsers(dest="verb", metavar="COMMAND")

    build = verbs.add_parser(
        "build",
        help="validate a spec, read its runs and write the report",
        description="Validate SPEC, read its runs, and write the outputs it asks for.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    build.add_argument("spec", help="the YAML spec, e.g. specs/demo.yaml")
    build.add_argument("--out", type=Path, help="output folder (overrides outputs.dir)")
    build.add_argument("-q", "--quiet", action="store_true", help="print nothing but errors")
    build.add_argument(
        "--now",
        metavar="TIME",
        help="the report's timestamp and the 'now' that ages such as 7d count back from "
        "(ISO 8601 or @epoch-seconds; default: SOURCE_DATE_EPOCH, else the clock), "
        "so the same inputs give the same files",
    )
    build.set_defaults(func=cmd_build)

    validate = verbs.add_parser(
        "validate",
        help="check specs without touching any data",
        description="Check each SPEC; print one line per problem (file:line:col: path: message).",
    )
    validate.add_argument("specs", nargs="+", metavar="SPEC")
    validate.add_argument("-q", "--quiet", action="store_true", help="print only problems")
    validate.set_defaults(func=cmd_validate)

    schema = verbs.add_parser(
        "schema",
        help="print the spec's JSON Schema (for editor completion)",
        description="Print the JSON Schema (2020-12) that specs are validated against.",
    )
    schema.set_defaults(func=cmd_schema)

    init = verbs.add_parser(
        "init",
        help="write a commented starter spec",
        description="Write a commented starter spec to PATH.",
    )
    init.add_argument("path", nargs="?", default="reportgen.yaml", help="default: reportgen.yaml")
    init.add_argument("--force", action="store_true", help="overwrite an existing file")
    init.set_defaults(func=cmd_init)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return EXIT_USAGE
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except ReportgenError as exc:
        if args.debug:
            traceback.print_exc()
        _stderr(f"error: {exc}" if not isinstance(exc, SpecError) else str(exc))
        return exc.exit_code
    except KeyboardInterrupt:
        _stderr("interrupted")
        return 130


def run() -> None:
    sys.exit(main())


if __name__ == "__main__":
    run()
