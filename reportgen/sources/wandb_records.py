"""History and summary records of a `.wandb` file, decoded thousands at a time.

A run of 10^5 steps × 10 metrics holds 10^5 history records and twice as many summary records,
each a list of items (a key, a value as JSON text). `reportgen.sources.wire` reads the fields of
all of a window's records side by side; here they become what the reader keeps:

- history: for each numeric value, its record, its key and its value; for each record, its step
  (`step.num`, the `_step` item, or neither) and the newest `_timestamp`;
- summary: the last value written for each key.

Keys are told apart by their bytes (Arrow's hash table, no Python per item), and each distinct
key is turned into text once. Values made only of the characters of a number are converted by
Arrow, whose conversion was checked to accept exactly the strings Python's `float` accepts over
that alphabet and to give the same double; any other value (NaN, Infinity, true, text, JSON
objects) is converted once per distinct value by the same Python rule the plain reader uses.

Whatever the scan cannot vouch for (an unusual encoding, an unknown field, text that is not
UTF-8, a summary with removals) is decoded record by record with protobuf, exactly as before:
the fast path never decides a case the plain one would decide differently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from reportgen.arrow import arrow_array, numpy_array
from reportgen.sources import wire

STEP_KEY = "_step"
TIMESTAMP_KEY = "_timestamp"
# Field numbers (wandb_internal.proto): Record.num = 1, Record.history = 2, Record.summary = 3;
# HistoryRecord.item = 1, .step = 2; HistoryStep.num = 1; SummaryRecord.update = 1, .remove = 2;
# HistoryItem / SummaryItem: key = 1, nested_key = 2, value_json = 16.
HISTORY_FIELD, SUMMARY_FIELD = 2, 3
ITEM_KEY, ITEM_NESTED_KEY, ITEM_VALUE = 1, 2, 16
BYTES = 2

# Bytes that can make up a number; a value of only these is converted by Arrow.
_NOT_NUMERIC = np.ones(256, dtype=bool)
_NOT_NUMERIC[list(b"0123456789.eE+-")] = False
_NOT_ASCII = np.zeros(256, dtype=bool)
_NOT_ASCII[0x80:] = True


def number_of(text: str) -> float | None:
    """A logged value as a float, or None for values that are not numbers (images, tables…):
    Python's float, and JSON's true and false as 1 and 0."""
    try:
        return float(text)
    except ValueError:
        pass
    if text == "true":
        return 1.0
    if text == "false":
        return 0.0
    return None


def item_key(nested: list[str], key: str) -> str:
    """An item's key: its nested_key parts joined by "." (W&B's display), else `key`."""
    return nested[0] if len(nested) == 1 else ".".join(nested) or key


class KeyNames:
    """The key each distinct run of key bytes names, decoded once per file (None: not UTF-8)."""

    def __init__(self) -> None:
        self._names: dict[bytes, str | None] = {}

    def name(self, region: bytes) -> str | None:
        try:
            return self._names[region]
        except KeyError:
            pass
        key = ""
        nested: list[str] = []
        pos = 0
        try:
            while pos < len(region):
                tag = region[pos]  # one byte: the scan accepted only fields 1 and 2
                length, pos = wire.read_varint(region, pos + 1)
                text = region[pos : pos + length].decode("utf-8")
                pos += length
                if tag >> 3 == ITEM_KEY:
                    key = text
                else:
                    nested.append(text)
            name: str | None = item_key(nested, key)
        except UnicodeDecodeError:
            name = None
        self._names[region] = name
        return name


@dataclass
class Items:
    """Items as scanned: for each, its record (in the batch), where its key fields lie and
    where its value text lies."""

    record: np.ndarray
    key_start: np.ndarray
    key_end: np.ndarray
    value_start: np.ndarray
    value_end: np.ndarray


# Record fields outside the record_type oneof (wandb_internal.proto): num, control, uuid,
# _info. Writers put them before the record's type (num first; control and _info when set).
_RECORD_NUM = 1
_RECORD_OTHER_FIELDS = (16, 19, 200)
_PREFIX_ROUNDS = 4


@dataclass
class RecordTypes:
    """For each record: the number of its first field that is not num, control, uuid or
    _info (-1: not found by this quick read), that field's wire type and bounds, and whether
    fields other than `num` came before it (such a record is valid only if protobuf says so:
    their contents are not read here)."""

    number: np.ndarray
    wire: np.ndarray
    start: np.ndarray
    end: np.ndarray
    after_prefix: np.ndarray

    def take(self, which: np.ndarray) -> RecordTypes:
        """The same for the records `which` (each record is read on its own)."""
        return RecordTypes(
            self.number[which],
            self.wire[which],
            self.start[which],
            self.end[which],
            self.after_prefix[which],
        )


def record_types(buf: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> RecordTypes:
    """Read each record's fields up to its first one of the record_type oneof, skipping num,
    control, uuid and _info (at most a few: writers put the type early)."""
    count = len(starts)
    number = np.full(count, -1, dtype=np.int64)
    wire_type = np.zeros(count, dtype=np.int64)
    start = np.zeros(count, dtype=np.int64)
    end = np.zeros(count, dtype=np.int64)
    after_prefix = np.zeros(count, dtype=bool)
    going = np.flatnonzero(starts < ends)
    at, limit = starts[going], ends[going]
    for _ in range(_PREFIX_ROUNDS):
        if not going.size:
            break
        tag, tag_size, good = wire.read_varints(buf, at, 5)
        field = (tag >> np.uint64(3)).astype(np.int64)
        kind = (tag & np.uint64(7)).astype(np.int64)
        value_at = at + tag_size
        size, size_size, size_good = wire.read_varints(buf, value_at, 10)
        is_bytes = kind == 2
        value_start = np.where(is_bytes, value_at + size_size, value_at)
        value_end = np.where(is_bytes, value_start + size.astype(np.int64), value_at + size_size)
        good &= size_good & ((kind == 0) | is_bytes) & (value_end <= limit) & (field >= 1)
        good &= ~is_bytes | (size < np.uint64(1 << 31))
        skip = good & (
            ((field == _RECORD_NUM) & (kind == 0))
            | (np.isin(field, _RECORD_OTHER_FIELDS) & is_bytes)
        )
        found = np.flatnonzero(good & ~skip)
        where = going[found]
        number[where] = field[found]
        wire_type[where] = kind[found]
        start[where] = value_start[found]
        end[where] = value_end[found]
        after_prefix[going[skip & (field != _RECORD_NUM)]] = True
        on = np.flatnonzero(skip & (value_end < limit))
        going, at, limit = going[on], value_end[on], limit[on]
    return RecordTypes(number, wire_type, start, end, after_prefix)


def _bodies(
    types: RecordTypes, ends: np.ndarray, numbers: np.ndarray, irregular: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Where the history (or summary) message of each Record lies, and whether the record
    must be checked by protobuf (it has control, uuid or _info fields, not read here). The
    shape accepted is the one writers emit: fields outside the oneof, then the one field of
    the record's type (`numbers`), ending the record; records of another shape are marked
    in `irregular`."""
    irregular |= (types.number != numbers) | (types.wire != 2) | (types.end != ends)
    return types.start, types.end, types.after_prefix


