"""Whether worker processes can be forked here, and how many cores they may use.

Forked workers start in milliseconds, as they inherit this process's modules; spawned ones
import everything again. Fork is the safe default only on Linux (macOS and Windows spawn), so
elsewhere reportgen does the work in this process instead.
"""

from __future__ import annotations

import multiprocessing
import os
import sys


def can_fork() -> bool:
    return sys.platform == "linux" and "fork" in multiprocessing.get_all_start_methods()


def usable_cores() -> int:
    """The cores this process may run on (its affinity), else the machine's."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1
