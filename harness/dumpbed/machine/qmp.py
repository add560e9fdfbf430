"""A small synchronous face on qemu.qmp's asyncio client.

qemu.qmp is asyncio-only (its legacy sync class cannot run inside another loop), so the client
lives on a private event loop in a daemon thread. Every call has a timeout. Every message in
both directions and every event goes to a JSON-lines transcript. Events are drained as they
arrive (qemu.qmp's default queue grows without bound otherwise) into a bounded history that
waiters search.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import socket
import threading
import time
from typing import Any, Callable, Optional

from qemu.qmp import QMPClient
from qemu.qmp.qmp_client import ExecuteError

from dumpbed.deadline import Deadline
from dumpbed.errors import DumpbedError


class QmpError(DumpbedError):
    """A QMP command failed, or the connection is gone."""


class _TranscribingClient(QMPClient):
    """QMPClient that copies every message it sends or receives to a transcript."""

    def __init__(self, record: Callable[[str, Any], None]):
        super().__init__("dumpbed")
        self._record = record

    def _cb_outbound(self, msg):  # hook documented by qemu.qmp for subclasses
        self._record("out", dict(msg))
        return super()._cb_outbound(msg)

    def _cb_inbound(self, msg):
        self._record("in", dict(msg))
        return super()._cb_inbound(msg)


class QmpSession:
    EVENT_HISTORY = 1000

    def __init__(self, sock: socket.socket, transcript_path: str, connect_timeout: float = 10.0):
        self._transcript = open(transcript_path, "a", encoding="utf-8")
        self.transcript_error: Optional[str] = None
        self._transcript_lock = threading.Lock()
        self._events: collections.deque = collections.deque(maxlen=self.EVENT_HISTORY)
        self._events_cond = threading.Condition()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="qmp", daemon=True)
        self._thread.start()
        self._client = _TranscribingClient(self._record)
        self._drain_task = None
        try:
            self._run(self._client.connect(sock), connect_timeout, "the QMP greeting")
            self._drain_task = self._run(self._start_drain(), 5, "the event drain to start")
        except BaseException:
            self.close()
            raise

    # -- plumbing ---------------------------------------------------------------------------

    def _record(self, direction: str, msg: Any) -> None:
        line = json.dumps({"t": round(time.time(), 6), "dir": direction, "msg": msg}, default=str)
        with self._transcript_lock:
            if self._transcript.closed or self.transcript_error is not None:
                return
            try:
                self._transcript.write(line + "\n")
                self._transcript.flush()
            except OSError as exc:
                # A full disk must not break the session (this runs inside qemu.qmp's reader):
                # keep talking to QEMU, stop transcribing, remember why.
                self.transcript_error = str(exc)

    def _run(self, coro, timeout: float, what: str):
        if self._loop.is_closed() or not self._loop.is_running():
            coro.close()
            raise QmpError(f"QMP {what}: the session is closed")
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            if not self._loop.is_running():
                # The session stopped between the check above and the hand-over (e.g. the RFLAGS
                # sampler's last command as QEMU shuts down): the loop never started the
                # coroutine, and nothing else will close it.
                coro.close()
            raise QmpError(f"QMP: timed out after {timeout:g}s waiting for {what}") from None
        except ExecuteError as exc:
            raise QmpError(f"QMP {what} failed: {exc.error_class}: {exc}") from None
        except QmpError:
            raise
        except Exception as exc:  # connection reset, EOF, state errors from qemu.qmp
            raise QmpError(f"QMP {what}: {type(exc).__name__}: {exc}") from None

    async def _start_drain(self) -> asyncio.Task:
        return asyncio.get_running_loop().create_task(self._drain_events())

    async def _stop(self) -> None:
        try:
            await self._client.disconnect()
        finally:
            if self._drain_task is not None:
                self._drain_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._drain_task

    async def _drain_events(self) -> None:
        async for event in self._client.events:
            with self._events_cond:
                self._events.append(dict(event))
                self._events_cond.notify_all()

    # -- API --------------------------------------------------------------------------------

    def command(self, name: str, args: Optional[dict] = None, timeout: float = 30.0) -> Any:
        return self._run(self._client.execute(name, args), timeout, f"command {name}")

    def hmp(self, command_line: str, timeout: float = 30.0) -> str:
        return self.command("human-monitor-command", {"command-line": command_line}, timeout)

    def events(self, name: Optional[str] = None) -> list[dict]:
        with self._events_cond:
            return [e for e in self._events if name is None or e.get("event") == name]

    def wait_event(self, name: str, timeout: float, since: int = 0) -> dict:
        """Wait for event NAME; `since` skips events already seen (an index into events())."""
        deadline = Deadline(timeout, f"QMP event {name}")
        with self._events_cond:
            while True:
                matches = [e for e in list(self._events)[since:] if e.get("event") == name]
                if matches:
                    return matches[0]
                if deadline.expired:
                    raise deadline.timeout()
                self._events_cond.wait(min(0.2, deadline.remaining()))

    def close(self) -> None:
        """Disconnect and stop the loop thread. Safe to call more than once."""
        if self._loop.is_closed():
            return
        if self._loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(5)
            except Exception:
                pass  # QEMU may already be gone; the disconnect is best effort
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        if not self._loop.is_running():
            self._loop.close()
        with self._transcript_lock:
            try:
                self._transcript.close()
            except OSError:
                pass  # the last flush failed (full disk)
