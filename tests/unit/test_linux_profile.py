"""The linux-kdump guest profile (harness/dumpbed/guests/profiles.py, docs/linux-kdump.md) and the
pure parts of its judge (harness/dumpbed/oracles/vmcore_run.py), without QEMU."""
from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

from dumpbed.errors import DumpbedError
from dumpbed.guests import profiles
from dumpbed.machine import accel, resultchan
from dumpbed.oracles import vmcore_run
from dumpbed.scenario import disks, faults
from dumpbed.scenario.spec import Scenario, check_scenario
from dumpbed.units import MiB


def _linux(tmp_path: Path, **kw) -> Scenario:
    return Scenario(out_dir=tmp_path / "run", profile="linux-kdump", **{"memory_bytes": 512 * MiB, **kw})


def test_a_linux_run_is_checked_like_any_other(tmp_path):
    check_scenario(_linux(tmp_path, disk="virtio-scsi", crash="sysrq-c", level=31, faults=["eio-at=20"],
                          guest_args=["dumpbed.format=elf", "quiet"]))


@pytest.mark.parametrize("kw, words", [
    (dict(disk="nvme"), ["--disk nvme", "no nvme module"]),
    (dict(disk="virtio-net"), ["--disk virtio-net", "block device"]),
    (dict(crash="page-fault"), ["--crash page-fault", "sysrq-c"]),
    (dict(faults=["reset"]), ["--fault reset", "boots again"]),
    (dict(faults=["unplug"]), ["--fault unplug", "I/O waits are Linux's own"]),
    (dict(faults=["stale"]), ["--fault stale", "dumpbed's format"]),
    (dict(level=32), ["--level 32", "0..31"]),
    (dict(memory_bytes=256 * MiB), ["--memory 256M", "512M", "crashkernel"]),
    (dict(workload=True), ["--workload", "linux-kdump"]),
    (dict(secondary="virtio-blk"), ["--secondary", "one dump file"]),
    (dict(components="all"), ["--components"]),
    (dict(guest_args=["dumpbed.runid=1"]), ["dumpbed.runid", "dumpbed sets"]),
    (dict(guest_args=["crashkernel=64M"]), ["crashkernel", "dumpbed sets"]),
])
def test_what_the_guest_does_not_have_is_refused_naming_why(tmp_path, kw, words):
    with pytest.raises(DumpbedError) as err:
        check_scenario(_linux(tmp_path, **kw))
    for word in words:
        assert word in str(err.value)


def test_dumpbeds_guest_keeps_its_own_crash_kinds_and_every_disk_and_fault(tmp_path):
    with pytest.raises(DumpbedError, match="sysrq-c"):
        check_scenario(Scenario(out_dir=tmp_path, crash="sysrq-c"))
    assert all(profiles.DUMPBED.disk_problem(k) is None for k in disks.DISKS.values())
    assert all(profiles.DUMPBED.fault_problem(k) is None for k in faults.KINDS.values())
    applies = [k.name for k in faults.KINDS.values() if profiles.LINUX_KDUMP.fault_problem(k) is None]
    assert applies == ["eio-at", "enospc", "pause", "kill", "slow"]


def test_the_command_line_carries_the_level_pattern_and_run_id():
    scenario = SimpleNamespace(level=3, memory_bytes=1 << 30)
    line = profiles.LINUX_KDUMP.cmdline(scenario, None, [], "0123456789abcdef" * 2, None, 0)
    assert line.split() == ["console=ttyS0", "crashkernel=128M", "dumpbed.level=3", "dumpbed.pattern=64M",
                            "dumpbed.runid=0123456789abcdef", "dumpbed.exit=debug-exit"]
    assert profiles.LINUX_KDUMP.dump_needs(scenario) == 64 * MiB


def test_auto_takes_tcg_where_kvm_cannot_run_the_guest(monkeypatch):
    monkeypatch.setattr(accel, "kvm_usable", lambda: (True, "works"))
    assert accel.choose("auto", None) == "kvm"
    assert accel.choose("auto", "PV-mode") == "tcg"
    with pytest.raises(DumpbedError, match="KVM is not usable: PV-mode"):
        accel.choose("kvm", "PV-mode")
    assert accel.choose("tcg", None) == "tcg"


# -- the judge's pure parts ---------------------------------------------------------------------

def _done(text: str) -> resultchan.ResultLine:
    return resultchan.parse_line("DUMPBED DONE " + text)


@pytest.mark.parametrize("done, expect, status, ok", [
    ("status=complete format=kdump", "complete", 67, True),
    ("status=complete format=kdump", "complete", 69, False),  # QEMU's status says otherwise
    ("status=complete format=kdump", "failed", 67, False),
    ("status=failed error=1 stage=makedumpfile", "failed", 69, True),
    ("status=failed error=0 stage=makedumpfile", "failed", 69, False),  # a failure without its error
    ("status=failed error=0 stage=find", "failed", 69, True),
    (None, "complete", 67, False),  # no DONE
    (None, None, -9, True),  # killed: no DONE, as expected
    ("status=complete format=kdump", None, -9, False),  # a DONE after a kill cannot be
])
def test_the_guests_word_against_the_run(done, expect, status, ok):
    check = vmcore_run.check_linux_result(_done(done) if done else None, expect, status)
    assert check.ok is ok, check.detail


def test_a_cut_dump_may_read_partial_or_corrupt_and_only_a_cut_one():
    cut = {"outcome": "partial", "cut": True}
    assert vmcore_run.cut_readings("partial", cut) == ("partial", "corrupt")
    assert vmcore_run.cut_readings("none", dict(cut, outcome="none")) == ("none", "corrupt")
    assert vmcore_run.cut_readings("complete", {"outcome": "complete"}) == ()
    assert vmcore_run.cut_readings("partial", {"outcome": "partial"}) == ()  # declared, not cut


def test_crashkernel_and_the_console_panic_are_read(tmp_path):
    ready = resultchan.parse_line("DUMPBED READY crashkernel=0x2b000000-0x32ffffff ram=1")
    assert vmcore_run.crashkernel(ready) == [(0x2B000000, 0x33000000)]
    assert vmcore_run.crashkernel(None) == []
    (tmp_path / "console.log").write_text("x\n[ 1.0] Kernel panic - not syncing: sysrq triggered crash\r\n"
                                          "DUMPBED CAPTURE kernel=6.1\n[ 0.1] Kernel panic - not syncing: other\n")
    assert vmcore_run.console_panic(tmp_path) == "Kernel panic - not syncing: sysrq triggered crash"
    (tmp_path / "console.log").write_text("no panic here\n")
    assert vmcore_run.console_panic(tmp_path) is None
