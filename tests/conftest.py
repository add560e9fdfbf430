"""Suite-wide guards: nothing the suite starts may outlive it."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from harness import machine


def _qemu_children() -> list[int]:
    """QEMU processes whose parent is this pytest process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1 : stat.rindex(")")]
        ppid = int(stat[stat.rindex(")") + 2 :].split()[1])
        if ppid == os.getpid() and comm.startswith("qemu-system"):
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind():
    """Fails the session if a QEMU process or a dumpbed temp dir survives the tests."""
    yield
    leaked_pids = sorted(machine.LIVE_PIDS | set(_qemu_children()))
    leaked_dirs = [d for d in machine.SCRATCH_DIRS if os.path.exists(d)]
    for pid in leaked_pids:  # stop what we started, by PID, so the next run starts clean
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    assert not leaked_pids, f"QEMU processes left running: {leaked_pids}"
    assert not leaked_dirs, f"temp dirs left behind: {leaked_dirs}"
