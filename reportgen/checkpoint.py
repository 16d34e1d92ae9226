"""The W&B run a training checkpoint came from, read without running any code from the file.

Training scripts often save `wandb_run_path` ("entity/project/run_id", as `wandb.run.path`
gives it) into their checkpoints, so the checkpoint alone says which run to report on. A spec
(or `reportgen keys --run`) may therefore name a checkpoint file wherever it takes a run id.

PyTorch checkpoints are pickles: `torch.save` writes a zip archive holding `<name>/data.pkl`
(the object tree; tensors are separate members), older versions a bare sequence of pickles.
Unpickling a file runs whatever callables it names, so this reader never imports anything the
pickle asks for: every global becomes an inert stand-in that records its arguments and state
(only `collections.OrderedDict` and a few builtin containers are real). Tensors therefore never
load, and a pickle that names `os.system` builds a harmless placeholder instead of calling it.
"""

from __future__ import annotations

import collections
import dataclasses
import io
import pickle
import re
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from reportgen.errors import UsageError
from reportgen.spec import Spec

RUN_PATH_KEYS = ("wandb_run_path",)
CHECKPOINT_SUFFIXES = (".pt", ".pth", ".ckpt", ".bin", ".pkl", ".pickle", ".tar")
MAX_PICKLE_BYTES = 256 * 1024 * 1024  # data.pkl holds names and shapes, not tensor data
MAX_NODES = 200_000  # objects searched for the run path
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # first pickle of torch's pre-1.6 format

# Globals that are plain containers; everything else becomes a stand-in.
_REAL_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("builtins", "dict"): dict,
    ("builtins", "list"): list,
    ("builtins", "set"): set,
    ("builtins", "frozenset"): frozenset,
    ("builtins", "tuple"): tuple,
}


class CheckpointError(UsageError):
    """A checkpoint named as a run cannot be read or does not say which run it belongs to."""


@dataclass(frozen=True)
class CheckpointRun:
    """The run a checkpoint names: `entity/project/run_id`."""

    file: str
    entity: str | None
    project: str | None
    run_id: str

    @property
    def path(self) -> str:
        return "/".join(p for p in (self.entity, self.project, self.run_id) if p)


class StandIn:
    """What a pickled global becomes: it accepts any arguments and state, and calls nothing."""

    global_name = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> StandIn:
        instance = object.__new__(cls)
        instance.__dict__["_args"] = args
        instance.__dict__["_items"] = {}
        instance.__dict__["_state"] = None
        return instance

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__["_items"][key] = value

    def append(self, value: Any) -> None:
        self.__dict__["_items"][len(self.__dict__["_items"])] = value

    def extend(self, values: Any) -> None:
        for value in values:
            self.append(value)

    def children(self) -> Iterator[Any]:
        yield from self.__dict__["_args"]
        yield self.__dict__["_items"]
        yield self.__dict__["_state"]


class _InertUnpickler(pickle.Unpickler):
    """An Unpickler whose globals are stand-ins (Python docs: "Restricting Globals")."""

    def __init__(self, stream: io.BytesIO):
        super().__init__(stream)
        self._classes: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        real = _REAL_GLOBALS.get((module, name))
        if real is not None:
            return real
        key = (module, name)
        if key not in self._classes:
            label = f"{module}.{name}"
            self._classes[key] = type("StandIn", (StandIn,), {"global_name": label})
        return self._classes[key]

    def persistent_load(self, pid: Any) -> Any:
        """torch's tensor storages: a reference to another archive member, never read."""
        return StandIn(pid)


def _load_inert(data: bytes, file: str) -> list[Any]:
    """Every pickle in `data`, one after another (torch's legacy format writes several)."""
    stream = io.BytesIO(data)
    found = []
    while stream.tell() < len(data):
        try:
            found.append(_InertUnpickler(stream).load())
        except Exception as exc:
            if found:
                break  # the legacy format ends in raw tensor bytes, not in a pickle
            raise CheckpointError(
                f"checkpoint {file}: not a readable pickle ({type(exc).__name__}: {exc})"
            ) from None
        if len(found) == 1 and found[0] != TORCH_LEGACY_MAGIC:
            break  # an ordinary pickle: one object
        if len(found) >= 4:
            break  # magic, protocol, system info, the object itself
    return found


def _pickle_bytes(path: Path) -> bytes:
    """The object tree of a checkpoint: `*/data.pkl` of a torch zip, else the file itself."""
    file = str(path)
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = [n for n in archive.namelist() if n.endswith("data.pkl")]
                names.sort(key=lambda n: (n.count("/"), n))
                if not names:
                    raise CheckpointError(
                        f"checkpoint {file}: a zip archive without a data.pkl member, so not a "
                        "PyTorch checkpoint; give the run id instead"
                    )
                info = archive.getinfo(names[0])
                if info.file_size > MAX_PICKLE_BYTES:
                    raise CheckpointError(
                        f"checkpoint {file}: {names[0]} is {info.file_size:,} bytes, larger "
                        "than a checkpoint's object tree should be; give the run id instead"
                    )
                return archive.read(names[0])
        except (zipfile.BadZipFile, OSError) as exc:
            raise CheckpointError(f"checkpoint {file}: cannot be read ({exc})") from None
    try:
        with path.open("rb") as handle:
            data = handle.read(MAX_PICKLE_BYTES + 1)
    except OSError as exc:
        raise CheckpointError(f"checkpoint {file}: cannot be read ({exc.strerror})") from None
    if len(data) > MAX_PICKLE_BYTES:
        raise CheckpointError(
            f"checkpoint {file}: larger than {MAX_PICKLE_BYTES:,} bytes and not a zip archive; "
            "give the run id instead"
        )
    return data


