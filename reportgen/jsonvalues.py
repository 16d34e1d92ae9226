"""Values as JSON can hold them, the one rule report.json, the project table's cells and every
JSON answer share: NaN and infinities as the strings "NaN", "Infinity" and "-Infinity" (never a
silent null), datetimes as ISO 8601, tuples as lists, numpy scalars as Python numbers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import datetime
from typing import Any


def jsonable(value: Any) -> Any:
    """Plain JSON values: non-finite floats as strings, datetimes as ISO 8601, tuples as lists."""
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:
        return value  # most values: answered before the slower checks below
    if kind is dict:
        return {str(k): jsonable(v) for k, v in value.items()}
    if kind is list:
        return [jsonable(v) for v in value]
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        if math.isinf(value):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return jsonable(value.item())
    return value
