"""YAML with positions: the parsed document and the line and column of every value, within
bounds (size, depth, number of values) that keep a hostile file from costing much."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import yaml

from reportgen.errors import SpecError, SpecProblem
from reportgen.spec.model import SpecPath

# --- YAML with positions -----------------------------------------------------------------------


@dataclass
class Located:
    """The plain data of a YAML document, plus where each path's key and value start."""

    data: Any
    value_marks: dict[SpecPath, tuple[int, int]]
    key_marks: dict[SpecPath, tuple[int, int]]
    duplicates: list[tuple[SpecPath, tuple[int, int]]]

    def mark(self, path: SpecPath, *, key: bool = False) -> tuple[int, int]:
        """The closest known position to `path` (1-based line and column)."""
        p = tuple(path)
        while p:
            if key and p in self.key_marks:
                return self.key_marks[p]
            if p in self.value_marks:
                return self.value_marks[p]
            p = p[:-1]
        return self.value_marks.get((), (1, 1))


# libyaml's parser, where PyYAML was built with it, composes a spec several times faster than
# the pure-Python one (it was a good part of `reportgen validate`); both give the same nodes
# and marks. Invalid YAML is explained in the pure-Python parser's words, which are plainer.
_FAST_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# Limits on what a spec may be: far above any real spec, far below what hurts. A YAML alias
# repeated inside aliases ("billion laughs") expands exponentially, and deep nesting exhausts
# the interpreter's stack; both are refused with a located message before any work is done.
MAX_SPEC_BYTES = 1 << 20
MAX_SPEC_VALUES = 100_000
MAX_SPEC_DEPTH = 50
MAX_INTEGER = 10**15  # larger counts, steps or limits are mistakes, not intentions
MAX_DURATION = timedelta(days=36500)  # ages and durations: a century covers every real run


class _TooBig(Exception):
    def __init__(self, node: yaml.Node, message: str):
        super().__init__(message)
        self.node = node
        self.message = message


def compose(text: str, file: str) -> Located:
    def fail(line: int, col: int, message: str) -> SpecError:
        return SpecError([SpecProblem(file, line, col, "", message)])

    if "\x00" in text:
        line = text.count("\n", 0, text.index("\x00")) + 1
        raise fail(line, 1, "contains a NUL character (\\x00): a spec is text; remove it")
    try:
        loader, root = _root_node(text, _FAST_LOADER)
    except yaml.YAMLError:
        # libyaml refuses some specs the pure-Python parser reads (an escaped lone surrogate,
        # which the checks below then name) and words its errors less plainly: ask it too.
        loader = None
    if loader is None:
        try:
            loader, root = _root_node(text, yaml.SafeLoader)
        except yaml.MarkedYAMLError as exc:
            mark = exc.problem_mark or exc.context_mark
            line, col = (mark.line + 1, mark.column + 1) if mark else (1, 1)
            problem = exc.problem or str(exc)
            raise fail(line, col, f"not valid YAML: {problem}") from None
        except yaml.YAMLError as exc:  # the reader's errors (special characters) carry no mark
            raise fail(1, 1, f"not valid YAML: {' '.join(str(exc).split())}") from None
        except RecursionError:
            message = f"not valid here: nested more than {MAX_SPEC_DEPTH} levels deep"
            raise fail(1, 1, message) from None
    located = Located(None, {}, {}, [])
    if root is None:
        located.value_marks[()] = (1, 1)
        return located
    budget = [MAX_SPEC_VALUES]
    try:
        located.data = _build(root, (), loader, located, budget, ())
    except _TooBig as exc:
        mark = exc.node.start_mark
        raise fail(mark.line + 1, mark.column + 1, exc.message) from None
    except RecursionError:
        raise fail(1, 1, f"not valid here: nested more than {MAX_SPEC_DEPTH} levels deep") from None
    return located


def _root_node(text: str, loader_type: type[yaml.SafeLoader]) -> tuple[yaml.SafeLoader, Any]:
    """The loader (its marks are needed later) and the document's root node."""
    loader = loader_type(text)  # its reader refuses control characters right here
    try:
        return loader, loader.get_single_node()
    finally:
        loader.dispose()


def _build(
    node: yaml.Node,
    path: SpecPath,
    loader: yaml.SafeLoader,
    out: Located,
    budget: list[int],
    within: tuple[int, ...],
) -> Any:
    """Plain data from a node, refusing self-reference, depth and expansion past the limits."""
    if id(node) in within:
        raise _TooBig(node, "a YAML alias refers to the value that contains it (a loop)")
    budget[0] -= 1
    if budget[0] < 0:
        raise _TooBig(
            node,
            f"the spec expands to more than {MAX_SPEC_VALUES:,} values "
            "(YAML aliases repeated inside aliases?)",
        )
    if len(within) > MAX_SPEC_DEPTH:
        raise _TooBig(node, f"nested more than {MAX_SPEC_DEPTH} levels deep")
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and node.tag not in _PLAIN_TAGS:
        raise _TooBig(node, f"the YAML tag {node.tag!r} is not allowed: a spec is plain data")
    inside = (*within, id(node))
    out.value_marks[path] = (node.start_mark.line + 1, node.start_mark.column + 1)
    if isinstance(node, yaml.MappingNode):
        _flatten(loader, node)
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                raise _TooBig(key_node, "a key must be a plain name, not a list or mapping")
            key = _scalar(loader, key_node)
            if not isinstance(key, str):
                key = str(key)
            child = (*path, key)
            key_mark = (key_node.start_mark.line + 1, key_node.start_mark.column + 1)
            if key in result:
                out.duplicates.append((child, key_mark))
            out.key_marks[child] = key_mark
            result[key] = _build(value_node, child, loader, out, budget, inside)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [
            _build(item, (*path, i), loader, out, budget, inside)
            for i, item in enumerate(node.value)
        ]
    return _scalar(loader, node)


def _flatten(loader: yaml.SafeLoader, node: yaml.MappingNode) -> None:
    """YAML merge keys (`<<: *base`), with their errors located."""
    try:
        loader.flatten_mapping(node)
    except yaml.MarkedYAMLError as exc:
        raise _TooBig(node, f"not valid YAML: {exc.problem or exc}") from None


def _scalar(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    """One plain value; an unknown tag (`!!python/...`) or an impossible date is a located error.

    Strings must be storable text: no unpaired surrogate (it cannot be written to any file).
    """
    try:
        value = loader.construct_object(node, deep=True)
    except yaml.MarkedYAMLError as exc:
        raise _TooBig(node, f"not valid here: {exc.problem or exc}") from None
    except (ValueError, OverflowError) as exc:
        raise _TooBig(node, f"not a valid value ({exc}): quote it to use it as text") from None
    if isinstance(value, str) and _SURROGATE.search(value):
        raise _TooBig(node, "contains an unpaired surrogate (\\ud800-\\udfff), which is not text")
    return value


_SURROGATE = re.compile("[\ud800-\udfff]")
_PLAIN_TAGS = {"tag:yaml.org,2002:map", "tag:yaml.org,2002:seq"}
