"""reportgen: declarative reports about Weights & Biases training runs.

from reportgen import build
result = build("specs/demo.yaml")
print(result.report.selections, result.files, result.exit_code)

`build` is loaded on first use: the command line starts with nothing heavy imported, so its
signal handlers are in place before pandas, pyarrow or wandb load.
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reportgen.build import BuildResult, build

__all__ = ["BuildResult", "__version__", "build"]

# The package's version, read from here by the packaging too (pyproject.toml: tool.hatch.version).
# A constant, not importlib.metadata: that lookup cost 10-16 ms of every build (report.json's
# reportgen_version), after the runs were read, and 60 ms of `reportgen --version`.
__version__ = "0.1.0"

# `build` and `BuildResult` are loaded on first use: every command starts by importing this
# package, and `reportgen --help` should not wait for the pipeline's modules (they cost more
# than the whole of its start-up).
_LAZY = {"build": "reportgen.build", "BuildResult": "reportgen.build"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'reportgen' has no attribute {name!r}")


class _Package(types.ModuleType):
    """`reportgen.build` is the function, as it was when this package imported it eagerly.

    Importing the submodule of the same name (`from reportgen.build import ...`) makes Python
    bind it on the package; this keeps that binding from replacing the function.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "build" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
