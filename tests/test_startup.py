"""Start-up: each command loads only the libraries it uses.

`reportgen --help` and `reportgen validate` answer in a fraction of the time pandas, pyarrow,
matplotlib or W&B's protobuf classes take to import; `runs` and `keys` read runs but never load
the report model, Jinja2 or matplotlib. Timings live in benchmarks/startup.py; these tests check
the behaviour behind them: which modules a fresh interpreter has loaded after each command.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import write_spec

HEAVY = ("numpy", "pandas", "pyarrow", "matplotlib", "jinja2", "weasyprint", "wandb", "scipy")

PROBE = """
import contextlib, io, json, sys
from reportgen.cli import main
with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
    try:
        code = main(sys.argv[1:])
    except SystemExit as exc:
        code = exc.code
loaded = sorted({name.split(".")[0] for name in sys.modules} | {m for m in sys.modules})
print(json.dumps({"code": code, "loaded": loaded}))
"""


def loaded_after(*argv: str, cwd: Path | None = None) -> tuple[int, set[str]]:
    """Run one command in a fresh interpreter; its exit code and every module it imported."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        capture_output=True,
        text=True,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)},
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    return result["code"], set(result["loaded"])


SPEC = """\
version: 1
source: {type: wandb-offline, path: runs}
metrics:
  loss: [train/loss, loss]
  gap: {expr: "val_loss - loss"}
  val_loss: val/loss
select:
  best: {by: loss, reduce: last, pick: min}
sampling: {every: 10}
outputs: {dir: out, csv: {where: "step >= 10 and abs(gap) < 1"}}
"""


def test_importing_the_cli_and_help_load_no_heavy_library():
    code, loaded = loaded_after("--help")
    assert code == 0
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))
    pipeline = {"build", "spec", "runs", "report", "sources", "render", "health", "cache"}
    assert not {f"reportgen.{stage}" for stage in pipeline} & loaded


def test_the_version_is_a_constant_that_the_installed_package_reports_too():
    """`__version__` is written once, in reportgen/__init__.py, and the packaging reads it from
    there: --version and every report.json need no package-metadata lookup (10-60 ms)."""
    from importlib.metadata import version

    import reportgen

    code, loaded = loaded_after("--version")
    assert code == 0
    assert "importlib.metadata" not in loaded
    _, loaded = loaded_after("--help")
    assert "importlib.metadata" not in loaded
    assert version("reportgen") == reportgen.__version__


def test_validate_checks_expressions_and_conditions_without_numpy_or_pandas(tmp_path):
    spec = write_spec(tmp_path / "spec.yaml", SPEC)
    code, loaded = loaded_after("validate", str(spec))
    assert code == 0
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))
    assert "reportgen.health" not in loaded
    assert "reportgen.commands.quick" not in loaded  # only validate's own parser is built


def test_validate_loads_the_regex_engine_and_openssl_only_when_they_are_used(tmp_path):
    # `regex` (name patterns) and OpenSSL (the spec's SHA-256, for report.json) are a fifth of
    # `validate`'s start-up; a spec with no name pattern needs neither.
    spec = write_spec(tmp_path / "spec.yaml", SPEC)
    code, loaded = loaded_after("validate", str(spec))
    assert code == 0
    assert {"regex", "_hashlib", "difflib"}.isdisjoint(loaded)
    named = SPEC.replace("runs}", "runs}\nruns: {filters: {name: '^(grpo'}}")
    code, loaded = loaded_after("validate", str(write_spec(tmp_path / "named.yaml", named)))
    assert code == 2 and "regex" in loaded


def test_validate_still_finds_a_bad_expression_without_loading_numpy(tmp_path):
    spec = write_spec(tmp_path / "spec.yaml", SPEC.replace("val_loss - loss", "vall - loss"))
    code, loaded = loaded_after("validate", str(spec))
    assert code == 2
    assert "numpy" not in loaded


