"""How a build stops early: Ctrl-C, SIGTERM and the build's deadline (`--timeout`).

The CLI installs these handlers first thing, before the heavy imports (pandas, pyarrow, wandb take
most of a second), so that a signal at any moment gives one line and a documented exit code,
never a traceback. SIGTERM is what CI runners and `timeout` send: it is handled exactly like
Ctrl-C. A second signal while the first is being handled ends the process at once.

The deadline is a real-time timer (SIGALRM): it interrupts the main thread wherever it waits (a
socket, a lock, a worker pool) and unwinds the build through the same path as a signal, so the
outputs are never left half-written.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator, Mapping
from types import FrameType

from reportgen.errors import BuildTimeout, Stopped

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
CI_TIMEOUT_SECONDS = 3600.0  # when CI is set: a stuck build fails in an hour, not in 6 (GitHub)

# The stop signal whose handler has run (0: none). Its exception can be lost where the signal
# lands: in code that swallows exceptions (a `__del__`, a garbage-collector callback) or wraps
# them (a class's `__set_name__` during an import makes it a RuntimeError). So the CLI asks
# `stopped_by()` of any error, and the build `raise_if_stopped()` before it commits its outputs.
_stopped_by = 0


def _on_stop_signal(signum: int, frame: FrameType | None) -> None:
    global _stopped_by
    if _stopped_by:  # the user insists: no more unwinding
        sys.stderr.write(f"\n{signal.Signals(signum).name} again: stopping at once\n")
        sys.stderr.flush()
        os._exit(128 + signum)
    _stopped_by = signum
    raise Stopped(signum)


def stopped_by() -> int:
    """The stop signal received since the handlers were installed (0: none)."""
    return _stopped_by


def install_stop_handlers() -> None:
    """SIGINT and SIGTERM raise `Stopped` in the main thread (no-op in other threads)."""
    global _stopped_by
    if threading.current_thread() is not threading.main_thread():
        return
    multiprocessing = sys.modules.get("multiprocessing")
    if multiprocessing is not None and multiprocessing.parent_process() is not None:
        # A worker process (spawn re-imports the console script): Ctrl-C reaches the whole
        # process group, and the parent, not each worker, decides what it means.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        return
    _stopped_by = 0
    for signum in STOP_SIGNALS:
        signal.signal(signum, _on_stop_signal)


def stop_message(stopped: Stopped) -> str:
    """The one line a stopped command prints."""
    return "interrupted" if stopped.signum == signal.SIGINT else "terminated (SIGTERM)"


def restore_stop_handlers() -> None:
    """Python's defaults again (for callers such as tests that run `main` in-process)."""
    global _stopped_by
    if threading.current_thread() is not threading.main_thread():
        return
    _stopped_by = 0
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def default_timeout(env: Mapping[str, str]) -> float | None:
    """No deadline on a workstation; an hour in CI (CI=true, as every major CI service sets)."""
    ci = env.get("CI", "").strip().lower()
    return CI_TIMEOUT_SECONDS if ci and ci not in ("0", "false", "no") else None


# The message of a deadline that has passed. The timer's exception can be lost as a stop
# signal's can (see `_stopped_by`), so the build also asks `raise_if_stopped()` before it
# commits its outputs.
_passed: list[str] = []


@contextlib.contextmanager
def deadline(seconds: float | None, what: str = "the build") -> Iterator[None]:
    """Raise BuildTimeout in the main thread when `seconds` pass; None or 0: no deadline."""
    usable = seconds and threading.current_thread() is threading.main_thread()
    if not usable:
        yield
        return
    assert seconds is not None
    message = (
        f"{what} did not finish within {format_seconds(seconds)} (--timeout); "
        "nothing was half-written. Raise --timeout, or check the data source "
        "(a slow or rate-limiting server)"
    )

    def expired(signum: int, frame: FrameType | None) -> None:
        signal.setitimer(signal.ITIMER_REAL, 0)
        _passed.append(message)
        raise BuildTimeout(message)

    _passed.clear()
    previous = signal.signal(signal.SIGALRM, expired)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
        raise_if_past_deadline()
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        _passed.clear()


def raise_if_past_deadline() -> None:
    """BuildTimeout if the deadline passed, even where its exception was swallowed."""
    if _passed:
        raise BuildTimeout(_passed[0])


def raise_if_stopped() -> None:
    """Stopped if a stop signal came, BuildTimeout if the deadline passed: even where their
    exception was lost on its way up."""
    if _stopped_by:
        raise Stopped(_stopped_by)
    raise_if_past_deadline()


def format_seconds(seconds: float) -> str:
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds / 3600:g}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds / 60:g}m"
    return f"{seconds:g}s"
