"""Is the optimisation numerically sane? non_finite, diverged, loss_spike, grad_norm_spike, flatline."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from reportgen.health import stats
from reportgen.health.context import CheckContext, num
from reportgen.health.registry import (
    FRACTION,
    INTEGER,
    METRIC,
    METRICS,
    NUMBER,
    ByPreset,
    Param,
    check,
)
from reportgen.health.roles import Signal
from reportgen.report import Finding

BOTH = ("rl", "supervised")

NUMERIC_CAUSE = (
    "numerical blow-up: a learning rate too high for the model, no gradient clipping, or a bad "
    "batch"
)
NUMERIC_ADVICE = "Lower the learning rate 3–10×{lr} and turn on gradient clipping{clip}."


def _numeric_advice(ctx: CheckContext) -> str:
    return NUMERIC_ADVICE.format(
        lr=ctx.config_text("lr", "learning_rate", "actor_lr"),
        clip=ctx.config_text("max_grad_norm", "grad_clip", "clip_grad_norm", "gradient_clipping"),
    )


def window_param(least: str = "5") -> Param:
    return Param(
        "window",
        INTEGER,
        None,
        "Points per rolling window; null picks about 2% of the run's points, at least "
        f"{least} and at most 50.",
        optional=True,
    )


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
    severity="ugly",
    presets=BOTH,
    looks_at="every tracked metric: the spec's aliases and the built-in roles found in the run",
    cause=NUMERIC_CAUSE,
    advice=NUMERIC_ADVICE.format(lr="", clip=""),
    params=[
        Param(
            "metrics",
            METRICS,
            None,
            "Aliases or roles to look at; null means every tracked metric.",
            optional=True,
        )
    ],
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
    severity="ugly",
    presets=BOTH,
    looks_at="supervised: loss, val_loss and grad_norm; RL: grad_norm (a policy loss has no "
    "meaningful best)",
    cause=NUMERIC_CAUSE,
    advice=NUMERIC_ADVICE.format(lr="", clip=""),
    params=[
        Param(
            "metrics",
            METRICS,
            ByPreset(rl=["grad_norm"], supervised=["loss", "val_loss", "grad_norm"]),
            "Aliases or roles to look at.",
        ),
        Param(
            "factor",
            NUMBER,
            0.5,
            "A loss diverges when its rolling median climbs above its running best by this "
            "share of the progress it had made (or of the best's own size, if larger).",
        ),
        Param(
            "norm_factor",
            NUMBER,
            10.0,
            "A gradient norm diverges when its rolling median exceeds this multiple of the "
            "median of all its earlier values.",
        ),
        window_param(),
    ],
)
def diverged(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """A loss or gradient norm ran away and stayed away. A loss (any metric whose key does not name a gradient norm) diverges when its rolling median climbs above its running best by more than `factor` × the progress it had made (the highest earlier rolling median minus the best) or × the best's own size, whichever is larger: with the default 0.5 a loss that fell from 2.0 to 0.05 diverges above about 1.0. A gradient norm diverges when its rolling median exceeds `norm_factor` × the median of all its earlier values. Either must hold for a full window, or until the metric stops being finite; infinity always counts."""
    findings = []
    for signal in ctx.signals(p["metrics"]):
        found = _divergence(ctx, p, signal)
        if found:
            findings.append(found)
    return findings


def _is_norm(signal: Signal) -> bool:
    text = f"{signal.name} {signal.key}".lower().replace("_", "").replace("/", "")
    return "gradnorm" in text


