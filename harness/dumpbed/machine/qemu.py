"""QEMU lifecycle: one Machine is one QEMU process, from paused start to nothing left behind.

The shape follows QEMU's own python/qemu/machine: argv as a list, start paused (-S), QMP and the
console on socketpairs handed to QEMU as file descriptors (no socket paths, so no 108-byte
limit and nothing to clean on disk), events drained from the start, and a layered shutdown:
QMP quit, then SIGTERM, then SIGKILL, always by PID. QEMU is also told to die with us
(PR_SET_PDEATHSIG): a harness killed outright leaves no QEMU behind.

Every failure to start (no binary, no firmware, a bad argument, a locked image, a full disk) is
a DumpbedError with QEMU's own one-line reason, and leaves no process or scratch dir behind.

Environment knobs, for people and for the robustness tests:
  DUMPBED_QEMU_ARGS  extra QEMU arguments (shell words) appended to every command line
  DUMPBED_FIRMWARE   the ROM file given to -bios instead of the chosen firmware's own
"""
from __future__ import annotations

import functools
import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from dumpbed.children import die_with_parent
from dumpbed.errors import DumpbedError
from dumpbed.machine import accel as accel_mod
from dumpbed.machine.console import Console
from dumpbed.machine.qmp import QmpError, QmpSession

QEMU_BINARY = "qemu-system-x86_64"
FIRMWARE = {
    "qboot": "/usr/share/qemu/qboot.rom",
    "seabios": None,  # QEMU's default BIOS
}
# The RAM backend's id: "pc.ram", the name of the pc machine's own RAM block, so the block
# keeps its name (migration, pmemsave and dump-guest-memory see the same RAM either way).
RAM_BACKEND_ID = "pc.ram"
# QMP answers only once the RAM is preallocated: launch() waits this much longer per GiB
# (a nested host's first touch of RAM has been seen to take over 4 s per GiB).
PREALLOC_SECONDS_PER_GIB = 10.0
QEMU_ARGS_ENV = "DUMPBED_QEMU_ARGS"
FIRMWARE_ENV = "DUMPBED_FIRMWARE"
DEBUG_EXIT_PORT = 0xF4
# Statuses QEMU itself exits with (docs/guest-interface.md): 0 after quit, 1 on its own
# errors. The guest's isa-debug-exit statuses are 67 and up.
QEMU_OWN_STATUSES = (0, 1)
RESULT_PORT = 0xE9

# PIDs of every QEMU this process started and has not yet seen exit: the leak check reads it.
LIVE_PIDS: set[int] = set()
# Every scratch dir this process created; each must be gone once its Machine is shut down.
SCRATCH_DIRS: list[str] = []
# A scratch dir's name says whose it is: dumpbed-PID-STARTTIME-XXXXXXXX (the PID of the harness
# that made it and that process's start time, so a PID reused since is told apart). The next
# launch sweeps those whose owner is gone (a harness killed with SIGKILL cleans nothing up).
_SCRATCH_NAME = re.compile(r"dumpbed-(?P<pid>\d+)-(?P<start>\d+)-[A-Za-z0-9_]+")
_LIVE_LOCK = threading.Lock()


