"""Several W&B projects as one source: a list of projects, or a glob such as `proj-*`.

The export scripts teams keep take several projects and globbed names and merge their runs;
this does the same on top of `CloudSource` (one per project, each with its own cache area and
all sharing one `wandb.Api` connection). A glob is resolved by listing the entity's projects
(`api.projects(entity)`, one `GetProjects` request per 200 projects). Every run keeps its
`entity` and `project`; a run id found in two projects is told apart as `project/id`.

`project_rows` serves `reportgen projects`: the projects an entity holds with their run counts
(one `Runs` request of one run per project: the server returns the count with the page), and,
without an entity, the entities the credentials can see (the viewer and their teams).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from reportgen.cache import RunCache
from reportgen.errors import SourceError
from reportgen.runs import History, Run
from reportgen.sources import Progress, RunFetchError
from reportgen.sources.cloud import CloudSource
from reportgen.spec import RunsSpec, SourceSpec

GLOB_CHARACTERS = "*?["
PROJECTS_DOCUMENT = "projects.json"
NONE_FOUND = "none of the runs in runs.ids was found"


def is_pattern(name: str) -> bool:
    return any(c in name for c in GLOB_CHARACTERS)


def project_patterns(spec: SourceSpec) -> list[str]:
    """`source.project` and `source.projects`, as "entity/pattern" strings, each once."""
    names = ([spec.project] if spec.project else []) + list(spec.projects)
    paths = [name if "/" in name else f"{spec.entity}/{name}" for name in names]
    return list(dict.fromkeys(paths))


def many_projects(spec: SourceSpec) -> bool:
    """Whether a `wandb` source names more than one project (a list, or a glob)."""
    return bool(spec.projects) or is_pattern(spec.project or "")


def connect(entity: str, base_url: str | None, cache: RunCache | None = None) -> CloudSource:
    """A connected CloudSource for an entity (credentials checked as for a build)."""
    source = CloudSource(
        SourceSpec(type="wandb", entity=entity, project="-", base_url=base_url), cache=None
    )
    source._connect()
    return source


class ManyProjectsSource:
    """The runs of several projects of a W&B server, merged; each run says its project."""

    kind = "wandb"

    def __init__(self, spec: SourceSpec, cache: RunCache | None = None):
        assert spec.entity
        self.spec = spec
        self.cache = cache
        self.patterns = project_patterns(spec)
        self.notes: list[str] = []
        self._sources: dict[str, CloudSource] = {}  # "entity/project" → its source
        self._owners: dict[str, tuple[CloudSource, Run]] = {}  # our run id → source, its run
        self._resolved: list[str] | None = None
        # The connection (and error messages) before any project is known.
        first = self.patterns[0].partition("/")
        self._connection = CloudSource(
            dataclasses.replace(spec, entity=first[0], project=first[2], projects=()), cache=None
        )

    # --- which projects --------------------------------------------------------------------

    def projects(self) -> list[str]:
        """Every "entity/project" the patterns name, in the patterns' order, each once."""
        if self._resolved is not None:
            return self._resolved
        found: list[str] = []
        for pattern in self.patterns:
            entity, _, name = pattern.partition("/")
            if not is_pattern(name):
                matched = [pattern]
            else:
                matched = [
                    f"{entity}/{p}"
                    for p in self._entity_projects(entity)
                    if fnmatch.fnmatch(p, name)
                ]
                if not matched:
                    self.notes.append(f"source: no project of {entity} matches '{name}'")
            found += [m for m in matched if m not in found]
        if not found:
            raise SourceError(
                f"source: no W&B project matches {', '.join(self.patterns)} on {self._host()} "
                "(`reportgen projects ENTITY` lists them)"
            )
        self._resolved = found
        return found

    def _entity_projects(self, entity: str) -> list[str]:
        """An entity's project names: from the server, or (--offline) from the last listing."""
        area = (
            self.cache.area(
                "wandb-projects", {"base_url": self.spec.base_url or "", "entity": entity}
            )
            if self.cache is not None
            else None
        )
        if self.cache is not None and self.cache.offline:
            document = area.read_document(PROJECTS_DOCUMENT) if area is not None else None
            if not isinstance(document, dict) or "projects" not in document:
                raise SourceError(
                    f"--offline: the cache holds no list of {entity}'s projects to match "
                    f"{', '.join(self.patterns)} against; build once without --offline"
                )
            return [str(p) for p in document["projects"]]
        names = list_projects(self._api(), entity, self._connection)
        if area is not None:
            area.update_document(PROJECTS_DOCUMENT, {"projects": names})
        return names

    def _api(self) -> Any:
        return self._connection._connect()

    def _host(self) -> str:
        return self._connection._host()

    def _source_for(self, path: str) -> CloudSource:
        source = self._sources.get(path)
        if source is None:
            entity, _, project = path.partition("/")
            spec = dataclasses.replace(self.spec, entity=entity, project=project, projects=())
            source = CloudSource(spec, cache=self.cache)
            self._sources[path] = source
        if source._api is None and self._connection._api is not None:
            source._api = self._connection._api  # one connection and credentials check for all
        return source

    def describe(self) -> dict[str, Any]:
        described: dict[str, Any] = {
            "type": self.kind,
            "entity": self.spec.entity,
            "project": self.spec.project,
            "projects": self._resolved if self._resolved is not None else self.patterns,
        }
        if self.spec.base_url:
            described["base_url"] = self.spec.base_url
        return described

    # --- runs ------------------------------------------------------------------------------

    def list_runs(
        self,
        runs: RunsSpec | None = None,
        progress: Progress | None = None,
        now: datetime | None = None,
    ) -> list[Run]:
        runs = runs or RunsSpec()
        listed: list[tuple[CloudSource, Run]] = []
        if self.cache is None or not self.cache.offline:
            self._api()
        for path in self.projects():
            source = self._source_for(path)
            ids = ids_in_project(runs.ids, path.partition("/")[2])
            if runs.ids and not ids:
                continue  # every id given names another project
            try:
                found = source.list_runs(dataclasses.replace(runs, ids=ids), progress, now)
            except SourceError as exc:
                if runs.ids and NONE_FOUND in str(exc):
                    found = []
                else:
                    raise
            listed += [(source, run) for run in found]
            self.notes += [n for n in source.notes if not (runs.ids and "(runs.ids)" in n)]
            source.notes.clear()
        if runs.ids:
            seen = {run.id for _, run in listed}
            seen |= {f"{run.project}/{run.id}" for _, run in listed}
            for missing in sorted(set(runs.ids) - seen):
                self.notes.append(
                    f"run id {missing} (runs.ids) was not found in {', '.join(self.projects())}"
                )
            if not seen:
                raise SourceError(
                    f"source: none of the runs in runs.ids was found in {', '.join(self.projects())}"
                )
        return self._named(listed)

    def _named(self, listed: list[tuple[CloudSource, Run]]) -> list[Run]:
        """Our runs, each under an id unique across projects (`project/id` where ids clash)."""
        counts: dict[str, int] = {}
        for _, run in listed:
            counts[run.id] = counts.get(run.id, 0) + 1
        result = []
        for source, run in listed:
            ours = (
                run
                if counts[run.id] == 1
                else dataclasses.replace(run, id=f"{run.project}/{run.id}")
            )
            self._owners[ours.id] = (source, run)
            result.append(ours)
        clashing = sorted(rid for rid, n in counts.items() if n > 1)
        if clashing:
            self.notes.append(
                f"run ids found in more than one project are shown as project/id: {', '.join(clashing)}"
            )
        return result

    def history(self, run: Run, keys: Sequence[str] | None = None) -> History:
        result = self.histories([run])[run.id]
        if isinstance(result, RunFetchError):
            raise result
        return result

    def histories(
        self, runs: Sequence[Run], progress: Progress | None = None
    ) -> dict[str, History | RunFetchError]:
        """Each project's runs fetched by its own source (and pool of workers)."""
        by_source: dict[int, tuple[CloudSource, list[tuple[str, Run]]]] = {}
        for run in runs:
            source, original = self._owners[run.id]
            by_source.setdefault(id(source), (source, []))[1].append((run.id, original))
        results: dict[str, History | RunFetchError] = {}
        for source, pairs in by_source.values():
            fetched = source.histories([original for _, original in pairs], progress)
            for ours, original in pairs:
                result = fetched[original.id]
                if isinstance(result, RunFetchError):
                    result = RunFetchError(ours, result.run_name, result.reason)
                results[ours] = result
        return {run.id: results[run.id] for run in runs}


