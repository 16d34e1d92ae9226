"""What the replaced scripts did that the project table now does too: a Pareto front of quality
against cost, columns parsed out of run names, a pivot over two config columns, and checkpoints
accepted where a run id is.

Nine runs are written once for this module by the real wandb client (offline). Their last
accuracy and token count are chosen so that the front is known: r1, r2, r4, r6 and r8 are on it
(r6 and r8 tie), r3 and r5 and r7 are beaten, r9 logged no tokens.
"""

from __future__ import annotations

import csv
import json
import pickle
import sys
import types
import zipfile
from collections import OrderedDict
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from conftest import write_spec
from runwriter import PlannedRun, write_runs

from reportgen import build
from reportgen.analysis.project import name_value, pareto_front
from reportgen.checkpoint import CheckpointError, read_checkpoint_run
from reportgen.cli import main

# run id: (name, lr, batch size, last accuracy, last tokens or None)
RUNS = {
    "paretor1": ("stage1-gnn-lr1e-3-bs32", 1e-3, 32, 0.70, 100.0),
    "paretor2": ("stage1-gnn-lr1e-3-bs64", 1e-3, 64, 0.75, 200.0),
    "paretor3": ("stage2c-mlp-lr3e-4-bs32", 3e-4, 32, 0.72, 250.0),
    "paretor4": ("stage2c-gnn-lr3e-4-bs64", 3e-4, 64, 0.80, 400.0),
    "paretor5": ("stage2c-mlp-lr1e-3-bs32", 1e-3, 32, 0.80, 500.0),
    "paretor6": ("stage3-gnn-lr3e-4-bs64", 3e-4, 64, 0.85, 800.0),
    "paretor7": ("stage3-mlp-lr1e-4-bs32", 1e-4, 32, 0.60, 100.0),
    "paretor8": ("stage3-mlp-lr3e-4-bs128", 3e-4, 128, 0.85, 800.0),
    "paretor9": ("adhoc-baseline", 1e-3, 64, 0.50, None),
}
FRONT = ["paretor1", "paretor2", "paretor4", "paretor6", "paretor8"]
STEPS = 5
NAME_FIELDS = r"^(?P<stage>stage\d+[a-z]?)-(?P<model>[a-z]+)-lr(?P<lr>[0-9.e-]+)-bs(?P<bs>\d+)$"


def plan(run_id: str) -> PlannedRun:
    name, lr, bs, accuracy, tokens = RUNS[run_id]
    rows = []
    for step in range(STEPS):
        row = {"eval/accuracy": accuracy * (step + 1) / STEPS, "train/loss": 1.0 / (step + 1)}
        if tokens is not None:
            row["tokens"] = tokens * (step + 1) / STEPS
        rows.append(row)
    return PlannedRun(
        name=name,
        run_id=run_id,
        rows=rows,
        config={"optim": {"lr": lr}, "batch_size": bs},
        tags=["pareto"],
    )


SPEC = """\
version: 1
title: Quality against cost
source: {{type: wandb-offline, path: "{path}"}}
runs: {runs}
metrics:
  accuracy: eval/accuracy
  tokens: tokens
  loss: train/loss
project_table:
  metrics: {{accuracy: last, tokens: last, loss: min}}
  primary: accuracy
  name_fields: '{fields}'
  group_by: [name.model]
  pareto: {{quality: accuracy, cost: tokens}}
  pivot: {{rows: config.optim.lr, columns: config.batch_size, metric: accuracy}}
outputs:
  dir: "{out}"
  formats: [markdown, csv, json, pdf]
"""


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_runs(tmp_path_factory.mktemp("pareto"), [plan(rid) for rid in RUNS])