def _start_time(pid: int) -> Optional[int]:
    """A process's start time (clock ticks after boot, /proc/PID/stat), None if there is no such
    process or /proc does not say."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
        return int(text[text.rindex(")") + 2 :].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _owner_alive(pid: int, start: int) -> bool:
    """Whether the process that named a scratch dir (PID, start time) still runs; when in doubt
    (/proc unreadable, a process we may not signal), it does."""
    now = _start_time(pid)
    if now is not None:
        return now == start  # another start time: the PID was reused, its owner is gone
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _scratch_prefix() -> str:
    return f"dumpbed-{os.getpid()}-{_start_time(os.getpid()) or 0}-"


def sweep_scratch_dirs(root: Optional[str] = None) -> list[str]:
    """Remove the scratch dirs (in `root`, default the temp dir) that dumpbed processes left
    when they were killed: only dirs named by _SCRATCH_NAME, owned by this user, whose process
    is gone (no such PID, or one started at another time). A live process's are never touched.
    Returns what was removed."""
    root = root or tempfile.gettempdir()
    try:
        names = os.listdir(root)
    except OSError:
        return []
    removed = []
    for name in names:
        m = _SCRATCH_NAME.fullmatch(name)
        if m is None:
            continue
        path = os.path.join(root, name)
        try:
            st = os.lstat(path)
        except OSError:
            continue
        if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.getuid():
            continue
        if _owner_alive(int(m["pid"]), int(m["start"])):
            continue  # its harness is still running
        shutil.rmtree(path, ignore_errors=True)
        removed.append(path)
    return removed


def _chardev_path(path: Path) -> str:
    """A path inside a QEMU option list: commas are doubled (QEMU's escape)."""
    return str(path).replace(",", ",,")


def firmware_path(name: str) -> Optional[str]:
    """The ROM file for -bios (None: QEMU's default BIOS); DUMPBED_FIRMWARE overrides it."""
    if name not in FIRMWARE:
        raise DumpbedError(f"unknown firmware {name!r} (choose {' or '.join(FIRMWARE)})")
    return os.environ.get(FIRMWARE_ENV) or FIRMWARE[name]


def require_firmware(name: str) -> None:
    """The chosen firmware's ROM file exists (QEMU's default BIOS needs none), or a one-line
    DumpbedError naming it."""
    firmware = firmware_path(name)
    if firmware and not Path(firmware).is_file():
        source = f" (from {FIRMWARE_ENV})" if os.environ.get(FIRMWARE_ENV) else ""
        raise DumpbedError(f"firmware {name}: ROM file {firmware}{source} not found")


def prealloc_threads() -> int:
    """Threads QEMU preallocates guest RAM with: the CPUs this process may run on (at most 8)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, 8))


def extra_qemu_args() -> list[str]:
    try:
        return shlex.split(os.environ.get(QEMU_ARGS_ENV, ""))
    except ValueError as exc:
        raise DumpbedError(f"{QEMU_ARGS_ENV}: {exc}") from None


_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT[\d:.]+Z ")


def qemu_error_line(stderr_text: str) -> Optional[str]:
    """QEMU's last error message from its stderr, in one line: the program name and any
    timestamp dropped, a long option value shortened, continuation lines joined."""
    lines = [_TIMESTAMP.sub("", l).rstrip() for l in stderr_text.splitlines()]
    lines = [l for l in lines if l.strip()]
    starts = [i for i, l in enumerate(lines) if re.match(r"^qemu(-system-\w+)?: ", l)]
    if not starts:
        return lines[-1] if lines else None
    first = starts[-1]
    message = lines[first].split(": ", 1)[1]
    option = re.match(r"^(-[\w-]+) (\{.*?\}|[^:]*): (.*)$", message)
    if option:  # "-blockdev {...}: Failed to get lock": the JSON is noise on one line
        value = option[2] if len(option[2]) <= 60 else option[2][:57] + "..."
        message = f"{option[1]} {value}: {option[3]}"
    return "; ".join([message] + lines[first + 1 :])[:500]


def require_qemu() -> None:
    """QEMU is on PATH, or a one-line DumpbedError saying how to get it."""
    if shutil.which(QEMU_BINARY) is None:
        raise DumpbedError(f"{QEMU_BINARY} not found on PATH: install qemu-system-x86 (make setup does)")


@dataclass
class MachineConfig:
    kernel: Path
    cmdline: str
    memory_bytes: int
    accel: str  # "kvm" or "tcg", already chosen
    initrd: Optional[Path] = None  # with a Linux bzImage
    symbols: Optional[Path] = None  # the kernel's symbol table (for the crash kinds' checks; not QEMU's)
    ram_below_4g: Optional[int] = None  # the pc machine's max-ram-below-4g: the rest lies above 4 GiB
    firmware: str = "qboot"
    devices: list[str] = field(default_factory=list)  # disk and controller arguments (topology)
    extra_args: list[str] = field(default_factory=list)
    # QEMU trace events to log to qemu-trace.log (e.g. each write command a disk receives).
    trace_events: list[str] = field(default_factory=list)
    pass_fds: tuple[int, ...] = ()  # more descriptors QEMU inherits (a network dump's link socket)


class Machine:
    """Launch with `with Machine(config, artifacts_dir) as m:`; exit shuts QEMU down."""

    def __init__(self, config: MachineConfig, artifacts_dir: Path):
        self.config = config
        self.artifacts = Path(artifacts_dir).resolve()  # QEMU runs in a scratch cwd
        self.process: Optional[subprocess.Popen] = None
        self.qmp: Optional[QmpSession] = None
        self.console: Optional[Console] = None
        self._scratch: Optional[str] = None
        self._stderr = None
        self.exit_status: Optional[int] = None
        self.launched = False  # true once QEMU answered on QMP
        self.killed_on_purpose = False  # kill() was called: a fault scenario, not a failure

    # -- argv -------------------------------------------------------------------------------

    def argv(self, qmp_fd: int, console_fd: int) -> list[str]:
        c = self.config
        mem_mib = c.memory_bytes // (1024 * 1024)
        argv = [
            QEMU_BINARY,
            "-machine", f"pc,memory-backend={RAM_BACKEND_ID}"
            + (f",max-ram-below-4g={c.ram_below_4g}" if c.ram_below_4g else ""),
            "-accel", c.accel,
            "-cpu", accel_mod.cpu_model(c.accel),
            "-smp", "1",
            "-m", f"{mem_mib}M",
            # Guest RAM allocated and touched by QEMU before the guest runs, on every host CPU:
            # the guest's fill (or first touch) would otherwise fault it in one vCPU fault at a
            # time, which under nested KVM costs up to seconds per GiB.
            "-object", f"memory-backend-ram,id={RAM_BACKEND_ID},size={mem_mib}M,prealloc=on,"
            f"prealloc-threads={prealloc_threads()}",
            "-nodefaults", "-no-user-config", "-display", "none",
            "-S",
            "-kernel", str(c.kernel),
            *(["-initrd", str(c.initrd)] if c.initrd else []),
            "-append", c.cmdline,
            "-chardev", f"socket,id=qmp,fd={qmp_fd}",
            "-mon", "chardev=qmp,mode=control",
            "-chardev", f"socket,id=console,fd={console_fd}",
            "-serial", "chardev:console",
            "-chardev", f"file,id=result,path={_chardev_path(self.artifacts / 'result.log')}",
            "-device", f"isa-debugcon,iobase={RESULT_PORT:#x},chardev=result",
            "-device", f"isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=4",
        ]
        firmware = firmware_path(c.firmware)
        if firmware:
            argv += ["-bios", firmware]
        argv += c.devices
        if c.trace_events:
            for event in c.trace_events:
                argv += ["-trace", f"enable={event}"]
            # each line with the host time: what the command log orders it by (capture/cmdlog.py)
            argv += ["-D", str(self.artifacts / "qemu-trace.log"), "-msg", "timestamp=on"]
        return argv + c.extra_args + extra_qemu_args()

    # -- lifecycle --------------------------------------------------------------------------

    def launch(self, qmp_timeout: float = 10.0) -> None:
        """Start QEMU paused and connect QMP and the console. On any failure QEMU is gone and
        the scratch dir removed before the error propagates."""
        c = self.config
        sweep_scratch_dirs()  # what a killed harness left
        require_qemu()
        if not Path(c.kernel).is_file():
            raise DumpbedError(f"guest kernel {c.kernel} not found")
        require_firmware(c.firmware)
        extra_qemu_args()  # a malformed DUMPBED_QEMU_ARGS is refused before anything starts
        # QEMU preallocates the guest's RAM before it answers on QMP.
        qmp_timeout += PREALLOC_SECONDS_PER_GIB * c.memory_bytes / (1 << 30)
        try:
            self._start(qmp_timeout)
        except BaseException:
            self.shutdown()
            raise
        self.launched = True

    def _start(self, qmp_timeout: float) -> None:
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self._scratch = tempfile.mkdtemp(prefix=_scratch_prefix())
        SCRATCH_DIRS.append(self._scratch)
        qmp_ours, qmp_theirs = socket.socketpair()
        con_ours, con_theirs = socket.socketpair()
        try:
            argv = self.argv(qmp_theirs.fileno(), con_theirs.fileno())
            (self.artifacts / "qemu-argv.json").write_text(json.dumps(argv, indent=1) + "\n")
            (self.artifacts / "qemu-cmdline.txt").write_text(shlex.join(argv) + "\n")
            self._stderr = open(self.artifacts / "qemu-stderr.log", "wb")
            try:
                self.process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=self._stderr,
                    stderr=self._stderr,
                    pass_fds=(qmp_theirs.fileno(), con_theirs.fileno(), *self.config.pass_fds),
                    cwd=self._scratch,
                    start_new_session=True,  # Ctrl-C at the terminal reaches us, not QEMU
                    preexec_fn=functools.partial(die_with_parent, os.getpid()),
                )
            except OSError as exc:
                raise DumpbedError(f"cannot start {QEMU_BINARY}: {exc.strerror}") from None
            with _LIVE_LOCK:
                LIVE_PIDS.add(self.process.pid)
        except BaseException:
            qmp_ours.close()
            con_ours.close()
            raise
        finally:
            qmp_theirs.close()
            con_theirs.close()
        # For a person (gdb, perf, kill) and for the leak checks of tests that run the CLI.
        (self.artifacts / "qemu.pid").write_text(f"{self.process.pid}\n")
        try:
            self.console = Console(con_ours, str(self.artifacts / "console.log"))
        except BaseException:
            con_ours.close()
            qmp_ours.close()
            raise
        try:
            self.qmp = QmpSession(qmp_ours, str(self.artifacts / "qmp.jsonl"), qmp_timeout)
        except QmpError as exc:
            # A device that fails to realise (bad argument, locked image) shows up as EOF on
            # QMP: QEMU's stderr says why.
            qmp_ours.close()
            if self.wait_exit(2) is None:
                raise DumpbedError(f"QEMU did not start: {exc} (QEMU still running)") from None
            raise DumpbedError(f"QEMU did not start: {self.stderr_summary()}") from None

    def stderr_text(self) -> str:
        try:
            return (self.artifacts / "qemu-stderr.log").read_text(errors="replace")
        except OSError:
            return ""

    def stderr_tail(self, lines: int = 20) -> str:
        return "\n".join(self.stderr_text().rstrip().splitlines()[-lines:])

    def stderr_summary(self) -> str:
        """QEMU's last error message and how it ended, in one line."""
        return f"{qemu_error_line(self.stderr_text()) or 'no message on stderr'} ({self.state()})"

    def state(self) -> str:
        """'running', 'exited with status N' or 'killed by SIGNAME'."""
        status = self.poll()
        if self.process is None and status is None:
            return "not started"
        if status is None:
            return "running"
        if status < 0:
            try:
                return f"killed by {signal.Signals(-status).name}"
            except ValueError:
                return f"killed by signal {-status}"
        return f"exited with status {status}"

    def died(self, grace: float = 0.0) -> Optional[str]:
        """How QEMU ended if it ended on its own terms rather than the guest's: killed by a
        signal, or exited with one of QEMU's own statuses (with its error message). None while
        it runs (after up to `grace` seconds of waiting) or when the guest made it exit."""
        if self.process is None or self.killed_on_purpose:
            return None
        status = self.poll()
        if status is None and grace > 0:
            status = self.wait_exit(grace)
        if status is None or (status >= 0 and status not in QEMU_OWN_STATUSES):
            return None
        if status < 0:
            return f"was {self.state()}"
        message = qemu_error_line(self.stderr_text())
        return f"{self.state()}" + (f": {message}" if message else "")

    def cont(self) -> None:
        self.qmp.command("cont")

    def stop(self) -> None:
        self.qmp.command("stop")

    def interrupts_in_service(self) -> list[int]:
        """The vectors CPU 0's local APIC has in service (ISR, HMP `info lapic`): accepted and
        not yet ended. Under KVM that includes an interrupt taken from the APIC whose delivery
        into the guest the stop cut short: it is delivered first when the VM runs again."""
        text = self.qmp.hmp("info lapic")
        line = re.search(r"^ISR\s+(.*)$", text, re.M)
        return [int(v) for v in re.findall(r"\b(\d+)", line.group(1))] if line else []

    def run_state(self, timeout: float = 30.0) -> str:
        """The VM's run state as QEMU says it (query-status): 'running', 'paused', 'io-error',
        ... (the QEMU process's own state is state())."""
        return self.qmp.command("query-status", timeout=timeout).get("status", "")

    def is_running(self) -> bool:
        return self.process is not None and self.poll() is None

    def poll(self) -> Optional[int]:
        if self.process is None:
            return self.exit_status
        status = self.process.poll()
        if status is not None:
            self._reaped(status)
        return status

    def wait_exit(self, timeout: float) -> Optional[int]:
        """QEMU's exit status, or None if it is still running after `timeout` seconds."""
        if self.process is None:
            return self.exit_status
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            return None
        self._reaped(status)
        return status

    def _reaped(self, status: int) -> None:
        self.exit_status = status
        with _LIVE_LOCK:
            LIVE_PIDS.discard(self.process.pid)

    def shutdown(self, soft_timeout: float = 5.0) -> None:
        """QMP quit, then SIGTERM, then SIGKILL, by PID; then close everything. Idempotent.
        Bounded: at most 3 x soft_timeout + 30 s, even for a QEMU stuck in the block layer."""
        try:
            if self.process is not None and self.poll() is None:
                if self.qmp is not None:
                    try:
                        self.qmp.command("quit", timeout=soft_timeout)
                    except QmpError:
                        pass  # QEMU may close the socket before answering; the wait decides
                if self.wait_exit(soft_timeout) is None:
                    self._signal(signal.SIGTERM)
                    if self.wait_exit(soft_timeout) is None:
                        # A request suspended in the block layer makes QEMU ignore SIGTERM.
                        self._signal(signal.SIGKILL)
                        if self.wait_exit(30) is None:
                            raise DumpbedError(f"QEMU pid {self.process.pid} survived SIGKILL for 30s")
        finally:
            if self.qmp is not None:
                self.qmp.close()
                self.qmp = None
            if self.console is not None:
                self.console.close()
                self.console = None
            self._cleanup_files()

    def kill(self) -> None:
        """SIGKILL now (a fault scenario), then the usual cleanup."""
        self.killed_on_purpose = True
        if self.process is not None and self.poll() is None:
            self._signal(signal.SIGKILL)
            self.wait_exit(30)
        self.shutdown()

    def _signal(self, sig: int) -> None:
        try:
            os.kill(self.process.pid, sig)
        except ProcessLookupError:
            pass

    def _cleanup_files(self) -> None:
        if self._stderr is not None:
            try:
                self._stderr.close()
            except OSError:
                pass
            self._stderr = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __enter__(self) -> "Machine":
        self.launch()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
