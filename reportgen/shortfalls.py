"""What a report lacks of what its spec asked for: the difference between "built" and "done".

A selection that picked no run (usually a typo in a metric key), a table column that no chosen
run logged, runs that could not be read: each leaves a report that looks finished but answers
a different question. Each becomes a `Shortfall` naming the place in the spec, what is missing
and the closest keys that exist; the build prints them and exits 5 (errors.EXIT_INCOMPLETE)
unless the spec accepted that kind of gap (`runs.allow_partial` for runs that could not be read).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from reportgen.metrics import ResolvedMetric
from reportgen.runs import Run
from reportgen.select import SelectionResult
from reportgen.spec import Spec


@dataclass(frozen=True)
class Shortfall:
    """One thing the spec asks for that the report does not have.

    `where` is the spec path (select.shortest.by); `accepted` is True when the spec said that
    such a gap is fine, so it is a warning rather than a failed build.
    """

    where: str
    message: str
    accepted: bool = False


@dataclass(frozen=True)
class LeftOut:
    """A chosen run that could not be read, and why."""

    run_id: str
    run_name: str
    reason: str


def find_shortfalls(
    spec: Spec,
    runs: Sequence[Run],
    metrics: Mapping[str, Mapping[str, ResolvedMetric]],
    selections: Sequence[SelectionResult],
    left_out: Sequence[LeftOut] = (),
) -> tuple[Shortfall, ...]:
    """Every gap between the spec and the report, in spec order."""
    found: list[Shortfall] = []
    if left_out:
        found.append(_unread(spec, runs, left_out))
    for result in selections:
        if result.run_id is None:
            found.append(_empty_selection(spec, result, runs, metrics))
    found += _empty_columns(spec, runs, metrics)
    return tuple(found)


def _unread(spec: Spec, runs: Sequence[Run], left_out: Sequence[LeftOut]) -> Shortfall:
    first = left_out[0]
    total = len(runs) + len(left_out)
    more = f" (and {len(left_out) - 1} more, see the report's notes)" if len(left_out) > 1 else ""
    accepted = spec.runs.allow_partial
    advice = (
        "accepted by runs.allow_partial"
        if accepted
        else "build again, or set runs.allow_partial: true to accept a report without them"
    )
    return Shortfall(
        "runs",
        f"{len(left_out)} of {total} chosen runs could not be read: {first.run_name} "
        f"({first.run_id}): {first.reason}{more}; the report is incomplete ({advice})",
        accepted=accepted,
    )


def _empty_selection(
    spec: Spec,
    result: SelectionResult,
    runs: Sequence[Run],
    metrics: Mapping[str, Mapping[str, ResolvedMetric]],
) -> Shortfall:
    selection = result.selection
    where = f"select.{selection.name}"
    if not runs:
        return Shortfall(where, "picked no run: no run matched runs.filters")
    if result.too_short and not result.ranking:
        return Shortfall(
            f"{where}.min_steps",
            f"picked no run: all {len(result.too_short)} chosen runs logged fewer than "
            f"{selection.min_steps} steps",
        )
    ranked = [metrics[r.run_id] for r in result.ranking]
    if any(resolved[selection.by].found for resolved in ranked):
        return Shortfall(
            f"{where}.by",
            f"picked no run: metric '{selection.by}' has no finite value in any chosen run "
            "(every logged value is NaN or infinite)",
        )
    return Shortfall(f"{where}.by", "picked no run: " + _not_logged(selection.by, ranked, spec))


def _empty_columns(
    spec: Spec, runs: Sequence[Run], metrics: Mapping[str, Mapping[str, ResolvedMetric]]
) -> list[Shortfall]:
    """Table columns no chosen run logged (a column some runs lack is normal and only noted)."""
    csv = spec.outputs.csv
    if not runs or csv.missing == "drop":
        return []
    explicit = csv.columns is not None
    columns = csv.columns if csv.columns is not None else tuple(spec.metrics)
    where = "outputs.csv.columns" if explicit else "metrics"
    found = []
    resolved = [metrics[run.id] for run in runs]
    for column in columns:
        if any(r[column].found for r in resolved):
            continue
        found.append(
            Shortfall(
                f"{where}.{column}" if not explicit else where,
                f"column '{column}' is empty: " + _not_logged(column, resolved, spec),
            )
        )
    return found


def _not_logged(
    alias: str, resolved: Sequence[Mapping[str, ResolvedMetric]], spec: Spec, depth: int = 0
) -> str:
    """'no chosen run logged metric x (tried a, b); closest keys that exist: c, d'."""
    definition = spec.metrics.get(alias)
    if definition is not None and definition.expr is not None and depth < 3:
        inputs = [m for m in resolved[0][alias].tried if m in spec.metrics] if resolved else []
        unlogged = [m for m in inputs if not any(r[m].found for r in resolved)]
        if unlogged:
            return f"metric '{alias}' = {definition.expr} needs " + _not_logged(
                unlogged[0], resolved, spec, depth + 1
            )
        return (
            f"metric '{alias}' = {definition.expr}: no chosen run logged all of "
            f"{', '.join(inputs)} at the same steps"
        )
    tried = ", ".join(resolved[0][alias].tried) if resolved else alias
    closest = Counter(key for r in resolved for key in r[alias].closest)
    text = f"no chosen run logged metric '{alias}' (tried {tried})"
    if closest:
        best = [key for key, _ in closest.most_common(3)]
        return text + f"; closest keys that exist: {', '.join(best)}"
    return text + "; `reportgen keys SPEC` lists the keys the runs logged"
