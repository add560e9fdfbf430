"""`dumpbed session`: a run whose crash a person triggers by hand (docs/session.md).

The run is run.py's, step for step (disks, QEMU, READY, estimates, ground truth, crash, dump,
validation, report); between READY and the crash, run.py hands the machine to
Session.choose (run.Interaction), which gives the guest's serial console to the terminal and
reads hot-keys after the escape key (Ctrl-]). The key that picks a crash returns its name and
the run goes on as `dumpbed run --crash NAME` would.

The terminal is put in a raw-ish mode (no line editing, no echo: the guest's shell echoes)
that keeps ISIG, so Ctrl-C still raises KeyboardInterrupt and run.py's cleanup (QEMU stopped,
scratch dirs removed, the run directory marked interrupted) happens as for `dumpbed run`.
"""
from __future__ import annotations

import json
import os
import select
import sys
import termios
import threading
import time
from pathlib import Path
from typing import Optional

from dumpbed.capture import groundtruth
from dumpbed.errors import DumpbedError
from dumpbed.machine import resultchan
from dumpbed.machine.qemu import Machine
from dumpbed.scenario import crash as crash_mod
from dumpbed.scenario.spec import Scenario

ESCAPE = 0x1D  # Ctrl-]
ESCAPE_NAME = "Ctrl-]"
QUIT_MARK = "the session's quit key (q)"  # the interrupted marker's "signal" after q
KILL_LINE = "\x15"  # ^U: the guest shell drops what was typed so far
HELP = [
    ("n", "crash now: an NMI (ground truth first, then inject-nmi), then the dump and its checks"),
    ("w", "crash by the watchdog: type the console's `hang` (ib700 fires an NMI 2 s later)"),
    ("p", "pause or continue the VM (QMP stop / cont)"),
    ("r", "show the registers (HMP info registers)"),
    ("s", "save a memory snapshot now (RAM and registers, into the run directory's session/)"),
    ("q", "quit: QEMU stopped, the run directory marked interrupted (exit 130)"),
    ("?", "this help and the status line"),
]
KEY_CRASHES = {"n": "nmi", "w": "hang"}
POLL_SECONDS = 0.05


class SessionQuit(KeyboardInterrupt):
    """`q` pressed: unwinds through run.py like Ctrl-C (QEMU stopped, the run marked interrupted)."""


def require_terminal() -> None:
    if not os.isatty(sys.stdin.fileno()):
        raise DumpbedError("session needs a terminal on stdin (it hands the guest's console to you); "
                           "`dumpbed run` crashes the guest unattended")


