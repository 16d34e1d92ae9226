"""What a health check looks at: built-in roles (loss, kl, entropy, …) and how a run fills them.

A check asks for a *role* such as `kl`, or for an alias the spec named. A role resolves per run:
first from the spec's own aliases (an alias called `kl`, or a synonym such as `score` for
`reward`), then from the metric names popular trainers log (verl, TRL, slime, the HF Trainer and
classic PPO code), so a spec without any aliases still gets its runs checked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from reportgen.check_catalogue import OBJECTIVE, ROLE_ALIASES, ROLES
from reportgen.metrics import ResolvedMetric, goal_for
from reportgen.runs import STEP, History, Run
from reportgen.spec import MetricAlias

# Keys common trainers log for each role, tried in order when no spec alias resolves.
KNOWN_KEYS: dict[str, tuple[str, ...]] = {
    "loss": ("train/loss", "train_loss", "loss", "train/lm_loss"),
    "val_loss": ("eval/loss", "val/loss", "val_loss", "eval_loss", "validation/loss", "valid/loss"),
    "entropy": (
        "actor/entropy",
        "actor/entropy_loss",
        "train/entropy",
        "train/entropy_loss",
        "losses/entropy",
        "Loss/entropy",
        "train/objective/entropy",
        "objective/entropy",
        "ppo/policy/entropy",
        "entropy",
    ),
    # KL between the policy before and after one update (PPO's approx_kl)
    "kl": (
        "actor/ppo_kl",
        "train/ppo_kl",
        "losses/approx_kl",
        "train/approx_kl",
        "approx_kl",
        "train/policy/approxkl_avg",
        "policy/approxkl_avg",
        "ppo/policy/approxkl",
        "kl",
    ),
    # KL between the policy and its frozen reference model (the KL penalty or loss term)
    "ref_kl": (
        "actor/kl_loss",
        "train/kl",
        "train/kl_loss",
        "objective/kl",
        "train/objective/kl",
        "actor/reward_kl_penalty",
    ),
    "clipfrac": (
        "actor/pg_clipfrac",
        "train/pg_clipfrac",
        "losses/clipfrac",
        "train/clipfrac",
        "train/clip_fraction",
        "train/policy/clipfrac_avg",
        "policy/clipfrac_avg",
        "ppo/policy/clipfrac",
        "clipfrac",
    ),
    "length": (
        "response_length/mean",
        "train/completion_length",
        "train/completions/mean_length",
        "rollout/response_lengths",
        "tokens/responses_len_mean",
        "completion_length",
    ),
    "clip_ratio": (
        "response_length/clip_ratio",
        "train/completions/clipped_ratio",
        "rollout/truncated",
    ),
    "reward": (
        "critic/score/mean",
        "critic/rewards/mean",
        "train/reward",
        "rollout/raw_reward",
        "charts/episodic_return",
        "Rewards/mean_episodes",
        "train/objective/rlhf_reward",
        "objective/rlhf_reward",
        "env/reward_mean",
        "ppo/mean_scores",
        "rollout/ep_rew_mean",
        "ep_rew_mean",
        "reward",
    ),
    "grad_norm": ("actor/grad_norm", "train/grad_norm", "grad_norm", "optim/grad_norm"),
}


# A role whose presence marks a run as reinforcement learning (the `auto` preset).
RL_ROLES = ("entropy", "kl", "ref_kl", "clipfrac", "length", "clip_ratio", "reward")

# Which direction is better, for roles a spec did not give a goal.
ROLE_GOALS = {"reward": "maximize", "entropy": "maximize", "length": "maximize"}

# `objective` is the metric whose progress plateau and still_improving judge.
OBJECTIVE_ROLES = {"supervised": ("val_loss", "loss"), "rl": ("reward",)}


@dataclass(frozen=True)
class Signal:
    """One metric of one run as a check sees it: logged points on the metric's own axis."""

    name: str
    key: str
    x: str
    steps: np.ndarray
    values: np.ndarray
    goal: str

    def __len__(self) -> int:
        return len(self.values)

    @property
    def finite(self) -> Signal:
        """The same signal without NaN and infinities (non_finite reports those)."""
        keep = np.isfinite(self.values)
        return Signal(self.name, self.key, self.x, self.steps[keep], self.values[keep], self.goal)

    def at(self, step: float) -> str:
        """`step 40`, or `train/step 40` when the metric has its own step axis."""
        axis = "step" if self.x == STEP else self.x
        return f"{axis} {step:g}"


