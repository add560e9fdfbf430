"""`dumpbed session`: a run whose crash a person triggers by hand (docs/session.md).

The run is run.py's, step for step (disks, QEMU, READY, estimates, ground truth, crash, dump,
validation, report); between READY and the crash, run.py hands the machine to
Session.choose (run.Interaction), which gives the guest's serial console to the terminal and
reads hot-keys after the escape key (Ctrl-]). The key that picks a crash returns its name and
the run goes on as `dumpbed run --crash NAME` would. A fault armed with `f` (a --fault SPEC
typed at a prompt) is handed to run.py with it (Interaction.faults) and armed at that crash as
`dumpbed run --fault SPEC` arms it; kinds set up before QEMU starts are refused (FaultKind.setup_reason).

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
from dumpbed.scenario import crash as crash_mod, disks as disks_mod, faults as faults_mod
from dumpbed.scenario.spec import Scenario

ESCAPE = 0x1D  # Ctrl-]
ESCAPE_NAME = "Ctrl-]"
QUIT_MARK = "the session's quit key (q)"  # the interrupted marker's "signal" after q
KILL = 0x15  # ^U: the guest shell drops what was typed so far; the fault prompt too
KILL_LINE = chr(KILL)
ENTER, NEWLINE, ERASE, BACKSPACE, EOF = 0x0D, 0x0A, 0x7F, 0x08, 0x04  # at the fault prompt
HELP = [
    ("n", "crash now: an NMI (ground truth first, then inject-nmi), then the dump and its checks"),
    ("w", "crash by the watchdog: type the console's `hang` (ib700 fires an NMI 2 s later)"),
    ("f", "arm a fault for the crash: a --fault SPEC typed at the prompt (empty: none; again: replaced)"),
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
        self.given = [faults_mod.parse(spec) for spec in scenario.faults]  # --fault on the command line
        self.fault: Optional[faults_mod.Fault] = None  # armed with f, for the crash
        self._pending = bytearray()  # typed after a hot-key, not read yet (the fault prompt's line, ...)
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
                vm = machine.run_state(timeout=5)
            except DumpbedError as exc:
                vm = f"unknown ({exc})"
        else:
            vm = f"gone (QEMU {machine.state()})"
        words = [line.word for line in resultchan.read_lines(self.out / "result.log")]
        guest = "DONE" if "DONE" in words else "crashed" if "CRASH" in words or self.crashed else \
            "READY" if "READY" in words else "booting"
        armed = " ".join(str(f) for f in self.given + self.faults()) or "none"
        return f"status: VM {vm}, guest {guest}, fault {armed}, run {self.out}"

    def faults(self) -> list[faults_mod.Fault]:
        """The faults the session's hot-key armed (run.Interaction.faults): run.py adds them to
        --fault's at the crash. The status line shows both."""
        return [self.fault] if self.fault is not None else []

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
        if self.fault is not None:
            self.say(f"fault armed at this crash: {self.fault} ({self.fault.kind.description})")
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
            if resultchan.said(self.out / "result.log", "CRASH"):
                raise DumpbedError("the guest crashed by itself (a crash command typed at its console?) before "
                                   "the harness took its ground truth: crash it with the hot-keys instead")
            if self._pending:  # what was typed after the last hot-key (and its prompt)
                data, self._pending = bytes(self._pending), bytearray()
            else:
                ready, _, _ = select.select([self.stdin_fd], [], [], POLL_SECONDS)
                if not ready:
                    continue
                data = self._read()
            typed = bytearray()
            for i, byte in enumerate(data):
                if escaped:
                    escaped = False
                    if typed:
                        machine.console.send(typed.decode("latin-1"))
                        typed.clear()
                    self._pending = bytearray(data[i + 1:])  # the fault prompt reads its line from there
                    name = self._hot_key(machine, chr(byte))
                    if name:
                        return name
                    break  # the rest, from _pending, after the console's news
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
                if machine.run_state(timeout=5) == "paused":
                    machine.cont()  # the recipe types at the running guest
            return KEY_CRASHES[key]
        if key == "f":
            self._arm(machine)
        elif key == "p":
            if machine.run_state(timeout=5) == "paused":
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

    def _read(self) -> bytes:
        data = os.read(self.stdin_fd, 1024)
        if not data:
            raise SessionQuit()  # the terminal went away
        return data

    def _arm(self, machine: Machine) -> None:
        """f: a --fault SPEC read at a prompt, checked as `dumpbed session --fault SPEC` would be
        (faults.parse, check_combination with the command line's) and refused in one line if bad
        or if its kind is set up before QEMU starts; else armed for the crash, replacing any armed
        before. An empty answer disarms; Ctrl-] at the prompt leaves things as they were."""
        disk = disks_mod.get(self.scenario.disk)
        kinds = [k for k in faults_mod.KINDS.values() if disk.fault_applies(k.name, k.stops_vm, k.network) is None]
        here = [k for k in kinds if k.setup_reason is None]
        before = [k.name for k in kinds if k.setup_reason is not None]
        self.say(f"fault to arm at the crash (n or w), as `--fault SPEC` (NAME[=VALUE][@WHEN]); "
                 f"empty: none, {ESCAPE_NAME}: unchanged")
        for kind in here:
            value = f"={kind.value_name}" if kind.value_name else ""
            if value and kind.default_value is not None:
                value = f"[{value}] (default {kind.default_value})"
            self.write(f"  {kind.name}{value}: {kind.description}\r\n")
        if before:
            self.write(f"  set up before QEMU starts, so only with --fault on the `dumpbed session` command line: "
                       f"{', '.join(before)}\r\n")
        spec = self._read_line("fault> ")
        if spec is None:
            self.say(f"fault unchanged: {self.fault or 'none armed'}")
        elif not spec:
            self.say(f"fault {self.fault} disarmed" if self.fault else "no fault armed")
            self.fault = None
        else:
            try:
                self.fault = self._check(spec)
            except DumpbedError as exc:
                kept = f"still armed: {self.fault}" if self.fault else "no fault armed"
                self.say(f"fault refused: {exc}; {kept}")
            else:
                every = self.given + [self.fault]
                guest = faults_mod.expected_guest_result(every, self.scenario.secondary)
                self.say(f"fault armed for the crash: {self.fault}; the dump is then expected "
                         f"{faults_mod.expected_outcome(every, self.scenario.secondary)}, the guest's DONE "
                         + (guest if guest else "none"))
        self.say(self.status(machine))

    def _check(self, spec: str) -> faults_mod.Fault:
        fault = faults_mod.parse(spec)
        why = fault.kind.setup_reason
        if why:
            raise DumpbedError(f"{fault.name} must be set up before QEMU starts ({why}): give it with --fault "
                               f"{spec} on the `dumpbed session` command line")
        try:
            faults_mod.check_combination(self.given + [fault], self.scenario.disk, self.scenario.secondary)
        except DumpbedError as exc:
            raise DumpbedError(f"{spec}: {exc}" + (f" (with --fault {' '.join(map(str, self.given))})"
                                                    if self.given else "")) from None
        return fault

    def _read_line(self, prompt: str) -> Optional[str]:
        """A line typed at the terminal (raw: echoed and edited here, Backspace and ^U), from
        what was typed after the hot-key on; None for Ctrl-] or ^D (unchanged). What was typed
        after the line's end goes back to the console (_pending)."""
        self.write(prompt)
        line = bytearray()
        while True:
            if self._pending:
                data, self._pending = bytes(self._pending), bytearray()
            else:
                data = self._read()
            for i, byte in enumerate(data):
                rest = data[i + 1:]
                if byte in (ENTER, NEWLINE, ESCAPE) or (byte == EOF and not line):
                    if byte == ENTER and rest[:1] == bytes([NEWLINE]):
                        rest = rest[1:]
                    self._pending = bytearray(rest)
                    self.write("\r\n")
                    return line.decode("ascii").strip() if byte in (ENTER, NEWLINE) else None
                if byte in (ERASE, BACKSPACE):
                    if line:
                        line.pop()
                        self.write("\b \b")
                elif byte == KILL:
                    self.write("\b \b" * len(line))
                    line.clear()
                elif 0x20 <= byte < 0x7F:
                    line.append(byte)
                    self.write(chr(byte))

    def _snapshot(self, machine: Machine) -> None:
        self.snapshots += 1
        where = self.out / "session" / f"snapshot-{self.snapshots}"
        was_running = machine.run_state(timeout=5) != "paused"
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
        return run_mod.run_and_validate(scenario, run_mod.Interaction(session.choose, hang.qemu_args,
                                                                      session.faults))
    except SessionQuit:
        marker = run_mod.interrupted(scenario.out_dir)
        if marker is not None:
            marker["signal"] = QUIT_MARK
            (Path(scenario.out_dir) / run_mod.INTERRUPTED).write_text(json.dumps(marker) + "\n")
        raise
    finally:
        session.close()