class Session:
    """The terminal side of a session: what choose() shows and reads, and the console's output
    forwarded to the terminal until QEMU is gone."""

    def __init__(self, scenario: Scenario, stdin_fd: int = 0, stdout=None):
        self.scenario = scenario
        self.out = Path(scenario.out_dir)
        self.stdin_fd = stdin_fd
        self.stdout = stdout or sys.stdout
        self.shown = 0  # console bytes already written to the terminal
        self.snapshots = 0
        self.crashed = False  # a crash was chosen: the forwarder shows the dump's console
        self._forwarder: Optional[threading.Thread] = None
        self._stop = threading.Event()

    # -- output ----------------------------------------------------------------------------

    def write(self, text: str) -> None:
        self.stdout.write(text)
        self.stdout.flush()

    def say(self, text: str) -> None:
        """A line of the session's own, on a line of its own."""
        self.write(f"\r\n[dumpbed] {text}\r\n")

    def _forward(self, machine: Machine) -> None:
        console = machine.console
        if console is None:
            return
        text = console.text  # the console keeps all it printed
        if len(text) > self.shown:
            self.write(text[self.shown:])
            self.shown = len(text)

    def status(self, machine: Machine) -> str:
        if machine.is_running():
            try:
                vm = machine.qmp.command("query-status", timeout=5)["status"]
            except DumpbedError as exc:
                vm = f"unknown ({exc})"
        else:
            vm = f"gone (QEMU {machine.state()})"
        words = [line.word for line in resultchan.read_lines(self.out / "result.log")]
        guest = "DONE" if "DONE" in words else "crashed" if "CRASH" in words or self.crashed else \
            "READY" if "READY" in words else "booting"
        return f"status: VM {vm}, guest {guest}, run {self.out}"

    def help(self, machine: Machine) -> None:
        self.say(f"hot-keys after {ESCAPE_NAME}:")
        for key, what in HELP:
            self.write(f"  {key}  {what}\r\n")
        self.say(self.status(machine))

    # -- the interaction (run.Interaction.choose) -------------------------------------------

    def choose(self, machine: Machine) -> str:
        """Console to the terminal until a crash key; returns the crash kind's name."""
        saved = termios.tcgetattr(self.stdin_fd)
        _raw(self.stdin_fd, saved)
        try:
            self._forward(machine)
            self.say(f"the guest is READY; its console is yours. {ESCAPE_NAME} then ? for help, "
                     f"n to crash it, q to quit")
            self.say(self.status(machine))
            name = self._loop(machine)
        finally:
            termios.tcsetattr(self.stdin_fd, termios.TCSADRAIN, saved)
        self.crashed = True
        self.say(f"crash: {crash_mod.get(name).description}")
        self._forwarder = threading.Thread(target=self._forward_until_gone, args=(machine,),
                                           name="session-console", daemon=True)
        self._forwarder.start()
        return name

    def _loop(self, machine: Machine) -> str:
        escaped = False
        while True:
            self._forward(machine)
            if not machine.is_running():
                raise DumpbedError(f"QEMU {machine.state()} during the session, before a crash was chosen")
            if any(l.word == "CRASH" for l in resultchan.read_lines(self.out / "result.log")):
                raise DumpbedError("the guest crashed by itself (a crash command typed at its console?) before "
                                   "the harness took its ground truth: crash it with the hot-keys instead")
            ready, _, _ = select.select([self.stdin_fd], [], [], POLL_SECONDS)
            if not ready:
                continue
            data = os.read(self.stdin_fd, 1024)
            if not data:
                raise SessionQuit()  # the terminal went away
            typed = bytearray()
            for byte in data:
                if escaped:
                    escaped = False
                    if typed:
                        machine.console.send(typed.decode("latin-1"))
                        typed.clear()
                    name = self._hot_key(machine, chr(byte))
                    if name:
                        return name
                elif byte == ESCAPE:
                    escaped = True
                else:
                    typed.append(byte)
            if typed:
                machine.console.send(typed.decode("latin-1"))

    def _hot_key(self, machine: Machine, key: str) -> Optional[str]:
        if key in KEY_CRASHES:
            if key == "w":
                machine.console.send(KILL_LINE)  # `hang` is typed on a line of its own
                if _vm_status(machine) == "paused":
                    machine.cont()  # the recipe types at the running guest
            return KEY_CRASHES[key]
        if key == "p":
            if _vm_status(machine) == "paused":
                machine.cont()
            else:
                machine.stop()
            self.say(self.status(machine))
        elif key == "r":
            text = machine.qmp.hmp("info registers", timeout=10)
            self.write("\r\n" + text.replace("\r\n", "\n").replace("\n", "\r\n"))
            self.say(self.status(machine))
        elif key == "s":
            self._snapshot(machine)
        elif key == "q":
            raise SessionQuit()
        elif key == "?":
            self.help(machine)
        else:
            self.say(f"unknown hot-key {key!r}: {ESCAPE_NAME} then ? for help")
        return None

    def _snapshot(self, machine: Machine) -> None:
        self.snapshots += 1
        where = self.out / "session" / f"snapshot-{self.snapshots}"
        was_running = _vm_status(machine) != "paused"
        if was_running:
            machine.stop()
        try:
            t0 = time.monotonic()
            groundtruth.take(machine, where, self.scenario.memory_bytes, self.scenario.ram_below_4g)
        finally:
            if was_running:
                machine.cont()
        self.say(f"snapshot of RAM and registers saved in {where} ({time.monotonic() - t0:.1f}s)")

    def _forward_until_gone(self, machine: Machine) -> None:
        """After the crash: the dump's console lines, until QEMU is shut down."""
        while not self._stop.is_set() and machine.console is not None:
            try:
                self._forward(machine)
            except (OSError, ValueError):
                return
            self._stop.wait(POLL_SECONDS)

    def close(self) -> None:
        self._stop.set()
        if self._forwarder is not None:
            self._forwarder.join(2)
        self.stdout.flush()


def _vm_status(machine: Machine) -> str:
    return machine.qmp.command("query-status", timeout=5)["status"]


def _raw(fd: int, saved: list) -> None:
    """No line editing, no echo, no CR translation, no flow control; signals (Ctrl-C) kept,
    Ctrl-\\ and Ctrl-Z switched off (a core dump or a stopped harness would leave QEMU running);
    output processing kept (the guest prints \\n)."""
    mode = [list(x) if isinstance(x, list) else x for x in saved]
    iflag, lflag, cc = 0, 3, 6
    mode[iflag] &= ~(termios.ICRNL | termios.INLCR | termios.IGNCR | termios.IXON | termios.ISTRIP)
    mode[lflag] &= ~(termios.ICANON | termios.ECHO | termios.IEXTEN)
    mode[lflag] |= termios.ISIG
    mode[cc][termios.VMIN] = 1
    mode[cc][termios.VTIME] = 0
    mode[cc][termios.VQUIT] = b"\0"
    mode[cc][termios.VSUSP] = b"\0"
    termios.tcsetattr(fd, termios.TCSADRAIN, mode)


def run_session(scenario: Scenario):
    """run_and_validate with a person choosing the crash; returns (outcome, report). A quit (q)
    leaves the interrupted marker saying so, and raises SessionQuit."""
    from dumpbed import run as run_mod

    session = Session(scenario)
    hang = crash_mod.get("hang")
    try:
        return run_mod.run_and_validate(scenario, run_mod.Interaction(session.choose, hang.qemu_args))
    except SessionQuit:
        marker = run_mod.interrupted(scenario.out_dir)
        if marker is not None:
            marker["signal"] = QUIT_MARK
            (Path(scenario.out_dir) / run_mod.INTERRUPTED).write_text(json.dumps(marker) + "\n")
        raise
    finally:
        session.close()
