"""Derived metrics and row filters: a tiny language over aliases, never evaluated as Python.

`gap: {expr: "val_loss - train_loss"}` is parsed with Python's `ast` only to get a tree; the tree
is checked against a short allow-list (numbers, alias names, + - * / ** and unary minus, and the
functions in FUNCTIONS) and then computed node by node over NumPy arrays.

Row filters (`where: "length < 10 and step >= 100"`) are conditions: comparisons between such
values, joined with `and`, `or` and `not`. A comparison with NaN (a value that is missing or was
logged as NaN) is false, except `!=`, which is true, as in IEEE arithmetic.
"""

from __future__ import annotations

import ast
import functools
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import numpy as np

# The language, as names of numpy ufuncs. Checking an expression (which `reportgen validate`
# does) needs only the names; numpy is imported when an expression is evaluated.
FUNCTIONS: dict[str, str] = {
    "abs": "abs",
    "log": "log",
    "log10": "log10",
    "exp": "exp",
    "sqrt": "sqrt",
    "min": "minimum",
    "max": "maximum",
}
# How many arguments each function takes: (fewest, most); None: no upper bound.
ARITY: dict[str, tuple[int, int | None]] = {
    "abs": (1, 1),
    "log": (1, 1),
    "log10": (1, 1),
    "exp": (1, 1),
    "sqrt": (1, 1),
    "min": (2, None),
    "max": (2, None),
}
# An expression is a formula over aliases, not a program: these bound the work it can ask for.
MAX_EXPRESSION_CHARS = 2000
MAX_EXPRESSION_NODES = 400
MAX_CONSTANT = 1e300

_OPERATORS: dict[type[ast.operator], str] = {
    ast.Add: "add",
    ast.Sub: "subtract",
    ast.Mult: "multiply",
    ast.Div: "divide",
    ast.Pow: "power",
}

_COMPARISONS: dict[type[ast.cmpop], str] = {
    ast.Lt: "less",
    ast.LtE: "less_equal",
    ast.Gt: "greater",
    ast.GtE: "greater_equal",
    ast.Eq: "equal",
    ast.NotEq: "not_equal",
}


class ExpressionError(ValueError):
    """The expression uses something outside the allowed language."""


def _normal(text: str) -> str:
    """One line: a YAML block scalar may break an expression over several lines."""
    return " ".join(text.split())


def _tree(text: str) -> ast.expr:
    normal = _normal(text)
    if len(normal) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(
            f"the expression is {len(normal):,} characters long; at most "
            f"{MAX_EXPRESSION_CHARS:,} are allowed (split it into several aliases)"
        )
    try:
        tree = ast.parse(normal, mode="eval").body
    except SyntaxError as exc:
        raise ExpressionError(f"not a valid expression: {exc.msg}") from None
    except (RecursionError, MemoryError, ValueError):
        raise ExpressionError("the expression is nested too deeply") from None
    if sum(1 for _ in ast.walk(tree)) > MAX_EXPRESSION_NODES:
        raise ExpressionError(
            f"the expression has more than {MAX_EXPRESSION_NODES} parts; "
            "split it into several aliases"
        )
    return tree


