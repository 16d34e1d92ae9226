"""Reinforcement-learning pathologies: entropy, KL, clipping, response length, reward."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from reportgen.health import stats
from reportgen.health.checks.stability import _spike_finding
from reportgen.health.context import CheckContext, num
from reportgen.health.registry import check
from reportgen.health.roles import Signal, reward_components
from reportgen.report import Finding


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
    tail = stats.sustained_from(above)
    if stretch is None:
        if tail is None:
            return []
        stretch = (tail, n)
    elif tail is not None:
        stretch = (stretch[0], n)  # above again at the end: report up to the end
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
    looks_at="entropy (a series logged as negative entropy, as some trainers do, is flipped)",
    cause="the policy became almost deterministic and stopped exploring: no or too small an "
    "entropy bonus, or a learning rate too high",
    advice="Add or raise the entropy bonus (entropy_coef 0.01–0.05) and/or lower the learning "
    "rate.",
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
    keys = ("entropy_coef", "entropy_coeff", "ent_coef", "entropy_bonus")
    coef = ctx.config(*keys)
    lr = ctx.config_text("lr", "learning_rate")
    if coef is not None and isinstance(coef[1], (int, float)) and coef[1] >= 0.05:
        advice = (
            f"The entropy bonus is already high{ctx.config_text(*keys)}: lower the learning "
            f"rate{lr} and check the advantages' scale."
        )
    else:
        advice = (
            f"Add or raise the entropy bonus{ctx.config_text(*keys)} to 0.01–0.05 and/or lower "
            f"the learning rate{lr}."
        )
    return [
        ctx.finding(p, message, signal=s, step=float(s.steps[first]), value=end, next_step=advice)
    ]


KL_TOO_BIG = (
    "policy updates are too large: the learning rate is too high, or too many updates are "
    "taken per batch"
)


KL_COEF_KEYS = ("kl_coef", "kl_loss_coef", "beta", "init_kl_coef", "kl_ctl")


EPOCH_KEYS = ("ppo_epochs", "num_ppo_epochs", "update_epochs", "num_iterations")


def _fewer_updates(ctx: CheckContext, what: str) -> str:
    """` or the number of {what} (ppo_epochs is 4)`, left out when the config says there is
    only one (advice must not ask for fewer than one)."""
    found = ctx.config(*EPOCH_KEYS)
    if found is not None and isinstance(found[1], (int, float)) and found[1] <= 1:
        return ""
    return f" or the number of {what}{ctx.config_text(*EPOCH_KEYS)}"


def _kl_advice(ctx: CheckContext) -> str:
    """Per-update KL too large: fewer or smaller updates first (a KL-to-reference penalty
    does not bound the step of one update)."""
    lr = ctx.config_text("lr", "learning_rate")
    fewer = _fewer_updates(ctx, "updates per batch")
    return f"Lower the learning rate{lr}{fewer}, or tighten the clip range."


@check(
    "kl_high",
    looks_at="kl",
    cause=KL_TOO_BIG,
    advice="Lower the learning rate or the number of updates per batch, or tighten the clip range.",
)
def kl_high(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The per-update KL (the policy before and after one update: `actor/ppo_kl`, `losses/approx_kl`) had a rolling median above `threshold` for at least a full window: each update moves the policy too far. KL to the reference model is a different quantity with a different healthy range: `ref_kl_high` judges it."""
    s = _prepared(ctx, p)
    if s is None:
        return []
    found = _held_above(ctx, p, s, p["threshold"], "the policy is moving too far")
    return [_with_advice(f, _kl_advice(ctx)) for f in found]


def _with_advice(finding: Finding, advice: str) -> Finding:
    return replace(finding, next_step=advice)