def ids_in_project(ids: Sequence[str], project: str) -> tuple[str, ...]:
    """The run ids to ask one project for: plain ids, and `project/id` for this project."""
    found = []
    for ref in ids:
        owner, _, run_id = ref.rpartition("/")
        if not owner or owner == project:
            found.append(run_id)
    return tuple(dict.fromkeys(found))


# --- `reportgen projects` ------------------------------------------------------------------


@dataclass(frozen=True)
class ProjectRow:
    entity: str
    project: str
    runs: int | None
    created_at: datetime | None

    def as_json(self) -> dict[str, Any]:
        return {
            "entity": self.entity,
            "project": self.project,
            "runs": self.runs,
            "created_at": self.created_at,
        }


def list_projects(api: Any, entity: str, source: CloudSource) -> list[str]:
    """An entity's project names, sorted; a server error becomes a SourceError."""
    try:
        return sorted(project.name for project in api.projects(entity, per_page=200))
    except Exception as exc:
        raise SourceError(
            f"source: listing the projects of {entity} on {source._host()} failed: "
            f"{source._message(exc)}"
        ) from None


def visible_entities(api: Any, source: CloudSource) -> list[str]:
    """The viewer's own entity and their teams'."""
    try:
        viewer = api.viewer
        names = [viewer.entity, *viewer.teams]
    except Exception as exc:
        raise SourceError(
            f"source: asking {source._host()} who these credentials belong to failed: "
            f"{source._message(exc)}"
        ) from None
    return list(dict.fromkeys(n for n in names if n))


