"""Did the run live and die properly? crashed, killed, stalled."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from reportgen.health.context import CheckContext
from reportgen.health.registry import DURATION, Param, check
from reportgen.report import Finding

BOTH = ("rl", "supervised")

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_EXCEPTION = re.compile(
    r"^\s*(?:[A-Za-z_][\w.]*(?:Error|Exception|Interrupt|Exit|Failure|Warning)\b"
    r"|Killed\b|Segmentation fault|torch\.\w+\.OutOfMemoryError)"
)

# Known failure texts → (likely cause, next step). The first pattern found in the line wins.
_CRASH_CAUSES = (
    (
        re.compile(r"out of memory|OutOfMemoryError|CUBLAS_STATUS_ALLOC_FAILED", re.I),
        "GPU memory ran out (CUDA out of memory)",
        "Resume from the last checkpoint with a smaller micro-batch{batch}, a shorter maximum "
        "sequence length, or gradient checkpointing.",
    ),
    (
        re.compile(r"NCCL|Watchdog caught collective|timed out|Timeout", re.I),
        "a distributed collective timed out or a peer process died",
        "Look for the rank that died first in its own log, then resume from the last "
        "checkpoint; raise the NCCL timeout only if the stall was expected.",
    ),
    (
        re.compile(r"KeyboardInterrupt|SIGTERM|SIGINT"),
        "the run was interrupted by hand or by a signal",
        "If the stop was not deliberate, check the scheduler for pre-emption and resume from "
        "the last checkpoint.",
    ),
)


def last_exception_line(console: tuple[str, ...]) -> str | None:
    """The last line of the console that names an exception (or 'Killed'), trimmed."""
    for raw in reversed(console):
        line = _ANSI.sub("", raw).strip()
        if line and _EXCEPTION.match(line) and not line.startswith("Traceback"):
            return line if len(line) <= 300 else line[:297] + "…"
    return None


def _last_step(ctx: CheckContext) -> str:
    steps = ctx.history.steps()
    return f"step {int(steps[-1])}" if len(steps) else "its first step"


def _ago(delta: timedelta) -> str:
    seconds = delta.total_seconds()
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


@check(
    "crashed",
    severity="ugly",
    presets=BOTH,
    looks_at="the run's exit code and the end of its console output",
    cause="the training process raised an exception or exited with an error",
    advice="Fix the error quoted in the finding, then resume from the last checkpoint.",
)
def crashed(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The run exited with a non-zero exit code. The message quotes the last exception line of the console output (for example `RuntimeError: CUDA out of memory`) and names the last logged step."""
    run = ctx.run
    code = run.exit_code
    if code in (None, 0) and run.state != "failed":
        return []
    line = last_exception_line(run.console_tail)
    code_text = f"exit code {code}" if code is not None else "an error"
    message = f"the run failed with {code_text} after {_last_step(ctx)}"
    message += f": {line}" if line else " (no exception line in its console output)"
    cause = f"the process raised an uncaught {line.split(':')[0]}" if line else None
    advice = None
    for pattern, known_cause, known_advice in _CRASH_CAUSES:
        if line and pattern.search(line):
            cause = known_cause
            batch = ctx.config_text("ppo_micro_batch_size", "micro_batch_size", "batch_size")
            advice = known_advice.format(batch=batch)
            break
    if code == 255 and cause is None:
        cause, advice = _CRASH_CAUSES[2][1], _CRASH_CAUSES[2][2]
    steps = ctx.history.steps()
    return [
        ctx.finding(
            p,
            message,
            step=float(steps[-1]) if len(steps) else None,
            value=float(code) if code is not None else None,
            cause=cause,
            next_step=advice,
        )
    ]


@check(
    "killed",
    severity="ugly",
    presets=BOTH,
    looks_at="the run's state and the time of its last sign of life (server heartbeat, or the newest timestamp inside its files)",
    cause="the process was killed from outside: pre-emption, the kernel's OOM killer, a node "
    "failure or a job time limit",
    advice="Check the scheduler and kernel logs (dmesg for the OOM killer) around the last "
    "heartbeat, then resume from the last checkpoint.",
    params=[
        Param(
            "after",
            DURATION,
            "1h",
            "A run still marked running counts as killed when its last heartbeat is older than "
            "this. (Offline runs are marked killed by `source.stale_after` already.)",
        )
    ],
)
def killed(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The run stopped without an exit record: its log no longer grows (the offline reader says killed, a W&B server says crashed), or it still claims to be running but has shown no sign of life for longer than `after`."""
    run = ctx.run
    beat = run.heartbeat_at
    silent = ctx.now - beat if beat else None
    timed_out = run.state == "running" and silent is not None and silent > p["after"]
    if run.state not in ("killed", "crashed") and not timed_out:
        return []
    # The moment itself, not its distance from the build: the same files give the same words.
    when = f"; its last sign of life was at {beat:%Y-%m-%d %H:%M:%S} UTC" if beat else ""
    message = f"the run stopped without an exit record after {_last_step(ctx)}{when}"
    steps = ctx.history.steps()
    return [ctx.finding(p, message, step=float(steps[-1]) if len(steps) else None)]


@check(
    "stalled",
    severity="bad",
    presets=BOTH,
    looks_at="a running run's wall-clock time of its last logged step (`_timestamp`)",
    cause="the process is alive but stuck: a hung collective, a deadlocked data loader, or a "
    "very slow evaluation",
    advice="Dump the training processes' stacks (py-spy dump --pid …) to see where they wait; "
    "kill and resume if it is a hang.",
    params=[
        Param("after", DURATION, "30m", "How long without a new step counts as stalled."),
    ],
)
def stalled(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """A running run has logged no new step for longer than `after`. It uses the wall-clock time W&B records with every step, so a run that is still sending heartbeats but no longer stepping is caught too."""
    if ctx.run.state != "running" or "_timestamp" not in ctx.history:
        return []
    stamps = ctx.history.series("_timestamp")
    stamps = stamps[np.isfinite(stamps.to_numpy())]
    if not len(stamps):
        return []
    last_time = datetime.fromtimestamp(float(stamps.iloc[-1]), tz=timezone.utc)
    quiet = ctx.now - last_time
    if quiet <= p["after"]:
        return []
    step = float(stamps.index[-1])
    message = (
        f"the run is marked running but has logged no new step for {_ago(quiet)} "
        f"(last at step {step:g}, {last_time:%Y-%m-%d %H:%M} UTC)"
    )
    return [ctx.finding(p, message, step=step)]
