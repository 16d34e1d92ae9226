"""Read one `.wandb` transaction log: framing, damage accounting, and record decoding.

The format (measured on wandb 0.31): a 7-byte header (b":W&B", uint16 LE 0xBEE1, version 0),
then LevelDB-log framing in 32 KiB blocks. Each chunk is uint32 LE CRC-32 (of the type byte and
the data), uint16 LE length, uint8 type (1 full, 2 first, 3 middle, 4 last). Fewer than 7 bytes
left in a block are padding. Records inside are `wandb.proto.wandb_internal_pb2.Record` messages.

Files are read as a stream, a window of blocks at a time, so a file of any size costs the
memory of what it holds (the logged values), never its size. Damaged files are read as far as
they are intact: after a chunk that does not check out (a bad checksum, a damaged header, a
zeroed region), the reader scans forward byte by byte for the next chunk whose checksum
matches and carries on from there. Each loss is reported as a `Damage` that counts the bytes
really skipped, never as an exception.

Where a history record's step lives depends on the writer: current writers set
`history.step.num`; older ones (wandb <= 0.15, the legacy writer of 0.19.x) may leave it unset
and log a `_step` item; the secondary processes of a shared-mode run set neither. The step is
`step.num` when set, else the `_step` item, else the record's place among the file's history
records (see `record_step`).
"""

from __future__ import annotations

import functools
import json
import os
import re
import stat
import struct
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import numpy as np

from reportgen.sources import wandb_records, wire
from reportgen.sources.wandb_proto import record_class, record_list_class


class pb:  # read as wandb's `wandb_internal_pb2` module: `pb.Record`
    """wandb's protobuf messages the reader uses (see reportgen.sources.wandb_proto)."""

    Record: Any = record_class()


HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK_SIZE = 32 * 1024
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4
# How much is read at a time: whole blocks, so that no chunk straddles two reads.
WINDOW = 32 * BLOCK_SIZE

# Field numbers of the Record.record_type oneof, read from the protobuf descriptor, so that the
# record kind can be learned from a few bytes without decoding whole records we do not need.
_KIND_BY_FIELD = {
    f.number: f.name
    for f in pb.Record.DESCRIPTOR.fields
    if f.containing_oneof is not None and f.containing_oneof.name == "record_type"
}
# Writers emit fields in field-number order: `num` (field 1, a varint) and then the record type,
# whose tag is one byte for fields below 16 and two bytes above. Anything else falls back to
# scanning the tags one by one.
_KIND_BY_TAG = {
    bytes([(number << 3) | 2])
    if number < 16
    else bytes([((number << 3) | 2) & 0x7F | 0x80, (number << 3) >> 7]): kind
    for number, kind in _KIND_BY_FIELD.items()
}
WANTED_KINDS = frozenset(
    {"run", "config", "summary", "history", "exit", "output", "output_raw", "metric", "stats"}
)
# Records only the primary writer of a run writes (its metadata); secondary processes of a
# shared-mode run (x_primary=False) write none of them.
PRIMARY_KINDS = frozenset({"environment", "files"})
CONSOLE_TAIL_CHARS = 16_000
# Summary records merged the plain way are parsed this many at a time (bounded memory).
SUMMARY_BATCH = 4096
_NON_ZERO = re.compile(rb"[^\x00]")


@dataclass(frozen=True)
class Damage:
    """A part of a file that could not be read."""

    offset: int
    lost_bytes: int
    reason: str


class _Losses:
    """Damage found while framing; adjacent losses of one kind are counted as one."""

    def __init__(self) -> None:
        self.damages: list[Damage] = []

    def add(self, offset: int, lost: int, reason: str) -> None:
        last = self.damages[-1] if self.damages else None
        if last is not None and last.offset + last.lost_bytes == offset:
            self.damages[-1] = Damage(last.offset, last.lost_bytes + lost, last.reason)
        else:
            self.damages.append(Damage(offset, lost, reason))


