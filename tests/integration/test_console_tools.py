"""The guest's console tools for driver work (docs/guest.md, "Shell"), each typed at the
`dumpbed>` prompt as a person would: `lsi-selftest` drives an LSI 53C895A and its disk through
the HBA's scsi_hba_tran, `nictest` a NIC's dump interface against QEMU's user network (an ARP
for 10.0.2.2), `nicpair` two NICs on one hub (frames checked byte for byte), `disktest` the dump
disk's dddump with scatter lists dumpbed's writer never makes. Each ends in a line that says
whether it passed.

Each is also shown failing where what it checks is not so: a disk without a GPT (the reads
look for its "EFI PART"), a NIC with nobody on its link, two NICs on different hubs, NVMe's
bounce buffer filled from the first iovec only. And the harness holds the disk tools to
evidence of its own: lsi-selftest's write of a pattern must leave the disk image as it found
it, byte for byte; every byte disktest wrote must be in the image where the pattern says, and
QEMU's command log must show how the driver sent it.

And the prompt they are typed at: a guest waiting there halts, and costs QEMU next to no CPU;
one that reads the UART's status in a loop instead (testfault=poll-keys) keeps a core busy. A key
typed during a dump raises no interrupt: the crash path muted the console (testfault=console-irq-live
leaves it on)."""
from __future__ import annotations

import hashlib
import os
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from dumpbed.capture import cmdlog
from dumpbed.capture.estimates import console_command
from dumpbed.deadline import WaitTimeout
from dumpbed.images import gpt
from dumpbed.images.layout import DiskLayout
from dumpbed.images.topology import DiskSpec, Topology
from dumpbed.machine import accel as accel_mod
from dumpbed.machine.qemu import Machine, MachineConfig
from dumpbed.scenario import disks
from dumpbed.units import MiB
from tests.integration.conftest import accel_params
from tests.support.procs import cpu_seconds

TIMEOUT = {"kvm": 60.0, "tcg": 240.0}  # the boot to the prompt, then the tool (seconds either way)
# Each tool's verdict line: "lsi-selftest: passed (0 failures)", "nictest: PASS", "nicpair: FAIL ETIMEDOUT"
_END = re.compile(r"(?m)^(?P<tool>lsi-selftest|nictest|nicpair|disktest): (?P<verdict>passed|FAILED|PASS|FAIL)\b")
LSI = ["-device", "lsi53c895a,id=lsi0", "-device", "scsi-hd,bus=lsi0.0,drive=d0,scsi-id=0"]
# The tools pass under both accelerators; that they fail where they should is shown under one.
ONE_ACCEL = [accel_mod.choose("auto")]


def run_tool(kernel: Path, accel: str, out: Path, command: str, devices: list[str], words: str = "",
             trace_events: list[str] = ()) -> tuple[bool, str]:
    """Boot the guest with `devices` (and command-line `words`), type `command`, and return
    (passed, its output)."""
    config = MachineConfig(kernel=kernel, cmdline=f"fill=off components=none {words}".strip(),
                           memory_bytes=32 * MiB, accel=accel, devices=devices, trace_events=list(trace_events))
    with Machine(config, out) as machine:
        machine.cont()
        try:
            output = console_command(machine, command, TIMEOUT[accel]).replace("\r", "")
        except WaitTimeout as exc:
            raise AssertionError(f"{exc} ({accel}); console tail:\n{machine.console.tail()}") from None
    end = _END.search(output)
    assert end, f"{command} ended without its verdict line:\n{output}"
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


# -- disktest ----------------------------------------------------------------------------------

_WRITE = re.compile(r"(?m)^disktest: write (?P<n>\d+) bytes in (?P<k>\d) iovecs at partition offset 0x(?P<at>[0-9a-f]+)\s*$")
BOUNCE_BYTES = 512 * 1024  # NVMe's bounced transfers go in commands of at most this (drivers/nvme.c)
DISKTEST_LAYOUT = DiskLayout.for_dump(32 * MiB)
BOUNCED = (0, 1)  # disktest's writes with iovec boundaries inside a page (NVMe bounces them)
# How QEMU's NVMe controller took each command's data: one event after each command's own line
NVME_MAPS = ["pci_nvme_map_sgl", "pci_nvme_map_prp"]
_NVME_WRITE = re.compile(r"pci_nvme_write cid \d+ .* lba 0x(?P<lba>[0-9a-f]+)$")
_NVME_MAP = re.compile(r"pci_nvme_map_(?P<how>sgl|prp) ")
DISK_KINDS = [name for name, kind in disks.DISKS.items() if not kind.network]  # every dump disk driver


