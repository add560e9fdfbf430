"""The harness never hangs and never leaks: each way a run can break on the host's side ends in
exactly one `dumpbed: error: ...` line on stderr and exit status 2 (a DumpbedError from the
Python API), and leaves no QEMU process, socket or scratch dir behind.

Each CLI test runs `dumpbed run --json` in a subprocess with a private TMPDIR (where QEMU's
scratch dir goes), so a leaked scratch dir is seen; the QEMU PID is the one the harness wrote
to qemu.pid. Processes are only ever signalled by the PIDs these tests started or read there.

The Python API tests run their scenario through the dumpbed pytest plugin's dumpbed_run
(run_and_validate, whose run() raises the error), but two: the run that must lie on a small
filesystem (dumpbed_run chooses its directory) and the dump timeout, which is about run()'s own
outcome, not a validated run.
"""
from __future__ import annotations

import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable, Optional

import pytest

from dumpbed import run as run_mod
from dumpbed.errors import DumpbedError
from dumpbed.images.layout import DiskLayout
from dumpbed.machine import qemu as machine_mod
from tests.support.procs import alive

DUMPBED = [sys.executable, "-m", "dumpbed.cli"]
MEMORY = "64M"
MIB = 1 << 20
RUN_TIMEOUT = 300  # far above a 64 MiB run under TCG; a hang fails the test instead of the suite


# -- helpers ----------------------------------------------------------------------------------

def _env(tmp_path: Path, **extra: str) -> dict:
    scratch = tmp_path / "tmpdir"
    scratch.mkdir(exist_ok=True)
    env = dict(os.environ, TMPDIR=str(scratch))
    env.pop(machine_mod.QEMU_ARGS_ENV, None)
    env.pop(machine_mod.FIRMWARE_ENV, None)
    env.update(extra)
    return env


