"""What a source hands to the rest of the pipeline: run metadata and run history.

These are plain data. A `Run` is cheap (listing a project yields many); a `History` holds every
numeric value a run logged and is fetched only for the runs that pass the filters.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

STEP = "_step"

# Run states. W&B servers also say "crashed" for runs that stopped sending heartbeats.
STATES = ("running", "finished", "failed", "crashed", "killed")


@dataclass
class Run:
    """One W&B run's metadata, whatever the source."""

    id: str
    name: str
    state: str
    project: str | None = None
    entity: str | None = None
    group: str | None = None
    job_type: str | None = None
    notes: str | None = None
    tags: tuple[str, ...] = ()
    created_at: datetime | None = None
    heartbeat_at: datetime | None = None
    exit_code: int | None = None
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    step_metrics: dict[str, str] = field(default_factory=dict)
    console_tail: tuple[str, ...] = ()
    url: str | None = None
    read_notes: tuple[str, ...] = ()
    locations: tuple[str, ...] = ()

    def x_key_for(self, key: str) -> str:
        """The step key a metric was declared against with define_metric, else `_step`."""
        if key in self.step_metrics:
            return self.step_metrics[key]
        for pattern, step_key in self.step_metrics.items():
            if any(c in pattern for c in "*?[") and fnmatch.fnmatchcase(key, pattern):
                return step_key
        return STEP

    def flat_config(self) -> dict[str, Any]:
        return flatten(self.config)


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested dicts become dotted keys: {"actor": {"lr": 1}} → {"actor.lr": 1}."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat


class History:
    """Every numeric value a run logged, per key, indexed by `_step`.

    Only logged points are present: a step where a key was not logged has no entry, while a
    logged NaN or infinity is kept as that value. The two are never confused.
    """

    def __init__(self, columns: Mapping[str, pd.Series] | None = None):
        self._columns: dict[str, pd.Series] = dict(columns or {})

    @classmethod
    def from_points(
        cls, points: Mapping[str, tuple[Sequence[int] | np.ndarray, Sequence[float] | np.ndarray]]
    ) -> History:
        """Build from {key: (steps, values)}; a step logged twice keeps its last value."""
        columns = {}
        for key, (steps, values) in points.items():
            series = pd.Series(
                np.asarray(values, dtype=float),
                index=pd.Index(np.asarray(steps, dtype=np.int64), name=STEP),
                name=key,
            )
            if not series.index.is_monotonic_increasing or series.index.has_duplicates:
                series = series[~series.index.duplicated(keep="last")].sort_index()
            columns[key] = series
        return cls(columns)

    @classmethod
    def from_long(cls, frame: pd.DataFrame) -> History:
        """Inverse of `to_long`: a frame with columns step, key, value."""
        columns = {}
        for key, part in frame.groupby("key", sort=False, observed=True):
            series = pd.Series(
                part["value"].to_numpy(dtype=float),
                index=pd.Index(part["step"].to_numpy(dtype=np.int64), name=STEP),
                name=str(key),
            )
            columns[str(key)] = series
        return cls(columns)

    def to_long(self) -> pd.DataFrame:
        """One row per logged point: step (int64), key (str), value (float64)."""
        parts = [
            pd.DataFrame({"step": s.index.to_numpy(), "key": key, "value": s.to_numpy()})
            for key, s in self._columns.items()
        ]
        if not parts:
            return pd.DataFrame(
                {
                    "step": pd.Series([], dtype="int64"),
                    "key": pd.Series([], dtype="str"),
                    "value": pd.Series([], dtype="float64"),
                }
            )
        return pd.concat(parts, ignore_index=True)

    def keys(self) -> list[str]:
        return sorted(self._columns)

    def __contains__(self, key: object) -> bool:
        return key in self._columns

    def __len__(self) -> int:
        return len(self._columns)

    def subset(self, keys: Iterable[str]) -> History:
        """Only these keys (those it has): what a remote worker sends back when asked for few."""
        return History({key: self._columns[key] for key in keys if key in self._columns})

    def merged(self, newer: History) -> History:
        """This history with `newer`'s points added; where both have a step, `newer` wins."""
        columns = dict(self._columns)
        for key, series in newer._columns.items():
            if key in columns:
                both = pd.concat([columns[key], series])
                both = both[~both.index.duplicated(keep="last")].sort_index()
                columns[key] = both
            else:
                columns[key] = series
        return History(columns)

    def series(self, key: str, x: str = STEP) -> pd.Series:
        """The logged values of `key` indexed by the x key (rows where both were logged)."""
        values = self._columns.get(key)
        if values is None:
            return pd.Series([], dtype=float, index=pd.Index([], dtype=np.int64, name=x), name=key)
        if x == STEP:
            return values
        xs = self._columns.get(x)
        if xs is None:
            return pd.Series([], dtype=float, index=pd.Index([], dtype=float, name=x), name=key)
        joined = pd.concat([xs.rename("x"), values.rename("v")], axis=1, join="inner")
        joined = joined[np.isfinite(joined["x"])]
        xs_index = joined["x"].to_numpy()
        if len(xs_index) and np.all(np.mod(xs_index, 1) == 0):
            xs_index = xs_index.astype(np.int64)
        result = pd.Series(joined["v"].to_numpy(), index=pd.Index(xs_index, name=x), name=key)
        result = result[~result.index.duplicated(keep="last")].sort_index()
        return result

    def steps(self) -> np.ndarray:
        """Every `_step` at which anything was logged, ascending."""
        if not self._columns:
            return np.array([], dtype=np.int64)
        return np.unique(np.concatenate([s.index.to_numpy() for s in self._columns.values()]))
