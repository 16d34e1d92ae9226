"""Write W&B runs for tests with the real `wandb` client in offline mode.

Each plan is logged by real `wandb.init(mode="offline")` / `run.log` / `run.finish` calls in a
child process (wandb settings are read once per process, and a crash must really end one).
Plans without a crash share one child; each crashing or killed plan gets its own.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CHILD = Path(__file__).with_name("_write_runs_child.py")


@dataclass
class PlannedRun:
    """What one run logs. `rows[i]` is logged at step `steps[i]` (default: i)."""

    name: str
    rows: list[dict[str, Any]]
    run_id: str | None = None
    steps: list[int] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    tags: list[str] = field(default_factory=list)
    group: str | None = None
    job_type: str | None = None
    project: str = "tests"
    entity: str = "tester"
    resume: bool = False
    exit_code: int = 0
    crash: str | None = None
    kill: bool = False  # SIGKILL the writer after logging: no exit record, like a killed job
    interrupt: bool = False  # raise KeyboardInterrupt after logging, as Ctrl-C does
    define_metrics: list[dict[str, str]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    prints: list[str] = field(default_factory=list)


def hermetic_env(root: Path) -> dict[str, str]:
    """An environment in which wandb touches nothing outside `root` and no network."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WANDB_")}
    env.update(
        WANDB_DIR=str(root),
        WANDB_CONFIG_DIR=str(root / ".wandb-config"),
        WANDB_CACHE_DIR=str(root / ".wandb-cache"),
        WANDB_DATA_DIR=str(root / ".wandb-data"),
        WANDB_SILENT="true",
        WANDB_ERROR_REPORTING="false",
        WANDB_DISABLE_GIT="true",
        WANDB_DISABLE_CODE="true",
    )
    return env


def _run_child(root: Path, plans: list[PlannedRun]) -> None:
    payload = json.dumps([asdict(p) for p in plans])
    done = subprocess.run(
        [sys.executable, str(CHILD), str(root)],
        input=payload,
        text=True,
        capture_output=True,
        env=hermetic_env(root),
        timeout=300,
    )
    expect_crash = any(p.crash or p.kill or p.interrupt for p in plans)
    if done.returncode != 0 and not expect_crash:
        raise RuntimeError(f"writing runs failed:\n{done.stdout}\n{done.stderr}")


def write_runs(root: Path, plans: list[PlannedRun]) -> Path:
    """Log every plan under root (as root/wandb/offline-run-*); returns root."""
    root.mkdir(parents=True, exist_ok=True)
    calm = [p for p in plans if not (p.crash or p.kill or p.interrupt or p.resume)]
    resumes = [p for p in plans if p.resume]
    batches = ([calm] if calm else []) + [[p] for p in plans if p.crash or p.kill or p.interrupt]
    with ThreadPoolExecutor(max_workers=2) as pool:
        list(pool.map(lambda batch: _run_child(root, batch), batches))
    if resumes:
        # wandb names a run's folder by the second its init started: a resumed run begun in
        # the same second as its first part would share (and overwrite) that part's folder.
        time.sleep(1 - time.time() % 1)
        _run_child(root, resumes)
    latest = root / "wandb" / "latest-run"
    assert latest.is_symlink() or not latest.exists()
    return root


def wandb_files(root: Path) -> dict[str, Path]:
    """run id → its .wandb file (the first folder found for that id)."""
    found: dict[str, Path] = {}
    for path in sorted((root / "wandb").glob("*run-*/run-*.wandb")):
        found.setdefault(path.stem.removeprefix("run-"), path)
    return found
