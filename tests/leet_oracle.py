"""An independent check of the reader: wandb's own Go reader, `wandb leet inspect --json`.

`leet` prints every record of a `.wandb` file as a JSON line. From those lines this module
derives, with W&B's rules (written out here, not taken from reportgen), every logged numeric
value as (key, step, x, value): the step is `step.num` when set, else the `_step` item, else the
record's place among the file's history records; x is the value, in the same record, of the
step metric the file declared for the key (define_metric names and globs), or None. The same
tuples from reportgen's reader must be equal, value for value.

Used by tests/test_step_axes.py and benchmarks/corpus/oracle_check.py.
"""

from __future__ import annotations

import fnmatch
import json
import math
import subprocess
from collections import Counter
from pathlib import Path
from typing import Any

Value = tuple[str, int, str | None, str]


def _core() -> Path:
    """The Go binary `wandb leet` runs (called directly: the Python CLI costs seconds a call)."""
    import wandb

    return Path(wandb.__file__).parent / "bin" / "wandb-core"


_SPECIAL = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}


def leet_records(path: Path, timeout: float = 600) -> list[dict[str, Any]]:
    """`wandb leet inspect --json FILE`, every record of the file as a dict."""
    path = path.resolve()
    command = [str(_core()), "leet", "inspect", "--json", "--no-observability"]
    done = subprocess.run(
        [*command, "--run-file", str(path), str(path.parent.parent)],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]


def _numeric(value: Any) -> float | None:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str) and value in _SPECIAL:
        return _SPECIAL[value]
    return None


def _flat(items: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for key, value in items.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            if "_type" not in value:
                flat.update(_flat(value, f"{name}."))
        else:
            flat[name] = value
    return flat


def _text(value: float | None) -> str | None:
    if value is None:
        return None
    if value == 0:  # leet's JSON prints a logged -0.0 as 0: the sign of zero is not compared
        return "0.0"
    return "nan" if math.isnan(value) else repr(float(value))


def step_axis(step_metrics: dict[str, str], key: str) -> str | None:
    """The step metric declared for `key`: its own name first, then the globs in order."""
    if key in step_metrics:
        return step_metrics[key]
    for pattern, axis in step_metrics.items():
        if any(c in pattern for c in "*?[") and fnmatch.fnmatchcase(key, pattern):
            return axis
    return None


def leet_values(records: list[dict[str, Any]]) -> Counter[Value]:
    """Every numeric value of the file's history records as (key, step, x, value)."""
    step_metrics: dict[str, str] = {}
    for record in records:
        metric = record.get("metric")
        if record.get("type") == "metric" and metric and metric.get("step_metric"):
            step_metrics[metric.get("name") or metric.get("glob_name")] = metric["step_metric"]
    found: Counter[Value] = Counter()
    place = 0
    for record in records:
        if record.get("type") != "history":
            continue
        history = record.get("history") or {}
        items = _flat(history.get("item") or {})
        step_item = _numeric(items.get("_step"))
        step_num = (history["step"].get("num", 0)) if "step" in history else None
        if step_num is not None and (step_num != 0 or step_item is None):
            step = int(step_num)
        elif step_item is not None:
            step = int(step_item)
        else:
            step = place
        place += 1
        numbers = {k: _numeric(v) for k, v in items.items() if k != "_step"}
        for key, value in numbers.items():
            if value is None:
                continue
            axis = step_axis(step_metrics, key)
            x = numbers.get(axis) if axis is not None else None
            found[(key, step, _text(x), _text(value) or "")] += 1
    return found


def reportgen_values(path: Path) -> Counter[Value]:
    """The same tuples from reportgen's reader."""
    import numpy as np

    from reportgen.sources.wandb_file import read_wandb_file

    contents = read_wandb_file(path)
    found: Counter[Value] = Counter()
    by_row: dict[str, dict[int, float]] = {}
    for key, (rows, _, values) in contents.points.items():
        by_row[key] = dict(zip(rows.tolist(), values.tolist(), strict=True))
    for key, (rows, steps, values) in contents.points.items():
        axis = step_axis(contents.step_metrics, key)
        axis_values = by_row.get(axis, {}) if axis is not None else {}
        for row, step, value in zip(rows.tolist(), steps.tolist(), values.tolist(), strict=True):
            x = axis_values.get(row)
            found[(key, int(step), _text(x), _text(float(np.float64(value))) or "")] += 1
    return found