def _walk(roots: list[Any]) -> Iterator[tuple[Any, Any]]:
    """(key, value) pairs of every mapping in the tree, breadth first: shallow keys win."""
    queue = collections.deque(roots)
    seen: set[int] = set()
    visited = 0
    while queue and visited < MAX_NODES:
        node = queue.popleft()
        if id(node) in seen:
            continue
        seen.add(id(node))
        visited += 1
        if isinstance(node, dict):
            for key, value in node.items():
                yield key, value
                queue.append(value)
        elif isinstance(node, (list, tuple, set, frozenset)):
            queue.extend(node)
        elif isinstance(node, StandIn):
            queue.extend(node.children())


_RUN_PATH = re.compile(
    r"^(?:https?://[^/]+/)?(?:(?P<entity>[^/\s]+)/)?(?:(?P<project>[^/\s]+)/)?(?:runs/)?"
    r"(?P<run_id>[^/\s]+)$"
)


def parse_run_path(text: str) -> tuple[str | None, str | None, str] | None:
    """`entity/project/run_id`, `entity/project/runs/run_id`, a run URL, or a bare id."""
    found = _RUN_PATH.match(text.strip().rstrip("/"))
    if found is None:
        return None
    return found["entity"], found["project"], found["run_id"]


def read_checkpoint_run(path: Path | str) -> CheckpointRun:
    """The run a checkpoint names in `wandb_run_path`, or a CheckpointError saying why not."""
    path = Path(path)
    file = str(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {file}: no such file")
    objects = _load_inert(_pickle_bytes(path), file)
    for key, value in _walk(objects):
        if key in RUN_PATH_KEYS and isinstance(value, str) and value.strip():
            parsed = parse_run_path(value)
            if parsed is None:
                raise CheckpointError(
                    f"checkpoint {file}: {key} is {value!r}, not entity/project/run_id"
                )
            return CheckpointRun(file, *parsed)
    keys = " or ".join(RUN_PATH_KEYS)
    raise CheckpointError(
        f"checkpoint {file}: no {keys} in it; save wandb.run.path under that key when "
        "checkpointing, or give the run id"
    )


def looks_like_checkpoint(ref: str) -> bool:
    """A checkpoint is named by its suffix, or by being a file; a run id is neither."""
    return ref.lower().endswith(CHECKPOINT_SUFFIXES) or Path(ref).is_file()


def resolve_run_ref(ref: str, where: str, *, with_project: bool = False) -> str:
    """A run id as given, or the id inside the checkpoint the reference names
    (as `project/id` with `with_project`, for sources that read several projects)."""
    if not looks_like_checkpoint(ref):
        return ref
    try:
        found = read_checkpoint_run(ref)
    except CheckpointError as exc:
        raise CheckpointError(f"{where}: {exc}") from None
    if with_project and found.project:
        return f"{found.project}/{found.run_id}"
    return found.run_id


class _Resolver:
    """Resolves the run references of one spec, remembering each checkpoint it read."""

    def __init__(self, spec_path: str, with_project: bool):
        self.prefix = f"{spec_path}: "
        self.with_project = with_project
        self.notes: list[str] = []

    def ids(self, refs: tuple[str, ...], where: str, with_project: bool = True) -> tuple[str, ...]:
        resolved = []
        for i, ref in enumerate(refs):
            at = f"{where}[{i}]"
            run_id = resolve_run_ref(
                ref, self.prefix + at, with_project=with_project and self.with_project
            )
            if run_id != ref:
                self.notes.append(f"{at}: checkpoint {ref} belongs to run {run_id}")
            resolved.append(run_id)
        return tuple(resolved)


def resolve_checkpoints(spec: Spec) -> tuple[Spec, list[str]]:
    """The spec with every checkpoint named as a run replaced by that run's id, and a note for
    each ("runs.ids[0]: checkpoint ckpt/last.pt belongs to run 3x7k2p1q").

    Run ids are taken by runs.ids, baseline.ids, candidate.ids and compare.runs (where a
    selection name also fits: a name is read as a checkpoint only when it has a checkpoint's
    suffix or names a file). With a source of several projects, ids become `project/id`.
    """
    several = False
    if spec.source.type == "wandb":  # (the W&B client's modules are loaded only for it)
        from reportgen.sources.projects import many_projects

        several = many_projects(spec.source)
    resolver = _Resolver(str(spec.path), several)
    runs = dataclasses.replace(spec.runs, ids=resolver.ids(spec.runs.ids, "runs.ids"))
    changes: dict[str, Any] = {"runs": runs}
    if spec.baseline is not None:
        baseline = spec.baseline
        base_runs = dataclasses.replace(
            baseline.runs, ids=resolver.ids(baseline.runs.ids, "baseline.ids")
        )
        candidate = baseline.candidate
        if candidate is not None:
            candidate = dataclasses.replace(
                candidate, ids=resolver.ids(candidate.ids, "candidate.ids")
            )
        changes["baseline"] = dataclasses.replace(baseline, runs=base_runs, candidate=candidate)
    if spec.compare is not None:
        compared = resolver.ids(spec.compare.runs, "compare.runs", with_project=False)
        changes["compare"] = dataclasses.replace(spec.compare, runs=compared)
    return dataclasses.replace(spec, **changes), resolver.notes


def with_checkpoint_runs(spec: Spec) -> Spec:
    """`resolve_checkpoints` without the notes (the discovery commands print none)."""
    return resolve_checkpoints(spec)[0]
