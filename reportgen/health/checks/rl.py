"""Reinforcement-learning pathologies: entropy, KL, clipping, response length, reward."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from reportgen.health import stats
from reportgen.health.checks.stability import _spike_finding, spike_params, window_param
from reportgen.health.context import CheckContext, num
from reportgen.health.registry import FRACTION, INTEGER, METRIC, NUMBER, Param, check
from reportgen.health.roles import Signal
from reportgen.report import Finding

RL = ("rl",)


def _prepared(ctx: CheckContext, p: dict[str, Any], min_points: int = 10) -> Signal | None:
    signal = ctx.signal(p["metric"])
    if signal is None:
        return None
    s = signal.finite
    return s if len(s) >= min_points else None


def _held_above(
    ctx: CheckContext, p: dict[str, Any], s: Signal, threshold: float, what: str, unit: str = ""
) -> list[Finding]:
    """A finding when the rolling median stays above `threshold` for a full window (or to the end)."""
    n = len(s)
    w = stats.window_size(n, p["window"])
    rolling = stats.rolling_median(s.values, w)
    with np.errstate(invalid="ignore"):
        above = rolling > threshold
    stretch = stats.first_stretch(above, w)
    if stretch is None:
        tail = stats.sustained_from(above)
        if tail is None:
            return []
        stretch = (tail, n)
    first = stats.first_at_or_after(s.values > threshold, max(0, stretch[0] - w + 1))
    peak = float(np.nanmax(rolling[stretch[0] : stretch[1]]))
    until = (
        "to the end of the run"
        if stretch[1] >= n
        else f"until {s.at(float(s.steps[stretch[1] - 1]))}"
    )
    message = (
        f"{s.key} stayed above {num(threshold)}{unit} from {s.at(float(s.steps[first]))} "
        f"{until} (rolling median up to {num(peak)}{unit}): {what}"
    )
    return [ctx.finding(p, message, signal=s, step=float(s.steps[first]), value=peak)]


def _held_below_from(rolling: np.ndarray, threshold: np.ndarray) -> int | None:
    """Index from which the rolling median stays below the threshold to the end."""
    with np.errstate(invalid="ignore"):
        below = rolling < threshold
    return stats.sustained_from(below)


@check(
    "entropy_collapse",
    severity="ugly",
    presets=RL,
    looks_at="entropy (a series logged as negative entropy, as some trainers do, is flipped)",
    cause="the policy became almost deterministic and stopped exploring: no or too small an "
    "entropy bonus, or a learning rate too high",
    advice="Add or raise the entropy bonus (entropy_coef 0.01–0.05) and/or lower the learning "
    "rate.",
    params=[
        Param("metric", METRIC, "entropy", "The alias or role to look at."),
        Param(
            "ratio",
            FRACTION,
            0.1,
            "Collapsed means below this share of the starting entropy (the median of the "
            "first three points).",
        ),
        Param("floor", NUMBER, 0.0, "…or below this absolute value, whichever is higher."),
        Param("min_points", INTEGER, 10, "The collapse must last at least this many points."),
        window_param(),
    ],
)
def entropy_collapse(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The policy's entropy fell below `ratio` × its starting value (or below `floor`) and stayed there until the end of the run."""
    s = _prepared(ctx, p)
    if s is None:
        return []
    values = s.values
    if np.median(values) < 0:
        values = -values
    n = len(values)
    w = stats.window_size(n, p["window"])
    start = stats.start_level(values)
    threshold = max(p["ratio"] * start, p["floor"])
    if threshold <= 0:
        return []
    rolling = stats.rolling_median(values, w)
    since = _held_below_from(rolling, np.full(n, threshold))
    if since is None or n - since < p["min_points"]:
        return []
    first = stats.first_at_or_after(values < threshold, max(0, since - w + 1))
    end = stats.tail_level(values, w)
    message = (
        f"{s.key} collapsed: it fell below {num(threshold)} ({p['ratio']:.0%} of its starting "
        f"{num(start)}) at {s.at(float(s.steps[first]))} and stayed there for the remaining "
        f"{n - first} logged steps, ending at {num(end)}"
    )
    advice = (
        f"Add or raise the entropy bonus{ctx.config_text('entropy_coef', 'entropy_coeff', 'ent_coef', 'entropy_bonus')}"
        f" to 0.01–0.05 and/or lower the learning rate{ctx.config_text('lr', 'learning_rate')}."
    )
    return [
        ctx.finding(p, message, signal=s, step=float(s.steps[first]), value=end, next_step=advice)
    ]


KL_TOO_BIG = (
    "policy updates are too large: the learning rate is too high or the KL penalty too weak"
)


