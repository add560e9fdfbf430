"""The guest's serial console, read through pexpect and drained to a log from the first byte.

A reader thread owns the pexpect spawn and keeps reading whether or not anyone waits: QEMU's
16550 stops accepting bytes when its chardev is full, and a guest printing during its dump would
then stall. Waiters search the accumulated text under a condition variable. The reader keeps
draining even when the log cannot be written (a full disk): the error is kept in `log_error`.
"""
from __future__ import annotations

import re
import socket
import struct
import threading
from typing import Optional

import pexpect
import pexpect.fdpexpect

from dumpbed.deadline import Deadline
from dumpbed.errors import DumpbedError

SEND_TIMEOUT = 10.0  # QEMU not taking typed input for this long is a hang, not back-pressure


class Console:
    def __init__(self, sock: socket.socket, log_path: str):
        self._sock = sock
        # A blocking send to a QEMU that stopped reading would wait forever: bound it.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, struct.pack("ll", int(SEND_TIMEOUT), 0))
        self._log = open(log_path, "wb")
        self.log_error: Optional[str] = None
        self._child = pexpect.fdpexpect.fdspawn(sock.fileno(), timeout=None, logfile=None)
        self._text = bytearray()
        self._cond = threading.Condition()
        self._closed = False
        self.eof = False
        self._thread = threading.Thread(target=self._read_forever, name="console", daemon=True)
        self._thread.start()

    def _read_forever(self) -> None:
        while not self._closed:
            try:
                data = self._child.read_nonblocking(65536, timeout=0.1)
            except pexpect.TIMEOUT:
                continue
            except (pexpect.EOF, OSError, ValueError):
                break
            self._write_log(data)
            with self._cond:
                self._text += data
                self._cond.notify_all()
        with self._cond:
            self.eof = True
            self._cond.notify_all()

    def _write_log(self, data: bytes) -> None:
        if self.log_error is not None:
            return
        try:
            self._log.write(data)
            self._log.flush()
        except (OSError, ValueError) as exc:  # full disk, or closed under us at shutdown
            self.log_error = str(exc)

    @property
    def text(self) -> str:
        with self._cond:
            return self._text.decode("utf-8", "replace")

    def mark(self) -> int:
        """A position to search from, so a later wait ignores what was already printed."""
        with self._cond:
            return len(self._text)

    def wait_for(self, pattern: str, timeout: float, since: int = 0) -> re.Match:
        """Wait until `pattern` (a regex) appears after position `since`."""
        regex = re.compile(pattern.encode())
        deadline = Deadline(timeout, f"console output matching {pattern!r}")
        with self._cond:
            while True:
                match = regex.search(self._text, since)
                if match:
                    return match
                if self.eof:
                    raise deadline.aborted("the console closed (QEMU exited)")
                if deadline.expired:
                    raise deadline.timeout()
                self._cond.wait(min(0.2, deadline.remaining()))

    def send(self, text: str) -> None:
        try:
            self._child.send(text.encode())
        except OSError as exc:  # EAGAIN after SEND_TIMEOUT, or EPIPE once QEMU is gone
            raise DumpbedError(f"cannot type {text.strip()!r} at the console: {exc.strerror or exc}") from None

    def tail(self, nbytes: int = 2000) -> str:
        with self._cond:
            return self._text[-nbytes:].decode("utf-8", "replace")

    def close(self) -> None:
        self._closed = True
        self._thread.join(2)
        try:
            self._log.close()
        except OSError:
            pass  # the last flush failed (full disk): already in log_error
        self._sock.close()