# Tags of the fields `_fields_1_and_2` follows: 0x0a (field 1) and 0x12 (field 2).
_FIELD_1_OR_2 = np.zeros(256, dtype=bool)
_FIELD_1_OR_2[[0x0A, 0x12]] = True


def _fields_1_and_2(
    buf: np.ndarray, starts: np.ndarray, ends: np.ndarray, irregular: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The fields of messages made only of length-delimited fields 1 and 2 (one-byte tags
    0x0a and 0x12: items and the step of a history record, updates and removals of a summary),
    in order: (message, field number, start, end). Messages with anything else, or with more
    fields than a straggler may have, are marked in `irregular`."""
    count = len(starts)
    going = np.flatnonzero(starts < ends)
    at, limit = starts[going], ends[going]
    found: list[tuple[np.ndarray, ...]] = []
    while going.size:
        if wire.straggling(len(found), going.size, count):
            irregular[going] = True
            break
        tag = buf[at]
        size = buf[at + 1].astype(np.int64)
        start = at + 2
        long = np.flatnonzero(size >= 0x80)
        ok = _FIELD_1_OR_2[tag]
        if long.size:
            values, lengths, good = wire.read_varints(buf, at[long] + 1, 5)
            size[long] = values.astype(np.int64)
            start[long] = at[long] + 1 + lengths
            ok[long] &= good & (values < np.uint64(1 << 31))
        stop = start + size
        ok &= stop <= limit
        if not ok.all():
            irregular[going[~ok]] = True
            going, tag, start, stop, limit = going[ok], tag[ok], start[ok], stop[ok], limit[ok]
        found.append((going, tag, start, stop))
        more = stop < limit
        going, at, limit = going[more], stop[more], limit[more]
    if not found:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty, empty, empty
    columns = [np.concatenate([part[column] for part in found]) for column in range(4)]
    if len(found) > 1:
        columns = wire.in_message_order(found, columns, count)
    return columns[0], (columns[1] >> 3).astype(np.int64), columns[2], columns[3]


def _items(
    buf: np.ndarray, owner: np.ndarray, starts: np.ndarray, ends: np.ndarray,
    irregular: np.ndarray,
) -> Items:  # fmt: skip
    """Where the key fields and the value of each item lie. Most items are one key field
    and a short value, both with one-byte lengths, and are read here without a loop; the
    others are scanned field by field. Items of a shape other than key fields followed by one
    value_json mark their record (`owner`) irregular."""
    key_size = buf[starts + 1]
    key_end = np.minimum(starts + 2 + key_size, ends)
    value_size = buf[key_end + 2]
    simple = _FIELD_1_OR_2[buf[starts]]
    simple &= key_size < 0x80
    simple &= buf[key_end] == 0x82
    simple &= buf[key_end + 1] == 0x01
    simple &= value_size < 0x80
    simple &= key_end + 3 + value_size == ends
    value_start = key_end + 3
    other = np.flatnonzero(~simple)
    if other.size:
        inner = wire.scan(buf, starts[other], ends[other], max_fields=32, ordered=False)
        bad = inner.irregular.copy()
        is_value = (inner.number == ITEM_VALUE) & (inner.wire == BYTES)
        is_key = ((inner.number == ITEM_KEY) | (inner.number == ITEM_NESTED_KEY)) & (
            inner.wire == BYTES
        )
        bad[inner.message[~(is_value | is_key)]] = True
        bad |= np.bincount(inner.message[is_value], minlength=len(other)) > 1
        # The value must come last, so that the key fields are one stretch before it; an
        # item without one has the value "" (not a number).
        these_ends = ends[other]
        key_end[other] = these_ends
        value_start[other] = these_ends
        valued = inner.message[is_value]
        key_end[other[valued]] = inner.tag_at[is_value]
        value_start[other[valued]] = inner.start[is_value]
        bad[valued[inner.end[is_value] != these_ends[valued]]] = True
        irregular[owner[other[bad]]] = True
    return Items(owner, starts, key_end, value_start, ends)


def _regions(data: bytes, starts: np.ndarray, ends: np.ndarray) -> pa.Array:
    """data[starts[i]:ends[i]] for each i, as an Arrow binary array: copied by Arrow's take
    from one array whose elements are the regions and the gaps between them (regions in
    the order they lie in `data`; others are put in that order first)."""
    if not len(starts):
        return pa.LargeBinaryArray.from_buffers(
            pa.large_binary(), 0, [None, pa.py_buffer(np.zeros(1, np.int64)), pa.py_buffer(b"")]
        )
    offsets = np.empty(2 * len(starts), dtype=np.int64)
    offsets[0::2] = starts
    offsets[1::2] = ends
    picks = np.arange(0, 2 * len(starts), 2)
    if (offsets[1:] < offsets[:-1]).any():
        order = np.argsort(starts, kind="stable")
        offsets[0::2] = starts[order]
        offsets[1::2] = ends[order]
        if (offsets[1:] < offsets[:-1]).any():
            raise ValueError("overlapping regions")  # never: fields do not overlap
        picks = np.empty(len(starts), dtype=np.int64)
        picks[order] = np.arange(0, 2 * len(starts), 2)
    spans = pa.LargeBinaryArray.from_buffers(
        pa.large_binary(),
        2 * len(starts) - 1,
        [None, pa.py_buffer(offsets), pa.py_buffer(data)],
    )
    return spans.take(arrow_array(picks))


@dataclass
class KeyCodes:
    """Each item's key as a code into `keys`; `bad` marks items whose key is not UTF-8."""

    codes: np.ndarray
    keys: list[str]
    bad: np.ndarray


def _key_codes(data: bytes, items: Items, names: KeyNames) -> KeyCodes:
    regions = _regions(data, items.key_start, items.key_end)
    encoded = pc.dictionary_encode(regions)
    distinct = [names.name(region) for region in encoded.dictionary.to_pylist()]
    keys: list[str] = []
    code_of: dict[str, int] = {}
    remap = np.empty(max(len(distinct), 1), dtype=np.int64)
    broken = np.zeros(max(len(distinct), 1), dtype=bool)
    for index, name in enumerate(distinct):
        if name is None:
            broken[index] = True
            remap[index] = 0
            continue
        code = code_of.get(name)
        if code is None:
            code = code_of[name] = len(keys)
            keys.append(name)
        remap[index] = code
    indices = numpy_array(encoded.indices).astype(np.int64)
    return KeyCodes(remap[indices], keys, broken[indices])


def _values(data: bytes, items: Items) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each item's value as a float (NaN where it is not a number), whether it is a number,
    and whether its text is not UTF-8 (its record cannot be decoded)."""
    count = len(items.record)
    values = np.full(count, np.nan)
    numeric = np.zeros(count, dtype=bool)
    broken = np.zeros(count, dtype=bool)
    present = np.flatnonzero(items.value_end > items.value_start)  # "" is not a number
    if not present.size:
        return values, numeric, broken
    texts = _regions(data, items.value_start[present], items.value_end[present])
    plain = ~_any_byte(texts, _NOT_NUMERIC)
    candidates = present[plain]
    if candidates.size:
        chosen = texts.filter(arrow_array(plain))
        try:
            values[candidates] = numpy_array(pc.cast(chosen, pa.float64()))
            numeric[candidates] = True
        except pa.ArrowInvalid:  # something like "1-2": Python's float decides each
            _by_python(chosen, candidates, values, numeric, broken)
    if not plain.all():
        _by_python(texts.filter(arrow_array(~plain)), present[~plain], values, numeric, broken)
    return values, numeric, broken


def _any_byte(texts: pa.Array, which: np.ndarray) -> np.ndarray:
    """For each (non-empty) element of a binary array made by `_regions`, whether any of its
    bytes is one of `which` (a table of 256 flags)."""
    first = texts.offset
    offsets = np.frombuffer(texts.buffers()[1], dtype=np.int64)[first : first + len(texts) + 1]
    contents = np.frombuffer(texts.buffers()[2], dtype=np.uint8)[: offsets[-1]]
    flags = which.view(np.uint8)[contents]
    return np.maximum.reduceat(flags, offsets[:-1]).astype(bool)


def _by_python(
    texts: pa.Array, where: np.ndarray, values: np.ndarray, numeric: np.ndarray,
    broken: np.ndarray,
) -> None:  # fmt: skip
    """Convert values the plain reader's way, once per distinct text."""
    encoded = pc.dictionary_encode(texts)
    distinct = encoded.dictionary.to_pylist()
    converted = np.full(len(distinct), np.nan)
    is_number = np.zeros(len(distinct), dtype=bool)
    not_text = np.zeros(len(distinct), dtype=bool)
    for index, raw in enumerate(distinct):
        try:
            number = number_of(raw.decode("utf-8"))
        except UnicodeDecodeError:
            not_text[index] = True
            continue
        if number is not None:
            converted[index] = number
            is_number[index] = True
    indices = numpy_array(encoded.indices).astype(np.int64)
    values[where] = converted[indices]
    numeric[where] = is_number[indices]
    broken[where] = not_text[indices]


@dataclass
class HistoryBatch:
    """The history records of a batch that decoded, in order.

    `decoded[i]`: whether record i decoded (else it is damage, and has no row). For each
    decoded record, in order, its `step` as `record_step` gives it, where `needs_row` marks
    records that name no step (their step is their row number, which the caller knows). For
    each numeric value other than `_step`, in written order: its row (counted from 0 among the
    batch's decoded records), key (an index into `keys`) and value.
    """

    decoded: np.ndarray
    step: np.ndarray
    needs_row: np.ndarray
    item_row: np.ndarray
    item_key: np.ndarray
    item_value: np.ndarray
    keys: list[str]
    newest: float = -math.inf


@dataclass
class WindowRecords:
    """A window's history records (see `HistoryBatch`) and what its summary records set:
    the last value (JSON text) of each key, or None when they must be merged record by record
    (a removal), which keeps updates and removals in order. `summary_failed`: summary records
    (indices in the window) that do not decode."""

    history: HistoryBatch
    summary: dict[str, str] | None
    summary_failed: list[int]


def decode_window(
    buffer: wire.Buffer,
    history: np.ndarray,
    summary: np.ndarray,
    payloads: list[bytes],
    names: KeyNames,
    parse: Any,
    types: RecordTypes | None = None,
) -> WindowRecords:
    """Decode the history records `history` and the summary records `summary` of a window
    (`payloads`, joined in `buffer`), side by side.

    `parse` is Record.FromString, for the records the scan leaves to protobuf (the plain
    reader, kept to check this one against, is `decode_plainly`). `types`: `record_types` of
    the whole window, when the caller has read them already.
    """
    buf = buffer.u8
    which = np.union1d(history, summary)  # in the order they lie in the window
    is_history = np.isin(which, history)
    irregular = np.zeros(len(which), dtype=bool)
    numbers = np.where(is_history, HISTORY_FIELD, SUMMARY_FIELD)
    ends = buffer.ends[which]
    these = types.take(which) if types else record_types(buf, buffer.starts[which], ends)
    body_start, body_end, check = _bodies(these, ends, numbers, irregular)
    # Records with control or _info fields: valid as a whole only if protobuf says so.
    for index in np.flatnonzero(check & ~irregular).tolist():
        try:
            parse(payloads[which[index]])
        except Exception:
            irregular[index] = True
    bodies = np.flatnonzero(~irregular)
    body_irregular = np.zeros(len(bodies), dtype=bool)
    owner, number, start, end = _fields_1_and_2(
        buf, body_start[bodies], body_end[bodies], body_irregular
    )
    irregular[bodies[body_irregular]] = True
    owner = bodies[owner]
    is_item = number == 1
    items = _items(buf, owner[is_item], start[is_item], end[is_item], irregular)
    keys = _key_codes(buffer.data, items, names)
    irregular[items.record[keys.bad]] = True

    # History records are numbered among themselves from here on.
    place = np.cumsum(is_history) - 1
    in_history = is_history[items.record]
    history_items = _select(items, in_history)
    history_items.record = place[history_items.record]
    second = number == 2  # the step of a history record, a removal in a summary record
    steps = second & is_history[owner]
    batch = _history(
        buf, buffer.data, history_items, keys.codes[in_history], list(keys.keys),
        irregular[is_history], place[owner[steps]], start[steps], end[steps],
        lambda index: parse(payloads[history[index]]),
    )  # fmt: skip
    if (second & ~is_history[owner]).any():  # a removal: merged record by record
        return WindowRecords(batch, None, [])
    summary_items = _select(items, ~in_history)
    summary_codes = keys.codes[~in_history]
    wide = _not_utf8(buffer.data, summary_items)
    irregular[summary_items.record[wide]] = True
    regular = ~irregular[summary_items.record]
    updates = {
        keys.keys[code]: last
        for code, last in _last_values(
            buffer.data, _select(summary_items, regular), summary_codes[regular]
        ).items()
    }
    # Summary records left to protobuf: their updates count where they were written.
    failed: list[int] = []
    for index in np.flatnonzero(irregular & ~is_history).tolist():
        try:
            record = parse(payloads[which[index]]).summary
        except Exception:
            failed.append(int(which[index]))
            continue
        if len(record.remove):
            return WindowRecords(batch, None, [])
        for order, item in enumerate(record.update):
            written = (int(index), order)
            key = item_key(list(item.nested_key), item.key)
            if key not in updates or updates[key][0] < written:
                updates[key] = (written, item.value_json)
    return WindowRecords(batch, {key: value for key, (_, value) in updates.items()}, failed)


def decode_plainly(
    history: list[int], summary: list[int], payloads: list[bytes], parse: Any
) -> WindowRecords:
    """`decode_window` for a window decoded the plain way: every history and summary record
    (`history`, `summary`: their places in `payloads`, ascending) parsed by protobuf, one by
    one, with none of the scan's fixed cost (a few hundred microseconds a window, most of
    reading a small file)."""
    batch = _history(
        _NO_BYTES, b"", _NO_ITEMS, _NO_INDEX, [], np.ones(len(history), dtype=bool),
        _NO_INDEX, _NO_INDEX, _NO_INDEX, lambda index: parse(payloads[history[index]]),
    )  # fmt: skip
    updates: dict[str, str] = {}
    failed: list[int] = []
    for index in summary:
        try:
            record = parse(payloads[index]).summary
        except Exception:
            failed.append(index)
            continue
        if len(record.remove):  # a removal: merged record by record
            return WindowRecords(batch, None, [])
        for item in record.update:
            updates[item_key(list(item.nested_key), item.key)] = item.value_json
    return WindowRecords(batch, updates, failed)


_NO_BYTES = np.zeros(len(wire.PADDING), dtype=np.uint8)
_NO_INDEX = np.zeros(0, dtype=np.int64)
_NO_ITEMS = Items(_NO_INDEX, _NO_INDEX, _NO_INDEX, _NO_INDEX, _NO_INDEX)


def _select(items: Items, which: np.ndarray) -> Items:
    return Items(
        items.record[which],
        items.key_start[which],
        items.key_end[which],
        items.value_start[which],
        items.value_end[which],
    )


def _history(
    buf: np.ndarray,
    data: bytes,
    items: Items,
    codes: np.ndarray,
    key_list: list[str],
    irregular: np.ndarray,
    step_owner: np.ndarray,
    step_start: np.ndarray,
    step_end: np.ndarray,
    parse: Any,
) -> HistoryBatch:
    """The history records of a window (`irregular[i]`: record i is left to `parse`)."""
    count = len(irregular)
    # The step: at most one HistoryStep, empty or one `num` varint (a minimal one).
    has_step = np.zeros(count, dtype=bool)
    has_step[step_owner] = True
    irregular[step_owner[np.bincount(step_owner, minlength=count)[step_owner] > 1]] = True
    step_num = np.zeros(count, dtype=np.int64)
    set_num = np.flatnonzero(step_end > step_start)
    if set_num.size:
        numbers, lengths, good = wire.read_varints(buf, step_start[set_num] + 1)
        good &= buf[step_start[set_num]] == 0x08
        good &= step_start[set_num] + 1 + lengths == step_end[set_num]
        irregular[step_owner[set_num[~good]]] = True
        step_num[step_owner[set_num]] = numbers.view(np.int64)

    values, numeric, broken = _values(data, items)
    irregular[items.record[broken]] = True
    regular = ~irregular[items.record] & numeric
    item_record = items.record[regular]
    item_code = codes[regular]
    item_value = values[regular]

    # Records left to protobuf: decoded one by one, their numeric items put in their place.
    decoded = ~irregular
    special = np.flatnonzero(irregular)
    if special.size:
        extra_record: list[int] = []
        extra_code: list[int] = []
        extra_value: list[float] = []
        code_of = {key: code for code, key in enumerate(key_list)}
        for index in special.tolist():
            try:
                history = parse(index).history
            except Exception:  # a payload that passed its checksum but does not decode
                continue
            decoded[index] = True
            for item in history.item:
                number = number_of(item.value_json)
                if number is None:
                    continue
                key = item_key(list(item.nested_key), item.key)
                code = code_of.get(key)
                if code is None:
                    code = code_of[key] = len(key_list)
                    key_list.append(key)
                extra_record.append(index)
                extra_code.append(code)
                extra_value.append(number)
            has_step[index] = history.HasField("step")
            step_num[index] = history.step.num
        if extra_record:
            item_record = np.concatenate([item_record, np.array(extra_record, np.int64)])
            item_code = np.concatenate([item_code, np.array(extra_code, np.int64)])
            item_value = np.concatenate([item_value, np.array(extra_value, float)])
            order = np.argsort(item_record, kind="stable")
            item_record, item_code, item_value = (
                item_record[order],
                item_code[order],
                item_value[order],
            )

    # `_step` items give the step of records without step.num (the last usable one counts).
    is_step_item = item_code == _code(key_list, STEP_KEY)
    step_item = np.zeros(count, dtype=np.int64)
    has_step_item = np.zeros(count, dtype=bool)
    usable = np.flatnonzero(is_step_item & (np.abs(item_value) < 2.0**63))
    if usable.size:
        last = usable[_last_per_record(item_record[usable])]
        step_item[item_record[last]] = item_value[last].astype(np.int64)
        has_step_item[item_record[last]] = True
    # The newest moment: the last `_timestamp` value of each record.
    newest = -math.inf
    stamp_items = np.flatnonzero(item_code == _code(key_list, TIMESTAMP_KEY))
    if stamp_items.size:
        stamps = item_value[stamp_items[_last_per_record(item_record[stamp_items])]]
        stamps = stamps[~np.isnan(stamps)]
        if stamps.size:
            newest = float(stamps.max())

    use_num = has_step & ((step_num != 0) | ~has_step_item)
    step = np.where(use_num, step_num, step_item)
    needs_row = ~use_num & ~has_step_item
    rows = np.cumsum(decoded) - 1  # each decoded record's row within the batch
    keep = ~is_step_item
    return HistoryBatch(
        decoded=decoded,
        step=step[decoded],
        needs_row=needs_row[decoded],
        item_row=rows[item_record[keep]],
        item_key=item_code[keep],
        item_value=item_value[keep],
        keys=key_list,
        newest=newest,
    )


def _code(keys: list[str], key: str) -> int:
    try:
        return keys.index(key)
    except ValueError:
        return -1


def _last_per_record(records: np.ndarray) -> np.ndarray:
    """Positions of the last entry of each run of equal record numbers (they ascend)."""
    last = np.ones(len(records), dtype=bool)
    last[:-1] = records[1:] != records[:-1]
    return np.flatnonzero(last)


def _not_utf8(data: bytes, items: Items) -> np.ndarray:
    """Which items' values are not UTF-8 text (their record does not decode)."""
    bad = np.zeros(len(items.record), dtype=bool)
    present = np.flatnonzero(items.value_end > items.value_start)
    if present.size:
        texts = _regions(data, items.value_start[present], items.value_end[present])
        contents = np.frombuffer(texts.buffers()[2], dtype=np.uint8)
        if contents.size and contents.max() >= 0x80:
            for index in present[_any_byte(texts, _NOT_ASCII)].tolist():
                try:
                    data[items.value_start[index] : items.value_end[index]].decode("utf-8")
                except UnicodeDecodeError:
                    bad[index] = True
    return bad


def _last_values(
    data: bytes, items: Items, codes: np.ndarray
) -> dict[int, tuple[tuple[int, int], str]]:
    """For each key code among summary items (in written order), where its last value was
    written (record, place in the record) and that value (JSON text)."""
    if not len(codes):
        return {}
    last = np.full(int(codes.max()) + 1, -1, dtype=np.int64)
    np.maximum.at(last, codes, np.arange(len(codes)))
    found = np.flatnonzero(last >= 0)
    chosen = last[found]
    # The place within the record only orders updates of one record: the item's position.
    return {
        int(code): (
            (int(items.record[index]), int(items.key_start[index])),
            data[items.value_start[index] : items.value_end[index]].decode("utf-8"),
        )
        for code, index in zip(found.tolist(), chosen.tolist(), strict=True)
    }


# The fields of a Record outside its record_type oneof, by name.
_RECORD_OTHER_NAMES = frozenset({"num", "control", "uuid", "_info"})


def timed_records(
    buffer: wire.Buffer,
    which: np.ndarray,
    kinds: np.ndarray,
    payloads: list[bytes],
    records: Any,
    types: RecordTypes | None = None,
) -> dict[int, Any] | None:
    """The system-stats and console records `which` of a window (`kinds`: the field number
    of each one's type), decoded by protobuf, by kind: {kind: its messages (StatsRecord,
    OutputRecord, OutputRawRecord), in written order}; None when that cannot be vouched for
    (then each record is decoded on its own, as before).

    These records are most of a run file and are needed only for their moments (and the last
    few for the console tail). Instead of one protobuf parse per record, the payloads of each
    kind, laid end to end, are parsed once as `records` (Record with every field repeated:
    see `wandb_proto.record_list_class`). Each payload's fields end where it ends (checked
    here, with the fields around the record's type), so the joined parse decodes exactly the
    bytes each record's own parse would, and fails if any of them would; and each record must
    give exactly one message of its kind (a record holding two, which its own parse would
    merge, makes the count differ), and nothing but the fields outside the oneof beside it.

    `types`: `record_types` of the whole window, when the caller has read them already."""
    if not which.size:
        return None
    buf = buffer.u8
    ends = buffer.ends[which]
    types = types.take(which) if types else record_types(buf, buffer.starts[which], ends)
    if not ((types.number == kinds) & (types.wire == BYTES)).all():
        return None
    # Fields after the record's type (writers put control and _info there): only num,
    # control, uuid and _info, each inside the record, so that each payload's fields end where
    # it ends and no other field of the record_type oneof replaces the one read.
    followed = np.flatnonzero(types.end != ends)
    if followed.size:
        rest = wire.scan(buf, types.end[followed], ends[followed], max_fields=8, ordered=False)
        allowed = np.isin(rest.number, (_RECORD_NUM, *_RECORD_OTHER_FIELDS))
        if rest.irregular.any() or not allowed.all():
            return None
    found: dict[int, Any] = {}
    for kind in np.unique(kinds).tolist():
        chosen = which[kinds == kind].tolist()
        try:
            joined = records.FromString(b"".join([payloads[index] for index in chosen]))
        except Exception:  # one of them does not decode: each is decoded on its own
            return None
        name = records.DESCRIPTOR.fields_by_number[kind].name
        messages = getattr(joined, name)
        others = {field.name for field, _ in joined.ListFields()} - {name}
        if len(messages) != len(chosen) or not others <= _RECORD_OTHER_NAMES:
            return None
        found[kind] = messages
    return found
