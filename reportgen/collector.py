"""Python's cycle collector, run less often while a build reads, digests and renders runs.

Reading run files and digesting runs allocate objects by the million (decoded records,
arrays, frames) and keep most of them: the collector's default young-generation threshold
(700 allocations) made a cold build of 300 real run files run it about 360 times, a tenth of
that process's CPU, for next to no garbage. With a threshold of 10,000 it runs a few dozen
times and still collects cycles as they pile up, so memory stays bounded on any input. The
thresholds are restored afterwards: a program that calls `reportgen.build` keeps its own.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

YOUNG_THRESHOLD = 10_000  # allocations between young-generation collections (Python: 700)


@contextmanager
def fewer_collections() -> Iterator[None]:
    """Collections rarer (never more frequent than the caller had them) for the block."""
    before = gc.get_threshold()
    gc.set_threshold(max(before[0], YOUNG_THRESHOLD), *before[1:])
    try:
        yield
    finally:
        gc.set_threshold(*before)
