"""Deadlines: every wait in dumpbed has one, and a timeout names what it was waiting for."""
from __future__ import annotations

import time

from harness.errors import DumpbedError


class WaitTimeout(DumpbedError):
    """A bounded wait ran out. The message names what was awaited and for how long."""


class Deadline:
    def __init__(self, seconds: float, what: str):
        self.seconds = seconds
        self.what = what
        self._end = time.monotonic() + seconds

    def remaining(self) -> float:
        return max(0.0, self._end - time.monotonic())

    @property
    def expired(self) -> bool:
        return time.monotonic() >= self._end

    def timeout(self) -> WaitTimeout:
        return WaitTimeout(f"timed out after {self.seconds:g}s waiting for {self.what}")

    def check(self) -> None:
        if self.expired:
            raise self.timeout()
