"""What a check function receives: one run, its signals, the preset, and the moment of the report."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np

from reportgen.health.registry import Check
from reportgen.health.roles import Signal, SignalResolver
from reportgen.render.text import format_number
from reportgen.report import Finding
from reportgen.runs import History, Run


@dataclass
class CheckContext:
    run: Run
    history: History
    now: datetime
    preset: str  # "rl" or "supervised": what `auto` decided for this run
    resolver: SignalResolver
    check: Check | None = None
    _by_suffix: dict[str, tuple[str, Any]] | None = field(default=None, repr=False)

    def steps(self) -> np.ndarray:
        """Every `_step` the run logged, ascending (the history computes it once)."""
        return self.history.steps()

    def signal(self, name: str) -> Signal | None:
        return self.resolver.get(name, self.preset)

    def signals(self, names: list[str] | None) -> list[Signal]:
        """The signals a `metrics` list names (None: every tracked metric), one per key."""
        if names is None:
            return self.resolver.tracked()
        found: list[Signal] = []
        for name in names:
            signal = self.signal(name)
            if signal is not None and all(s.key != signal.key for s in found):
                found.append(signal)
        return found

    def finding(
        self,
        params: dict[str, Any],
        message: str,
        *,
        signal: Signal | None = None,
        step: float | None = None,
        value: float | None = None,
        cause: str | None = None,
        next_step: str | None = None,
    ) -> Finding:
        """A finding of the running check; cause and next step default to the check's own."""
        assert self.check is not None
        return Finding(
            check=self.check.id,
            severity=params["severity"],
            message=message,
            metric=signal.name if signal else None,
            key=signal.key if signal else None,
            step=_plain(step),
            value=_plain(value),
            likely_cause=cause or self.check.cause,
            next_step=next_step or self.check.advice,
        )

    def config(self, *suffixes: str) -> tuple[str, Any] | None:
        """The first flattened config entry whose last part is one of `suffixes` (e.g. lr).

        The config is flattened and indexed by last part once per run: checks ask dozens of
        times."""
        if self._by_suffix is None:
            self._by_suffix = {}
            for key, value in self.run.flat_config().items():
                self._by_suffix.setdefault(key.rsplit(".", 1)[-1], (key, value))
        for suffix in suffixes:
            found = self._by_suffix.get(suffix)
            if found is not None:
                return found
        return None

    def setting_on(self, *suffixes: str) -> bool | None:
        """Whether a config switch or coefficient is on: True for true or a positive number,
        False for false, 0, null or "none", None when the config does not say."""
        found = self.config(*suffixes)
        if found is None:
            return None
        value = found[1]
        if isinstance(value, bool):
            return value
        if isinstance(value, (int, float)):
            return value > 0
        if value is None:
            return False
        return str(value).strip().lower() not in ("", "none", "null", "false", "off", "0")

    def config_text(self, *suffixes: str) -> str:
        """` (optim.lr is 2)` for advice, or nothing when the config does not say."""
        found = self.config(*suffixes)
        if found is None:
            return ""
        key, value = found
        if value is None:
            return f" ({key} is not set)"
        shown = format_number(value) if isinstance(value, (int, float)) else str(value)
        return f" ({key} is {shown})"


def _plain(number: float | None) -> float | None:
    """Plain numbers for the report (numpy scalars are not JSON); whole numbers as int."""
    if number is None:
        return None
    value = float(number)
    if np.isfinite(value) and value.is_integer() and abs(value) < 2**53:
        return int(value)
    return value


def num(value: float) -> str:
    """A number in a message: four significant digits, NaN and inf spelled out."""
    return format_number(float(value))