def _start(tmp_path: Path, out: Path, *args: str, env: Optional[dict] = None) -> subprocess.Popen:
    return subprocess.Popen([*DUMPBED, "run", "--memory", MEMORY, "--out", str(out), "--json", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env or _env(tmp_path))


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    try:
        stdout, stderr = proc.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()  # the dumpbed process this test started, by its PID
        stdout, stderr = proc.communicate()
        pytest.fail(f"dumpbed run hung for {RUN_TIMEOUT}s; stderr: {stderr[-2000:]}")
    return proc.returncode, stdout, stderr


def _dumpbed_run(tmp_path: Path, out: Path, *args: str, env: Optional[dict] = None) -> tuple[int, str, str]:
    return _finish(_start(tmp_path, out, *args, env=env))


def _assert_one_error_line(returncode: int, stdout: str, stderr: str, pattern: str) -> str:
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{stderr}"
    assert lines[0].startswith("dumpbed: error: "), lines[0]
    assert re.search(pattern, lines[0]), f"{lines[0]!r} does not match {pattern!r}"
    assert returncode == 2, f"exit status {returncode}; stdout {stdout[-500:]}"
    return lines[0]


def _state(pid: int) -> Optional[str]:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text[text.rindex(")") + 2]


def _processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line mentions `text` (a run's directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


def _describe(pid: int) -> str:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        return f"state {_state(pid)}, ppid {Path(f'/proc/{pid}/stat').read_text().rsplit(')', 1)[1].split()[1]}: {cmdline[:300]}"
    except OSError:
        return "gone"


def _qemu_pid(out: Path) -> Optional[int]:
    try:
        return int((out / "qemu.pid").read_text())
    except (OSError, ValueError):
        return None


def _assert_nothing_left(tmp_path: Path, out: Path, qemu_started: bool = True) -> None:
    """No QEMU (by the PID the harness recorded, and any process naming the run), no scratch
    dir in the private TMPDIR, no socket file anywhere in the run or TMPDIR."""
    pid = _qemu_pid(out)
    if qemu_started:
        assert pid is not None, f"the harness recorded no QEMU PID in {out}/qemu.pid"
    if pid is not None:
        deadline = time.monotonic() + 5  # an orphan would be reaped by init, not by us
        while alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(pid), f"QEMU pid {pid} is still running"
    others = {p: _describe(p) for p in _processes_mentioning(str(out))}
    assert not others, f"processes still using {out}: {others}"
    scratch = tmp_path / "tmpdir"
    left = sorted(p.name for p in scratch.iterdir()) if os.path.isdir(scratch) else []
    assert not left, f"left in TMPDIR: {left}"
    for root in (out, scratch):
        if os.path.isdir(root):  # False, not an error, for a path too long to exist
            sockets = [p for p in root.rglob("*") if stat.S_ISSOCK(p.lstat().st_mode)]
            assert not sockets, f"socket files left: {sockets}"


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.005)


def _kill_qemu(pid: int) -> None:
    """SIGKILL the QEMU the harness started, by the PID it recorded (checked to be QEMU)."""
    comm = Path(f"/proc/{pid}/comm").read_text().strip()
    assert comm.startswith("qemu-system"), f"pid {pid} is {comm!r}, not QEMU"
    os.kill(pid, signal.SIGKILL)


def _result_has(out: Path, word: str) -> bool:
    try:
        return f"DUMPBED {word}" in (out / "result.log").read_text(errors="replace")
    except OSError:
        return False


@pytest.fixture
def api_leak_guard():
    """For Python API tests: no QEMU this process started is left, no scratch dir survives."""
    dirs_before = len(machine_mod.SCRATCH_DIRS)
    yield
    assert not machine_mod.LIVE_PIDS, f"QEMU processes left running: {machine_mod.LIVE_PIDS}"
    new_dirs = machine_mod.SCRATCH_DIRS[dirs_before:]
    assert not [d for d in new_dirs if os.path.exists(d)], f"scratch dirs left: {new_dirs}"


def _scenario(out: Path, **kw) -> run_mod.Scenario:
    return run_mod.Scenario(out_dir=out, memory_bytes=64 * MIB, **kw)


# -- QEMU refuses to start ---------------------------------------------------------------------

def test_qemu_exiting_at_start_is_one_line(tmp_path):
    out = tmp_path / "run"
    result = _dumpbed_run(tmp_path, out, env=_env(tmp_path, DUMPBED_QEMU_ARGS="-device no-such-device"))
    _assert_one_error_line(*result, r"QEMU did not start: -device no-such-device: .*not a valid device "
                                    r"model name \(exited with status 1\)$")
    _assert_nothing_left(tmp_path, out)


def test_qemu_exiting_at_start_is_a_dumpbed_error_from_the_api(dumpbed_run, monkeypatch, api_leak_guard):
    monkeypatch.setenv(machine_mod.QEMU_ARGS_ENV, "-device no-such-device")
    with pytest.raises(DumpbedError, match="QEMU did not start: .*no-such-device"):
        dumpbed_run(memory=MEMORY)


# -- QEMU dies mid-run -------------------------------------------------------------------------

KILL_POINTS = {
    # as soon as QEMU exists (QMP greeting, or the boot)
    "starting": lambda out: _qemu_pid(out) is not None,
    # the guest is up: the harness is at the console (estimates) or taking the ground truth
    "booted": lambda out: _result_has(out, "READY"),
    # the crash is injected: the harness waits for the dump's DONE
    "dumping": lambda out: (out / "timeline.json").exists(),
}


@pytest.mark.parametrize("when", list(KILL_POINTS))
def test_qemu_killed_mid_run_is_one_line(tmp_path, when):
    out = tmp_path / "run"
    proc = _start(tmp_path, out)
    try:
        _wait_for(lambda: KILL_POINTS[when](out) or proc.poll() is not None, f"the run to reach {when}")
        assert proc.poll() is None, f"dumpbed ended before {when}: {proc.communicate()[1][-2000:]}"
        _kill_qemu(_qemu_pid(out))
    finally:
        result = _finish(proc)
    line = _assert_one_error_line(*result, r"QEMU (was killed by SIGKILL|did not start: .*killed by SIGKILL)")
    if when != "starting":  # by then the diagnostics are collected and named
        assert "diagnostics in" in line, line
        diagnostics = (out / "diagnostics.txt").read_text()
        for part in ("problem:", "registers unavailable: QEMU is not running", "console tail:",
                     "qemu stderr tail:", "killed by SIGKILL"):
            assert part in diagnostics, part
    _assert_nothing_left(tmp_path, out)


def test_qemu_killed_mid_run_is_a_dumpbed_error_from_the_api(dumpbed_run, api_leak_guard):
    def kill_while_paused(machine):  # after the ground truth, before the crash
        _kill_qemu(machine.process.pid)

    with pytest.raises(DumpbedError, match=r"QEMU was killed by SIGKILL .*diagnostics in"):
        dumpbed_run(memory=MEMORY, on_paused=kill_while_paused)


# -- no QEMU binary ----------------------------------------------------------------------------

def _path_without_qemu(tmp_path: Path) -> str:
    """A PATH with every tool of the current one (make, gcc, qemu-img, ...) but no qemu-system-*."""
    farm = tmp_path / "bin"
    farm.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(directory):
            continue
        for name in os.listdir(directory):
            link = farm / name
            if name.startswith("qemu-system") or link.exists() or link.is_symlink():
                continue
            link.symlink_to(os.path.join(directory, name))
    assert shutil.which(machine_mod.QEMU_BINARY, path=str(farm)) is None
    assert shutil.which("make", path=str(farm)) and shutil.which("qemu-img", path=str(farm))
    return str(farm)


def test_qemu_not_on_path_is_one_line(tmp_path):
    out = tmp_path / "run"
    result = _dumpbed_run(tmp_path, out, env=_env(tmp_path, PATH=_path_without_qemu(tmp_path)))
    _assert_one_error_line(*result, r"qemu-system-x86_64 not found on PATH: install qemu-system-x86")
    _assert_nothing_left(tmp_path, out, qemu_started=False)


def test_qemu_not_on_path_is_a_dumpbed_error_from_the_api(dumpbed_run, tmp_path, monkeypatch, api_leak_guard):
    monkeypatch.setenv("PATH", _path_without_qemu(tmp_path))
    with pytest.raises(DumpbedError, match="qemu-system-x86_64 not found on PATH"):
        dumpbed_run(memory=MEMORY)


# -- firmware missing --------------------------------------------------------------------------

@pytest.mark.parametrize("firmware", ["qboot", "seabios"])
def test_missing_firmware_is_one_line(tmp_path, firmware):
    out = tmp_path / "run"
    rom = tmp_path / "no-such-dir" / f"{firmware}.rom"
    result = _dumpbed_run(tmp_path, out, "--firmware", firmware,
                          env=_env(tmp_path, DUMPBED_FIRMWARE=str(rom)))
    _assert_one_error_line(*result, rf"firmware {firmware}: ROM file {re.escape(str(rom))} .*not found")
    _assert_nothing_left(tmp_path, out, qemu_started=False)


def test_unloadable_firmware_is_one_line(tmp_path):
    """A ROM that exists but QEMU cannot use (an empty file): QEMU's own reason, one line."""
    out = tmp_path / "run"
    rom = tmp_path / "empty.rom"
    rom.write_bytes(b"")
    result = _dumpbed_run(tmp_path, out, env=_env(tmp_path, DUMPBED_FIRMWARE=str(rom)))
    _assert_one_error_line(*result, rf"QEMU did not start: .*{re.escape(str(rom))}.*\(exited with status 1\)$")
    _assert_nothing_left(tmp_path, out)


# -- long paths (sockets are socketpairs: no 108-byte limit) -----------------------------------

def test_deeply_nested_out_and_tmpdir_with_a_comma_run_fine(tmp_path):
    """QMP and the console are socketpairs handed to QEMU as fds: no socket path exists, so a
    run directory far past the 108-byte sun_path limit (and with a comma, which QEMU option
    lists escape) works, and no socket file is left anywhere."""
    out = tmp_path.joinpath(*["deeply-nested-directory"] * 8, "a,b", "run")
    assert len(str(out)) > 200
    env = _env(tmp_path)
    nested_tmp = Path(env["TMPDIR"]).joinpath(*["nested-temporary-dir"] * 6)
    nested_tmp.mkdir(parents=True)
    env["TMPDIR"] = str(nested_tmp)
    returncode, stdout, stderr = _dumpbed_run(tmp_path, out, env=env)
    assert returncode == 0, stderr[-3000:]
    assert not list(nested_tmp.iterdir()), "scratch dir left behind"
    shutil.rmtree(tmp_path / "tmpdir" / "nested-temporary-dir")
    _assert_nothing_left(tmp_path, out)


def test_impossible_out_path_is_one_line(tmp_path):
    out = tmp_path / ("x" * 300) / "run"  # a name longer than NAME_MAX
    result = _dumpbed_run(tmp_path, out)
    _assert_one_error_line(*result, r"File name too long")
    _assert_nothing_left(tmp_path, out, qemu_started=False)


# -- a disk image locked by another process ----------------------------------------------------

def test_locked_disk_image_is_one_line(tmp_path):
    """qemu-io holds the dump image's write lock from the moment the harness creates it (the
    canary fill takes far longer than qemu-io needs to open it), so QEMU cannot take it."""
    out = tmp_path / "run"
    image = out / "dump.img"
    proc = _start(tmp_path, out)
    holder = None
    try:
        _wait_for(lambda: image.exists() or proc.poll() is not None, "the dump image to be created")
        holder = subprocess.Popen(["qemu-io", "-f", "raw", str(image)], stdin=subprocess.PIPE,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        result = _finish(proc)
        assert holder.poll() is None, f"qemu-io did not hold the image: {holder.communicate()[1]!r}"
    finally:
        if proc.poll() is None:
            proc.kill()
        if holder is not None:  # the lock holder this test started, by its PID
            holder.kill()
            holder.wait(10)
    _assert_one_error_line(*result, r"QEMU did not start: .*Failed to get .*\"write\" lock; "
                                    r"Is another process using the image \[.*dump\.img\]\?")
    _assert_nothing_left(tmp_path, out)


# -- a full host disk --------------------------------------------------------------------------

@pytest.fixture
def small_filesystem(tmp_path):
    """A tmpfs of a chosen size (root only): mount(size_bytes) -> its directory."""
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root and mount(8)")
    mounts = []

    def mount(size_bytes: int) -> Path:
        where = tmp_path / f"fs{len(mounts)}"
        where.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(where)],
                              capture_output=True, text=True, timeout=30)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
        mounts.append(where)
        return where

    yield mount
    for where in mounts:
        # Busy would mean a process still holds a file there: a leak, reported loudly.
        proc = subprocess.run(["umount", str(where)], capture_output=True, text=True, timeout=30)
        assert proc.returncode == 0, f"umount {where}: {proc.stderr.strip()}"


