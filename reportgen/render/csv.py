"""CSV attachments: one file per sampled table, `step` first, then one column per alias.

A cell is empty where nothing was logged (or nothing applies under the alignment), and holds
`nan` / `inf` / `-inf` where that is what the run logged.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence

import numpy as np

from reportgen.report import TableReport


def render_csv(table: TableReport) -> str:
    if table.text is not None:  # rendered where the run was digested (reportgen.digest)
        return table.text
    return render_step_table(table.steps, table.columns, table.values, table.present)


def render_step_table(
    steps: np.ndarray,
    columns: Sequence[str],
    values: Mapping[str, np.ndarray],
    present: Mapping[str, np.ndarray],
) -> str:
    """`step` and one column per name; a cell is empty where `present` is False."""
    cells = [exact_numbers(np.asarray(steps, dtype=float))]
    for column in columns:
        texts = exact_numbers(np.asarray(values[column], dtype=float))
        for i in np.flatnonzero(~np.asarray(present[column], dtype=bool)).tolist():
            texts[i] = ""
        cells.append(texts)
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(["step", *columns])
    # The cells are numbers (digits, sign, point, e, nan, inf) or empty, and a row starts with
    # its step: nothing to quote, so rows are joined as the csv module would write them.
    rows = "\n".join(map(",".join, zip(*cells, strict=True)))
    return out.getvalue() + (rows + "\n" if rows else "")


def exact_numbers(values: np.ndarray) -> list[str]:
    """`exact_number` of each value, a column at a time (tables have millions of cells)."""
    with np.errstate(invalid="ignore"):
        whole = np.isfinite(values) & (values == np.round(values)) & (np.abs(values) < 1e15)
    if whole.all():  # a step column, or counts: no float needs its repr
        return list(map(str, values.astype(np.int64).tolist()))
    texts: list[str] = list(map(repr, values.tolist()))  # nan, inf, -inf and 0.1 are right
    where = np.flatnonzero(whole)
    for i, number in zip(where.tolist(), values[where].astype(np.int64).tolist(), strict=True):
        texts[i] = str(number)
    return texts
