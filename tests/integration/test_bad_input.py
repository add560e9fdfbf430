"""Bad input, tried as a new user would: each mistake ends in exactly one `dumpbed: error: ...`
line and exit status 2, before anything is written (no run directory, no image), never in a
traceback; a closed stdout ends a command quietly; a run stopped by Ctrl-C says so in its
directory; scratch dirs a killed harness left are swept.

None of these boots a guest but the Ctrl-C test (one of 32 MiB); the eio-at limit is held to a
QEMU with no machine at all (`-machine none`), which boots nothing.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import types
from pathlib import Path

import pytest

from dumpbed import run as run_mod
from dumpbed.errors import DumpbedError
from dumpbed.guests.profiles import DUMPBED_KEYS as DUMPBED_GUEST_KEYS, DUMPBED_MIN_MEMORY as MIN_MEMORY
from dumpbed.machine import qemu as machine_mod
from dumpbed.machine.qmp import QmpSession
from dumpbed.scenario import disks, faultrun, faults
from dumpbed.scenario.spec import PC_PCI_SLOTS, Scenario, check_scenario
from dumpbed.units import MiB, PAGE
from tests.integration.test_robustness import (
    DUMPBED, _assert_nothing_left, _assert_one_error_line, _env, _finish, _result_has, _wait_for,
)
from tests.support import synth

QUICK = 60  # seconds: a refusal takes well under one; a run that went ahead would boot a guest


def _dumpbed(tmp_path: Path, *args: str, env=None, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*DUMPBED, *args], capture_output=True, text=True, timeout=QUICK,
                          env=env or _env(tmp_path), **kwargs)


def _one_line(proc: subprocess.CompletedProcess, pattern: str) -> str:
    return _assert_one_error_line(proc.returncode, proc.stdout, proc.stderr, pattern)


def _refused_before_anything(tmp_path: Path, out: Path, *args: str, pattern: str, env=None) -> str:
    """`dumpbed run ARGS --out OUT` is refused in one line, and nothing was written: no run
    directory, no scratch dir, no QEMU."""
    proc = _dumpbed(tmp_path, "run", "--out", str(out), *args, env=env)
    line = _one_line(proc, pattern)
    assert "running" not in proc.stderr  # refused before the run began, not after
    assert not out.exists(), f"{out} was created: {sorted(p.name for p in out.iterdir())}"
    _assert_nothing_left(tmp_path, out, qemu_started=False)
    return line


# -- run's options -----------------------------------------------------------------------------

_HBA_KIND = next(name for name, kind in disks.DISKS.items() if kind.on_hba and kind.max_lun == 0)
_BAD_RUNS = {
    "memory-inf": (["--memory", "inf"], r"--memory inf: not a size"),
    "memory-nan": (["--memory", "nan"], r"--memory nan: not a size"),
    "memory-negative": (["--memory", "-5M"], r"--memory -5M: a size must be positive"),
    "memory-zero": (["--memory", "0"], r"--memory 0: a size must be positive"),
    "memory-fraction-of-a-byte": (["--memory", "1.3"], r"--memory 1.3: not a whole number of bytes"),
    "memory-not-whole-pages": (["--memory", "100000"], r"--memory 100000 bytes: guest RAM must be a whole number of MiB"),
    "memory-whole-pages-not-MiB": (["--memory", "65540K"], r"guest RAM must be a whole number of MiB"),
    "memory-1M": (["--memory", "1M"], rf"--memory 1M: the guest needs at least {MIN_MEMORY // MiB}M of RAM"),
    "memory-just-below-the-minimum": (["--memory", f"{MIN_MEMORY // MiB - 1}M"],
                                      rf"needs at least {MIN_MEMORY // MiB}M"),
    "ram-below-4g-negative": (["--memory", "96M", "--ram-below-4g", "-64M"], r"--ram-below-4g -64M: a size must be positive"),
    "disk-size-inf": (["--disk-size", "inf"], r"--disk-size inf: not a size"),
    "disk-size-too-small": (["--memory", "64M", "--disk-size", "1M"], r"--disk-size 1048576 bytes is too small .* at least"),
    "eio-at-beyond-what-arms": (["--fault", f"eio-at={faults.MAX_EIO_AT + 1}"],
                                rf"eio-at=N with N from 1 to {faults.MAX_EIO_AT} \(QEMU's blkdebug counts writes"),
    "other-disks-negative": (["--other-disks", "-1"], r"--other-disks -1: a number of disks, 0 or more"),
    "other-disks-past-the-pci-slots": (["--other-disks", str(PC_PCI_SLOTS)],
                                       rf"at most {PC_PCI_SLOTS - 1} .*{PC_PCI_SLOTS} free slots"),
    "other-disks-past-the-targets": (["--disk", _HBA_KIND, "--other-disks", str(disks.get(_HBA_KIND).targets)],
                                     rf"at most {disks.get(_HBA_KIND).targets - 1} .*targets are 0\.\."),
    "target-out-of-range": (["--disk", _HBA_KIND, "--target", str(disks.get(_HBA_KIND).targets)], r"out of range"),
    "lun-out-of-range": (["--disk", _HBA_KIND, "--lun", "1"], r"LUN 1 out of range 0\.\.0"),
    "guest-arg-one-word": (["--guest-arg", "foo"], r"--append 'foo': not KEY=VALUE"),
    "guest-arg-empty-value": (["--guest-arg", "testfault="], r"not KEY=VALUE"),
    "guest-arg-two-words": (["--guest-arg", "testfault=irq-on pinpool=4M"], r"not KEY=VALUE"),
    "guest-arg-dumpbed-sets": (["--guest-arg", "dumpid=00"], r"--append dumpid=00: dumpbed sets dumpid= itself"),
    "guest-arg-too-long": (["--guest-arg", "pinpool=" + "1" * 1000],
                           r"the guest's command line would be \d+ bytes .*the guest keeps 1023"),
    "append-a-bad-word-among-good": (["--append", "testfault=irq-on  foo"], r"--append 'foo': not KEY=VALUE"),
    "append-dumpbed-sets": (["--append", "fill=off"], r"--append fill=off: dumpbed sets fill= itself"),
    "kernel-missing": (["--kernel", "no-such-kernel.elf"], r"--kernel no-such-kernel.elf: no such file"),
    "kernel-a-directory": (["--kernel", "/"], r"--kernel /: not a regular file"),
    "kernel-not-a-kernel": (["--kernel", "/etc/passwd"], r"--kernel /etc/passwd: neither a multiboot kernel .* nor a "
                                                          r"Linux bzImage"),
    "initrd-without-kernel": (["--initrd", "/etc/passwd"], r"--initrd /etc/passwd: needs --kernel"),
    "profile-unknown": (["--profile", "plan9"], r"argument --profile: invalid choice: 'plan9'"),
}
# (the run directory's own path: `_refused_before_anything` gives --out)
_BAD_OUT = "run-50%-loss"


@pytest.mark.parametrize("case", list(_BAD_RUNS))
def test_bad_run_option_is_refused_before_anything_is_written(tmp_path, case):
    args, pattern = _BAD_RUNS[case]
    _refused_before_anything(tmp_path, tmp_path / "deeper" / "run", *args, pattern=pattern)


def test_a_percent_sign_in_the_run_directory_is_refused(tmp_path):
    """QEMU takes a '%' in its -D log file's name as a template and refuses to start."""
    _refused_before_anything(tmp_path, tmp_path / _BAD_OUT, pattern=r"a '%' in the run directory's path is QEMU's")


