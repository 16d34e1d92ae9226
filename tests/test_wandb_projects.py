"""Several W&B projects as one source, and `reportgen projects`: the real `wandb.Api` against the
loopback server (tests/wandb_server.py), serving runs the real client wrote offline into three
projects of the entity `tester` and one of the team `lab`.
"""

from __future__ import annotations

import csv
import json
import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import write_spec
from runwriter import PlannedRun, write_runs
from wandb_server import ServedRun, WandbServer, runs_from_folder

from reportgen import build
from reportgen.cli import main

KEY = "rgtest" + "0123456789abcdef" * 2 + "beefcafe"

# project → [(run id, name, last loss)]
PROJECTS = {
    "proj-a": [("pa000001", "alpha-lr1e-3", 0.30), ("dupe0001", "alpha-dupe", 0.20)],
    "proj-b": [("pb000001", "beta-lr3e-4", 0.25), ("dupe0001", "beta-dupe", 0.40)],
    "other": [("ot000001", "other-run", 0.10)],
    "lab/shared": [("lab00001", "lab-run", 0.50)],
}
STEPS = 6


def plans(project: str) -> list[PlannedRun]:
    entity, _, name = project.rpartition("/")
    return [
        PlannedRun(
            name=run_name,
            run_id=run_id,
            rows=[{"train/loss": last + 0.1 * (STEPS - 1 - s)} for s in range(STEPS)],
            config={"lr": 1e-3},
            project=name,
            entity=entity or "tester",
        )
        for run_id, run_name, last in PROJECTS[project]
    ]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[ServedRun]]:
    result = {}
    for project in PROJECTS:
        folder = tmp_path_factory.mktemp(project.replace("/", "-"))
        result[project] = runs_from_folder(write_runs(folder, plans(project)), export_finished=True)
    return result


@pytest.fixture(scope="module", autouse=True)
def hermetic_wandb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """wandb in this process reads nothing of the developer's own setup."""
    root = tmp_path_factory.mktemp("wandb-home")
    saved = dict(os.environ)
    for name in [k for k in os.environ if k.startswith("WANDB_")]:
        del os.environ[name]
    os.environ.update(
        WANDB_CONFIG_DIR=str(root / "config"),
        WANDB_CACHE_DIR=str(root / "cache"),
        WANDB_DATA_DIR=str(root / "data"),
        WANDB_DIR=str(root),
        WANDB_SILENT="true",
        WANDB_ERROR_REPORTING="false",
        NETRC=str(root / "netrc-none"),
    )
    yield
    os.environ.clear()
    os.environ.update(saved)


@pytest.fixture
def server(served, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[WandbServer]:
    monkeypatch.setenv("WANDB_API_KEY", KEY)
    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(tmp_path / "cache"))
    others = {name: runs for name, runs in served.items() if name != "proj-a"}
    with WandbServer(
        served["proj-a"], project="proj-a", api_key=KEY, projects=others, teams=("lab",)
    ) as running:
        monkeypatch.setenv("WANDB_BASE_URL", running.url)
        yield running


SPEC = """\
version: 1
title: Several projects
source: {source}
metrics:
  loss: train/loss
project_table:
  metrics: [loss]
  group_by: [project]
outputs:
  dir: "{out}"
  formats: [csv, json, markdown]
"""


def spec_for(tmp_path: Path, server: WandbServer, **source) -> Path:
    fields = {"type": "wandb", "entity": "tester", "base_url": server.url, **source}
    text = "{" + ", ".join(f"{k}: {json.dumps(v)}" for k, v in fields.items()) + "}"
    return write_spec(tmp_path / "spec.yaml", SPEC.format(source=text, out=tmp_path / "out"))


