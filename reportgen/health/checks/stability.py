"""Is the optimisation numerically sane? non_finite, diverged, loss_spike, grad_norm_spike, flatline."""

from __future__ import annotations

from typing import Any

import numpy as np

from reportgen.health import stats
from reportgen.health.context import CheckContext, num
from reportgen.health.registry import (
    check,
)
from reportgen.health.roles import Signal
from reportgen.report import Finding

NUMERIC_CAUSE = (
    "numerical blow-up: a learning rate too high for the model, no gradient clipping, or a bad "
    "batch"
)
NUMERIC_ADVICE = "Lower the learning rate 3–10×{lr} and turn on gradient clipping{clip}."
CLIP_KEYS = ("max_grad_norm", "grad_clip", "clip_grad_norm", "gradient_clipping", "clip_grad")


def _numeric_advice(ctx: CheckContext) -> str:
    """Lower the learning rate, and turn on gradient clipping, or tighten it when the config
    says it is already on (advice never contradicts the config value it quotes)."""
    lr = ctx.config_text("lr", "learning_rate", "actor_lr")
    clip = ctx.config_text(*CLIP_KEYS)
    if ctx.setting_on(*CLIP_KEYS):
        return f"Lower the learning rate 3–10×{lr} and tighten gradient clipping{clip}."
    return NUMERIC_ADVICE.format(lr=lr, clip=clip)


def _describe_value(value: float) -> str:
    if np.isnan(value):
        return "NaN"
    return "Infinity" if value > 0 else "-Infinity"


def _exit_clause(ctx: CheckContext) -> str:
    run = ctx.run
    if run.state == "finished" and (run.exit_code or 0) == 0:
        return ", although the run exited with code 0"
    if run.state == "running":
        return ", and the run is still running"
    return ""


