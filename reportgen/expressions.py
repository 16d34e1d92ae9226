"""Derived metrics: a tiny arithmetic language over aliases, never evaluated as Python.

`gap: {expr: "val_loss - train_loss"}` is parsed with Python's `ast` only to get a tree; the tree
is checked against a short allow-list (numbers, alias names, + - * / ** and unary minus, and the
functions in FUNCTIONS) and then computed node by node over NumPy arrays.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Mapping

import numpy as np

FUNCTIONS: dict[str, Callable[..., np.ndarray]] = {
    "abs": np.abs,
    "log": np.log,
    "log10": np.log10,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "min": np.minimum,
    "max": np.maximum,
}

_OPERATORS: dict[type[ast.operator], Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    ast.Add: np.add,
    ast.Sub: np.subtract,
    ast.Mult: np.multiply,
    ast.Div: np.divide,
    ast.Pow: np.power,
}


class ExpressionError(ValueError):
    """The expression uses something outside the allowed language."""


def _tree(text: str) -> ast.expr:
    try:
        return ast.parse(text, mode="eval").body
    except SyntaxError as exc:
        raise ExpressionError(f"not a valid expression: {exc.msg}") from None


def _check(node: ast.expr, used: set[str]) -> None:
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise ExpressionError(f"only numbers may appear as constants, not {node.value!r}")
    elif isinstance(node, ast.Name):
        used.add(node.id)
    elif isinstance(node, ast.BinOp):
        if type(node.op) not in _OPERATORS:
            raise ExpressionError("only + - * / ** are allowed between values")
        _check(node.left, used)
        _check(node.right, used)
    elif isinstance(node, ast.UnaryOp):
        if not isinstance(node.op, (ast.USub, ast.UAdd)):
            raise ExpressionError("only unary minus is allowed")
        _check(node.operand, used)
    elif isinstance(node, ast.Call):
        if not isinstance(node.func, ast.Name) or node.func.id not in FUNCTIONS:
            allowed = ", ".join(sorted(FUNCTIONS))
            raise ExpressionError(f"only these functions may be called: {allowed}")
        if node.keywords or not node.args:
            raise ExpressionError(f"{node.func.id}() takes positional arguments only")
        for arg in node.args:
            _check(arg, used)
    elif isinstance(node, ast.Attribute):
        raise ExpressionError("attribute access (a.b) is not allowed in expressions")
    elif isinstance(node, ast.Subscript):
        raise ExpressionError("indexing (a[b]) is not allowed in expressions")
    else:
        raise ExpressionError(f"{type(node).__name__} is not allowed in expressions")


def parse_expression(text: str) -> set[str]:
    """Check an expression and return the alias names it uses."""
    used: set[str] = set()
    _check(_tree(text), used)
    return used


def evaluate(text: str, columns: Mapping[str, np.ndarray]) -> np.ndarray:
    """Compute an expression over equally long float arrays, one per alias it uses."""

    def value(node: ast.expr) -> np.ndarray:
        if isinstance(node, ast.Constant):
            assert isinstance(node.value, (int, float))
            return np.asarray(float(node.value))
        if isinstance(node, ast.Name):
            return columns[node.id]
        if isinstance(node, ast.BinOp):
            return _OPERATORS[type(node.op)](value(node.left), value(node.right))
        if isinstance(node, ast.UnaryOp):
            operand = value(node.operand)
            return np.negative(operand) if isinstance(node.op, ast.USub) else operand
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        return FUNCTIONS[node.func.id](*(value(arg) for arg in node.args))

    tree = _tree(text)
    _check(tree, set())
    with np.errstate(all="ignore"):
        return np.asarray(value(tree), dtype=float)
