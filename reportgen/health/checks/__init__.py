"""The check functions, one module per family; importing this package registers them all."""

from reportgen.health.checks import lifecycle, progress, rl, stability

__all__ = ["lifecycle", "progress", "rl", "stability"]
