"""Is the compute well spent? plateau, still_improving, overfitting."""

from __future__ import annotations

from typing import Any

import numpy as np

from reportgen.health import stats
from reportgen.health.context import CheckContext, num
from reportgen.health.registry import check
from reportgen.health.roles import Signal
from reportgen.report import Finding


def _lower_is_better(signal: Signal, values: np.ndarray) -> np.ndarray:
    """Values turned so that smaller is always better (rewards are negated)."""
    return values if signal.goal == "minimize" else -values


def _position(steps: np.ndarray, index: int) -> float:
    span = float(steps[-1] - steps[0])
    return float(steps[index] - steps[0]) / span if span > 0 else 1.0


def _level_window(n: int, window: int | None) -> int:
    """Windows for judging progress: at least 10 points where the run has 50 (5-point
    medians of a noisy curve are too jumpy to say whether it still improves)."""
    return stats.window_size(n, window) if window else max(stats.window_size(n), min(10, n // 5))


def _word(signal: Signal) -> tuple[str, str]:
    return ("falling", "fell") if signal.goal == "minimize" else ("rising", "rose")


@check(
    "plateau",
    looks_at="the objective: val_loss (else loss) for supervised runs, reward for RL runs",
    cause="the run stopped improving early: the learning rate is too small (or decayed too "
    "soon) to make further progress, or the model has reached what it can learn from this data",
    advice="Stop such runs earlier to save compute, or try a higher learning rate, a later "
    "decay, or a larger model.",
)
def plateau(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The objective improved at first, then stopped: its rolling median came within noise of its final best during the first `early` share of the run and never got meaningfully better afterwards, so most of the compute bought nothing. A curve that keeps a steady trend towards better after that point (Spearman's ρ more than two standard errors above 0) is still improving, not on a plateau. A curve that ends more than halfway back from its best to its start jumped rather than levelled off and is not a plateau; neither is a curve another check already explains on the same metric (reward_flat, reward_saturated, flatline, diverged)."""
    signal = ctx.signal(p["metric"])
    if signal is None:
        return []
    s = signal.finite
    n = len(s)
    if n < p["min_points"]:
        return []
    w = _level_window(n, p["window"])
    u = _lower_is_better(s, stats.rolling_median(s.values, w))
    valid = np.flatnonzero(np.isfinite(u))
    if not len(valid):
        return []
    best = float(np.nanmin(u))
    sigma = stats.noise_sigma(s.values, w)
    delta = max(3 * stats.standard_error(sigma, w), p["rel_tol"] * abs(best), stats.TINY)
    start = float(u[valid[0]])
    if start - best <= delta:
        return []  # never improved: reward_flat and flatline speak to that
    end = stats.tail_level(_lower_is_better(s, s.values), w)
    if end > best + max(delta, 0.5 * (start - best)):
        return []  # it got much worse again (a sustained jump): not a plateau; diverged speaks
    settled = int(valid[np.argmax(u[valid] <= best + delta)])
    raw = _lower_is_better(s, s.values)
    reached = stats.first_at_or_after(raw <= best + delta, max(0, settled - w + 1))
    position = _position(s.steps, reached)
    if position > p["early"]:
        return []
    if stats.rising_trend(-raw[reached:]):
        return []  # still climbing through its noise after "reaching" its level: no plateau
    level = best if s.goal == "minimize" else -best
    remaining = n - 1 - reached
    message = (
        f"{s.key} stopped improving at {s.at(float(s.steps[reached]))} "
        f"({position:.0%} into the run): it was within {num(delta)} of its best "
        f"({num(level)}) by then and did not get better over the remaining {remaining} "
        f"logged steps"
    )
    return [
        ctx.finding(
            p,
            message,
            signal=s,
            step=float(s.steps[reached]),
            value=level,
            next_step="Stop such runs earlier to save compute, or try a higher learning rate"
            f"{ctx.config_text('lr', 'learning_rate')}, a later decay, or a larger model.",
        )
    ]


@check(
    "still_improving",
    looks_at="the objective: val_loss (else loss) for supervised runs, reward for RL runs",
    cause="undertrained: the run ended before the objective converged",
    advice="Train longer (for example twice the steps) or resume from the last checkpoint.",
)
def still_improving(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The objective was still getting better when the run ended: the last `tail` share of the run brought at least `min_share` of the whole improvement, by more than noise, and the run ended at its best. Runs still running are not judged."""
    signal = ctx.signal(p["metric"])
    if signal is None or ctx.run.state == "running":
        return []
    s = signal.finite
    n = len(s)
    if n < p["min_points"]:
        return []
    w = _level_window(n, p["window"])
    values = _lower_is_better(s, s.values)
    start = stats.head_level(values, w)
    end = stats.tail_level(values, w)
    cut = int(np.searchsorted(s.steps, s.steps[0] + (1 - p["tail"]) * (s.steps[-1] - s.steps[0])))
    if cut < w or n - cut < w:
        return []
    before = float(np.median(values[cut - w : cut]))
    gain, total = before - end, start - end
    sigma = stats.noise_sigma(s.values, w)
    if total <= 0 or gain <= 3 * np.sqrt(2) * stats.standard_error(sigma, w):
        return []
    if gain < p["min_share"] * total:
        return []
    if end > float(np.nanmin(stats.rolling_median(values, w))) + stats.TINY:
        return []  # it got better before and worse again at the end: not "still improving"
    going, went = _word(s)
    sign = 1 if s.goal == "minimize" else -1
    message = (
        f"{s.key} was still {going} when the run ended: over the last {p['tail']:.0%} of the "
        f"run (from {s.at(float(s.steps[cut]))}) it {went} from {num(sign * before)} to "
        f"{num(sign * end)}, {gain / total:.0%} of the run's whole improvement"
    )
    steps_cfg = ctx.config_text("steps", "max_steps", "total_steps", "num_train_epochs")
    return [
        ctx.finding(
            p,
            message,
            signal=s,
            step=float(s.steps[cut]),
            value=float(sign * end),
            next_step=f"Train longer (for example twice the steps{steps_cfg}) or resume from "
            "the last checkpoint: the objective had not converged.",
        )
    ]


@check(
    "overfitting",
    looks_at="val_loss against loss",
    cause="the model is memorising the training data: validation gets worse while training "
    "keeps improving",
    advice="Keep the checkpoint from the best validation step; add regularisation (weight "
    "decay, dropout), more data, or stop early on the validation metric.",
)
def overfitting(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """Validation got worse while training kept improving: the validation metric ends at least `min_rise` worse than its best, and the training metric is better at the end than it was at the validation best."""
    val, train = ctx.signal(p["metric"]), ctx.signal(p["train_metric"])
    if val is None or train is None:
        return []
    v, t = val.finite, train.finite
    n = len(v)
    if n < p["min_points"] or len(t) < 5:
        return []
    w = stats.window_size(n, p["window"])
    u = _lower_is_better(v, stats.rolling_median(v.values, w, full=False))
    settled = int(np.nanargmin(u))
    if settled >= n - w:
        return []
    best = float(u[settled])
    lowest = _lower_is_better(v, v.values)[max(0, settled - w + 1) : settled + 1]
    b = max(0, settled - w + 1) + int(np.argmin(lowest))
    end = stats.tail_level(_lower_is_better(v, v.values), w)
    rise = end - best
    sigma = stats.noise_sigma(v.values, w)
    if rise < p["min_rise"] * abs(best) or rise <= 3 * stats.standard_error(sigma, w):
        return []
    tw = stats.window_size(len(t), None)
    tu = _lower_is_better(t, stats.rolling_median(t.values, tw, full=False))
    at_best = int(np.searchsorted(t.steps, v.steps[b], side="right")) - 1
    if at_best < 0:
        return []
    train_then, train_end = float(tu[at_best]), float(tu[-1])
    if train_end >= train_then:
        return []
    sign = 1 if v.goal == "minimize" else -1
    tsign = 1 if t.goal == "minimize" else -1
    message = (
        f"{v.key} got worse after its best {num(v.values[b])} at {v.at(float(v.steps[b]))}, "
        f"ending at {num(sign * end)} ({abs(rise / best) if best else 0:.0%} worse), while "
        f"{t.key} kept improving ({num(tsign * train_then)} → {num(tsign * train_end)})"
    )
    return [
        ctx.finding(
            p,
            message,
            signal=v,
            step=float(v.steps[b]),
            value=float(sign * end),
            next_step=f"Keep the checkpoint from {v.at(float(v.steps[b]))}; add regularisation "
            "(weight decay, dropout) or more data, or stop early on the validation metric.",
        )
    ]


@check(
    "loss_flat",
    looks_at="loss (the training loss)",
    cause="the model is not learning: the learning rate is far too low (or 0), the weights are "
    "frozen, or the targets do not depend on the inputs (a data or label bug)",
    advice="Check that the loss reaches the optimiser and the weights change (learning rate, "
    "requires_grad, the optimiser's parameter list), then try a 10× higher learning rate on a "
    "small subset the model should overfit.",
)
def loss_flat(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The training loss hardly moved over the whole run: its closing level (median of the last window) is less than `min_drop` (2%) below its opening level (median of the first window). A language model whose loss stays near ln(vocabulary size), or a classifier stuck at ln 2, learns nothing; an exactly constant loss is `flatline`."""
    signal = ctx.signal(p["metric"])
    if signal is None or signal.goal != "minimize":
        return []
    s = signal.finite
    n = len(s)
    if n < p["min_points"] or np.all(s.values == s.values[-1]):
        return []
    w = _level_window(n, p["window"])
    start, end = stats.head_level(s.values, w), stats.tail_level(s.values, w)
    if start <= 0 or end < (1 - p["min_drop"]) * start:
        return []
    message = (
        f"{s.key} hardly moved: it opened at {num(start)} and closed at {num(end)} "
        f"({(start - end) / start:+.1%} over {n} logged steps)"
    )
    lr = ctx.config_text("lr", "learning_rate")
    advice = (
        f"Check that the loss reaches the optimiser and the weights change (learning rate{lr}, "
        "requires_grad, the optimiser's parameter list), then try a 10× higher learning rate on "
        "a small subset the model should overfit."
    )
    return [ctx.finding(p, message, signal=s, step=float(s.steps[0]), value=end, next_step=advice)]