def read_csv(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def test_a_glob_merges_the_matching_projects_and_keeps_each_runs_project(server, tmp_path):
    result = build(spec_for(tmp_path, server, project="proj-*"))
    rows = {(r["project"], r["run_id"]): r for r in read_csv(result.out_dir / "project.csv")}
    assert sorted(rows) == [
        ("proj-a", "pa000001"),
        ("proj-a", "proj-a/dupe0001"),
        ("proj-b", "pb000001"),
        ("proj-b", "proj-b/dupe0001"),
    ]
    assert {r["entity"] for r in rows.values()} == {"tester"}
    # Each run's history came from its own project: its last loss is the one it logged there.
    assert float(rows[("proj-a", "proj-a/dupe0001")]["metric.loss"]) == pytest.approx(0.20)
    assert float(rows[("proj-b", "proj-b/dupe0001")]["metric.loss"]) == pytest.approx(0.40)
    assert server.ops()["GetProjects"] == 1
    report = json.loads((result.out_dir / "report.json").read_text())
    assert report["source"]["projects"] == ["tester/proj-a", "tester/proj-b"]
    assert {(r["project"], r["name"]) for r in report["runs"]} == {
        ("proj-a", "alpha-lr1e-3"),
        ("proj-a", "alpha-dupe"),
        ("proj-b", "beta-lr3e-4"),
        ("proj-b", "beta-dupe"),
    }
    assert "run ids found in more than one project are shown as project/id: dupe0001" in (
        result.report.notes
    )
    groups = report["project"]["groups"]["rows"]
    assert [(g["keys"], g["runs"]) for g in groups] == [
        ({"project": "proj-a"}, 2),
        ({"project": "proj-b"}, 2),
    ]


def test_a_list_of_projects_may_name_another_entitys(server, tmp_path):
    result = build(spec_for(tmp_path, server, projects=["other", "lab/shared"]))
    assert sorted((r.entity, r.project, r.id) for r in result.report.runs) == [
        ("lab", "shared", "lab00001"),
        ("tester", "other", "ot000001"),
    ]
    assert server.ops()["GetProjects"] == 0  # exact names need no listing
    text = (result.out_dir / "report.md").read_text()
    assert "| Source | W&B `tester/other`, `lab/shared` on " in text


def test_runs_lists_the_project_of_each_run(server, capsys):
    assert main(["runs", "--source", "wandb://tester/proj-*,other", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert sorted((r["project"], r["id"]) for r in listed) == [
        ("other", "ot000001"),
        ("proj-a", "pa000001"),
        ("proj-a", "proj-a/dupe0001"),
        ("proj-b", "pb000001"),
        ("proj-b", "proj-b/dupe0001"),
    ]
    assert main(["runs", "--source", "wandb://tester/proj-b"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["id", "name", "state", "steps", "created", "tags"]
    assert main(["runs", "--source", "wandb://tester/*"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:3] == ["id", "project", "name"]
    assert sum("tester/proj-b" in line for line in table) == 2


def test_projects_lists_an_entitys_projects_with_run_counts(server, capsys):
    assert main(["projects", "tester", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["entity"], r["project"], r["runs"]) for r in rows] == [
        ("tester", "other", 1),
        ("tester", "proj-a", 2),
        ("tester", "proj-b", 2),
    ]
    assert rows[0]["created_at"] == "2026-11-01T10:00:00Z"
    assert main(["projects", "tester", "--match", "proj-*"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split() for line in lines] == [
        ["entity", "project", "runs", "created"],
        ["tester", "proj-a", "2", "2026-11-01", "10:00"],
        ["tester", "proj-b", "2", "2026-11-01", "10:00"],
    ]


def test_projects_without_an_entity_covers_every_entity_the_key_sees(server, capsys):
    assert main(["projects", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [(r["entity"], r["project"], r["runs"]) for r in rows] == [
        ("tester", "other", 1),
        ("tester", "proj-a", 2),
        ("tester", "proj-b", 2),
        ("lab", "shared", 1),
    ]
    assert server.ops()["GetViewer"] == 1


def test_a_glob_that_matches_nothing_is_exit_3(server, tmp_path, capsys):
    spec = spec_for(tmp_path, server, project="nothing-*")
    assert main(["build", str(spec)]) == 3
    err = capsys.readouterr().err
    assert err == (
        f"error: source: no W&B project matches tester/nothing-* on {server.url} "
        "(`reportgen projects ENTITY` lists them)\n"
    )


def test_a_wrong_key_for_projects_is_exit_3_without_the_key(server, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_API_KEY", "rgwrong" + "0" * 33)
    assert main(["projects", "tester"]) == 3
    err = capsys.readouterr().err
    assert "rgwrong" not in err
    assert err.startswith("error: source: ")
    assert err.count("\n") == 1


def test_offline_rebuild_resolves_the_glob_from_the_cache(server, tmp_path):
    spec = spec_for(tmp_path, server, project="proj-*")
    first = build(spec)
    server.reset_log()
    again = build(spec, cache_mode="offline")
    assert sorted(r.id for r in again.report.runs) == sorted(r.id for r in first.report.runs)
    assert server.requests == []


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("{type: wandb, entity: e}", "2:9: source: give exactly one of project, projects"),
        (
            "{type: wandb, entity: e, project: a, projects: [b]}",
            "2:9: source: give exactly one of project, projects, not both",
        ),
    ],
)
def test_a_source_names_its_projects_one_way(tmp_path, capsys, source, message):
    spec = write_spec(tmp_path / "s.yaml", f"version: 1\nsource: {source}\n")
    assert main(["validate", str(spec)]) == 2
    assert capsys.readouterr().err == f"{spec}:{message}\n"


def test_ids_may_name_a_project_and_a_checkpoint_names_its_own(server, tmp_path):
    both = build(spec_for(tmp_path, server, project="proj-*"), out_dir=tmp_path / "a")
    assert len(both.report.runs) == 4
    text = spec_for(tmp_path, server, project="proj-*").read_text()
    plain = write_spec(tmp_path / "plain.yaml", text + 'runs: {ids: ["dupe0001"]}\n')
    assert sorted(r.id for r in build(plain, out_dir=tmp_path / "b").report.runs) == [
        "proj-a/dupe0001",
        "proj-b/dupe0001",
    ]
    one = write_spec(tmp_path / "one.yaml", text + 'runs: {ids: ["proj-b/dupe0001"]}\n')
    runs = build(one, out_dir=tmp_path / "c").report.runs
    assert [(r.project, r.id, r.name) for r in runs] == [("proj-b", "dupe0001", "beta-dupe")]
    checkpoint = tmp_path / "beta.ckpt"
    checkpoint.write_bytes(pickle.dumps({"wandb_run_path": "tester/proj-b/dupe0001"}))
    named = write_spec(tmp_path / "ckpt.yaml", text + f'runs: {{ids: ["{checkpoint}"]}}\n')
    report = build(named, out_dir=tmp_path / "d").report
    assert [(r.project, r.id) for r in report.runs] == [("proj-b", "dupe0001")]
    assert f"runs.ids[0]: checkpoint {checkpoint} belongs to run proj-b/dupe0001" in report.notes
