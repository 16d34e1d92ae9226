"""The run cache: entries round-trip, damage is detected, writers never tear an entry, and the
offline source skips decoding `.wandb` files that did not change."""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import cached_metas, write_spec
from runwriter import wandb_files

from reportgen import build
from reportgen.cache import (
    HISTORY,
    LAYOUT,
    CacheDamaged,
    CacheLocation,
    RunCache,
    default_location,
)
from reportgen.cli import main
from reportgen.runs import History

NAN, INF = float("nan"), float("inf")


def history_of(points: dict[str, tuple[list[int], list[float]]]) -> History:
    return History.from_points(points)


def same(a: History, b: History) -> bool:
    keys = a.keys()
    return keys == b.keys() and all(a.series(k).equals(b.series(k)) for k in keys)


def area(root: Path, mode: str = "normal"):
    return RunCache(root, mode).area("wandb", {"entity": "e", "project": "p", "base_url": ""})


def test_a_cached_history_is_plain_parquet_grouped_by_key_with_the_keys_listed(tmp_path):
    """Any Parquet reader sees the columns row, step, key, value; reportgen reads each key's
    values as one slice, by the counts in the file's metadata (no group-by)."""
    import json

    import pyarrow.parquet as pq

    from reportgen.runs import Column

    history = History(
        {
            "loss": Column(np.array([0, 1, 2]), np.array([0, 1, 1]), np.array([1.0, NAN, 0.5])),
            "_step": Column(np.array([0, 1, 2]), np.array([0, 1, 1]), np.array([0.0, 1, 1])),
            "acc": Column(np.array([2]), np.array([1]), np.array([-INF])),
        }
    )
    store = area(tmp_path)
    store.write("run1", {}, history)
    table = pq.read_table(store.path / "entries" / "run1.parquet")
    assert table.column_names == ["row", "step", "key", "value"]
    assert table.column("key").to_pylist() == ["loss"] * 3 + ["_step"] * 3 + ["acc"]
    assert table.column("row").to_pylist() == [0, 1, 2, 0, 1, 2, 2]
    listed = json.loads(table.schema.metadata[b"reportgen.keys"])
    assert listed == [["loss", 3], ["_step", 3], ["acc", 1]]
    loaded = store.read("run1").history
    assert loaded.count("loss") == 3 and loaded.overlaps("loss") == (1, 0)
    assert loaded.series("loss").to_dict() == {0: 1.0, 1: 0.5}


def test_a_history_whose_listed_counts_do_not_fit_its_rows_is_damaged(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from reportgen.cache import history_from_bytes

    table = pa.table({"row": [0, 1], "step": [0, 1], "key": ["a", "a"], "value": [1.0, 2.0]})
    table = table.replace_schema_metadata({b"reportgen.keys": b'[["a", 3]]'})
    sink = pa.BufferOutputStream()
    pq.write_table(table, sink)
    with pytest.raises(ValueError, match="3 values by count, 2 rows given"):
        history_from_bytes(sink.getvalue().to_pybytes())


def test_an_entry_round_trips_with_nan_and_infinity(tmp_path):
    history = history_of({"loss": ([0, 1, 2], [1.0, NAN, INF]), "acc": ([0, 10], [0.5, -INF])})
    area(tmp_path).write("run1", {"fingerprint": {"state": "finished"}}, history)
    entry = area(tmp_path).read("run1")
    assert entry is not None and entry.meta["fingerprint"] == {"state": "finished"}
    assert same(entry.history, history)
    assert math.isnan(entry.history.series("loss")[1])


def test_an_empty_history_round_trips(tmp_path):
    area(tmp_path).write("run1", {}, History())
    entry = area(tmp_path).read("run1")
    assert entry is not None and len(entry.history) == 0


def test_a_missing_entry_is_none(tmp_path):
    assert area(tmp_path).read("nothing") is None


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("truncate", r"run1\.parquet has [\d,]+ bytes, [\d,]+ expected"),
        ("flip", "run1.parquet does not match its checksum"),
        ("bad-json", "run1.json is not valid JSON"),
        ("no-parquet", "run1.parquet is missing"),
        # what a machine crash leaves of files renamed into place but not yet on the disk
        ("zeros", "run1.parquet does not match its checksum"),
        ("empty-meta", "run1.json is not valid JSON"),
    ],
)
def test_a_damaged_entry_raises_with_the_reason(tmp_path, damage, reason):
    history = history_of({"loss": (list(range(100)), [float(i) for i in range(100)])})
    store = area(tmp_path)
    store.write("run1", {"x": 1}, history)
    folder = store.path / "entries"
    parquet = folder / "run1.parquet"
    data = parquet.read_bytes()
    if damage == "truncate":
        parquet.write_bytes(data[:-10])
    elif damage == "flip":
        parquet.write_bytes(data[:40] + bytes([data[40] ^ 0xFF]) + data[41:])
    elif damage == "bad-json":
        (folder / "run1.json").write_text('{"x": ')
    elif damage == "zeros":
        parquet.write_bytes(bytes(len(data)))
    elif damage == "empty-meta":
        (folder / "run1.json").write_bytes(b"")
    else:
        parquet.unlink()
    with pytest.raises(CacheDamaged, match=reason):
        store.read("run1")


