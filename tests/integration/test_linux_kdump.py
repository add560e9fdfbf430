"""A real OS under test (guest profile linux-kdump, docs/linux-kdump.md): Debian's kernel,
kexec-tools and makedumpfile crash, dump and are judged against the snapshot, on both disk kinds
Linux's initramfs drives; a damaged vmcore, a capture environment that skips pages and one that
says DONE before its dump is on the disk fail; the faults end as docs/linux-kdump.md declares.

Linux boots only under TCG on a PV-mode nested KVM (QEMU-FACTS.md): `auto` picks TCG there and
KVM where the host's KVM runs Linux; the KVM case runs where it can. 512 MiB guests (a 32 MiB
pattern): about 25 s a run under TCG.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dumpbed import run as run_mod
from dumpbed.guests import profiles
from dumpbed.images import layout as layout_mod
from dumpbed.machine import accel
from dumpbed.oracles import pattern_pages
from dumpbed.oracles.content import Snapshot
from dumpbed.reader import vmcore
from tests.integration.conftest import matrix_only
from tests.support import initrd

pytest_plugins = ["pytester"]

LINUX = dict(profile="linux-kdump", memory="512M", kernel=None, initrd=None)


def _flip(path, offset: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        byte = f.read(1)
        f.seek(offset)
        f.write(bytes([byte[0] ^ 0xFF]))


def _a_pattern_page_on_disk(run_dir) -> int:
    """The disk offset of a pattern page's stored bytes in the run's vmcore (found through the
    snapshot and the vmcore's page descriptors)."""
    lay = layout_mod.load(run_dir / "layout.json")
    runid = int(profiles.linux_runid(json.loads((run_dir / "scenario.json").read_text())["dump_id"]), 16)
    with Snapshot.load(run_dir / "snapshot") as snapshot:
        good, _ = pattern_pages.find(snapshot, runid)
    phys = sorted(good)[len(good) // 2]
    with vmcore.open(run_dir / lay.image, lay.dump_offset, lay.dump_size) as core:
        desc = core.descriptor(phys // 4096)
    return lay.dump_offset + desc["offset"] + 100


def test_kdump_on_virtio_blk_passes_and_a_damaged_vmcore_fails(dumpbed_run):
    result = dumpbed_run(disk="virtio-blk", crash="nmi", **LINUX)
    result.assert_passed()
    report = result.report
    assert report["accel"] == ("tcg" if profiles.LINUX_KDUMP.kvm_problem() or not accel.kvm_usable()[0] else "kvm")
    assert report["dump"]["kind"] == "vmcore" and report["dump"]["format"] == "kdump-compressed"
    assert report["dump"]["compression"] == "lzo" and report["dump"]["dump_level"] == 3
    for name in ("vmcore-io", "canary", "vmcore", "coverage", "pattern", "dmesg", "guest-result"):
        assert result.check(name)["ok"] and "skipped" not in result.check(name)["detail"], name
    assert "8192 pattern pages" in result.check("pattern")["detail"]  # 32 MiB of a 512 MiB guest
    assert "skipped" in result.check("no-interrupts")["detail"]

    # One byte of a pattern page's stored data flipped on the disk: the device's log says
    # otherwise (vmcore-io) and the page is not the snapshot's (pattern).
    image = result.run_dir / "dump.img"
    at = _a_pattern_page_on_disk(result.run_dir)
    _flip(image, at)
    damaged = run_mod.validate_run_dir(result.run_dir)
    assert damaged["verdict"] == "fail"
    failed = {c["name"] for c in damaged["checks"] if not c["ok"]}
    assert "vmcore-io" in failed and ("pattern" in failed or "vmcore" in failed), damaged["checks"]
    _flip(image, at)
    assert run_mod.validate_run_dir(result.run_dir)["verdict"] == "pass"


def test_sysrq_c_with_an_elf_vmcore_on_virtio_scsi(dumpbed_run):
    result = dumpbed_run(disk="virtio-scsi", crash="sysrq-c", guest_args=["dumpbed.format=elf"], **LINUX)
    result.assert_passed()
    assert result.report["dump"]["format"] == "elf"
    assert "sysrq triggered crash" in result.check("dmesg")["detail"]


# The capture environments broken on purpose: (what /init says, what it says instead, the check
# that must catch it)
BROKEN = {
    # makedumpfile told to drop user pages (-d 31) while the run asked for level 3
    "skips-user-pages": ('makedumpfile -f $FLAGS -d "$LEVEL"', 'makedumpfile -f $FLAGS -d 31', "pattern"),
    # DONE said before anything reached the disk: no fsync check, no sync until after DONE
    "done-before-flush": ('    if [ $rc -eq 0 ] && ! dd if=/dev/null of="$PARTDEV" conv=notrunc,fsync 2>/dev/null; then\n'
                          '        rc=5 stage=fsync\n    fi\n    sync\n', "", "vmcore-io"),
}


@pytest.mark.parametrize("broken", list(BROKEN))
def test_a_broken_capture_environment_fails(dumpbed_run, tmp_path, broken):
    old, new, check = BROKEN[broken]
    kernel, first_initrd = initrd.with_init(initrd.image_dir(), tmp_path / "initrd", old, new)
    result = dumpbed_run(disk="virtio-blk", crash="nmi", **dict(LINUX, kernel=kernel, initrd=first_initrd))
    assert result.verdict == "fail"
    assert result.failed_check_names[0] == check, result.failed_check_names
    assert result.dump_status == "complete"  # what it wrote reads; what is wrong is what the oracle names


# The faults of docs/linux-kdump.md, "Faults": (fault, disk, the dump and DONE the run ends with)
FAULTS = {
    "kill": ("virtio-blk", "partial", None),
    "eio-at=20": ("virtio-scsi", "partial", "failed"),
    "enospc": ("virtio-blk", "partial", "failed"),
    "pause=2": ("virtio-scsi", "complete", "complete"),
    "slow=16": ("virtio-blk", "complete", "complete"),
}
IN_MAKE_TEST = ("kill", "eio-at=20")


@pytest.mark.parametrize("fault", [f if f in IN_MAKE_TEST else pytest.param(f, marks=[pytest.mark.matrix, matrix_only])
                                   for f in FAULTS])
def test_a_fault_ends_the_run_as_declared(dumpbed_run, fault):
    disk, outcome, guest = FAULTS[fault]
    result = dumpbed_run(disk=disk, crash="nmi", fault=fault, **LINUX)
    result.assert_passed()
    assert result.dump_status == outcome
    done = [line for line in (result.run_dir / "result.log").read_text().splitlines() if "DUMPBED DONE" in line]
    assert (done[-1].split()[2] if done else None) == (f"status={guest}" if guest else None)


@pytest.mark.matrix
@matrix_only
@pytest.mark.parametrize("crash", ["panic", "hang"])
def test_every_linux_crash_kind(dumpbed_run, crash):
    result = dumpbed_run(disk="virtio-blk", crash=crash, **LINUX)
    result.assert_passed()


@pytest.mark.kvm
@pytest.mark.skipif(bool(profiles.LINUX_KDUMP.kvm_problem()) or not accel.kvm_usable()[0],
                    reason=f"this host's KVM cannot run Linux: {profiles.LINUX_KDUMP.kvm_problem() or accel.kvm_usable()[1]}")
def test_kdump_under_kvm(dumpbed_run):
    result = dumpbed_run(disk="virtio-scsi", crash="sysrq-c", accel="kvm", **LINUX)
    result.assert_passed()
    assert result.accel == "kvm"


def test_kvm_is_refused_where_the_hosts_kvm_cannot_run_linux(tmp_path):
    """On a PV-mode KVM (this machine's) `--accel kvm` is one error line, before anything is written."""
    if not profiles.LINUX_KDUMP.kvm_problem():
        pytest.skip("this host's KVM runs Linux")
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "dumpbed", "run", "--profile", "linux-kdump", "--memory", "512M",
                           "--accel", "kvm", "--out", str(out)], capture_output=True, text=True, timeout=120,
                          env=dict(os.environ))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "dumpbed: error: --accel kvm requested but KVM is not usable: the host's KVM is PV-mode (kvm_pvm), "
        "which cannot run a Linux kernel"]
    assert not out.exists()


