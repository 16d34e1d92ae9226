"""Between numpy and Arrow, without pandas.

pyarrow imports pandas (0.2 s, more than most builds spend digesting their runs) the first
time it converts a Python or numpy value (`pa.array`, `pa.scalar`, a Python value given to a
compute function) or converts an array to numpy (`to_numpy`, `np.asarray`). These helpers do
the same through Arrow's buffers and DLPack, so that a build never imports pandas: the reader,
the cache and the CSV renderer use them. They handle what those need: arrays without nulls of
numbers or booleans, and strings.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa


def arrow_array(values: np.ndarray) -> pa.Array:
    """A numpy array of numbers or booleans as an Arrow array (no nulls; numbers not copied)."""
    values = np.ascontiguousarray(values)
    if values.dtype == np.bool_:
        bits = np.packbits(values, bitorder="little")
        return pa.Array.from_buffers(pa.bool_(), len(values), [None, pa.py_buffer(bits)])
    kind = pa.from_numpy_dtype(values.dtype)
    return pa.Array.from_buffers(kind, len(values), [None, pa.py_buffer(values)])


def numpy_array(array: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """An Arrow array of numbers or booleans without nulls as numpy (read-only where it
    shares Arrow's memory)."""
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if array.null_count:
        raise ValueError("numpy_array takes arrays without nulls")
    if pa.types.is_boolean(array.type):
        return np.from_dlpack(array.cast(pa.uint8())).astype(bool)
    if not len(array):  # DLPack wants a buffer, which an empty array may lack
        return np.empty(0, dtype=array.type.to_pandas_dtype())
    return np.from_dlpack(array)


def string_array(texts: Sequence[str], kind: pa.DataType | None = None) -> pa.Array:
    """Python strings as an Arrow array of `kind` (string, or large_string)."""
    encoded = [text.encode("utf-8") for text in texts]
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum([len(part) for part in encoded], out=offsets[1:])
    data = pa.py_buffer(b"".join(encoded))
    wide = pa.Array.from_buffers(
        pa.large_string(), len(encoded), [None, pa.py_buffer(offsets), data]
    )
    return wide.cast(kind or pa.string())


def string_scalar(text: str | None, kind: pa.DataType | None = None) -> pa.Scalar:
    """A string (or a null) as an Arrow scalar of `kind`, for a compute function's argument."""
    if text is None:
        return pa.nulls(1, kind or pa.string())[0]
    return string_array([text], kind)[0]


def float_scalar(number: float) -> pa.Scalar:
    """A float as an Arrow double scalar, for a compute function's argument."""
    return arrow_array(np.array([number], dtype=float))[0]
