"""A piece of the validation run beside the rest, in a child process forked for it.

The consistency sweep and the other oracles are mostly Python: in two threads of one process
they take turns at the GIL, and a validation took nearly the sum of the two. A child forked at
the start shares what the parent had parsed by then (the run's logs, the device's commands) and
runs on the other core; what it needs later (the dumps, once read) the parent sends it, and its
verdict comes back the same way, both pickled through a pipe (multiprocessing's Connection).

The child only computes: it reads files by its own descriptors, writes nothing, takes no lock
another thread of the parent could have held at the fork (no logging, no console, no progress
bar), ignores the terminal's Ctrl-C (the parent decides), dies with the parent (SIGKILL) and
leaves by os._exit, running none of the parent's exit handlers or finalisers. The parent stops
it by its PID and reaps it whatever happens, and waits for its verdict no longer than a deadline.
"""
from __future__ import annotations

import gc
import os
import signal
import threading
import traceback
import warnings
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from multiprocessing.reduction import ForkingPickler
from typing import Any, Callable

from dumpbed.children import die_with_parent
from dumpbed.errors import DumpbedError


class Beside:
    """`work(inbox, *args)` in a child forked now; `inbox()` returns the next object `send` gave,
    `result()` what `work` returned (or raises what it raised). Use it as a context manager:
    leaving stops the child if it still runs."""

    def __init__(self, what: str, work: Callable[..., Any], *args: Any):
        self.what = what  # names the child in errors: "the consistency sweep"
        inbox_r, inbox_w = Pipe(duplex=False)
        verdict_r, verdict_w = Pipe(duplex=False)
        parent = os.getpid()
        try:
            pid = _fork()
        except BaseException:
            for end in (inbox_r, inbox_w, verdict_r, verdict_w):
                end.close()
            raise
        if pid == 0:
            inbox_w.close()
            verdict_r.close()
            _child(parent, work, args, inbox_r, verdict_w)  # never returns
        inbox_r.close()
        verdict_w.close()
        self.pid = pid
        self._inbox, self._verdict = inbox_w, verdict_r
        self._status: int | None = None
        self._writers: list[threading.Thread] = []

    def send(self, obj: Any) -> None:
        """Give the child an object its `inbox()` returns, pickled now, written by a thread: the
        child takes it only when its work asks (a pipe holds 64 KiB), and the caller goes on
        meanwhile. A child already gone does not take it: its result() says why."""
        payload = ForkingPickler.dumps(obj)

        def write() -> None:
            try:
                self._inbox.send_bytes(payload)
            except (BrokenPipeError, ConnectionResetError, OSError):
                pass  # the child is gone (or stopped by close): result() says why

        writer = threading.Thread(target=write, name=f"to {self.what}", daemon=True)
        writer.start()
        self._writers.append(writer)

    def result(self, deadline_s: float) -> Any:
        """What the child's work returned, waiting at most deadline_s seconds for it."""
        if not self._verdict.poll(deadline_s):
            self.close()
            raise DumpbedError(f"{self.what} gave no verdict in {deadline_s:.0f} s (its process was stopped)")
        try:
            outcome, value = self._verdict.recv()
        except EOFError:
            self._reap(block=True)
            raise DumpbedError(f"{self.what} ended without a verdict ({_ended(self._status)})") from None
        self._reap(block=True)
        if outcome == "raised":
            raise value
        return value

    def close(self) -> None:
        """Stop the child (by its PID) if it still runs, and reap it."""
        if not self._reap(block=False):
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self._reap(block=True)
        for writer in self._writers:  # the child gone, each write has ended (or failed)
            writer.join()
        self._inbox.close()
        self._verdict.close()

    def _reap(self, block: bool) -> bool:
        if self._status is None:
            pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
            if pid == 0:
                return False
            self._status = status
        return True

    def __enter__(self) -> "Beside":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _fork() -> int:
    """os.fork(), the parent's objects frozen for the garbage collector meanwhile (a collection in
    the child would write to every one of them, and so copy each page they lie in), and SIGINT
    blocked across it: the child starts with it blocked (a Ctrl-C right at the fork would end it
    before it could block it itself), the parent gets it back, a pending one then delivered."""
    gc.freeze()
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    pid = -1
    try:
        with warnings.catch_warnings():  # Python 3.12 warns of any fork with threads; see the docstring
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
    finally:
        if pid != 0:  # the parent (or no child at all)
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
            gc.unfreeze()
    return pid


def _child(parent: int, work: Callable[..., Any], args: tuple, inbox: Connection, verdict: Connection) -> None:
    try:
        die_with_parent(parent)  # (SIGINT blocked since the fork: _fork)
        try:
            outcome = ("returned", work(inbox.recv, *args))
        except BaseException as exc:  # the parent raises it; the child's traceback goes with it
            exc.add_note("in the child process, " + "".join(traceback.format_exception(exc)).rstrip())
            outcome = ("raised", exc)
        try:
            verdict.send(outcome)
        except Exception as exc:  # an exception that will not pickle: its text does
            verdict.send(("raised", DumpbedError(f"{outcome[1]!r} (unpicklable: {exc})")))
    finally:
        os._exit(0)


def _ended(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit status {os.WEXITSTATUS(status)}"