def disktest_pattern(at: int, n: int) -> np.ndarray:
    """What disktest writes at partition bytes [at, at + n) (DISKTEST_BYTE, test/disk_selftest.c)."""
    p = np.arange(at, at + n, dtype=np.uint64)
    return ((((p >> np.uint64(9)) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(56)) + p * np.uint64(7)).astype(np.uint8)


def run_disktest(kernel: Path, accel: str, out: Path, kind: str, words: str = ""):
    """disktest on a disk of `kind`: (passed, output, its writes [(offset, bytes, iovecs)], the
    image's dump partition offset, QEMU's command log)."""
    layout = DISKTEST_LAYOUT
    image = out / "dump.img"
    gpt.write(image, layout)
    topology = Topology(kind, DiskSpec(image, "disk0"))
    passed, output = run_tool(kernel, accel, out, "disktest", topology.qemu_args(),
                              f"dumpdev={topology.dumpdev()} {words}", cmdlog.trace_events(kind) + NVME_MAPS)
    writes = [(int(m["at"], 16), int(m["n"]), int(m["k"])) for m in _WRITE.finditer(output)]
    return passed, output, writes, layout.dump_offset, cmdlog.read(out, layout.block_size)


def nvme_maps(out: Path, block_size: int) -> dict[int, str]:
    """Each NVMe Write of the run by its byte offset on the namespace: how QEMU mapped its data,
    "sgl" or "prp" (the map event its trace line is followed by)."""
    maps, at = {}, None
    for line in (out / "qemu-trace.log").read_text().splitlines():
        write, mapped = _NVME_WRITE.search(line), _NVME_MAP.search(line)
        if write:
            at = int(write["lba"], 16) * block_size
        elif mapped and at is not None:
            maps[at], at = mapped["how"], None
    return maps


def landed(image: Path, part: int, at: int, n: int) -> np.ndarray:
    with open(image, "rb") as f:
        f.seek(part + at)
        return np.frombuffer(f.read(n), np.uint8)


@pytest.mark.parametrize("accel", accel_params())
@pytest.mark.parametrize("kind", DISK_KINDS)
def test_disktest_scatter_lists_land_byte_for_byte(guest_kernel, accel, kind, tmp_path):
    """Every byte of the four writes is where the pattern says, sent as the device's command
    log shows: the page-aligned writes (two pieces, then one) in one command on every kind (NVMe:
    a PRP list, then one SGL descriptor); on NVMe the first two through the bounce buffer, in
    commands of at most its 512 KiB."""
    passed, output, writes, part, log = run_disktest(guest_kernel, accel, tmp_path, kind)
    assert passed, output
    assert [k for _, _, k in writes] == [3, 2, 2, 1], output
    for at, n, _ in writes:
        got = landed(tmp_path / "dump.img", part, at, n)
        want = disktest_pattern(at, n)
        assert np.array_equal(got, want), f"{kind}: the write at 0x{at:x} differs from byte {np.flatnonzero(got != want)[0]}"
    commands = [c for c in log.commands if c.kind == "write"]
    for i, (at, n, k) in enumerate(writes):
        mine = [c for c in commands if part + at <= c.offset < part + at + n]
        assert sum(c.length for c in mine) >= n, (kind, at, [(c.offset, c.length) for c in mine])
        if disks.get(kind).bus == disks.NVME_BUS and i in BOUNCED:  # PRPs cannot describe these
            assert len(mine) == -(-n // BOUNCE_BYTES) and max(c.length for c in mine) <= BOUNCE_BYTES, mine
        if i not in BOUNCED:
            assert len(mine) == 1, mine
    if disks.get(kind).bus == disks.NVME_BUS:  # one buffer by one SGL descriptor; two pieces by PRPs
        maps = nvme_maps(tmp_path, DISKTEST_LAYOUT.block_size)
        assert [maps.get(part + at) for at, _, _ in writes[2:]] == ["prp", "sgl"], maps

@pytest.mark.parametrize("accel", ONE_ACCEL)
def test_disktest_finds_a_bounce_buffer_filled_from_the_first_iovec_only(guest_kernel, accel, tmp_path):
    """testfault=bounce-short: NVMe copies only a bounced write's first iovec into its bounce
    buffer. The guest says PASS (the controller took every command); the image does not hold
    the pattern past the first iovec of the bounced writes."""
    passed, output, writes, part, _ = run_disktest(guest_kernel, accel, tmp_path, "nvme", "testfault=bounce-short")
    assert passed, output
    for at, n, _ in (writes[i] for i in BOUNCED):
        assert not np.array_equal(landed(tmp_path / "dump.img", part, at, n), disktest_pattern(at, n)), at


# -- the prompt itself: a guest waiting for a key halts (docs/guest.md, "Console") -------------------

IDLE_SECONDS = 2.0
# QEMU's CPU time over IDLE_SECONDS at the prompt, as a share of them: a halted guest costs
# QEMU about nothing (0.00 under KVM, 0.01 under TCG here); one reading the UART's status in a
# loop keeps a core busy (1.0 alone, at least half of one with the box's two cores taken).
HALTED_AT_MOST = 0.15
POLLING_AT_LEAST = 0.4


def cpu_share_at_prompt(kernel: Path, accel: str, out: Path, words: str = "") -> float:
    """Boot to the prompt, let the guest wait there IDLE_SECONDS, and return QEMU's CPU time in
    them as a share of them. The guest must then still answer a command at once."""
    config = MachineConfig(kernel=kernel, cmdline=f"fill=off components=none {words}".strip(),
                           memory_bytes=32 * MiB, accel=accel)
    with Machine(config, out) as machine:
        machine.cont()
        console_command(machine, "info", TIMEOUT[accel])  # the boot is over, the shell waits
        before, t0 = cpu_seconds(machine.process.pid), time.monotonic()
        time.sleep(IDLE_SECONDS)
        share = (cpu_seconds(machine.process.pid) - before) / (time.monotonic() - t0)
        assert "estimate" in console_command(machine, "help", 30.0)  # the keys woke it
    return share


@pytest.mark.parametrize("accel", accel_params())
def test_a_guest_at_its_prompt_costs_its_host_no_core(guest_kernel, accel, tmp_path):
    share = cpu_share_at_prompt(guest_kernel, accel, tmp_path)
    assert share <= HALTED_AT_MOST, f"QEMU used {share:.2f} of a core while the guest waited at its prompt ({accel})"


@pytest.mark.parametrize("accel", ONE_ACCEL)
def test_a_guest_polling_its_console_is_seen_keeping_a_core_busy(guest_kernel, accel, tmp_path):
    """testfault=poll-keys: the shell reads the UART's status in a loop between keys, as it did
    before it halted. The same measure sees a core kept busy."""
    share = cpu_share_at_prompt(guest_kernel, accel, tmp_path, "testfault=poll-keys")
    assert share >= POLLING_AT_LEAST, f"QEMU used only {share:.2f} of a core with the guest polling ({accel})"


# -- a key typed while the guest dumps: the crash path mutes the console (docs/guest.md, "Console") --

def keys_once_quiesced(typed: dict):
    """An on_paused hook: a thread that, once the guest says QUIESCED, types keys at its console
    (the dump has begun: the guest reads none of them). `typed` gets when, or the error."""
    def type_keys(machine) -> None:
        deadline = time.monotonic() + 60
        result_log = machine.artifacts / "result.log"
        try:
            while b"DUMPBED QUIESCED" not in result_log.read_bytes():
                if time.monotonic() > deadline or not machine.is_running():
                    raise AssertionError("no QUIESCED line to type after")
                time.sleep(0.002)
            machine.console.send("x\r")
            typed["at"] = time.time()
        except Exception as exc:  # noqa: BLE001 (the test reports it)
            typed["error"] = exc

    def hook(machine) -> None:
        thread = threading.Thread(target=type_keys, args=(machine,), name="keys", daemon=True)
        typed["thread"] = thread
        thread.start()
    return hook


# QEMU's own APIC (TCG's) traces every interrupt it is handed, taken or not; KVM's in-kernel
# one shows only what the guest takes, and with IF = 0 it takes none.
# A slow disk keeps the dump going well after the keys.
@pytest.mark.dumpbed(memory="32M", accel="tcg", faults=["slow=16"])
@pytest.mark.parametrize("words,passes", [([], True), (["testfault=console-irq-live"], False)],
                         ids=["muted", "console-irq-live"])
def test_a_key_typed_during_the_dump_raises_no_interrupt(dumpbed_run, tmp_path, words, passes):
    """The crash came while the shell halted for a key, COM1's receive interrupt on. The crash
    path turns it off and masks its pin before anything slow: a key typed during the dump is
    handed to no CPU. testfault=console-irq-live leaves both as the shell had them, and the
    no-interrupts oracle sees the key's interrupt reach the local APIC after QUIESCED."""
    typed: dict = {}
    result = dumpbed_run(guest_args=words, on_paused=keys_once_quiesced(typed))
    typed["thread"].join(30)
    assert not typed["thread"].is_alive() and "error" not in typed, typed.get("error", "the keys never typed")
    (done,) = cmdlog.read(result.run_dir, 512).result("DONE")
    assert typed["at"] < done.time, "the keys came after the dump"
    if passes:
        assert result.passed, result.failed_checks
    else:
        result.assert_failed("no-interrupts")