class _Checker:
    """Walks a tree and refuses anything outside the language, quoting the offending part."""

    def __init__(self, text: str):
        self.text = _normal(text)
        self.used: set[str] = set()

    def fragment(self, node: ast.AST) -> str:
        segment = ast.get_source_segment(self.text, node) or ""
        return f" ('{segment}')" if segment else ""

    def value(self, node: ast.expr) -> None:
        """A number-valued expression."""
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
                raise ExpressionError(f"only numbers may appear as constants, not {node.value!r}")
            if not (abs(node.value) <= MAX_CONSTANT and math.isfinite(abs(node.value))):
                raise ExpressionError(
                    f"a constant must be a finite number of at most {MAX_CONSTANT:g}"
                    f"{self.fragment(node)}"
                )
        elif isinstance(node, ast.Name):
            self.used.add(node.id)
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _OPERATORS:
                raise ExpressionError(
                    f"only + - * / ** are allowed between values{self.fragment(node)}"
                )
            self.value(node.left)
            self.value(node.right)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            self.value(node.operand)
        elif isinstance(node, ast.Call):
            self.call(node)
        elif isinstance(node, ast.Attribute):
            raise ExpressionError(
                f"attribute access (a.b) is not allowed in expressions{self.fragment(node)}"
            )
        elif isinstance(node, ast.Subscript):
            raise ExpressionError(
                f"indexing (a[b]) is not allowed in expressions{self.fragment(node)}"
            )
        elif isinstance(node, (ast.Compare, ast.BoolOp)) or (
            isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)
        ):
            raise ExpressionError(
                f"a condition is not allowed where a number is expected{self.fragment(node)}"
            )
        else:
            raise ExpressionError(
                f"{type(node).__name__} is not allowed in expressions{self.fragment(node)}"
            )

    def call(self, node: ast.Call) -> None:
        allowed = ", ".join(sorted(FUNCTIONS))
        if not isinstance(node.func, ast.Name):
            raise ExpressionError(
                f"only these functions may be called: {allowed}{self.fragment(node.func)}"
            )
        if node.func.id not in FUNCTIONS:
            raise ExpressionError(
                f"'{node.func.id}' is not an allowed function; only these may be called: {allowed}"
            )
        if node.keywords or not node.args or any(isinstance(a, ast.Starred) for a in node.args):
            raise ExpressionError(f"{node.func.id}() takes positional arguments only")
        fewest, most = ARITY[node.func.id]
        if len(node.args) < fewest or (most is not None and len(node.args) > most):
            wanted = (
                "one argument"
                if most == 1
                else f"at least {fewest} arguments"
                if most is None
                else f"{fewest} to {most} arguments"
            )
            raise ExpressionError(
                f"{node.func.id}() takes {wanted}, got {len(node.args)}{self.fragment(node)}"
            )
        for arg in node.args:
            self.value(arg)

    def condition(self, node: ast.expr) -> None:
        """A true/false expression: comparisons joined by and / or / not."""
        if isinstance(node, ast.Compare):
            for op in node.ops:
                if type(op) not in _COMPARISONS:
                    raise ExpressionError(
                        f"only < <= > >= == != may compare values{self.fragment(node)}"
                    )
            self.value(node.left)
            for right in node.comparators:
                self.value(right)
        elif isinstance(node, ast.BoolOp):
            for operand in node.values:
                self.condition(operand)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            self.condition(node.operand)
        else:
            raise ExpressionError(
                "expected a condition such as 'length < 10' (comparisons joined by and, or, not)"
                f"{self.fragment(node)}"
            )


def parse_expression(text: str) -> set[str]:
    """Check an expression and return the alias names it uses (at least one: an expression of
    constants alone would be the same number at every step, which no metric is)."""
    checker = _Checker(text)
    checker.value(_tree(text))
    if not checker.used:
        raise ExpressionError(
            "the expression uses no alias; a derived metric is computed from other aliases "
            "(e.g. 'val_loss - train_loss')"
        )
    return checker.used


def parse_condition(text: str) -> set[str]:
    """Check a row-filter condition and return the names it uses."""
    checker = _Checker(text)
    checker.condition(_tree(text))
    return checker.used


def _value(node: ast.expr, columns: Mapping[str, np.ndarray]) -> np.ndarray:
    import numpy as np

    if isinstance(node, ast.Constant):
        assert isinstance(node.value, (int, float))
        return np.asarray(float(node.value))
    if isinstance(node, ast.Name):
        return columns[node.id]
    if isinstance(node, ast.BinOp):
        operator = getattr(np, _OPERATORS[type(node.op)])
        return operator(_value(node.left, columns), _value(node.right, columns))
    if isinstance(node, ast.UnaryOp):
        operand = _value(node.operand, columns)
        return np.negative(operand) if isinstance(node.op, ast.USub) else operand
    assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    function = getattr(np, FUNCTIONS[node.func.id])
    values = [_value(arg, columns) for arg in node.args]
    # min/max fold over any number of values: numpy's own would take a third as its output.
    return functools.reduce(function, values) if len(values) > 1 else function(*values)


def _truth(node: ast.expr, columns: Mapping[str, np.ndarray]) -> np.ndarray:
    import numpy as np

    if isinstance(node, ast.Compare):
        result = np.asarray(True)
        left = _value(node.left, columns)
        for op, comparator in zip(node.ops, node.comparators, strict=True):
            right = _value(comparator, columns)
            compare = getattr(np, _COMPARISONS[type(op)])
            result = np.logical_and(result, compare(left, right))
            left = right
        return result
    if isinstance(node, ast.BoolOp):
        parts = [_truth(v, columns) for v in node.values]
        join = np.logical_and if isinstance(node.op, ast.And) else np.logical_or
        result = parts[0]
        for part in parts[1:]:
            result = join(result, part)
        return result
    assert isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not)
    return np.logical_not(_truth(node.operand, columns))


def evaluate(text: str, columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Compute an expression over equally long float arrays, one per alias it uses."""
    import numpy as np

    tree = _tree(text)
    _Checker(text).value(tree)
    with np.errstate(all="ignore"):
        return np.asarray(_value(tree, columns), dtype=float)


def evaluate_condition(text: str, columns: Mapping[str, np.ndarray], rows: int) -> np.ndarray:
    """Which of `rows` rows satisfy a condition over equally long float arrays."""
    import numpy as np

    tree = _tree(text)
    _Checker(text).condition(tree)
    with np.errstate(all="ignore"):
        truth = np.asarray(_truth(tree, columns), dtype=bool)
    return np.broadcast_to(truth, (rows,)).copy()
