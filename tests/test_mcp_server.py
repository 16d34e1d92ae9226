"""`reportgen mcp`, started as a subprocess and driven over stdio by the MCP SDK's own client.

One server session per module: initialize, list the tools, call each tool on the demo runs
(examples/wandb) and on runs written by the real wandb client, and send bad arguments, which
must come back as tool errors carrying the CLI's one-line message while the server goes on.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

mcp = pytest.importorskip("mcp")

from mcp import ClientSession, StdioServerParameters  # noqa: E402
from mcp.client.stdio import stdio_client  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEMO = str(REPO / "examples" / "wandb")
TOOLS = {
    "list_runs",
    "list_keys",
    "export_table",
    "health",
    "compare_runs",
    "show_run",
    "build_spec",
}


def with_server(script: Callable[[ClientSession], Awaitable[Any]], cwd: Path) -> Any:
    """Run `script` against a fresh `reportgen mcp` process (python -m reportgen mcp)."""

    async def session() -> Any:
        params = StdioServerParameters(
            command=sys.executable,
            args=["-m", "reportgen", "mcp"],
            cwd=str(cwd),
            env={"REPORTGEN_CACHE_DIR": os.environ["REPORTGEN_CACHE_DIR"]},
        )
        with open(os.devnull, "w") as quiet:
            async with (
                stdio_client(params, errlog=quiet) as (read, write),
                ClientSession(read, write) as client,
            ):
                info = await client.initialize()
                assert info.server_info.name == "reportgen"
                return await script(client)

    return asyncio.run(asyncio.wait_for(session(), timeout=300))


def text_of(result: Any) -> str:
    return "".join(getattr(part, "text", "") for part in result.content)


def answer(result: Any) -> Any:
    assert not result.is_error, text_of(result)
    return json.loads(text_of(result))


@pytest.fixture(scope="module")
def session_results(project_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Every call of the session, made once; the tests below read what came back."""
    out = tmp_path_factory.mktemp("mcp")

    async def script(client: ClientSession) -> dict:
        results: dict[str, Any] = {"tools": await client.list_tools()}
        calls = {
            "runs": ("list_runs", {"source": DEMO, "tag": ["grpo"]}),
            "keys": ("list_keys", {"source": DEMO, "run": "47a724db", "match": "^response"}),
            "export": (
                "export_table",
                {
                    "source": DEMO,
                    "metrics": ["entropy", "clip_ratio", "length"],
                    "every": 100,
                    "pick": "min mean length",
                    "output": str(out / "shortest.csv"),
                    "rows_inline": 3,
                },
            ),
            "health": ("health", {"source": DEMO, "run": ["8e054617", "47a724db"]}),
            "compare": (
                "compare_runs",
                {"source": DEMO, "runs": ["47a724db", "8e054617"], "metrics": ["entropy"]},
            ),
            "show": ("show_run", {"source": str(project_dir), "run": "rlshort1", "match": "len"}),
            "build": (
                "build_spec",
                {
                    "spec": f"version: 1\nsource: {{type: wandb-offline, path: {DEMO}}}\n"
                    "select: {short: {by: length, reduce: mean, pick: min}}\n"
                    "metrics: {length: response_length/mean}\n"
                    "outputs: {formats: [csv]}\n",
                    "out_dir": str(out / "built"),
                },
            ),
            "missing_folder": ("list_runs", {"source": str(out / "nope")}),
            "bad_pick": (
                "export_table",
                {"source": DEMO, "metrics": ["length"], "every": 10, "pick": "smallest"},
            ),
            "bad_type": ("export_table", {"source": DEMO, "metrics": ["length"], "every": "x"}),
            "unknown_run": ("show_run", {"source": DEMO, "run": "grpo-lr3e-1"}),
            "after_errors": ("list_runs", {"source": DEMO, "latest": 1}),
        }
        for name, (tool, arguments) in calls.items():
            results[name] = await client.call_tool(tool, arguments)
        results["out"] = out
        return results

    return with_server(script, project_dir.parent)