# --- the layout: an entry is files side by side in entries/ ----------------------------------


CONSOLE = b'[[1.5, "step 1"], [2.0, "done"]]'


def test_an_entry_is_its_metadata_history_and_side_files_flat_in_entries(tmp_path):
    """No folder per entry: `<name>.parquet`, `<name>.<side>` and `<name>.json` (which records
    the others' sizes and checksums) side by side, with no temporary file left behind."""
    import hashlib
    import json

    store = area(tmp_path)
    history = history_of({"loss": ([0, 1], [1.0, 0.5])})
    store.write("run1", {"fingerprint": None}, history, {"console.json": CONSOLE})
    entries = store.path / "entries"
    assert store.path == tmp_path / "v5" / store.path.name
    assert sorted(os.listdir(store.path)) == [".lock", "entries", "source.json"]
    assert sorted(os.listdir(entries)) == ["run1.console.json", "run1.json", "run1.parquet"]
    meta = json.loads((entries / "run1.json").read_text())
    parquet = (entries / "run1.parquet").read_bytes()
    assert meta["history"] == {
        "sha256": hashlib.sha256(parquet).hexdigest(), "bytes": len(parquet), "keys": 1
    }  # fmt: skip
    assert meta["sides"] == {
        "console.json": {"sha256": hashlib.sha256(CONSOLE).hexdigest(), "bytes": len(CONSOLE)}
    }
    assert (entries / "run1.console.json").read_bytes() == CONSOLE
    entry = store.read("run1")
    assert entry is not None and same(entry.history, history)
    assert store.read_side("run1", "console.json", entry.meta) == CONSOLE
    assert {oct(os.stat(entries / f).st_mode & 0o777) for f in os.listdir(entries)} == {"0o600"}


def test_a_run_id_that_ends_like_a_side_file_is_its_own_entry(tmp_path):
    """An entry's name has no dot, so `a.console` (whose metadata would be `a.console.json`, the
    side file of entry `a`), `a.parquet` and `a.json` get hashed names: each of the four
    entries reads back its own data, and `cache info` counts four."""
    store = area(tmp_path)
    names = ["a", "a.console", "a.parquet", "a.json"]
    for number, name in enumerate(names):
        side = f"[[0, {number}]]".encode()
        store.write(name, {"n": number}, history_of({"x": ([0], [float(number)])}),
                    {"console.json": side})  # fmt: skip
    files = sorted(os.listdir(store.path / "entries"))
    assert len(files) == 3 * len(names) and files[:3] == ["a.console.json", "a.json", "a.parquet"]
    hashed = sorted({f.split(".")[0] for f in files} - {"a"})
    assert len(hashed) == 3 and all(h.startswith("h-") and len(h) == 34 for h in hashed)
    for number, name in enumerate(names):
        entry = store.read(name)
        assert entry is not None and entry.meta["n"] == number
        assert entry.history.series("x").tolist() == [float(number)]
        assert store.read_side(name, "console.json", entry.meta) == f"[[0, {number}]]".encode()
    assert [info.entries for info in RunCache(tmp_path).areas()] == [4]


