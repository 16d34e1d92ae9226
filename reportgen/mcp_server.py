"""`reportgen mcp`: reportgen's jobs as Model Context Protocol tools, served on stdio.

Built on the official `mcp` SDK (the optional `mcp` extra); reportgen imports without it.
Every tool returns compact JSON text (reportgen.agent_tools makes it). A user error — a
missing folder, an unknown run, a bad option — comes back as a tool error carrying the CLI's
one-line message; anything else is reported as a tool error too, and the server goes on.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reportgen import agent_tools
from reportgen.errors import ReportgenError, UsageError
from reportgen.quickspec import ExportRequest, RunChoice
from reportgen.render.summary import dumps

INSTRUCTIONS = """reportgen reads Weights & Biases runs (a folder of local run folders, or
wandb://ENTITY/PROJECT) and answers with exact, checked numbers. Start with list_runs or
list_keys; export_table writes metrics sampled every N steps to CSV (pick a run with
pick="min mean length"); health gives Good/Bad/Ugly verdicts; compare_runs diffs runs;
show_run gives one run's config, summary and key schema; build_spec runs a YAML spec."""


def _answer(job: Callable[[], dict[str, Any]]) -> str:
    """Compact JSON, or a ToolError with the one-line message the CLI would print."""
    from mcp.server.mcpserver.exceptions import ToolError

    try:
        return dumps(job())
    except ReportgenError as exc:
        raise ToolError(str(exc)) from None
    except (OSError, ValueError) as exc:
        raise ToolError(f"{type(exc).__name__}: {exc}") from None


def make_server() -> Any:
    """The MCPServer with reportgen's tools registered (needs the `mcp` package)."""
    try:
        from mcp.server.mcpserver import MCPServer
    except ImportError:
        raise UsageError(
            "reportgen mcp needs the MCP SDK: pip install 'reportgen[mcp]' (or: pip install mcp)"
        ) from None
    from reportgen import __version__

    server = MCPServer("reportgen", version=__version__, instructions=INSTRUCTIONS)
    # Tools return their JSON as text only (structured_output=False): with an output schema the
    # SDK would send the same answer twice, as text and as structured content.

    @server.tool(structured_output=False)
    def list_runs(
        source: str,
        state: list[str] | None = None,
        tag: list[str] | None = None,
        name: str | None = None,
        latest: int | None = None,
    ) -> str:
        """List runs newest first: id, name, state, steps [first, last, rows], tags.

        source: a folder of W&B runs, or wandb://ENTITY/PROJECT. state: keep these states
        (finished, failed, crashed, killed, running); tag: any of these tags; name: a regex.
        """
        return _answer(lambda: agent_tools.list_runs(source, state or (), tag or (), name, latest))

    @server.tool(structured_output=False)
    def list_keys(source: str, run: str | None = None, match: str | None = None) -> str:
        """List the metric keys runs logged: type, runs, count, first/last step, min, max,
        non-finite. run: one run id or name; match: a regex on the key."""
        return _answer(lambda: agent_tools.list_keys(source, run, match))

    @server.tool(structured_output=False)
    def export_table(
        source: str,
        metrics: list[str],
        every: int,
        start: int = 0,
        align: str = "asof",
        pick: str | None = None,
        output: str | None = None,
        run: list[str] | None = None,
        tag: list[str] | None = None,
        rows_inline: int = 0,
        include_spec: bool = False,
    ) -> str:
        """Write metrics sampled exactly every `every` steps to CSV; returns the picked run and
        why, each CSV path and row count, verdicts and notes (and rows_inline rows per table).

        metrics: keys (response_length/mean), NAME=KEY, or well-known names (entropy, kl,
        clipfrac, length, clip_ratio, reward, score, loss, val_loss, grad_norm).
        pick: "min|max REDUCE METRIC", e.g. "min mean length" exports only that run.
        align: exact | asof | nearest | interpolate. output: the CSV file (FILE.csv).
        include_spec: also return the equivalent YAML spec.
        """
        request = ExportRequest(
            source=source,
            metrics=tuple(metrics),
            every=every,
            start=start,
            align=align,
            pick=pick,
            output=output,
            runs=RunChoice(ids=tuple(run or ()), tags=tuple(tag or ())),
        )
        return _answer(lambda: agent_tools.export_table(request, rows_inline, include_spec))

    @server.tool(structured_output=False)
    def health(
        source: str,
        latest: int | None = None,
        state: list[str] | None = None,
        tag: list[str] | None = None,
        run: list[str] | None = None,
    ) -> str:
        """Training-health verdicts (good, bad, ugly) of runs, every finding [severity,
        check, step, message], and next experiments."""
        choice = RunChoice(
            ids=tuple(run or ()), states=tuple(state or ()), tags=tuple(tag or ()), latest=latest
        )
        return _answer(lambda: agent_tools.health(source, choice))

    @server.tool(structured_output=False)
    def compare_runs(source: str, runs: list[str], metrics: list[str] | None = None) -> str:
        """Compare runs (ids or names) with the first: config keys that differ, and each
        metric's summary value, change, percent and better/worse."""
        return _answer(lambda: agent_tools.compare_runs(source, runs, metrics or ()))

    @server.tool(structured_output=False)
    def show_run(source: str, run: str, match: str | None = None) -> str:
        """One run: config, summary and schema (each key's type, count, steps, range)."""
        return _answer(lambda: agent_tools.show_run(source, run, match))

    @server.tool(structured_output=False)
    def build_spec(spec: str, out_dir: str | None = None) -> str:
        """Build a reportgen spec (a path to a YAML file, or the YAML text) and return the
        summary: selections and why, tables written, verdicts, notes, gate, exit code."""
        return _answer(lambda: agent_tools.build_spec(spec, out_dir))

    return server


def serve() -> None:
    """Serve on stdin/stdout until the client closes the connection."""
    make_server().run("stdio")
