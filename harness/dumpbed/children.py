"""Processes the harness starts (QEMU, the network dump's server, the validation's sweep) die
with it: a harness killed outright (SIGKILL, a CI timeout) leaves none of them behind."""
from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(None, use_errno=True)


def die_with_parent(parent: int) -> None:
    """In a child, before it runs anything of its own (a preexec_fn, or right after a fork):
    SIGKILL it when the thread that started it dies. `parent`: that process's PID, taken before
    the fork; a parent already gone by the time the child asks (the signal would never come)
    ends the child at once. Start children from a thread that outlives them (the main thread
    does)."""
    _LIBC.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)