@pytest.mark.parametrize("side", ["json", "parquet", "../x", "a/b", ".hidden", "a..b", ""])
def test_a_side_file_cannot_take_the_name_of_the_metadata_history_or_a_path(tmp_path, side):
    with pytest.raises(ValueError, match="not a side file name"):
        area(tmp_path).write("run1", {}, History(), {side: b"x"})
    assert not (tmp_path / LAYOUT).exists() or not list((tmp_path / LAYOUT).rglob("run1*"))


@pytest.mark.parametrize("name", ["../../etc/passwd", "/abs/path.wandb", "x" * 101, "-x", ""])
def test_an_unusual_name_becomes_a_hashed_file_name_inside_entries(tmp_path, name):
    store = area(tmp_path)
    store.write(name, {"name": name}, History())
    (meta,) = (store.path / "entries").glob("*.json")
    assert meta.name.startswith("h-") and meta.with_suffix(".parquet").is_file()
    entry = store.read(name)
    assert entry is not None and entry.meta["name"] == name


def test_remove_deletes_every_file_of_the_entry_and_nothing_else(tmp_path):
    """Its metadata, history, side files and a temporary file a killed writer left; not the
    files of `run10` or `run1-b`, whose names start with `run1`."""
    store = area(tmp_path)
    for name in ("run1", "run10", "run1-b"):
        store.write(name, {}, history_of({"x": ([0], [1.0])}), {"console.json": CONSOLE})
    entries = store.path / "entries"
    (entries / ".run1.parquet.0123abcd.tmp").write_bytes(b"half")
    store.remove("run1")
    assert sorted(os.listdir(entries)) == [
        "run1-b.console.json", "run1-b.json", "run1-b.parquet",
        "run10.console.json", "run10.json", "run10.parquet",
    ]  # fmt: skip
    assert store.read("run1") is None
    assert store.read("run10") is not None and store.read("run1-b") is not None
    store.remove("run1")  # nothing left to remove
    area(tmp_path, "offline").remove("run10")  # an offline cache stores and removes nothing
    assert store.read("run10") is not None


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("missing", "run1.console.json is missing"),
        ("cut", "run1.console.json does not match its checksum"),
        ("altered", "run1.console.json does not match its checksum"),
        ("unrecorded", "run1.json records no console.json"),
    ],
)
def test_a_damaged_side_file_raises_with_the_reason(tmp_path, damage, reason):
    """The history still reads (a side file is read only when asked for); the side file is
    trusted only as the metadata records it."""
    store = area(tmp_path)
    store.write("run1", {}, history_of({"x": ([0], [1.0])}), {"console.json": CONSOLE})
    side = store.path / "entries" / "run1.console.json"
    if damage == "missing":
        side.unlink()
    elif damage == "cut":
        side.write_bytes(CONSOLE[:-3])
    elif damage == "altered":
        side.write_bytes(CONSOLE.replace(b"done", b"DONE"))
    entry = store.read("run1")
    assert entry is not None and entry.history.series("x").tolist() == [1.0]
    meta = {k: v for k, v in entry.meta.items() if k != "sides" or damage != "unrecorded"}
    with pytest.raises(CacheDamaged, match=reason):
        store.read_side("run1", "console.json", meta)


