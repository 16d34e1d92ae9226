"""CSV attachments: one file per sampled table, `step` first, then one column per alias.

A cell is empty where nothing was logged (or nothing applies under the alignment), and holds
`nan` / `inf` / `-inf` where that is what the run logged.
"""

from __future__ import annotations

import csv
import io

from reportgen.render.text import exact_number
from reportgen.report import TableReport


def render_csv(table: TableReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["step", *table.columns])
    for i, step in enumerate(table.steps):
        row = [exact_number(float(step))]
        for column in table.columns:
            present = table.present[column][i]
            row.append(exact_number(float(table.values[column][i])) if present else "")
        writer.writerow(row)
    return out.getvalue()
