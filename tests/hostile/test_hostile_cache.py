"""A damaged, read-only or oddly linked cache never stops a build or a `cache clear`."""

from __future__ import annotations

import contextlib
import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from reportgen.cache import LAYOUT
from reportgen.cli import main

SPEC = """\
version: 1
title: cache faults
source: {{type: wandb-offline, path: "{runs}"}}
metrics:
  loss: train/loss
sampling: {{x: _step, start: 0, every: 10}}
outputs: {{dir: "{out}", formats: [csv, json]}}
"""


def spec_for(project_dir: Path, tmp_path: Path) -> Path:
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC.format(runs=project_dir, out=tmp_path / "out"), encoding="utf-8")
    return path


def outputs(tmp_path: Path) -> dict[str, str]:
    return {p.name: p.read_text() for p in sorted((tmp_path / "out").glob("*.csv"))}


def metas(cache: Path) -> list[Path]:
    """Each entry's metadata file (`<name>.json`; a side file's name has a second dot)."""
    return sorted(p for p in cache.glob(f"{LAYOUT}/*/entries/*.json") if p.name.count(".") == 1)


WRONG_SHAPES = {
    "a list": [],
    "no history record": {"fingerprint": None},
    "history bytes as text": {"history": {"sha256": "0" * 64, "bytes": "many", "keys": 1}},
    "fingerprint as a list": "fingerprint",
    "contents as a number": "contents",
}


@pytest.mark.parametrize("shape", list(WRONG_SHAPES))
def test_a_meta_json_of_the_wrong_shape_is_a_miss_with_a_warning(
    shape, project_dir, tmp_path, monkeypatch, capsys
):
    cache = tmp_path / "cache"
    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(cache))
    spec = spec_for(project_dir, tmp_path)
    assert main(["build", str(spec), "-q"]) == 0
    first = outputs(tmp_path)
    damaged = metas(cache)
    for meta in damaged:
        wrong = WRONG_SHAPES[shape]
        if isinstance(wrong, str):  # keep the entry valid but for this one field
            data = json.loads(meta.read_text())
            data[wrong] = [1, 2] if wrong == "fingerprint" else 5
            wrong = data
        meta.write_text(json.dumps(wrong))
    capsys.readouterr()
    assert main(["build", str(spec), "-q"]) == 0
    err = capsys.readouterr().err.splitlines()
    assert err and all(line.startswith("warning: cache: the entry of ") for line in err)
    named = [re.search(r"was damaged \((h-[0-9a-f]{32}\.json)[ ']", line) for line in err]
    assert sorted(match.group(1) for match in named if match) == [m.name for m in damaged]
    assert outputs(tmp_path) == first
    assert main(["build", str(spec), "-q"]) == 0  # the entries were written again
    assert capsys.readouterr().err == ""


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """`folder` made read-only: by permissions, or for root (whom permissions do not stop) by
    a read-only bind mount; skipped where neither is possible."""
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob("*")]}
        for path in modes:
            path.chmod(modes[path] & ~0o222)
        try:
            yield
        finally:
            for path, mode in modes.items():
                path.chmod(mode)
        return
    mounted = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip("running as root without permission to mount: cannot make a folder read-only")
    try:
        remount = ["mount", "-o", "remount,ro,bind", str(folder)]
        if subprocess.run(remount, capture_output=True).returncode != 0:
            pytest.skip("cannot remount read-only here")
        yield
    finally:
        subprocess.run(["umount", str(folder)], capture_output=True)


def test_a_read_only_cache_is_used_read_only(project_dir, tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(cache))
    spec = spec_for(project_dir, tmp_path)
    assert main(["build", str(spec), "-q"]) == 0
    first = outputs(tmp_path)
    listing = sorted(str(p) for p in cache.rglob("*"))
    capsys.readouterr()
    with read_only(cache):
        assert not os.access(cache, os.W_OK)
        assert main(["build", str(spec), "-q"]) == 0
        err = capsys.readouterr().err.splitlines()
        assert main(["cache", "clear"]) == 2
        (refused,) = capsys.readouterr().err.splitlines()
    assert err == [
        f"warning: cache: {cache} is read-only for this user: using what it holds, "
        "storing nothing new"
    ]
    assert refused == f"error: cache: {cache} is read-only for this user; nothing was removed"
    assert outputs(tmp_path) == first
    assert sorted(str(p) for p in cache.rglob("*")) == listing


def test_cache_clear_removes_a_symlinked_area_as_a_link(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "entries").mkdir(parents=True)
    (elsewhere / "precious.txt").write_text("not the cache's to delete\n")
    (cache / LAYOUT).mkdir(parents=True)
    (cache / LAYOUT / "wandb-linked-0123456789").symlink_to(elsewhere, target_is_directory=True)
    (cache / LAYOUT / "wandb-real-0123456789" / "entries" / "run1").mkdir(parents=True)
    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(cache))
    assert main(["cache", "clear"]) == 0
    assert capsys.readouterr().err == ""
    assert list((cache / LAYOUT).iterdir()) == []
    assert (elsewhere / "precious.txt").read_text() == "not the cache's to delete\n"


def test_cache_clear_through_a_symlinked_cache_folder(tmp_path, monkeypatch, capsys):
    real = tmp_path / "real-cache"
    (real / LAYOUT / "wandb-a-0123456789" / "entries").mkdir(parents=True)
    link = tmp_path / "cache-link"
    link.symlink_to(real, target_is_directory=True)
    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(link))
    assert main(["cache", "clear"]) == 0
    assert list((real / LAYOUT).iterdir()) == [] and link.is_symlink()


def test_a_read_only_output_folder_is_exit_2_before_any_data_is_read(project_dir, tmp_path, capsys):
    (tmp_path / "out").mkdir()
    spec = spec_for(project_dir, tmp_path)
    with read_only(tmp_path / "out"):
        assert main(["build", str(spec)]) == 2
    (line,) = capsys.readouterr().err.splitlines()
    assert line == (
        f"error: outputs.dir: '{tmp_path / 'out'}' is read-only for this user; "
        "choose another output folder"
    )
