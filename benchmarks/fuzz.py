"""Fuzzer: hostile specs, damaged run files, damaged caches and a faulty W&B server, for minutes.

    .venv/bin/python benchmarks/fuzz.py [--minutes 10] [--seed N] [--only spec,files,cache,server]
                                        [--case-timeout 40] [--data DIR]

Property-based (hypothesis, without shrinking): each case is generated, run through the real
command (`reportgen.cli.main`, in a worker process that a hung case cannot take down) and
judged. Runs are written once by the real wandb client (tests/runwriter.py) with hostile names,
tags and config; the W&B server is the loopback server of tests/wandb_server.py, spoken to by
the real `wandb.Api`. Categories:

  spec     a valid spec mutated at the YAML level (tags, aliases, nesting, NUL, random bytes)
           and at the value level (hostile numbers, strings, dates, durations, regexes,
           expressions, unknown and missing keys)
  files    one run's .wandb file truncated, zeroed, bit-flipped or replaced (by an empty file,
           a directory, a dangling symlink, a FIFO) before a build
  cache    a warm cache's entry metadata (<name>.json) / Parquet files replaced by wrong
           shapes or garbage
  server   a build against the loopback server answering with random faults (malformed
           bodies, 429 with Retry-After up to an hour, 5xx, 404), some forever

What counts (the goal is 0 of each):
  traceback    exit 70 (an internal error) or an exception that escaped `main`
  hang         no answer within --case-timeout (the worker is killed and replaced)
  wrong exit   an exit code outside errors.EXIT_CODES, 1 without a failed gate, or an error
               message that is not exactly one line on stderr
  silent loss  a build that succeeded without some run and says nothing about it (no note,
               not "incomplete"), or a cache fault that changed the outputs without a warning
Peak memory is the largest resident set of a worker process.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import multiprocessing
import os
import random
import resource
import shutil
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

RUN_IDS = ("fuzzrun1", "fuzzrun2", "fuzzrun3")
HOSTILE_STRINGS = [
    "",
    " ",
    "\x00",
    "a\x00b",
    "\x1b[2J\x1b]0;pwned\x07",
    "\u202eexe.txt",
    "\ud800",
    '=HYPERLINK("http://x")',
    "-0.5",
    "+1",
    "@SUM(A1)",
    "line\rbreak",
    "../../../etc/passwd",
    "/etc/hostname",
    "/proc/self/mem",
    "NaN",
    "1e308",
    "2024-02-30",
    "2024-13-01T25:61:61Z",
    "9999-12-31T23:59:59Z",
    "0001-01-01",
    "99999999999999999999d",
    "1e400s",
    "0.0000001s",
    "a{99999999999}",
    "^(a+)+$",
    "(a|aa)+$",
    "(?P<x>a)(?P=x)*",
    "[",
    "{selection}{run}{nope}",
    "x" * 5000,
    "日本語",
]
EXPR_NAMES = ["loss", "length", "gap", "step", "nope", "__import__", "os"]
FUNCTIONS = ["abs", "log", "log10", "exp", "sqrt", "min", "max", "eval", "getattr"]
NUMBERS = ["0", "1", "-1", "1e308", "1e-308", "10**10**10", "9" * 400, "0.5", "nan", "1/0"]
REGEXES = ["^(a|aa)+$", "^(\\w+\\s?)*$", "a{99999999999}", "(x+x+)+y", "[", "(?=a)", ".*", "^fuzz"]
SHAPES = [
    [],
    {},
    None,
    5,
    "text",
    {"history": None},
    {"history": {"sha256": 1, "bytes": "x"}},
    {"history": {"sha256": "0" * 64, "bytes": 10, "keys": 1}, "fingerprint": [1]},
    {"history": {"sha256": "0" * 64, "bytes": 10, "keys": 1}, "run": 5, "contents": "x"},
]


# --- the cases ---------------------------------------------------------------------------------


@dataclass
class Case:
    category: str
    spec_bytes: bytes
    damage: dict[str, Any] = field(default_factory=dict)
    label: str = ""


def base_spec(runs: Path, out: Path, source: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "version": 1,
        "title": "fuzz",
        "source": source or {"type": "wandb-offline", "path": str(runs)},
        "runs": {"filters": {"state": ["finished", "failed", "running", "killed", "crashed"]}},
        "metrics": {
            "loss": "train/loss",
            "length": "response_length/mean",
            "gap": {"expr": "loss - length"},
        },
        "select": {"best": {"by": "loss", "reduce": "last", "pick": "min"}},
        "sampling": {"x": "_step", "start": 0, "every": 10, "align": "asof"},
        "stats": {},
        "project_table": {"min_runs": 3},
        "compare": {"runs": [RUN_IDS[0], RUN_IDS[1]]},
        "health": {"preset": "auto"},
        "gate": {"fail_on": "never"},
        "outputs": {
            "dir": str(out),
            "formats": ["markdown", "csv", "json"],
            "comment": {"on_error": "warn"},
        },
    }


def paths_of(tree: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(tree, dict):
        for key, value in tree.items():
            found += paths_of(value, (*prefix, key))
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            found += paths_of(value, (*prefix, i))
    return found


expressions = st.recursive(
    st.one_of(st.sampled_from(EXPR_NAMES), st.sampled_from(NUMBERS)),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(["+", "-", "*", "/", "**", " < ", " and "]), inner).map(
            lambda t: f"({t[0]}{t[1]}{t[2]})"
        ),
        st.tuples(st.sampled_from(FUNCTIONS), st.lists(inner, max_size=4)).map(
            lambda t: f"{t[0]}({', '.join(t[1])})"
        ),
    ),
    max_leaves=40,
)
long_expressions = st.integers(1, 40_000).map(lambda n: "+".join(["loss"] * n))
leaves = st.one_of(
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=40),
    st.sampled_from(HOSTILE_STRINGS),
    expressions,
    long_expressions,
    st.sampled_from(REGEXES),
    st.booleans(),
    st.none(),
    st.lists(st.sampled_from([*HOSTILE_STRINGS, "loss", "gap"]), max_size=4),
    st.dictionaries(st.sampled_from(["expr", "key", "by", "every", "x", "gte"]), expressions),
)


@st.composite
def value_mutations(draw: Any, base: dict[str, Any]) -> dict[str, Any]:
    spec = json.loads(json.dumps(base))
    for _ in range(draw(st.integers(1, 4))):
        where = draw(st.sampled_from(paths_of(spec)[1:]))
        parent: Any = spec
        for part in where[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["set", "set", "set", "delete", "sibling"]))
        if action == "delete":
            del parent[where[-1]]
        elif action == "sibling" and isinstance(parent, dict):
            parent[draw(st.sampled_from([*HOSTILE_STRINGS, "evry", "expr", "where"]))] = draw(
                leaves
            )
        else:
            parent[where[-1]] = draw(leaves)
        if not isinstance(spec, dict) or not spec:
            break
    return spec


def dump(spec: Any) -> bytes:
    text = yaml.safe_dump(spec, allow_unicode=True, sort_keys=False)
    return text.encode("utf-8", "surrogatepass")


@st.composite
def text_mutations(draw: Any, base: dict[str, Any]) -> bytes:
    data = dump(base)
    kind = draw(st.sampled_from(["tag", "bomb", "loop", "nest", "bytes", "merge", "huge"]))
    if kind == "tag":
        tag = draw(
            st.sampled_from(
                [
                    "!!python/object/apply:os.system ['touch /tmp/fuzz-pwned']",
                    "!!python/name:os.system",
                    "!custom {a: 1}",
                    "!!binary aGVsbG8=",
                    "!!set {a, b}",
                    "!!omap [a: 1]",
                    "!!timestamp 2024-02-30",
                ]
            )
        )
        return data.replace(b"title: fuzz", b"title: " + tag.encode())
    if kind == "bomb":
        width, depth = draw(st.integers(2, 12)), draw(st.integers(2, 12))
        lines = [f"l0: &l0 [{', '.join(['x'] * width)}]"]
        lines += [f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * width)}]" for i in range(1, depth)]
        return data + ("\n".join(lines) + "\n").encode()
    if kind == "loop":
        return data.replace(b"title: fuzz", b"title: &t [*t]")
    if kind == "nest":
        depth = draw(st.integers(10, 3000))
        return data.replace(b"title: fuzz", b"title: " + b"[" * depth + b"]" * depth)
    if kind == "merge":
        return data + b"base: &b {x: 1}\nmerged: {<<: [*b, *b], <<: *b}\n"
    if kind == "huge":
        return data + b"# " + b"x" * draw(st.integers(1 << 19, 1 << 21)) + b"\n"
    at = draw(st.integers(0, len(data)))
    noise = draw(st.binary(min_size=1, max_size=16))
    return data[:at] + noise + data[at:]


@st.composite
def spec_cases(draw: Any, runs: Path, out: Path) -> Case:
    base = base_spec(runs, out)
    if draw(st.booleans()):
        return Case("spec", dump(draw(value_mutations(base))), label="values")
    return Case("spec", draw(text_mutations(base)), label="yaml")


@st.composite
def file_cases(draw: Any, runs: Path, out: Path) -> Case:
    damage = {
        "run": draw(st.sampled_from(RUN_IDS)),
        "kind": draw(
            st.sampled_from(
                ["truncate", "zero", "flip", "empty", "directory", "dangling", "fifo", "garbage"]
            )
        ),
        "at": draw(st.floats(0, 1)),
        "length": draw(st.integers(1, 70_000)),
        "seed": draw(st.integers(0, 2**32)),
    }
    return Case("files", dump(base_spec(runs, out)), damage, label=damage["kind"])


@st.composite
def cache_cases(draw: Any, runs: Path, out: Path) -> Case:
    damage = {
        "what": draw(st.sampled_from(["meta", "parquet", "delete", "listing"])),
        "shape": draw(st.integers(0, len(SHAPES) - 1)),
        "noise": draw(st.binary(max_size=64)),
        "all": draw(st.booleans()),
    }
    return Case("cache", dump(base_spec(runs, out)), damage, label=damage["what"])


@st.composite
def server_cases(draw: Any, runs: Path, out: Path) -> Case:
    faults = draw(
        st.lists(
            st.fixed_dictionaries(
                {
                    "op": st.sampled_from(
                        [
                            "Viewer",
                            "Runs",
                            "RunsMetadata",
                            "RunsHistory",
                            "Run",
                            "RunHistoryKeys",
                            "HistoryPage",
                            "GET",
                        ]
                    ),
                    "status": st.sampled_from([200, 429, 500, 502, 404]),
                    "times": st.sampled_from([1, 2, None]),
                    "retry_after": st.sampled_from(["0", "1", "3600", None]),
                    "run": st.sampled_from([None, *RUN_IDS]),
                }
            ),
            min_size=1,
            max_size=3,
        )
    )
    return Case("server", b"", {"faults": faults}, label="+".join(f["op"] for f in faults))


# --- running one case (in the worker) ----------------------------------------------------------


def damage_files(runs: Path, damage: dict[str, Any]) -> None:
    (target,) = runs.glob(f"wandb/*-{damage['run']}/run-{damage['run']}.wandb")
    rng = random.Random(damage["seed"])
    data = target.read_bytes()
    kind = damage["kind"]
    at = int(damage["at"] * len(data))
    if kind == "truncate":
        target.write_bytes(data[:at])
    elif kind == "zero":
        target.write_bytes(data[:at] + bytes(damage["length"]) + data[at + damage["length"] :])
    elif kind == "flip":
        flipped = bytearray(data)
        for _ in range(rng.randint(1, 20)):
            flipped[rng.randrange(len(flipped))] ^= 1 << rng.randrange(8)
        target.write_bytes(bytes(flipped))
    elif kind == "garbage":
        target.write_bytes(rng.randbytes(damage["length"]))
    elif kind == "empty":
        target.write_bytes(b"")
    elif kind == "directory":
        target.unlink()
        target.mkdir()
    elif kind == "dangling":
        target.unlink()
        target.symlink_to(target.with_name("gone.wandb"))
    elif kind == "fifo":
        target.unlink()
        os.mkfifo(target)


def damage_cache(cache: Path, damage: dict[str, Any]) -> None:
    # An entry's metadata is entries/<name>.json; a side file (<name>.console.json) has two dots.
    metas = sorted(p for p in cache.rglob("entries/*.json") if p.name.count(".") == 1)
    parquets = sorted(cache.rglob("entries/*.parquet"))
    chosen = (lambda items: items) if damage["all"] else (lambda items: items[:1])
    if damage["what"] == "meta":
        for path in chosen(metas):
            path.write_text(json.dumps(SHAPES[damage["shape"]]))
    elif damage["what"] == "parquet":
        for path in chosen(parquets):
            path.write_bytes(damage["noise"])
    elif damage["what"] == "delete":
        for path in chosen(parquets):
            path.unlink()
    else:
        for path in cache.rglob("*.json"):
            path.write_bytes(damage["noise"] or b"{")


def run_cli(args: list[str]) -> tuple[int | str, str]:
    from reportgen.cli import main

    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            code: int | str = main(args)
    except BaseException as exc:  # counting what escapes is the point
        code = f"escaped {type(exc).__name__}: {exc}"
    return code, err.getvalue()


def report_summary(out: Path) -> dict[str, Any] | None:
    try:
        report = json.loads((out / "report.json").read_text())
    except (OSError, ValueError):
        return None
    notes = " ".join(report.get("notes", []))
    for run in report.get("runs", []):
        notes += " " + " ".join(run.get("notes", []))
    return {
        "runs": sorted(run["id"] for run in report.get("runs", [])),
        "incomplete": report.get("incomplete"),
        "gate_failed": (report.get("gate") or {}).get("failed"),
        "notes": notes,
    }


def outputs_of(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("*.csv"))}


def run_case(case: Case, data: Path, scratch: Path) -> dict[str, Any]:
    """One case in this worker: set up, build, and what happened."""
    shutil.rmtree(scratch, ignore_errors=True)
    scratch.mkdir(parents=True)
    os.environ["REPORTGEN_CACHE_DIR"] = str(scratch / "cache")
    runs = scratch / "runs"
    shutil.copytree(data / "runs", runs, symlinks=True)
    out = scratch / "out"
    spec = scratch / "spec.yaml"
    result: dict[str, Any] = {"category": case.category, "label": case.label}
    if case.category == "server":
        return run_server_case(case, data, scratch, result)
    text = case.spec_bytes.replace(str(data / "runs").encode(), str(runs).encode())
    spec.write_bytes(text.replace(str(data / "out").encode(), str(out).encode()))
    if case.category == "files":
        damage_files(runs, case.damage)
    args = ["build", str(spec), "-q", "--now", "2026-11-01T00:00:00Z"]
    if case.category == "cache":
        code, err = run_cli(args)
        before = outputs_of(out)
        damage_cache(scratch / "cache", case.damage)
        shutil.rmtree(out, ignore_errors=True)
        code, err = run_cli(args)
        result["changed_outputs"] = code == 0 and outputs_of(out) != before
    else:
        code, err = run_cli(args)
    result.update(code=code, stderr=err, report=report_summary(out))
    result["expected_runs"] = sorted(RUN_IDS)
    return result


_SERVER_RUNS: list[Any] = []


def run_server_case(
    case: Case, data: Path, scratch: Path, result: dict[str, Any]
) -> dict[str, Any]:
    import copy

    from wandb_server import Fault, WandbServer, runs_from_folder

    if not _SERVER_RUNS:
        _SERVER_RUNS.extend(runs_from_folder(data / "runs"))
    out = scratch / "out"
    with WandbServer(copy.deepcopy(_SERVER_RUNS), api_key=FUZZ_KEY) as server:
        for fault in case.damage["faults"]:
            server.faults.append(Fault(**fault))
        source = {"type": "wandb", "entity": "tester", "project": "tests", "base_url": server.url}
        spec = scratch / "spec.yaml"
        spec.write_bytes(dump(base_spec(data / "runs", out, source)))
        code, err = run_cli(["build", str(spec), "-q", "--now", "2026-11-01T00:00:00Z"])
    result.update(code=code, stderr=err, report=report_summary(out))
    result["expected_runs"] = sorted(RUN_IDS)
    return result


FUZZ_KEY = "fuzz" + "0123456789abcdef" * 2 + "0123456789ab"


def worker(connection: Any, data: str) -> None:
    """Run cases sent over `connection` until it closes; answers (result, peak RSS in KiB)."""
    scratch = Path(tempfile.mkdtemp(prefix="reportgen-fuzz-"))
    home = scratch / "wandb-home"
    for name in [k for k in os.environ if k.startswith("WANDB_")]:
        del os.environ[name]
    os.environ.update(
        WANDB_DIR=str(home),
        WANDB_CONFIG_DIR=str(home / "config"),
        WANDB_CACHE_DIR=str(home / "cache"),
        WANDB_DATA_DIR=str(home / "data"),
        WANDB_SILENT="true",
        WANDB_ERROR_REPORTING="false",
        WANDB_API_KEY=FUZZ_KEY,
        WANDB_HTTP_TIMEOUT="5",
        REPORTGEN_MAX_WAIT="5",
        NETRC=str(home / "netrc-none"),
    )
    os.environ.pop("CI", None)
    while True:
        try:
            case = connection.recv()
        except EOFError:
            return
        result = run_case(case, Path(data), scratch / "case")
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        connection.send((result, peak))


# --- judging -----------------------------------------------------------------------------------


def judge(result: dict[str, Any]) -> list[str]:
    """The kinds of failure this result shows (empty: it behaved)."""
    from reportgen.errors import (
        EXIT_CODES,
        EXIT_GATE_FAILED,
        EXIT_INCOMPLETE,
        EXIT_INTERNAL,
        EXIT_OK,
    )

    code, err, report = result["code"], result["stderr"], result["report"]
    if isinstance(code, str) or code == EXIT_INTERNAL or "Traceback" in err:
        return ["traceback"]
    found = []
    lines = [line for line in err.splitlines() if not line.startswith("warning: ")]
    spec_problems = code == 2 and lines and all(":" in line for line in lines)
    gate_lie = code == EXIT_GATE_FAILED and not (report and report["gate_failed"])
    # Exit 5 (built, parts missing) names each missing part on its own line, then the outcome.
    noisy_error = code not in (EXIT_OK, EXIT_GATE_FAILED, EXIT_INCOMPLETE) and len(lines) != 1
    if code not in EXIT_CODES or gate_lie or (noisy_error and not spec_problems):
        found.append("wrong exit")
    if code in (EXIT_OK, EXIT_GATE_FAILED, EXIT_INCOMPLETE) and report is not None:
        missing = set(result["expected_runs"]) - set(report["runs"])
        unexplained = any(run not in report["notes"] for run in missing)
        if unexplained and not report["incomplete"] and result["category"] != "spec":
            found.append("silent loss")
        if result.get("changed_outputs") and "warning: cache" not in err:
            found.append("silent loss")
    return found


# --- the campaign ------------------------------------------------------------------------------


def prepare(data: Path) -> None:
    """Three real runs with hostile names, tags and config, written once."""
    if (data / "runs" / "wandb").is_dir():
        return
    from runwriter import PlannedRun, write_runs

    hostile = {"cmd": "=1+1", "cr": "a\rb", "esc": "\x1b[2J", "neg": "-0.5"}
    plans = [
        PlannedRun(
            name=name,
            run_id=run_id,
            rows=[
                {"train/loss": (i + 1.0) / (1 + s), "response_length/mean": 50.0 - s / 10}
                for s in range(200)
            ],
            config={**hostile, "lr": 10.0 ** -(i + 3)},
            tags=["fuzz", "\u202egat"],
        )
        for i, (run_id, name) in enumerate(
            zip(RUN_IDS, ["fuzz-\x1b[31mred", "fuzz-\u202eevil", "fuzz-plain"], strict=True)
        )
    ]
    write_runs(data / "runs", plans)


class Campaign:
    def __init__(self, data: Path, case_timeout: float):
        self.data = data
        self.case_timeout = case_timeout
        self.counts: Counter[str] = Counter()
        self.failures: dict[str, Counter[str]] = defaultdict(Counter)
        self.examples: dict[str, str] = {}
        self.peak_kib = 0
        self.context = multiprocessing.get_context("spawn")
        self.process: Any = None
        self.connection: Any = None

    def _start(self) -> None:
        parent, child = self.context.Pipe()
        self.process = self.context.Process(target=worker, args=(child, str(self.data)))
        self.process.start()
        self.connection = parent

    def run(self, case: Case) -> None:
        if self.process is None or not self.process.is_alive():
            self._start()
        self.counts[case.category] += 1
        self.connection.send(case)
        if not self.connection.poll(self.case_timeout):
            self.process.kill()
            self.process.join()
            self.process = None
            self._record(
                case.category, "hang", f"{case.label}: {case.damage or case.spec_bytes[:300]!r}"
            )
            return
        try:
            result, peak = self.connection.recv()
        except EOFError:  # the worker died (out of memory, a crash in C)
            self.process = None
            self._record(case.category, "traceback", f"worker died on {case.label}")
            return
        self.peak_kib = max(self.peak_kib, peak)
        for kind in judge(result):
            detail = f"{case.label}: exit {result['code']}: {result['stderr'].strip()[-400:]}"
            self._record(case.category, kind, detail)

    def _record(self, category: str, kind: str, detail: str) -> None:
        self.failures[category][kind] += 1
        self.examples.setdefault(f"{category}/{kind}", detail)

    def close(self) -> None:
        if self.process is not None:
            self.connection.close()
            self.process.join(timeout=30)
            if self.process.is_alive():
                self.process.kill()


KINDS = ("traceback", "hang", "wrong exit", "silent loss")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--only", default="spec,files,cache,server")
    parser.add_argument("--case-timeout", type=float, default=40.0)
    parser.add_argument("--data", type=Path, default=ROOT / "benchmarks" / ".data" / "fuzz")
    options = parser.parse_args()
    seed = options.seed if options.seed is not None else random.randrange(2**32)
    random.seed(seed)
    prepare(options.data)
    campaign = Campaign(options.data, options.case_timeout)
    runs, out = options.data / "runs", options.data / "out"
    strategies = {
        "spec": (spec_cases(runs, out), 40),
        "files": (file_cases(runs, out), 8),
        "cache": (cache_cases(runs, out), 6),
        "server": (server_cases(runs, out), 3),
    }
    chosen = [name for name in options.only.split(",") if name in strategies]
    started = time.monotonic()
    budget = options.minutes * 60
    rounds = 0
    while time.monotonic() - started < budget:
        for name in chosen:
            strategy, batch = strategies[name]

            @settings(
                max_examples=batch,
                deadline=None,
                phases=[Phase.generate],
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            @given(strategy)
            def one(case: Case) -> None:
                if time.monotonic() - started < budget:
                    campaign.run(case)

            one()
        rounds += 1
        print(
            f"  {time.monotonic() - started:5.0f} s: {sum(campaign.counts.values())} cases",
            file=sys.stderr,
            flush=True,
        )
    campaign.close()
    elapsed = time.monotonic() - started
    total = sum(campaign.counts.values())
    print(f"fuzz: {total} cases in {elapsed:.0f} s, seed {seed}")
    print(f"{'category':10} {'cases':>6} " + " ".join(f"{k:>12}" for k in KINDS))
    for name in chosen:
        row = campaign.failures[name]
        print(f"{name:10} {campaign.counts[name]:6} " + " ".join(f"{row[k]:12}" for k in KINDS))
    totals = Counter()
    for row in campaign.failures.values():
        totals.update(row)
    print(f"{'all':10} {total:6} " + " ".join(f"{totals[k]:12}" for k in KINDS))
    print(f"peak memory of a worker: {campaign.peak_kib / 1024:.0f} MiB")
    for key, detail in sorted(campaign.examples.items()):
        print(f"first {key}: {' '.join(detail.split())[:600]}")


if __name__ == "__main__":
    main()
