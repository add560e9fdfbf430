"""Suite-wide guards: nothing the suite starts may outlive it."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from dumpbed.machine import qemu as machine


def _proc_stat(pid: str) -> tuple[str, int, str]:
    """(comm, ppid, state) of a process, from /proc/PID/stat."""
    stat = (Path("/proc") / pid / "stat").read_text()
    comm = stat[stat.index("(") + 1 : stat.rindex(")")]
    state, ppid = stat[stat.rindex(")") + 2 :].split()[:2]
    return comm, int(ppid), state


def _qemu_processes(basetemp: str) -> list[int]:
    """Live QEMU processes that are this pytest's children, or whose command line names the
    session's base temp dir (a QEMU of a `dumpbed run` subprocess, orphaned if it leaked)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            comm, ppid, state = _proc_stat(entry.name)
            if not comm.startswith("qemu-system") or state == "Z":
                continue
            cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, ValueError):
            continue
        # basetemp + "/": pytest-1 must not claim the QEMUs of a concurrent session's pytest-12
        if ppid == os.getpid() or basetemp.rstrip("/") + "/" in cmdline:
            found.append(int(entry.name))
    return found


@pytest.fixture(scope="session", autouse=True)
def nothing_left_behind(tmp_path_factory):
    """Fails the session if a QEMU process or a dumpbed temp dir survives the tests."""
    basetemp = str(tmp_path_factory.getbasetemp())
    yield
    leaked_pids = sorted(machine.LIVE_PIDS | set(_qemu_processes(basetemp)))
    leaked_dirs = [d for d in machine.SCRATCH_DIRS if os.path.exists(d)]
    for pid in leaked_pids:  # stop what we started, by PID, so the next run starts clean
        try:
            os.kill(pid, 9)
        except ProcessLookupError:
            pass
    assert not leaked_pids, f"QEMU processes left running: {leaked_pids}"
    assert not leaked_dirs, f"temp dirs left behind: {leaked_dirs}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    report = (yield).get_result()
    if report.when == "call":
        item.stash[_PASSED] = report.passed


_PASSED = pytest.StashKey[bool]()


@pytest.fixture(autouse=True)
def a_passing_tests_directory_goes_at_once(request, tmp_path):
    """A run directory holds GiBs (the disk image, its write log, the RAM snapshot): a passing
    test's goes when it ends, so the suite's disk use is that of its largest test, not of all of
    them; a failing test's stays for the post-mortem (pytest's basetemp, removed by make test).

    The scenario runs of the dumpbed_run fixture (the pytest plugin) need none of this: their
    directories follow --dumpbed-keep by themselves. This is for what else a test puts in its
    tmp_path: the runs of `dumpbed run` subprocesses (test_robustness, test_bad_input,
    test_session), the example suites pytester runs (test_plugin), a Machine's directory
    (test_machine_lifecycle), an exported core (test_export). With --dumpbed-keep all a passing
    test's tmp_path stays too."""
    yield
    if request.node.stash.get(_PASSED, False) and request.config.getoption("dumpbed_keep") != "all":
        shutil.rmtree(tmp_path, ignore_errors=True)
