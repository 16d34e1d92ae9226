"""What a source hands to the rest of the pipeline: run metadata and run history.

These are plain data. A `Run` is cheap (listing a project yields many); a `History` holds every
numeric value a run logged and is fetched only for the runs that pass the filters.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np

from reportgen.choices import STATES  # noqa: F401  (re-exported: where runs are described)

if TYPE_CHECKING:
    import pandas as pd

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
    # Distinct `_step` values logged; None until the history is read (filters.min_steps waits).
    logged_steps: int | None = None
    # The name as W&B has it, when `name` was made distinct from another run's ("name (id)").
    logged_name: str | None = None

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
    """Every numeric value a run logged, per key, with the record (row) and `_step` it came from.

    A row is one history record, not a `_step` value: a run can write several records at one
    step (several writer processes, a resumed run that logs steps again, writers that set no
    step at all), and every value of every record is kept. Row numbers order the records as they
    were written (fragments of a merged run one after another), so that a metric's x value is
    taken from the same record as the metric itself (`points(key, "train/step")`).

    Only logged points are present: a record where a key was not logged has no entry, while a
    logged NaN or infinity is kept as that value. The two are never confused.

    Where several values of a key fall on one x, `points` uses the one written last (the later
    row) and `overlaps` counts the others, so that the report can say how many there were.
    """

    def __init__(self, columns: Mapping[str, Column] | None = None):
        self._made: dict[str, Column] = dict(columns or {})
        # Read from the cache: every key's values in long arrays, grouped by key (from_arrays).
        # A key's Column is made when it is asked for: a run logs dozens of keys, and the
        # report looks closely at a few (the rest only in passes over every key at once).
        self._grouped: _Grouped | None = None
        self._points: dict[tuple[str, str], Points] = {}
        self._axes: dict[str, tuple[np.ndarray, np.ndarray]] = {}
        self._steps: np.ndarray | None = None
        self._ascending: set[str] | None = None

    @classmethod
    def from_points(
        cls, points: Mapping[str, tuple[Sequence[int] | np.ndarray, Sequence[float] | np.ndarray]]
    ) -> History:
        """Build from {key: (steps, values)}, one record per distinct step (tests, benchmarks)."""
        all_steps = [np.asarray(steps, dtype=np.int64) for steps, _ in points.values()]
        distinct = np.unique(np.concatenate(all_steps)) if all_steps else np.array([], np.int64)
        columns = {}
        for key, (steps, values) in points.items():
            step_array = np.asarray(steps, dtype=np.int64)
            rows = np.searchsorted(distinct, step_array).astype(np.int64)
            columns[key] = Column(rows, step_array, np.asarray(values, dtype=float))
        return cls(columns)

    @classmethod
    def from_arrays(
        cls,
        keys: Sequence[str],
        counts: Sequence[int] | np.ndarray,
        rows: np.ndarray,
        steps: np.ndarray,
        values: np.ndarray,
    ) -> History:
        """Inverse of `to_arrays`: long arrays grouped by key, `counts[i]` values of `keys[i]`
        one after another. Each column is a slice of the long arrays: no copy, no group-by."""
        bounds = np.concatenate([[0], np.cumsum(np.asarray(counts, dtype=np.int64))])
        if int(bounds[-1]) != len(rows) or not len(rows) == len(steps) == len(values):
            raise ValueError(f"{int(bounds[-1])} values by count, {len(rows)} rows given")
        if len(keys) != len(bounds) - 1:
            raise ValueError(f"{len(keys)} keys, {len(bounds) - 1} counts given")
        starts = bounds.tolist()
        index = {key: at for at, key in enumerate(keys)}
        if len(index) < len(keys):  # a key twice (never written by history_bytes): the last
            columns = {}  # one stands, as in a dict
            for key, start, stop in zip(keys, starts, starts[1:], strict=False):
                columns[key] = Column(rows[start:stop], steps[start:stop], values[start:stop])
            return cls(columns)
        history = cls()
        history._grouped = _Grouped(list(keys), index, starts, rows, steps, values)
        return history

    @property
    def _columns(self) -> dict[str, Column]:
        """Every key's Column, in the order the keys were added."""
        grouped = self._grouped
        if grouped is not None and len(self._made) < len(grouped.keys):
            self._made = {key: grouped.column(key, self._made) for key in grouped.keys}
        return self._made

    def to_arrays(self) -> tuple[list[str], list[int], np.ndarray, np.ndarray, np.ndarray]:
        """(keys, counts, rows, steps, values): every logged value, grouped by key in the order
        the keys were added, each key's values in the order written."""
        grouped = self._grouped
        if grouped is not None:
            return (
                list(grouped.keys),
                np.diff(grouped.starts).tolist(),
                grouped.rows.astype(np.int64, copy=False),
                grouped.steps.astype(np.int64, copy=False),
                grouped.values.astype(float, copy=False),
            )
        keys = list(self._columns)
        parts = list(self._columns.values())
        if not parts:
            empty = np.array([], dtype=np.int64)
            return [], [], empty, empty.copy(), np.array([], dtype=float)
        return (
            keys,
            [len(c.values) for c in parts],
            np.concatenate([c.rows for c in parts]).astype(np.int64, copy=False),
            np.concatenate([c.steps for c in parts]).astype(np.int64, copy=False),
            np.concatenate([c.values for c in parts]).astype(float, copy=False),
        )

    def to_long(self) -> pd.DataFrame:
        """One row per logged value: row (int64), step (int64), key (str), value (float64)."""
        import pandas as pd

        keys, counts, rows, steps, values = self.to_arrays()
        return pd.DataFrame(
            {
                "row": pd.Series(rows, dtype="int64"),
                "step": pd.Series(steps, dtype="int64"),
                "key": pd.Series(np.repeat(np.array(keys, dtype=object), counts), dtype="str")
                if keys
                else pd.Series([], dtype="str"),
                "value": pd.Series(values, dtype="float64"),
            }
        )

    def keys(self) -> list[str]:
        return sorted(self._grouped.keys if self._grouped is not None else self._made)

    def __contains__(self, key: object) -> bool:
        if self._grouped is not None:
            return key in self._grouped.index
        return key in self._made

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._grouped.keys) if self._grouped is not None else len(self._made)

    def column(self, key: str) -> Column | None:
        """Every value of `key` as logged, in the order written (nothing resolved away)."""
        made = self._made.get(key)
        if made is None and self._grouped is not None and key in self._grouped.index:
            made = self._made[key] = self._grouped.column(key, self._made)
        return made

    def count(self, key: str) -> int:
        """How many values of `key` were logged (every record, overlaps included)."""
        column = self.column(key)
        return 0 if column is None else len(column.values)

    def row_count(self) -> int:
        """How many history records hold at least one numeric value."""
        if self._grouped is not None:
            return _distinct_count([self._grouped.rows])
        return _distinct_count([c.rows for c in self._columns.values()])

    def next_row(self) -> int:
        """The row number after the last one in use (where appended records start)."""
        if not len(self):
            return 0
        if self._grouped is not None and len(self._grouped.rows):
            return int(self._grouped.rows.max()) + 1
        return int(max(int(c.rows.max()) for c in self._columns.values() if len(c.rows)) + 1)

    def subset(self, keys: Iterable[str]) -> History:
        """Only these keys (those it has), every value as logged on its rows: what a remote
        worker sends back when asked for few."""
        found = {key: self.column(key) for key in keys}
        return History({key: column for key, column in found.items() if column is not None})

    def merged(self, newer: History) -> History:
        """This history followed by `newer`'s records (renumbered after this one's rows)."""
        offset = self.next_row() if self._columns else 0
        columns = dict(self._columns)
        for key, column in newer._columns.items():
            shifted = Column(column.rows + offset, column.steps, column.values)
            mine = columns.get(key)
            columns[key] = shifted if mine is None else mine.extended(shifted)
        return History(columns)

    def points(self, key: str, x: str = STEP) -> Points:
        """The values of `key` on the axis x, ascending: `_step`, or another key logged in the
        same records (a step metric declared with define_metric). Records of `key` without that
        x are left out; where several records share an x, the one written last gives the value.
        """
        cached = self._points.get((key, x))
        if cached is None:
            xs, values, _, _ = self._placed(key, x)
            cached = self._points[(key, x)] = Points(key, x, xs, values)
        return cached

    def series(self, key: str, x: str = STEP) -> pd.Series:
        """`points(key, x)` as a pandas Series indexed by x (for use from Python)."""
        return self.points(key, x).to_series()

    def overlaps(self, key: str, x: str = STEP) -> tuple[int, int]:
        """(values hidden by a later value at the same x, values whose record lacks x)."""
        if x == STEP and key in self._ascending_keys():
            return 0, 0  # the common case, answered without sorting
        _, _, hidden, unplaced = self._placed(key, x)
        return hidden, unplaced

    def _ascending_keys(self) -> set[str]:
        """The keys whose steps ascend strictly (one value per step, in order): found for every
        key at once, as the report's note on overlaps asks about each key of each run."""
        if self._ascending is None:
            grouped = self._grouped
            if grouped is not None:  # the key's steps, one after another, as they were read
                keys = grouped.keys
                lengths = np.diff(np.asarray(grouped.starts, dtype=np.int64))
                steps = grouped.steps
            else:
                keys = list(self._columns)
                parts = [self._columns[key].steps for key in keys]
                lengths = np.array([len(part) for part in parts], dtype=np.int64)
                steps = np.concatenate(parts) if parts else np.array([], dtype=np.int64)
            # Positions i where steps[i + 1] does not follow steps[i]; a key is ascending when
            # none falls inside its own stretch [start, end - 1).
            bad = np.flatnonzero(steps[1:] <= steps[:-1])
            ends = np.cumsum(lengths)
            starts = ends - lengths
            inside = np.searchsorted(bad, np.maximum(ends - 1, starts)) - np.searchsorted(
                bad, starts
            )
            self._ascending = {key for key, n in zip(keys, inside.tolist(), strict=True) if n == 0}
        return self._ascending

    def _placed(self, key: str, x: str) -> tuple[np.ndarray, np.ndarray, int, int]:
        """(x values ascending, the value at each, values hidden, values without an x)."""
        column = self.column(key)
        if column is None:
            return np.array([], dtype=np.int64), np.array([], dtype=float), 0, 0
        if x == STEP:
            xs, values, rows = column.steps, column.values, column.rows
            unplaced = 0
            if _ascending(xs):  # one value per step, in order: nothing to sort or hide
                return xs.copy(), values.copy(), 0, 0
        else:
            axis = self._by_row(x)
            if axis is None:
                return np.array([], dtype=float), np.array([], dtype=float), 0, len(column.rows)
            xs, values, rows = _same_records(column, *axis)
            unplaced = len(column.rows) - len(rows)
            finite = np.isfinite(xs)
            unplaced += int(len(xs) - finite.sum())
            xs, values, rows = xs[finite], values[finite], rows[finite]
            if len(xs) and np.all(np.mod(xs, 1) == 0):
                xs = xs.astype(np.int64)
            if _ascending(xs):  # x grows with every record (the usual step counter): in order
                return xs, values, 0, unplaced
        # Stable order by (x, row): the last of each run of equal x values was written last.
        order = np.lexsort((rows, xs))
        xs, values = xs[order], values[order]
        keep = np.ones(len(xs), dtype=bool)
        if len(xs) > 1:
            keep[:-1] = xs[1:] != xs[:-1]
        hidden = int(len(xs) - keep.sum())
        return xs[keep], values[keep], hidden, unplaced

    def _by_row(self, x: str) -> tuple[np.ndarray, np.ndarray] | None:
        """The rows and values of the axis key `x`, ordered by row (stably): found once per
        axis, as every key declared against it is placed on it."""
        found = self._axes.get(x)
        if found is None:
            axis = self.column(x)
            if axis is None:
                return None
            if len(axis.rows) < 2 or np.all(axis.rows[1:] >= axis.rows[:-1]):
                found = (axis.rows, axis.values)  # in row order already, as records are written
            else:
                order = np.argsort(axis.rows, kind="stable")
                found = (axis.rows[order], axis.values[order])
            self._axes[x] = found
        return found

    def steps(self) -> np.ndarray:
        """Every `_step` at which anything was logged, ascending (read-only: computed once, as
        the digest, the report and several checks ask for it)."""
        if self._steps is None:
            grouped = self._grouped
            if grouped is not None:
                parts = [grouped.steps[a:b] for a, b in pairwise(grouped.starts)]
            else:
                parts = [c.steps for c in self._columns.values()]
            steps = _union(parts)
            steps.flags.writeable = False
            self._steps = steps
        return self._steps