def read_payloads(data: bytes) -> tuple[list[bytes], list[Damage]]:
    """Split a whole transaction log held in memory into record payloads (tests, benchmarks)."""
    import io

    damages: list[Damage] = []
    payloads: list[bytes] = []
    for batch in iter_payload_batches(io.BytesIO(data), len(data), damages):
        payloads.extend(batch)
    return payloads, damages


def iter_payloads(stream: IO[bytes], size: int, damages: list[Damage]) -> Iterator[bytes]:
    """The record payloads of a transaction log, one by one (see `iter_payload_batches`)."""
    for batch in iter_payload_batches(stream, size, damages):
        yield from batch


def iter_payload_batches(
    stream: IO[bytes], size: int, damages: list[Damage]
) -> Iterator[list[bytes]]:
    """The record payloads of a transaction log, in lists, read a window at a time; damage
    found on the way is appended to `damages` when the last list has been taken (offsets and
    byte counts are positions in the file)."""
    if size == 0:
        damages.append(Damage(0, 0, "the file is empty (the run died before its first write)"))
        return
    head = stream.read(len(HEADER))
    if head != HEADER:
        damages.append(Damage(0, size, "not a W&B transaction log (unknown header)"))
        return
    if size == len(HEADER):
        damages.append(Damage(0, 0, "the file holds only its header (no record was written)"))
        return
    losses = _Losses()
    buf = head + stream.read(WINDOW)
    base = 0  # file offset of buf[0]; always a multiple of BLOCK_SIZE
    pos = len(HEADER)
    at_eof = len(buf) < len(HEADER) + WINDOW
    pending: list[bytes] | None = None
    pending_at = 0
    lost_from: int | None = None  # scanning for the next intact chunk since this file offset
    lost_reason = ""
    unpack = struct.unpack_from
    crc32 = zlib.crc32
    type_crcs = {t: crc32(bytes([t])) for t in (FULL, FIRST, MIDDLE, LAST)}
    done: list[bytes] = []  # payloads read since the last window was handed out
    while True:
        if not at_eof and len(buf) - pos < BLOCK_SIZE:
            if done:
                yield done
                done = []
            drop = (pos // BLOCK_SIZE) * BLOCK_SIZE
            more = stream.read(WINDOW)
            at_eof = len(more) < WINDOW
            buf = buf[drop:] + more
            base += drop
            pos -= drop
        end = len(buf)
        if pos >= end:
            break
        room = BLOCK_SIZE - (base + pos) % BLOCK_SIZE
        if room < CHUNK_HEADER:
            pos += room  # block trailer: padding
            continue
        if end - pos < CHUNK_HEADER:
            if lost_from is None:
                lost_from, lost_reason = base + pos, "the file ends inside a chunk header"
            pos = end
            break
        checksum, length, kind = unpack("<IHB", buf, pos)
        start = pos + CHUNK_HEADER
        stop = start + length
        if kind in type_crcs and length <= room - CHUNK_HEADER and stop <= end:
            chunk = buf[start:stop]
            intact = crc32(chunk, type_crcs[kind]) == checksum
        else:
            intact = False
        if not intact:
            if lost_from is None:
                # The first bad byte: what is lost reaches back to a record left incomplete.
                lost_from = pending_at if pending is not None else base + pos
                if checksum == 0 and length == 0 and kind == 0:
                    lost_reason = "a region of zeros (unwritten space: a power loss?)"
                elif stop > end and kind in type_crcs and length <= room - CHUNK_HEADER:
                    lost_reason = "the file ends in the middle of a record"
                elif kind in type_crcs and length <= room - CHUNK_HEADER:
                    lost_reason = "a checksum does not match"
                else:
                    lost_reason = "a chunk header is damaged"
                pending = None
            # Scan on for the next intact chunk; runs of zeros are skipped in one step (a chunk
            # header has a non-zero type byte, at most six bytes after the first non-zero one).
            if buf[pos] == 0:
                found = _NON_ZERO.search(buf, pos)
                pos = max(pos + 1, (found.start() - 6) if found else end)
            else:
                pos += 1
            continue
        if lost_from is not None:
            losses.add(lost_from, base + pos - lost_from, lost_reason)
            lost_from = None
        pos = stop
        if kind == FULL:
            if pending is not None:
                losses.add(
                    pending_at,
                    base + start - CHUNK_HEADER - pending_at,
                    "a record was left incomplete",
                )
                pending = None
            done.append(chunk)
        elif kind == FIRST:
            if pending is not None:
                losses.add(
                    pending_at,
                    base + start - CHUNK_HEADER - pending_at,
                    "a record was left incomplete",
                )
            pending = [chunk]
            pending_at = base + start - CHUNK_HEADER
        elif pending is None:
            # The tail of a record whose start was lost: part of the previous loss, if any.
            losses.add(
                base + start - CHUNK_HEADER,
                CHUNK_HEADER + length,
                "a record continues a lost start",
            )
        elif kind == MIDDLE:
            pending.append(chunk)
        else:
            pending.append(chunk)
            done.append(b"".join(pending))
            pending = None
    if done:
        yield done
    file_end = base + len(buf)
    if lost_from is not None:
        losses.add(lost_from, file_end - lost_from, lost_reason)
    elif pending is not None:
        losses.add(pending_at, file_end - pending_at, "the file ends in the middle of a record")
    damages.extend(losses.damages)


def record_kind(payload: bytes) -> str | None:
    """The record's type, read from its field tags without decoding it."""
    pos = 0
    if payload[:1] == b"\x08":  # skip `num`
        pos = 1
        while pos < len(payload) and payload[pos] & 0x80:
            pos += 1
        pos += 1
    kind = _KIND_BY_TAG.get(payload[pos : pos + 1]) or _KIND_BY_TAG.get(payload[pos : pos + 2])
    if kind is not None:
        return kind
    pos = 0
    end = len(payload)
    while pos < end:
        tag, pos = wire.read_varint(payload, pos)
        number, wire_type = tag >> 3, tag & 7
        kind = _KIND_BY_FIELD.get(number)
        if kind is not None:
            return kind
        if wire_type == 0:
            _, pos = wire.read_varint(payload, pos)
        elif wire_type == 2:
            length, pos = wire.read_varint(payload, pos)
            pos += length
        elif wire_type == 1:
            pos += 8
        elif wire_type == 5:
            pos += 4
        else:
            return None
    return None


# A JSON number as json's scanner matches it (ASCII digits only): most logged values.
_JSON_NUMBER = re.compile(r"-?(?:0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?")


def _json_value(text: str) -> Any:
    """A config or summary value: `json.loads(text)`, or the text when it is not JSON. A plain
    number is converted as json converts it (float with a fraction or exponent, else int),
    without the decoder's machinery."""
    number = _JSON_NUMBER.fullmatch(text)
    try:
        if number is not None:
            return float(text) if number.group(1) or number.group(2) else int(text)
        return json.loads(text)
    except ValueError:  # not JSON (or an int too long to convert, which json refuses too)
        return text


def _set_nested(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[path[-1]] = value


def _remove_nested(tree: dict[str, Any], path: list[str]) -> None:
    node: Any = tree
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict):
        node.pop(path[-1], None)


@dataclass
class FileContents:
    """What one transaction log says about its run.

    `points` holds, per key, the history record (row, counted from 0 in this file) each value
    came from, the row's step and the value. `last_time` is the newest moment the file records
    (a history `_timestamp`, a console line, a system-stats sample, the run's start), so that
    whether the run is alive can be judged from the file's contents, never its mtime.
    """

    path: Path
    run_id: str | None = None
    entity: str | None = None
    project: str | None = None
    name: str | None = None
    group: str | None = None
    job_type: str | None = None
    notes: str | None = None
    tags: tuple[str, ...] = ()
    start_time: datetime | None = None
    has_run_record: bool = False
    writes_metadata: bool = False
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    points: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    step_metrics: dict[str, str] = field(default_factory=dict)
    exit_code: int | None = None
    console: list[tuple[float, str]] = field(default_factory=list)
    last_time: float | None = None
    history_rows: int = 0
    records: int = 0
    damages: list[Damage] = field(default_factory=list)
    size: int = 0
    mtime: float = 0.0


class UnreadableFile(Exception):
    """A run file that cannot be opened as a regular file (the reason is the message)."""


def open_run_file(path: Path) -> tuple[IO[bytes], os.stat_result]:
    """Open a run file for reading without ever blocking: a FIFO or device named like a run
    file, a dangling symlink or an unreadable file raise UnreadableFile instead."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        raise UnreadableFile("the file does not exist (a dangling symlink?)") from None
    except PermissionError:
        raise UnreadableFile("the file cannot be read (permission denied)") from None
    except OSError as exc:
        raise UnreadableFile(f"the file cannot be opened ({exc.strerror or exc})") from None
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise UnreadableFile("not a regular file (a pipe, socket or device named like a run file)")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb", buffering=0), info


def read_wandb_file(path: Path, *, scan: bool = True, scan_from: int | None = None) -> FileContents:
    """Decode the records of one `.wandb` file that reportgen uses, streaming it. `scan`
    False decodes every record with protobuf, one by one (the plain reader, slower, kept to
    check the fast one against). `scan_from`: windows of fewer records are read the plain way
    (default SCAN_FROM_RECORDS; 0 scans every window, as tests of the fast path do)."""
    try:
        stream, info = open_run_file(path)
    except UnreadableFile as exc:
        return FileContents(path=path, damages=[Damage(0, 0, str(exc))])
    contents = FileContents(path=path, size=info.st_size, mtime=info.st_mtime)
    try:
        with stream:
            _read_records(
                iter_payload_batches(stream, info.st_size, contents.damages),
                contents,
                (SCAN_FROM_RECORDS if scan_from is None else scan_from) if scan else None,
            )
    except OSError as exc:  # an I/O error part-way (a failing disk, a file removed on NFS)
        contents.damages.append(Damage(0, 0, f"reading stopped: {exc.strerror or exc}"))
    return contents


# Records are read a window at a time: its history and summary records together (see
# reportgen.sources.wandb_records), the few others one by one, in order.
WINDOW_RECORDS = 16_384
WINDOW_BYTES = 8 * 1024 * 1024
# A window of fewer records costs less decoded one by one than the scan's fixed cost.
SCAN_FROM_RECORDS = 256


def stat_and_read(path: Path) -> tuple[os.stat_result | None, FileContents]:
    """A file's stat before reading, and its contents. Run in worker processes: this module
    imports only numpy, protobuf and (to decode) pyarrow, so a worker starts quickly."""
    try:
        before = path.stat()
    except OSError:
        before = None
    return before, read_wandb_file(path)


def _read_records(
    batches: Iterator[list[bytes]], contents: FileContents, scan_from: int | None
) -> None:
    """Gather what the records say into `contents`: windows of at least `scan_from` records
    are scanned side by side, the others decoded with protobuf one by one (`scan_from` None:
    every record, the plain reader, kept to check the fast one against)."""
    reader = _RecordReader(contents, scan_from)
    window: list[bytes] = []
    size = 0
    for batch in batches:
        window.extend(batch)
        size += sum(map(len, batch))
        if len(window) >= WINDOW_RECORDS or size >= WINDOW_BYTES:
            reader.add(window)
            window = []
            size = 0
    if window:
        reader.add(window)
    reader.finish()


_HISTORY = pb.Record.DESCRIPTOR.fields_by_name["history"].number
_SUMMARY = pb.Record.DESCRIPTOR.fields_by_name["summary"].number
_NUMBER_OF_KIND = {kind: number for number, kind in _KIND_BY_FIELD.items()}
_OTHER_WANTED = np.array(
    sorted(_NUMBER_OF_KIND[k] for k in WANTED_KINDS if k not in ("history", "summary"))
)
_PRIMARY = np.array(sorted(_NUMBER_OF_KIND[k] for k in PRIMARY_KINDS))
# Records needed only for their moment (and, for the last console lines, their text).
_STATS = _NUMBER_OF_KIND["stats"]
_TIMED = np.array(sorted(_NUMBER_OF_KIND[k] for k in ("stats", "output", "output_raw")))
_IS_KIND = np.zeros(max(_KIND_BY_FIELD) + 1, dtype=bool)
_IS_KIND[list(_KIND_BY_FIELD)] = True
_NUMBER_OF: dict[str | None, int] = {**_NUMBER_OF_KIND, None: -1}  # None: no record type


def _kinds_table(numbers: np.ndarray) -> np.ndarray:
    """Flags by record kind (a field number, or -1 for none: the table's last place), for
    looking a window's kinds up at once (np.isin sorts both sides every time)."""
    table = np.zeros(max(_KIND_BY_FIELD) + 2, dtype=bool)
    table[numbers] = True
    return table


_IS_PRIMARY = _kinds_table(_PRIMARY)
_IS_OTHER_WANTED = _kinds_table(_OTHER_WANTED)
_IS_TIMED = _kinds_table(_TIMED)


@functools.cache
def _record_list() -> Any:
    """Record with every field repeated (built on first use: a few milliseconds)."""
    return record_list_class(pb.Record)


def record_kinds(
    buffer: wire.Buffer, payloads: list[bytes], types: wandb_records.RecordTypes | None = None
) -> np.ndarray:
    """Each record's type as the field number of its `record_type` (-1: none), as
    `record_kind` reads it: read for every record at once (records that need more than a
    quick read are left to `record_kind`). `types`: the window's `record_types`, if read."""
    if types is None:
        types = wandb_records.record_types(buffer.u8, buffer.starts, buffer.ends)
    number = types.number
    decided = (number >= 0) & (number < len(_IS_KIND))
    decided &= _IS_KIND[np.clip(number, 0, len(_IS_KIND) - 1)]
    kinds = np.where(decided, number, -1)
    for index in np.flatnonzero(~decided).tolist():
        kind = record_kind(payloads[index])
        kinds[index] = _NUMBER_OF_KIND[kind] if kind is not None else -1
    return kinds


class _RecordReader:
    """What a file's records say, gathered window by window (see `FileContents`)."""

    def __init__(self, contents: FileContents, scan_from: int | None):
        self.contents = contents
        self.scan_from = scan_from
        self.names = wandb_records.KeyNames()
        self.console: deque[tuple[float, str]] = deque()
        self.console_chars = 0
        # Per key: the rows and values in the order written, a batch at a time.
        self.columns: dict[str, tuple[list[np.ndarray], list[np.ndarray]]] = {}
        self.row_steps: list[np.ndarray] = []
        self.rows = 0
        self.summary: dict[str, str] = {}
        self.newest = -np.inf

    def add(self, window: list[bytes]) -> None:
        scan = self.scan_from is not None and len(window) >= self.scan_from
        if scan:
            buffer = wire.as_buffer(window)
            types = wandb_records.record_types(buffer.u8, buffer.starts, buffer.ends)
            kinds = record_kinds(buffer, window, types)
        else:  # a window read the plain way: each record's kind read on its own
            kinds = np.array([_NUMBER_OF[record_kind(p)] for p in window], dtype=np.int64)
        contents = self.contents
        if _IS_PRIMARY[kinds].any():
            contents.writes_metadata = True
        history = np.flatnonzero(kinds == _HISTORY)
        summary = np.flatnonzero(kinds == _SUMMARY)
        if history.size or summary.size:
            if scan:
                decoded = wandb_records.decode_window(
                    buffer, history, summary, window, self.names, pb.Record.FromString, types
                )
            else:
                decoded = wandb_records.decode_plainly(
                    history.tolist(), summary.tolist(), window, pb.Record.FromString
                )
            self._add_history(decoded.history, history, window)
            # Roughly two summary records per logged step: only the last value of each key
            # is decoded, unless the window must be merged record by record.
            contents.records += len(summary)
            if decoded.summary is not None:
                for index in decoded.summary_failed:
                    contents.damages.append(
                        Damage(0, len(window[index]), "a summary record could not be decoded")
                    )
                self.summary.update(decoded.summary)
            else:
                payloads = [window[index] for index in summary.tolist()]
                for start in range(0, len(payloads), SUMMARY_BATCH):
                    _merge_summaries(
                        payloads[start : start + SUMMARY_BATCH], self.summary, contents
                    )
        others = np.flatnonzero(_IS_OTHER_WANTED[kinds])
        timed = others[_IS_TIMED[kinds[others]]]
        if scan and timed.size and self._add_timed(buffer, types, timed, kinds[timed], window):
            others = others[~_IS_TIMED[kinds[others]]]
        for index in others.tolist():
            self._add_other(window[index], _KIND_BY_FIELD[int(kinds[index])])

    def _add_timed(
        self,
        buffer: wire.Buffer,
        types: wandb_records.RecordTypes,
        which: np.ndarray,
        kinds: np.ndarray,
        window: list[bytes],
    ) -> bool:
        """Take in a window's system-stats and console records together: the newest of their
        moments, and the console lines that can still be in the tail. False, having changed
        nothing, when they must be read one by one (see `wandb_records.timed_records`): then
        `_add_other` meets them in order."""
        found = wandb_records.timed_records(buffer, which, kinds, window, _record_list(), types)
        if found is None:
            return False
        self.contents.records += len(which)
        newest = max(  # each moment summed as the plain reader sums it
            stamp.seconds + stamp.nanos / 1e9
            for messages in found.values()
            for stamp in (message.timestamp for message in messages)
        )
        if newest > self.newest:
            self.newest = newest
        # The tail after appending every line is the longest suffix of the lines within
        # CONSOLE_TAIL_CHARS (or the last line alone): appending only the lines back to the
        # first that crosses that bound leaves the same tail.
        place = np.empty(len(which), dtype=np.int64)  # each record's place among its kind
        for kind in found:
            of_kind = np.flatnonzero(kinds == kind)
            place[of_kind] = np.arange(len(of_kind))
        lines: list[tuple[float, str]] = []
        chars = 0
        for at in np.flatnonzero(kinds != _STATS)[::-1].tolist():
            output = found[int(kinds[at])][int(place[at])]
            lines.append((output.timestamp.seconds + output.timestamp.nanos / 1e9, output.line))
            chars += len(output.line)
            if chars > CONSOLE_TAIL_CHARS:
                break
        for moment, line in reversed(lines):
            self._add_console_line(moment, line)
        return True

    def _add_history(
        self, batch: wandb_records.HistoryBatch, which: np.ndarray, window: list[bytes]
    ) -> None:
        contents = self.contents
        for index in np.flatnonzero(~batch.decoded).tolist():
            size = len(window[which[index]])
            contents.damages.append(Damage(0, size, "a record could not be decoded"))
        decoded = len(batch.step)
        contents.records += decoded
        steps = batch.step.copy()
        unnamed = np.flatnonzero(batch.needs_row)
        steps[unnamed] = self.rows + unnamed
        self.row_steps.append(steps)
        if batch.newest > self.newest:
            self.newest = batch.newest
        if len(batch.item_key):
            # Keys in the order they first appear; each key's values in the order written.
            order = np.argsort(batch.item_key, kind="stable")
            bounds = np.cumsum(np.bincount(batch.item_key, minlength=len(batch.keys)))
            starts = bounds - np.bincount(batch.item_key, minlength=len(batch.keys))
            present = np.flatnonzero(bounds > starts)
            first_seen = order[starts[present]]
            rows = batch.item_row[order] + self.rows
            values = batch.item_value[order]
            for code in present[np.argsort(first_seen)].tolist():
                key = batch.keys[code]
                column = self.columns.get(key)
                if column is None:
                    column = self.columns[key] = ([], [])
                column[0].append(rows[starts[code] : bounds[code]])
                column[1].append(values[starts[code] : bounds[code]])
        self.rows += decoded

    def _add_other(self, payload: bytes, kind: str) -> None:
        contents = self.contents
        try:
            record = pb.Record.FromString(payload)
        except Exception:  # a payload that passed its checksum but does not decode
            contents.damages.append(Damage(0, len(payload), "a record could not be decoded"))
            return
        contents.records += 1
        if kind == "output_raw" or kind == "output":
            output = record.output_raw if kind == "output_raw" else record.output
            moment = output.timestamp.seconds + output.timestamp.nanos / 1e9
            if moment > self.newest:
                self.newest = moment
            self._add_console_line(moment, output.line)
        elif kind == "stats":
            moment = record.stats.timestamp.seconds + record.stats.timestamp.nanos / 1e9
            if moment > self.newest:
                self.newest = moment
        elif kind == "run":
            _add_run(record.run, contents)
        elif kind == "config":
            _apply_config(record.config, contents.config)
        elif kind == "exit":
            contents.exit_code = int(record.exit.exit_code)
        elif kind == "metric":
            metric = record.metric
            name = metric.name or metric.glob_name
            if name and metric.step_metric:
                contents.step_metrics[name] = metric.step_metric

    def _add_console_line(self, moment: float, line: str) -> None:
        """Keep the last CONSOLE_TAIL_CHARS characters of console lines (at least one line)."""
        self.console.append((moment, line))
        self.console_chars += len(line)
        while self.console_chars > CONSOLE_TAIL_CHARS and len(self.console) > 1:
            self.console_chars -= len(self.console.popleft()[1])

    def finish(self) -> None:
        contents = self.contents
        values = self.summary
        contents.summary = {
            k: _json_value(values[k]) for k in sorted(values) if not k.startswith("_wandb")
        }
        newest = self.newest
        if contents.start_time is not None:
            start = contents.start_time.replace(tzinfo=timezone.utc).timestamp()
            newest = max(newest, start)
        contents.last_time = float(newest) if np.isfinite(newest) else None
        contents.history_rows = self.rows
        # Arrays, not lists: compact, and cheap to send back from a worker process.
        steps_of_rows = (
            np.concatenate(self.row_steps) if self.row_steps else np.zeros(0, dtype=np.int64)
        )
        contents.points = {}
        for key, (row_parts, value_parts) in self.columns.items():
            key_rows = np.concatenate(row_parts)
            contents.points[key] = (key_rows, steps_of_rows[key_rows], np.concatenate(value_parts))
        contents.console = list(self.console)


def record_step(step_num: int | None, step_item: int | None, place: int) -> int:
    """A history record's step: `step.num` when the writer set it, else its `_step` item, else
    its place among the file's history records (writers that set no step at all).

    Legacy writers may leave the step message out (or at 0) and carry the step as `_step`.
    `wandb_records.decode_history` applies this rule to whole batches."""
    if step_num is not None and (step_num != 0 or step_item is None):
        return step_num
    if step_item is not None:
        return step_item
    return place


def _add_run(run: Any, contents: FileContents) -> None:
    contents.has_run_record = True
    contents.run_id = run.run_id or contents.run_id
    contents.entity = run.entity or None
    contents.project = run.project or None
    contents.name = run.display_name or None
    contents.group = run.run_group or None
    contents.job_type = run.job_type or None
    contents.notes = run.notes or None
    contents.tags = tuple(run.tags)
    if run.HasField("start_time"):
        contents.start_time = run.start_time.ToDatetime().replace(tzinfo=None)
    _apply_config(run.config, contents.config)


def _apply_config(config: Any, tree: dict[str, Any]) -> None:
    for item in config.update:
        path = list(item.nested_key) or [item.key]
        if path[0] == "_wandb":
            continue
        _set_nested(tree, path, _json_value(item.value_json))
    for item in config.remove:
        _remove_nested(tree, list(item.nested_key) or [item.key])


def _merge_summaries(payloads: list[bytes], values: dict[str, str], contents: FileContents) -> None:
    """Apply summary records in order, updates and removals (the plain way).

    Parsing concatenated payloads as one message merges them (repeated fields append in
    order), cheaper than one parse per record; removals would lose their place among the
    updates in a merged message, and a damaged payload would spoil it: then each record is
    applied on its own."""
    try:
        merged = [pb.Record.FromString(b"".join(payloads)).summary]
    except Exception:
        merged = []
    if not merged or merged[0].remove:
        merged = []
        for payload in payloads:
            try:
                merged.append(pb.Record.FromString(payload).summary)
            except Exception:
                contents.damages.append(
                    Damage(0, len(payload), "a summary record could not be decoded")
                )
    for record in merged:
        for item in record.update:
            values[wandb_records.item_key(list(item.nested_key), item.key)] = item.value_json
        for item in record.remove:
            values.pop(".".join(item.nested_key) or item.key, None)


def iter_wandb_files(root: Path) -> Iterator[Path]:
    """Every run-*.wandb under root (see `find_wandb_files`), each real file once."""
    yield from find_wandb_files(root)[0]


def find_wandb_files(root: Path) -> tuple[list[Path], list[tuple[Path, Path]]]:
    """Every run-*.wandb under root, and the copies that were left out as (copy, original).

    Symlinked folders and files are followed (users gather chosen runs with symlinks), each
    real folder is walked once (a link cycle ends the walk), and each file is read once: a
    symlink to a file already found, or a byte-identical copy of one under the same name (a
    `latest-run` folder copied as a real folder), is left out. Paths through `latest-run` lose to any other path.
    """
    if not root.is_dir():
        return [root], []
    found: list[Path] = []
    seen_dirs: set[tuple[int, int]] = set()
    for folder, dirs, files in os.walk(root, followlinks=True):
        try:
            info = os.stat(folder)
        except OSError:
            dirs[:] = []
            continue
        if (info.st_dev, info.st_ino) in seen_dirs:
            dirs[:] = []
            continue
        seen_dirs.add((info.st_dev, info.st_ino))
        # Real folders before symlinks to them, so that a run is named by its real folder.
        dirs.sort(key=lambda d: (os.path.islink(os.path.join(folder, d)), d))
        # A folder named like a run file is kept too, to be reported as a file that cannot be
        # read (never silently passed over).
        named_like_runs = [d for d in dirs if d.startswith("run-") and d.endswith(".wandb")]
        dirs[:] = [d for d in dirs if d not in named_like_runs]
        for name in sorted([*files, *named_like_runs]):
            if name.startswith("run-") and name.endswith(".wandb"):
                found.append(Path(folder) / name)
    found.sort(key=lambda path: ("latest-run" in path.parts, len(path.parts), str(path)))
    return _without_copies(found)


def _without_copies(paths: list[Path]) -> tuple[list[Path], list[tuple[Path, Path]]]:
    kept: list[Path] = []
    copies: list[tuple[Path, Path]] = []
    by_identity: dict[tuple[int, int], Path] = {}
    by_size: dict[int, list[Path]] = {}
    for path in paths:
        try:
            info = path.stat()
        except OSError:  # dangling or unreadable: kept, to be reported as a damaged file
            kept.append(path)
            continue
        original = by_identity.get((info.st_dev, info.st_ino))
        if original is None and stat.S_ISREG(info.st_mode) and info.st_size > 0:
            # A copy keeps its name (run-<id>.wandb); files of other runs can hold the same
            # bytes (runs that died after writing only a header).
            original = next(
                (
                    other
                    for other in by_size.get(info.st_size, [])
                    if other.name == path.name and _same_bytes(path, other)
                ),
                None,
            )
        if original is not None:
            copies.append((path, original))
            continue
        by_identity[(info.st_dev, info.st_ino)] = path
        if stat.S_ISREG(info.st_mode):
            by_size.setdefault(info.st_size, []).append(path)
        kept.append(path)
    kept.sort()
    return kept, copies


def _same_bytes(a: Path, b: Path) -> bool:
    """Whether two files of equal size hold the same bytes (compared a window at a time)."""
    try:
        with open(a, "rb") as left, open(b, "rb") as right:
            while True:
                one = left.read(WINDOW)
                if one != right.read(WINDOW):
                    return False
                if not one:
                    return True
    except OSError:
        return False
