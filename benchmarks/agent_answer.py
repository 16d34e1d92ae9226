"""How many characters an agent reads to answer one everyday question with reportgen.

The question (issue 14): "which run has the shortest answers? save entropy, clip ratio and
length every 100 steps to a CSV", on the bundled demo runs (examples/wandb). Measured two ways:

1. the CLI: `reportgen export … --pick "min mean length" -o FILE.csv` (its stdout and stderr
   are what the agent reads; the default output is the --summary);
2. MCP: `reportgen mcp` driven by the SDK's real client over stdio — the tool list the agent
   reads once per session, and the text of the one export_table call.

    .venv/bin/python benchmarks/agent_answer.py          (goal: the CLI answer ≤ 1,500)
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
REPORTGEN = str(Path(sys.executable).with_name("reportgen"))
GOAL = 1500


def cli_answer(out: Path) -> str:
    command = [
        REPORTGEN,
        "export",
        "examples/wandb",
        "--metrics",
        "entropy,clip_ratio,length",
        "--every",
        "100",
        "--pick",
        "min mean length",
        "-o",
        str(out / "shortest.csv"),
    ]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True)
    return done.stdout + done.stderr


async def mcp_answer(out: Path) -> tuple[str, str]:
    from mcp import ClientSession, StdioServerParameters
    from mcp.client.stdio import stdio_client

    params = StdioServerParameters(command=REPORTGEN, args=["mcp"], cwd=str(ROOT))
    async with stdio_client(params) as (read, write), ClientSession(read, write) as session:
        await session.initialize()
        tools = await session.list_tools()
        listing = "".join(
            t.name
            + (t.description or "")
            + json.dumps(t.input_schema)
            + (json.dumps(t.output_schema) if t.output_schema else "")
            for t in tools.tools
        )
        result = await session.call_tool(
            "export_table",
            {
                "source": "examples/wandb",
                "metrics": ["entropy", "clip_ratio", "length"],
                "every": 100,
                "pick": "min mean length",
                "output": str(out / "shortest-mcp.csv"),
            },
        )
        text = "".join(getattr(c, "text", "") for c in result.content)
        return listing, text


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        cli = cli_answer(out)
        listing, mcp_text = asyncio.run(mcp_answer(out))
    print(cli, end="")
    print("---")
    print(mcp_text)
    print("---")
    print(
        f"CLI (export … --summary): {len(cli):,} characters (goal ≤ {GOAL:,}: {len(cli) / GOAL:.2f}× the goal)"
    )
    print(f"MCP export_table result: {len(mcp_text):,} characters")
    print(f"MCP tool list (read once per session): {len(listing):,} characters")
    print(f"MCP total for this question: {len(listing) + len(mcp_text):,} characters")


if __name__ == "__main__":
    main()