@dataclass(frozen=True)
class _Grouped:
    """A history as the cache holds it: long arrays grouped by key, key i's values at
    `starts[i]:starts[i + 1]`."""

    keys: list[str]
    index: dict[str, int]
    starts: list[int]
    rows: np.ndarray
    steps: np.ndarray
    values: np.ndarray

    def column(self, key: str, made: Mapping[str, Column]) -> Column:
        """The key's Column: the one made already, else slices of the long arrays."""
        column = made.get(key)
        if column is None:
            at = self.index[key]
            start, stop = self.starts[at], self.starts[at + 1]
            column = Column(self.rows[start:stop], self.steps[start:stop], self.values[start:stop])
        return column


@dataclass(frozen=True)
class Column:
    """One key's logged values: the record (row) and `_step` of each, in the order written."""

    rows: np.ndarray  # int64
    steps: np.ndarray  # int64
    values: np.ndarray  # float64

    def extended(self, later: Column) -> Column:
        return Column(
            np.concatenate([self.rows, later.rows]),
            np.concatenate([self.steps, later.steps]),
            np.concatenate([self.values, later.values]),
        )


@dataclass(frozen=True, eq=False)
class Points:
    """One key's values on one x axis: `xs` ascending and distinct, a float value at each.

    What the report and the health checks read a metric as. Plain arrays rather than a pandas
    Series: a build never imports pandas, which costs more to import than most builds spend
    digesting their runs (`to_series` gives the Series, for use from Python).
    """

    name: str
    x: str
    xs: np.ndarray
    values: np.ndarray  # float64

    def __len__(self) -> int:
        return len(self.xs)

    def at(self, xs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The value at each of `xs` (NaN where none was logged), and whether one was."""
        values = np.full(len(xs), np.nan)
        if not len(self.xs) or not len(xs):
            return values, np.zeros(len(xs), dtype=bool)
        found = np.clip(np.searchsorted(self.xs, xs), 0, len(self.xs) - 1)
        present = self.xs[found] == xs
        values[present] = self.values[found[present]]
        return values, present

    def to_series(self) -> pd.Series:
        import pandas as pd

        return pd.Series(self.values, index=pd.Index(self.xs, name=self.x), name=self.name)


def _union(arrays: list[np.ndarray]) -> np.ndarray:
    """Every distinct value of the arrays, ascending (int64).

    Most keys of a run are logged in the same records, so most of these arrays are equal:
    each distinct one is taken once (keyed by its bytes: hashing them is far cheaper than
    sorting every array's values together).
    """
    distinct: dict[bytes, np.ndarray] = {}
    for array in arrays:
        if len(array):
            distinct.setdefault(np.ascontiguousarray(array, dtype=np.int64).tobytes(), array)
    kept = list(distinct.values())
    if not kept:
        return np.array([], dtype=np.int64)
    if len(kept) == 1 and _ascending(kept[0]):
        return np.array(kept[0], dtype=np.int64)
    return np.unique(np.concatenate(kept)).astype(np.int64, copy=False)


def _distinct_count(arrays: list[np.ndarray]) -> int:
    """How many distinct values the arrays hold between them (`len(_union(arrays))`).

    Row numbers count up from 0 with few gaps, so a mark per row counts them without sorting
    or hashing; numbers spread far apart (or negative: never written by reportgen) are counted
    by `_union`."""
    parts = [array for array in arrays if len(array)]
    if not parts:
        return 0
    every = np.concatenate(parts) if len(parts) > 1 else parts[0]
    low, high = int(every.min()), int(every.max())
    if low < 0 or high > 4 * len(every) + 1024:
        return len(_union(parts))
    seen = np.zeros(high + 1, dtype=bool)
    seen[every] = True
    return int(np.count_nonzero(seen))


def _ascending(steps: np.ndarray) -> bool:
    """Strictly ascending: each x once and already in order, so sorting by (x, row) would
    change nothing and hide nothing."""
    return bool(len(steps) < 2 or np.all(steps[1:] > steps[:-1]))


def _same_records(
    column: Column, axis_rows: np.ndarray, axis_values: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(x, value, row) for the records of `column` that also logged the axis key (its rows
    and values ordered by row)."""
    where = np.searchsorted(axis_rows, column.rows)
    inside = where < len(axis_rows)
    found = np.zeros(len(column.rows), dtype=bool)
    found[inside] = axis_rows[where[inside]] == column.rows[inside]
    return axis_values[where[found]], column.values[found], column.rows[found]


def overlap_note(history: History, run: Run) -> str | None:
    """One sentence on values that share an x with another value of their key, or lack their
    declared x; None when every value has an x of its own."""
    hidden_keys: list[tuple[str, int]] = []
    unplaced_keys: list[tuple[str, str, int]] = []
    ascending = history._ascending_keys()
    declared = run.step_metrics
    patterns = any(c in pattern for pattern in declared for c in "*?[")
    for key in history:
        if key.startswith("_"):  # W&B's own bookkeeping (_runtime, _timestamp) per writer
            continue
        x = run.x_key_for(key) if patterns else declared.get(key, STEP)
        if x == STEP and key in ascending:
            continue  # one value per step, in order: the common case, nothing to count
        hidden, unplaced = history.overlaps(key, x)
        if hidden:
            hidden_keys.append((key, hidden))
        if unplaced:
            unplaced_keys.append((key, x, unplaced))
    parts = []
    if hidden_keys:
        total = sum(n for _, n in hidden_keys)
        examples = ", ".join(
            f"{k} ({n:,})" for k, n in sorted(hidden_keys, key=lambda t: -t[1])[:3]
        )
        parts.append(
            f"{total:,} logged values of {_keys(len(hidden_keys))} share their x with a value "
            f"written later (several writers, or steps logged again after a resume), e.g. "
            f"{examples}: curves and tables use the value written last at each x; every "
            "value is kept and counted by `reportgen keys`"
        )
    if unplaced_keys:
        total = sum(n for _, _, n in unplaced_keys)
        examples = ", ".join(f"{k} (x {x}: {n:,})" for k, x, n in unplaced_keys[:3])
        parts.append(
            f"{total:,} logged values of {_keys(len(unplaced_keys))} were logged without their "
            f"declared step metric in the same record, e.g. {examples}: they have no place on "
            "that axis"
        )
    return "; ".join(parts) if parts else None


def _keys(count: int) -> str:
    return f"{count} key" if count == 1 else f"{count} keys"