def _image_bytes() -> int:
    return DiskLayout.for_dump(64 * MIB, block_size=512).size_bytes


def _fill(filesystem: Path, leave: int) -> None:
    """Take all but `leave` bytes of a filesystem's free space (another process filling it)."""
    free = shutil.disk_usage(filesystem).free
    with open(filesystem / "filler", "wb") as f:
        os.posix_fallocate(f.fileno(), 0, max(0, free - leave))


def test_no_room_for_the_run_is_refused_before_anything_is_written(tmp_path, small_filesystem):
    """The disk image alone would not fit: the run is refused before it writes anything."""
    out = small_filesystem(2 * MIB) / "run"
    result = _dumpbed_run(tmp_path, out)
    _assert_one_error_line(*result, r"not enough disk space for this run: the run writes about .* under "
                                    r".*run \(the disk images .*\) and its filesystem has .* free$")
    assert not out.exists()
    _assert_nothing_left(tmp_path, out, qemu_started=False)


def test_a_disk_filled_during_the_run_is_one_line(tmp_path, small_filesystem):
    """The filesystem had room when the run began and was filled (by someone else) once QEMU
    started: the 64 MiB RAM snapshot does not fit, and QEMU's vague pmemsave error is named."""
    fs = small_filesystem(_image_bytes() * 5)
    out = fs / "run"
    proc = _start(tmp_path, out)
    try:
        _wait_for(lambda: _qemu_pid(out) is not None or proc.poll() is not None, "QEMU to start")
        _fill(fs, 4 * MIB)  # the guest boots for a second or more before the snapshot
    finally:
        result = _finish(proc)
    line = _assert_one_error_line(*result, r"filesystem of .* is full")
    assert "pmemsave" in line, line
    _assert_nothing_left(tmp_path, out)


