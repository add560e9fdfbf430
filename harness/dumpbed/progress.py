"""Progress of the harness's long phases on the terminal, and nothing at all anywhere else.

    with progress.task("fill dump.img", total=size, unit="bytes") as bar:
        for chunk in ...:
            bar.advance(len(chunk))

A phase shows as a rich.progress bar on stderr, only while stdout and stderr are both terminals:
with stdout a pipe or a file (`dumpbed show --json | jq`, a CI log), or stderr one, not a byte is
written, and stdout never carries any of it. `disable()` turns it off for the process
(`dumpbed session`: the terminal is the guest's console there). Phases nest (`dumpbed bench`: a
bar of its runs, each run's phases under it) on one live display, started by the first phase
and erased (transient) when the last ends. Updates reach rich at most a few times a second, and
whatever goes wrong in the display turns it off for the rest of the process without ever
reaching the caller: a progress bar never breaks a run.
"""
from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import Iterator, Optional

MIN_INTERVAL = 0.2  # seconds between two updates of a bar handed to rich (the end always goes)
REFRESH_PER_SECOND = 4

_lock = threading.RLock()
_disabled = False  # disable(): e.g. `dumpbed session`
_broken = False  # the display failed once: quiet from then on
_console = None  # use(console): the console to draw on whatever stdout is (tests)
_progress = None  # the live rich Progress while a phase is open
_open = 0  # phases open on it


def disable() -> None:
    """No progress display in this process from now on."""
    global _disabled
    _disabled = True


@contextmanager
def disabled() -> Iterator[None]:
    """No progress display inside the block."""
    global _disabled
    before, _disabled = _disabled, True
    try:
        yield
    finally:
        _disabled = before


@contextmanager
def use(console) -> Iterator[None]:
    """Draw on this rich Console inside the block, terminal or not (tests)."""
    global _console, _broken
    before, _console, _broken = _console, console, False
    try:
        yield
    finally:
        _console = before


def _isatty(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):
        return False


def active() -> bool:
    """Whether a phase opened now would be shown."""
    if _disabled or _broken:
        return False
    if _console is not None:
        return True
    return _isatty(sys.stdout) and _isatty(sys.stderr)


def _fail() -> None:
    """The display raised: stop it quietly and keep it off."""
    global _broken, _progress, _open
    _broken = True
    progress, _progress, _open = _progress, None, 0
    if progress is not None:
        try:
            progress.stop()
        except Exception:  # noqa: BLE001: nothing of the display may reach the run
            pass


def _start():
    """The live Progress, started with the first phase."""
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    console = _console if _console is not None else Console(stderr=True)
    if not console.is_terminal:
        return None
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), _amount_column(),
                        TimeElapsedColumn(), console=console, transient=True,
                        refresh_per_second=REFRESH_PER_SECOND,
                        # stdout stays stdout: never drawn on stderr's console
                        redirect_stdout=False, redirect_stderr=True)
    progress.start()
    return progress


def _amount_column():
    """done/total: sizes for a phase in bytes, counts otherwise; nothing when indeterminate."""
    from rich.progress import ProgressColumn
    from rich.text import Text

    from dumpbed.units import format_size

    class Amount(ProgressColumn):
        def render(self, task):
            if task.total is None:
                return Text("")
            if task.fields.get("unit") == "bytes":
                return Text(f"{format_size(int(task.completed))}/{format_size(int(task.total))}",
                            style="progress.download")
            return Text(f"{int(task.completed)}/{int(task.total)}", style="progress.download")

    return Amount()


class Bar:
    """One phase. Its figures are kept here whether or not a display shows them."""

    def __init__(self, description: str, total: Optional[float], unit: str):
        self.description = description
        self.total = total
        self.completed = 0.0
        self.unit = unit
        self._progress = None
        self._id = None
        self._sent = 0.0  # when rich last heard of it

    # -- what callers use ------------------------------------------------------------------

    def advance(self, amount: float = 1) -> None:
        self.completed += amount
        self._send()

    def update(self, completed: Optional[float] = None, total: Optional[float] = None,
               description: Optional[str] = None) -> None:
        """Set what is given; a new total or description is shown at once."""
        if completed is not None:
            self.completed = completed
        changed = False
        if total is not None and total != self.total:
            self.total, changed = total, True
        if description is not None and description != self.description:
            self.description, changed = description, True
        self._send(force=changed)

    # -- the display -----------------------------------------------------------------------

    def _attach(self, progress) -> None:
        self._progress = progress
        self._id = progress.add_task(self.description, total=self.total, completed=self.completed, unit=self.unit)
        self._sent = time.monotonic()

    def _send(self, force: bool = False) -> None:
        if self._progress is None:
            return
        now = time.monotonic()
        if not force and now - self._sent < MIN_INTERVAL:
            return
        self._sent = now
        try:
            self._progress.update(self._id, completed=self.completed, total=self.total,
                                  description=self.description)
        except Exception:  # noqa: BLE001
            with _lock:
                self._progress = None
                _fail()


@contextmanager
def task(description: str, total: Optional[float] = None, unit: str = "", completed: float = 0) -> Iterator[Bar]:
    """A phase: a bar while the block runs (total None: indeterminate, its elapsed time shown).
    unit "bytes" shows the amounts as sizes. The bar is gone when the block ends."""
    global _progress, _open
    bar = Bar(description, total, unit)
    bar.completed = completed
    if active():
        with _lock:
            try:
                if _progress is None:
                    _progress = _start()
                if _progress is not None:
                    bar._attach(_progress)
                    _open += 1
            except Exception:  # noqa: BLE001
                _fail()
    try:
        yield bar
    finally:
        if bar._progress is not None:
            with _lock:
                try:
                    if bar._progress is _progress:
                        _open -= 1
                        if _open == 0:
                            progress, _progress = _progress, None
                            bar._send(force=True)  # the last phase as it ended, in the final frame
                            progress.stop()
                        else:
                            _progress.remove_task(bar._id)
                except Exception:  # noqa: BLE001
                    _fail()
            bar._progress = None


class DumpLines:
    """on_line for resultchan.wait_for: the guest's result lines drive a dump bar. PROGRESS
    sets it to written of total (the estimate: the body may run past it), RESTART says where the
    dump went, DONE ends it (docs/guest-interface.md, "Result channel")."""

    def __init__(self, bar: Bar, label: str = "dump"):
        self.bar = bar
        self.label = label

    def __call__(self, line) -> None:
        try:
            fields = line.fields
            if line.word == "PROGRESS":
                written, total = int(fields["written"], 0), int(fields["total"], 0)
                device = fields.get("device", "primary")
                where = "" if device == "primary" else f" to the {device}"
                self.bar.update(completed=written, total=max(total, written, 1),
                                description=f"{self.label}{where}")
            elif line.word == "RESTART":
                self.bar.update(completed=0, description=f"{self.label}: restarting on the {fields.get('to', '?')}")
            elif line.word == "DONE":
                if fields.get("status") == "complete" and self.bar.total:
                    self.bar.update(completed=self.bar.total)
                self.bar.update(description=f"{self.label}: {fields.get('status', 'done')}")
        except (KeyError, ValueError, TypeError, AttributeError):
            pass  # a malformed line: the oracles judge it; the bar just does not move
