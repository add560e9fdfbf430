"""Deadlines: every wait in dumpbed has one, and a timeout names what it was waiting for.

Waits paced by the guest are scaled for the accelerator and the guest's size by the caller
(run.timeouts: TCG x4); waits on QEMU itself (QMP greeting and commands, shutdown) are not.
A wait that can no longer succeed (QEMU exited, the console closed) ends at once with
WaitAborted rather than running out its deadline."""
from __future__ import annotations

import time

from dumpbed.errors import DumpbedError


class WaitTimeout(DumpbedError):
    """A bounded wait ran out. The message names what was awaited and for how long."""


class WaitAborted(WaitTimeout):
    """A wait ended early: what it waited for can no longer come (QEMU exited, a stream closed).
    `what` names what was awaited."""

    def __init__(self, message: str, what: str = ""):
        super().__init__(message)
        self.what = what


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

    def aborted(self, why: str) -> WaitAborted:
        return WaitAborted(f"{why} while waiting for {self.what}", self.what)

    def check(self) -> None:
        if self.expired:
            raise self.timeout()