@pytest.mark.parametrize("kind", [name for name, kind in disks.DISKS.items() if not kind.on_hba])
@pytest.mark.parametrize("option", [["--target", "0"], ["--lun", "1"], ["--target", "1", "--lun", "0"]],
                         ids=["target", "lun", "both"])
def test_a_scsi_address_for_a_disk_without_one_is_refused(tmp_path, kind, option):
    """--target and --lun are a disk-on-an-HBA's: given at all to another kind (even 0), they
    would be silently ignored, so they are refused (the kind's entry says, never its name)."""
    _refused_before_anything(tmp_path, tmp_path / "run", "--disk", kind, *option,
                             pattern=rf"--(target|lun) \d.*: {re.escape(kind)} disks have no SCSI target or LUN")


def test_the_api_refuses_a_nonzero_address_for_a_disk_without_one(tmp_path):
    for name, kind in disks.DISKS.items():
        scenario = Scenario(out_dir=tmp_path / "run", disk=name, memory_bytes=64 * MiB, lun=0 if kind.on_hba else 1)
        if kind.on_hba:
            check_scenario(scenario)  # LUN 0: every HBA kind has one
        else:
            with pytest.raises(DumpbedError, match="no SCSI target or LUN"):
                check_scenario(scenario)


def test_the_keys_guest_arg_may_not_set_are_those_dumpbed_sets(tmp_path):
    """The dumpbed profile's DUMPBED_KEYS is every key run.guest_cmdline writes (with every optional word
    present), so a --guest-arg can never contradict scenario.json."""
    scenario = Scenario(out_dir=tmp_path / "run", memory_bytes=64 * MiB, workload=True, secondary=disks.DEFAULT,
                        compress="lz4", guest_args=["testfault=irq-on"])
    components, found = check_scenario(scenario)
    topology = run_mod.plan_disks(scenario, tmp_path / "run", found).topology
    words = run_mod.guest_cmdline(scenario, topology, components, "0" * 32, "0" * 16, 10_000).split()
    keys = [w.split("=", 1)[0] for w in words]
    assert keys[-1] == "testfault" and len(keys) == len(set(keys))
    net = Scenario(out_dir=tmp_path / "net", memory_bytes=64 * MiB, disk=next(
        name for name, kind in disks.DISKS.items() if kind.network))  # a network dump's addresses too
    net_components, net_found = check_scenario(net)
    net_topology = run_mod.plan_disks(net, tmp_path / "net", net_found).topology
    net_words = run_mod.guest_cmdline(net, net_topology, net_components, "0" * 32, "0" * 16, 10_000).split()
    assert set(keys[:-1]) | {w.split("=", 1)[0] for w in net_words} == set(DUMPBED_GUEST_KEYS)


