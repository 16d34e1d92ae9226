"""What a source hands to the rest of the pipeline: run metadata and run history.

These are plain data. A `Run` is cheap (listing a project yields many); a `History` holds every
numeric value a run logged and is fetched only for the runs that pass the filters.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from reportgen.states import STATES  # noqa: F401  (re-exported: where runs are described)

STEP = "_step"


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


# One key's logged points: steps (int64, ascending, each once) and values (float64).
Column = tuple[np.ndarray, np.ndarray]


class History:
    """Every numeric value a run logged, per key, indexed by `_step`.

    Only logged points are present: a step where a key was not logged has no entry, while a
    logged NaN or infinity is kept as that value. The two are never confused.

    Columns are kept as numpy arrays and become pandas Series when first asked for: a run logs
    dozens of keys, a report reads a few, and building a Series costs more than reading it.
    """

    def __init__(self, columns: Mapping[str, pd.Series] | None = None):
        self._columns: dict[str, pd.Series | Column] = dict(columns or {})

    @classmethod
    def from_points(
        cls, points: Mapping[str, tuple[Sequence[int] | np.ndarray, Sequence[float] | np.ndarray]]
    ) -> History:
        """Build from {key: (steps, values)}; a step logged twice keeps its last value."""
        history = cls()
        for key, (steps, values) in points.items():
            history._columns[key] = _column(
                np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=float)
            )
        return history

    @classmethod
    def from_arrays(
        cls, names: Sequence[str], codes: np.ndarray, steps: np.ndarray, values: np.ndarray
    ) -> History:
        """Build from long arrays: point i is (names[codes[i]], steps[i], values[i]).

        Points of one key need not be adjacent, nor in step order; a step logged twice keeps
        the last value.
        """
        codes = np.asarray(codes, dtype=np.int64)
        steps = np.asarray(steps, dtype=np.int64)
        values = np.asarray(values, dtype=float)
        if len(codes) > 1 and np.any(codes[1:] < codes[:-1]):
            order = np.argsort(codes, kind="stable")
            codes, steps, values = codes[order], steps[order], values[order]
        bounds = np.searchsorted(codes, np.arange(len(names) + 1))
        history = cls()
        for code, name in enumerate(names):
            start, stop = bounds[code], bounds[code + 1]
            if stop > start:
                history._columns[str(name)] = _column(steps[start:stop], values[start:stop])
        return history

    @classmethod
    def from_long(cls, frame: pd.DataFrame) -> History:
        """Inverse of `to_long`: a frame with columns step, key, value."""
        codes, names = pd.factorize(frame["key"], sort=False)
        return cls.from_arrays(
            [str(n) for n in names],
            codes,
            frame["step"].to_numpy(dtype=np.int64),
            frame["value"].to_numpy(dtype=float),
        )

    def to_arrays(self) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
        """Long arrays (names, per-point codes, steps, values): the inverse of `from_arrays`."""
        names = list(self._columns)
        columns = [self._column(key) for key in names]
        counts = [len(steps) for steps, _ in columns]
        codes = np.repeat(np.arange(len(names), dtype=np.int64), counts)
        if not columns:
            return names, codes, np.array([], dtype=np.int64), np.array([], dtype=float)
        steps = np.concatenate([steps for steps, _ in columns])
        values = np.concatenate([values for _, values in columns])
        return names, codes, steps, values

    def to_long(self) -> pd.DataFrame:
        """One row per logged point: step (int64), key (str), value (float64)."""
        names, codes, steps, values = self.to_arrays()
        keys = np.array(names, dtype=object)[codes] if names else np.array([], dtype=object)
        return pd.DataFrame(
            {
                "step": pd.Series(steps, dtype="int64"),
                "key": pd.Series(keys, dtype=object),
                "value": pd.Series(values, dtype="float64"),
            }
        )

    def keys(self) -> list[str]:
        return sorted(self._columns)

    def __contains__(self, key: object) -> bool:
        return key in self._columns

    def __len__(self) -> int:
        return len(self._columns)

    def merged(self, newer: History) -> History:
        """This history with `newer`'s points added; where both have a step, `newer` wins."""
        columns = dict(self._columns)
        for key in newer._columns:
            if key in columns:
                old_steps, old_values = self._column(key)
                new_steps, new_values = newer._column(key)
                columns[key] = _column(
                    np.concatenate([old_steps, new_steps]),
                    np.concatenate([old_values, new_values]),
                )
            else:
                columns[key] = newer._columns[key]
        merged = History()
        merged._columns = columns
        return merged

    def series(self, key: str, x: str = STEP) -> pd.Series:
        """The logged values of `key` indexed by the x key (rows where both were logged)."""
        values = self._series(key)
        if values is None:
            return pd.Series([], dtype=float, index=pd.Index([], dtype=np.int64, name=x), name=key)
        if x == STEP:
            return values
        xs = self._series(x)
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

    def _series(self, key: str) -> pd.Series | None:
        """One column as a Series (built on first use, then kept)."""
        found = self._columns.get(key)
        if found is None or isinstance(found, pd.Series):
            return found
        steps, values = found
        series = pd.Series(values, index=pd.Index(steps, name=STEP), name=key)
        self._columns[key] = series
        return series

    def _column(self, key: str) -> Column:
        found = self._columns[key]
        if isinstance(found, pd.Series):
            return _column(found.index.to_numpy(dtype=np.int64), found.to_numpy(dtype=float))
        return found

    def steps(self) -> np.ndarray:
        """Every `_step` at which anything was logged, ascending."""
        if not self._columns:
            return np.array([], dtype=np.int64)
        return np.unique(np.concatenate([self._column(key)[0] for key in self._columns]))


def _column(steps: np.ndarray, values: np.ndarray) -> Column:
    """Points in ascending step order, each step once (a step logged twice keeps its last value)."""
    if len(steps) > 1 and not np.all(steps[1:] > steps[:-1]):
        unique, first_from_end = np.unique(steps[::-1], return_index=True)
        steps, values = unique, values[::-1][first_from_end]
    return steps, values
