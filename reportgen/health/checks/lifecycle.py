"""Did the run live and die properly? crashed, stopped, ended_early, killed, stalled."""

from __future__ import annotations

import functools
import math
import re
from datetime import datetime, timedelta, timezone
from typing import Any

import numpy as np

from reportgen.health.context import CheckContext, num
from reportgen.health.registry import check
from reportgen.report import Finding

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
# Prefixes distributed launchers put before every line of a worker: `[rank0]:`, `(pid=123)`,
# `(TaskRunner pid=42)`, `[default0]:`. Consoles often run several such lines together.
_PREFIX = re.compile(r"\[(?:rank|default)\d+\]:|\((?:\w+ )?pid=\d+(?:, ip=[\d.]+)?\)")
# An exception name followed by `:` or the end of the text, anywhere in a line (so
# `... [rank0]: KeyboardInterrupt` and `torch.OutOfMemoryError: CUDA out of memory` are found).
_EXCEPTION = re.compile(
    r"(?<![\w.])((?:[A-Za-z_][\w]*\.)*[A-Za-z_]\w*(?:Error|Exception|Interrupt|Exit|Failure))"
    r"(?=:|\s*$)|(?<!\w)(Killed|Segmentation fault)(?!\w)"
)
# A user pressing Ctrl-C, in the words trainers print: KeyboardInterrupt, "Ctrl + C detected",
# "Received SIGINT". (SIGTERM is a scheduler's stop and stays a crash or a kill.)
_USER_STOP = re.compile(
    r"KeyboardInterrupt|Ctrl\s*\+?-?\s*C\b.*(?:detected|pressed|received)|\bSIGINT\b"
    r"|interrupted by (?:the )?user",
    re.I,
)
# Words each alternative of _USER_STOP contains (lowercase): a line without any cannot match.
# Under re.I four non-ASCII letters also match ASCII ones (İ ı → i, ſ → s, Kelvin K → k; found
# by trying every code point): they are folded first, so the test never misses a match.
_USER_STOP_WORDS = ("keyboardinterrupt", "ctrl", "sigint", "interrupted by")
_FOLD_TO_ASCII = str.maketrans({"\u0130": "i", "\u0131": "i", "\u017f": "s", "\u212a": "k"})
_FOLDABLE = re.compile("[\u0130\u0131\u017f\u212a]")
# W&B writes exit code 255 when the training script ended with a KeyboardInterrupt.
_INTERRUPT_CODES = (255, 130)

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
        re.compile(r"SIGTERM|SIGKILL|Killed"),
        "the process was stopped by a signal from outside (scheduler pre-emption, a time "
        "limit, the kernel's OOM killer)",
        "Check the scheduler for pre-emption or a time limit and resume from the last checkpoint.",
    ),
)


# Text that each pattern needs (an escape; `[rank`, `[default` or `pid=`): most console text
# has none, and a test for them is far cheaper than a regex scan of every character.
_ANSI_NEEDS = "\x1b"
_PREFIX_NEEDS = ("[rank", "[default", "pid=")
# What every match of _EXCEPTION contains (it is case-sensitive): a line without any of these
# cannot name an exception.
_EXCEPTION_NEEDS = ("Error", "Exception", "Interrupt", "Exit", "Failure", "Killed", "Segmentation fault")  # fmt: skip


def _clean(raw: str) -> str:
    text = _ANSI.sub("", raw) if _ANSI_NEEDS in raw else raw
    if any(needed in text for needed in _PREFIX_NEEDS):
        text = _PREFIX.sub(" ", text)
    return text.strip()