def test_validate_checks_tuned_checks_against_the_catalogue_without_numpy_or_pandas(tmp_path):
    tuned = (
        "health: {checks: {kl_high: {threshold: 0.2}, stalled: {after: 2h}}, disable: [plateau]}"
    )
    spec = write_spec(tmp_path / "spec.yaml", SPEC + tuned + "\n")
    code, loaded = loaded_after("validate", str(spec))
    assert code == 0
    assert loaded.isdisjoint(HEAVY), sorted(loaded & set(HEAVY))
    assert "reportgen.check_catalogue" in loaded and "reportgen.health" not in loaded


def test_validate_still_finds_a_bad_check_parameter_without_loading_numpy(tmp_path):
    spec = write_spec(
        tmp_path / "spec.yaml", SPEC + "health: {checks: {kl_high: {threshold: high}}}\n"
    )
    code, loaded = loaded_after("validate", str(spec))
    assert code == 2
    assert "numpy" not in loaded


def test_runs_and_keys_load_no_renderer_chart_or_template_library(project_dir):
    for verb in ("runs", "keys"):
        code, loaded = loaded_after(verb, "--source", str(project_dir))
        assert code == 0
        assert loaded.isdisjoint({"matplotlib", "jinja2", "weasyprint", "scipy"}), verb
        assert "reportgen.report" not in loaded and "reportgen.render.markdown" not in loaded


def test_a_csv_and_json_build_loads_no_template_chart_or_forge_code(
    tmp_path, project_dir, monkeypatch
):
    """Jinja2, the PR-comment code and the regex engine are loaded only by the builds that
    use them (Markdown or a comment; a name filter)."""
    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(tmp_path / "cache"))
    plain, named = tmp_path / "plain.yaml", tmp_path / "named.yaml"
    for spec, filters in ((plain, ""), (named, "runs: {filters: {name: '^a-'}}\n")):
        spec.write_text(
            f"version: 1\nsource: {{type: wandb-offline, path: '{project_dir}'}}\n{filters}"
            f"outputs: {{dir: '{tmp_path / spec.stem}', formats: [csv, json]}}\n",
            encoding="utf-8",
        )
    code, loaded = loaded_after("build", str(plain), "-q")
    assert code == 0 and (tmp_path / "plain" / "report.json").is_file()
    assert loaded.isdisjoint({"jinja2", "matplotlib", "weasyprint", "regex"})
    assert "reportgen.publish" not in loaded and "reportgen.forges" not in loaded
    _, loaded = loaded_after("build", str(named), "-q")
    assert "regex" in loaded  # a name filter: the regex engine matches the names


def test_a_build_never_imports_pandas(tmp_path, project_dir, monkeypatch):
    """pandas costs about 0.2 s to import, more than most builds spend digesting their runs:
    metrics, health checks, CSV and the cache work on numpy and Arrow without it (and Arrow is
    never asked to convert in a way that makes pyarrow import it), cold and warm."""
    monkeypatch.setenv("REPORTGEN_CACHE_DIR", str(tmp_path / "cache"))
    spec = write_spec(
        tmp_path / "spec.yaml",
        f"version: 1\nsource: {{type: wandb-offline, path: '{project_dir}'}}\n"
        + SPEC.split("\n", 2)[2].replace("dir: out", f"dir: '{tmp_path / 'out'}'")
        + "health: {preset: auto}\n",
    )
    spec.write_text(
        spec.read_text().replace("outputs: {", "outputs: {formats: [csv, json, markdown], "),
        encoding="utf-8",
    )
    for build in ("cold", "warm"):
        code, loaded = loaded_after("build", str(spec), "-q")
        assert code in (0, 1), build
        assert "pandas" not in loaded, build
        assert "importlib.metadata" not in loaded, build  # reportgen_version is a constant
        report = json.loads((tmp_path / "out" / "report.json").read_text())
        assert report["selections"]["best"] and len(report["runs"]) >= 5, build
        assert any(run["findings"] for run in report["runs"]), build  # the checks ran