def test_a_kernel_the_profile_cannot_judge_is_refused(tmp_path, guest_kernel):
    """--initrd with a multiboot kernel, and a crash kind whose checks need the kernel's symbols
    when none are beside it (a user's kernel without its .elf64), are refused before anything
    is written; with its .elf64 beside it the same kernel is taken."""
    alone = tmp_path / "k" / "my-guest.elf"
    alone.parent.mkdir()
    shutil.copy(guest_kernel, alone)
    _refused_before_anything(tmp_path, tmp_path / "run", "--kernel", str(alone), "--initrd", str(guest_kernel),
                             pattern=r"--initrd .*: goes with a Linux bzImage, and --kernel .* is a multiboot kernel")
    _refused_before_anything(tmp_path, tmp_path / "run", "--kernel", str(alone), "--crash", "page-fault",
                             pattern=r"--crash page-fault checks where the crash happened against the kernel's "
                                     r"symbols .*my-guest\.elf64 beside it")
    shutil.copy(Path(guest_kernel).with_suffix(".elf64"), alone.with_suffix(".elf64"))
    check_scenario(Scenario(out_dir=tmp_path / "run", crash="page-fault", kernel=alone))


def _host_room(where: Path) -> tuple[int, int]:
    """(free bytes in where's filesystem, MemAvailable bytes)."""
    available = next(int(l.split()[1]) * 1024 for l in Path("/proc/meminfo").read_text().splitlines()
                     if l.startswith("MemAvailable:"))
    return os.statvfs(where).f_bavail * os.statvfs(where).f_frsize, available