def test_the_server_lists_every_tool_with_a_description(session_results):
    tools = {tool.name: tool for tool in session_results["tools"].tools}
    assert set(tools) == TOOLS
    assert all(tool.description for tool in tools.values())
    assert "every" in tools["export_table"].input_schema["required"]


def test_list_runs_and_list_keys(session_results):
    runs = answer(session_results["runs"])["runs"]
    assert [r["id"] for r in runs] == ["21c233f8", "47a724db", "3092b5db", "6b000021", "8e054617"]
    assert runs[0]["state"] == "failed"
    assert runs[1]["steps"] == [0, 599, 600]
    keys = answer(session_results["keys"])
    assert [row[0] for row in keys["keys"]] == [
        "response_length/clip_ratio",
        "response_length/mean",
    ]
    assert keys["keys"][1][1:4] == ["float", 1, 600]


def test_export_table_picks_the_run_and_writes_the_csv(session_results):
    data = answer(session_results["export"])
    (selection,) = data["selections"]
    assert selection["run_id"] == "47a724db"
    assert "lowest mean length (response_length/mean) = 4.076 of 5 runs" in selection["reason"]
    csv_path = session_results["out"] / "shortest.csv"
    assert data["tables"][0]["path"] == str(csv_path)
    assert data["tables"][0]["rows"] == 7
    lines = csv_path.read_text().splitlines()
    assert lines[0] == "step,entropy,clip_ratio,length"
    assert [row[0] for row in data["rows"]["shortest.csv"]] == [0, 100, 200]
    assert data["rows"]["shortest.csv"][1][3] == float(lines[2].split(",")[3])
    assert len(text_of(session_results["export"])) < 2000


def test_health_gives_verdicts_and_findings_with_steps(session_results):
    data = answer(session_results["health"])
    verdicts = {r["id"]: r["verdict"] for r in data["runs"]}
    assert verdicts == {"8e054617": "ugly", "47a724db": "good"}
    collapsed = next(r for r in data["runs"] if r["id"] == "8e054617")
    assert collapsed["findings"][0][:3] == ["ugly", "entropy_collapse", 18]
    assert data["next_experiments"]


def test_compare_runs_and_show_run(session_results):
    data = answer(session_results["compare"])
    assert data["config"]["actor.lr"] == [0.01, 0.3]
    other = data["metrics"]["entropy"]["others"][0]
    assert other[0] == "8e054617" and other[4] == "worse"
    shown = answer(session_results["show"])
    assert shown["run"]["id"] == "rlshort1"
    assert shown["config"]["actor.lr"] == 1e-06
    assert sorted(shown["schema"]) == ["response_length/clip_ratio", "response_length/mean"]
    assert shown["schema"]["response_length/mean"][:2] == ["float", 1050]


def test_build_spec_returns_the_summary(session_results):
    data = answer(session_results["build"])
    assert data["exit_code"] == 0
    assert data["selections"][0]["run_id"] == "47a724db"
    assert (session_results["out"] / "built" / "short_length_experiment.csv").is_file()


def test_bad_arguments_are_tool_errors_with_the_cli_message(session_results):
    missing = session_results["missing_folder"]
    assert missing.is_error
    assert "source.path: folder" in text_of(missing) and "does not exist" in text_of(missing)
    pick = session_results["bad_pick"]
    assert pick.is_error and "--pick 'smallest': expected 'min|max REDUCE METRIC'" in text_of(pick)
    assert session_results["bad_type"].is_error
    unknown = session_results["unknown_run"]
    assert unknown.is_error
    assert "did you mean 'grpo-lr3e-1-ent0'?" in text_of(unknown)


def test_the_server_answers_after_errors(session_results):
    assert [r["id"] for r in answer(session_results["after_errors"])["runs"]] == ["22a2978e"]


def test_results_are_sent_once_as_text(session_results):
    result = session_results["export"]
    assert result.structured_content is None
    assert [part.type for part in result.content] == ["text"]