@pytest.fixture(scope="module")
def result(runs_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("pareto-out")
    text = SPEC.format(path=runs_dir, out=tmp / "out", fields=NAME_FIELDS, runs="{}")
    return build(write_spec(tmp / "spec.yaml", text))


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def last_accuracy(run_id: str) -> float:
    return RUNS[run_id][3] * STEPS / STEPS


# --- Pareto front --------------------------------------------------------------------------------


def test_the_front_holds_exactly_the_runs_no_other_run_beats(result):
    pareto = result.report.analysis.project.pareto
    assert (pareto.quality_goal, pareto.cost_goal) == ("maximize", "minimize")
    assert [p.run_id for p in pareto.front] == FRONT
    assert [(p.cost, p.quality) for p in pareto.front] == [
        (RUNS[r][4], last_accuracy(r)) for r in FRONT
    ]
    beaten = [p.run_id for p in pareto.points if not p.on_front]
    assert sorted(beaten) == ["paretor3", "paretor5", "paretor7"]
    assert pareto.without_values == ("paretor9",)


def test_pareto_csv_lists_every_run_with_both_values_cheapest_first(result):
    table = read_csv(result.out_dir / "project_pareto.csv")
    assert list(table[0]) == ["run_id", "run_name", "metric.tokens", "metric.accuracy", "on_front"]
    assert [(r["run_id"], r["on_front"]) for r in table] == [
        ("paretor1", "true"),
        ("paretor7", "false"),
        ("paretor2", "true"),
        ("paretor3", "false"),
        ("paretor4", "true"),
        ("paretor5", "false"),
        ("paretor6", "true"),
        ("paretor8", "true"),
    ]


def test_report_json_names_the_front(result):
    pareto = json.loads((result.out_dir / "report.json").read_text())["project"]["pareto"]
    assert pareto["quality"] == {"alias": "accuracy", "goal": "maximize"}
    assert pareto["cost"] == {"alias": "tokens", "goal": "minimize"}
    assert [p["run_id"] for p in pareto["front"]] == FRONT
    assert pareto["front"][0] == {
        "run_id": "paretor1",
        "run_name": "stage1-gnn-lr1e-3-bs32",
        "quality": last_accuracy("paretor1"),
        "cost": 100.0,
    }
    assert pareto["without_values"] == ["paretor9"]


def test_markdown_shows_the_front_and_its_chart(result):
    text = (result.out_dir / "report.md").read_text()
    assert "### Pareto front: accuracy against tokens" in text
    assert "5 of 8 runs are on the front" in text
    assert "1 run lacks a finite value of one of them." in text
    assert "![Pareto front of accuracy against tokens](plots/pareto-front.png)" in text
    assert "| stage1-gnn-lr1e-3-bs32 | `paretor1` | 100 | 0.7 |" in text
    assert (result.out_dir / "plots" / "pareto-front.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pdf_has_the_pareto_section(result):
    from pdftext import page_texts

    text = " ".join(" ".join(page_texts(result.out_dir / "report.pdf")).split())
    assert "Pareto front: accuracy against tokens" in text
    assert "5 of 8 runs are on the front" in text


def test_pareto_front_keeps_ties_and_follows_directions():
    rows = pa.Table.from_pylist(
        [
            {"run_id": "a", "run_name": "a", "q": 1.0, "c": 1.0},
            {"run_id": "b", "run_name": "b", "q": 1.0, "c": 1.0},
            {"run_id": "c", "run_name": "c", "q": 0.5, "c": 2.0},
            {"run_id": "d", "run_name": "d", "q": float("nan"), "c": 0.1},
        ]
    )
    points, missing = pareto_front(rows, "q", "c", "minimize", "minimize")
    assert [(p.run_id, p.on_front) for p in points] == [("a", True), ("b", True), ("c", True)]
    assert missing == ["d"]
    points, _ = pareto_front(rows, "q", "c", "maximize", "minimize")
    assert [(p.run_id, p.on_front) for p in points] == [("a", True), ("b", True), ("c", False)]


# --- fields from names ---------------------------------------------------------------------------


def test_name_fields_become_typed_columns(result):
    project = result.report.analysis.project
    by_id = {row["run_id"]: row for row in project.rows}
    assert {k: v for k, v in by_id["paretor3"].items() if k.startswith("name.")} == {
        "name.stage": "stage2c",
        "name.model": "mlp",
        "name.lr": 3e-4,
        "name.bs": 32,
    }
    kinds = {c.name: c.kind for c in project.columns if c.name.startswith("name.")}
    assert kinds == {
        "name.stage": "string",
        "name.model": "string",
        "name.lr": "number",
        "name.bs": "integer",
    }
    assert [by_id["paretor9"][f"name.{f}"] for f in ("stage", "model", "lr", "bs")] == [None] * 4
    assert project.notes[-1] == (
        "project_table.name_fields: 1 of 9 run names do not match, so their name.* cells are "
        "empty: 'adhoc-baseline'"
    )
    table = read_csv(result.out_dir / "project.csv")
    row = next(r for r in table if r["run_id"] == "paretor8")
    assert (row["name.stage"], row["name.model"], row["name.lr"], row["name.bs"]) == (
        "stage3",
        "mlp",
        "0.0003",
        "128",
    )


def test_group_by_a_name_field_aggregates_like_a_config_column(result):
    groups = result.report.analysis.project.groups
    assert groups.by == ("name.model",)
    assert [(g.keys, g.runs) for g in groups.rows] == [(("gnn",), 4), (("mlp",), 4), ((None,), 1)]
    gnn = [last_accuracy(r) for r in ("paretor1", "paretor2", "paretor4", "paretor6")]
    assert groups.rows[0].values["metric.accuracy"]["mean"] == pytest.approx(
        np.mean(gnn), rel=1e-12
    )
    table = read_csv(result.out_dir / "project_groups.csv")
    assert [(r["name.model"], r["runs"]) for r in table] == [("gnn", "4"), ("mlp", "4"), ("", "1")]


def test_name_values_are_numbers_only_when_the_whole_text_is_one():
    assert [name_value(t) for t in ("3e-4", "128", "0.5", "2c", "1_000", "nan", "-7")] == [
        3e-4,
        128,
        0.5,
        "2c",
        "1_000",
        "nan",
        -7,
    ]


def test_name_fields_without_named_groups_are_refused(runs_dir, tmp_path, capsys):
    text = SPEC.format(path=runs_dir, out=tmp_path, fields="stage(\\d+)", runs="{}")
    spec = write_spec(tmp_path / "s.yaml", text)
    assert main(["validate", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err == (
        f"{spec}:12:16: project_table.name_fields: the expression has no named group; name each "
        "field, as in (?P<lr>[0-9.e-]+)\n"
    )


# --- pivot ---------------------------------------------------------------------------------------


def test_a_name_field_that_the_expression_lacks_is_refused(runs_dir, tmp_path, capsys):
    fields = NAME_FIELDS.replace("?P<model>", "?P<arch>")
    spec = write_spec(
        tmp_path / "s.yaml", SPEC.format(path=runs_dir, out=tmp_path, fields=fields, runs="{}")
    )
    assert main(["validate", str(spec)]) == 2
    assert capsys.readouterr().err == (
        f"{spec}:13:14: project_table.group_by[0]: name_fields has no group 'model'; valid: arch, bs, lr, stage\n"
    )


def test_pivot_cells_are_the_mean_over_the_runs_with_both_values(result):
    pivot = result.report.analysis.project.pivot
    assert (pivot.rows, pivot.columns, pivot.metric, pivot.aggregate) == (
        "config.optim.lr",
        "config.batch_size",
        "metric.accuracy",
        "mean",
    )
    assert pivot.row_values == (1e-4, 3e-4, 1e-3)
    assert pivot.column_values == (32, 64, 128)

    def mean(*ids: str) -> float:
        return float(np.asarray([last_accuracy(r) for r in ids]).mean())

    assert pivot.cells == (
        (mean("paretor7"), None, None),
        (mean("paretor3"), mean("paretor4", "paretor6"), mean("paretor8")),
        (mean("paretor1", "paretor5"), mean("paretor2", "paretor9"), None),
    )
    assert pivot.runs == ((1, 0, 0), (1, 2, 1), (2, 2, 0))


def test_pivot_csv_and_json_carry_the_cells(result):
    table = read_csv(result.out_dir / "project_pivot.csv")
    assert list(table[0]) == [
        "config.optim.lr",
        "config.batch_size=32",
        "config.batch_size=64",
        "config.batch_size=128",
    ]
    assert [r["config.optim.lr"] for r in table] == ["0.0001", "0.0003", "0.001"]
    assert table[1]["config.batch_size=64"] == repr((0.80 + 0.85) / 2)
    assert table[0]["config.batch_size=64"] == ""
    pivot = json.loads((result.out_dir / "report.json").read_text())["project"]["pivot"]
    assert pivot["row_values"] == [1e-4, 3e-4, 1e-3]
    assert pivot["cells"][2] == [(0.70 + 0.80) / 2, (0.75 + 0.50) / 2, None]
    assert pivot["runs"][1] == [1, 2, 1]


def test_markdown_pivot_table(result):
    text = (result.out_dir / "report.md").read_text()
    assert "### `metric.accuracy` by `config.optim.lr` × `config.batch_size`" in text
    assert "| `0.0003` | 0.72 (1) | 0.825 (2) | 0.85 (1) |" in text
    assert "| `0.0001` | 0.6 (1) | – | – |" in text


# --- checkpoints ---------------------------------------------------------------------------------


class _Marker:
    """Pickled under a torch-like global name (see `torch_like_globals`)."""


@contextmanager
def torch_like_globals():
    """Modules named as torch's, so the stdlib pickler writes the globals torch.save writes.

    torch itself is not installed for the tests (its wheel needs CUDA libraries); the
    checkpoint is written in torch's layout with the stdlib instead: a zip archive holding
    `<name>/data.pkl` (protocol 2, tensors as persistent ids), `<name>/data/0`, `<name>/version`.
    """
    torch = types.ModuleType("torch")
    utils = types.ModuleType("torch._utils")

    def _rebuild_tensor_v2(*args):  # pragma: no cover - never called by the reader
        raise AssertionError("the reader must not call pickled globals")

    class FloatStorage:
        pass

    _rebuild_tensor_v2.__module__ = "torch._utils"
    _rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"
    FloatStorage.__module__ = "torch"
    FloatStorage.__qualname__ = "FloatStorage"
    utils._rebuild_tensor_v2 = _rebuild_tensor_v2
    torch.FloatStorage = FloatStorage
    torch._utils = utils
    saved = {k: sys.modules.get(k) for k in ("torch", "torch._utils")}
    sys.modules.update({"torch": torch, "torch._utils": utils})
    try:
        yield _rebuild_tensor_v2, FloatStorage
    finally:
        for key, module in saved.items():
            if module is None:
                sys.modules.pop(key, None)
            else:
                sys.modules[key] = module


class _Tensor:
    def __init__(self, rebuild, storage_type):
        self.rebuild = rebuild
        self.storage_type = storage_type

    def __reduce__(self):
        storage = _StorageRef(self.storage_type)
        return (self.rebuild, (storage, 0, (2, 2), (2, 1), False, OrderedDict()))


class _StorageRef:
    def __init__(self, storage_type):
        self.storage_type = storage_type


def write_torch_like_checkpoint(path: Path, payload_extra: dict) -> Path:
    with torch_like_globals() as (rebuild, storage_type):

        class Pickler(pickle.Pickler):
            def persistent_id(self, obj):
                if isinstance(obj, _StorageRef):
                    return ("storage", obj.storage_type, "0", "cpu", 4)
                return None

        payload = {
            "model": OrderedDict([("layer.weight", _Tensor(rebuild, storage_type))]),
            "step": 1200,
            **payload_extra,
        }
        import io

        buffer = io.BytesIO()
        Pickler(buffer, protocol=2).dump(payload)
    stem = path.stem
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(f"{stem}/data.pkl", buffer.getvalue())
        archive.writestr(f"{stem}/byteorder", "little")
        archive.writestr(f"{stem}/data/0", np.zeros(4, dtype=np.float32).tobytes())
        archive.writestr(f"{stem}/version", "3\n")
    return path


class _Exploit:
    def __init__(self, target: Path):
        self.target = target

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.target}",))


def test_a_checkpoint_names_its_run_and_nothing_in_it_runs(tmp_path):
    flag = tmp_path / "pwned"
    path = write_torch_like_checkpoint(
        tmp_path / "ckpt.pt",
        {"wandb_run_path": "tester/tests/paretor4", "trap": _Exploit(flag)},
    )
    found = read_checkpoint_run(path)
    assert (found.entity, found.project, found.run_id) == ("tester", "tests", "paretor4")
    assert not flag.exists()
    assert "torch" not in sys.modules or sys.modules["torch"].__spec__ is not None


def test_the_run_path_may_sit_in_nested_hyperparameters(tmp_path):
    path = tmp_path / "last.ckpt"
    hparams = {"hyper_parameters": {"wandb_run_path": "https://wandb.ai/team/proj/runs/abc123"}}
    path.write_bytes(pickle.dumps({"epoch": 3, **hparams}))
    found = read_checkpoint_run(path)
    assert (found.entity, found.project, found.run_id) == ("team", "proj", "abc123")


def test_a_checkpoint_without_a_run_path_is_refused_with_what_to_do(tmp_path):
    path = write_torch_like_checkpoint(tmp_path / "bare.pt", {})
    with pytest.raises(CheckpointError) as caught:
        read_checkpoint_run(path)
    assert str(caught.value) == (
        f"checkpoint {path}: no wandb_run_path in it; save wandb.run.path under that key when "
        "checkpointing, or give the run id"
    )


def test_a_checkpoint_chooses_the_run_of_a_build(runs_dir, tmp_path):
    checkpoint = write_torch_like_checkpoint(
        tmp_path / "model.pt", {"wandb_run_path": "tester/tests/paretor6"}
    )
    runs = f'{{ids: ["{checkpoint}"]}}'
    text = SPEC.format(path=runs_dir, out=tmp_path / "out", fields=NAME_FIELDS, runs=runs)
    result = build(write_spec(tmp_path / "spec.yaml", text))
    assert [run.id for run in result.report.runs] == ["paretor6"]
    assert result.report.notes[0] == f"runs.ids[0]: checkpoint {checkpoint} belongs to run paretor6"


def test_keys_accepts_a_checkpoint_for_run(runs_dir, tmp_path, capsys):
    checkpoint = write_torch_like_checkpoint(
        tmp_path / "model.pt", {"wandb_run_path": "tester/tests/paretor9"}
    )
    code = main(["keys", "--source", str(runs_dir), "--run", str(checkpoint), "--json"])
    assert code == 0
    keys = {row["key"] for row in json.loads(capsys.readouterr().out)}
    assert "tokens" not in keys and "eval/accuracy" in keys


def test_an_unreadable_checkpoint_is_one_line_and_exit_2(runs_dir, tmp_path, capsys):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"not a pickle at all")
    code = main(["keys", "--source", str(runs_dir), "--run", str(broken)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --run: checkpoint {broken}: not a readable pickle (")
    assert err.count("\n") == 1


def test_a_legacy_torch_checkpoint_is_read_too(tmp_path):
    """torch before 1.6 wrote a magic number, the protocol, system info, then the object."""
    path = tmp_path / "old.pth"
    with path.open("wb") as handle:
        for part in (
            0x1950A86A20F9469CFC6C,
            1001,
            {"protocol_version": 1001, "little_endian": True},
            {"state_dict": OrderedDict(), "wandb_run_path": "team/proj/legacy01"},
            ["0"],
        ):
            pickle.dump(part, handle, protocol=2)
        handle.write(b"\x00" * 16)  # raw tensor bytes follow the pickles
    assert read_checkpoint_run(path).run_id == "legacy01"
