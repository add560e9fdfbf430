"""A network dump run's host side (docs/netdump-protocol.md): the dump server (`dumpbed netdumpd`,
a process of its own, as a user runs it, writing the run's dump disk image) and the link
between QEMU's NIC and it (net/link.py, a thread), started before QEMU and stopped after it;
the network faults armed on them at the crash.

The server is a child process so that `server-kill` is a real kill of a real server (a signal
at its default action, netserver.KILL_SIGNAL, which it holds off only between an image write and
its log entry); it
dies with the harness (PR_SET_PDEATHSIG) and is stopped by PID. Its UDP socket is bound here
and handed to it (`--listen-fd`): the port is known before it starts, and what the link sends
early waits in the socket for it.
"""
from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Optional

from dumpbed.deadline import Deadline
from dumpbed.errors import DumpbedError
from dumpbed.children import die_with_parent
from dumpbed.net import server as netserver
from dumpbed.net.evidence import SERVER_EVENTS_FILE
from dumpbed.net.link import BOTH, Faults, Link
from dumpbed.scenario import faults as faults_mod
from dumpbed.scenario.faultrun import FaultLog

SERVER_LOG = "netdumpd.log"  # its stdout and stderr
START_SECONDS = 15.0
STOP_SECONDS = 10.0


def _link_faults(fault: faults_mod.Fault) -> Faults:
    """The link's Faults for one of the random link faults (=P percent, =MS milliseconds)."""
    value = fault.value or 0
    kind = fault.kind.link
    if kind == "delay":
        return Faults(delay_ms=float(value))
    return Faults(**{kind: value / 100.0})


class NetService:
    """`net = NetService(out, image, dump_id).start()`: QEMU gets `net.qemu_fd`; `net.arm()` at
    the crash; `net.stop()` after QEMU (fault.json, link.pcap, link.json; the server stopped)."""

    def __init__(self, out: Path, image: Path, dump_id: str, seed: int = 0):
        self.out = Path(out)
        self.image = Path(image)
        self.dump_id = dump_id
        self.seed = seed
        self.server: Optional[subprocess.Popen] = None
        self.port: Optional[int] = None
        self.link: Optional[Link] = None
        self.fault_log: Optional[FaultLog] = None
        self._crash_time: Optional[float] = None
        self._log_file = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> "NetService":
        try:
            self._start_server()
            self.link = Link(("127.0.0.1", self.port), self.out, seed=self.seed).start()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def qemu_fd(self) -> int:
        return self.link.qemu_fd

    def qemu_started(self) -> None:
        """QEMU has its copy of the link's end: ours goes (a datagram socket sees no EOF when QEMU
        exits; its sends to the gone peer fail, and the link counts them)."""
        self.link.close_qemu_end()

    def _start_server(self) -> None:
        """The server started on a socket bound here; returns once it has created its files
        (the image's write log, the event log), before which it reads no datagram."""
        events = self.out / SERVER_EVENTS_FILE
        events.unlink(missing_ok=True)
        sock = netserver.bind("127.0.0.1", 0)
        try:
            self.port = sock.getsockname()[1]
            argv = [sys.executable, "-m", "dumpbed.cli", "netdumpd", "--listen-fd", str(sock.fileno()),
                    "--image", str(self.image), "--dump-id", self.dump_id, "--log", str(events)]
            self._log_file = open(self.out / SERVER_LOG, "wb")
            self.server = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=self._log_file,
                                           stderr=subprocess.STDOUT, pass_fds=(sock.fileno(),),
                                           preexec_fn=functools.partial(die_with_parent, os.getpid()))
        finally:
            sock.close()  # the server's copy is the one
        deadline = Deadline(START_SECONDS, f"the dump server to start ({self.out / SERVER_LOG})")
        while not events.exists():
            if self.server.poll() is not None:
                text = (self.out / SERVER_LOG).read_text(errors="replace")
                last = text.strip().splitlines()[-1:] or ["no output"]
                raise DumpbedError(f"the dump server exited at start (status {self.server.returncode}): {last[0]}")
            deadline.check()
            time.sleep(0.02)

    def stop(self) -> None:
        """The link stopped (link.pcap, link.json), the server stopped (SIGTERM, then SIGKILL),
        its log closed, fault.json saved: each step whatever the one before it raised."""
        try:
            self._settle()
        finally:
            try:
                link, self.link = self.link, None
                if link is not None:
                    link.stop()
            finally:
                try:
                    self._stop_server()
                finally:
                    try:
                        if self._log_file is not None:
                            self._log_file.close()
                            self._log_file = None
                    finally:
                        if self.fault_log is not None:
                            self.fault_log.save(self.out)

    def _stop_server(self) -> None:
        if self.server is None or self.server.poll() is not None:
            return
        self.server.send_signal(signal.SIGTERM)  # it syncs and closes its files
        try:
            self.server.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.server.kill()
            self.server.wait(STOP_SECONDS)

    # -- faults ------------------------------------------------------------------------------

    def arm(self, faults: list[faults_mod.Fault], trigger_offset: Optional[int]) -> Optional[str]:
        """At the crash (the VM stopped): the random link faults from now on, and the live fault
        (net-cut, server-kill) at the first DATA reaching `trigger_offset` (a partition offset).
        Returns what was armed, for fault.json."""
        self._crash_time = time.time()
        armed = []
        for f in faults:
            kind = f.kind
            if kind.link in ("drop", "duplicate", "reorder", "corrupt", "delay"):
                self.link.set_faults(_link_faults(f), BOTH, why=str(f))
                armed.append(f"{f} on the link, both ways, from the crash on")
            elif kind.link == "cut":
                self.link.partition_at(trigger_offset)
                armed.append(f"{f}: the link cut at the first DATA reaching partition offset 0x{trigger_offset:x}")
                self.fault_log = FaultLog(str(f))
            elif kind.kills_server:
                self.link.on_offset(trigger_offset, self._kill_server)
                armed.append(f"{f}: the dump server killed at the first DATA reaching partition offset "
                             f"0x{trigger_offset:x}")
                self.fault_log = FaultLog(str(f))
        if self.fault_log is not None:
            self.fault_log.armed = "; ".join(armed)
        return "; ".join(armed) or None

    def _kill_server(self, *_args) -> None:
        """In the link's thread, on the trigger's DATA: a kill, as a crashed server."""
        if self.server is not None and self.server.poll() is None:
            os.kill(self.server.pid, netserver.KILL_SIGNAL)
        if self.fault_log is not None:
            self.fault_log.fired = True
            self.fault_log.seconds_after_crash = time.time() - (self._crash_time or time.time())
            self.fault_log.action = (f"{netserver.KILL_SIGNAL.name} (its default action: the process ends) to the dump "
                                     f"server (pid {self.server.pid if self.server else '?'})")

    def _settle(self) -> None:
        """After the dump: what the live fault did, from the link (fault.json on stop)."""
        if self.fault_log is None or self.link is None or self.fault_log.fired:
            return
        when = (self.link.counters().get("partition") or {}).get("t")
        if self.link.partitioned:
            self.fault_log.fired = True
            if when and self._crash_time:
                self.fault_log.seconds_after_crash = when - self._crash_time
            self.fault_log.action = "the link passed nothing more, either way"
