from __future__ import annotations

import os

import pytest

from dumpbed.machine import accel


# The modules `make test` runs alone, after the others have run two at a time (`-m serial`):
# those whose timing is part of what they check, or that bring their own parallel work.
SERIAL = {
    "test_remote": "sshd hosts on this machine, a host's preparation timed, hosts killed under a cell",
    "test_matrix": "the matrix engine's own pytest-xdist workers and sshd hosts",
    "test_session": "a person's keys at a console, each answer awaited with a deadline",
    "test_progress_tty": "a pseudo-terminal's redraws",
    "test_robustness": "signals and QEMU deaths at chosen moments of a run",
}


# The longest modules (one to three minutes of test time each; the others take under one),
# first: `make test` hands the parallel phase's modules to its two workers whole, in collection
# order (--dist loadfile --no-loadscope-reorder), so neither starts a long one while the other
# runs out of work.
LONGEST_FIRST = ("test_faults", "test_linux_kdump", "test_every_disk_kind", "test_broken_guests", "test_facility")


def _module_rank(item) -> int:
    name = item.module.__name__.rsplit(".", 1)[-1]
    return LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST)


def pytest_collection_modifyitems(items):
    items.sort(key=_module_rank)  # stable: each module's own order kept
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)
            if item.module.__name__.rsplit(".", 1)[-1] in SERIAL:
                item.add_marker(pytest.mark.serial)


# `make matrix` (DUMPBED_FULL_MATRIX=1) runs the tests marked `matrix` whole; `make test` runs a
# sample of each sweep, and skips the tests that are too long for it (`matrix_only`).
FULL = bool(os.environ.get("DUMPBED_FULL_MATRIX"))
matrix_only = pytest.mark.skipif(not FULL, reason="too long for make test: make matrix runs it")


@pytest.fixture(scope="session")
def guest_kernel(dumpbed_guest):
    """The guest kernel: the dumpbed pytest plugin's (built once, or --dumpbed-kernel)."""
    return dumpbed_guest


def accel_params(long_under_tcg: bool = False):
    """Each integration scenario runs under TCG, and under KVM where /dev/kvm works. A scenario
    long under TCG (a 1 GiB dump: 20 s) runs its TCG half in `make test` only where KVM does not
    work, and always in `make matrix`."""
    usable, reason = accel.kvm_usable()
    tcg_marks = [pytest.mark.matrix, matrix_only] if long_under_tcg and usable else []
    return [
        pytest.param("tcg", id="tcg", marks=tcg_marks),
        pytest.param("kvm", id="kvm", marks=[pytest.mark.kvm] + ([] if usable else [pytest.mark.skip(
            reason=f"KVM not usable here: {reason}")])),
    ]


# -- remote hosts (tests/integration/test_remote.py): real sshd "hosts" on 127.0.0.1 ----------------

# Build output planted in the copied sources the wheel is built from: the wheel must carry none.
PLANTED = ("guest/build/junk.o", "guest/x.o")


@pytest.fixture(scope="session")
def dumpbed_wheel(tmp_path_factory):
    """dumpbed's wheel, built once from a copy of the sources with build output planted in it
    (setup.py is what must keep that out of the wheel)."""
    import shutil
    from pathlib import Path

    from dumpbed.remote import prepare

    checkout = Path(__file__).resolve().parents[2]
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    prepare.copy_sources(checkout, src)
    for junk in PLANTED:  # whether or not the checkout has a build
        (src / junk).parent.mkdir(parents=True, exist_ok=True)
        (src / junk).write_bytes(b"\x7fELF not a source")
    wheel = prepare.build_wheel(src, base / "dist")
    shutil.rmtree(src)  # the host must find the sources nowhere but in the wheel
    yield wheel
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def ssh_hosts(tmp_path_factory, dumpbed_wheel):
    """The session's SSH hosts (tests/support/sshd.py, SshHosts): ssh_hosts["alpha"] and "beta"
    (ssh_hosts.hosts), more by ssh_hosts.start_extra(name, kvm=...), hosts files naming them
    (ssh_hosts.hosts_file()), the wheel they are prepared from (ssh_hosts.wheel). Every host
    reuses the one venv the first prepare makes. Stopped and removed at the session's end."""
    import shutil

    from tests.support.sshd import SshHosts

    base = tmp_path_factory.mktemp("hosts")
    hosts = None
    try:
        hosts = SshHosts(base, dumpbed_wheel)
        yield hosts
    finally:
        if hosts is not None:
            hosts.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="session")
def prepared_hosts(ssh_hosts, dumpbed_wheel):
    """({"alpha": Prepared, "beta": Prepared}, how long each prepare took): alpha from nothing,
    beta reusing the venv alpha's made. A test that prepares the session's hosts some other way
    (a `dumpbed matrix --hosts`) takes this fixture first, so the first preparation is this one."""
    import time

    from dumpbed.remote import prepare

    prepared, seconds = {}, {}
    for sshd in ssh_hosts.hosts:
        name = sshd.name
        t0 = time.monotonic()
        prepared[name] = prepare.prepare(sshd.host, dumpbed_wheel, timeout=900)
        seconds[name] = time.monotonic() - t0
    return prepared, seconds
