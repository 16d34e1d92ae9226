"""The health checks as facts: their ids, severities, presets and parameters.

Spec validation and the health stage both need these facts, so they live here, below both:
`reportgen validate` checks a spec's `health.checks` against this catalogue without loading
the checks themselves (and numpy and pandas with them), and the health registry
(health/registry.py) joins each entry to the function that runs it. This module imports
nothing of reportgen's and nothing heavy.

The order of CATALOGUE is the order checks run in and findings are listed in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SEVERITIES = ("bad", "ugly")

# The presets a check belongs to (the spec's `auto` picks one of them per run).
BOTH = ("rl", "supervised")
RL = ("rl",)

# Spec alias names that stand for a role, in the order they are tried.
ROLE_ALIASES: dict[str, tuple[str, ...]] = {
    "loss": ("loss", "train_loss"),
    "val_loss": ("val_loss", "eval_loss", "valid_loss"),
    "entropy": ("entropy",),
    "kl": ("kl", "ppo_kl", "approx_kl"),
    "ref_kl": ("ref_kl", "kl_ref", "kl_to_ref"),
    "clipfrac": ("clipfrac", "pg_clipfrac"),
    "length": ("length", "response_length"),
    "clip_ratio": ("clip_ratio", "truncated"),
    "reward": ("reward", "score"),
    "grad_norm": ("grad_norm",),
}

ROLES = tuple(ROLE_ALIASES)

# The role that stands for "how well training is going", whatever the run optimises.
OBJECTIVE = "objective"

# Kinds of parameter values; spec validation checks each kind (spec/problems.py, `param_problems`).
NUMBER, FRACTION, INTEGER, DURATION, METRIC, METRICS, SEVERITY = (
    "number",
    "fraction",
    "integer",
    "duration",
    "metric",
    "metrics",
    "severity",
)


@dataclass(frozen=True)
class ByPreset:
    """A default that depends on whether the run is checked as RL or as supervised training."""

    rl: Any
    supervised: Any

    def pick(self, preset: str) -> Any:
        return self.rl if preset == "rl" else self.supervised


@dataclass(frozen=True)
class Param:
    """One tunable parameter of a check: its type word, default and one line for the docs."""

    name: str
    kind: str
    default: Any
    doc: str
    optional: bool = False  # null is allowed (and is the default meaning "not used")

    def default_for(self, preset: str) -> Any:
        return self.default.pick(preset) if isinstance(self.default, ByPreset) else self.default


@dataclass(frozen=True)
class CheckSpec:
    """One check as the spec sees it: its stable id, the severity of its findings, the presets
    that run it, and the parameters a spec may tune under `health.checks.<id>`."""

    id: str
    severity: str
    presets: Sequence[str]
    params: Sequence[Param] = ()

    def __post_init__(self) -> None:  # lists are easier to write; tuples cannot change
        object.__setattr__(self, "presets", tuple(self.presets))
        object.__setattr__(self, "params", tuple(self.params))

    @property
    def all_params(self) -> tuple[Param, ...]:
        """`severity` (every check has it), then the check's own parameters."""
        severity = Param(
            "severity", SEVERITY, self.severity, "bad or ugly: which section the finding lands in."
        )
        return (severity, *self.params)

    def param(self, name: str) -> Param | None:
        return next((p for p in self.all_params if p.name == name), None)


def metric_names(aliases: Sequence[str]) -> list[str]:
    """What a `metric` parameter may name: the spec's aliases, the built-in roles, objective."""
    return [*aliases, *(r for r in ROLES if r not in aliases), OBJECTIVE]


OBJECTIVE_DOC = (
    "The alias or role to judge; `objective` is val_loss (else loss) for supervised runs and "
    "reward for RL runs."
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
        Param(
            "window",
            INTEGER,
            25,
            "Points in the trailing window the median and MAD use (from the 5th point on, "
            "fewer while the run has fewer before the point).",
        ),
        Param(
            "max_width",
            INTEGER,
            10,
            "A high stretch longer than this many points is a level shift, not a spike.",
        ),
        Param(
            "blowup",
            NUMBER,
            100.0,
            "A value this many times the baseline's size (or spread) above the baseline is "
            "reported however long it lasts (a blow-up, not noise).",
        ),
    ]