def test_an_entry_of_layout_v4_is_never_read_and_cache_clear_removes_it(
    tmp_path, monkeypatch, capsys
):
    """A whole, valid v4 entry (a folder with meta.json and history.parquet, as the previous
    version wrote it) in the same area: not read, named by `cache info`, removed by `clear`."""
    import hashlib
    import json

    from reportgen.cache import history_bytes

    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(tmp_path / "c"))
    store = area(tmp_path / "c")
    old = tmp_path / "c" / "v4" / store.path.name / "entries" / "run1"
    old.mkdir(parents=True)
    data = history_bytes(history_of({"loss": ([0, 1], [1.0, 2.0])}))
    (old / "history.parquet").write_bytes(data)
    record = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "keys": 1}
    (old / "meta.json").write_text(json.dumps({"fingerprint": None, "history": record}))
    size = len(data) + (old / "meta.json").stat().st_size
    shown = f"{size} B" if size < 1024 else f"{size / 1024:.1f} KB"
    assert store.read("run1") is None
    assert main(["cache", "info"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "  empty",
        f"  an older layout, never read: v4, {shown} (`reportgen cache clear` removes it)",
    ]
    store.write("run2", {}, History())
    assert main(["cache", "clear"]) == 0
    assert not (tmp_path / "c" / "v4").exists()
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["CACHEDIR.TAG", LAYOUT]
    assert list((tmp_path / "c" / LAYOUT).iterdir()) == [] and store.read("run2") is None


def test_refresh_reads_nothing_and_offline_writes_nothing(tmp_path):
    history = history_of({"loss": ([0], [1.0])})
    area(tmp_path).write("run1", {}, history)
    assert area(tmp_path, "refresh").read("run1") is None
    area(tmp_path, "offline").write("run2", {}, history)
    assert area(tmp_path).read("run2") is None


def test_the_location_comes_from_the_environment_then_the_spec_then_the_user(tmp_path, monkeypatch):
    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(tmp_path / "env"))
    assert default_location("spec-dir") == CacheLocation(
        tmp_path / "env", "set by REPORTGEN_CACHE_DIR"
    )
    monkeypatch.delenv("REPORTGEN_CACHE_DIR")
    assert default_location("spec-dir").path == Path("spec-dir")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_location().path == tmp_path / "xdg" / "reportgen"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert default_location().path == tmp_path / "home" / ".cache" / "reportgen"


# --- concurrent writers ------------------------------------------------------------------------


def _writer(root: str, writer: int, deadline: float) -> None:
    store = area(Path(root))
    size = 50
    while time.time() < deadline:
        size = size % 400 + 37
        points = {"v": (list(range(size)), [float(writer)] * size)}
        store.write("shared", {"writer": writer, "points": size}, History.from_points(points))


def test_concurrent_writers_never_leave_a_torn_entry(tmp_path):
    deadline = time.time() + 1.5
    context = multiprocessing.get_context("fork")
    writers = [context.Process(target=_writer, args=(str(tmp_path), w, deadline)) for w in (1, 2)]
    for process in writers:
        process.start()
    reads = 0
    store = area(tmp_path)
    while time.time() < deadline:
        entry = store.read("shared")  # raises CacheDamaged on a torn entry
        if entry is None:
            continue
        series = entry.history.series("v")
        assert len(series) == entry.meta["points"]
        assert set(series.tolist()) == {float(entry.meta["writer"])}
        reads += 1
    for process in writers:
        process.join()
        assert process.exitcode == 0
    assert reads > 10


# --- the offline source ------------------------------------------------------------------------


OFFLINE_SPEC = """\
version: 1
source: {{type: wandb-offline, path: "{path}"}}
runs: {{ids: [rlshort1]}}
metrics: {{length: response_length/mean}}
sampling: {{every: 100}}
outputs: {{dir: "{out}", formats: [csv]}}
"""


def _age(path: Path, seconds: float) -> None:
    moment = time.time() - seconds
    os.utime(path, (moment, moment))


def test_an_unchanged_wandb_file_is_not_decoded_again(project_copy, tmp_path, monkeypatch):
    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(tmp_path / "cache"))
    path = wandb_files(project_copy)["rlshort1"]
    _age(path, 60)
    spec = write_spec(
        tmp_path / "s.yaml", OFFLINE_SPEC.format(path=project_copy, out=tmp_path / "out")
    )
    table = tmp_path / "out" / "grpo-rlshort1_experiment.csv"
    build(spec)
    expected = table.read_text()
    # Same size, same mtime, other bytes: only a reader that trusts the cache still sees the run.
    stat = path.stat()
    path.write_bytes(b"\0" * stat.st_size)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    result = build(spec)
    assert result.report.run("rlshort1").rows == 1050
    assert table.read_text() == expected
    # A new mtime means the file changed: it is read again (and now it is empty of records).
    _age(path, 30)
    result = build(spec)
    assert result.report.run("rlshort1").rows == 0


def test_a_file_written_moments_ago_is_not_cached(project_copy, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(cache))
    for path in project_copy.glob("wandb/*/run-*.wandb"):
        os.utime(path)  # just now
    spec = write_spec(
        tmp_path / "s.yaml", OFFLINE_SPEC.format(path=project_copy, out=tmp_path / "out")
    )
    build(spec)
    assert not list(cache.glob(f"{LAYOUT}/*/entries/*"))