def test_more_memory_than_the_host_has_room_for_is_refused_before_any_image(tmp_path):
    """--memory 1T would start writing a 1 TiB image: the disk space it needs in the output
    directory's filesystem and the host's memory are checked first, and what is short named."""
    free, available = _host_room(tmp_path)
    # Either is surely short below 1 TiB (the run needs more than 3 TiB of disk)
    short = [what for what, lacking in (("disk space", free < 1 << 40), ("memory", available < 1 << 40)) if lacking]
    if not short:
        pytest.skip("this host has 1 TiB of free disk and of memory")
    line = _refused_before_anything(tmp_path, tmp_path / "run", "--memory", "1T",
                                    pattern=r"not enough (disk space|memory|disk space or memory) for this run: ")
    if "disk space" in short:
        assert re.search(r"the run writes about \d+\.\d TiB under .*run \(the disk images 1\.\d TiB, .*the RAM "
                         r"snapshot 1\.0 TiB.*\) and its filesystem has .* free", line), line
    if "memory" in short:
        assert re.search(r"the guest's 1\.0 TiB of RAM and QEMU need about 1\.0 TiB of host memory and .* is "
                         r"available \(MemAvailable in /proc/meminfo\)", line), line


def test_the_space_check_counts_every_image_log_and_snapshot(tmp_path, monkeypatch):
    """The disk-space estimate grows with what a run writes: RAM, other disks, a secondary."""
    monkeypatch.setattr(run_mod.shutil, "disk_usage", lambda path: types.SimpleNamespace(free=0))

    def need(**kw) -> float:
        """MiB the run is said to write."""
        scenario = Scenario(out_dir=tmp_path / "run", memory_bytes=kw.pop("memory", 64 * MiB), **kw)
        _, found = check_scenario(scenario)
        line = run_mod.host_shortfalls(scenario, found, run_mod.plan_disks(scenario, tmp_path / "run", found))
        number, unit = re.search(r"writes about (\d+\.\d) (MiB|GiB)", line).groups()
        return float(number) * (1024 if unit == "GiB" else 1)

    base = need()
    assert base > 64 * 3  # the dump disk, its write log, the RAM snapshot, the checker's copy
    assert need(memory=128 * MiB) - base >= 4 * 64
    assert need(other_disks=2) - base >= 2 * 16
    assert need(secondary=disks.DEFAULT) - base >= 64 * 2  # its image and its write log


