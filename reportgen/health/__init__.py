"""The health stage: small checks registered by stable id, run per run, giving findings.

`check_runs` is what build.py calls; `CHECKS` is the registry (ids, parameters, presets) that
spec validation and docs/health-checks.md read.
"""

from reportgen.check_catalogue import CATALOGUE
from reportgen.health import checks as _checks  # noqa: F401  (registers every check)
from reportgen.health.registry import CHECKS, PRESETS, preset_checks
from reportgen.health.stage import check_run, check_runs

_unregistered = [check_id for check_id in CATALOGUE if check_id not in CHECKS]
if _unregistered:  # a catalogue entry no function runs would be a check that never fires
    raise RuntimeError(f"checks in the catalogue without a function: {', '.join(_unregistered)}")
# The catalogue's order is the order checks run in and findings are listed in.
_ordered = {check_id: CHECKS[check_id] for check_id in CATALOGUE}
CHECKS.clear()
CHECKS.update(_ordered)

__all__ = ["CHECKS", "PRESETS", "check_run", "check_runs", "preset_checks"]
