"""CSV attachments: one file per sampled table, `step` first, then one column per alias.

A cell is empty where nothing was logged (or nothing applies under the alignment), and holds
`nan` / `inf` / `-inf` where that is what the run logged. Numbers are written as
`render.text.exact_number` writes one (the shortest text that reads back as the same float),
but a column at a time by Arrow: a warm rebuild of hundreds of runs spent most of its CSV time
in Python's `repr` of each float.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reportgen.arrow import arrow_array, float_scalar, numpy_array, string_array, string_scalar
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
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow(["step", *columns])
    if not len(steps):
        return out.getvalue()
    # The cells are numbers (digits, sign, point, e, nan, inf) or empty, and a row starts with
    # its step: nothing to quote, so rows are joined as the csv module would write them.
    fields = [number_texts(np.asarray(steps, dtype=float))]
    for column in columns:
        texts = number_texts(np.asarray(values[column], dtype=float))
        shown = np.asarray(present[column], dtype=bool)
        fields.append(
            texts if shown.all() else pc.if_else(arrow_array(shown), texts, string_scalar(""))
        )
    return out.getvalue() + csv_body(fields).decode("utf-8")


def number_cells(values: pa.Array) -> pa.Array:
    """`number_texts` of a column of numbers (any numeric type), null where it is null."""
    numbers = numpy_array(pc.fill_null(values.cast(pa.float64()), float_scalar(np.nan)))
    texts = number_texts(numbers)
    missing = numpy_array(pc.is_null(values))
    if missing.any():
        texts = pc.if_else(arrow_array(missing), string_scalar(None), texts)
    return texts


def number_texts(numbers: np.ndarray) -> pa.Array:
    """`exact_number` of each float, as Arrow text: whole numbers below 10^15 without a
    fraction, others in Python's shortest round-trip form (`repr`), nan and ±inf spelled out.

    Arrow's own shortest form is the same text as `repr` between 10^-4 and 10^9; whole
    numbers and values outside that range (few, in real tables) are written by Python."""
    size = np.abs(numbers)
    with np.errstate(invalid="ignore"):
        finite = np.isfinite(numbers)
        whole = finite & (numbers == np.round(numbers)) & (size < 1e15)
    if whole.all():  # a step column, or counts
        return pc.cast(arrow_array(numbers.astype(np.int64)), pa.string())
    texts = pc.cast(arrow_array(numbers), pa.string())
    with np.errstate(invalid="ignore"):
        elsewhere = finite & ~whole & ((size < 1e-4) | (size >= 1e9))
    if whole.any():
        ints = pc.cast(arrow_array(numbers[whole].astype(np.int64)), pa.string())
        texts = pc.replace_with_mask(texts, arrow_array(whole), ints)
    if elsewhere.any():
        written = string_array(list(map(repr, numbers[elsewhere].tolist())))
        texts = pc.replace_with_mask(texts, arrow_array(elsewhere), written)
    return texts


def csv_body(fields: list[pa.Array]) -> bytes:
    """CSV lines (UTF-8) from columns of fields, each already a CSV field (numbers, or text
    quoted as the csv module quotes it), joined by Arrow into one buffer. The fields are all
    text or all large text; `fields` is emptied once joined, so that the columns are freed
    early."""
    if not fields or not len(fields[0]):
        return b""
    text = fields[0].type
    # The last field carries the line's end, so that one join makes the whole body.
    empty, newline = string_scalar("", text), string_scalar("\n", text)
    fields[-1] = pc.binary_join_element_wise(fields[-1], empty, newline)
    lines = pc.binary_join_element_wise(*fields, string_scalar(",", text))
    fields.clear()
    wide = pa.types.is_large_string(text)
    offsets = np.frombuffer(lines.buffers()[1], dtype=np.int64 if wide else np.int32)
    offsets = offsets[lines.offset : lines.offset + len(lines) + 1]
    data = lines.buffers()[2]
    if data is None:
        return b""
    return memoryview(data)[int(offsets[0]) : int(offsets[-1])].tobytes()