def test_an_entry_that_cannot_be_stored_is_one_warning_and_the_build_goes_on(
    project_copy, tmp_path, monkeypatch, capsys
):
    """A cache write that fails (here a folder where the entry's Parquet goes; a full disk
    alike) is said once, as a warning: the build writes its outputs and exits 0, the other
    files are cached, and the next build reads that file again."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(cache))
    for path in project_copy.glob("wandb/*/run-*.wandb"):
        _age(path, 60)
    spec = write_spec(
        tmp_path / "s.yaml",
        OFFLINE_SPEC.format(path=project_copy, out=tmp_path / "out").replace(
            "runs: {ids: [rlshort1]}\n", ""
        ),
    )
    area = RunCache(cache).area("wandb-offline", {})
    blocked = wandb_files(project_copy)["rlshort1"]
    area.entry_file(str(blocked.resolve()), HISTORY).mkdir(parents=True)
    files = len({path.resolve() for path in project_copy.glob("wandb/*/run-*.wandb")})
    for attempt in range(2):
        assert main(["build", str(spec), "-q"]) == 0
        assert capsys.readouterr().err.splitlines() == [
            f"warning: cache: could not store run data in {area.path} (Is a directory); "
            "what is not stored is read again by the next build"
        ], attempt
        assert (tmp_path / "out" / "grpo-rlshort1_experiment.csv").is_file()
        assert len(cached_metas(cache)) == files - 1


# --- the cache command -------------------------------------------------------------------------


def test_cache_info_and_clear(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(tmp_path / "c"))
    store = area(tmp_path / "c")
    store.write("run1", {}, history_of({"loss": ([0, 1], [1.0, 2.0])}))
    store.write("run2", {}, History())
    assert main(["cache", "info"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"cache: {tmp_path / 'c'} (set by REPORTGEN_CACHE_DIR)"
    assert out[1].startswith("  W&B e/p on the default server: 2 entries, ")
    assert main(["cache", "clear"]) == 0
    assert capsys.readouterr().out.startswith(f"cleared {tmp_path / 'c'} (")
    assert store.read("run1") is None
    assert main(["cache", "info"]) == 0
    assert capsys.readouterr().out.splitlines()[1] == "  empty"


def test_cache_info_counts_the_kept_charts_and_clear_removes_them(tmp_path, monkeypatch, capsys):
    from reportgen.cache import CHARTS
    from reportgen.render.chart_cache import ChartCache

    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(tmp_path / "c"))
    charts = ChartCache(tmp_path / "c" / CHARTS)
    charts.put("ab" + "0" * 62, {"png": b"\x89PNG" + b"\0" * 1020, "pdf": b"%PDF" + b"\0" * 1020})
    assert main(["cache", "info"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "  empty",
        "  charts kept for rebuilds: 2 files, 2.0 KB  [charts]",
        "total 2.0 KB",
    ]
    assert main(["cache", "clear"]) == 0
    assert capsys.readouterr().out == f"cleared {tmp_path / 'c'} (2.0 KB freed)\n"
    assert not (tmp_path / "c" / CHARTS).exists()
    assert charts.get("ab" + "0" * 62, ["png"]) is None


def test_cache_info_names_an_older_layout_and_clear_removes_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(tmp_path / "c"))
    old = tmp_path / "c" / "v2" / "wandb-offline-0123456789" / "entries" / "x"
    old.mkdir(parents=True)
    (old / "history.parquet").write_bytes(b"\0" * 2048)
    elsewhere = tmp_path / "c" / "notes"  # not reportgen's: left alone
    elsewhere.mkdir()
    assert main(["cache", "info"]) == 0
    assert capsys.readouterr().out.splitlines()[1:] == [
        "  empty",
        "  an older layout, never read: v2, 2.0 KB (`reportgen cache clear` removes it)",
    ]
    assert main(["cache", "clear"]) == 0
    assert capsys.readouterr().out == f"cleared {tmp_path / 'c'} (2.0 KB freed)\n"
    assert sorted(p.name for p in (tmp_path / "c").iterdir()) == ["notes"]


def test_every_record_round_trips_and_entries_of_the_old_layout_are_never_served(tmp_path):
    """Entries keep each record (row) of a history; an entry of an older layout (v1: one value
    per key and `_step`; v2: the same columns without the keys listed) sits in another folder
    that this version never reads."""
    from reportgen.sources.offline import OfflineSource
    from reportgen.spec import SourceSpec

    legacy = Path(__file__).parent / "data" / "legacy"
    cache = RunCache(tmp_path / "cache")
    for layout in ("v1", "v2", "v3", "v4"):
        old = tmp_path / "cache" / layout / "wandb-offline-0123456789" / "entries" / "x"
        old.mkdir(parents=True)
        (old / "meta.json").write_text('{"history": {"bytes": 0, "sha256": ""}}')
    for _attempt in range(2):  # the second read is served from the cache
        source = OfflineSource(SourceSpec("wandb-offline", path=str(legacy)), cache=cache)
        runs = {run.id: run for run in source.list_runs()}
        history = source.history(runs["legacysteps"])
        assert history.count("train/loss") == 10
        assert history.series("eval/acc", "eval/step").to_dict() == {
            0: 0.0, 1: 0.09, 2: 0.18, 3: 0.27
        }  # fmt: skip
        assert history.to_long().columns.tolist() == ["row", "step", "key", "value"]
    assert len(cached_metas(tmp_path / "cache", "wandb-offline-*")) == 2
    assert [a.path.parent.name for a in cache.areas()] == [LAYOUT] == ["v5"]


def test_a_console_is_kept_beside_the_metadata_and_read_only_for_a_run_of_several_files(
    project_copy, shared_dir, tmp_path
):
    """The entry's metadata keeps the tail a lone file's run shows; its side file
    `<name>.console.json` the whole console, read when files merge (a shared-mode run's two
    writers). Runs read from the cache are those read from the files, console tails included;
    a damaged console side file is read again."""
    import json
    import shutil

    from reportgen.sources.offline import CONSOLE_FILE, OfflineSource
    from reportgen.spec import SourceSpec

    root = tmp_path / "runs"
    shutil.copytree(project_copy, root / "project", symlinks=True)
    shutil.copytree(shared_dir, root / "shared", symlinks=True)
    for path in root.rglob("run-*.wandb"):
        _age(path, 60)
    spec = SourceSpec("wandb-offline", path=str(root))

    def runs(cache: RunCache | None) -> dict[str, object]:
        return {run.id: run for run in OfflineSource(spec, cache=cache).list_runs()}

    decoded = runs(None)
    assert len(decoded["shared01"].locations) == 2  # type: ignore[attr-defined]
    crash_tail = decoded["crash001"].console_tail  # type: ignore[attr-defined]
    assert any("CUDA out of memory" in line for line in crash_tail)
    assert decoded["shared01"].console_tail  # type: ignore[attr-defined]
    cache = RunCache(tmp_path / "cache")
    assert repr(runs(cache)) == repr(decoded)  # decoded, and stored
    metas = {
        json.loads(meta.read_text())["contents"]["run_id"]: meta
        for meta in cached_metas(tmp_path / "cache")
    }
    crash = json.loads(metas["crash001"].read_text())
    assert "console" not in crash["contents"]
    assert tuple(crash["contents"]["console_tail"]) == crash_tail
    assert metas["crash001"].with_name(f"{metas['crash001'].stem}.{CONSOLE_FILE}").is_file()
    assert repr(runs(cache)) == repr(decoded) and not cache.warnings  # from the cache
    shared = [m for m in cached_metas(tmp_path / "cache")
              if json.loads(m.read_text())["contents"]["run_id"] == "shared01"]  # fmt: skip
    assert len(shared) == 2
    side = shared[0].with_name(f"{shared[0].stem}.{CONSOLE_FILE}")
    side.write_bytes(side.read_bytes()[:-5])  # cut short
    assert repr(runs(cache)) == repr(decoded)
    assert len(cache.warnings) == 1
    assert f"({side.name} does not match its checksum)" in cache.warnings[0]
    assert "read the file again" in cache.warnings[0]