def test_no_room_for_the_run_is_a_dumpbed_error_from_the_api(tmp_path, small_filesystem, api_leak_guard):
    out = small_filesystem(2 * MIB) / "run"  # on the tmpfs: not dumpbed_run's directory
    with pytest.raises(DumpbedError, match="not enough disk space for this run"):
        run_mod.run(_scenario(out))
    assert not out.exists()


# -- timeouts: named, with diagnostics first ---------------------------------------------------

def test_dump_timeout_names_the_wait_and_saves_diagnostics(tmp_path, monkeypatch, api_leak_guard):
    """A dump that does not finish in time (a deadline of a few ms stands in for a hung driver)
    ends the run with a problem naming the wait, and diagnostics.txt taken while QEMU was up."""
    real = run_mod.timeouts
    monkeypatch.setattr(run_mod, "timeouts", lambda accel, mem: dict(real(accel, mem), dump=0.001))
    out = tmp_path / "run"
    outcome = run_mod.run(_scenario(out))
    assert outcome.problem is not None
    assert re.match(r"timed out after 0\.001s waiting for the guest to finish its dump \(DONE on the result "
                    r"channel\); diagnostics in .*diagnostics\.txt$", outcome.problem), outcome.problem
    diagnostics = (out / "diagnostics.txt").read_text()
    assert re.search(r"^registers:\n.*RIP=[0-9a-f]{16}", diagnostics, re.M | re.S), diagnostics[:2000]
    for part in ("problem: timed out", "console tail:", "qemu stderr tail:", "result channel tail:",
                 "DUMPBED READY"):
        assert part in diagnostics, part
    # The console tail is the end of what the console said by then (the crash's messages may
    # have pushed the prompt out of it): a piece of console.log, not empty.
    tail = diagnostics.split("console tail:\n", 1)[1].split("\n\n", 1)[0]
    assert tail.strip() and tail in (out / "console.log").read_text(errors="replace")


