"""Errors the harness reports to the user as one line (exit code 2), never as a traceback."""
from __future__ import annotations

import functools
import signal
import subprocess
from typing import Optional


class DumpbedError(Exception):
    """A usage or environment problem: bad input, missing tool, QEMU refusing to start."""


class InfraError(DumpbedError):
    """The machinery around a run failed, not the driver under test: a remote host that dropped
    mid-run, a copy cut short (docs/nightly.md). A matrix cell retries it elsewhere; it is never
    reported as a driver FAIL."""


class Terminated(BaseException):
    """SIGTERM or SIGHUP (the CLI's handler raises it): unwinds like Ctrl-C's KeyboardInterrupt,
    so every finally (QEMU's shutdown) runs."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def stop_signal(exc: BaseException) -> Optional[str]:
    """The signal that stopped the harness, by name, if `exc` is how it arrived: SIGINT
    (KeyboardInterrupt), SIGTERM or SIGHUP (Terminated); None for anything else."""
    if isinstance(exc, KeyboardInterrupt):
        return "SIGINT"
    if isinstance(exc, Terminated):
        return signal.Signals(exc.signum).name
    return None


def describe_os_error(exc: OSError) -> str:
    """'No space left on device: /path', in one line."""
    what = exc.strerror or str(exc)
    return f"{what}: {exc.filename}" if exc.filename else what


def environment_errors(func):
    """Turn the host's own failures (a full disk, a vanished file, a tool that never returns)
    into DumpbedError, so callers of the Python API see one kind of error, as the CLI does."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except OSError as exc:
            raise DumpbedError(describe_os_error(exc)) from exc
        except subprocess.TimeoutExpired as exc:
            cmd = exc.cmd[0] if isinstance(exc.cmd, (list, tuple)) else exc.cmd
            raise DumpbedError(f"timed out after {exc.timeout:g}s waiting for {cmd} to finish") from exc

    return wrapper
