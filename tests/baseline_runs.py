"""Runs for the baseline and pull-request tests: two baseline seeds on main, candidates on a PR.

Every curve ends exactly at a chosen value, so the expected comparisons are plain arithmetic:
  loss(step)  = final_loss + (49 - step) / 49     (falls to final_loss at step 49; mean +0.5)
  score(step) = final_score * step / 49           (rises to final_score at step 49)
"""

from __future__ import annotations

from pathlib import Path

from runwriter import PlannedRun

STEPS = 50

# id: (name, tags, group, git_sha, final loss, final score or None)
RUNS = {
    "basea001": ("main-seed0", ["main"], "main", "aaa111", 0.50, 0.80),
    "baseb002": ("main-seed1", ["main"], "main", "aaa111", 0.52, 0.82),
    "candok01": ("pr-good", ["pr"], "pr-7", "bbb222", 0.49, 0.815),
    "candbad1": ("pr-regressed", ["pr"], "pr-7", "bbb222", 0.60, 0.70),
    "candpart": ("pr-no-score", ["partial"], "pr-7", "bbb222", 0.50, None),
}
BASELINE_IDS = ["basea001", "baseb002"]
CANDIDATE_IDS = ["candok01", "candbad1"]

HOSTILE_NAME = "@everyone <script>alert(1)</script> | `rm -rf` **bold** [x](http://evil)"


def rows(final_loss: float, final_score: float | None) -> list[dict[str, float]]:
    out = []
    for step in range(STEPS):
        row = {"train/loss": final_loss + (STEPS - 1 - step) / (STEPS - 1)}
        if final_score is not None:
            row["eval/score"] = final_score * step / (STEPS - 1)
        out.append(row)
    return out


def comparison_plans() -> list[PlannedRun]:
    return [
        PlannedRun(
            name=name,
            run_id=run_id,
            rows=rows(loss, score),
            tags=tags,
            group=group,
            config={"git_sha": sha, "lr": 1e-4},
        )
        for run_id, (name, tags, group, sha, loss, score) in RUNS.items()
    ]


def hostile_plan() -> PlannedRun:
    return PlannedRun(
        name=HOSTILE_NAME,
        run_id="hostile1",
        rows=rows(0.55, 0.75),
        tags=["hostile"],
        config={"git_sha": "ccc333"},
    )


WIDE_KEYS = 120


def wide_plans() -> list[PlannedRun]:
    """A baseline and three candidates logging many metrics: a comment far over 65,536 chars."""
    plans = []
    for i, run_id in enumerate(["widebase", "widecan1", "widecan2", "widecan3"]):
        plans.append(
            PlannedRun(
                name=f"wide-{run_id}-" + "x" * 40,
                run_id=run_id,
                rows=[
                    {
                        f"metric/m{k:03d}": (k + 1) * (1.0 + 0.01 * i) - step / 20
                        for k in range(WIDE_KEYS)
                    }
                    for step in range(20)
                ],
                tags=["wide-main" if i == 0 else "wide-pr"],
            )
        )
    return plans


def wide_metrics() -> str:
    """Aliases m000… for the wide runs; m000 is minimized, so every candidate regresses on it."""
    first = "  m000: {key: metric/m000, goal: minimize}\n"
    return first + "".join(f"  m{k:03d}: metric/m{k:03d}\n" for k in range(1, WIDE_KEYS))


def comparison_spec(
    path: Path,
    runs_dir: Path,
    out: Path,
    body: str,
    tags: str = "[main, pr]",
    comment: str | None = None,
    metrics: str = "  loss: train/loss\n  score: {key: eval/score, goal: maximize}\n",
) -> Path:
    """A spec over the comparison runs; `body` adds the baseline and candidate sections."""
    text = (
        "version: 1\n"
        "title: PR 7 against main\n"
        f'source: {{type: wandb-offline, path: "{runs_dir}"}}\n'
        f"runs: {{filters: {{tags: {{any: {tags}}}}}}}\n"
        f"metrics:\n{metrics}"
        f'outputs:\n  dir: "{out}"\n  formats: [markdown, json]\n'
    )
    if comment is not None:
        text += f"  comment: {comment}\n"
    path.write_text(text + body, encoding="utf-8")
    return path
