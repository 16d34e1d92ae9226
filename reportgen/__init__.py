"""reportgen: declarative reports about Weights & Biases training runs.

from reportgen import build
result = build("specs/demo.yaml")
print(result.report.selections, result.files, result.exit_code)
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("reportgen")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+source"

from reportgen.build import BuildResult, build

__all__ = ["BuildResult", "__version__", "build"]