def project_rows(
    entities: Sequence[str],
    base_url: str | None,
    pattern: str | None = None,
    progress: Progress | None = None,
) -> list[ProjectRow]:
    """Each project of the entities (all the credentials see when none is given), with its
    run count; `pattern` (a glob) keeps only matching project names."""
    source = connect(entities[0] if entities else "-", base_url)
    api = source._api
    chosen = list(entities) or visible_entities(api, source)
    rows: list[ProjectRow] = []
    for entity in chosen:
        try:
            projects = list(api.projects(entity, per_page=200))
        except Exception as exc:
            raise SourceError(
                f"source: listing the projects of {entity} on {source._host()} failed: "
                f"{source._message(exc)}"
            ) from None
        projects.sort(key=lambda p: p.name)
        if pattern:
            projects = [p for p in projects if fnmatch.fnmatch(p.name, pattern)]
        for done, project in enumerate(projects, start=1):
            if progress:
                progress(done, len(projects), f"{entity}/{project.name}")
            rows.append(
                ProjectRow(
                    entity, project.name, _run_count(api, entity, project.name), _created(project)
                )
            )
    return rows


def _run_count(api: Any, entity: str, project: str) -> int | None:
    """The server's run count, returned with a one-run page of the listing."""
    try:
        return len(api.runs(f"{entity}/{project}", per_page=1, lazy=True))
    except Exception:
        return None


def _created(project: Any) -> datetime | None:
    from reportgen.sources.cloud import _timestamp

    try:
        return _timestamp(project.created_at)
    except Exception:
        return None
