"""The health stage: small checks registered by stable id, run per run, giving findings.

`check_runs` is what build.py calls; `CHECKS` is the registry (ids, parameters, presets) that
spec validation and docs/health-checks.md read.
"""

from reportgen.health import checks as _checks  # noqa: F401  (registers every check)
from reportgen.health.registry import CHECKS, PRESETS, preset_checks
from reportgen.health.stage import check_run, check_runs

__all__ = ["CHECKS", "PRESETS", "check_run", "check_runs", "preset_checks"]
