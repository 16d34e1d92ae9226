"""Benchmark: precision and recall of the health checks against hand labels on real runs.

    .venv/bin/python benchmarks/health_quality.py [--corpus /work/corpus]
        [--labels benchmarks/health_labels.yaml] [--verbose]
    .venv/bin/python benchmarks/health_quality.py --dump REPO [REPO …]   # findings, to label

The corpus is a folder of real public W&B runs, one sub-folder per repository named
`owner__name` (see DEVELOPERS.md; it is never committed). The labels file holds only derived
judgements, written by someone who plotted every curve of each run: per run (repository + run
id) the real problems its curves and console show, each as the check id(s) that should report it
(and the metric key, when it matters), the verdict the run deserves, and why.

Each run is read with reportgen's own offline reader and checked with the `auto` preset and no
spec aliases, exactly as `reportgen build` would. Then:

- a finding is *right* when it matches a labelled problem of its run (same check id, and the
  same key when the label names one); every other finding is a false alarm;
- a labelled problem is *found* when some finding of its run matches it;
- precision = right findings / all findings; recall = found problems / all problems;
- verdict agreement = runs whose verdict equals the labelled one / labelled runs.

Runs are identified by repository and run id; a labelled run the corpus lacks is reported and
left out of the figures.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path

import yaml

from reportgen.health import check_run
from reportgen.metrics import resolve_metrics
from reportgen.report import Finding, verdict
from reportgen.runs import History, Run
from reportgen.sources.offline import OfflineSource
from reportgen.spec import HealthSpec, SourceSpec

HERE = Path(__file__).resolve().parent
LABELS = HERE / "health_labels.yaml"
CORPUS = Path("/work/corpus")
# The moment of the report. The offline reader takes a run's last sign of life from its files'
# modification time, which copying the corpus refreshed: the report is dated a day after the
# copy, so a run with no exit record reads as killed (as it was), not as still running.
NOW = datetime.now(timezone.utc) + timedelta(days=1)


@dataclass
class Checked:
    run: Run
    history: History
    findings: list[Finding]
    verdict: str
    unjudged: str | None


@dataclass
class Problem:
    checks: tuple[str, ...]
    key: str | None
    why: str
    found: bool = False


@dataclass
class Label:
    repo: str
    run: str
    verdict: str
    why: str
    problems: list[Problem] = field(default_factory=list)


def folder(corpus: Path, repo: str) -> Path:
    return corpus / repo.replace("/", "__")


def check_repo(corpus: Path, repo: str) -> dict[str, Checked]:
    """Every run of one repository in the corpus, checked as `reportgen build` would."""
    source = OfflineSource(
        SourceSpec(type="wandb-offline", path=str(folder(corpus, repo))),
        now=NOW.timestamp(),
    )
    checked = {}
    for run in source.list_runs(now=NOW):
        history = source.history(run)
        resolved = resolve_metrics(run, history, {})
        found, health = check_run(HealthSpec(), {}, run, history, resolved, NOW)
        checked[run.id] = Checked(
            run, history, found, verdict(found, health.unjudged), health.unjudged
        )
    return checked


def load_labels(path: Path) -> list[Label]:
    data = yaml.safe_load(path.read_text())
    labels = []
    for item in data["runs"]:
        problems = []
        for p in item.get("problems") or []:
            checks = p["check"] if isinstance(p["check"], list) else [p["check"]]
            problems.append(Problem(tuple(checks), p.get("key"), p.get("why", "")))
        labels.append(
            Label(item["repo"], str(item["run"]), item["verdict"], item.get("why", ""), problems)
        )
    return labels


def matches(finding: Finding, problem: Problem) -> bool:
    return finding.check in problem.checks and (problem.key is None or problem.key == finding.key)


def score(corpus: Path, labels: list[Label], verbose: bool) -> None:
    repos = sorted({label.repo for label in labels})
    checked: dict[tuple[str, str], Checked] = {}
    started = time.perf_counter()
    for repo in repos:
        for run_id, c in check_repo(corpus, repo).items():
            checked[(repo, run_id)] = c
    elapsed = time.perf_counter() - started
    right = wrong = found = problems = agree = judged = 0
    wrong_by_check: Counter[str] = Counter()
    missed_by_check: Counter[str] = Counter()
    lines = []
    for label in labels:
        c = checked.get((label.repo, label.run))
        if c is None:
            lines.append(f"MISSING {label.repo} {label.run}: not in the corpus")
            continue
        judged += 1
        agree += c.verdict == label.verdict
        if c.verdict != label.verdict:
            lines.append(
                f"VERDICT {label.repo} {label.run}: {c.verdict} (labelled {label.verdict})"
                f"{' — ' + c.unjudged if c.unjudged else ''}"
            )
        for f in c.findings:
            hit = [p for p in label.problems if matches(f, p)]
            if hit:
                right += 1
                for p in hit:
                    p.found = True
            else:
                wrong += 1
                wrong_by_check[f.check] += 1
                lines.append(
                    f"FALSE   {label.repo} {label.run}: {f.check} {f.key or ''} step "
                    f"{f.step}: {f.message[:160]}"
                )
        for p in label.problems:
            problems += 1
            if p.found:
                found += 1
            else:
                missed_by_check["/".join(p.checks)] += 1
                lines.append(
                    f"MISSED  {label.repo} {label.run}: {'/'.join(p.checks)} {p.key or ''}: "
                    f"{p.why[:160]}"
                )
    findings = right + wrong
    precision = right / findings if findings else 1.0
    recall = found / problems if problems else 1.0
    if verbose:
        print("\n".join(lines))
        print()
    print(f"labelled runs: {judged} of {len(labels)} found in {corpus} ({elapsed:.0f} s to read)")
    print(f"findings: {findings}, right {right}, false alarms {wrong}")
    print(f"precision: {precision:.3f}  (goal >= 0.95)")
    print(f"real problems: {problems}, found {found}")
    print(f"recall: {recall:.3f}  (goal >= 0.85)")
    print(f"verdicts as labelled: {agree} of {judged} ({agree / max(judged, 1):.0%})")
    if wrong_by_check:
        print("false alarms by check: " + ", ".join(f"{k} {v}" for k, v in wrong_by_check.items()))
    if missed_by_check:
        print("missed by check: " + ", ".join(f"{k} {v}" for k, v in missed_by_check.items()))


def dump(corpus: Path, repos: list[str], min_rows: int) -> None:
    """Print what the checks say about every run of the repositories, for labelling."""
    for repo in repos:
        for run_id, c in sorted(check_repo(corpus, repo).items()):
            steps = c.history.steps()
            if len(steps) < min_rows:
                continue
            run = c.run
            print(
                f"## {repo} {run_id} name={run.name!r} state={run.state} exit={run.exit_code} "
                f"rows={len(steps)} steps={int(steps[0]) if len(steps) else None}.."
                f"{int(steps[-1]) if len(steps) else None} verdict={c.verdict}"
                f"{' (' + c.unjudged + ')' if c.unjudged else ''}"
            )
            for f in c.findings:
                print(f"   {f.check} [{f.severity}] {f.key} step={f.step}: {f.message[:220]}")
                print(f"      cause: {f.likely_cause}")
                print(f"      next: {f.next_step}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", type=Path, default=CORPUS)
    parser.add_argument("--labels", type=Path, default=LABELS)
    parser.add_argument("--verbose", action="store_true", help="list every miss and false alarm")
    parser.add_argument("--dump", nargs="+", metavar="REPO", help="print findings, no scores")
    parser.add_argument("--min-rows", type=int, default=0, help="with --dump: skip shorter runs")
    args = parser.parse_args(argv)
    if not args.corpus.is_dir():
        print(f"corpus folder {args.corpus} does not exist (see DEVELOPERS.md)", file=sys.stderr)
        return 2
    if args.dump:
        dump(args.corpus, args.dump, args.min_rows)
        return 0
    score(args.corpus, load_labels(args.labels), args.verbose)
    return 0


if __name__ == "__main__":
    sys.exit(main())
