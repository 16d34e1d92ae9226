"""Child process of runwriter.py: reads plans as JSON on stdin and logs them with wandb."""

import json
import os
import signal
import sys
import time

import wandb


def log_plan(root: str, plan: dict) -> None:
    run = wandb.init(
        mode="offline",
        dir=root,
        project=plan["project"],
        entity=plan["entity"],
        name=plan["name"],
        id=plan["run_id"],
        resume="allow" if plan["resume"] else None,
        config=plan["config"],
        tags=plan["tags"],
        group=plan["group"],
        job_type=plan["job_type"],
    )
    for metric in plan["define_metrics"]:
        run.define_metric(**metric)
    steps = plan["steps"] or list(range(len(plan["rows"])))
    for step, row in zip(steps, plan["rows"], strict=False):
        run.log(row, step=step)
    for line in plan["prints"]:
        print(line, flush=True)
    for key, value in plan["summary"].items():
        run.summary[key] = value
    if plan["crash"]:
        raise RuntimeError(plan["crash"])
    if plan.get("interrupt"):
        raise KeyboardInterrupt
    if plan.get("kill"):
        time.sleep(1.0)  # let wandb-core write what it has, then die without an exit record
        os.kill(os.getpid(), signal.SIGKILL)
    run.finish(exit_code=plan["exit_code"])


def main() -> None:
    root = sys.argv[1]
    for plan in json.loads(sys.stdin.read()):
        log_plan(root, plan)


if __name__ == "__main__":
    main()