@check(
    "kl_spike",
    looks_at="kl",
    cause=KL_TOO_BIG,
    advice="Lower the learning rate or the number of updates per batch, or tighten the clip range.",
)
def kl_spike(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The per-update KL jumped far above its recent level and came back, or blew up (the loss_spike rule), counting only values above `min_value`."""
    signal = ctx.signal(p["metric"])
    if signal is None:
        return []
    found = _spike_finding(ctx, p, signal, min_value=p["min_value"])
    return [_with_advice(f, _kl_advice(ctx)) for f in found]


@check(
    "kl_low",
    looks_at="kl",
    cause="the policy has stopped changing: the learning rate is about 0, gradients vanish "
    "(for example after an entropy collapse), or the KL is measured against the wrong policy",
    advice="Check that the actor's weights change between steps; if entropy collapsed too, fix "
    "that first.",
)
def kl_low(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The per-update KL was essentially zero (the median of |KL| below `threshold`) from some step to the end, over at least the last `tail` share of the run: the policy no longer changes."""
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
    "ref_kl_high",
    looks_at="ref_kl (KL between the policy and its reference model: `train/kl`, `actor/kl_loss`)",
    cause="the policy drifted far from its reference model: the KL penalty is too weak for "
    "this learning rate, or the reward pulls hard away from the reference",
    advice="Raise the KL coefficient or lower the learning rate.",
)
def ref_kl_high(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The KL to the reference model had a rolling median above `threshold` for at least a full window. When it is that high from the first points on, the policy and the reference differ from the start (a different checkpoint, chat template or precision), which no learning rate explains, and the finding says so."""
    s = _prepared(ctx, p)
    if s is None:
        return []
    found = _held_above(ctx, p, s, p["threshold"], "the policy is far from its reference")
    if not found:
        return []
    finding = found[0]
    start = stats.start_level(s.values)
    if start > p["threshold"] and finding.step == float(s.steps[0]):
        return [
            replace(
                finding,
                message=finding.message + f"; it was already {num(start)} at the first steps",
                likely_cause="the policy and the reference model differ from the start: a "
                "different checkpoint, tokenizer or chat template, or a precision mismatch "
                "between the two",
                next_step="Check that the reference model is the policy's starting checkpoint "
                "with the same tokenizer, template and precision; the KL at step 0 should be "
                "about 0.",
            )
        ]
    coef_on = ctx.setting_on(*KL_COEF_KEYS)
    coef = ctx.config_text(*KL_COEF_KEYS)
    lr = ctx.config_text("lr", "learning_rate")
    if coef_on is False:
        advice = f"Turn on the KL penalty{coef} or lower the learning rate{lr}."
    else:
        advice = f"Raise the KL coefficient{coef} or lower the learning rate{lr}."
    return [_with_advice(finding, advice)]


@check(
    "clipfrac_high",
    looks_at="clipfrac (the share of tokens or samples whose probability ratio was clipped)",
    cause="each update tries to move the policy further than the clip range allows: learning "
    "rate too high, too many PPO epochs per batch, or too small a clip range",
    advice="Lower the learning rate or the number of PPO epochs per batch.",
)
def clipfrac_high(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The PPO clip fraction's rolling median stayed above `threshold` for at least a full window: most of each update is being clipped away."""
    s = _prepared(ctx, p)
    if s is None:
        return []
    lr = ctx.config_text("lr", "learning_rate")
    advice = f"Lower the learning rate{lr}{_fewer_updates(ctx, 'PPO epochs per batch')}."
    found = _held_above(ctx, p, s, p["threshold"], "most updates are being clipped")
    return [_with_advice(f, advice) for f in found]


@check(
    "length_collapse",
    looks_at="length (mean response length)",
    cause="the policy learned to stop early: the reward favours short answers, or a format or "
    "EOS shortcut pays off",
    advice="Read a few recent samples; check the reward for a length bias and add a minimum "
    "length or format reward.",
)
def length_collapse(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The response length fell below `ratio` × its highest level and stayed there until the end of the run. The level is the rolling median, and before the first window is full the median of the first three points, so a collapse within the first window counts too."""
    s = _prepared(ctx, p)
    if s is None:
        return []
    n = len(s)
    w = stats.window_size(n, p["window"])
    rolling = stats.rolling_median(s.values, w)
    # Until the first window is full, the level is the median of the first three points, so
    # a collapse inside the first window (31 → 9 tokens in 10 steps) is seen.
    level = np.where(np.isnan(rolling), -np.inf, rolling)
    level[: min(3, n)] = stats.start_level(s.values)
    peak = np.fmax.accumulate(level)
    since = _held_below_from(rolling, p["ratio"] * peak)
    if since is None or n - since < p["min_points"]:
        return []
    top = int(np.argmax(level[: since + 1] == peak[since]))
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
    looks_at="length (mean response length)",
    cause="the reward pays for longer answers (a length bias) or the policy fell into repetition",
    advice="Add an overlong penalty or a length-normalised reward; read samples for repetition.",
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
    looks_at="clip_ratio (share of responses cut off at the maximum length)",
    cause="responses run into the maximum response length and are cut off, so their reward is "
    "computed on truncated answers",
    advice="Raise the maximum response length or add an overlong penalty.",
)
def length_clipping(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The share of responses that hit the maximum length had a rolling median above `threshold` for at least a full window. Without such a share, a logged count of end-of-sequence tokens (TRL's PPO: `val/num_eos_tokens`) that is 0 at most steps says the same: no response ended on its own."""
    limit = ctx.config_text(
        "max_response_length", "max_new_tokens", "max_completion_length", "response_length"
    )
    advice = f"Raise the maximum response length{limit} or add an overlong penalty."
    s = _prepared(ctx, p)
    if s is None:
        return [_with_advice(f, advice) for f in _no_eos(ctx, p)]
    found = _held_above(ctx, p, s, p["threshold"], "responses are being cut off")
    return [_with_advice(f, advice) for f in found]


EOS_KEYS = ("train/val/num_eos_tokens", "val/num_eos_tokens")


def _no_eos(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """TRL's PPO logs how many end-of-sequence tokens a batch's responses held: 0 at most steps
    means no response ended on its own, every one was cut at the maximum length."""
    for key in EOS_KEYS:
        if key not in ctx.history:
            continue
        x = ctx.run.x_key_for(key)
        points = ctx.history.points(key, x)
        keep = np.isfinite(points.values)
        values, steps = points.values[keep], points.xs[keep]
        if len(values) < 10 or np.median(values) > 0:
            return []
        share = float(np.mean(values == 0))
        signal = Signal(key, key, x, steps, values, "none")
        message = (
            f"{key} was 0 at {share:.0%} of its {len(values)} logged steps: no response ended "
            "with an end-of-sequence token, so every one was cut off at the maximum length"
        )
        return [ctx.finding(p, message, signal=signal, step=float(steps[0]), value=0.0)]
    return []


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
    """Values turned so that higher is better (a metric without a known direction is read as
    a reward or a score)."""
    return -values if signal.goal == "minimize" else values


@check(
    "reward_flat",
    looks_at="reward",
    cause="the policy is not learning from the reward: the task is too hard (reward too "
    "sparse), the learning rate too low, or the reward does not reach the loss",
    advice="Check reward values on a few samples; try an easier curriculum or a higher "
    "learning rate.",
)
def reward_flat(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The reward never rose meaningfully above where it started: its best rolling median stayed within `z` standard errors of the starting level (a falling reward counts too), and it shows no steady upward trend either (Spearman's rank correlation with the step, more than two standard errors above 0: a reward that climbs slowly through its noise is learning). A reward at its ceiling from the start is `reward_saturated`, not this."""
    s = _prepared(ctx, p, p["min_points"])
    if s is None or saturated_share(s) is not None:
        return []  # at its ceiling from the start: reward_saturated says so, with other advice
    w = stats.window_size(len(s), p["window"])
    values = _better(s, s.values)
    start, best, end, se = _gain(values, w)
    if best - start > p["z"] * se or stats.rising_trend(values):
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


# A reward counts as at its ceiling when at least this share of its points, including most of
# its first window, sit within a small tolerance of its highest value.
SATURATED_SHARE = 0.8


def saturated_share(s: Signal) -> float | None:
    """The share of points at the reward's ceiling when it sat there from the start, else None.

    The ceiling is the highest value logged; a point is at it when within 1% of the curve's
    range (or of the ceiling's size, for a curve that never moves) below it. A continuous
    reward (a reward model's score) rarely repeats its maximum, so only rewards with a hard
    cap (accuracy-like, 0/1 rewards averaged over a batch) can be saturated.
    """
    values = _better(s, s.values)
    if len(values) < 10:
        return None
    top = float(values.max())
    spread = float(values.max() - values.min())
    tolerance = 0.01 * max(spread, abs(top), stats.TINY)
    at_top = values >= top - tolerance
    w = stats.window_size(len(values), None)
    share = float(at_top.mean())
    if share < SATURATED_SHARE or at_top[:w].mean() < 0.5:
        return None
    return share


@check(
    "reward_saturated",
    looks_at="reward",
    cause="the reward is at its ceiling from the first steps: nearly every sample already earns "
    "the full reward, so group-normalised advantages are zero and there is no learning signal",
    advice="Use harder prompts (filter out those the model already solves), or check that the "
    "reward function does not return its maximum for every answer.",
)
def reward_saturated(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The reward sat at its highest value from the start: at least 80% of its points, and at least half of its first window, are within 1% of the curve's range below its maximum. Such a run cannot learn (there is nothing to improve), so raising the learning rate or an easier curriculum would be backwards."""
    s = _prepared(ctx, p)
    if s is None:
        return []
    share = saturated_share(s)
    if share is None:
        return []
    top = float(s.values.max() if s.goal == "maximize" else s.values.min())
    message = (
        f"{s.key} was at its ceiling ({num(top)}) from {s.at(float(s.steps[0]))}: "
        f"{share:.0%} of its {len(s)} logged steps are at it, so there was nothing to learn"
    )
    return [ctx.finding(p, message, signal=s, step=float(s.steps[0]), value=top)]


@check(
    "reward_hacking",
    looks_at="reward against a task metric the spec names (`task_metric`), else against the "
    "logged reward components that check the answer (`train/rewards/accuracy_reward`, …)",
    cause="the reward can be earned without solving the task: the policy exploits the reward "
    "function or reward model",
    advice="Read high-reward samples; harden the reward (a verifier, format checks) or put the "
    "task metric into the reward.",
)
def reward_hacking(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The reward rose clearly while a measure of the real task stayed flat or got worse. The task measure is the alias named by `task_metric`; without one, each logged reward component whose name says it checks the answer (accuracy, correct, answer, verif, pass, solve, exact, math, code) is tried, so "an accuracy reward of 0 at every step while the total rises through a format reward" is found without any configuration."""
    reward = _prepared(ctx, p, 10)
    if reward is None:
        return []
    if p["task_metric"] is not None:
        task = ctx.signal(p["task_metric"])
        candidates = [task] if task is not None else []
    else:
        candidates = _task_components(ctx, reward)
    for task in candidates:
        found = _hacked(ctx, p, reward, task)
        if found:
            return [found]
    return []


_TASK_WORDS = ("accura", "correct", "answer", "verif", "pass", "solve", "exact", "math", "code")


def _task_components(ctx: CheckContext, reward: Signal) -> list[Signal]:
    """Logged reward components that measure the task itself (by their names)."""
    found = []
    for key in reward_components(ctx.history):
        name = key.lower().split("rewards/", 1)[-1]
        if key == reward.key or not any(word in name for word in _TASK_WORDS):
            continue
        x = ctx.run.x_key_for(key)
        points = ctx.history.points(key, x)
        found.append(Signal(key, key, x, points.xs, points.values, "maximize"))
    return found


def _hacked(ctx: CheckContext, p: dict[str, Any], reward: Signal, task: Signal) -> Finding | None:
    task = task.finite
    if len(task) < 5:
        return None
    rv = _better(reward, reward.values)
    w = stats.window_size(len(rv), p["window"])
    r_start, _, r_end, r_se = _gain(rv, w)
    if r_end - r_start <= p["z"] * np.sqrt(2) * r_se:
        return None
    tv = _better(task, task.values)
    tw = stats.window_size(len(tv), p["window"])
    t_start, _, t_end, t_se = _gain(tv, tw)
    if t_end - t_start > p["z"] * np.sqrt(2) * t_se:
        return None
    rolling = stats.rolling_median(rv, w)
    with np.errstate(invalid="ignore"):
        rising = np.flatnonzero(rolling - r_start > (r_end - r_start) / 2)
    index = int(rising[0]) if len(rising) else 0
    rs = -1 if reward.goal == "minimize" else 1
    ts = -1 if task.goal == "minimize" else 1
    if np.all(task.values == task.values[0]):
        trend = f"stayed at {num(task.values[0])} at every step"
    elif t_end < t_start - p["z"] * t_se:
        trend = f"got worse ({num(ts * t_start)} → {num(ts * t_end)})"
    else:
        trend = f"did not improve ({num(ts * t_start)} → {num(ts * t_end)})"
    message = (
        f"{reward.key} rose from {num(rs * r_start)} to {num(rs * r_end)} while {task.key} "
        f"{trend}: the policy may be exploiting the reward"
    )
    return ctx.finding(
        p, message, signal=reward, step=float(reward.steps[index]), value=float(rs * r_end)
    )
