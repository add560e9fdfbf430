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
    assert vmcore_run.cut_readings(cut) == ("partial", "corrupt")
    assert vmcore_run.cut_readings(dict(cut, outcome="none")) == ("none", "corrupt")
    assert vmcore_run.cut_readings({"outcome": "complete"}) == ()
    assert vmcore_run.cut_readings({"outcome": "partial"}) == ()  # declared, not cut


def test_crashkernel_and_the_console_panic_are_read(tmp_path):
    ready = resultchan.parse_line("DUMPBED READY crashkernel=0x2b000000-0x32ffffff ram=1")
    assert vmcore_run.crashkernel(ready) == [(0x2B000000, 0x33000000)]
    assert vmcore_run.crashkernel(None) == []
    (tmp_path / "console.log").write_text("x\n[ 1.0] Kernel panic - not syncing: sysrq triggered crash\r\n"
                                          "DUMPBED CAPTURE kernel=6.1\n[ 0.1] Kernel panic - not syncing: other\n")
    assert vmcore_run.console_panic(tmp_path) == "Kernel panic - not syncing: sysrq triggered crash"
    (tmp_path / "console.log").write_text("no panic here\n")
    assert vmcore_run.console_panic(tmp_path) is None


# -- the device's side of a Linux dump ------------------------------------------------------------

def _cmd(kind: str, number: int, offset: int, length: int, issued: float, finished: float):
    from dumpbed.oracles import dumpio

    return dumpio.DumpCommand(0, kind, number, offset, length, issued, finished, True)


def test_a_merged_write_log_entry_is_split_across_the_commands_it_tiles():
    """QEMU's virtio-blk merges adjacent requests into one (virtio_blk_submit_multireq): one
    log entry then covers several commands, each of which landed; one that only partly tiles
    them belongs to none."""
    from dumpbed.capture import blklog
    from dumpbed.oracles import dumpio

    a, b = _cmd("write", 1, 0, 8192, 1.0, 2.0), _cmd("write", 2, 8192, 4096, 1.0, 2.0)
    entry = blklog.Entry(index=3, offset=1 << 20, length=12288, flags=0, data_at=5 * 512)
    pieces = dumpio._merged(entry, 0, [a, b])
    assert [(w.number, p.offset, p.length, p.data_at) for w, p in pieces] == [
        (1, 1 << 20, 8192, 5 * 512), (2, (1 << 20) + 8192, 4096, 5 * 512 + 8192)]
    assert dumpio._merged(blklog.Entry(3, 1 << 20, 16384, 0, 0), 0, [a, b]) == []  # runs past b
    assert dumpio._merged(blklog.Entry(3, 1 << 20, 12288, 0, 0), 0, [b]) == []  # a is not there


def _io(commands, outside=()):
    from dumpbed.oracles import dumpio

    return dumpio.DeviceIO("primary", "vblk:x", 1 << 20, 64 << 20, 0.5, list(commands), None, [], list(outside))


def test_the_capture_kernels_writes_are_held_to_the_device_log():
    from dumpbed.capture import blklog, cmdlog

    def landed(c):
        c.entries.append(blklog.Entry(c.number, (1 << 20) + c.offset, c.length, 0, 0))
        return c

    done = resultchan.parse_line("DUMPBED DONE status=complete")
    write, flush = landed(_cmd("write", 1, 0, 4096, 1.0, 2.0)), _cmd("flush", 1, 0, 0, 2.5, 3.0)
    assert vmcore_run.check_vmcore_io(_io([write, flush]), None, done, 3.5, "complete").ok
    # DONE before the flush that makes the last write durable had finished
    c = vmcore_run.check_vmcore_io(_io([write, flush]), None, done, 2.8, "complete")
    assert not c.ok and "before the dump's last write" in c.detail
    c = vmcore_run.check_vmcore_io(_io([write]), None, done, 3.5, "complete")  # no flush at all
    assert not c.ok and "was flushed" in c.detail
    c = vmcore_run.check_vmcore_io(_io([]), None, done, 3.5, "complete")
    assert not c.ok and "wrote nothing" in c.detail
    c = vmcore_run.check_vmcore_io(_io([write, flush]), None, done, None, "complete")
    assert not c.ok and "no DONE line" in c.detail
    lost = _cmd("write", 2, 4096, 4096, 1.1, 2.1)
    c = vmcore_run.check_vmcore_io(_io([write, lost, flush]), None, done, 3.5, "complete")
    assert not c.ok and "1 of the dump's writes never reached the disk" in c.detail
    assert vmcore_run.check_vmcore_io(_io([write, lost, flush]), None, None, None, None).ok  # killed: may be lost
    stray = cmdlog.Command(9, "vblk:x", "write", "write", 0, 512, 1.2, 1.3)
    c = vmcore_run.check_vmcore_io(_io([write, flush], outside=[stray]), None, done, 3.5, "complete")
    assert not c.ok and "outside the dump partition" in c.detail