# -- the harness itself is stopped -------------------------------------------------------------

@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["SIGTERM", "SIGKILL"])
def test_dumpbed_stopped_mid_run_leaves_no_qemu(tmp_path, sig):
    """SIGTERM unwinds (QEMU shut down, scratch dir removed, one line); even SIGKILL, which
    runs no cleanup at all, takes QEMU with it (PR_SET_PDEATHSIG)."""
    out = tmp_path / "run"
    proc = _start(tmp_path, out)
    try:
        _wait_for(lambda: _result_has(out, "READY") or proc.poll() is not None, "the guest to boot")
        assert proc.poll() is None, proc.communicate()[1][-2000:]
        qemu = _qemu_pid(out)
        os.kill(proc.pid, sig)  # the dumpbed process this test started
    finally:
        returncode, stdout, stderr = _finish(proc)
    if sig == signal.SIGTERM:
        assert returncode == 128 + signal.SIGTERM, stderr
        assert stderr.strip().splitlines() == ["dumpbed: terminated by SIGTERM"], stderr
    else:
        assert returncode == -signal.SIGKILL
        # Nothing ran to remove the scratch dir: only QEMU's end is promised here.
        shutil.rmtree(tmp_path / "tmpdir")
    _wait_for(lambda: not alive(qemu), f"QEMU pid {qemu} to end with the harness", timeout=10)
    _assert_nothing_left(tmp_path, out)
