"""Read one `.wandb` transaction log: framing, damage accounting, and record decoding.

The format (measured on wandb 0.31): a 7-byte header (b":W&B", uint16 LE 0xBEE1, version 0),
then LevelDB-log framing in 32 KiB blocks. Each chunk is uint32 LE CRC-32 (of the type byte and
the data), uint16 LE length, uint8 type (1 full, 2 first, 3 middle, 4 last). Fewer than 7 bytes
left in a block are padding; a zero chunk header ends the written data. Records inside are
`wandb.proto.wandb_internal_pb2.Record` messages.

Damaged files are read as far as they are intact: a chunk with a bad checksum costs the rest of
its block (reading resumes at the next block), a cut file costs its last partial record, and each
loss is reported as a `Damage` instead of an exception.
"""

from __future__ import annotations

import json
import struct
import zlib
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from wandb.proto import wandb_internal_pb2

# The generated module has no type stubs for its message classes.
pb: Any = wandb_internal_pb2

HEADER = b":W&B" + struct.pack("<HB", 0xBEE1, 0)
BLOCK_SIZE = 32 * 1024
CHUNK_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4

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
    {"run", "config", "summary", "history", "exit", "output", "output_raw", "metric"}
)
CONSOLE_TAIL_CHARS = 16_000


@dataclass(frozen=True)
class Damage:
    """A part of a file that could not be read."""

    offset: int
    lost_bytes: int
    reason: str


def read_payloads(data: bytes) -> tuple[list[bytes], list[Damage]]:
    """Split a transaction log into record payloads, skipping over damage."""
    damages: list[Damage] = []
    if not data:
        return [], [Damage(0, 0, "the file is empty (the run died before its first write)")]
    if not data.startswith(HEADER):
        return [], [Damage(0, len(data), "not a W&B transaction log (unknown header)")]
    payloads: list[bytes] = []
    pending: list[bytes] | None = None
    pending_at = 0
    pos = len(HEADER)
    end = len(data)
    unpack = struct.unpack_from
    crc32 = zlib.crc32
    type_crcs = {t: crc32(bytes([t])) for t in (FULL, FIRST, MIDDLE, LAST)}
    while pos < end:
        room = BLOCK_SIZE - pos % BLOCK_SIZE
        if room < CHUNK_HEADER:
            pos += room
            continue
        if end - pos < CHUNK_HEADER:
            damages.append(Damage(pos, end - pos, "the file ends inside a chunk header"))
            break
        checksum, length, kind = unpack("<IHB", data, pos)
        if checksum == 0 and length == 0 and kind == 0:
            break
        start = pos + CHUNK_HEADER
        stop = start + length
        if kind not in type_crcs or length > room - CHUNK_HEADER:
            next_block = pos + room
            damages.append(Damage(pos, min(next_block, end) - pos, "a chunk header is damaged"))
            pending = None
            pos = next_block
            continue
        if stop > end:
            lost = end - (pending_at if pending is not None else pos)
            damages.append(Damage(pos, lost, "the file ends in the middle of a record"))
            pending = None
            break
        chunk = data[start:stop]
        if crc32(chunk, type_crcs[kind]) != checksum:
            next_block = pos + room
            lost_from = pending_at if pending is not None else pos
            damages.append(
                Damage(pos, min(next_block, end) - lost_from, "a checksum does not match")
            )
            pending = None
            pos = next_block
            continue
        pos = stop
        if kind == FULL:
            if pending is not None:
                damages.append(
                    Damage(pending_at, start - pending_at, "a record was left incomplete")
                )
                pending = None
            payloads.append(chunk)
        elif kind == FIRST:
            pending = [chunk]
            pending_at = start - CHUNK_HEADER
        elif pending is None:
            # The tail of a record whose start was lost: part of the previous loss, if any.
            if damages and damages[-1].offset + damages[-1].lost_bytes == start - CHUNK_HEADER:
                last = damages.pop()
                damages.append(
                    Damage(last.offset, last.lost_bytes + CHUNK_HEADER + length, last.reason)
                )
            else:
                damages.append(
                    Damage(start - CHUNK_HEADER, length, "a record continues a lost start")
                )
        elif kind == MIDDLE:
            pending.append(chunk)
        else:
            pending.append(chunk)
            payloads.append(b"".join(pending))
            pending = None
    if pending is not None:
        damages.append(
            Damage(pending_at, end - pending_at, "the file ends in the middle of a record")
        )
    return payloads, damages


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
        tag, pos = _varint(payload, pos)
        number, wire = tag >> 3, tag & 7
        kind = _KIND_BY_FIELD.get(number)
        if kind is not None:
            return kind
        if wire == 0:
            _, pos = _varint(payload, pos)
        elif wire == 2:
            length, pos = _varint(payload, pos)
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            return None
    return None


