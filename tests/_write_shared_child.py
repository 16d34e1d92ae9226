"""One writer process of a shared-mode run (run by tests/test_step_axes.py with the real client).

    python _write_shared_child.py ROLE OUT_DIR RUN_ID FLAG_FILE

ROLE `primary` declares `train/*` against `train/step`, logs five training steps, waits until
the secondary has finished (FLAG_FILE exists), prints a line and raises: the run's crash.
ROLE `secondary` waits until the primary has logged, then declares `rollout/*` against `rollout/step`, logs three rollouts and two
`train/loss` values at train steps 3 and 4 (the same key and x as the primary: two writers meet),
prints its lines and exits cleanly before the primary crashes.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import wandb

role, out, run_id, flag = sys.argv[1], sys.argv[2], sys.argv[3], Path(sys.argv[4])
primary = role == "primary"
started = flag.with_name(flag.name + ".primary")
if not primary:  # start after the primary has logged: the secondary is the later fragment
    deadline = time.time() + 60
    while not started.exists() and time.time() < deadline:
        time.sleep(0.1)
settings = wandb.Settings(
    mode="shared", x_label=role, x_primary=primary, x_update_finish_state=primary
)
run = wandb.init(
    project="shared",
    entity="tester",
    id=run_id,
    dir=out,
    settings=settings,
    name="rl-shared" if primary else None,
    group="slime-like" if primary else None,
    tags=["shared"] if primary else None,
)
if primary:
    run.define_metric("train/step")
    run.define_metric("train/*", step_metric="train/step")
    for i in range(5):
        run.log({"train/step": i, "train/loss": 1.0 / (i + 1), "train/grad_norm": 0.0})
    started.write_text("logged")
    print("primary: waiting for the rollout worker", flush=True)
    deadline = time.time() + 60
    while not flag.exists() and time.time() < deadline:
        time.sleep(0.1)
    time.sleep(0.3)
    print("primary: giving up", flush=True)
    raise RuntimeError("TaskCancelledError: the rollout actor died")
run.define_metric("rollout/step")
run.define_metric("rollout/*", step_metric="rollout/step")
for i in range(3):
    run.log({"rollout/step": i, "rollout/raw_reward": 0.0, "rollout/response_len": 10.0 + i})
for i in (3, 4):
    run.log({"train/step": i, "train/loss": 7.0 + i})
for i in range(3):
    print(f"secondary: rollout log line {i}", flush=True)
run.finish()
flag.write_text("done")
