"""The pull-request comment: posted once, updated in place, always under the forge's limit.

GitHub and GitLab are loopback servers (forge_servers.py) speaking their REST APIs; the runs
are written by the real wandb client.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from baseline_runs import (
    HOSTILE_NAME,
    comparison_plans,
    comparison_spec,
    hostile_plan,
    wide_metrics,
    wide_plans,
)
from forge_servers import ForgeServer
from runwriter import write_runs

from reportgen import build
from reportgen.cli import main
from reportgen.render.comment import CommentOptions, render_comment
from reportgen.report import Finding

TOKEN = "ghp_SeCrEt0123456789abcdefTOKEN"
REPO, PR = "acme/trainer", 7
PROJECT, MR = "42", 3
MARKER = "<!-- reportgen:pr -->"

PASSING = "baseline:\n  ids: [basea001, baseb002]\n  tolerances: {loss: {abs: 0.1}}\n"
FAILING = "baseline:\n  ids: [basea001, baseb002]\n  tolerances: {loss: {abs: 0.05}}\n"


@pytest.fixture(scope="module")
def runs_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    plans = [*comparison_plans(), hostile_plan(), *wide_plans()]
    return write_runs(tmp_path_factory.mktemp("pr-runs"), plans)


@pytest.fixture
def server():
    with ForgeServer(TOKEN) as forge:
        forge.open_pull_request(REPO, PR)
        forge.open_merge_request(PROJECT, MR)
        yield forge


def github_env(server: ForgeServer, tmp_path: Path, **extra: str) -> dict[str, str]:
    event = tmp_path / "event.json"
    event.write_text(json.dumps({"action": "synchronize", "pull_request": {"number": PR}}))
    env = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_TOKEN": TOKEN,
        "GITHUB_REPOSITORY": REPO,
        "GITHUB_API_URL": server.github_api,
        "GITHUB_SERVER_URL": "https://github.invalid",
        "GITHUB_RUN_ID": "99",
        "GITHUB_EVENT_PATH": str(event),
    }
    return {**env, **extra}


def gitlab_env(server: ForgeServer, **extra: str) -> dict[str, str]:
    env = {
        "GITLAB_CI": "true",
        "GITLAB_TOKEN": TOKEN,
        "CI_API_V4_URL": server.gitlab_api,
        "CI_PROJECT_ID": PROJECT,
        "CI_MERGE_REQUEST_IID": str(MR),
        "CI_PROJECT_URL": "https://gitlab.invalid/acme/trainer",
        "CI_JOB_URL": "https://gitlab.invalid/acme/trainer/-/jobs/5",
    }
    return {**env, **extra}


def spec_file(runs_dir: Path, tmp_path: Path, body: str = PASSING, **kwargs) -> Path:
    return comparison_spec(tmp_path / "pr.yaml", runs_dir, tmp_path / "out", body, **kwargs)


def ours(items: list[dict]) -> list[dict]:
    return [item for item in items if MARKER in item["body"]]


def use_env(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """The CLI reads os.environ: clear every CI variable, then set these."""
    for name in list(os.environ):
        if name.startswith(("GITHUB_", "GITLAB_", "CI_")) or name == "CI":
            monkeypatch.delenv(name)
    for name, value in env.items():
        monkeypatch.setenv(name, value)


# --- one comment, updated in place ---------------------------------------------------------


@pytest.mark.parametrize("link_headers", [True, False])
def test_github_first_build_creates_the_comment_and_the_second_updates_it_on_page_3(
    runs_dir, tmp_path, server, link_headers
):
    server.open_pull_request(REPO, PR, others=230)  # ours lands at position 231: page 3
    server.state.link_headers = link_headers
    spec, env = spec_file(runs_dir, tmp_path), github_env(server, tmp_path)

    first = build(spec, comment=True, env=env)
    assert first.comment.outcome.status == "created"
    (created,) = ours(server.comments(REPO, PR))
    assert server.comments(REPO, PR).index(created) == 230

    second = build(spec, comment=True, env=env)
    assert second.comment.outcome.status == "updated"
    comments = server.comments(REPO, PR)
    assert len(comments) == 231 and [c["id"] for c in ours(comments)] == [created["id"]]
    pages = [r.query["page"] for r in server.requests if r.method == "GET"]
    assert pages == ["1", "2", "3", "1", "2", "3"]
    writes = [(r.method, r.path) for r in server.requests if r.method != "GET"]
    assert writes == [
        ("POST", f"/api/v3/repos/{REPO}/issues/{PR}/comments"),
        ("PATCH", f"/api/v3/repos/{REPO}/issues/comments/{created['id']}"),
    ]


def test_gitlab_first_build_creates_the_note_and_the_second_updates_it_on_page_3(
    runs_dir, tmp_path, server
):
    server.open_merge_request(PROJECT, MR, others=250)
    spec, env = spec_file(runs_dir, tmp_path), gitlab_env(server)

    assert build(spec, comment=True, env=env).comment.outcome.status == "created"
    (created,) = ours(server.notes(PROJECT, MR))
    second = build(spec, comment=True, env=env)
    assert second.comment.outcome.status == "updated"
    assert second.comment.outcome.url == (
        f"https://gitlab.invalid/acme/trainer/-/merge_requests/{MR}#note_{created['id']}"
    )
    notes = server.notes(PROJECT, MR)
    assert len(notes) == 251 and [n["id"] for n in ours(notes)] == [created["id"]]
    pages = [r.query["page"] for r in server.requests if r.method == "GET"]
    assert pages == ["1", "2", "3", "1", "2", "3"]
    assert [r.method for r in server.requests if r.method != "GET"] == ["POST", "PUT"]


def test_gitlab_falls_back_to_the_job_token_header(runs_dir, tmp_path, server):
    env = gitlab_env(server, CI_JOB_TOKEN=TOKEN)
    del env["GITLAB_TOKEN"]
    result = build(spec_file(runs_dir, tmp_path), comment=True, env=env)
    assert result.comment.outcome.status == "created"
    assert {r.headers.get("job-token") for r in server.requests} == {TOKEN}
    assert not any("private-token" in r.headers for r in server.requests)


def test_each_spec_keeps_its_own_comment(runs_dir, tmp_path, server):
    env = github_env(server, tmp_path)
    build(spec_file(runs_dir, tmp_path), comment=True, env=env)
    other = comparison_spec(
        tmp_path / "nightly.yaml", runs_dir, tmp_path / "out2", PASSING, comment="{marker: nightly}"
    )
    build(other, comment=True, env=env)
    bodies = [c["body"] for c in server.comments(REPO, PR)]
    assert [b.splitlines()[0] for b in bodies] == [MARKER, "<!-- reportgen:nightly -->"]


def test_outputs_comment_in_the_spec_posts_without_the_flag(runs_dir, tmp_path, server):
    spec = spec_file(runs_dir, tmp_path, comment="{forge: github}")
    result = build(spec, env=github_env(server, tmp_path))
    assert result.comment.outcome.status == "created"


# --- the gate and the exit code ------------------------------------------------------------


def test_build_exits_1_on_an_exceeded_tolerance_and_still_posts(
    runs_dir, tmp_path, server, monkeypatch, capsys
):
    use_env(monkeypatch, github_env(server, tmp_path))
    assert main(["build", str(spec_file(runs_dir, tmp_path, FAILING)), "--comment"]) == 1
    (comment,) = ours(server.comments(REPO, PR))
    assert "**❌ Gate failed**: 1 reason" in comment["body"]
    err = capsys.readouterr().err
    assert "comment: created a GitHub comment" in err and "gate failed" in err


def test_build_exits_0_within_tolerance_and_posts(runs_dir, tmp_path, server, monkeypatch):
    use_env(monkeypatch, github_env(server, tmp_path))
    assert main(["build", str(spec_file(runs_dir, tmp_path, PASSING)), "--comment", "-q"]) == 0
    (comment,) = ours(server.comments(REPO, PR))
    assert "**✅ Gate passed**" in comment["body"]


def test_without_a_token_the_comment_is_written_and_the_build_passes(
    runs_dir, tmp_path, server, monkeypatch, capsys
):
    env = github_env(server, tmp_path)
    del env["GITHUB_TOKEN"]
    use_env(monkeypatch, env)
    assert main(["build", str(spec_file(runs_dir, tmp_path)), "--comment"]) == 0
    out = tmp_path / "out" / "comment.md"
    assert out.read_text().startswith(MARKER + "\n")
    assert (
        "comment not posted: GITHUB_TOKEN is not set (in a workflow: env: GITHUB_TOKEN: "
        "${{ secrets.GITHUB_TOKEN }}); it is in " + str(out)
    ) in capsys.readouterr().err
    assert server.requests == []


def test_outside_a_pull_request_nothing_is_posted(runs_dir, tmp_path, server):
    env = github_env(server, tmp_path)
    Path(env["GITHUB_EVENT_PATH"]).write_text(json.dumps({"ref": "refs/heads/main"}))
    result = build(spec_file(runs_dir, tmp_path), comment=True, env=env)
    assert result.comment.outcome.status == "not posted"
    assert "not a pull-request event" in result.comment.outcome.message
    assert result.exit_code == 0


def test_outside_ci_the_comment_is_only_written(runs_dir, tmp_path):
    result = build(spec_file(runs_dir, tmp_path), comment=True, env={})
    assert result.comment.outcome.message == (
        "not running in GitHub Actions or GitLab CI, and outputs.comment.forge is not set"
    )
    assert result.comment.path.is_file() and result.exit_code == 0


@pytest.mark.parametrize(
    ("forge", "status", "says"),
    [
        ("github", 401, "GitHub refused the token (401 Bad credentials): check that GITHUB_TOKEN"),
        ("github", 404, "GitHub found no pull request acme/trainer#7 (404 Not Found)"),
        ("github", 422, "GitHub rejected the comment on acme/trainer#7 (422 Validation Failed)"),
        ("github", 502, "GitHub failed on acme/trainer#7 (502 Server Error): try again later"),
        ("gitlab", 401, "GitLab refused the token (401 Unauthorized): check that GITLAB_TOKEN"),
        ("gitlab", 404, "GitLab found no project 42 merge request !3 (404 Not found)"),
        ("gitlab", 422, "GitLab rejected the note on project 42 merge request !3"),
        ("gitlab", 503, "GitLab failed on project 42 merge request !3 (503 Server Error)"),
    ],
)
def test_forge_errors_exit_4_with_a_message_saying_what_to_do(
    runs_dir, tmp_path, server, monkeypatch, capsys, forge, status, says
):
    server.fail(status, method="GET" if status != 422 else "POST", times=3)
    use_env(monkeypatch, github_env(server, tmp_path) if forge == "github" else gitlab_env(server))
    assert main(["build", str(spec_file(runs_dir, tmp_path)), "--comment", "-q"]) == 4
    err = capsys.readouterr().err
    assert err.startswith("error: comment not posted: ")
    assert says in err
    assert err.rstrip().endswith(f"it is in {tmp_path / 'out' / 'comment.md'}")


def test_a_posting_failure_never_hides_a_failed_gate(runs_dir, tmp_path, server, monkeypatch):
    server.fail(401, times=3)
    use_env(monkeypatch, github_env(server, tmp_path))
    assert main(["build", str(spec_file(runs_dir, tmp_path, FAILING)), "--comment", "-q"]) == 1


def test_on_error_warn_keeps_a_posting_failure_from_failing_the_build(
    runs_dir, tmp_path, server, capsys, monkeypatch
):
    server.fail(403, times=3)
    use_env(monkeypatch, github_env(server, tmp_path))
    spec = spec_file(runs_dir, tmp_path, comment="{on_error: warn}")
    assert main(["build", str(spec), "-q"]) == 0
    assert capsys.readouterr().err.startswith("warning: comment not posted: GitHub denied")


def test_server_errors_are_retried_without_duplicating_the_comment(runs_dir, tmp_path, server):
    server.fail(503, method="POST", times=1)  # the create fails once, then succeeds
    server.fail(502, method="GET", times=1)
    result = build(spec_file(runs_dir, tmp_path), comment=True, env=github_env(server, tmp_path))
    assert result.comment.outcome.status == "created" and result.exit_code == 0
    assert len(ours(server.comments(REPO, PR))) == 1
    assert [r.method for r in server.requests] == ["GET", "GET", "POST", "GET", "POST"]


# --- the token stays secret ----------------------------------------------------------------


def run_cli(spec: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "GITLAB_", "CI_"))}
    return subprocess.run(
        [sys.executable, "-m", "reportgen", "--debug", "build", str(spec), "--comment"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def files_containing(root: Path, secret: str) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and secret.encode() in p.read_bytes()]


@pytest.mark.parametrize("forge", ["github", "gitlab"])
def test_the_token_never_appears_in_output_logs_or_files(
    runs_dir, tmp_path, server, monkeypatch, capsys, caplog, forge
):
    env = github_env(server, tmp_path) if forge == "github" else gitlab_env(server)
    use_env(monkeypatch, {**env, "GITHUB_STEP_SUMMARY": str(tmp_path / "summary.md")})
    argv = ["--debug", "build", str(spec_file(runs_dir, tmp_path, FAILING)), "--comment"]
    codes = [main(argv)]  # created
    server.fail(401, echo_token=True)  # a server that repeats the token it was sent
    codes.append(main(argv))
    server.fail(500, times=3, echo_token=True)
    codes.append(main(argv))
    captured = capsys.readouterr()
    assert codes == [1, 1, 1]
    assert "comment: created" in captured.err and "refused the token" in captured.err
    assert "500 Server Error (you sent" in captured.err and "***" in captured.err
    assert TOKEN not in captured.out + captured.err + caplog.text
    assert (tmp_path / "summary.md").is_file()
    assert files_containing(tmp_path, TOKEN) == []


def test_the_token_never_appears_in_a_real_process_output(runs_dir, tmp_path, server):
    env = github_env(server, tmp_path, GITHUB_STEP_SUMMARY=str(tmp_path / "summary.md"))
    spec = spec_file(runs_dir, tmp_path, FAILING)
    server.fail(401, echo_token=True)
    done = run_cli(spec, env)
    assert done.returncode == 1
    assert "error: comment not posted: GitHub refused the token" in done.stderr
    assert TOKEN not in done.stdout and TOKEN not in done.stderr
    assert "Traceback" not in done.stderr
    assert files_containing(tmp_path, TOKEN) == []


def test_the_step_summary_gets_the_comment(runs_dir, tmp_path, server):
    summary = tmp_path / "summary.md"
    summary.write_text("## earlier step\n")
    env = github_env(server, tmp_path, GITHUB_STEP_SUMMARY=str(summary))
    result = build(spec_file(runs_dir, tmp_path), comment=True, env=env)
    text = summary.read_text()
    assert text.startswith("## earlier step\n" + MARKER)
    assert text.rstrip("\n") == "## earlier step\n" + result.comment.path.read_text().rstrip("\n")


# --- what the comment says -----------------------------------------------------------------


def test_the_comment_shows_verdicts_comparison_and_sparklines(runs_dir, tmp_path, server):
    result = build(
        spec_file(runs_dir, tmp_path, FAILING), comment=True, env=github_env(server, tmp_path)
    )
    (comment,) = ours(server.comments(REPO, PR))
    body = comment["body"]
    assert body == result.comment.path.read_text()
    # Each test curve is a straight ramp to its last value: the health stage rightly says every
    # run was still improving (bad).
    assert "**4 runs:** 0 🟢 good · 4 🟠 bad · 0 🔴 ugly" in body
    assert {f.check for run in result.report.runs for f in run.findings} == {"still_improving"}
    assert "Baseline: main-seed" in body and "(values averaged)" in body
    row = next(
        line for line in body.splitlines() if line.startswith("| loss (last) | pr-regressed")
    )
    cells = [c.strip() for c in row.strip("|").split("|")]
    assert cells[2:6] == ["0.51", "0.6", "+0.09 worse", "+17.65%"]
    assert " → " in cells[6]  # the sparklines
    assert cells[7] == "❌ fail (tol 0.05)"
    assert "Full report: <https://github.invalid/acme/trainer/actions/runs/99>" in body
    assert "```mermaid" not in body  # charts are opt-in


def test_sparklines_fall_with_a_falling_loss(runs_dir, tmp_path):
    result = build(spec_file(runs_dir, tmp_path, FAILING))
    from reportgen.render.comment import trend_cell

    comparison = result.report.baseline
    row = next(r for r in comparison.rows if (r.alias, r.run_id) == ("loss", "candbad1"))
    left, right = trend_cell(comparison, row).split(" → ")
    assert len(left) == len(right) == 16
    # One scale for both: the baseline falls 1.51 → 0.51, the candidate 1.6 → 0.6.
    assert (left[0], left[-1], right[0]) == ("▇", "▁", "█")
    assert list(left) == sorted(left, reverse=True) and list(right) == sorted(right, reverse=True)


def test_charts_are_mermaid_xycharts_when_asked(runs_dir, tmp_path, server):
    spec = spec_file(runs_dir, tmp_path, FAILING, comment="{charts: true}")
    build(spec, env=github_env(server, tmp_path))
    body = ours(server.comments(REPO, PR))[0]["body"]
    assert body.count("```mermaid\nxychart-beta\n") == 2  # loss and score
    assert '    title "loss"' in body and '    x-axis "_step" [0, 3, ' in body
    assert "Lines, in order: 1. baseline (mean of 2 runs); 2. pr-regressed; 3. pr-good" in body


def test_run_names_are_escaped_and_mentions_neutralised(runs_dir, tmp_path, server):
    spec = spec_file(runs_dir, tmp_path, "baseline: {ids: [basea001]}\n", tags="[hostile, main]")
    build(spec, comment=True, env=github_env(server, tmp_path))
    body = ours(server.comments(REPO, PR))[0]["body"]
    assert HOSTILE_NAME not in body
    assert "@everyone" not in body and "<script>" not in body
    assert (
        "&#64;everyone &lt;script&gt;alert(1)&lt;/script&gt; \\| \\`rm -rf\\` \\*\\*bold\\*\\*"
        in body
    )


def test_findings_are_listed_per_run(runs_dir, tmp_path):
    report = build(spec_file(runs_dir, tmp_path)).report
    sick = replace(
        report.runs[0],
        verdict="ugly",
        findings=(Finding("non_finite", "ugly", "train/loss became NaN at step 10", step=10.0),),
    )
    report = replace(report, runs=(sick, *report.runs[1:]))
    body = render_comment(report, CommentOptions("pr"))
    assert "**4 runs:** 0 🟢 good · 3 🟠 bad · 1 🔴 ugly" in body  # the others: still_improving
    assert f"**{sick.name}** (🔴 ugly)" in body
    assert "- ugly `non_finite` at step 10: train/loss became NaN at step 10" in body


# --- the size limit ------------------------------------------------------------------------


WIDE_BODY = "baseline:\n  ids: [widebase]\n  tolerances: {m000: {abs: 0}}\n"


def wide_spec(runs_dir: Path, tmp_path: Path, comment: str | None = None) -> Path:
    """1 baseline and 3 candidates × 120 aliases: 360 comparison rows."""
    return comparison_spec(
        tmp_path / "wide.yaml",
        runs_dir,
        tmp_path / "out",
        WIDE_BODY,
        tags="[wide-main, wide-pr]",
        metrics=wide_metrics(),
        comment=comment,
    )


def test_an_oversized_report_is_cut_below_githubs_limit_with_a_notice(runs_dir, tmp_path, server):
    spec = wide_spec(runs_dir, tmp_path, comment="{charts: true}")
    result = build(spec, env=github_env(server, tmp_path))
    assert len(result.comment.path.read_text()) == result.comment.length
    assert result.comment.outcome.status == "created"  # the server takes at most 65,536
    (comment,) = server.comments(REPO, PR)
    body = comment["body"]
    assert body.startswith("<!-- reportgen:wide -->\n")
    assert len(body) <= 65_536 and result.comment.limit == 65_536
    whole = render_comment(result.report, CommentOptions("wide", limit=10**7, charts=True))
    assert len(whole) > 2 * 65_536
    assert (
        "> ✂️ Shortened to fit the 65,536-character limit of a comment: left out the Mermaid "
        "charts. The full report is at <https://github.invalid/acme/trainer/actions/runs/99>."
    ) in body
    assert "```mermaid" not in body and " → " in body  # charts go first, sparklines stay
    assert body.count("| m") == 360  # every comparison row still fits


def test_a_small_limit_drops_detail_in_the_documented_order(runs_dir, tmp_path):
    report = build(wide_spec(runs_dir, tmp_path)).report
    body = render_comment(report, CommentOptions("wide", limit=6000, full_report="out/report.md"))
    assert len(body) <= 6000
    assert (
        "left out the sparklines, comparison rows that passed or have no tolerance. "
        "The full report is at `out/report.md`."
    ) in body
    assert "357 more rows passed or had no tolerance" in body
    assert body.count("❌ fail") == 3  # m000 rose in each candidate: failures are kept
    assert "<summary>Runs (4)</summary>" in body


def test_the_last_resort_cut_keeps_blocks_closed_and_the_footer(runs_dir, tmp_path):
    report = build(spec_file(runs_dir, tmp_path, FAILING)).report
    finding = Finding("loss_spike", "bad", "a spike in train/loss", step=3.0)
    runs = tuple(
        replace(
            report.runs[0],
            id=f"run{i:04d}",
            name=f"bad run {i}",
            verdict="bad",
            findings=(finding,),
        )
        for i in range(300)
    )
    report = replace(report, runs=runs)
    body = render_comment(report, CommentOptions("pr", limit=2500, full_report="https://ci/job/1"))
    assert len(body) <= 2500
    assert body.startswith(MARKER + "\n")
    assert body.count("<details") == body.count("</details>") == 1
    assert "and the end of the comment. The full report is at <https://ci/job/1>." in body
    assert "| bad run 0 |" in body and "| bad run 299 |" not in body
    assert body.rstrip().endswith("</sub>")


def test_without_a_baseline_the_comment_shows_picks_and_verdicts(runs_dir, tmp_path):
    body = "select:\n  best: {by: loss, reduce: last, pick: min}\n"
    result = build(spec_file(runs_dir, tmp_path, body), comment=True, env={})
    text = result.comment.path.read_text()
    assert "**Picks:** best → **pr-good** (last loss 0.49)" in text
    assert "| Run | Id | State | Verdict | Findings |" in text
    assert "Compared with the baseline" not in text and "Gate passed" in text
