"""CSV attachments: one file per sampled table, `step` first, then one column per alias.

A cell is empty where nothing was logged (or nothing applies under the alignment), and holds
`nan` / `inf` / `-inf` where that is what the run logged.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence

import numpy as np

from reportgen.render.text import exact_number
from reportgen.report import TableReport


def render_csv(table: TableReport) -> str:
    return render_step_table(table.steps, table.columns, table.values, table.present)


def render_step_table(
    steps: np.ndarray,
    columns: Sequence[str],
    values: Mapping[str, np.ndarray],
    present: Mapping[str, np.ndarray],
) -> str:
    """`step` and one column per name; a cell is empty where `present` is False."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["step", *columns])
    for i, step in enumerate(steps):
        row = [exact_number(float(step))]
        for column in columns:
            row.append(exact_number(float(values[column][i])) if present[column][i] else "")
        writer.writerow(row)
    return out.getvalue()
