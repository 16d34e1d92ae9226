"""The states a run can be in, whatever the source: a fact the CLI's `--state` choices need
before anything else is imported (reportgen.runs brings pandas along)."""

# W&B servers also say "crashed" for runs that stopped sending heartbeats.
STATES = ("running", "finished", "failed", "crashed", "killed")