def _divergence(ctx: CheckContext, p: dict[str, Any], signal: Signal) -> Finding | None:
    keep = ~np.isnan(signal.values)
    steps, values = signal.steps[keep], signal.values[keep]
    n = len(values)
    if n < 5:
        return None
    w = stats.window_size(n, p["window"])
    big = np.finfo(float).max
    capped = np.clip(values, -big, big)
    rolling = stats.rolling_median(capped, w, full=False)
    if _is_norm(signal):
        earlier = pd.Series(capped).expanding().median().shift(1).to_numpy()
        with np.errstate(over="ignore", invalid="ignore"):
            threshold = p["norm_factor"] * np.abs(earlier)
        reference = "the median of its earlier values"
    else:
        best = np.minimum.accumulate(rolling)
        # the highest level before the best was reached: how much progress had been made
        at_best = np.maximum.accumulate(np.where(rolling <= best, np.arange(n), 0))
        peak_before = np.maximum.accumulate(rolling)[at_best]
        with np.errstate(over="ignore", invalid="ignore"):
            scale = np.maximum(np.maximum(peak_before - best, np.abs(best)), stats.TINY)
            threshold = best + p["factor"] * scale
        reference = "its best"
    with np.errstate(invalid="ignore"):
        above = (rolling > threshold) & np.isfinite(threshold)
    above[: min(w - 1, n)] = False
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
        low = int(np.argmin(rolling[: first + 1]))
        before = f"its best {num(rolling[low])} ({signal.at(float(steps[low]))})"
    peak = float(np.max(values[first : stretch[1]]))
    recovered = stretch[1] < n and not above[stretch[1] :].any()
    message = (
        f"{signal.key} diverged at {signal.at(float(steps[first]))}: from {before} it climbed "
        f"past {num(limit)} and reached {_describe_value(peak) if not np.isfinite(peak) else num(peak)}"
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
    )
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


def spike_params(metric: str, z: float, rise: float) -> list[Param]:
    return [
        Param("metric", METRIC, metric, "The alias or role to look at."),
        Param("z", NUMBER, z, "How many robust standard deviations above the rolling median."),
        Param(
            "min_rel_rise",
            NUMBER,
            rise,
            "And above the window's 90th percentile by at least this multiple of it (1 = twice "
            "the percentile).",
        ),
        Param("window", INTEGER, 25, "Points in the trailing window the median and MAD use."),
        Param(
            "max_width",
            INTEGER,
            10,
            "A high stretch longer than this many points is a level shift, not a spike.",
        ),
    ]


@check(
    "loss_spike",
    severity="bad",
    presets=("supervised",),
    looks_at="loss",
    cause="unstable optimisation: the learning rate is near the edge of stability, or some "
    "batches are very different (bad data, very long sequences)",
    advice="Lower the peak learning rate or lengthen its warmup, tighten gradient clipping, and "
    "look at the batches logged at the spike steps.",
    params=spike_params("loss", 6.0, 0.75),
)
def loss_spike(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The loss jumped far above its recent level and came back: Hampel-style spikes against the median and MAD of the preceding `window` points. It reports how many, the worst ones and where the first started."""
    signal = ctx.signal(p["metric"])
    return _spike_finding(ctx, p, signal) if signal else []


@check(
    "grad_norm_spike",
    severity="bad",
    presets=BOTH,
    looks_at="grad_norm",
    cause="unstable optimisation: occasional huge updates from a learning rate near the edge of "
    "stability or outlier batches",
    advice="Tighten gradient clipping and lower the learning rate or lengthen warmup; inspect "
    "the batches at the spike steps.",
    params=spike_params("grad_norm", 6.0, 3.0),
)
def grad_norm_spike(ctx: CheckContext, p: dict[str, Any]) -> list[Finding]:
    """The gradient norm jumped far above its recent level and came back (same rule as loss_spike, with a higher default `min_rel_rise` because gradient norms are noisier)."""
    signal = ctx.signal(p["metric"])
    return _spike_finding(ctx, p, signal) if signal else []


@check(
    "flatline",
    severity="ugly",
    presets=BOTH,
    looks_at="supervised: loss, val_loss, grad_norm; RL: reward, entropy, grad_norm, loss",
    cause="nothing is being learned: the optimiser does not update the weights (learning rate "
    "0, frozen parameters, a detached loss) or the metric is logged from a constant",
    advice="Check that the weights change between steps (learning rate, requires_grad, the loss "
    "reaching the optimiser) and that the metric is computed from the current batch.",
    params=[
        Param(
            "metrics",
            METRICS,
            ByPreset(
                rl=["reward", "entropy", "grad_norm", "loss"],
                supervised=["loss", "val_loss", "grad_norm"],
            ),
            "Aliases or roles to look at.",
        ),
        Param(
            "min_fraction",
            FRACTION,
            0.5,
            "The constant stretch at the end must cover at least this share of the points.",
        ),
        Param("min_points", INTEGER, 10, "…and at least this many points."),
    ],
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
