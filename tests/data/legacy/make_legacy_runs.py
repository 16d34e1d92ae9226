"""Write the legacy-writer test runs with a real old wandb release (kept small, committed here).

wandb <= 0.15 (and the legacy Python writer of 0.19.x) leave `history.step.num` unset and carry
the step only as a `_step` item. No current client writes that shape, so the files beside this
script were written by wandb 0.15.12, installed into a throwaway virtualenv:

    python3 tests/data/legacy/make_legacy_runs.py            # rewrites tests/data/legacy/wandb/

The virtualenv lives in a temporary folder and is deleted afterwards. The child script below is
what runs inside it; the values it logs are the ones tests/test_step_axes.py asserts.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

HERE = Path(__file__).resolve().parent
RELEASE = "wandb==0.15.12"
# 0.15 predates protobuf 5 and Python 3.12's removal of distutils/pkg_resources defaults.
PINS = ["protobuf<4.22", "setuptools<70"]

CHILD = textwrap.dedent(
    """
    import math, sys
    import wandb

    out = sys.argv[1]

    # A classic loop: one log per iteration, the step implied by the call count.
    run = wandb.init(mode="offline", dir=out, project="legacy", id="legacyppo",
                     name="ppo-legacy", config={"lr": 0.0003, "env": "CartPole-v1"})
    for i in range(40):
        wandb.log({"charts/episodic_return": float(10 + i), "losses/entropy": 0.7 - 0.01 * i})
    run.summary["final"] = 1.5
    run.finish()

    # Explicit steps, a key logged at another cadence, several logs at one step (commit=False),
    # a NaN and an infinity, and a custom step metric declared with define_metric.
    run = wandb.init(mode="offline", dir=out, project="legacy", id="legacysteps",
                     name="steps-legacy")
    wandb.define_metric("eval/step")
    wandb.define_metric("eval/*", step_metric="eval/step")
    for step in range(0, 30, 3):
        wandb.log({"train/loss": 1.0 / (step + 1)}, step=step)
        if step % 9 == 0:
            wandb.log({"eval/acc": step / 100.0, "eval/step": step // 9})
    wandb.log({"train/weird": float("nan")}, step=30)
    wandb.log({"train/weird": float("inf")}, step=31)
    run.finish()
    """
)


def main() -> None:
    target = HERE / "wandb"
    with tempfile.TemporaryDirectory(prefix="legacy-wandb-") as tmp:
        venv = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, RELEASE, *PINS], check=True)
        out = Path(tmp) / "out"
        out.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
        env.update(
            WANDB_SILENT="true",
            WANDB_CONFIG_DIR=str(Path(tmp) / "config"),
            WANDB_CACHE_DIR=str(Path(tmp) / "cache"),
            WANDB_ERROR_REPORTING="false",
        )
        subprocess.run([str(venv / "bin" / "python"), "-c", CHILD, str(out)], check=True, env=env)
        shutil.rmtree(target, ignore_errors=True)
        target.mkdir()
        for folder in sorted((out / "wandb").glob("offline-run-*")):
            wandb_file = next(folder.glob("run-*.wandb"))
            (target / folder.name).mkdir()
            shutil.copy2(wandb_file, target / folder.name / wandb_file.name)
    total = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    print(f"wrote {target} ({total:,} bytes)")


if __name__ == "__main__":
    main()