class SignalResolver:
    """Finds the signal for a role or an alias in one run, once."""

    def __init__(
        self,
        run: Run,
        history: History,
        resolved: Mapping[str, ResolvedMetric],
        aliases: Mapping[str, MetricAlias],
    ):
        self.run = run
        self.history = history
        self.resolved = resolved
        self.aliases = aliases
        self._cache: dict[tuple[str, str], Signal | None] = {}

    def get(self, name: str, preset: str = "supervised") -> Signal | None:
        """An alias the spec defines, a role, or `objective`; None when the run lacks it."""
        cache_key = (name, preset if name == OBJECTIVE else "")
        if cache_key not in self._cache:
            self._cache[cache_key] = self._find(name, preset)
        return self._cache[cache_key]

    def _find(self, name: str, preset: str) -> Signal | None:
        if name == OBJECTIVE:
            for role in OBJECTIVE_ROLES[preset]:
                found = self.get(role)
                if found is not None:
                    return found
            return None
        if name not in ROLE_ALIASES:
            return self._from_alias(name, name)
        for alias in ROLE_ALIASES[name]:
            found = self._from_alias(alias, name)
            if found is not None and _kl_role_fits(name, found.key):
                return found
        if name == "ref_kl":
            # A spec alias `kl` that resolved to a KL-to-reference key is this role.
            found = self._from_alias("kl", name)
            if found is not None and found.key in KNOWN_KEYS["ref_kl"]:
                return found
        for key in KNOWN_KEYS[name]:
            if key in self.history:
                x = self.run.x_key_for(key)
                points = self.history.points(key, x)
                return _signal(name, key, x, points.xs, points.values, name)
        return None

    def _from_alias(self, alias: str, role: str) -> Signal | None:
        metric = self.resolved.get(alias)
        if metric is None or not metric.found or metric.key is None or not len(metric.points):
            return None
        goal = self.aliases[alias].goal if alias in self.aliases else None
        points = metric.points
        signal = _signal(alias, metric.key, metric.x_key, points.xs, points.values, role)
        if goal:
            signal = Signal(signal.name, signal.key, signal.x, signal.steps, signal.values, goal)
        return signal

    def tracked(self) -> list[Signal]:
        """Every spec alias that resolved to a logged key, then every role found, one per key."""
        seen: set[str] = set()
        found: list[Signal] = []
        names = [a for a, m in self.resolved.items() if m.expr is None]
        for name in [*names, *ROLES]:
            signal = self.get(name)
            if signal is not None and signal.key not in seen:
                seen.add(signal.key)
                found.append(signal)
        return found


def _kl_role_fits(role: str, key: str) -> bool:
    """Per-update KL and KL to the reference are different quantities with different healthy
    ranges: an alias for `kl` that resolved to a known KL-to-reference key is not per-update KL."""
    return not (role == "kl" and key in KNOWN_KEYS["ref_kl"])


def reward_components(history: History) -> list[str]:
    """Logged per-component reward keys (TRL's `train/rewards/<function>[/mean]`,
    `rewards/<function>`), without their standard deviations."""
    found = []
    logged = history.keys()
    for key in logged:
        parts = key.lower().split("/")
        if "rewards" not in parts[:-1] or parts[-1] in ("std", "min", "max"):
            continue
        after = parts[parts.index("rewards") + 1 :]
        if after and not after[0].endswith("_std") and after[-1] not in ("std",):
            found.append(key)
    return found


def _signal(
    name: str, key: str, x: str, steps: np.ndarray, values: np.ndarray, role: str
) -> Signal:
    goal = ROLE_GOALS.get(role) or goal_for(None, role if role in ROLE_ALIASES else name)
    return Signal(name, key, x, np.asarray(steps), np.asarray(values, dtype=float), goal)


def is_rl(resolver: SignalResolver) -> bool:
    """The `auto` preset's test: does the run log anything only RL runs log?"""
    return any(resolver.get(role) is not None for role in RL_ROLES)
