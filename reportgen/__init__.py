"""reportgen: declarative reports about Weights & Biases training runs.

from reportgen import build
result = build("specs/demo.yaml")
print(result.report.selections, result.files, result.exit_code)

`build` and `__version__` are loaded on first use: the command line starts with nothing heavy
imported, so its signal handlers are in place before pandas, pyarrow or wandb load.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reportgen.build import BuildResult, build

__all__ = ["BuildResult", "__version__", "build"]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("reportgen")
    except PackageNotFoundError:  # running from a source tree that is not installed
        return "0.0.0+source"


def __getattr__(name: str) -> Any:
    if name == "__version__":
        value: Any = _version()
    elif name in ("build", "BuildResult"):
        from importlib import import_module

        # The submodule's import binds `reportgen.build` to the module; the function replaces it.
        value = getattr(import_module("reportgen.build"), name)
    else:
        raise AttributeError(f"module 'reportgen' has no attribute {name!r}")
    globals()[name] = value
    return value