LINUX_SUITE = Path(__file__).resolve().parents[2] / "examples" / "linux-kdump-suite" / "test_kdump.py"


def test_the_example_kdump_suite_runs_on_the_plugin(pytester):
    """docs/testing-your-kdump.md's suite, in a pytest of its own with --dumpbed-profile
    linux-kdump: it collects every scenario, and one of them passes (a 1 GiB guest: about 35 s
    under TCG)."""
    shutil.copy(LINUX_SUITE, pytester.path / LINUX_SUITE.name)
    listed = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--dumpbed-profile", "linux-kdump",
                                           "--collect-only", "-q")
    assert listed.ret == 0
    assert "test_kdump.py::test_the_vmcore_holds_memory_as_it_was[virtio-scsi-sysrq-c]" in listed.stdout.str()
    assert len([l for l in listed.stdout.lines if "::" in l]) == 11
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--dumpbed-profile", "linux-kdump",
                                           "-k", "test_the_vmcore_holds_memory_as_it_was and virtio-blk-nmi")
    result.assert_outcomes(passed=1)


def test_a_session_on_the_linux_guest(tmp_path):
    """`dumpbed session --profile linux-kdump`: a person at Linux's shell, then Ctrl-] n (an
    NMI); the vmcore is judged as a run's, and report.json says so."""
    import pexpect

    out = tmp_path / "run"
    child = pexpect.spawn(sys.executable, ["-m", "dumpbed", "session", "--profile", "linux-kdump", "--memory",
                                           "512M", "--out", str(out)], encoding="utf-8", timeout=180,
                          dimensions=(40, 160))
    try:
        child.expect_exact("dumpbed-linux# ")
        child.sendline("uname -r")
        child.expect(r"6\.1\.\d+")
        child.send("\x1d")  # Ctrl-]: the session's keys
        time.sleep(0.5)
        child.send("n")
        child.expect(pexpect.EOF, timeout=300)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, child.before[-2000:]
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "pass" and report["dump"]["kind"] == "vmcore" and report["scenario"]["crash"] == "nmi"
