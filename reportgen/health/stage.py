"""Running the checks: per run, pick the preset, fill in parameters, collect findings.

`auto` decides per run: a run that logs anything only RL logs (entropy, KL, clip fraction,
response length, reward) is checked as RL, anything else as supervised training. A check the
spec configures under `health.checks` runs even when its preset leaves it out; `disable` wins.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np

from reportgen.health import stats
from reportgen.health.context import CheckContext, num
from reportgen.health.registry import CHECKS, preset_checks
from reportgen.health.roles import OBJECTIVE, SignalResolver, is_rl
from reportgen.metrics import ResolvedMetric
from reportgen.report import Finding, RunHealth
from reportgen.runs import History, Run
from reportgen.spec import HealthSpec, MetricAlias


def check_runs(
    health: HealthSpec,
    aliases: Mapping[str, MetricAlias],
    runs: Sequence[Run],
    histories: Mapping[str, History],
    metrics: Mapping[str, Mapping[str, ResolvedMetric]],
    now: datetime,
) -> tuple[dict[str, list[Finding]], dict[str, RunHealth]]:
    """Findings and health notes for every run, keyed by run id."""
    findings: dict[str, list[Finding]] = {}
    notes: dict[str, RunHealth] = {}
    for run in runs:
        findings[run.id], notes[run.id] = check_run(
            health, aliases, run, histories[run.id], metrics[run.id], now
        )
    return findings, notes


def check_run(
    health: HealthSpec,
    aliases: Mapping[str, MetricAlias],
    run: Run,
    history: History,
    resolved: Mapping[str, ResolvedMetric],
    now: datetime,
) -> tuple[list[Finding], RunHealth]:
    resolver = SignalResolver(run, history, resolved, aliases)
    kind = health.preset if health.preset in ("rl", "supervised") else _detect(resolver)
    ids, params = _plan(health, kind)
    context = CheckContext(run=run, history=history, now=now, preset=kind, resolver=resolver)
    findings: list[Finding] = []
    for check_id in ids:
        check = CHECKS[check_id]
        context.check = check
        findings += check.function(context, dict(params[check_id]))
    findings = without_repeats(findings)
    healthy = tuple(_healthy(context, ids, findings))
    return findings, RunHealth(kind, tuple(ids), healthy, unjudged_reason(context, ids))


_PLANS: dict[tuple[int, str], tuple[HealthSpec, list[str], dict[str, dict[str, Any]]]] = {}


def _plan(health: HealthSpec, kind: str) -> tuple[list[str], dict[str, dict[str, Any]]]:
    """The checks a run of this kind gets, and each one's parameters: the same for every run
    of a build, so they are worked out once per spec and kind (not once per run)."""
    held = _PLANS.get((id(health), kind))
    if held is not None and held[0] is health:
        return list(held[1]), held[2]
    ids = [] if health.preset == "none" else preset_checks(kind)
    ids += [i for i in CHECKS if i in health.checks and i not in ids]
    ids = [i for i in CHECKS if i in ids and i not in health.disable]
    params = {i: CHECKS[i].values(kind, health.checks.get(i, {})) for i in ids}
    if len(_PLANS) > 16:  # specs of earlier builds in this process (tests, the MCP server)
        _PLANS.clear()
    _PLANS[(id(health), kind)] = (health, ids, params)
    return list(ids), params


# A finding of the key's check says nothing new when one of these already speaks about the same
# metric: a plateau of a reward that never rose (reward_flat) or is exactly constant
# (flatline), a rising trend of a KL that is already too high, the blow-up of a metric that
# diverged.
SUBSUMED_BY = {
    "plateau": ("reward_flat", "reward_saturated", "flatline", "diverged", "loss_flat"),
    "instability_trend": ("diverged", "kl_high", "clipfrac_high"),
    "reward_flat": ("flatline",),
    "loss_spike": ("diverged",),
    "grad_norm_spike": ("diverged",),
    "kl_spike": ("kl_high",),
    "overfitting": ("diverged",),
    "loss_flat": ("flatline", "diverged", "non_finite"),
}


def without_repeats(findings: list[Finding]) -> list[Finding]:
    """The findings, less those that repeat another check's finding on the same metric."""
    by_key: dict[str | None, set[str]] = {}
    for f in findings:
        by_key.setdefault(f.key, set()).add(f.check)
    return [
        f
        for f in findings
        if f.key is None or not by_key[f.key] & set(SUBSUMED_BY.get(f.check, ()))
    ]


# A run whose longest tracked curve has fewer finite points than this is not judged: most
# checks need a few windows of points, and "good" must not rest on a handful of values.
MIN_POINTS = 20


def unjudged_reason(context: CheckContext, ids: list[str]) -> str | None:
    """Why the checks cannot call this run good, or None when they had enough to judge it.

    A run is not judged when no check ran (`preset: none` without configured checks), when it
    logged no step, when none of its metrics is one the checks know, or when its longest
    tracked curve has fewer than MIN_POINTS finite points. Findings still decide the verdict
    (a crash before the first step is ugly); this only keeps an empty finding list from
    reading as "good".
    """
    if not ids:
        return "no health check is enabled (health.preset is none)"
    if not len(context.steps()):
        return "not enough data: the run logged no step"
    signals = context.resolver.tracked()
    if not signals:
        return (
            "not enough data: none of its metrics is one the checks know (loss, reward, KL, "
            "entropy, …); name them under metrics"
        )
    longest = max(signals, key=lambda s: len(s.finite))
    points = len(longest.finite)
    if points < MIN_POINTS:
        return (
            f"not enough data: its longest tracked curve ({longest.key}) has {points} finite "
            f"points; at least {MIN_POINTS} are needed to judge it"
        )
    return None


def _detect(resolver: SignalResolver) -> str:
    return "rl" if is_rl(resolver) else "supervised"


def _healthy(context: CheckContext, ids: list[str], findings: list[Finding]) -> list[str]:
    """What looks fine in a run: a few plain sentences for the report's Good section."""
    run = context.run
    flagged = {f.key for f in findings}
    checks = {f.check for f in findings}
    lines = []
    steps = context.steps()
    if run.state == "finished" and (run.exit_code or 0) == 0 and len(steps):
        lines.append(f"finished cleanly after {len(steps)} logged steps")
    if "non_finite" in ids and "non_finite" not in checks:
        tracked = len(context.resolver.tracked())
        if tracked:
            lines.append(f"no NaN or infinity in its {tracked} tracked metrics")
    names = [OBJECTIVE, "entropy", "kl", "length"]
    if context.preset == "supervised":
        names.insert(1, "loss")
    seen: set[str] = set()
    for name in names:
        signal = context.signal(name)
        if signal is None or signal.key in flagged or signal.key in seen:
            continue
        seen.add(signal.key)
        s = signal.finite
        if len(s) < 2:
            continue
        w = stats.window_size(len(s), None)
        start, end = stats.head_level(s.values, w), stats.tail_level(s.values, w)
        if name == "kl":
            lines.append(f"{s.key} stayed small (median {num(float(np.median(s.values)))})")
        elif name == "entropy" and start > 0:
            lines.append(f"{s.key} went from {num(start)} to {num(end)} without collapsing")
        else:
            lines.append(f"{s.key} went from {num(start)} to {num(end)}")
    return lines
