"""Faults injected into the dump disk while the guest dumps (`dumpbed run --fault`).

A fault is data (a name, its parameter, what it does) plus what it changes in the topology.
`eio-at=N` puts a blkdebug node between the dump disk's raw format node and its file: the
N-th write request to reach the disk and every one after it fail with EIO, as a device that
dies mid-dump would. With a secondary dump device that is the restart scenario.
"""
from __future__ import annotations

from dataclasses import dataclass

from harness.errors import DumpbedError

EIO = 5
MAX_EIO_AT = 100_000  # one blkdebug set-state rule per write before the failing one

FAULTS = {
    "eio-at": "eio-at=N: the N-th write to the primary dump disk, and every later one, fails with EIO (blkdebug)",
}


@dataclass(frozen=True)
class Fault:
    name: str
    value: int

    def __str__(self) -> str:
        return f"{self.name}={self.value}"


def parse(spec: str) -> Fault:
    name, sep, value = spec.partition("=")
    if name not in FAULTS:
        raise DumpbedError(f"unknown fault {name!r} (available: {', '.join(FAULTS)})")
    if not sep or not value.isdigit() or not 1 <= int(value) <= MAX_EIO_AT:
        raise DumpbedError(f"fault {spec!r}: expected {name}=N with N from 1 to {MAX_EIO_AT}")
    return Fault(name, int(value))


def blkdebug_options(fault: Fault) -> dict:
    """The blkdebug node's rules (without its image).

    blkdebug counts nothing itself, but it has a state machine: every write_aio event moves
    state k to k+1 until state N, where the error rule is armed on each write from then on.
    """
    n = fault.value
    options: dict = {"driver": "blkdebug", "inject-error": [{"event": "write_aio", "state": n, "errno": EIO}]}
    if n > 1:  # QEMU refuses an empty set-state list
        options["set-state"] = [{"event": "write_aio", "state": k, "new_state": k + 1} for k in range(1, n)]
    return options
