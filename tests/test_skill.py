"""SKILL.md: Agent Skills front matter, every example command run with its printed output
checked against the real one, and `reportgen skill` (printing, installing, from the wheel)."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import yaml

from reportgen.cli import main
from reportgen.commands.agents import skill_path

REPO = Path(__file__).resolve().parent.parent
SKILL = REPO / "skills" / "reportgen" / "SKILL.md"


def front_matter(text: str) -> dict:
    match = re.match(r"^---\n(.*?)\n---\n", text, re.DOTALL)
    assert match, "SKILL.md starts with YAML front matter between --- lines"
    return yaml.safe_load(match.group(1))


def examples(text: str) -> list[tuple[str, str]]:
    """Each ```console block: its `$ ` command line and the output printed under it."""
    found = []
    for block in re.findall(r"```console\n(.*?)```", text, re.DOTALL):
        command, _, output = block.partition("\n")
        assert command.startswith("$ reportgen "), command
        found.append((command[2:], output))
    return found


def test_front_matter_names_the_skill_and_says_when_to_use_it():
    meta = front_matter(SKILL.read_text())
    assert meta["name"] == "reportgen"
    assert "Use when" in meta["description"]
    assert len(meta["description"]) <= 1024  # the Agent Skills limit


@pytest.mark.parametrize(("command", "output"), examples(SKILL.read_text()), ids=lambda v: v[:60])
def test_every_example_prints_what_skill_md_shows(command, output, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "examples").symlink_to(REPO / "examples")
    code = main(shlex.split(command)[1:])
    captured = capsys.readouterr()
    assert captured.out + captured.err == output
    assert code == (2 if output.startswith("error:") else 0)


def test_every_verb_in_skill_md_exists():
    text = SKILL.read_text()
    verbs = set(re.findall(r"`reportgen ([a-z]+)", text))
    from reportgen.cli import make_parser

    known = set(make_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert verbs <= known
    assert {"export", "health", "show", "compare", "build", "runs", "keys", "mcp"} <= verbs


def test_skill_prints_it_and_installs_it_into_a_skills_folder(tmp_path, capsys):
    assert main(["skill"]) == 0
    assert capsys.readouterr().out == SKILL.read_text()
    assert main(["skill", str(tmp_path / "skills")]) == 0
    installed = tmp_path / "skills" / "reportgen" / "SKILL.md"
    assert capsys.readouterr().out == f"wrote {installed}\n"
    assert installed.read_text() == SKILL.read_text()
    assert skill_path() == SKILL


def test_the_wheel_carries_skill_md_and_finds_it(tmp_path):
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import hatchling.build as b; print(b.build_wheel({str(tmp_path)!r}))",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    )
    wheel = tmp_path / done.stdout.strip().splitlines()[-1]
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    assert (site / "reportgen" / "SKILL.md").read_text() == SKILL.read_text()
    found = subprocess.run(
        [sys.executable, "-c", "from reportgen.commands.agents import skill_path as p; print(p())"],
        env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(found.stdout.strip()) == site / "reportgen" / "SKILL.md"
