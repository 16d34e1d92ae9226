"""The composite GitHub Action: its build step, run by bash as a runner would, posts the comment.

The step's script is taken from action.yml and run with the inputs a workflow would pass, the
installed `reportgen` on PATH, and a loopback GitHub; what it writes to GITHUB_OUTPUT is what
the action's later steps (artifact upload, exit code) read.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from baseline_runs import comparison_plans, comparison_spec
from forge_servers import ForgeServer
from runwriter import write_runs

ROOT = Path(__file__).resolve().parent.parent
TOKEN = "ghs_action0123456789token"


@pytest.fixture(scope="module")
def action() -> dict:
    return yaml.safe_load((ROOT / "action.yml").read_text())


def step(action: dict, step_id: str) -> dict:
    return next(s for s in action["runs"]["steps"] if s.get("id") == step_id)


def test_the_action_is_composite_and_passes_the_exit_code_on(action):
    assert action["runs"]["using"] == "composite"
    assert action["inputs"]["spec"]["required"] is True
    names = [s.get("name") for s in action["runs"]["steps"]]
    assert names == [
        "Set up Python",
        "Install reportgen",
        "Build the report",
        "Keep the full report",
        "Pass on the exit code",
    ]
    upload = action["runs"]["steps"][3]
    assert upload["if"].startswith("always()")  # the report is kept when the gate fails


def test_inputs_reach_scripts_only_through_env(action):
    """No ${{ }} inside a run script: an input can never inject shell code."""
    for s in action["runs"]["steps"]:
        assert "${{" not in s.get("run", "")


def test_the_build_step_posts_the_comment_and_records_the_exit_code(action, tmp_path):
    runs = write_runs(tmp_path / "runs", comparison_plans()[:4])
    body = "baseline:\n  ids: [basea001, baseb002]\n  tolerances: {loss: {abs: 0.05}}\n"
    spec = comparison_spec(tmp_path / "pr.yaml", runs, tmp_path / "ignored", body)
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"pull_request": {"number": 5}}))
    output, summary = tmp_path / "github_output", tmp_path / "summary.md"
    build = step(action, "build")
    inputs = {
        "github-token": TOKEN,
        "spec": str(spec),
        "out": str(tmp_path / "out"),
        "comment": "true",
    }
    env = {
        name: re.sub(r"\$\{\{ inputs\.([\w-]+) \}\}", lambda m: inputs[m.group(1)], value)
        for name, value in build["env"].items()
    }
    bin_dir = str(Path(sys.executable).parent)
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GITLAB_", "CI_"))}
    with ForgeServer(TOKEN) as server:
        server.open_pull_request("acme/trainer", 5)
        done = subprocess.run(
            ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", build["run"]],
            env={
                **clean,
                **env,
                "PATH": bin_dir + os.pathsep + clean.get("PATH", ""),
                "GITHUB_ACTIONS": "true",
                "GITHUB_REPOSITORY": "acme/trainer",
                "GITHUB_API_URL": server.github_api,
                "GITHUB_EVENT_PATH": str(event),
                "GITHUB_OUTPUT": str(output),
                "GITHUB_STEP_SUMMARY": str(summary),
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
        comments = server.comments("acme/trainer", 5)
    assert done.returncode == 0, done.stderr  # the step itself succeeds; a later step fails
    assert output.read_text().splitlines() == [
        "exit-code=1",
        f"comment-file={tmp_path / 'out'}/comment.md",
    ]
    assert len(comments) == 1 and comments[0]["body"].startswith("<!-- reportgen:pr -->")
    assert (tmp_path / "out" / "comment.md").read_text() == comments[0]["body"]
    assert TOKEN not in done.stdout + done.stderr


def test_the_example_workflow_uses_the_action_on_a_spec_that_exists():
    workflow = yaml.safe_load((ROOT / "examples" / "ci" / "github-workflow.yml").read_text())
    assert workflow["permissions"]["pull-requests"] == "write"
    (uses,) = [s for s in workflow["jobs"]["report"]["steps"] if s.get("uses") == "./"]
    assert (ROOT / uses["with"]["spec"]).is_file()
