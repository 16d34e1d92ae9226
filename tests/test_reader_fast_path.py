"""The reader's fast path (records decoded a window at a time) gives exactly what decoding each
record with protobuf gives: on runs written by the real client, and on real records re-encoded
in the unusual ways protobuf allows (the fast path must leave those to protobuf, or read them
the same way), including records that do not decode at all."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from reportgen.sources.wandb_file import (
    BLOCK_SIZE,
    CHUNK_HEADER,
    HEADER,
    FileContents,
    iter_wandb_files,
    pb,
    read_payloads,
    read_wandb_file,
)

FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def frame(payloads: list[bytes]) -> bytes:
    """A transaction log holding these payloads (W&B's framing: 32 KiB blocks, CRC-32)."""
    out = bytearray(HEADER)
    for payload in payloads:
        rest = payload
        first = True
        while True:
            room = BLOCK_SIZE - len(out) % BLOCK_SIZE
            if room < CHUNK_HEADER:
                out += bytes(room)
                continue
            part, rest = rest[: room - CHUNK_HEADER], rest[room - CHUNK_HEADER :]
            kind = (FULL if not rest else FIRST) if first else (LAST if not rest else MIDDLE)
            crc = zlib.crc32(part, zlib.crc32(bytes([kind])))
            out += struct.pack("<IHB", crc, len(part), kind) + part
            first = False
            if not rest:
                break
    return bytes(out)


def same_contents(fast: FileContents, plain: FileContents) -> None:
    for name in (
        "run_id", "name", "config", "summary", "step_metrics", "exit_code", "console",
        "last_time", "history_rows", "records", "has_run_record", "writes_metadata", "tags",
    ):  # fmt: skip
        assert getattr(fast, name) == getattr(plain, name), name
    assert [(d.offset, d.lost_bytes, d.reason) for d in fast.damages] == [
        (d.offset, d.lost_bytes, d.reason) for d in plain.damages
    ]
    assert list(fast.points) == list(plain.points)  # keys in the order they first appear
    for key, arrays in plain.points.items():
        for mine, theirs in zip(fast.points[key], arrays, strict=True):
            assert mine.dtype == theirs.dtype and mine.tobytes() == theirs.tobytes(), key


def test_runs_written_by_the_client_read_the_same_both_ways(project_dir, shared_dir):
    files = [*iter_wandb_files(project_dir), *iter_wandb_files(shared_dir)]
    assert len(files) >= 5
    for path in files:
        fast, plain = read_wandb_file(path, scan_from=0), read_wandb_file(path, scan=False)
        same_contents(fast, plain)
        same_contents(read_wandb_file(path), plain)  # small windows read the plain way
        assert fast.history_rows > 0 and fast.points


def history_record(items: list[bytes], step: int | None, num: int = 7) -> bytes:
    """A Record payload holding a history record of these raw item encodings."""
    body = b"".join(b"\x0a" + varint(len(item)) + item for item in items)
    if step is not None:
        inner = b"\x08" + varint(step) if step else b""
        body += b"\x12" + varint(len(inner)) + inner
    return b"\x08" + varint(num) + b"\x12" + varint(len(body)) + body


def item(key: bytes, value: bytes) -> bytes:
    return b"\x12" + varint(len(key)) + key + b"\x82\x01" + varint(len(value)) + value


def varint(number: int) -> bytes:
    out = bytearray()
    while True:
        byte = number & 0x7F
        number >>= 7
        out.append(byte | (0x80 if number else 0))
        if not number:
            return bytes(out)


@pytest.fixture
def real_payloads(project_dir: Path) -> list[bytes]:
    path = next(iter_wandb_files(project_dir))
    payloads, damages = read_payloads(path.read_bytes())
    assert not damages
    return payloads


def read_both(tmp_path: Path, payloads: list[bytes]) -> tuple[FileContents, FileContents]:
    folder = tmp_path / "wandb" / "offline-run-20260101_000000-crafted"
    folder.mkdir(parents=True)
    path = folder / "run-crafted.wandb"
    path.write_bytes(frame(payloads))
    fast, plain = read_wandb_file(path, scan_from=0), read_wandb_file(path, scan=False)
    same_contents(fast, plain)
    same_contents(read_wandb_file(path), plain)
    return fast, plain


def test_unusual_encodings_and_values_are_read_as_protobuf_reads_them(tmp_path, real_payloads):
    crafted = [
        # a length written in two bytes where one would do (protobuf accepts it)
        history_record([b"\x12\x01a\x82\x01\x81\x00" + b"5", item(b"_step", b"1")], None),
        # a field the reader does not use (HistoryItem.integer), and the key in `key`
        history_record([b"\x0a\x01b\x28\x05\x82\x01\x013"], 2),
        # a nested key of two parts, a value Python reads and Arrow does not, text values
        history_record(
            [
                b"\x12\x01c\x12\x01d\x82\x01\x03" + b"1_0",
                item(b"e", b" 2"),
                item(b"f", b"NaN"),
                item(b"g", b"true"),
                item(b"h", b'"text"'),
                item(b"i", b"-Infinity"),
                item(b"j", b"1e400"),
            ],
            3,
        ),
        # a key that is not UTF-8, and a value that is not: the records do not decode
        history_record([item(b"\xff\xfe", b"1")], 4),
        history_record([item(b"k", b"\xff")], 5),
        # a history record with control before it (fields the scan leaves to protobuf)
        b"\x08\x09\x82\x01\x02\x20\x01" + history_record([item(b"l", b"6")], 6)[2:],
    ]
    summary = pb.Record()
    summary.summary.update.add(nested_key=["m"], value_json="1")
    summary.summary.update.add(key="n", value_json="[1, 2]")
    bad_summary = summary.SerializeToString().replace(b"[1, 2]", b"[1,\xff]")
    fast, _ = read_both(tmp_path, [*real_payloads, *crafted, summary.SerializeToString()])
    assert fast.points["a"][2].tolist() == [5.0] and fast.points["a"][1].tolist() == [1]
    assert fast.points["b"][2].tolist() == [3.0] and fast.points["b"][1].tolist() == [2]
    assert fast.points["c.d"][2].tolist() == [10.0]
    assert fast.points["e"][2].tolist() == [2.0] and np.isnan(fast.points["f"][2][0])
    assert fast.points["g"][2].tolist() == [1.0] and "h" not in fast.points
    assert fast.points["i"][2].tolist() == [-np.inf] and fast.points["j"][2].tolist() == [np.inf]
    assert fast.points["l"][2].tolist() == [6.0] and "k" not in fast.points
    undecodable = [d for d in fast.damages if d.reason == "a record could not be decoded"]
    assert len(undecodable) == 2
    assert fast.summary["m"] == 1 and fast.summary["n"] == [1, 2]
    damaged, _ = read_both(
        tmp_path / "bad", [*real_payloads, summary.SerializeToString(), bad_summary]
    )
    assert [d.reason for d in damaged.damages] == ["a summary record could not be decoded"]
    assert damaged.summary["n"] == [1, 2]  # the damaged record's update is not applied


def test_a_summary_removal_keeps_its_place_among_updates(tmp_path, real_payloads):
    def summary(update: dict[str, str], remove: tuple[str, ...] = ()) -> bytes:
        record = pb.Record()
        for key, value in update.items():
            record.summary.update.add(nested_key=[key], value_json=value)
        for key in remove:
            record.summary.remove.add(nested_key=[key])
        return record.SerializeToString()

    payloads = [summary({"x": "1", "y": "2"}), summary({}, ("x",)), summary({"y": "3"})]
    fast, _ = read_both(tmp_path, [*real_payloads, *payloads])
    assert "x" not in fast.summary and fast.summary["y"] == 3


def test_a_few_records_of_thousands_of_items_are_read_as_protobuf_reads_them(
    tmp_path, real_payloads
):
    """A summary of 3,000 keys or a history record of 2,000 items among few records is left
    to protobuf after a few dozen fields (one numpy round a field would cost far more), and
    reads the same."""
    wide = pb.Record()
    for index in range(3000):
        wide.summary.update.add(nested_key=[f"eval/token_{index}"], value_json=str(index / 8))
    items = [item(f"per_layer/{index}".encode(), str(index).encode()) for index in range(2000)]
    fast, _ = read_both(
        tmp_path, [*real_payloads, wide.SerializeToString(), history_record(items, 900)]
    )
    assert len([key for key in fast.summary if key.startswith("eval/token_")]) == 3000
    assert fast.summary["eval/token_2999"] == 2999 / 8
    assert fast.points["per_layer/1999"][1].tolist() == [900]
    assert fast.points["per_layer/1999"][2].tolist() == [1999.0]
    assert not fast.damages


def stats_record(seconds: int, nanos: int = 0, key: str = "gpu.0.gpu") -> pb.Record:
    record = pb.Record()
    record.stats.timestamp.seconds = seconds
    record.stats.timestamp.nanos = nanos
    record.stats.item.add(key=key, value_json="12.5")
    return record


def console_record(seconds: int, line: str, raw: bool = True) -> bytes:
    record = pb.Record()
    output = record.output_raw if raw else record.output
    output.timestamp.seconds = seconds
    output.line = line
    return record.SerializeToString()


def test_system_stats_and_console_records_are_read_as_protobuf_reads_them(tmp_path, real_payloads):
    """Stats and console records are taken a window at a time; any that protobuf would read
    otherwise (two timestamps, merged; none; a record that does not decode) are read one by
    one, and the newest moment, the console tail and the damage are the plain reader's."""
    late = 4_000_000_000  # after every moment in the real run
    # One stats message holding two timestamps (protobuf merges them: the second's seconds,
    # the first's nanos, as the second sets none).
    body = stats_record(late + 50, 3).stats.SerializeToString()
    body += stats_record(late).stats.SerializeToString()
    two_stamps = b"\x3a" + varint(len(body)) + body
    # A timestamp whose nanos come before its seconds (read by protobuf as usual).
    stamp = b"\x10\x09\x08" + varint(late + 3)
    nanos_first = b"\x3a" + varint(len(stamp) + 2) + b"\x12" + varint(len(stamp)) + stamp
    cases = {
        "plain": [stats_record(late, 5).SerializeToString()],
        "negative nanos": [stats_record(late, -7).SerializeToString()],
        "nanos first": [nanos_first],
        "merged": [two_stamps],
        "no moment": [stats_record(0).SerializeToString()],
        "undecodable": [
            stats_record(late + 99, 0, "\x00").SerializeToString().replace(b"\x00", b"\xff")
        ],
        # control after the record's type, as current writers put it (read together), and
        # an exit record's field after it (protobuf keeps the last of the oneof: no moment)
        "control after": [console_record(late + 1, "a\n") + b"\x82\x01\x02\x20\x01"],
        "exit after": [console_record(late + 2, "b\n") + b"\x92\x01\x02\x08\x01"],
        "console": [console_record(late + at, f"line {at} " + "x" * 900 + "\n") for at in range(40)]
        + [console_record(late + 40, "last\n", raw=False)],
    }
    newest = {}
    for name, payloads in cases.items():
        fast, _ = read_both(tmp_path / name.replace(" ", "-"), [*real_payloads, *payloads])
        newest[name] = fast.last_time
    assert newest["plain"] == late + 5e-9
    assert newest["merged"] == late + 3e-9
    assert newest["negative nanos"] == late - 7e-9 and newest["nanos first"] == late + 3 + 9e-9
    assert newest["undecodable"] < late and newest["no moment"] < late
    assert newest["control after"] == late + 1 and newest["exit after"] < late
    assert newest["console"] == late + 40
    console, _ = read_both(tmp_path / "console-again", [*real_payloads, *cases["console"]])
    assert console.console[-1] == (late + 40, "last\n")
    assert sum(len(line) for _, line in console.console) <= 16_000
    undecodable, _ = read_both(tmp_path / "bad-again", [*real_payloads, *cases["undecodable"]])
    assert [d.reason for d in undecodable.damages] == ["a record could not be decoded"]


def console_body(seconds: int | None, line: bytes | None, extra: bytes = b"") -> bytes:
    """An OutputRawRecord's bytes: its timestamp (seconds only), its line, then `extra`."""
    out = b""
    if seconds is not None:
        stamp = b"\x08" + varint(seconds)
        out += b"\x12" + varint(len(stamp)) + stamp
    if line is not None:
        out += b"\x1a" + varint(len(line)) + line
    return out + extra


def raw_console(body: bytes) -> bytes:
    """A Record holding `body` as its output_raw message."""
    number = pb.Record.DESCRIPTOR.fields_by_name["output_raw"].number
    return varint(number << 3 | 2) + varint(len(body)) + body


def test_console_records_read_a_window_at_a_time_are_protobuf_s(tmp_path, real_payloads):
    """Console records read a window at a time give protobuf's moments and lines, line by
    line, however their fields are written (a field given twice: merged, or the last kept;
    nanos beyond int32: the low 32 bits; an unknown field; none at all); a line that is not
    UTF-8 leaves the record to be read (and reported) on its own."""
    late = 4_000_000_000
    stamp = b"\x08" + varint(late + 7) + b"\x10" + varint((1 << 64) - 5)  # nanos -5
    big = b"\x08" + varint(late + 8) + b"\x10" + varint((1 << 32) + 3)  # kept as 3
    cases = {
        "lines": [
            raw_console(console_body(late + at, f"line {at} ✓ é\n".encode())) for at in range(30)
        ],
        "negative nanos": [raw_console(b"\x12" + varint(len(stamp)) + stamp + b"\x1a\x02n\n")],
        "nanos beyond int32": [raw_console(b"\x12" + varint(len(big)) + big + b"\x1a\x02b\n")],
        "two stamps": [raw_console(console_body(late + 9, b"t\n") + console_body(late + 2, None))],
        "two lines": [raw_console(console_body(late + 3, b"first\n") + console_body(None, b"2nd"))],
        "no stamp": [raw_console(console_body(None, b"timeless\n"))],
        "no line": [raw_console(console_body(late + 4, None))],
        "unknown field": [raw_console(console_body(late + 5, b"u\n", b"\x38\x01"))],
        "not utf-8": [raw_console(console_body(late + 6, b"\xff\n"))],
    }
    read = {}
    for name, payloads in cases.items():
        read[name], _ = read_both(tmp_path / name.replace(" ", "-"), [*real_payloads, *payloads])
    assert read["lines"].console[-2:] == [
        (late + 28, "line 28 ✓ é\n"),
        (late + 29, "line 29 ✓ é\n"),
    ]
    assert read["lines"].last_time == late + 29
    assert read["negative nanos"].console[-1] == (late + 7 - 5e-9, "n\n")
    assert read["nanos beyond int32"].console[-1] == (late + 8 + 3e-9, "b\n")
    assert read["two stamps"].console[-1] == (late + 2, "t\n")  # merged: the later seconds
    assert read["two lines"].console[-1] == (late + 3, "2nd")  # the last line kept
    assert read["no stamp"].console[-1] == (0.0, "timeless\n")
    assert read["no line"].console[-1] == (late + 4, "")
    assert read["unknown field"].console[-1] == (late + 5, "u\n")
    damaged = read["not utf-8"]
    assert [d.reason for d in damaged.damages] == ["a record could not be decoded"]
    assert damaged.last_time < late


def test_config_and_summary_values_are_what_json_loads_gives(tmp_path, real_payloads):
    """Plain numbers skip json's decoder; every value is still what json.loads gives (or
    the text itself when it is not JSON)."""
    texts = [
        "0", "-0", "-0.0", "12", "1.5", "1e5", "1E+5", "-2.5e-3", "1e400", "01", "1.", "+1",
        " 1", "1 ", "\u0661\u0662", "1e", "9" * 5000, "NaN", "-Infinity", "true", '"x"', "",
        "[1, 2.0]",
    ]  # fmt: skip
    record = pb.Record()
    for index, text in enumerate(texts):
        record.summary.update.add(key=f"v{index}", value_json=text)
    fast, _ = read_both(tmp_path, [*real_payloads, record.SerializeToString()])
    for index, text in enumerate(texts):
        try:
            expected = json.loads(text)
        except ValueError:
            expected = text
        value = fast.summary[f"v{index}"]
        assert type(value) is type(expected) and repr(value) == repr(expected), text[:20]