def last_exception_line(console: tuple[str, ...]) -> str | None:
    """The exception the console names last (or 'Killed'), from its name to the end of its line.

    Within a line the first name wins: `RuntimeError: ValueError: …` was a RuntimeError.

    Searches inside lines, not only at their start: launchers prefix every worker line
    (`[rank0]:`) and consoles captured from several processes run lines together.
    Warnings are not exceptions and are skipped.
    """
    for raw in reversed(console):
        line = _clean(raw)
        if not any(needed in line for needed in _EXCEPTION_NEEDS):
            continue
        found = _EXCEPTION.search(line)
        if found is None or line.startswith("Traceback"):
            continue
        text = line[found.start() :].strip()
        return text if len(text) <= 300 else text[:297] + "…"
    return None


@functools.lru_cache(maxsize=64)
def user_stop_line(console: tuple[str, ...]) -> str | None:
    """The console line showing that a user pressed Ctrl-C, or None (remembered for the
    last few consoles: several checks of one run ask)."""
    # Most consoles name none of the words: the whole text, cleaned at once (neither pattern
    # spans a line break), says so without a pass over its lines.
    folded = _fold(_clean("\n".join(console)))
    if not any(word in folded for word in _USER_STOP_WORDS):
        return None
    for raw in reversed(console):
        line = _clean(raw)
        folded = _fold(line)
        if not any(word in folded for word in _USER_STOP_WORDS):
            continue  # the pattern cannot match: skip its slow scan
        if _USER_STOP.search(line):
            return line if len(line) <= 200 else line[:197] + "…"
    return None


def _fold(text: str) -> str:
    """Lowercase, with the four letters re.I matches to ASCII ones folded to them; translate
    goes letter by letter through a dict, so it runs only where one of them is."""
    if not text.isascii() and _FOLDABLE.search(text):
        text = text.translate(_FOLD_TO_ASCII)
    return text.lower()


