"""The guest's console tools for driver work (docs/guest.md, "Shell"), each typed at the
`dumpbed>` prompt as a person would: `lsi-selftest` drives an LSI 53C895A and its disk through
the HBA's scsi_hba_tran, `nictest` a NIC's dump interface against QEMU's user network (an ARP
for 10.0.2.2), `nicpair` two NICs on one hub (frames checked byte for byte). Each ends in a
line that says whether it passed.

Each is also shown failing where what it checks is not so: a disk without a GPT (the reads
look for its "EFI PART"), a NIC with nobody on its link, two NICs on different hubs. And the
harness holds lsi-selftest to evidence of its own: its write of a pattern must leave the disk
image as it found it, byte for byte."""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import pytest

from dumpbed.deadline import WaitTimeout
from dumpbed.images import gpt
from dumpbed.images.layout import DiskLayout
from dumpbed.machine import accel as accel_mod
from dumpbed.machine.qemu import Machine, MachineConfig
from dumpbed.units import MiB
from tests.integration.conftest import accel_params

PROMPT = "dumpbed> "
BOOT_TIMEOUT = {"kvm": 30.0, "tcg": 120.0}
TOOL_TIMEOUT = {"kvm": 60.0, "tcg": 240.0}
# Each tool's last line: "lsi-selftest: passed (0 failures)", "nictest: PASS", "nicpair: FAIL ETIMEDOUT"
_END = re.compile(r"(?m)^(?P<tool>lsi-selftest|nictest|nicpair): (?P<verdict>passed|FAILED|PASS|FAIL)\b.*\n")
LSI = ["-device", "lsi53c895a,id=lsi0", "-device", "scsi-hd,bus=lsi0.0,drive=d0,scsi-id=0"]
# The tools pass under both accelerators; that they fail where they should is shown under one.
ONE_ACCEL = ["kvm" if accel_mod.kvm_usable()[0] else "tcg"]


def run_tool(kernel: Path, accel: str, out: Path, command: str, devices: list[str]) -> tuple[bool, str]:
    """Boot the guest with `devices`, type `command`, and return (passed, its output)."""
    config = MachineConfig(kernel=kernel, cmdline="fill=off components=none", memory_bytes=32 * MiB,
                           accel=accel, devices=devices)
    with Machine(config, out) as machine:
        machine.cont()
        try:
            machine.console.wait_for(PROMPT, BOOT_TIMEOUT[accel])
            mark = machine.console.mark()
            machine.console.send(command + "\r")
            machine.console.wait_for(_END.pattern, TOOL_TIMEOUT[accel], since=mark)
        except WaitTimeout as exc:
            raise AssertionError(f"{exc} ({accel}); console tail:\n{machine.console.tail()}") from None
        output = machine.console.text[mark:].replace("\r", "")
    end = _END.search(output)
    return end["verdict"] in ("passed", "PASS"), output


def lsi_disk(path: Path, with_gpt: bool) -> list[str]:
    """A disk for the LSI's target 0: random bytes (the self-test's round trip at 512 KiB must
    put them back), with a GPT when asked."""
    layout = DiskLayout.for_dump(8 * MiB, image=path.name)
    path.write_bytes(os.urandom(layout.size_bytes))
    if with_gpt:
        gpt.write(path, layout)
    return [*LSI, "-drive", f"if=none,id=d0,file={path},format=raw"]


def checks(output: str) -> dict[str, bool]:
    """lsi-selftest's check lines: {what: ok}."""
    return {m[2]: m[1] == "ok" for m in re.finditer(r"^  (ok|FAIL) +(.*)$", output, re.M)}


@pytest.mark.parametrize("accel", accel_params())
def test_lsi_selftest_passes_and_leaves_the_disk_as_it_found_it(guest_kernel, accel, tmp_path):
    image = tmp_path / "disk.img"
    devices = lsi_disk(image, with_gpt=True)
    before = hashlib.sha256(image.read_bytes()).hexdigest()
    passed, output = run_tool(guest_kernel, accel, tmp_path, "lsi-selftest", devices)
    assert passed, output
    found = checks(output)
    assert len(found) == 19 and all(found.values()), output
    assert "WRITE(10) 256 KiB pattern in 3 pieces" in found and "original data restored" in found
    assert hashlib.sha256(image.read_bytes()).hexdigest() == before  # the pattern's write undone


@pytest.mark.parametrize("accel", ONE_ACCEL)
def test_lsi_selftest_fails_on_a_disk_without_a_gpt(guest_kernel, accel, tmp_path):
    """The reads of LBA 1 find no "EFI PART": each check that looks for it fails, the rest pass."""
    passed, output = run_tool(guest_kernel, accel, tmp_path, "lsi-selftest",
                              lsi_disk(tmp_path / "disk.img", with_gpt=False))
    assert not passed and "lsi-selftest: FAILED (3 failures)" in output, output
    failed = sorted(what.split(",")[0] for what, ok in checks(output).items() if not ok)
    assert failed == ["READ(10) 2 MiB in 8 pieces", "READ(10) after it",
                      "short READ in one move (mid-move mismatch): resid 512"], output


USER_NET = ["-netdev", "user,id=n0"]


@pytest.mark.parametrize("accel", accel_params())
@pytest.mark.parametrize("driver,device", [("e1000e", "e1000e"), ("virtio-net", "virtio-net-pci")])
def test_nictest_gets_an_arp_reply_through_the_dump_interface(guest_kernel, accel, driver, device, tmp_path):
    passed, output = run_tool(guest_kernel, accel, tmp_path, f"nictest {driver}",
                              [*USER_NET, "-device", f"{device},netdev=n0"])
    assert passed, output
    assert re.search(r"^nictest: ARP reply: 10\.0\.2\.2 is at 52:55:0a:00:02:02", output, re.M), output


@pytest.mark.parametrize("accel", ONE_ACCEL)
def test_nictest_fails_with_nobody_on_the_link(guest_kernel, accel, tmp_path):
    passed, output = run_tool(guest_kernel, accel, tmp_path, "nictest",
                              ["-netdev", "hubport,id=p0,hubid=0", "-device", "e1000e,netdev=p0"])
    assert not passed and "nictest: no ARP reply in 3 tries" in output and "nictest: FAIL ETIMEDOUT" in output, \
        output


def two_nics(hub_b: int) -> list[str]:
    return ["-netdev", "hubport,id=p0,hubid=0", "-device", "e1000e,netdev=p0",
            "-netdev", f"hubport,id=p1,hubid={hub_b}", "-device", "e1000e,netdev=p1"]


@pytest.mark.parametrize("accel", accel_params())
def test_nicpair_sends_full_size_frames_intact(guest_kernel, accel, tmp_path):
    passed, output = run_tool(guest_kernel, accel, tmp_path, "nicpair", two_nics(hub_b=0))
    assert passed, output
    assert len(re.findall(r"^nicpair: frame \d: \d+ bytes in [12] iovec\(s\) received intact$", output, re.M)) == 3, \
        output
    assert "nicpair: a 9014-byte frame into 100 bytes: EMSGSIZE" in output, output


@pytest.mark.parametrize("accel", ONE_ACCEL)
def test_nicpair_fails_when_the_nics_are_not_on_one_segment(guest_kernel, accel, tmp_path):
    passed, output = run_tool(guest_kernel, accel, tmp_path, "nicpair", two_nics(hub_b=1))
    assert not passed and "nicpair: FAIL ETIMEDOUT" in output, output