def _kl_advice(ctx: CheckContext) -> str:
    coef = ctx.config_text("kl_coef", "kl_loss_coef", "beta", "init_kl_coef")
    lr = ctx.config_text("lr", "learning_rate")
    return f"Raise the KL coefficient{coef} or lower the learning rate{lr}."


@check(
    "kl_high",
    severity="bad",
    presets=RL,
    looks_at="kl",
    cause=KL_TOO_BIG,
    advice="Raise the KL coefficient or lower the learning rate.",
    params=[
        Param("metric", METRIC, "kl", "The alias or role to look at."),
        Param("threshold", NUMBER, 0.1, "The KL level that is too high."),
        window_param(),
    ],
)
def kl_high(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The KL divergence's rolling median stayed above `threshold` for at least a full window: the policy moves too far per update or drifts far from its reference."""
    s = _prepared(ctx, p)
    if s is None:
        return []
    found = _held_above(ctx, p, s, p["threshold"], "the policy is moving too far")
    return [_with_advice(f, _kl_advice(ctx)) for f in found]


def _with_advice(finding: Finding, advice: str) -> Finding:
    return replace(finding, next_step=advice)


@check(
    "kl_spike",
    severity="bad",
    presets=RL,
    looks_at="kl",
    cause=KL_TOO_BIG,
    advice="Raise the KL coefficient or lower the learning rate.",
    params=[
        *spike_params("kl", 6.0, 3.0),
        Param(
            "min_value",
            NUMBER,
            0.02,
            "Only values above this count, so spikes in a KL of about 0 are not reported.",
        ),
    ],
)
def kl_spike(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The KL jumped far above its recent level and came back (the loss_spike rule), counting only values above `min_value`."""
    signal = ctx.signal(p["metric"])
    if signal is None:
        return []
    found = _spike_finding(ctx, p, signal, min_value=p["min_value"])
    return [_with_advice(f, _kl_advice(ctx)) for f in found]


@check(
    "kl_low",
    severity="bad",
    presets=RL,
    looks_at="kl",
    cause="the policy has stopped changing: the learning rate is about 0, gradients vanish "
    "(for example after an entropy collapse), or the KL is measured against the wrong policy",
    advice="Check that the actor's weights change between steps; if entropy collapsed too, fix "
    "that first.",
    params=[
        Param("metric", METRIC, "kl", "The alias or role to look at."),
        Param("threshold", NUMBER, 1e-6, "|KL| below this counts as no change at all."),
        Param(
            "tail",
            FRACTION,
            0.5,
            "Fires when the median of |KL| from some step to the end is below the threshold "
            "and that stretch covers at least this closing share of the run.",
        ),
    ],
)
def kl_low(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The KL was essentially zero (the median of |KL| below `threshold`) from some step to the end, over at least the last `tail` share of the run: the policy no longer changes."""
    s = _prepared(ctx, p)
    if s is None:
        return []
    magnitude = np.abs(s.values)
    since = stats.majority_from(magnitude < p["threshold"])
    if since is None:
        return []
    first = stats.first_at_or_after(magnitude < p["threshold"], since)
    if s.steps[-1] - s.steps[first] < p["tail"] * (s.steps[-1] - s.steps[0]):
        return []
    level = float(np.median(magnitude[first:]))
    message = (
        f"{s.key} stayed below {num(p['threshold'])} in size from {s.at(float(s.steps[first]))} "
        f"to the end (median |{s.name}| {num(level)}): the policy has stopped changing"
    )
    return [ctx.finding(p, message, signal=s, step=float(s.steps[first]), value=level)]


@check(
    "clipfrac_high",
    severity="bad",
    presets=RL,
    looks_at="clipfrac (the share of tokens or samples whose probability ratio was clipped)",
    cause="each update tries to move the policy further than the clip range allows: learning "
    "rate too high, too many PPO epochs per batch, or too small a clip range",
    advice="Lower the learning rate or the number of PPO epochs per batch.",
    params=[
        Param("metric", METRIC, "clipfrac", "The alias or role to look at."),
        Param("threshold", FRACTION, 0.3, "The clipped share that is too high."),
        window_param(),
    ],
)
def clipfrac_high(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The PPO clip fraction's rolling median stayed above `threshold` for at least a full window: most of each update is being clipped away."""
    s = _prepared(ctx, p)
    if s is None:
        return []
    advice = (
        f"Lower the learning rate{ctx.config_text('lr', 'learning_rate')} or the number of PPO "
        f"epochs per batch{ctx.config_text('ppo_epochs', 'num_ppo_epochs', 'update_epochs')}."
    )
    found = _held_above(ctx, p, s, p["threshold"], "most updates are being clipped")
    return [_with_advice(f, advice) for f in found]


@check(
    "length_collapse",
    severity="ugly",
    presets=RL,
    looks_at="length (mean response length)",
    cause="the policy learned to stop early: the reward favours short answers, or a format or "
    "EOS shortcut pays off",
    advice="Read a few recent samples; check the reward for a length bias and add a minimum "
    "length or format reward.",
    params=[
        Param("metric", METRIC, "length", "The alias or role to look at."),
        Param(
            "ratio",
            FRACTION,
            0.5,
            "Collapsed means the rolling median fell below this share of its highest value.",
        ),
        Param("min_points", INTEGER, 10, "The collapse must last at least this many points."),
        window_param(),
    ],
)
def length_collapse(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The response length fell below `ratio` × its highest rolling median and stayed there until the end of the run."""
    s = _prepared(ctx, p)
    if s is None:
        return []
    n = len(s)
    w = stats.window_size(n, p["window"])
    rolling = stats.rolling_median(s.values, w)
    peak = np.fmax.accumulate(np.nan_to_num(rolling, nan=-np.inf))
    since = _held_below_from(rolling, p["ratio"] * peak)
    if since is None or n - since < p["min_points"]:
        return []
    top = int(np.argmax(rolling[: since + 1] == peak[since]))
    threshold = p["ratio"] * float(peak[since])
    first = stats.first_at_or_after(s.values < threshold, max(top + 1, since - w + 1))
    end = stats.tail_level(s.values, w)
    message = (
        f"{s.key} collapsed from {num(peak[since])} ({s.at(float(s.steps[top]))}) to "
        f"{num(end)} at the end: below {p['ratio']:.0%} of its peak from "
        f"{s.at(float(s.steps[first]))} on"
    )
    return [ctx.finding(p, message, signal=s, step=float(s.steps[first]), value=end)]


@check(
    "length_explosion",
    severity="bad",
    presets=RL,
    looks_at="length (mean response length)",
    cause="the reward pays for longer answers (a length bias) or the policy fell into repetition",
    advice="Add an overlong penalty or a length-normalised reward; read samples for repetition.",
    params=[
        Param("metric", METRIC, "length", "The alias or role to look at."),
        Param(
            "factor",
            NUMBER,
            3.0,
            "Exploded means the rolling median rose above this multiple of the starting "
            "length (median of the first window).",
        ),
        Param("min_points", INTEGER, 10, "It must stay there for at least this many points."),
        window_param(),
    ],
)
def length_explosion(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The response length grew above `factor` × its starting value and stayed there until the end of the run."""
    s = _prepared(ctx, p)
    if s is None:
        return []
    n = len(s)
    w = stats.window_size(n, p["window"])
    start = stats.head_level(s.values, w)
    if start <= 0:
        return []
    threshold = p["factor"] * start
    rolling = stats.rolling_median(s.values, w)
    with np.errstate(invalid="ignore"):
        since = stats.sustained_from(rolling > threshold)
    if since is None or n - since < p["min_points"]:
        return []
    first = stats.first_at_or_after(s.values > threshold, max(0, since - w + 1))
    end = stats.tail_level(s.values, w)
    message = (
        f"{s.key} grew from {num(start)} to {num(end)} ({end / start:.1f}×): above "
        f"{num(p['factor'])}× its start from {s.at(float(s.steps[first]))} to the end"
    )
    return [ctx.finding(p, message, signal=s, step=float(s.steps[first]), value=end)]


@check(
    "length_clipping",
    severity="bad",
    presets=RL,
    looks_at="clip_ratio (share of responses cut off at the maximum length)",
    cause="responses run into the maximum response length and are cut off, so their reward is "
    "computed on truncated answers",
    advice="Raise the maximum response length or add an overlong penalty.",
    params=[
        Param("metric", METRIC, "clip_ratio", "The alias or role to look at."),
        Param("threshold", FRACTION, 0.1, "The clipped share that is too high."),
        window_param(),
    ],
)
def length_clipping(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The share of responses that hit the maximum length had a rolling median above `threshold` for at least a full window."""
    s = _prepared(ctx, p)
    if s is None:
        return []
    limit = ctx.config_text("max_response_length", "max_new_tokens", "max_completion_length")
    advice = f"Raise the maximum response length{limit} or add an overlong penalty."
    found = _held_above(ctx, p, s, p["threshold"], "responses are being cut off")
    return [_with_advice(f, advice) for f in found]


def _gain(values: np.ndarray, w: int) -> tuple[float, float, float, float]:
    """(start level, best rolling median, end level, noise standard error) of a curve."""
    rolling = stats.rolling_median(values, w)
    se = stats.standard_error(stats.noise_sigma(values, w), w)
    return (
        stats.head_level(values, w),
        float(np.nanmax(rolling)),
        stats.tail_level(values, w),
        se,
    )


def _better(signal: Signal, values: np.ndarray) -> np.ndarray:
    return values if signal.goal == "maximize" else -values


@check(
    "reward_flat",
    severity="bad",
    presets=RL,
    looks_at="reward",
    cause="the policy is not learning from the reward: the task is too hard (reward too "
    "sparse), the learning rate too low, or the reward does not reach the loss",
    advice="Check reward values on a few samples; try an easier curriculum or a higher "
    "learning rate.",
    params=[
        Param("metric", METRIC, "reward", "The alias or role to look at."),
        Param(
            "z",
            NUMBER,
            4.0,
            "The reward must rise above its start by more than this many standard errors of "
            "the rolling median to count as learning.",
        ),
        Param("min_points", INTEGER, 20, "Runs with fewer logged points are not judged."),
        window_param(),
    ],
)
def reward_flat(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The reward never rose meaningfully above where it started: its best rolling median stayed within `z` standard errors of the starting level (a falling reward counts too)."""
    s = _prepared(ctx, p, p["min_points"])
    if s is None:
        return []
    w = stats.window_size(len(s), p["window"])
    values = _better(s, s.values)
    start, best, end, se = _gain(values, w)
    if best - start > p["z"] * se:
        return []
    sign = 1 if s.goal == "maximize" else -1
    message = (
        f"{s.key} never improved beyond noise: it started at {num(sign * start)}, its best "
        f"rolling median was {num(sign * best)} and it ended at {num(sign * end)} (noise "
        f"±{num(se)})"
    )
    lr = ctx.config_text("lr", "learning_rate")
    advice = (
        "Check reward values on a few samples; try an easier curriculum or a higher learning "
        f"rate{lr}."
    )
    return [
        ctx.finding(
            p, message, signal=s, step=float(s.steps[0]), value=float(sign * end), next_step=advice
        )
    ]


@check(
    "reward_hacking",
    severity="ugly",
    presets=RL,
    looks_at="reward against a task metric the spec names (`task_metric`); skipped without one",
    cause="the reward can be earned without solving the task: the policy exploits the reward "
    "function or reward model",
    advice="Read high-reward samples; harden the reward (a verifier, format checks) or put the "
    "task metric into the reward.",
    params=[
        Param("metric", METRIC, "reward", "The alias or role to look at."),
        Param(
            "task_metric",
            METRIC,
            None,
            "The alias of a metric that measures the real task (accuracy, pass rate); the check "
            "is skipped without it.",
            optional=True,
        ),
        Param(
            "z",
            NUMBER,
            4.0,
            "Rising or improving means by more than this many standard errors (as reward_flat).",
        ),
        window_param(),
    ],
)
def reward_hacking(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The reward rose clearly while the task metric named by `task_metric` stayed flat or got worse."""
    if p["task_metric"] is None:
        return []
    reward, task = _prepared(ctx, p, 10), ctx.signal(p["task_metric"])
    if reward is None or task is None or len(task.finite) < 5:
        return []
    task = task.finite
    rv = _better(reward, reward.values)
    w = stats.window_size(len(rv), p["window"])
    r_start, _, r_end, r_se = _gain(rv, w)
    if r_end - r_start <= p["z"] * np.sqrt(2) * r_se:
        return []
    tv = task.values if task.goal == "maximize" else -task.values
    tw = stats.window_size(len(tv), p["window"])
    t_start, _, t_end, t_se = _gain(tv, tw)
    if t_end - t_start > p["z"] * np.sqrt(2) * t_se:
        return []
    rolling = stats.rolling_median(rv, w)
    with np.errstate(invalid="ignore"):
        rising = np.flatnonzero(rolling - r_start > (r_end - r_start) / 2)
    index = int(rising[0]) if len(rising) else 0
    rs = 1 if reward.goal == "maximize" else -1
    ts = 1 if task.goal == "maximize" else -1
    trend = "got worse" if t_end < t_start - p["z"] * t_se else "did not improve"
    message = (
        f"{reward.key} rose from {num(rs * r_start)} to {num(rs * r_end)} while {task.key} "
        f"{trend} ({num(ts * t_start)} → {num(ts * t_end)}): the policy may be exploiting the "
        "reward"
    )
    return [
        ctx.finding(
            p,
            message,
            signal=reward,
            step=float(reward.steps[index]),
            value=float(rs * r_end),
        )
    ]
