#!/usr/bin/env python
"""Sanity-check the demo runs written by train_demo.py.

Reads each ``run-<id>.wandb`` with a minimal LevelDB-log framing reader and the
wandb protobufs, then asserts the properties the demo promises (crash run has a
non-zero exit code + traceback in its console records, NaN run logged NaN,
collapse run's entropy ends near 0, healthy runs keep it clearly higher).

    python examples/check_demo.py examples/wandb
"""

from __future__ import annotations

import json
import math
import struct
import sys
from collections import Counter
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32 * 1024
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def iter_payloads(path: Path):
    data = path.read_bytes()
    pos = 7  # file header: b":W&B" + 2-byte magic + 1-byte version
    buf = b""
    while pos < len(data):
        left = BLOCK - (pos % BLOCK)
        if left < 7:  # block trailer padding
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            break
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            buf = chunk
        elif kind == MIDDLE:
            buf += chunk
        elif kind == LAST:
            yield buf + chunk
            buf = b""


def load(run_file: Path) -> dict:
    info = {"types": Counter(), "history": [], "console": [], "exit_code": None, "run": None}
    for payload in iter_payloads(run_file):
        rec = pb.Record.FromString(payload)
        kind = rec.WhichOneof("record_type")
        info["types"][kind] += 1
        if kind == "history":
            row = {it.key or "/".join(it.nested_key): it.value_json for it in rec.history.item}
            info["history"].append(row)
        elif kind == "output_raw":
            info["console"].append(rec.output_raw.line)
        elif kind == "exit":
            info["exit_code"] = rec.exit.exit_code
        elif kind == "run":
            info["run"] = rec.run
    return info


def series(info: dict, key: str) -> list[float]:
    return [
        float(json.loads(r[key]))
        if r[key] not in ("NaN", "Infinity", "-Infinity")
        else float(r[key].replace("Infinity", "inf"))
        for r in info["history"]
        if key in r
    ]


def main() -> int:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "examples/wandb")
    runs = {}
    for f in sorted(root.glob("wandb/offline-run-*/run-*.wandb")):
        info = load(f)
        name = info["run"].display_name
        runs[name] = info
        tags = list(info["run"].tags)
        ent = series(info, "actor/entropy")
        rl = series(info, "response_length/mean")
        loss = series(info, "train/loss")
        extra = ""
        if ent:
            tail = ent[-50:]
            extra = f"entropy[-50:] {sum(tail) / len(tail):.3f}  len(mean) {sum(rl) / len(rl):.2f}"
        if loss:
            extra = f"train/loss last {loss[-1]:.4g}  NaN steps {sum(math.isnan(x) for x in loss)}"
        print(
            f"{f.parent.name}  {f.stat().st_size / 1024:6.0f} KiB  {name:30s} exit={info['exit_code']} "
            f"steps={len(info['history'])} tags={tags}  {extra}"
        )
        print(f"    records: {dict(info['types'])}")

    ok = True

    def check(cond, msg):
        nonlocal ok
        print(("PASS " if cond else "FAIL ") + msg)
        ok &= bool(cond)

    by_tag = lambda t: [n for n, i in runs.items() if t in i["run"].tags]  # noqa: E731
    for n in by_tag("crash"):
        i = runs[n]
        console = "".join(i["console"])
        check(i["exit_code"] not in (None, 0), f"{n}: non-zero exit code ({i['exit_code']})")
        check(
            "Traceback" in console and "CUDA out of memory" in console,
            f"{n}: traceback in output_raw",
        )
    for n in by_tag("diverged"):
        vals = [r.get("train/loss") for r in runs[n]["history"]]
        check("NaN" in vals, f"{n}: NaN in value_json")
        check(runs[n]["exit_code"] == 0, f"{n}: exit code 0")
    collapse = by_tag("entropy-collapse")
    healthy_rl = [n for n in by_tag("healthy") if "grpo" in runs[n]["run"].tags]
    for n in collapse:
        e = series(runs[n], "actor/entropy")[-50:]
        check(sum(e) / len(e) < 0.05, f"{n}: entropy ends near 0 ({sum(e) / len(e):.4f})")
    for n in healthy_rl:
        e = series(runs[n], "actor/entropy")[-50:]
        check(sum(e) / len(e) > 0.2, f"{n}: healthy entropy stays up ({sum(e) / len(e):.3f})")
    lens = {
        n: sum(series(runs[n], "response_length/mean"))
        / len(series(runs[n], "response_length/mean"))
        for n in healthy_rl
    }
    check(
        len(lens) >= 2 and max(lens.values()) > 2 * min(lens.values()),
        f"healthy RL mean lengths differ: {lens}",
    )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