CATALOGUE: dict[str, CheckSpec] = {
    spec.id: spec
    for spec in (
        CheckSpec(
            "crashed",
            severity="ugly",
            presets=BOTH,
            params=[],
        ),
        CheckSpec(
            "stopped",
            severity="bad",
            presets=BOTH,
            params=[],
        ),
        CheckSpec(
            "ended_early",
            severity="bad",
            presets=BOTH,
            params=[
                Param(
                    "fraction",
                    FRACTION,
                    0.9,
                    "Fires when the run reached less than this share of its planned steps (or epochs).",
                )
            ],
        ),
        CheckSpec(
            "killed",
            severity="ugly",
            presets=BOTH,
            params=[
                Param(
                    "after",
                    DURATION,
                    "1h",
                    "A run still marked running counts as killed when its last heartbeat is older than "
                    "this. (Offline runs are marked killed by `source.stale_after` already.)",
                )
            ],
        ),
        CheckSpec(
            "stalled",
            severity="bad",
            presets=BOTH,
            params=[
                Param("after", DURATION, "30m", "How long without a new step counts as stalled."),
            ],
        ),
        CheckSpec(
            "non_finite",
            severity="ugly",
            presets=BOTH,
            params=[
                Param(
                    "metrics",
                    METRICS,
                    None,
                    "Aliases or roles to look at; null means every tracked metric.",
                    optional=True,
                )
            ],
        ),
        CheckSpec(
            "diverged",
            severity="ugly",
            presets=BOTH,
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
                    "A loss diverges when its rolling median climbs back this share of the way from "
                    "its best to its early level, on a log scale (0.5: halfway, in orders of "
                    "magnitude)…",
                ),
                Param(
                    "min_ratio",
                    NUMBER,
                    3.0,
                    "…and to at least this multiple of its best (so a loss that barely improved is "
                    "not called diverged for noise).",
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
        ),
        CheckSpec(
            "loss_spike",
            severity="bad",
            presets=BOTH,
            params=spike_params("loss", 6.0, 0.75),
        ),
        CheckSpec(
            "grad_norm_spike",
            severity="bad",
            presets=BOTH,
            params=[
                *spike_params("grad_norm", 6.0, 3.0),
                Param(
                    "min_ratio",
                    NUMBER,
                    10.0,
                    "And at least this multiple of the rolling median: gradient norms are heavy-tailed, "
                    "and with clipping a batch at 5–8× the typical norm is routine.",
                ),
            ],
        ),
        CheckSpec(
            "flatline",
            severity="ugly",
            presets=BOTH,
            params=[
                Param(
                    "metrics",
                    METRICS,
                    ByPreset(
                        rl=["reward", "entropy", "grad_norm"],
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
        ),
        CheckSpec(
            "instability_trend",
            severity="bad",
            presets=BOTH,
            params=[
                Param(
                    "metrics",
                    METRICS,
                    ByPreset(rl=["grad_norm", "kl", "clipfrac"], supervised=["grad_norm"]),
                    "Aliases or roles to look at.",
                ),
                Param(
                    "factor",
                    NUMBER,
                    5.0,
                    "Fires when the median of the closing stretch is at least this multiple of the "
                    "median before it.",
                ),
                Param("tail", FRACTION, 0.05, "The closing share of the run that is examined."),
                Param("min_points", INTEGER, 30, "Curves with fewer points are not judged."),
            ],
        ),
        CheckSpec(
            "plateau",
            severity="bad",
            presets=BOTH,
            params=[
                Param("metric", METRIC, OBJECTIVE, OBJECTIVE_DOC),
                Param(
                    "early",
                    FRACTION,
                    0.2,
                    "Fires when the metric reached its final level within this share of the run.",
                ),
                Param(
                    "rel_tol",
                    NUMBER,
                    0.01,
                    "“Reached its final level” means within this fraction of the best value (or within "
                    "three noise standard errors of the rolling median, whichever is larger).",
                ),
                Param("min_points", INTEGER, 50, "Runs with fewer logged points are not judged."),
                window_param("10 (on runs of 50 points or more)"),
            ],
        ),
        CheckSpec(
            "still_improving",
            severity="bad",
            presets=BOTH,
            params=[
                Param("metric", METRIC, OBJECTIVE, OBJECTIVE_DOC),
                Param("tail", FRACTION, 0.2, "The closing share of the run that is examined."),
                Param(
                    "min_share",
                    FRACTION,
                    0.15,
                    "Fires when that tail brought at least this share of the run's whole improvement.",
                ),
                Param("min_points", INTEGER, 20, "Runs with fewer logged points are not judged."),
                window_param("10 (on runs of 50 points or more)"),
            ],
        ),
        CheckSpec(
            "overfitting",
            severity="bad",
            presets=("supervised",),
            params=[
                Param("metric", METRIC, "val_loss", "The validation alias or role."),
                Param("train_metric", METRIC, "loss", "The training alias or role."),
                Param(
                    "min_rise",
                    NUMBER,
                    0.1,
                    "How far the validation metric must end above its best, relative to the best "
                    "(0.1 = 10% worse), and by more than noise.",
                ),
                Param(
                    "min_points", INTEGER, 5, "Validation curves with fewer points are not judged."
                ),
                window_param(),
            ],
        ),
        CheckSpec(
            "loss_flat",
            severity="bad",
            presets=("supervised",),
            params=[
                Param("metric", METRIC, "loss", "The alias or role to look at."),
                Param(
                    "min_drop",
                    FRACTION,
                    0.02,
                    "Fires when the loss's closing level is less than this share below its opening "
                    "level (medians of the first and last windows).",
                ),
                Param("min_points", INTEGER, 50, "Runs with fewer logged points are not judged."),
                window_param("10 (on runs of 50 points or more)"),
            ],
        ),
        CheckSpec(
            "entropy_collapse",
            severity="ugly",
            presets=RL,
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
                Param(
                    "min_points", INTEGER, 10, "The collapse must last at least this many points."
                ),
                window_param(),
            ],
        ),
        CheckSpec(
            "kl_high",
            severity="bad",
            presets=RL,
            params=[
                Param("metric", METRIC, "kl", "The alias or role to look at (per-update KL)."),
                Param("threshold", NUMBER, 0.1, "The per-update KL level that is too high."),
                window_param(),
            ],
        ),
        CheckSpec(
            "kl_spike",
            severity="bad",
            presets=RL,
            params=[
                *spike_params("kl", 6.0, 3.0),
                Param(
                    "min_value",
                    NUMBER,
                    0.02,
                    "Only values above this count, so spikes in a KL of about 0 are not reported.",
                ),
            ],
        ),
        CheckSpec(
            "kl_low",
            severity="bad",
            presets=RL,
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
        ),
        CheckSpec(
            "ref_kl_high",
            severity="bad",
            presets=RL,
            params=[
                Param(
                    "metric",
                    METRIC,
                    "ref_kl",
                    "The alias or role to look at (KL to the reference).",
                ),
                Param(
                    "threshold",
                    NUMBER,
                    1.0,
                    "The KL to the reference that is too high (0.2 is normal in a healthy GRPO run).",
                ),
                window_param(),
            ],
        ),
        CheckSpec(
            "clipfrac_high",
            severity="bad",
            presets=RL,
            params=[
                Param("metric", METRIC, "clipfrac", "The alias or role to look at."),
                Param("threshold", FRACTION, 0.3, "The clipped share that is too high."),
                window_param(),
            ],
        ),
        CheckSpec(
            "length_collapse",
            severity="ugly",
            presets=RL,
            params=[
                Param("metric", METRIC, "length", "The alias or role to look at."),
                Param(
                    "ratio",
                    FRACTION,
                    0.5,
                    "Collapsed means the rolling median fell below this share of its highest value.",
                ),
                Param(
                    "min_points", INTEGER, 10, "The collapse must last at least this many points."
                ),
                window_param(),
            ],
        ),
        CheckSpec(
            "length_explosion",
            severity="bad",
            presets=RL,
            params=[
                Param("metric", METRIC, "length", "The alias or role to look at."),
                Param(
                    "factor",
                    NUMBER,
                    3.0,
                    "Exploded means the rolling median rose above this multiple of the starting "
                    "length (median of the first window).",
                ),
                Param(
                    "min_points", INTEGER, 10, "It must stay there for at least this many points."
                ),
                window_param(),
            ],
        ),
        CheckSpec(
            "length_clipping",
            severity="bad",
            presets=RL,
            params=[
                Param("metric", METRIC, "clip_ratio", "The alias or role to look at."),
                Param("threshold", FRACTION, 0.1, "The clipped share that is too high."),
                window_param(),
            ],
        ),
        CheckSpec(
            "reward_flat",
            severity="bad",
            presets=RL,
            params=[
                Param("metric", METRIC, "reward", "The alias or role to look at."),
                Param(
                    "z",
                    NUMBER,
                    4.0,
                    "The reward must rise above its start by more than this many standard errors of "
                    "the rolling median to count as learning.",
                ),
                Param("min_points", INTEGER, 50, "Runs with fewer logged points are not judged."),
                window_param(),
            ],
        ),
        CheckSpec(
            "reward_saturated",
            severity="bad",
            presets=RL,
            params=[Param("metric", METRIC, "reward", "The alias or role to look at.")],
        ),
        CheckSpec(
            "reward_hacking",
            severity="ugly",
            presets=RL,
            params=[
                Param("metric", METRIC, "reward", "The alias or role to look at."),
                Param(
                    "task_metric",
                    METRIC,
                    None,
                    "The alias of a metric that measures the real task (accuracy, pass rate); without "
                    "it, logged reward components named like accuracy or correctness are used.",
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
        ),
    )
}