def _varint(data: bytes, pos: int) -> tuple[int, int]:
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


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _number(text: str) -> float | None:
    """A logged value as a float, or None for values that are not numbers (images, tables…)."""
    try:
        return float(text)
    except ValueError:
        pass
    if text == "true":
        return 1.0
    if text == "false":
        return 0.0
    return None


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
    """What one transaction log says about its run."""

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
    config: dict[str, Any] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    points: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    step_metrics: dict[str, str] = field(default_factory=dict)
    exit_code: int | None = None
    console: str = ""
    records: int = 0
    damages: list[Damage] = field(default_factory=list)
    size: int = 0
    mtime: float = 0.0


def read_wandb_file(path: Path) -> FileContents:
    """Decode the records of one `.wandb` file that reportgen uses."""
    data = path.read_bytes()
    stat = path.stat()
    contents = FileContents(path=path, size=len(data), mtime=stat.st_mtime)
    payloads, contents.damages = read_payloads(data)
    del data
    console: deque[str] = deque()
    console_chars = 0
    points: dict[str, tuple[list[int], list[float]]] = {}
    summary_payloads: list[bytes] = []
    parse = pb.Record.FromString
    for payload in payloads:
        kind = record_kind(payload)
        if kind not in WANTED_KINDS:
            continue
        if kind == "summary":
            # Roughly two per logged step: keep the bytes now, decode only what matters later.
            summary_payloads.append(payload)
            continue
        try:
            record = parse(payload)
        except Exception:  # a payload that passed its checksum but does not decode
            contents.damages.append(Damage(0, len(payload), "a record could not be decoded"))
            continue
        contents.records += 1
        if kind == "history":
            _add_history(record.history, points)
        elif kind == "output_raw" or kind == "output":
            line = record.output_raw.line if kind == "output_raw" else record.output.line
            console.append(line)
            console_chars += len(line)
            while console_chars > CONSOLE_TAIL_CHARS and len(console) > 1:
                console_chars -= len(console.popleft())
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
    contents.records += len(summary_payloads)
    contents.summary = _final_summary(summary_payloads, contents.damages)
    # Arrays, not lists: compact, and cheap to send back from a worker process.
    contents.points = {
        key: (np.asarray(steps, dtype=np.int64), np.asarray(values, dtype=float))
        for key, (steps, values) in points.items()
    }
    contents.console = "".join(console)
    return contents


def _add_history(history: Any, points: dict[str, tuple[list[int], list[float]]]) -> None:
    # The hot loop of the reader (one pass per logged value): kept flat on purpose.
    step = history.step.num
    for item in history.item:
        nested = item.nested_key
        key = nested[0] if len(nested) == 1 else ".".join(nested) or item.key
        if key == "_step":
            continue
        text = item.value_json
        try:
            value = float(text)
        except ValueError:
            number = _number(text)
            if number is None:
                continue
            value = number
        column = points.get(key)
        if column is None:
            column = points[key] = ([], [])
        column[0].append(step)
        column[1].append(value)


def _add_run(run: Any, contents: FileContents) -> None:
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


def _final_summary(payloads: list[bytes], damages: list[Damage]) -> dict[str, Any]:
    """The summary after every update: the last write of each key wins, removals included.

    Parsing the concatenated payloads as one message merges them (repeated fields append in
    order), which is far cheaper than one parse per record. Removals would lose their place
    among the updates in a merged message, and a damaged payload would spoil it: in either
    case the records are applied one by one instead.
    """
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
                damages.append(Damage(0, len(payload), "a summary record could not be decoded"))
    summary: dict[str, Any] = {}
    for record in merged:
        for item in record.update:
            nested = item.nested_key
            summary[nested[0] if len(nested) == 1 else ".".join(nested) or item.key] = (
                item.value_json
            )
        for item in record.remove:
            summary.pop(".".join(item.nested_key) or item.key, None)
    return {k: _json_value(summary[k]) for k in sorted(summary) if not k.startswith("_wandb")}


def iter_wandb_files(root: Path) -> Iterator[Path]:
    """Every run-*.wandb under root, not following symlinks (skips `latest-run`)."""
    import os

    if root.is_file():
        yield root
        return
    for folder, dirs, files in os.walk(root, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not os.path.islink(os.path.join(folder, d)))
        for name in sorted(files):
            if name.startswith("run-") and name.endswith(".wandb"):
                yield Path(folder) / name