def test_the_minimum_memory_covers_the_kernel_and_its_pinned_pool(guest_kernel):
    """MIN_MEMORY, measured on every disk kind, is held to the kernel it was measured with: the
    kernel's end (its highest loaded byte, .bss included), the 2 MiB pinned pool above it and
    a MiB for the sample components. A kernel that grows past it fails here, not in a run."""
    data = Path(guest_kernel).read_bytes()
    assert data[:4] == b"\x7fELF"
    is64 = data[4] == 2
    phoff, phentsize, phnum = ((int.from_bytes(data[32:40], "little"), int.from_bytes(data[54:56], "little"),
                                int.from_bytes(data[56:58], "little")) if is64 else
                               (int.from_bytes(data[28:32], "little"), int.from_bytes(data[42:44], "little"),
                                int.from_bytes(data[44:46], "little")))
    end = 0
    for i in range(phnum):
        ph = data[phoff + i * phentsize: phoff + (i + 1) * phentsize]
        if int.from_bytes(ph[0:4], "little") != 1:  # PT_LOAD
            continue
        paddr, memsz = ((int.from_bytes(ph[24:32], "little"), int.from_bytes(ph[40:48], "little")) if is64 else
                        (int.from_bytes(ph[12:16], "little"), int.from_bytes(ph[20:24], "little")))
        end = max(end, paddr + memsz)
    assert MiB < end < MIN_MEMORY
    kernel_end = -(-end // PAGE) * PAGE
    assert MIN_MEMORY >= kernel_end + 2 * MiB + MiB, (
        f"the kernel now ends at {kernel_end:#x}: MIN_MEMORY {MIN_MEMORY // MiB}M leaves no room for its pinned pool")


def test_an_eio_at_of_the_limit_arms_within_the_qmp_deadline(tmp_path):
    """eio-at=MAX_EIO_AT's rules, built and armed as a run does (faultrun.arm, with the QMP
    command deadline a run has), on a QEMU with no machine: the limit is one that works. One
    past it is refused (above); QEMU 7.2 takes the rules in quadratic time, and 100000 (the old
    limit) ran past the deadline."""
    ours, theirs = socket.socketpair()
    qemu = subprocess.Popen(
        [machine_mod.QEMU_BINARY, "-machine", "none", "-nodefaults", "-display", "none",
         "-chardev", f"socket,id=qmp,fd={theirs.fileno()}", "-mon", "chardev=qmp,mode=control",
         "-blockdev", f"null-co,node-name=disk0-log,size={64 * MiB}",
         "-blockdev", "raw,node-name=disk0,file=disk0-log"],
        pass_fds=(theirs.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    theirs.close()
    qmp = None
    try:
        qmp = QmpSession(ours, str(tmp_path / "qmp.jsonl"))

        class Stopped:  # what arm() needs of a Machine: its QMP session
            pass

        machine = Stopped()
        machine.qmp = qmp
        fault = faults.parse(f"eio-at={faults.MAX_EIO_AT}")
        t0 = time.monotonic()
        armed = faultrun.arm(fault, machine, "disk0")
        took = time.monotonic() - t0
        assert f"write {faults.MAX_EIO_AT} after the crash" in armed
        nodes = {n["node-name"]: n for n in qmp.command("query-named-block-nodes", {"flat": True})}
        assert nodes["disk0-fault"]["drv"] == "blkdebug"
        assert took < 15, f"arming {faults.MAX_EIO_AT} rules took {took:.1f}s: too close to the 30 s QMP deadline"
    finally:
        if qmp is not None:
            qmp.close()
        ours.close()
        qemu.kill()  # the QEMU this test started, by its PID
        qemu.wait(30)


# -- an error after the run began leaves no empty directory ------------------------------------

def test_a_failure_before_anything_is_written_removes_the_directories_it_made(tmp_path, monkeypatch):
    """Everything that can be checked is checked before the run directory is made; should
    something still fail before a file is written there, the directories the run made go."""
    def fail(*args, **kwargs):
        raise DumpbedError("the disks could not be made")

    monkeypatch.setattr(run_mod, "make_disks", fail)
    out = tmp_path / "a" / "b" / "run"
    with pytest.raises(DumpbedError, match="the disks could not be made"):
        run_mod.run(Scenario(out_dir=out, memory_bytes=64 * MiB))
    assert not (tmp_path / "a").exists()
    # A directory the user made is the user's: it stays, empty as it was.
    mine = tmp_path / "mine"
    mine.mkdir()
    with pytest.raises(DumpbedError, match="the disks could not be made"):
        run_mod.run(Scenario(out_dir=mine, memory_bytes=64 * MiB))
    assert mine.is_dir() and not list(mine.iterdir())


def test_no_qemu_img_is_refused_before_the_run_directory(tmp_path):
    farm = tmp_path / "bin"
    farm.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if os.path.isdir(directory):
            for name in os.listdir(directory):
                if name != "qemu-img" and not (farm / name).exists():
                    (farm / name).symlink_to(os.path.join(directory, name))
    _refused_before_anything(tmp_path, tmp_path / "run", "--memory", "64M", env=_env(tmp_path, PATH=str(farm)),
                             pattern=r"qemu-img not found: install qemu-utils")


# -- validate and show: what a path is ---------------------------------------------------------

def test_validate_and_show_say_what_a_path_is(tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    empty = tmp_path / "empty"
    empty.mkdir()
    cases = [
        (["validate", "/dev/null"], r"/dev/null: a character device, not a run directory or a dump image$"),
        (["validate", str(fifo)], r"fifo: a FIFO, not a run directory or a dump image$"),
        (["validate", str(tmp_path / "nothing")], r"nothing: no such file or directory"),
        (["validate", str(empty)], r"empty: not a run directory \(no scenario\.json"),
        (["show", "/dev/null"], r"/dev/null: a character device, not a dump image$"),
        (["show", str(empty)], r"empty: a directory, not a dump image or a run directory"),
        (["show", str(tmp_path / "nothing")], r"nothing: no such file or directory, not a dump image"),
    ]
    for args, pattern in cases:
        _one_line(_dumpbed(tmp_path, *args), pattern)


@pytest.fixture(scope="module")
def synthetic_run(tmp_path_factory) -> Path:
    """A complete, valid run directory (tests/support/synth.py: no QEMU)."""
    run_dir = tmp_path_factory.mktemp("bad-input") / "run"
    synth.make_run(run_dir)
    return run_dir


def _with_closed_stdout(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """The command with its stdout a pipe nobody reads any more (`| head -1` once head is gone)."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        return subprocess.run([*DUMPBED, *args], stdout=write_end, stderr=subprocess.PIPE, text=True,
                              timeout=QUICK, env=_env(tmp_path))
    finally:
        os.close(write_end)


def test_a_closed_stdout_ends_quietly_with_the_commands_own_status(tmp_path, synthetic_run):
    """`dumpbed validate RUN | head -1`: no "Broken pipe", no traceback; the status is the one
    the command has with its whole output read (the verdict for validate, 0 for list and show)."""
    image = synthetic_run / "dump.img"
    for args in (["validate", str(synthetic_run)], ["validate", str(synthetic_run), "--json"],
                 ["validate", str(image)], ["show", str(image)], ["list", "faults"]):
        whole = _dumpbed(tmp_path, *args)
        assert whole.stdout and whole.returncode in (0, 1), (args, whole.stderr)
        closed = _with_closed_stdout(tmp_path, *args)
        assert closed.stderr == "", (args, closed.stderr)
        assert closed.returncode == whole.returncode, (args, closed.returncode, whole.returncode)


def test_a_failing_verdict_keeps_its_status_on_a_closed_stdout(tmp_path, synthetic_run):
    broken = tmp_path / "broken"
    synth.make_run(broken)
    with open(broken / "dump.img", "r+b") as f:  # a byte of the dump's body
        layout = json.loads((broken / "layout.json").read_text())
        part = next(p for p in layout["partitions"] if p["name"] == "dumpbed-dump")
        f.seek(part["first_lba"] * layout["block_size"] + 2 * MiB)
        old = f.read(1)
        f.seek(-1, os.SEEK_CUR)
        f.write(bytes([old[0] ^ 1]))
    assert _dumpbed(tmp_path, "validate", str(broken)).returncode == 1
    closed = _with_closed_stdout(tmp_path, "validate", str(broken))
    assert (closed.returncode, closed.stderr) == (1, "")


def test_an_interrupted_run_is_reported_interrupted(tmp_path, synthetic_run):
    """A run directory with the interrupted marker is not judged: validate says why (exit 2)."""
    run_dir = tmp_path / "run"
    synth.make_run(run_dir)
    (run_dir / run_mod.INTERRUPTED).write_text(json.dumps({"signal": "SIGINT", "time": time.time()}) + "\n")
    _one_line(_dumpbed(tmp_path, "validate", str(run_dir)),
              r"run: interrupted: the run was stopped by SIGINT \(\d{4}-\d\d-\d\d [\d:]+\) before it finished")
    (run_dir / run_mod.INTERRUPTED).write_text("not json")
    _one_line(_dumpbed(tmp_path, "validate", str(run_dir)), r"interrupted: the run was stopped by a signal")


# -- Ctrl-C: the one test here that boots a guest ------------------------------------------------

def test_ctrl_c_marks_the_run_interrupted(tmp_path):
    """SIGINT to `dumpbed run` (what Ctrl-C at a terminal sends it: QEMU runs in a session of
    its own) once the guest is up: exit 130, QEMU shut down, the directory marked interrupted,
    and `dumpbed validate` of it says so (exit 2) instead of failing the driver."""
    out = tmp_path / "run"
    proc = subprocess.Popen([*DUMPBED, "run", "--memory", "32M", "--out", str(out), "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(tmp_path))
    try:
        _wait_for(lambda: _result_has(out, "READY") or proc.poll() is not None, "the guest to boot")
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        os.kill(proc.pid, signal.SIGINT)  # the dumpbed process this test started
    finally:
        returncode, stdout, stderr = _finish(proc)
    assert returncode == 130, stderr
    assert stderr.strip().splitlines() == ["dumpbed: interrupted"], stderr
    marker = json.loads((out / run_mod.INTERRUPTED).read_text())
    assert marker["signal"] == "SIGINT" and abs(marker["time"] - time.time()) < 600
    assert not (out / "report.json").exists()
    _assert_nothing_left(tmp_path, out)
    _one_line(_dumpbed(tmp_path, "validate", str(out)), r"interrupted: the run was stopped by SIGINT")


# -- scratch dirs of a killed harness ----------------------------------------------------------

def _dead_pid() -> int:
    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_scratch_dirs_of_dead_harnesses_are_swept_and_no_one_elses(tmp_path):
    root = tmp_path / "tmp"
    root.mkdir()
    me = os.getpid()
    my_start = machine_mod._start_time(me)
    dead = root / f"dumpbed-{_dead_pid()}-12345-abc_def1"
    reused = root / f"dumpbed-{me}-{my_start + 1}-x1y2z3"  # our PID, another start time: a reused PID
    alive = root / f"dumpbed-{me}-{my_start}-q9w8e7"
    old_style = root / "dumpbed-k2j3h4"  # no owner in its name: never touched
    replay = root / "dumpbed-replay-1234-99-a1"
    other = root / "something-else-1-2-a"
    for d in (dead, reused, alive, old_style, replay, other):
        d.mkdir()
        (d / "f").write_text("x")
    not_a_dir = root / f"dumpbed-{_dead_pid()}-1-file0"
    not_a_dir.write_text("a file, not a scratch dir")
    removed = machine_mod.sweep_scratch_dirs(str(root))
    assert sorted(removed) == sorted([str(dead), str(reused)])
    assert sorted(p.name for p in root.iterdir()) == sorted(
        p.name for p in (alive, old_style, replay, other, not_a_dir))


def test_a_run_sweeps_what_a_killed_harness_left_in_its_tmpdir(tmp_path):
    """The next launch sweeps: a malformed DUMPBED_QEMU_ARGS stops this run at its launch (no
    QEMU starts), after the sweep; its own scratch dir is never made."""
    env = _env(tmp_path, DUMPBED_QEMU_ARGS="'unbalanced")
    left = Path(env["TMPDIR"]) / f"dumpbed-{_dead_pid()}-777-k1ll3d"
    left.mkdir()
    (left / "core").write_text("what QEMU left in its cwd")
    out = tmp_path / "run"
    proc = subprocess.run([*DUMPBED, "run", "--memory", "64M", "--out", str(out)], capture_output=True, text=True,
                          timeout=300, env=env)
    assert proc.returncode == 2 and "DUMPBED_QEMU_ARGS" in proc.stderr, proc.stderr
    assert not left.exists(), "the dead harness's scratch dir was not swept"
    _assert_nothing_left(tmp_path, out, qemu_started=False)


@pytest.mark.parametrize("memory,pattern", [("1M", r"the guest needs at least"), ("inf", r"not a size"),
                                            ("1T", r"not enough disk space or memory")])
def test_bench_refuses_bad_memory_before_anything_is_written(tmp_path, memory, pattern):
    out = tmp_path / "bench"
    _one_line(_dumpbed(tmp_path, "bench", "--memory", memory, "--out", str(out)), pattern)
    assert not out.exists()
