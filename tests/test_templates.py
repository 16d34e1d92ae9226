"""Templates users can change: a spec's own folder is searched first, `builtin/` names the
packaged templates, a user's report.css is applied after the built-in one, and a broken
template is one line naming its place. The wheel carries the built-in templates."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import write_spec
from pdftext import page_pixels, page_texts

from reportgen import build
from reportgen.cli import main
from reportgen.render.html import render_html

REPO = Path(__file__).resolve().parent.parent


def spec_with_templates(project_dir: Path, tmp_path: Path, folder: Path, formats: str) -> Path:
    return write_spec(
        tmp_path / "spec.yaml",
        f'version: 1\ntitle: Custom\nsource: {{type: wandb-offline, path: "{project_dir}"}}\n'
        "runs: {ids: [sftnan01]}\nmetrics: {loss: train/loss}\n"
        f'outputs: {{dir: "{tmp_path / "out"}", formats: {formats}, templates: "{folder}"}}\n',
    )


def test_a_users_markdown_template_replaces_one_block_of_the_builtin(project_dir, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "report.md.j2").write_text(
        '{% extends "builtin/report.md.j2" %}\n'
        "{% block notes %}Reviewed by the {{ report.title }} team: {{ report.runs[0].name }}\n"
        "{% endblock %}\n"
    )
    spec = spec_with_templates(project_dir, tmp_path, folder, "[markdown]")
    text = (build(spec).out_dir / "report.md").read_text()
    assert text.startswith("# Custom\n")
    assert "| sft-nan | `sftnan01` |" in text  # the built-in blocks are still there
    assert text.endswith("Reviewed by the Custom team: sft-nan\n")


def test_a_users_html_template_replaces_one_block_and_stays_escaped(project_dir, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "report.html.j2").write_text(
        '{% extends "builtin/report.html.j2" %}\n'
        '{% block appendix %}<p class="mine">{{ "<b>" ~ report.runs[0].name }}</p>{% endblock %}\n'
    )
    spec = spec_with_templates(project_dir, tmp_path, folder, "[markdown]")
    report = build(spec).report
    html = render_html(report, [folder])
    assert '<p class="mine">&lt;b&gt;sft-nan</p>' in html
    assert "Verdicts" in html and "Appendix: CSV attachments" not in html


def test_a_users_stylesheet_is_applied_after_the_builtin_one(project_dir, tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "report.css").write_text("@page { size: Letter; }\n")
    spec = spec_with_templates(project_dir, tmp_path, folder, "[pdf]")
    pdf = build(spec).out_dir / "report.pdf"
    (width, height), _ = page_pixels(pdf)
    assert (round(width), round(height)) == (612, 792)  # US Letter, not the built-in A4
    assert "Page 1 of" in page_texts(pdf)[0]  # the built-in rules still apply


def test_a_missing_template_folder_exits_2_before_reading_runs(project_dir, tmp_path, capsys):
    spec = spec_with_templates(project_dir, tmp_path, tmp_path / "nope", "[markdown]")
    assert main(["build", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: outputs.templates: folder '{tmp_path / 'nope'}' does not exist")
    assert len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_a_template_with_a_syntax_error_exits_2_naming_its_line(project_dir, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "report.md.j2").write_text("# {{ report.title }}\n{% if %}\n")
    spec = spec_with_templates(project_dir, tmp_path, folder, "[markdown]")
    assert main(["build", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"error: template {folder / 'report.md.j2'}:2: Expected an expression, got 'end of statement block'"
    ]


def test_an_unknown_variable_in_a_template_exits_2_naming_its_line(project_dir, tmp_path, capsys):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "report.md.j2").write_text("# {{ report.title }}\n\n{{ report.author }}\n")
    spec = spec_with_templates(project_dir, tmp_path, folder, "[markdown]")
    assert main(["build", str(spec)]) == 2
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"error: template {folder / 'report.md.j2'}:3: 'reportgen.report.Report object' has no attribute 'author'"
    ]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The project's wheel, built by its build backend (hatchling) from this source tree."""
    out = tmp_path_factory.mktemp("wheel")
    done = subprocess.run(
        [sys.executable, "-c", f"import hatchling.build as b; print(b.build_wheel({str(out)!r}))"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    return out / done.stdout.strip().splitlines()[-1]


def test_the_wheel_packages_the_builtin_templates(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {
        "reportgen/templates/report.md.j2",
        "reportgen/templates/report.html.j2",
        "reportgen/templates/report.css",
        "reportgen/spec.schema.json",
    } <= names


def test_an_installed_wheel_finds_its_own_templates(wheel, tmp_path):
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from reportgen.render.templates import builtin_template_dir as d; print(d())",
        ],
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(done.stdout.strip()) == site / "reportgen" / "templates"