def _last_step(ctx: CheckContext) -> str:
    steps = ctx.steps()
    return f"after step {int(steps[-1])}" if len(steps) else "before logging any step"


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
    looks_at="the run's exit code and the end of its console output",
    cause="the training process raised an exception or exited with an error",
    advice="Fix the error quoted in the finding, then resume from the last checkpoint.",
)
def crashed(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The run exited with a non-zero exit code (or the server marks it failed) and was not stopped by its user (that is `stopped`). The message quotes the last exception the console output names (for example `torch.OutOfMemoryError: CUDA out of memory`, found even inside `[rank0]:`-prefixed, run-together lines) and names the last logged step."""
    run = ctx.run
    code = run.exit_code
    if code in (None, 0) and run.state != "failed":
        return []
    if _stopped_by_user(ctx) is not None:
        return []
    line = last_exception_line(run.console_tail)
    code_text = f"exit code {code}" if code is not None else "an error"
    message = f"the run failed with {code_text} {_last_step(ctx)}{plan_note(ctx)}"
    message += f": {line}" if line else " (no exception line in its console output)"
    cause = f"the process raised an uncaught {line.split(':')[0]}" if line else None
    advice = None
    for pattern, known_cause, known_advice in _CRASH_CAUSES:
        if line and pattern.search(line):
            cause = known_cause
            batch = ctx.config_text("ppo_micro_batch_size", "micro_batch_size", "batch_size")
            advice = known_advice.format(batch=batch)
            break
    steps = ctx.steps()
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


def _stopped_by_user(ctx: CheckContext) -> str | None:
    """How the run shows that its user stopped it (a Ctrl-C line, or W&B's exit code 255)."""
    line = user_stop_line(ctx.run.console_tail)
    if line is not None:
        return f"its console shows `{line}`"
    if ctx.run.exit_code in _INTERRUPT_CODES:
        return f"it exited with code {ctx.run.exit_code}, the code of a KeyboardInterrupt"
    return None


@check(
    "stopped",
    looks_at="the end of the run's console output (KeyboardInterrupt, `Ctrl + C detected`) and "
    "its exit code (W&B records 255 for a KeyboardInterrupt)",
    cause="someone stopped the run by hand (Ctrl-C) before it finished",
    advice="If the stop was deliberate, judge the run only up to where it stopped; otherwise "
    "resume it from the last checkpoint.",
)
def stopped(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The run was stopped by its user: its console shows a KeyboardInterrupt or a trainer's "Ctrl + C detected" line, or it exited with code 255 (what W&B records for a KeyboardInterrupt). This is told apart from `crashed`, and fires even when the script caught the Ctrl-C and exited 0."""
    how = _stopped_by_user(ctx)
    if how is None or ctx.run.state == "running":
        return []
    message = f"the run was stopped by its user {_last_step(ctx)}{plan_note(ctx)}: {how}"
    steps = ctx.steps()
    return [ctx.finding(p, message, step=float(steps[-1]) if len(steps) else None)]


# Config keys that fix a run's planned length in optimiser steps, most specific first.
_PLAN_KEYS = (
    "total_training_steps",
    "max_steps",
    "num_training_steps",
    "total_steps",
    "train_iters",
    "max_iters",
    "total_iters",
)
_EPOCH_KEYS = ("total_epochs", "num_train_epochs", "epochs", "num_epochs", "max_epochs")
_STEPS_PER_EPOCH_KEYS = ("steps_per_epoch", "num_update_steps_per_epoch", "iters_per_epoch")
# Logged or summary keys that count optimiser steps (the trainer's own counter).
_STEP_KEYS = (
    "train/global_step",
    "global_step",
    "trainer/global_step",
    "train/step",
    "step",
    "iteration",
    "iter",
    "training/global_step",
)
_EPOCH_PROGRESS_KEYS = ("train/epoch", "epoch")
_EPISODE_KEYS = ("total_episodes",)
_EPISODE_PROGRESS_KEYS = ("train/episode", "episode")


def _positive_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    number = float(value)
    return number if math.isfinite(number) and number > 0 else None


def _counter(ctx: CheckContext, keys: tuple[str, ...]) -> float | None:
    """The largest value a run logged (or left in its summary) under one of `keys`."""
    found: list[float] = []
    for key in keys:
        if key in ctx.history:
            values = ctx.history.points(key).values
            values = values[np.isfinite(values)]
            if len(values):
                found.append(float(values.max()))
        value = _positive_number(ctx.run.summary.get(key))
        if value is not None:
            found.append(value)
    return max(found) if found else None


def _live_counter(ctx: CheckContext, keys: tuple[str, ...]) -> float | None:
    """The last value of a progress counter the run kept logging to its end (an `epoch` logged
    once at step 0 says nothing about how far the run got)."""
    steps = ctx.steps()
    for key in keys:
        if key not in ctx.history or not len(steps):
            continue
        points = ctx.history.points(key)
        finite = np.isfinite(points.values)
        values, xs = points.values[finite], points.xs[finite]
        if len(values) >= 2 and float(xs[-1]) >= 0.9 * float(steps[-1]):
            return float(values.max())
    return None


def planned_steps(ctx: CheckContext) -> tuple[str, float] | None:
    """(what says so, planned length in steps) from the config, or None when it does not say.

    max_steps, total_training_steps and their synonyms first (a non-positive value means "not
    set", as in the HF Trainer's max_steps=-1); else epochs × steps per epoch.
    """
    for key in _PLAN_KEYS:
        found = ctx.config(key)
        if found is not None and (value := _positive_number(found[1])) is not None:
            return f"{found[0]} is {value:g}", value
    epochs, per_epoch = ctx.config(*_EPOCH_KEYS), ctx.config(*_STEPS_PER_EPOCH_KEYS)
    if epochs and per_epoch:
        e, s = _positive_number(epochs[1]), _positive_number(per_epoch[1])
        if e is not None and s is not None:
            return f"{epochs[0]} {e:g} × {per_epoch[0]} {s:g}", e * s
    return None


def reached_steps(ctx: CheckContext) -> float | None:
    """How far the run got in optimiser steps: the largest of its last `_step` and the last
    value of a step counter it logged (train/global_step, …) or left in its summary."""
    steps = ctx.steps()
    counted = _counter(ctx, _STEP_KEYS)
    last = float(steps[-1]) if len(steps) else None
    known = [v for v in (last, counted) if v is not None]
    return max(known) if known else None


def _other_shortfall(ctx: CheckContext) -> tuple[float, float, str, str] | None:
    """(reached, planned, config key, unit) in episodes (TRL's PPO: total_episodes against the
    logged episode counter) or epochs (num_train_epochs against the logged epoch), when the
    run logs that counter."""
    for plan_keys, progress_keys, unit in (
        (_EPISODE_KEYS, _EPISODE_PROGRESS_KEYS, "episode"),
        (_EPOCH_KEYS, _EPOCH_PROGRESS_KEYS, "epoch"),
    ):
        planned = ctx.config(*plan_keys)
        if planned is None or (total := _positive_number(planned[1])) is None:
            continue
        reached = _live_counter(ctx, progress_keys)
        if reached is not None:
            return reached, total, planned[0], unit
    return None


def plan_note(ctx: CheckContext) -> str:
    """` (step 51 of 900 planned, max_steps is 900)` when the run fell short of its plan."""
    plan, progress = planned_steps(ctx), reached_steps(ctx)
    if plan is None or progress is None or progress >= plan[1]:
        return ""
    return f" ({progress:g} of {plan[1]:g} planned steps, {plan[0]})"


@check(
    "ended_early",
    looks_at="the run's last step (and the trainer's step or epoch counter) against the length "
    "its config plans: max_steps, total_training_steps, train_iters, epochs × steps per epoch; "
    "else its learning-rate schedule",
    cause="the run ended well before the length it was configured for, without an error: a "
    "time limit, a manual stop, or an early exit in the training script",
    advice="Resume from the last checkpoint to reach the planned length, or judge the run as a "
    "partial one.",
)
def ended_early(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """A run that finished with exit code 0 (crashed, killed and stopped runs say so in their own findings, with the planned length) reached less than `fraction` of the length its config plans: the largest of its last `_step` and of a logged step counter (train/global_step, …) against max_steps / total_training_steps / train_iters (or epochs × steps per epoch), or its logged episode counter against total_episodes (TRL's PPO), or its last logged epoch against num_train_epochs. When the config names no length, a learning rate that was decaying steadily from its peak and ended above half of it shows a schedule cut short."""
    run = ctx.run
    if run.state != "finished" or run.exit_code not in (None, 0) or not len(ctx.steps()):
        return []  # crashed, killed, stopped and running runs say so in their own findings
    if _stopped_by_user(ctx):
        return []
    steps = ctx.steps()
    plan, progress = planned_steps(ctx), reached_steps(ctx)
    if plan is not None and progress is not None and progress + 1 < p["fraction"] * plan[1]:
        message = (
            f"the run ended at step {progress:g} of {plan[1]:g} planned ({plan[0]}): "
            f"{progress / plan[1]:.0%} of its planned length"
        )
        return [ctx.finding(p, message, step=float(steps[-1]), value=progress)]
    other = _other_shortfall(ctx)
    if plan is None and other is not None and other[0] < p["fraction"] * other[1]:
        reached, total, key, unit = other
        message = (
            f"the run ended at {unit} {reached:.4g} of {total:g} planned ({key}): "
            f"{reached / total:.0%} of its planned length"
        )
        return [ctx.finding(p, message, step=float(steps[-1]), value=reached)]
    if plan is None and other is None:
        return _unfinished_schedule(ctx, p)
    return []


LR_KEYS = (
    "train/learning_rate",
    "learning_rate",
    "train/lr",
    "lr",
    "actor/lr",
    "optim/lr",
    "trainer/learning_rate",
)
# A decaying learning rate that ended above this share of its peak had not run its schedule.
SCHEDULE_LEFT = 0.5


def _unfinished_schedule(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """Without a planned length in the config, a learning rate that was decaying steadily from
    its peak (at least 10 logged points, never rising again) and ended above half of that peak
    shows a schedule cut short: decay schedules (cosine, linear) are built to end near 0."""
    for key in LR_KEYS:
        if key not in ctx.history:
            continue
        points = ctx.history.points(key)
        keep = np.isfinite(points.values)
        values, at = points.values[keep], points.xs[keep]
        if len(values) < 10 or values.max() <= 0:
            return []
        top = int(np.argmax(values))
        peak, after, last = float(values[top]), values[top:], float(values[-1])
        decaying = len(after) >= 10 and bool(np.all(np.diff(after) <= 1e-9 * peak))
        if not decaying or not (SCHEDULE_LEFT * peak < last < 0.95 * peak):
            return []
        message = (
            f"the run ended while its learning rate was still decaying: {key} was {num(last)} "
            f"at the end, {last / peak:.0%} of its peak {num(peak)} (step {at[top]:g}); a "
            "decay schedule ends near 0, so the run stopped well before its planned length"
        )
        return [ctx.finding(p, message, step=float(at[-1]), value=last)]
    return []


@check(
    "killed",
    looks_at="the run's state and the time of its last sign of life (server heartbeat, or the newest timestamp inside its files)",
    cause="the process was killed from outside: pre-emption, the kernel's OOM killer, a node "
    "failure or a job time limit",
    advice="Check the scheduler and kernel logs (dmesg for the OOM killer) around the last "
    "heartbeat, then resume from the last checkpoint.",
)
def killed(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The run stopped without an exit record: its log no longer grows (the offline reader says killed, a W&B server says crashed), or it still claims to be running but has shown no sign of life for longer than `after`."""
    run = ctx.run
    beat = run.heartbeat_at
    silent = ctx.now - beat if beat else None
    timed_out = run.state == "running" and silent is not None and silent > p["after"]
    if run.state not in ("killed", "crashed") and not timed_out:
        return []
    if _stopped_by_user(ctx) is not None:
        return []  # a Ctrl-C that left no exit record: `stopped` says so
    # The moment itself, not its distance from the build: the same files give the same words.
    when = f"; its last sign of life was at {beat:%Y-%m-%d %H:%M:%S} UTC" if beat else ""
    message = f"the run stopped without an exit record {_last_step(ctx)}{plan_note(ctx)}{when}"
    steps = ctx.steps()
    return [ctx.finding(p, message, step=float(steps[-1]) if len(steps) else None)]


@check(
    "stalled",
    looks_at="a running run's wall-clock time of its last logged step (`_timestamp`)",
    cause="the process is alive but stuck: a hung collective, a deadlocked data loader, or a "
    "very slow evaluation",
    advice="Dump the training processes' stacks (py-spy dump --pid …) to see where they wait; "
    "kill and resume if it is a hang.",
)
def stalled(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """A running run has logged no new step for longer than `after`. It uses the wall-clock time W&B records with every step, so a run that is still sending heartbeats but no longer stepping is caught too."""
    if ctx.run.state != "running" or "_timestamp" not in ctx.history:
        return []
    stamps = ctx.history.points("_timestamp")
    finite = np.flatnonzero(np.isfinite(stamps.values))
    if not len(finite):
        return []
    last_time = datetime.fromtimestamp(float(stamps.values[finite[-1]]), tz=timezone.utc)
    quiet = ctx.now - last_time
    if quiet <= p["after"]:
        return []
    step = float(stamps.xs[finite[-1]])
    message = (
        f"the run is marked running but has logged no new step for {_ago(quiet)} "
        f"(last at step {step:g}, {last_time:%Y-%m-%d %H:%M} UTC)"
    )
    return [ctx.finding(p, message, step=step)]
