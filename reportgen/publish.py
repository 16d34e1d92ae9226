"""The last stage of a build: the pull-request comment, written to a file and posted.

The comment is always written to `comment.md` in the output folder, so a build that cannot post
(no token, not a pull request, the forge refused) still leaves it for a person or a later step.
Whether a posting failure fails the build is the spec's choice (`outputs.comment.on_error`); it
never hides a failed gate, which keeps exit code 1 (see `BuildResult.exit_code`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from reportgen import atomic
from reportgen.forges import (
    FAILED,
    PostOutcome,
    append_step_summary,
    detect_forge,
    job_url,
    post_comment,
)
from reportgen.render.comment import (
    FORGE_LIMITS,
    GITHUB_LIMIT,
    CommentOptions,
    default_marker,
    marker_line,
    render_comment,
)
from reportgen.report import Report
from reportgen.spec import CommentSpec, Spec

COMMENT_FILE = "comment.md"


@dataclass(frozen=True)
class CommentResult:
    path: Path
    outcome: PostOutcome
    fails_build: bool
    length: int
    limit: int
    warnings: tuple[str, ...] = ()


def publish_comment(
    spec: Spec,
    report: Report,
    out_dir: Path,
    env: Mapping[str, str],
    *,
    folder: Path | None = None,
) -> CommentResult:
    """Render the comment for the forge found in `env`, write it, post it, add it to the summary.

    comment.md is written into `folder` (a build's staging folder, moved into `out_dir` with
    the other outputs), or straight into `out_dir`; the result names its place in `out_dir`.
    """
    settings = spec.outputs.comment or CommentSpec()
    forge = detect_forge(settings.forge, env)
    forge_limit = FORGE_LIMITS.get(forge or "github", GITHUB_LIMIT)
    limit = min(settings.limit, forge_limit) if settings.limit else forge_limit
    name = settings.marker or default_marker(spec.path)
    full_report = settings.report_url or job_url(forge, env) or _local_report(spec, out_dir)
    body = render_comment(report, CommentOptions(name, limit, settings.charts, full_report))
    path = out_dir / COMMENT_FILE
    atomic.write_text((folder or out_dir) / COMMENT_FILE, body)
    outcome = post_comment(body, marker_line(name), forge, env)
    problem = append_step_summary(body, env)
    return CommentResult(
        path=path,
        outcome=outcome,
        fails_build=outcome.status == FAILED and settings.on_error == "fail",
        length=len(body),
        limit=limit,
        warnings=(problem,) if problem else (),
    )


def _local_report(spec: Spec, out_dir: Path) -> str:
    return str(out_dir / "report.md") if "markdown" in spec.outputs.formats else str(out_dir)
