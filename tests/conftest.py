"""Shared fixtures: real runs written once per session by the real wandb client."""

from __future__ import annotations

import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from runwriter import PlannedRun, hermetic_env, write_runs
from wandb_ingest_server import IngestServer

LONG_STEPS = 1050  # steps 0..1049: the last step is not on the 100-step grid


def response_length(run_index: int, step: int) -> float:
    """Each RL run's length curve; run 0 is shortest on average."""
    return 40.0 + 15.0 * run_index + 5.0 * math.sin(step / 37.0) - step / 200.0


def rl_rows(run_index: int) -> list[dict[str, float]]:
    return [
        {
            "actor/entropy_loss": 1.5 - step / 2000.0 + 0.01 * math.cos(step / 11.0 + run_index),
            "response_length/clip_ratio": 0.02 * run_index + 0.001 * (step % 7),
            "response_length/mean": response_length(run_index, step),
        }
        for step in range(LONG_STEPS)
    ]


RL_IDS = ["rlmid001", "rlshort1", "rllong01"]
RL_INDEX = {"rlshort1": 0, "rlmid001": 1, "rllong01": 2}


def supervised_rows() -> list[dict[str, float]]:
    rows = []
    for step in range(200):
        row = {"train/loss": float("nan") if step >= 120 else 2.0 / (1 + step)}
        if step % 10 == 0:
            row["val/loss"] = 2.5 / (1 + step)
        rows.append(row)
    return rows


def project_plans() -> list[PlannedRun]:
    plans = [
        PlannedRun(
            name=f"grpo-{run_id}",
            run_id=run_id,
            rows=rl_rows(RL_INDEX[run_id]),
            config={"actor": {"lr": 1e-6 * (1 + RL_INDEX[run_id])}, "seed": RL_INDEX[run_id]},
            tags=["grpo", "sweep"],
            group="grpo-sweep",
        )
        for run_id in RL_IDS
    ]
    plans += [
        PlannedRun(name="sft-nan", run_id="sftnan01", rows=supervised_rows(), tags=["sft"]),
        PlannedRun(
            name="grpo-tiny",
            run_id="grpotiny",
            rows=rl_rows(0)[:30],
            tags=["grpo"],
            config={"actor": {"lr": 5e-7}},
        ),
        PlannedRun(
            name="resumed",
            run_id="resume01",
            rows=[{"train/loss": 1.0 / (1 + s)} for s in range(50)],
            tags=["sft"],
        ),
        PlannedRun(
            name="resumed",
            run_id="resume01",
            rows=[{"train/loss": 1.0 / (1 + s)} for s in range(50, 100)],
            steps=list(range(50, 100)),
            resume=True,
            tags=["sft"],
        ),
        PlannedRun(
            name="crasher",
            run_id="crash001",
            rows=[{"train/loss": 1.0} for _ in range(20)],
            crash="CUDA out of memory. Tried to allocate 2.00 GiB",
            tags=["sft"],
        ),
    ]
    return plans


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory):
    """Builds in tests never touch the user's cache folder (~/.cache/reportgen)."""
    previous = os.environ.get("REPORTGEN_CACHE_DIR")
    os.environ["REPORTGEN_CACHE_DIR"] = str(tmp_path_factory.mktemp("reportgen-cache"))
    yield
    if previous is None:
        os.environ.pop("REPORTGEN_CACHE_DIR", None)
    else:
        os.environ["REPORTGEN_CACHE_DIR"] = previous


@pytest.fixture(scope="session")
def project_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder of real offline runs shared by the tests that only read it."""
    return write_runs(tmp_path_factory.mktemp("project"), project_plans())


@pytest.fixture
def project_copy(project_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the project, for tests that damage files."""
    target = tmp_path / "project"
    shutil.copytree(project_dir, target, symlinks=True)
    return target


def write_spec(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def cached_metas(cache: Path, area: str = "*") -> list[Path]:
    """The metadata file of every entry in a cache folder's current layout, one per entry:
    `entries/<name>.json`, whose name has one dot (a side file's, `<name>.console.json`, two)."""
    from reportgen.cache import LAYOUT

    found = cache.glob(f"{LAYOUT}/{area}/entries/*.json")
    return sorted(path for path in found if path.name.count(".") == 1)


@pytest.fixture(scope="session")
def shared_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One shared-mode run, written by a primary and a secondary process of the real client."""
    root = tmp_path_factory.mktemp("shared")
    child = Path(__file__).with_name("_write_shared_child.py")
    flag = root / "secondary-done"
    with IngestServer() as server:
        env = hermetic_env(root)
        env.update(WANDB_BASE_URL=server.url, WANDB_API_KEY="k" * 40, WANDB_INIT_TIMEOUT="60")
        run = [sys.executable, str(child)]
        primary = subprocess.Popen([*run, "primary", str(root), "shared01", str(flag)], env=env)
        secondary_env = dict(env, WANDB_X_LABEL="secondary")
        # The secondary starts after the primary (its folder is the later fragment).
        subprocess.run(
            [*run, "secondary", str(root), "shared01", str(flag)],
            env=secondary_env,
            check=True,
            timeout=120,
        )
        assert primary.wait(timeout=120) == 1  # the primary crashed, as planned
    return root


@pytest.fixture(scope="session")
def relogged_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run resumed from a checkpoint at step 30 after logging steps 0..39: 30..39 twice."""
    first = PlannedRun(
        name="relog",
        run_id="relog001",
        exit_code=1,
        rows=[{"train/loss": float(s)} for s in range(40)],
    )
    second = PlannedRun(
        name="relog",
        run_id="relog001",
        resume=True,
        steps=list(range(30, 60)),
        rows=[{"train/loss": 1000.0 + s} for s in range(30, 60)],
    )
    return write_runs(tmp_path_factory.mktemp("relog"), [first, second])
