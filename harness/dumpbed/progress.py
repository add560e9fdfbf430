"""Progress of the harness's long phases on the terminal, and nothing at all anywhere else.

    with progress.task("fill dump.img", total=size, unit="bytes") as bar:
        for chunk in ...:
            bar.advance(len(chunk))

A phase shows as a rich.progress bar on stderr, only while stdout and stderr are both terminals
as rich judges one (the test the CLI's tables make, dumpbed.tables.is_plain: TTY_COMPATIBLE and
FORCE_COLOR count as rich documents them): with stdout a pipe or a file (`dumpbed show --json |
jq`, a CI log), or stderr one, not a byte is written, and stdout never carries any of it.
`disable()` turns it off for the process (`dumpbed session`: the terminal is the guest's console
there). Phases nest (`dumpbed bench`: a bar of its runs, each run's phases under it) on one live
display, started by the first phase and erased (transient) when the last ends. An update only
stores the figures in rich (its refresh thread draws them, REFRESH_PER_SECOND times a second), so
it is cheap enough for every chunk. Whatever goes wrong in the display, at its start, in that
thread's drawing or at its end, turns it off for the rest of the process without ever reaching
the caller: a progress bar never breaks a run.
"""
from __future__ import annotations

import threading
from contextlib import contextmanager
from typing import Iterator, Optional

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
def use(console) -> Iterator[None]:
    """Draw on this rich Console inside the block, terminal or not (tests)."""
    global _console, _broken
    before, _console, _broken = _console, console, False
    try:
        yield
    finally:
        _console = before


def _display_console():
    """The console a phase opened now would be drawn on, or None: use()'s, or stderr's while
    stdout and stderr are both terminals."""
    if _disabled or _broken:
        return None
    if _console is not None:
        return _console
    from rich.console import Console

    from dumpbed.tables import is_plain

    stderr = Console(stderr=True)
    if is_plain(Console()) or is_plain(stderr):
        return None
    return stderr


def active() -> bool:
    """Whether a phase opened now would be shown."""
    return _display_console() is not None


def _fail() -> None:
    """The display raised: stop it quietly and keep it off."""
    global _broken, _progress, _open
    _broken = True
    progress, _progress, _open = _progress, None, 0
    if progress is not None:
        _stop_quietly(progress)


def _stop_quietly(progress) -> None:
    try:
        progress.stop()
    except Exception:  # noqa: BLE001: nothing of the display may reach the run
        pass


def _start(console):
    """The live Progress on this console, started with the first phase."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), _amount_column(),
                        TimeElapsedColumn(), console=console, transient=True,
                        refresh_per_second=REFRESH_PER_SECOND,
                        # stdout stays stdout: never drawn on stderr's console
                        redirect_stdout=False, redirect_stderr=True)
    _guard_drawing(progress)
    try:
        progress.start()
    except Exception:
        _stop_quietly(progress)
        raise
    return progress


def _guard_drawing(progress) -> None:
    """rich's refresh thread draws the frames, and nothing there catches what a drawing raises
    (the thread dies, its traceback printed on stderr): a failed drawing only marks the display
    failed instead, and draws nothing more; the caller's next update or phase end, in its own
    thread, turns it off (_check)."""
    live = progress.live
    draw = live.refresh
    progress.dumpbed_failed = False

    def refresh() -> None:
        if progress.dumpbed_failed:
            return
        try:
            draw()
        except Exception:  # noqa: BLE001: nothing of the display may reach the run
            progress.dumpbed_failed = True

    live.refresh = refresh  # the thread, start() and stop() all draw through live.refresh


class _DisplayFailed(Exception):
    """A drawing of the display failed (rich's refresh thread)."""


def _check(progress) -> None:
    if progress.dumpbed_failed:
        raise _DisplayFailed()


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

    # -- what callers use ------------------------------------------------------------------

    def advance(self, amount: float = 1) -> None:
        self.completed += amount
        self._send()

    def update(self, completed: Optional[float] = None, total: Optional[float] = None,
               description: Optional[str] = None) -> None:
        """Set what is given."""
        if completed is not None:
            self.completed = completed
        if total is not None:
            self.total = total
        if description is not None:
            self.description = description
        self._send()

    # -- the display -----------------------------------------------------------------------

    def _attach(self, progress) -> None:
        self._progress = progress
        self._id = progress.add_task(self.description, total=self.total, completed=self.completed, unit=self.unit)

    def _send(self) -> None:
        """Hand the figures to rich (stored under its lock; its refresh thread draws them)."""
        if self._progress is None:
            return
        try:
            self._progress.update(self._id, completed=self.completed, total=self.total,
                                  description=self.description)
            _check(self._progress)
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
    with _lock:
        try:
            if _progress is None:
                console = _display_console()
                if console is not None:
                    _progress = _start(console)
            if _progress is not None and not _disabled:
                bar._attach(_progress)
                _open += 1
                _check(_progress)
        except Exception:  # noqa: BLE001
            bar._progress = None
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
                            progress.stop()  # its final frame: the last phase as it ended
                            _check(progress)  # a frame failed: off for the rest of the process
                        else:
                            _progress.remove_task(bar._id)
                            _check(_progress)
                except Exception:  # noqa: BLE001
                    _fail()
            bar._progress = None


class DumpLines:
    """on_line for resultchan.wait_for: the guest's result lines drive a dump bar. PROGRESS
    sets it to written of total (the estimate: the body may run past it), RESTART says where the
    dump went, DONE ends it (docs/guest-interface.md, "Result channel")."""

    def __init__(self, bar: Bar):
        self.bar = bar

    def __call__(self, line) -> None:
        try:
            fields = line.fields
            if line.word == "PROGRESS":
                written, total = int(fields["written"], 0), int(fields["total"], 0)
                device = fields.get("device", "primary")
                where = "" if device == "primary" else f" to the {device}"
                self.bar.update(completed=written, total=max(total, written, 1),
                                description=f"dump{where}")
            elif line.word == "RESTART":
                self.bar.update(completed=0, description=f"dump: restarting on the {fields.get('to', '?')}")
            elif line.word == "DONE":
                if fields.get("status") == "complete" and self.bar.total:
                    self.bar.update(completed=self.bar.total)
                self.bar.update(description=f"dump: {fields.get('status', 'done')}")
        except (KeyError, ValueError, TypeError, AttributeError):
            pass  # a malformed line: the oracles judge it; the bar just does not move
