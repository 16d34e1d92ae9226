"""The protobuf wire format, read for thousands of messages at once with numpy.

A large run holds ~10^6 logged values, each a small protobuf message inside a history record.
Decoding every record with `Record.FromString` and walking its items in Python costs about a
microsecond per value, several times what the decoding itself costs. Here the fields of many
messages are read side by side instead: one numpy step reads the next field of every message
still unread, so the Python work is per field *position* (a dozen per record), not per value.

Only the plainest encoding is accepted, the one every protobuf writer emits: minimal varints,
field numbers from 1 to 2**29-1, wire types 0 (varint), 1 (8 bytes), 2 (length-delimited) and 5
(4 bytes), each field inside its message. A message with anything else (a group, a redundant
varint, a length past its end) is marked `irregular`, and the caller decodes that message with
protobuf itself, which decides what it means; so is a message with more fields than the scan
was asked to follow. What is accepted here is therefore always what protobuf would read.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# Zero bytes after the data, so that a varint read near the end never reads past the array (a
# zero ends every varint; a read that passes its message's end is refused by the caller).
PADDING = bytes(16)
MAX_FIELD_NUMBER = (1 << 29) - 1
# A message still being read after this many fields while fewer than 1/STRAGGLER_SHARE of
# the messages are, or fewer than STRAGGLER_MESSAGES, is left to protobuf: one record of 10^5
# items must not cost 10^5 numpy rounds over a handful of messages. (A round costs tens of
# microseconds whatever it reads; protobuf and a Python loop take about a microsecond a field.)
STRAGGLER_ROUNDS = 48
STRAGGLER_SHARE = 64
STRAGGLER_MESSAGES = 16


def straggling(rounds: int, going: int, count: int) -> bool:
    """Whether the `going` messages (of `count`) still being read after `rounds` fields are
    left to protobuf (see STRAGGLER_ROUNDS)."""
    return rounds >= STRAGGLER_ROUNDS and (
        going * STRAGGLER_SHARE < count or going < STRAGGLER_MESSAGES
    )


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """One protobuf varint at `pos`: its value and the position after it (IndexError when the
    data ends inside it)."""
    result = shift = 0
    while True:
        if pos >= len(data):
            raise IndexError("varint runs past the end")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


@dataclass(frozen=True)
class Fields:
    """The fields of a set of messages, in order (message by message, each in written order).

    `message` indexes the messages scanned; `tag_at` is where the field's tag starts; for
    wire type 2, `start`/`end` bound its bytes; for wire type 0, `varint` is its value.
    `irregular` is per message: read it with protobuf instead (its fields here are partial).
    """

    message: np.ndarray
    number: np.ndarray
    wire: np.ndarray
    tag_at: np.ndarray
    start: np.ndarray
    end: np.ndarray
    varint: np.ndarray
    irregular: np.ndarray


@dataclass(frozen=True)
class Buffer:
    """Messages one after another (padded): as bytes, as uint8, and each one's bounds."""

    data: bytes
    u8: np.ndarray
    starts: np.ndarray
    ends: np.ndarray


def as_buffer(payloads: list[bytes]) -> Buffer:
    data = b"".join([*payloads, PADDING])
    lengths = np.fromiter(map(len, payloads), dtype=np.int64, count=len(payloads))
    ends = np.cumsum(lengths)
    return Buffer(data, np.frombuffer(data, dtype=np.uint8), ends - lengths, ends)


