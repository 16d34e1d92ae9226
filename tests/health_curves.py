"""Realistic training curves for health-check tests: healthy-but-noisy ones and pathologies.

Shapes follow what real runs log: power-law losses with heavy-tailed batch noise, validation
every few steps, log-normal gradient norms, and GRPO/PPO-style RL curves (saturating reward,
entropy that settles well above zero, a tiny noisy KL that may go negative, small clip
fractions, a response length that drifts). Each generator is deterministic for a seed.
"""

from __future__ import annotations

import math

import numpy as np

Row = dict[str, float]


def _heavy(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-scale noise with heavier tails than a normal (Student t, 5 degrees of freedom)."""
    return rng.standard_t(5, n) / math.sqrt(5 / 3)


def supervised_curves(seed: int, n: int = 600, val_every: int = 10) -> list[Row]:
    """A healthy supervised run: a power-law loss with 2–8% batch noise, val, grad norm, lr."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    floor, scale = rng.uniform(0.3, 1.5), rng.uniform(1.0, 4.0)
    alpha, t0 = rng.uniform(0.3, 0.7), n * rng.uniform(0.01, 0.05)
    clean = floor + scale * ((t + t0) / t0) ** -alpha
    noise = rng.uniform(0.02, 0.06)
    loss = clean * (1 + noise * _heavy(rng, n))
    val = clean * (1.03 + 0.01 * rng.standard_normal(n))
    g0, g_inf = rng.uniform(2, 6), rng.uniform(0.2, 0.8)
    grad = (g_inf + g0 * np.exp(-t / (n / 20))) * np.exp(
        rng.uniform(0.15, 0.35) * rng.standard_normal(n)
    )
    warm = max(1, n // 30)
    lr = 3e-4 * np.minimum(1, (t + 1) / warm) * (0.1 + 0.45 * (1 + np.cos(np.pi * t / n)))
    rows = []
    for i in range(n):
        row = {"train/loss": loss[i], "grad_norm": grad[i], "lr": lr[i]}
        if i % val_every == 0 or i == n - 1:
            row["val/loss"] = val[i]
        rows.append(row)
    return rows


def rl_curves(seed: int, n: int = 600) -> list[Row]:
    """A healthy GRPO-style run: reward rises and saturates, entropy settles, KL stays small."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    r0, r1 = rng.uniform(-0.3, 0.3), rng.uniform(0.6, 0.95)
    tau = rng.uniform(n / 10, n / 4)
    reward = r0 + (r1 - r0) * (1 - np.exp(-t / tau)) + rng.uniform(0.02, 0.06) * _heavy(rng, n)
    e0, keep = rng.uniform(0.6, 2.0), rng.uniform(0.2, 0.6)
    entropy = e0 * (keep + (1 - keep) * np.exp(-t / rng.uniform(n / 8, n / 3)))
    entropy *= 1 + 0.03 * rng.standard_normal(n)
    k = rng.uniform(3e-4, 3e-3)
    kl = k * np.exp(0.4 * rng.standard_normal(n)) + 0.3 * k * rng.standard_normal(n)
    clipfrac = np.clip(rng.uniform(0.005, 0.1) * np.exp(0.4 * rng.standard_normal(n)), 0, 1)
    l0 = rng.uniform(100, 400)
    l1 = l0 * rng.uniform(0.7, 2.2)
    length = l0 + (l1 - l0) * (1 - np.exp(-t / rng.uniform(n / 6, n / 2)))
    length *= 1 + 0.05 * rng.standard_normal(n)
    clip_ratio = np.clip(rng.uniform(0.0, 0.04) + 0.01 * rng.standard_normal(n), 0, 1)
    grad = rng.uniform(0.05, 0.5) * np.exp(rng.uniform(0.15, 0.35) * rng.standard_normal(n))
    return [
        {
            "critic/score/mean": reward[i],
            "actor/entropy": entropy[i],
            "actor/ppo_kl": kl[i],
            "actor/pg_clipfrac": clipfrac[i],
            "response_length/mean": length[i],
            "response_length/clip_ratio": clip_ratio[i],
            "actor/grad_norm": grad[i],
            "actor/pg_loss": 0.05 * rng.standard_normal(),
        }
        for i in range(n)
    ]
