"""QEMU lifecycle: one Machine is one QEMU process, from paused start to nothing left behind.

The shape follows QEMU's own python/qemu/machine: argv as a list, start paused (-S), QMP and the
console on socketpairs handed to QEMU as file descriptors (no socket paths, so no 108-byte
limit and nothing to clean on disk), events drained from the start, and a layered shutdown:
QMP quit, then SIGTERM, then SIGKILL, always by PID.
"""
from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from harness import accel as accel_mod
from harness.console import Console
from harness.deadline import Deadline
from harness.errors import DumpbedError
from harness.qmp import QmpError, QmpSession

QEMU_BINARY = "qemu-system-x86_64"
FIRMWARE = {
    "qboot": "/usr/share/qemu/qboot.rom",
    "seabios": None,  # QEMU's default BIOS
}
DEBUG_EXIT_PORT = 0xF4
RESULT_PORT = 0xE9

# PIDs of every QEMU this process started and has not yet seen exit: the leak check reads it.
LIVE_PIDS: set[int] = set()
# Every scratch dir this process created; each must be gone once its Machine is shut down.
SCRATCH_DIRS: list[str] = []
_LIVE_LOCK = threading.Lock()


@dataclass
class MachineConfig:
    kernel: Path
    cmdline: str
    memory_bytes: int
    accel: str  # "kvm" or "tcg", already chosen
    firmware: str = "qboot"
    devices: list[str] = field(default_factory=list)  # disk and controller arguments (topology)
    extra_args: list[str] = field(default_factory=list)
    # QEMU trace events to log to qemu-trace.log (e.g. each write command a disk receives).
    trace_events: list[str] = field(default_factory=list)


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

    # -- argv -------------------------------------------------------------------------------

    def argv(self, qmp_fd: int, console_fd: int) -> list[str]:
        c = self.config
        mem_mib = c.memory_bytes // (1024 * 1024)
        argv = [
            QEMU_BINARY,
            "-machine", "pc",
            "-accel", c.accel,
            "-cpu", accel_mod.cpu_model(c.accel),
            "-smp", "1",
            "-m", f"{mem_mib}M",
            "-nodefaults", "-no-user-config", "-display", "none",
            "-S",
            "-kernel", str(c.kernel),
            "-append", c.cmdline,
            "-chardev", f"socket,id=qmp,fd={qmp_fd}",
            "-mon", "chardev=qmp,mode=control",
            "-chardev", f"socket,id=console,fd={console_fd}",
            "-serial", "chardev:console",
            "-chardev", f"file,id=result,path={self.artifacts / 'result.log'}",
            "-device", f"isa-debugcon,iobase={RESULT_PORT:#x},chardev=result",
            "-device", f"isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=4",
        ]
        firmware = FIRMWARE.get(c.firmware, "missing")
        if firmware == "missing":
            raise DumpbedError(f"unknown firmware {c.firmware!r} (choose qboot or seabios)")
        if firmware:
            argv += ["-bios", firmware]
        argv += c.devices
        if c.trace_events:
            for event in c.trace_events:
                argv += ["-trace", f"enable={event}"]
            argv += ["-D", str(self.artifacts / "qemu-trace.log")]
        return argv + c.extra_args

    # -- lifecycle --------------------------------------------------------------------------

    def launch(self, qmp_timeout: float = 10.0) -> None:
        c = self.config
        if shutil.which(QEMU_BINARY) is None:
            raise DumpbedError(f"{QEMU_BINARY} not found: install qemu-system-x86 (make setup does)")
        if not Path(c.kernel).is_file():
            raise DumpbedError(f"guest kernel {c.kernel} not found: build it with make -C guest")
        firmware = FIRMWARE.get(c.firmware)
        if firmware and not Path(firmware).is_file():
            raise DumpbedError(f"firmware {firmware} not found")
        self.artifacts.mkdir(parents=True, exist_ok=True)
        self._scratch = tempfile.mkdtemp(prefix="dumpbed-")
        SCRATCH_DIRS.append(self._scratch)
        qmp_ours, qmp_theirs = socket.socketpair()
        con_ours, con_theirs = socket.socketpair()
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
                pass_fds=(qmp_theirs.fileno(), con_theirs.fileno()),
                cwd=self._scratch,
                start_new_session=True,  # Ctrl-C at the terminal reaches us, not QEMU
            )
        except OSError as exc:
            self._cleanup_files()
            raise DumpbedError(f"cannot start {QEMU_BINARY}: {exc.strerror}") from None
        finally:
            qmp_theirs.close()
            con_theirs.close()
        with _LIVE_LOCK:
            LIVE_PIDS.add(self.process.pid)
        try:
            self.console = Console(con_ours, str(self.artifacts / "console.log"))
            self.qmp = QmpSession(qmp_ours, str(self.artifacts / "qmp.jsonl"), qmp_timeout)
        except QmpError:
            # A device that fails to realise shows up as EOF on QMP: QEMU's stderr says why.
            self.shutdown()
            raise DumpbedError(f"QEMU did not start: {self.stderr_summary()}") from None
        except BaseException:
            self.shutdown()
            raise

    def stderr_summary(self) -> str:
        try:
            text = (self.artifacts / "qemu-stderr.log").read_text(errors="replace").strip()
        except OSError:
            text = ""
        lines = [l for l in text.splitlines() if l.strip()]
        status = f"exit status {self.exit_status}" if self.exit_status is not None else "running"
        return (lines[-1] if lines else "no message on stderr") + f" ({status})"

    def cont(self) -> None:
        self.qmp.command("cont")

    def stop(self) -> None:
        self.qmp.command("stop")

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
        """QMP quit, then SIGTERM, then SIGKILL, by PID; then close everything. Idempotent."""
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
                        raise DumpbedError(f"QEMU pid {self.process.pid} survived SIGKILL")
        if self.qmp is not None:
            self.qmp.close()
            self.qmp = None
        if self.console is not None:
            self.console.close()
            self.console = None
        self._cleanup_files()

    def kill(self) -> None:
        """SIGKILL now (a fault scenario), then the usual cleanup."""
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
            self._stderr.close()
            self._stderr = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None

    def __enter__(self) -> "Machine":
        self.launch()
        return self

    def __exit__(self, *exc) -> None:
        self.shutdown()
