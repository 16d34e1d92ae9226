"""Regular expressions over run names (`runs.filters.name`, `--name`), with a bound on time.

Python's `re` backtracks: a pattern such as `^(a+)+$` or `(a|aa)+$` takes exponential time on
some names and cannot be interrupted (it holds the interpreter). reportgen matches names with
the `regex` package instead: the same syntax as `re` (its version-0 mode), plus a timeout on
each match. A match that runs past MATCH_SECONDS stops the build with exit code 2 and a message
naming the pattern and the run name; repetition counts past the engine's limit and patterns
longer than MAX_PATTERN characters are refused when the spec is validated.
"""

from __future__ import annotations

from functools import lru_cache

import regex

from reportgen.errors import UsageError
from reportgen.safetext import visible

MATCH_SECONDS = 0.5
MAX_PATTERN = 1000


def pattern_problem(text: str) -> str | None:
    """Why `text` cannot be used as a name filter, or None when it can."""
    if len(text) > MAX_PATTERN:
        return f"a regular expression of at most {MAX_PATTERN} characters is expected here"
    try:
        _compiled(text)
    except (regex.error, OverflowError, ValueError, RecursionError) as exc:
        return f"not a valid regular expression: {exc}"
    return None


@lru_cache(maxsize=64)
def _compiled(text: str) -> regex.Pattern[str]:
    return regex.compile(text, regex.VERSION0)


def name_matches(pattern: str, name: str, where: str = "runs.filters.name") -> bool:
    """`re.search(pattern, name)`, stopped after MATCH_SECONDS."""
    problem = pattern_problem(pattern)
    if problem is not None:
        raise UsageError(f"{where}: {problem}")
    try:
        return _compiled(pattern).search(name, timeout=MATCH_SECONDS) is not None
    except TimeoutError:
        raise UsageError(
            f"{where}: the regular expression {visible(pattern, one_line=True)!r} took more than "
            f"{MATCH_SECONDS:g} s on the run name {visible(name, one_line=True)!r} "
            "(catastrophic backtracking, from repetition inside repetition such as (a+)+ or "
            "(a|aa)+); simplify the pattern"
        ) from None
