"""The executor behind the per-run work: `local` and `ray` build the same files.

Tests marked `ray` start one small local Ray instance (num_cpus=2) for the session and build
the same specs with both executors, comparing the files byte for byte; `pytest -m ray` runs
them alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import cached_metas, write_spec
from runwriter import wandb_files

from reportgen import build
from reportgen.errors import EXIT_SOURCE, EXIT_USAGE, SpecError, UsageError
from reportgen.executors import RayExecutor, read_and_digest
from reportgen.spec import ExecutorSpec, load_spec

REPO = Path(__file__).resolve().parent.parent
NOW = datetime(2026, 11, 30, 12, 0, tzinfo=timezone.utc)
DATA_FILES = ("report.json", "report.md")


def spec_over(tmp_path: Path, root: Path, body: str, name: str = "spec.yaml") -> Path:
    return write_spec(
        tmp_path / name,
        f'version: 1\ntitle: executors\nsource: {{type: wandb-offline, path: "{root}"}}\n'
        f'{body}\noutputs: {{dir: "{tmp_path / "unused"}", formats: [markdown, csv, json]}}\n',
    )


def build_both(spec_path: Path, tmp_path: Path) -> tuple[Path, Path]:
    """Build one spec locally and on Ray; return both output folders."""
    spec = load_spec(spec_path)
    local = build(spec, out_dir=tmp_path / "local", now=NOW, executor=ExecutorSpec("local"))
    on_ray = build(spec, out_dir=tmp_path / "ray", now=NOW, executor=ExecutorSpec("ray"))
    return local.out_dir, on_ray.out_dir


def assert_same_files(local: Path, on_ray: Path) -> list[str]:
    """Every file of the local build exists in the Ray build with the same bytes."""
    names = sorted(p.name for p in local.iterdir() if p.is_file())
    assert names == sorted(p.name for p in on_ray.iterdir() if p.is_file())
    for name in names:
        assert (local / name).read_bytes() == (on_ray / name).read_bytes(), name
    return names


# --- choosing an executor (no Ray needed) ----------------------------------------------------


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("local", ExecutorSpec("local", None)),
        ("ray", ExecutorSpec("ray", None)),
        ("ray:auto", ExecutorSpec("ray", "auto")),
        ("ray:10.0.0.5:6379", ExecutorSpec("ray", "10.0.0.5:6379")),
        ("ray://head:10001", ExecutorSpec("ray", "ray://head:10001")),
        ("{type: ray, address: 'ray://head:10001'}", ExecutorSpec("ray", "ray://head:10001")),
    ],
)
def test_the_spec_names_the_executor(tmp_path, written, expected):
    path = spec_over(tmp_path, tmp_path, "")
    text = path.read_text().replace("path:", f"executor: {written}, path:")
    spec = load_spec(write_spec(path, text))
    assert spec.source.executor == expected


def test_an_unknown_executor_names_its_place(tmp_path):
    path = spec_over(tmp_path, tmp_path, "")
    write_spec(path, path.read_text().replace("path:", "executor: spark, path:"))
    with pytest.raises(SpecError) as caught:
        load_spec(path)
    assert "source.executor" in str(caught.value)


def test_the_cli_refuses_an_unknown_executor_in_one_line(tmp_path):
    spec = spec_over(tmp_path, tmp_path, "")
    done = subprocess.run(
        [sys.executable, "-m", "reportgen", "build", str(spec), "--executor", "dask"],
        capture_output=True,
        text=True,
    )
    assert done.returncode == EXIT_USAGE
    assert done.stderr.strip().splitlines() == [
        "error: --executor: expected local, ray, ray:auto, ray:HOST:PORT or "
        "ray://HOST:PORT; got 'dask'"
    ]


def test_ray_with_a_server_source_is_refused_before_any_data_is_read(tmp_path):
    path = write_spec(
        tmp_path / "server.yaml",
        "version: 1\nsource: {type: wandb, entity: e, project: p, executor: ray}\n",
    )
    with pytest.raises(UsageError, match=r"works with source\.type wandb-offline, not wandb"):
        build(path, out_dir=tmp_path / "out", env={})


def test_without_ray_installed_the_build_says_how_to_install_it(tmp_path, project_dir):
    spec = spec_over(tmp_path, project_dir, "metrics: {loss: train/loss}")
    # A Python in which `import ray` fails, as on a machine without the extra.
    program = (
        "import sys; sys.modules['ray'] = None\n"
        "from reportgen.cli import main\n"
        f"sys.exit(main(['build', {str(spec)!r}, '--executor', 'ray', '-q']))\n"
    )
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True)
    assert done.returncode == EXIT_USAGE
    assert done.stderr.strip().splitlines() == [
        "error: source.executor: ray is not installed; install it with "
        "pip install 'reportgen[ray]', or use executor: local"
    ]


def test_an_address_where_no_cluster_answers_fails_in_one_line(tmp_path):
    """Ray itself would wait minutes for the head node; the build says so in seconds."""
    pytest.importorskip("ray")
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spec = spec_over(tmp_path, tmp_path, "metrics: {loss: train/loss}")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "reportgen",
            "build",
            str(spec),
            "--executor",
            f"ray:127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == EXIT_SOURCE
    assert done.stderr.strip().splitlines() == [
        f"error: source.executor: no Ray cluster answers at 127.0.0.1:{port} (Connection "
        "refused); start one with `ray start --head`, or check the address and port"
    ]


def test_a_digest_carries_no_history_unless_a_comparison_of_histories_needs_it(
    project_dir, tmp_path
):
    from reportgen.digest import digest_run
    from reportgen.sources.offline import OfflineSource

    body = "metrics: {length: response_length/mean, loss: train/loss}"
    plain = load_spec(spec_over(tmp_path, project_dir, body))
    comparing = load_spec(
        spec_over(tmp_path, project_dir, body + "\ncompare: {runs: [rlmid001, rllong01]}", "c.yaml")
    )
    source = OfflineSource(plain.source)
    run = next(r for r in source.list_runs(now=NOW) if r.id == "rlmid001")
    history = source.history(run)
    assert "actor/entropy_loss" in history  # the run logged more than the spec asks for
    assert digest_run(plain, run, history, NOW).history.keys() == []
    kept = digest_run(comparing, run, history, NOW).history
    assert kept.keys() == ["response_length/mean"]  # the one key asked for that it logged
    assert kept.series("response_length/mean").equals(history.series("response_length/mean"))


# --- the same files from a local Ray instance --------------------------------------------------


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


@pytest.mark.ray
def test_the_demo_report_is_the_same_on_ray(ray_instance, tmp_path, monkeypatch):
    monkeypatch.chdir(REPO)  # the demo spec's paths are relative to the repository
    spec = load_spec(REPO / "specs" / "demo.yaml")
    spec = dataclasses.replace(
        spec, outputs=dataclasses.replace(spec.outputs, formats=("markdown", "csv", "json"))
    )
    local = build(spec, out_dir=tmp_path / "local", now=NOW)
    on_ray = build(spec, out_dir=tmp_path / "ray", now=NOW, executor=ExecutorSpec("ray"))
    names = assert_same_files(local.out_dir, on_ray.out_dir)
    assert {"report.json", "report.md", "shortest_length_experiment.csv"} <= set(names)
    assert len(on_ray.report.runs) == 8 and on_ray.report.runs_found == len(local.report.runs)
    assert {run.verdict for run in on_ray.report.runs} == {"good", "ugly"}
    assert not on_ray.report.incomplete


@pytest.mark.ray
def test_damaged_files_give_the_same_report_on_ray(ray_instance, project_copy, tmp_path):
    files = wandb_files(project_copy)
    files["rlmid001"].write_bytes(b"")  # died before its first write
    cut = files["rlshort1"].read_bytes()
    files["rlshort1"].write_bytes(cut[: int(len(cut) * 0.6) + 3])  # killed mid-record
    damaged = bytearray(files["rllong01"].read_bytes())
    damaged[32768 + 5000] ^= 0xFF  # a bad checksum in block 1
    files["rllong01"].write_bytes(bytes(damaged))
    spec = spec_over(
        tmp_path,
        project_copy,
        "metrics: {length: response_length/mean, loss: train/loss}\n"
        "select: {shortest: {by: length, reduce: mean, pick: min}}\n"
        "sampling: {every: 100}",
    )
    local, on_ray = build_both(spec, tmp_path)
    assert_same_files(local, on_ray)
    report = (on_ray / "report.md").read_text()
    for damage in (
        "the file is empty",
        "the file ends in the middle of a record",
        "a checksum does not match",
    ):
        assert damage in report


@pytest.mark.ray
def test_analysis_sections_and_a_limit_give_the_same_files_on_ray(
    ray_instance, project_dir, tmp_path
):
    spec = spec_over(
        tmp_path,
        project_dir,
        "runs: {filters: {tags: {any: [grpo]}}, limit: 3}\n"
        "metrics: {length: response_length/mean, entropy: actor/entropy_loss,"
        " clip: response_length/clip_ratio}\n"
        "select: {shortest: {by: length, reduce: mean, pick: min}}\n"
        "sampling: {every: 100}\n"
        "stats: {metrics: [length, entropy]}\n"
        "compare: {runs: [shortest, rllong01], sampling: {every: 200}}\n"
        "project_table: {metrics: {length: mean, entropy: last}, primary: length,"
        " group_by: [config.seed], min_runs: 3}",
    )
    local, on_ray = build_both(spec, tmp_path)
    names = assert_same_files(local, on_ray)
    assert {"stats.csv", "compare_history.csv", "project.csv", "project.parquet"} <= set(names)
    rows = (on_ray / "project.csv").read_text().splitlines()
    assert len(rows) == 1 + 3  # the limit kept the three newest grpo runs of four


@pytest.mark.ray
def test_a_run_split_over_misnamed_files_is_merged_as_locally(ray_instance, project_copy, tmp_path):
    """Files are handed out by the id in their names; a copy renamed to another id still
    belongs to the run inside it, and Ray reads both fragments together, as the local reader."""
    folders = sorted((project_copy / "wandb").glob("*run-*-resume01"))
    assert len(folders) == 2
    renamed = folders[1].with_name(folders[1].name.replace("resume01", "zzcopy01"))
    folders[1].rename(renamed)
    (renamed / "run-resume01.wandb").rename(renamed / "run-zzcopy01.wandb")
    spec = spec_over(tmp_path, project_copy, "runs: {ids: [resume01]}\nmetrics: {loss: train/loss}")
    local, on_ray = build_both(spec, tmp_path)
    assert_same_files(local, on_ray)
    assert '"last": 99' in (on_ray / "report.json").read_text()  # both fragments' steps


@pytest.mark.ray
def test_a_task_that_fails_leaves_its_run_out_with_the_reason(ray_instance, project_dir, tmp_path):
    spec = load_spec(spec_over(tmp_path, project_dir, "metrics: {loss: train/loss}"))
    real = wandb_files(project_dir)["sftnan01"]
    # A path no file system accepts: the task itself raises (as when a worker is lost).
    broken = tmp_path / "wandb" / "offline-run-20261130_000000-bad00001" / "run-bad\0001.wandb"
    outcomes, failures = RayExecutor().digest_groups(
        spec, {"sftnan01": [real], "bad00001": [broken]}, NOW
    )
    assert [o.run.id for o in outcomes] == ["sftnan01"]
    assert outcomes[0].digest is not None and outcomes[0].digest.report.verdict == "ugly"
    assert [f.run_id for f in failures] == ["bad00001"]
    assert "could not be read by a Ray task: ValueError" in failures[0].reason
    assert "offline-run-20261130_000000-bad00001" in failures[0].reason


@pytest.mark.ray
def test_a_file_gone_meanwhile_is_a_noted_problem_of_its_run_as_locally(
    ray_instance, project_dir, tmp_path
):
    """The reader notes a file it cannot open (main's reader does so locally too): the run is
    kept with the reason, not dropped."""
    spec = load_spec(spec_over(tmp_path, project_dir, "metrics: {loss: train/loss}"))
    gone = tmp_path / "wandb" / "offline-run-20261130_000000-gone0001" / "run-gone0001.wandb"
    outcomes, failures = RayExecutor().digest_groups(spec, {"gone0001": [gone]}, NOW)
    assert failures == []
    assert [o.run.id for o in outcomes] == ["gone0001"]
    assert any("does not exist" in note for note in outcomes[0].run.read_notes)


@pytest.mark.ray
def test_a_missing_folder_is_a_source_error_on_ray_too(ray_instance, tmp_path):
    from reportgen.errors import SourceError

    spec = spec_over(tmp_path, tmp_path / "nowhere", "metrics: {loss: train/loss}")
    with pytest.raises(SourceError, match="does not exist"):
        build(spec, out_dir=tmp_path / "out", now=NOW, executor=ExecutorSpec("ray"))


@pytest.mark.ray
def test_a_copy_read_once_is_noted_on_ray_as_locally(ray_instance, project_copy, tmp_path):
    """The listing task finds the copy; the note reaches the task that reads the original."""
    original = wandb_files(project_copy)["rlmid001"]
    linked = project_copy / "wandb" / "gathered"
    linked.mkdir()
    (linked / original.name).symlink_to(original)
    spec = spec_over(tmp_path, project_copy, "runs: {ids: [rlmid001]}\nmetrics: {loss: train/loss}")
    local, on_ray = build_both(spec, tmp_path)
    assert_same_files(local, on_ray)
    (run,) = json.loads((on_ray / "report.json").read_text())["runs"]
    copies = [note for note in run["notes"] if "is the same file as" in note]
    assert len(copies) == 1 and f"gathered/{original.name}" in copies[0]
    assert copies[0].endswith("it was read once")


@pytest.mark.ray
def test_min_steps_and_repeated_names_give_the_same_files_on_ray(
    ray_instance, project_dir, tmp_path
):
    spec = spec_over(
        tmp_path,
        project_dir,
        "runs: {filters: {min_steps: 150}}\nmetrics: {loss: train/loss}",
    )
    local, on_ray = build_both(spec, tmp_path)
    assert_same_files(local, on_ray)
    assert "runs.filters.min_steps" in (on_ray / "report.json").read_text()


def _settle(root: Path) -> list[Path]:
    """Every run file, its modification time moved into the past: the cache stores only files
    that have not changed for a moment (a file still being written is read again)."""
    files = sorted(p for p in root.rglob("run-*.wandb") if p.is_file() and not p.is_symlink())
    past = time.time() - 3600
    for path in files:
        os.utime(path, (past, past))
    return files


def _damage_keeping_size_and_time(path: Path) -> None:
    """Flip a byte in the middle of the file, leaving its size and mtime as they were: only a
    reader that decodes the file again sees it."""
    info = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    os.utime(path, ns=(info.st_atime_ns, info.st_mtime_ns))


@pytest.mark.ray
def test_ray_tasks_fill_and_read_the_run_cache_with_the_local_readers_keys(
    ray_instance, project_copy, tmp_path, monkeypatch
):
    cache = tmp_path / "cache"
    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(cache))
    files = _settle(project_copy)
    spec = load_spec(
        spec_over(
            tmp_path, project_copy, "metrics: {length: response_length/mean, loss: train/loss}"
        )
    )
    cold = build(spec, out_dir=tmp_path / "cold", now=NOW, executor=ExecutorSpec("ray"))
    entries = cached_metas(cache, "wandb-offline-*")
    assert len(entries) == len(files)  # every file decoded on Ray was stored
    assert all(json.loads(e.read_text())["fingerprint"] for e in entries)
    _damage_keeping_size_and_time(wandb_files(project_copy)["rllong01"])
    # Ray and the local reader both take the entries the Ray tasks wrote: nothing is decoded
    # again, so neither sees the damage.
    warm_ray = build(spec, out_dir=tmp_path / "warm-ray", now=NOW, executor=ExecutorSpec("ray"))
    warm_local = build(
        spec, out_dir=tmp_path / "warm-local", now=NOW, executor=ExecutorSpec("local")
    )
    report = (cold.out_dir / "report.json").read_bytes()
    assert (warm_ray.out_dir / "report.json").read_bytes() == report
    assert (warm_local.out_dir / "report.json").read_bytes() == report
    assert b"a checksum does not match" not in report
    # Refreshed, the tasks decode every file again, and the damage shows.
    fresh = build(
        spec,
        out_dir=tmp_path / "fresh",
        now=NOW,
        executor=ExecutorSpec("ray"),
        cache_mode="refresh",
    )
    assert b"a checksum does not match" in (fresh.out_dir / "report.json").read_bytes()
    assert fresh.warnings == ()


@pytest.mark.ray
def test_a_cache_folder_a_task_cannot_use_is_a_warning_and_the_runs_are_read(
    ray_instance, project_dir, tmp_path
):
    from reportgen.executors import CacheSetting

    spec = load_spec(spec_over(tmp_path, project_dir, "metrics: {loss: train/loss}"))
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    files = [wandb_files(project_dir)["sftnan01"]]
    executor = RayExecutor()
    from reportgen.cache import RunCache

    cache = RunCache(tmp_path / "cache")
    setting = CacheSetting(str(blocker / "cache"), "set by the test", "normal")
    # The driver's cache is usable; the task's copy of the setting points where it cannot be.
    outcomes, failures = executor.digest_groups(spec, {"sftnan01": files}, NOW, cache=cache)
    assert failures == [] and [o.run.id for o in outcomes] == ["sftnan01"]
    ray = ray_instance
    result = ray.get(
        ray.remote(num_cpus=1)(read_and_digest).remote(
            spec, os.getcwd(), [str(f) for f in files], NOW, {}, setting
        )
    )
    assert [o.run.id for o in result.outcomes] == ["sftnan01"]
    (warning,) = result.warnings
    assert warning.startswith("cache: a Ray task on ") and str(blocker) in warning
    assert warning.endswith("its runs were read without it")


def _cli_build(spec: Path, out: Path, executor: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GITLAB_", "CI"))}
    env["REPORTGEN_CACHE_DIR"] = str(out.parent / f"cache-{out.name}")
    return subprocess.run(
        [sys.executable, "-m", "reportgen", "build", str(spec), "--out", str(out),
         "--now", NOW.isoformat(), "--executor", executor, "-q"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )  # fmt: skip


@pytest.mark.ray
def test_a_build_with_damaged_and_unreadable_files_is_the_same_from_the_cli_on_ray(
    ray_instance, project_copy, tmp_path
):
    """Real damage among good runs, built by the command line: a cut file, a bad checksum, a
    file that is a dangling symlink and a folder named like a run file. The Ray build (connected
    to the test's Ray instance by address) exits as the local one does, with the same files."""
    files = wandb_files(project_copy)
    cut = files["rlshort1"].read_bytes()
    files["rlshort1"].write_bytes(cut[: len(cut) // 2])
    damaged = bytearray(files["rllong01"].read_bytes())
    damaged[32768 + 5000] ^= 0xFF
    files["rllong01"].write_bytes(bytes(damaged))
    files["rlmid001"].unlink()
    files["rlmid001"].symlink_to(files["rlmid001"].parent / "gone.wandb")
    folder = project_copy / "wandb" / "offline-run-20261130_000000-dir00001" / "run-dir00001.wandb"
    folder.mkdir(parents=True)
    spec = spec_over(
        tmp_path,
        project_copy,
        "metrics: {length: response_length/mean, loss: train/loss}\n"
        "select: {shortest: {by: length, reduce: mean, pick: min}}\nsampling: {every: 100}",
    )
    address = ray_instance.get_runtime_context().gcs_address
    local = _cli_build(spec, tmp_path / "local", "local")
    on_ray = _cli_build(spec, tmp_path / "ray", f"ray:{address}")
    assert on_ray.returncode == local.returncode, (local.stderr, on_ray.stderr)
    assert local.returncode in (0, 1), local.stderr
    assert_same_files(tmp_path / "local", tmp_path / "ray")
    runs = {r["id"]: r for r in json.loads((tmp_path / "ray" / "report.json").read_text())["runs"]}
    notes = {run_id: " ".join(run["notes"]) for run_id, run in runs.items()}
    assert "the file does not exist (a dangling symlink?)" in notes["rlmid001"]
    assert "a checksum does not match" in notes["rllong01"]
    assert "the file ends in the middle of a record" in notes["rlshort1"]
    assert "dir00001" in runs and runs["dir00001"]["steps"]["rows"] == 0
    assert runs["rllong01"]["steps"]["rows"] > 0


# --- runs.limit reads only the runs it keeps ---------------------------------------------------


def _listed_then_filtered(root: Path, runs_spec) -> list[str]:  # type: ignore[no-untyped-def]
    """The definition of `limit`: every run read, filtered, newest first, the first N."""
    from reportgen.select import filter_runs
    from reportgen.sources.offline import OfflineSource
    from reportgen.spec import SourceSpec

    source = OfflineSource(SourceSpec("wandb-offline", path=str(root)))
    return [run.id for run in filter_runs(source.list_runs(now=NOW), runs_spec, NOW)]


@pytest.mark.parametrize(
    "runs", ["{limit: 1}", "{limit: 3}", "{filters: {tags: {any: [sft]}}, limit: 2}", "{limit: 50}"]
)
def test_a_limit_chooses_the_runs_a_full_listing_would(project_dir, tmp_path, runs):
    from reportgen.executors import read_newest
    from reportgen.sources.offline import OfflineSource

    spec = load_spec(
        spec_over(tmp_path, project_dir, f"runs: {runs}\nmetrics: {{loss: train/loss}}")
    )
    found, chosen = read_newest(spec, OfflineSource(spec.source), NOW)
    assert [run.id for run in chosen] == _listed_then_filtered(project_dir, spec.runs)
    assert found == len(OfflineSource(spec.source).list_runs(now=NOW))
    if "resume01" in [run.id for run in chosen]:  # a run in two folders is read from both
        assert len(next(r for r in chosen if r.id == "resume01").locations) == 2


def test_a_limit_decodes_only_the_runs_it_keeps(project_copy, tmp_path, monkeypatch):
    """The cache stores each file the reader decoded: with `limit: 2`, only the two newest
    runs' files are there; the others were only scanned for their start times."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(cache))
    _settle(project_copy)
    spec = spec_over(tmp_path, project_copy, "runs: {limit: 2}\nmetrics: {loss: train/loss}")
    result = build(spec, out_dir=tmp_path / "out", now=NOW)
    newest = _listed_then_filtered(project_copy, load_spec(spec).runs)
    assert [run.id for run in result.report.runs] == newest
    stored = {
        json.loads(meta.read_text())["contents"]["run_id"]
        for meta in cached_metas(cache, "wandb-offline-*")
    }
    assert stored == set(newest)
    assert result.report.runs_found == len(wandb_files(project_copy))


@pytest.mark.ray
def test_a_limit_on_ray_digests_a_batch_not_every_run(
    ray_instance, project_copy, tmp_path, monkeypatch
):
    cache = tmp_path / "cache"
    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(cache))
    _settle(project_copy)
    spec = spec_over(
        tmp_path,
        project_copy,
        "runs: {filters: {tags: {any: [sft]}}, limit: 1}\nmetrics: {loss: train/loss}",
    )
    local, on_ray = build_both(spec, tmp_path)
    assert_same_files(local, on_ray)
    stored = {
        json.loads(meta.read_text())["contents"]["run_id"]
        for meta in cached_metas(cache, "wandb-offline-*")
    }
    # Batches of as many runs as the instance has CPUs (2), newest first, until one passes.
    from reportgen.spec import RunsSpec

    every = _listed_then_filtered(project_copy, RunsSpec())
    (chosen,) = json.loads((on_ray / "report.json").read_text())["runs"]
    assert stored <= set(every[: every.index(chosen["id"]) + 2]) and len(stored) < len(every)