def read_varints(
    buf: np.ndarray, pos: np.ndarray, max_bytes: int = 10
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The varints starting at `pos`: (values as uint64, their lengths, whether each is
    minimal and at most `max_bytes` long)."""
    first = buf[pos]
    values = (first & 0x7F).astype(np.uint64)
    lengths = np.ones(len(pos), dtype=np.int64)
    ok = np.ones(len(pos), dtype=bool)
    going = np.flatnonzero(first >= 0x80)
    for place in range(1, max_bytes):
        if not going.size:
            break
        byte = buf[pos[going] + place]
        values[going] |= (byte & 0x7F).astype(np.uint64) << np.uint64(7 * place)
        lengths[going] += 1
        more = byte >= 0x80
        # A last byte of zero adds nothing: a longer encoding than needed. The tenth byte of a
        # 64-bit varint can hold only its top bit.
        redundant = (~more & (byte == 0)) | ((place == 9) & (byte > 1))
        ok[going[redundant]] = False
        going = going[more]
    ok[going] = False  # longer than max_bytes
    return values, lengths, ok


def scan(
    buf: np.ndarray,
    starts: np.ndarray,
    ends: np.ndarray,
    max_fields: int | None = None,
    ordered: bool = True,
) -> Fields:
    """Every field of the messages buf[starts[i]:ends[i]] (see `Fields`); with `ordered`
    False, in no particular order (cheaper, for callers that only count or pick by message)."""
    count = len(starts)
    irregular = np.zeros(count, dtype=bool)
    pos = starts.astype(np.int64, copy=True)
    active = np.flatnonzero(pos < ends)
    found: list[tuple[np.ndarray, ...]] = []
    rounds = 0
    while active.size:
        if max_fields is not None and rounds >= max_fields:
            irregular[active] = True
            break
        if straggling(rounds, active.size, count):
            irregular[active] = True
            break
        rounds += 1
        at = pos[active]
        end = ends[active]
        tag, tag_length, ok = read_varints(buf, at, 5)
        number = (tag >> np.uint64(3)).astype(np.int64)
        wire = (tag & np.uint64(7)).astype(np.int64)
        value_at = at + tag_length
        ok &= (number >= 1) & (number <= MAX_FIELD_NUMBER) & (value_at <= end)
        start = value_at
        stop = value_at.copy()
        varint = np.zeros(len(at), dtype=np.uint64)
        is_varint = wire == 0
        if is_varint.any():
            where = np.flatnonzero(is_varint)
            values, lengths, good = read_varints(buf, value_at[where])
            varint[where] = values
            stop[where] += lengths
            ok[where] &= good
        is_bytes = wire == 2
        if is_bytes.any():
            where = np.flatnonzero(is_bytes)
            sizes, lengths, good = read_varints(buf, value_at[where], 5)
            start[where] = value_at[where] + lengths
            stop[where] = start[where] + sizes.astype(np.int64)
            ok[where] &= good & (sizes < np.uint64(1 << 31))
        stop[wire == 1] += 8
        stop[wire == 5] += 4
        ok &= (wire <= 2) | (wire == 5)
        ok &= stop <= end
        irregular[active[~ok]] = True
        keep = np.flatnonzero(ok)
        found.append(
            (
                active[keep],
                number[keep],
                wire[keep],
                at[keep],
                start[keep],
                stop[keep],
                varint[keep],
            )
        )
        pos[active[keep]] = stop[keep]
        active = active[keep][stop[keep] < end[keep]]
    if not found:
        empty = np.zeros(0, dtype=np.int64)
        return Fields(empty, empty, empty, empty, empty, empty, np.zeros(0, np.uint64), irregular)
    if len(found) == 1:
        columns = list(found[0])
    else:
        columns = [np.concatenate([part[column] for part in found]) for column in range(7)]
        if ordered:
            columns = in_message_order(found, columns, count)
    message, number, wire, tag_at, start, end, varint = columns
    return Fields(message, number, wire, tag_at, start, end, varint, irregular)


def in_message_order(
    found: list[tuple[np.ndarray, ...]], columns: list[np.ndarray], count: int
) -> list[np.ndarray]:
    """Rounds hold one field of each message; put each message's fields together, in order,
    by placing field r of message m at (fields before m) + r, without sorting."""
    per_message = np.bincount(columns[0], minlength=count)
    first = np.cumsum(per_message) - per_message
    slots = np.concatenate([first[part[0]] + rounds for rounds, part in enumerate(found)])
    placed = []
    for joined in columns:
        column = np.empty_like(joined)
        column[slots] = joined
        placed.append(column)
    return placed
