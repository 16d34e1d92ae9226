"""docs/cli.md is the parser's own --help output, so the reference cannot drift from the code."""

from pathlib import Path

from reportgen.clidocs import cli_reference

DOC = Path(__file__).resolve().parent.parent / "docs" / "cli.md"


def test_the_cli_reference_is_current():
    assert DOC.read_text(encoding="utf-8") == cli_reference(), (
        "docs/cli.md is out of date: run `python -m reportgen.clidocs > docs/cli.md`"
    )


def test_the_reference_covers_every_command():
    text = DOC.read_text(encoding="utf-8")
    for verb in ("build", "validate", "schema", "init", "runs", "keys", "projects", "cache"):
        assert f"## reportgen {verb}\n" in text
    assert "### reportgen cache clear\n" in text
