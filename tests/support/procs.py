"""Processes and ports, for tests that must see that what they started is gone (QEMU, sshd and
everything under it) or need a port nothing listens on. Linux only: it reads /proc.

Imported as tests.support.procs by the integration tests and as plain `procs` by the unit tests
(tests/unit/conftest.py puts tests/support on sys.path)."""
from __future__ import annotations

import os
import socket
from pathlib import Path


def alive(pid: int) -> bool:
    """Running, and not a zombie waiting for its parent: a zombie still answers kill(pid, 0),
    so a test waiting for a process to end must read its state (/proc/PID/stat)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"  # the state follows the command, which may hold ") "


def cpu_seconds(pid: int) -> float:
    """A process's user + system CPU time so far, all its threads (/proc/PID/stat)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # from the state on: utime and stime are 11 and 12
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    """A 127.0.0.1 port of that kind (TCP, or socket.SOCK_DGRAM for UDP) free a moment ago, for
    a server to listen on or a client to find nobody at. Another process may take it before the
    caller binds it (Sshd.start retries)."""
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _children() -> dict[int, list[int]]:
    """ppid -> pids of every live process (/proc)."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        tree.setdefault(ppid, []).append(int(entry.name))
    return tree


def descendants(pid: int) -> list[int]:
    """pid and every process under it, parents first: what to signal, by PID, so that a process
    tree (sshd, its sessions and what they run) ends whole and nothing else is touched."""
    tree, found, todo = _children(), [], [pid]
    while todo:
        p = todo.pop(0)
        found.append(p)
        todo.extend(tree.get(p, []))
    return found
