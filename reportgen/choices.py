"""Closed sets of names the command line offers as choices: the parser needs them before
anything heavy is imported (reportgen.runs brings pandas along, reportgen.spec the YAML and
JSON Schema libraries), so they live here, below both."""

# Run states. W&B servers also say "crashed" for runs that stopped sending heartbeats.
STATES = ("running", "finished", "failed", "crashed", "killed")

# How a sampled table takes a value at a grid step (spec: sampling.align).
ALIGNS = ("exact", "asof", "nearest", "interpolate")
