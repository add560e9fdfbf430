"""Deadlines: every wait in dumpbed has one, and a timeout names what it was waiting for.

Waits that depend on the guest's speed are scaled for the accelerator: TCG runs the guest
several times slower than KVM (for_accel)."""
from __future__ import annotations

import time

from harness.errors import DumpbedError

TCG_SLOWDOWN = 4.0  # how much longer a guest-paced wait may take under TCG than under KVM


def for_accel(seconds: float, accel: str) -> float:
    """A guest-paced deadline measured under KVM, scaled for `accel`."""
    return seconds * (TCG_SLOWDOWN if accel == "tcg" else 1.0)


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
