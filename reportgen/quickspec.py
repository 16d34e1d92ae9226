"""The spec a one-line command stands for: `export`, `health`, `show` and `compare`.

Each spec-less command builds an ordinary spec document here and runs it through the same
`build` pipeline as `reportgen build`, so its answer is exactly what that spec gives;
`--print-spec` prints the document as YAML for the user to keep and edit. Everything here is
pure: command-line values in, a spec document (plain dicts) out.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from reportgen.analysis.discover import source_from_argument
from reportgen.choices import ALIGNS
from reportgen.errors import UsageError
from reportgen.health.roles import KNOWN_KEYS, ROLE_ALIASES
from reportgen.spec import Spec, parse_spec

PICKS = ("min", "max")
REDUCTIONS = ("mean", "last", "min", "max", "first")
SHOW_STATS = ("count", "non_finite", "first", "last", "mean", "min", "p50", "max")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class RunChoice:
    """Which runs a command looks at: the `runs:` section of its spec."""

    ids: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    tags: tuple[str, ...] = ()
    name: str | None = None
    latest: int | None = None

    def section(self) -> dict[str, Any]:
        filters: dict[str, Any] = {}
        if self.states:
            filters["state"] = list(self.states)
        if self.tags:
            filters["tags"] = {"any": list(self.tags)}
        if self.name is not None:
            filters["name"] = self.name
        runs: dict[str, Any] = {}
        if filters:
            runs["filters"] = filters
        if self.ids:
            runs["ids"] = list(self.ids)
        if self.latest is not None:
            if self.latest < 1:
                raise UsageError(f"--latest {self.latest}: give a number of runs, 1 or more")
            runs["limit"] = self.latest
        return runs


def source_section(source: str) -> dict[str, Any]:
    """SOURCE on a command line (a folder, or wandb://ENTITY/PROJECT) as a `source:` section."""
    spec = source_from_argument(source)
    if spec.type == "wandb":
        return {"type": "wandb", "entity": spec.entity, "project": spec.project}
    return {"type": "wandb-offline", "path": spec.path}


def alias_name(key: str) -> str:
    """A spec alias for a raw key: `actor/entropy` → `actor_entropy` (aliases are identifiers)."""
    name = re.sub(r"[^A-Za-z0-9_]+", "_", key).strip("_") or "metric"
    return name if _IDENTIFIER.match(name) else f"m_{name}"


def _role_of(name: str) -> str | None:
    return next((role for role, names in ROLE_ALIASES.items() if name in names), None)


def metric_rule(item: str) -> tuple[str, list[str]]:
    """One `--metrics` item → (alias, keys tried in order).

    `NAME=KEY|KEY…` names the keys itself; a well-known name (entropy, kl, clipfrac, length,
    clip_ratio, reward, score, loss, val_loss, grad_norm) tries the keys verl, TRL, slime, the
    HF Trainer and classic PPO code log for it; anything else is a key, aliased by its name.
    """
    item = item.strip()
    if not item:
        raise UsageError("--metrics: an empty name; separate names with commas: a,b,c")
    if "=" in item:
        name, _, keys = item.partition("=")
        name, wanted = name.strip(), [k.strip() for k in keys.split("|") if k.strip()]
        if not _IDENTIFIER.match(name) or not wanted:
            raise UsageError(
                f"--metrics '{item}': expected NAME=KEY (NAME a letter or _ then letters, "
                "digits, _), e.g. len=response_length/mean"
            )
        return name, wanted
    role = _role_of(item) if _IDENTIFIER.match(item) else None
    if role is not None:
        return item, list(dict.fromkeys([item, *KNOWN_KEYS[role]]))
    return alias_name(item), [item]


def metrics_section(items: Iterable[str]) -> dict[str, Any]:
    """`--metrics a,b,c` (also repeated) as a `metrics:` section, in the order given."""
    section: dict[str, Any] = {}
    for item in items:
        name, keys = metric_rule(item)
        if name in section and section[name] != _keys_value(keys):
            raise UsageError(f"--metrics: '{name}' is given twice with different keys")
        section[name] = _keys_value(keys)
    return section


def _keys_value(keys: list[str]) -> str | list[str]:
    return keys[0] if len(keys) == 1 else keys


def split_items(values: Sequence[str] | None) -> list[str]:
    """Comma-separated and repeated option values, flattened, empty ones dropped."""
    return [part.strip() for value in values or () for part in value.split(",") if part.strip()]


@dataclass(frozen=True)
class Pick:
    pick: str
    reduce: str
    metric: str

    @property
    def selection(self) -> str:
        return "lowest" if self.pick == "min" else "highest"


def parse_pick(text: str) -> Pick:
    """`--pick "min mean length"`: pick min|max of a reduction (mean, last, …) of a metric."""
    words = text.split()
    if (
        len(words) != 3
        or words[0] not in PICKS
        or words[1] not in REDUCTIONS
        or not words[2].strip()
    ):
        raise UsageError(
            f"--pick '{text}': expected 'min|max REDUCE METRIC' with REDUCE one of "
            f"{', '.join(REDUCTIONS)}, e.g. --pick 'min mean length'"
        )
    return Pick(words[0], words[1], words[2])


@dataclass(frozen=True)
class ExportRequest:
    source: str
    metrics: tuple[str, ...]
    every: int
    start: int = 0
    stop: int | None = None
    align: str = "asof"
    x: str = "_step"
    pick: str | None = None
    output: str | None = None
    runs: RunChoice = field(default_factory=RunChoice)


DEFAULT_EXPORT_DIR = "outputs/export"


def export_document(request: ExportRequest) -> dict[str, Any]:
    """`reportgen export`: sampled CSV tables of some metrics, of a picked run or every run."""
    if not request.metrics:
        raise UsageError("--metrics: name at least one metric (a key, or e.g. entropy,length)")
    if request.every < 1:
        raise UsageError(f"--every {request.every}: give a step interval of 1 or more")
    if request.align not in ALIGNS:
        raise UsageError(f"--align '{request.align}': expected one of {', '.join(ALIGNS)}")
    metrics = metrics_section(request.metrics)
    columns = list(metrics)
    doc: dict[str, Any] = {
        "version": 1,
        "title": "Export of " + ", ".join(columns),
        "source": source_section(request.source),
    }
    runs = request.runs.section()
    if runs:
        doc["runs"] = runs
    pick = parse_pick(request.pick) if request.pick else None
    if pick is not None:
        by, keys = metric_rule(pick.metric)
        if by not in metrics:
            metrics[by] = _keys_value(keys)
    doc["metrics"] = metrics
    if pick is not None:
        doc["select"] = {pick.selection: {"by": by, "reduce": pick.reduce, "pick": pick.pick}}
    sampling: dict[str, Any] = {"x": request.x, "start": request.start, "every": request.every}
    if request.stop is not None:
        sampling["stop"] = request.stop
    sampling["align"] = request.align
    doc["sampling"] = sampling
    csv: dict[str, Any] = {"columns": columns}
    out_dir = DEFAULT_EXPORT_DIR
    if request.output is not None:
        target = Path(request.output)
        if not target.name.endswith(".csv"):
            raise UsageError(f"-o '{request.output}': give a file name ending in .csv")
        out_dir = str(target.parent)
        one_table = pick is not None or len(request.runs.ids) == 1
        csv["name"] = target.name if one_table else f"{target.stem}_{{run}}.csv"
    doc["outputs"] = {"dir": out_dir, "formats": ["csv"], "csv": csv}
    return doc


def health_document(
    source: str, runs: RunChoice, fail_on: str = "never", out_dir: str | None = None
) -> dict[str, Any]:
    """`reportgen health`: every check of the `auto` preset on the chosen runs, no aliases."""
    doc: dict[str, Any] = {
        "version": 1,
        "title": "Training health",
        "source": source_section(source),
    }
    section = runs.section()
    if section:
        doc["runs"] = section
    doc["health"] = {"preset": "auto"}
    doc["outputs"] = _outputs(out_dir, "health")
    if fail_on != "never":
        doc["gate"] = {"fail_on": fail_on}
    return doc


def _outputs(out_dir: str | None, name: str) -> dict[str, Any]:
    """No files unless asked for (`--out DIR`): the answer is on stdout."""
    if out_dir is None:
        return {"dir": f"outputs/{name}", "formats": []}
    return {"dir": out_dir, "formats": ["markdown", "csv", "json"]}


def keys_section(keys: Iterable[str], evals: Sequence[str] = ()) -> dict[str, Any]:
    """Raw keys, each under its own alias, then `--eval NAME=EXPR` derived aliases."""
    section: dict[str, Any] = {}
    for key in keys:
        name = alias_name(key)
        while name in section:
            name += "_"
        section[name] = key
    for text in evals:
        name, sep, expr = text.partition("=")
        name = name.strip()
        if not sep or not _IDENTIFIER.match(name) or not expr.strip():
            raise UsageError(
                f"--eval '{text}': expected NAME=EXPRESSION over the aliases, "
                "e.g. ratio=critic_score_mean / response_length_mean"
            )
        section[name] = {"expr": expr.strip()}
    return section


def show_document(
    source: str,
    run_id: str,
    keys: Sequence[str],
    *,
    evals: Sequence[str] = (),
    stats: bool = False,
    where: str | None = None,
    every: int = 1,
    out_dir: str | None = None,
) -> dict[str, Any]:
    """`reportgen show`: one run's keys (each its own alias), stats, and filtered history."""
    if every < 1:
        raise UsageError(f"--every {every}: give a step interval of 1 or more")
    doc: dict[str, Any] = {
        "version": 1,
        "title": f"Run {run_id}",
        "source": source_section(source),
        "runs": {"ids": [run_id]},
        "metrics": keys_section(keys, evals),
        "sampling": {"x": "_step", "start": 0, "every": every, "align": "exact"},
    }
    if stats:
        doc["stats"] = {"stats": list(SHOW_STATS)}
    doc["outputs"] = _outputs(out_dir, "show")
    if where:
        doc["outputs"]["csv"] = {"where": where}
    return doc


def compare_document(
    source: str,
    run_ids: Sequence[str],
    keys: Sequence[str] | None = None,
    metrics: Sequence[str] = (),
    out_dir: str | None = None,
) -> dict[str, Any]:
    """`reportgen compare`: config differences and metric changes against the first run."""
    if len(run_ids) < 2:
        raise UsageError("compare: give at least two runs (ids or names)")
    section = metrics_section(metrics) if metrics else keys_section(keys or ())
    doc: dict[str, Any] = {
        "version": 1,
        "title": "Comparison of " + ", ".join(run_ids),
        "source": source_section(source),
        "runs": {"ids": list(run_ids)},
        "metrics": section,
        "compare": {"runs": list(run_ids), "history": False},
        "outputs": _outputs(out_dir, "compare"),
    }
    return doc


# Plain scalars a YAML 1.2 reader (or a person) takes for numbers although PyYAML's YAML 1.1
# rules keep them strings: `1e5`, `12E-3`, `+7`, `.inf`. Run ids look like that now and then.
_NUMBER_LIKE = re.compile(
    r"^[-+]?(\.?[0-9][0-9_]*(\.[0-9_]*)?([eE][-+]?[0-9]+)?|\.(inf|nan))$", re.I
)


class _SpecDumper(yaml.SafeDumper):
    """Quotes every string that any YAML reader could mistake for a number."""


def _represent_text(dumper: yaml.SafeDumper, text: str) -> yaml.ScalarNode:
    style = "'" if _NUMBER_LIKE.match(text) else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_SpecDumper.add_representer(str, _represent_text)


def spec_yaml(doc: dict[str, Any], command: str | None = None) -> str:
    """The document as a spec file; the first line says which command it stands for."""
    body = yaml.dump(doc, Dumper=_SpecDumper, sort_keys=False, allow_unicode=True, width=100)
    head = f"# The spec `{command}` runs; `reportgen build` this file for the same answer.\n"
    return (head if command else "") + body


def to_spec(doc: dict[str, Any], name: str) -> Spec:
    """Validate the document exactly as a spec file (errors name `<reportgen NAME>`)."""
    return parse_spec(spec_yaml(doc), Path(f"<reportgen {name}>"))