@check(
    "non_finite",
    looks_at="every tracked metric: the spec's aliases and the built-in roles found in the run",
    cause=NUMERIC_CAUSE,
    advice=NUMERIC_ADVICE.format(lr="", clip=""),
)
def non_finite(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """A tracked metric was logged as NaN or ±infinity. One finding per run: the metric that went first, the step, whether it stayed non-finite, and the other metrics that followed."""
    hits: list[tuple[float, Signal, int]] = []
    for signal in ctx.signals(p["metrics"]):
        bad = np.flatnonzero(~np.isfinite(signal.values))
        if len(bad):
            hits.append((float(signal.steps[bad[0]]), signal, int(bad[0])))
    if not hits:
        return []
    hits.sort(key=lambda h: h[0])
    step, signal, first = hits[0]
    values = signal.values
    rest = values[first:]
    kind = _describe_value(values[first])
    message = f"{signal.key} became {kind} at {signal.at(step)}"
    later_nan = np.flatnonzero(np.isnan(rest))
    if kind != "NaN" and len(later_nan):
        message += f", NaN from {signal.at(float(signal.steps[first + later_nan[0]]))}"
    if not np.isfinite(rest).any():
        what = "NaN" if np.isnan(rest).all() else "non-finite"
        message += f" and stayed {what} for the remaining {len(rest)} logged steps"
    else:
        recovered = first + int(np.flatnonzero(np.isfinite(rest))[0])
        count = int((~np.isfinite(rest)).sum())
        message += (
            f" ({count} non-finite of {len(rest)} logged steps from there; finite again at "
            f"{signal.at(float(signal.steps[recovered]))})"
        )
    message += _exit_clause(ctx)
    if len(hits) > 1:
        others = ", ".join(f"{s.key} (from {s.at(st)})" for st, s, _ in hits[1:6])
        more = f" and {len(hits) - 6} more" if len(hits) > 6 else ""
        message += f"; also non-finite: {others}{more}"
    return [
        ctx.finding(
            p,
            message,
            signal=signal,
            step=step,
            value=float(values[first]),
            next_step=_numeric_advice(ctx),
        )
    ]


@check(
    "diverged",
    looks_at="supervised: loss, val_loss and grad_norm; RL: grad_norm (a policy loss has no "
    "meaningful best)",
    cause=NUMERIC_CAUSE,
    advice=NUMERIC_ADVICE.format(lr="", clip=""),
)
def diverged(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """A loss or gradient norm ran away and stayed away. Levels are rolling medians over full windows, never single points, so the first noisy value is not a "best". A positive loss diverges when its rolling median climbs above its best rolling median by at least `min_ratio` × and back at least `factor` of the way (on a log scale) to its early level (the median of its first window): a loss that fell from 2.0 to 0.05 diverges above about 0.32 (halfway in orders of magnitude), and a validation loss that jumps 33× and stays there diverges whatever it did before. A loss that can be negative uses the same rule on a linear scale. A gradient norm diverges when its rolling median exceeds `norm_factor` × the median of all its earlier values. Either must hold for a full window, or until the metric stops being finite; infinity always counts."""
    findings = []
    for signal in ctx.signals(p["metrics"]):
        found = _divergence(ctx, p, signal)
        if found:
            findings.append(found)
    return findings


def _is_norm(signal: Signal) -> bool:
    text = f"{signal.name} {signal.key}".lower().replace("_", "").replace("/", "")
    return "gradnorm" in text


def _loss_threshold(
    p: dict[str, Any], values: np.ndarray, rolling: np.ndarray, w: int
) -> np.ndarray:
    """Per point, the rolling-median level above which a loss counts as diverged."""
    best = np.fmin.accumulate(rolling)
    early = float(np.median(values[:w]))
    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        if np.all(values > 0) and early > 0:
            lb, le = np.log(best), np.log(early)
            return np.exp(lb + np.maximum(np.log(p["min_ratio"]), p["factor"] * (le - lb)))
        scale = np.maximum(np.maximum(early - best, np.abs(best)), stats.TINY)
        return best + np.maximum((p["min_ratio"] - 1) * np.abs(best), p["factor"] * scale)


def _divergence(ctx: CheckContext, p: dict[str, Any], signal: Signal) -> Finding | None:
    keep = ~np.isnan(signal.values)
    steps, values = signal.steps[keep], signal.values[keep]
    n = len(values)
    w = stats.window_size(n, p["window"])
    if n < 2 * w or n < 10:
        return None
    big = np.finfo(float).max
    capped = np.clip(values, -big, big)
    rolling = stats.rolling_median(capped, w)
    if _is_norm(signal):
        earlier = np.concatenate([[np.nan], stats.expanding_median(capped, w)[:-1]])
        with np.errstate(over="ignore", invalid="ignore"):
            threshold = p["norm_factor"] * np.abs(earlier)
        reference = "the median of its earlier values"
    else:
        threshold = _loss_threshold(p, capped, rolling, w)
        reference = "its best"
    with np.errstate(invalid="ignore"):
        above = (rolling > threshold) & np.isfinite(threshold)
    stretch = stats.first_stretch(above, w)
    if stretch is None:
        tail = stats.sustained_from(above)
        if tail is None:
            return None
        stretch = (tail, n)
    limit = float(threshold[stretch[0]])
    first = stats.first_at_or_after(values > limit, max(0, stretch[0] - w + 1))
    if _is_norm(signal):
        base = float(np.median(capped[: max(first, 1)]))
        before = f"{num(base)} ({reference})"
    else:
        low = int(np.nanargmin(rolling[: stretch[0] + 1]))
        if steps[low] < steps[first]:
            before = f"its best {num(rolling[low])} ({signal.at(float(steps[low]))})"
        else:
            before = f"its first level {num(rolling[low])}"
    peak = float(np.max(values[first : stretch[1]]))
    recovered = stretch[1] < n and not above[stretch[1] :].any()
    shown = _describe_value(peak) if not np.isfinite(peak) else num(peak)
    message = (
        f"{signal.key} diverged at {signal.at(float(steps[first]))}: from {before} it climbed "
        f"past {num(limit)} and reached {shown}"
    )
    if recovered:
        message += ", then came back down"
    elif stretch[1] >= n and keep.sum() < len(keep):
        message += " before turning NaN"
    else:
        message += " and never came back down"
    return ctx.finding(
        p,
        message,
        signal=signal,
        step=float(steps[first]),
        value=float(values[first]),
        next_step=_numeric_advice(ctx),
    )


def _spike_finding(
    ctx: CheckContext, p: dict[str, Any], signal: Signal, min_value: float = -np.inf
) -> list[Finding]:
    s = signal.finite
    found = stats.spikes(
        s.values,
        window=p["window"],
        z=p["z"],
        min_rel_rise=p["min_rel_rise"],
        min_value=min_value,
        max_width=p["max_width"],
        blowup=p["blowup"],
    )
    least = p.get("min_ratio", 1.0)
    found = [sp for sp in found if sp.baseline <= 0 or s.values[sp.worst] >= least * sp.baseline]
    if not found:
        return []
    worst = sorted(found, key=lambda sp: -s.values[sp.worst])
    top = worst[0]
    times = "once" if len(found) == 1 else f"{len(found)} times"
    listing = ", ".join(
        f"{num(s.values[sp.worst])} at {s.at(float(s.steps[sp.worst]))}" for sp in worst[:3]
    )
    times_baseline = s.values[top.worst] / top.baseline if top.baseline > 0 else np.inf
    ratio = (
        f", {times_baseline:.1f}× its rolling median {num(top.baseline)}"
        if times_baseline < 100
        else f" against a rolling median of {num(top.baseline)}"
    )
    message = f"{s.key} spiked {times} (worst {listing}{ratio})"
    if len(found) > 1:
        message += f"; the first at {s.at(float(s.steps[found[0].start]))}"
    return [
        ctx.finding(
            p,
            message,
            signal=s,
            step=float(s.steps[found[0].start]),
            value=float(s.values[top.worst]),
        )
    ]


@check(
    "loss_spike",
    looks_at="loss",
    cause="unstable optimisation: the learning rate is near the edge of stability, or some "
    "batches are very different (bad data, very long sequences)",
    advice="Lower the peak learning rate or lengthen its warmup, tighten gradient clipping, and "
    "look at the batches logged at the spike steps.",
)
def loss_spike(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The loss jumped far above its recent level and came back, or blew up: Hampel-style spikes against the median and MAD of the preceding `window` points (judged from the 5th point on), plus any value more than `blowup` × its baseline. It reports how many, the worst ones and where the first started. On an RL run whose loss is only the KL penalty (TRL's GRPO loss is β·KL) the KL checks speak instead."""
    signal = ctx.signal(p["metric"])
    if signal is None or (ctx.preset == "rl" and loss_is_kl_penalty(ctx, signal)):
        return []
    return _spike_finding(ctx, p, signal)


@check(
    "grad_norm_spike",
    looks_at="grad_norm",
    cause="unstable optimisation: occasional huge updates from a learning rate near the edge of "
    "stability or outlier batches",
    advice="Tighten gradient clipping and lower the learning rate or lengthen warmup; inspect "
    "the batches at the spike steps.",
)
def grad_norm_spike(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The gradient norm jumped far above its recent level and came back, or blew up (the loss_spike rule, with a higher default `min_rel_rise`, and at least `min_ratio` × the rolling median, because gradient norms are heavy-tailed)."""
    signal = ctx.signal(p["metric"])
    return _spike_finding(ctx, p, signal) if signal else []


@check(
    "flatline",
    looks_at="supervised: loss, val_loss, grad_norm; RL: reward, entropy, grad_norm (an RL "
    "loss is a surrogate or penalty that may legitimately sit at one rounded value)",
    cause="nothing is being learned: the optimiser does not update the weights (learning rate "
    "0, frozen parameters, a detached loss) or the metric is logged from a constant",
    advice="Check that the weights change between steps (learning rate, requires_grad, the loss "
    "reaching the optimiser) and that the metric is computed from the current batch.",
)
def flatline(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """A metric that should move was logged as exactly the same value (for example every value 0) over the end of the run: a dead or not-learning run."""
    findings = []
    for signal in ctx.signals(p["metrics"]):
        s = signal.finite
        n = len(s)
        if n < p["min_points"]:
            continue
        differs = np.flatnonzero(s.values != s.values[-1])
        start = int(differs[-1] + 1) if len(differs) else 0
        length = n - start
        if length < p["min_points"] or length < p["min_fraction"] * n:
            continue
        value = float(s.values[-1])
        if start == 0:
            message = f"{s.key} was exactly {num(value)} at every one of its {n} logged steps"
        else:
            message = (
                f"{s.key} stayed exactly at {num(value)} from {s.at(float(s.steps[start]))} to "
                f"the end ({length} of {n} logged steps)"
            )
        findings.append(ctx.finding(p, message, signal=s, step=float(s.steps[start]), value=value))
    return findings


def loss_is_kl_penalty(ctx: CheckContext, loss: Signal) -> bool:
    """Whether an RL run's loss is (a multiple of) its KL to the reference, as TRL's GRPO loss
    is β·KL rounded to 4 decimals: then a flat or spiky loss says what the KL says, nothing
    about whether the policy learns."""
    kl = ctx.signal("ref_kl")
    if kl is None:
        return False
    _, at_loss, at_kl = np.intersect1d(loss.steps, kl.steps, return_indices=True)
    lv, kv = loss.values[at_loss], kl.values[at_kl]
    both = np.isfinite(lv) & np.isfinite(kv)
    if both.sum() < 5:
        return False
    lv, kv = lv[both], kv[both]
    if not np.any(kv != 0):
        return bool(np.all(np.abs(lv) <= 1e-4))  # no KL yet and a loss rounded to 0
    scale = float(np.dot(lv, kv) / np.dot(kv, kv))
    residual = float(np.median(np.abs(lv - scale * kv)))
    return scale > 0 and residual <= 1e-4 + 0.1 * float(np.median(np.abs(lv)))


# The level below which a rising diagnostic is still too small to matter.
TREND_FLOORS = {"kl": 0.005, "clipfrac": 0.02}


@check(
    "instability_trend",
    looks_at="RL: grad_norm, kl (per update) and clipfrac; supervised: grad_norm",
    cause="instability is building up: each update moves the policy further than the last "
    "(learning rate too high for this stage, stale or off-policy data, a collapsing entropy)",
    advice="Lower the learning rate or add warm-down, tighten gradient clipping, and check the "
    "last checkpoint before the rise; it often ends in a divergence.",
)
def instability_trend(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """A diagnostic that should stay level rose steadily to the end: the median of the closing `tail` of the run (at least 5 points) is at least `factor` × the median of what came before it (the first 10% left out as warm-up). Per-update KL must end above 0.005 and clip fraction above 0.02 to count. It reports the step from which the rolling median stayed above √factor × that earlier level."""
    findings = []
    for signal in ctx.signals(p["metrics"]):
        found = _rising(ctx, p, signal)
        if found:
            findings.append(found)
    return findings


def _rising(ctx: CheckContext, p: dict[str, Any], signal: Signal) -> Finding | None:
    s = signal.finite
    n = len(s)
    if n < p["min_points"]:
        return None
    values = np.abs(s.values)
    k = max(5, round(p["tail"] * n))
    before = values[n // 10 : n - k]
    if len(before) < 5:
        return None
    reference, end = float(np.median(before)), float(np.median(values[-k:]))
    floor = 0.0
    for role, level in TREND_FLOORS.items():
        found = ctx.signal(role)
        if found is not None and found.key == s.key:
            floor = level
    if reference <= stats.TINY or end < p["factor"] * reference or end < floor:
        return None
    w = max(3, k // 2)
    rolling = stats.rolling_median(values, w)
    with np.errstate(invalid="ignore"):
        since = stats.sustained_from(rolling > np.sqrt(p["factor"]) * reference)
    start = (
        n - k
        if since is None
        else stats.first_at_or_after(
            values > np.sqrt(p["factor"]) * reference, max(0, since - w + 1)
        )
    )
    message = (
        f"{s.key} kept rising to the end of the run: its median over the last {k} logged steps "
        f"is {num(end)}, {end / reference:.1f}× its earlier level {num(reference)}, rising "
        f"from {s.at(float(s.steps[start]))}"
    )
    lr = ctx.config_text("lr", "learning_rate")
    advice = (
        f"Lower the learning rate{lr} or add a warm-down, tighten gradient clipping, and keep "
        "the last checkpoint before the rise: a rise like this often ends in a divergence."
    )
    return ctx.finding(
        p, message, signal=s, step=float(s.steps[start]), value=end, next_step=advice
    )
