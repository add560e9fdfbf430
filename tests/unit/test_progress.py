"""dumpbed.progress: bars on a terminal, nothing at all anywhere else, and the dump's bar moved
by the guest's PROGRESS lines (docs/guest-interface.md, "Result channel")."""
from __future__ import annotations

import io
import os
import pty
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from rich.console import Console

from dumpbed import progress
from dumpbed.images import canary
from dumpbed.images.layout import DiskLayout, MiB
from dumpbed.machine import resultchan
from dumpbed.oracles import validate

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# The phases of a run, as the harness opens them, the guest's result channel written as the
# guest would (PROGRESS at half the estimate, then DONE), in a process of its own.
PHASES = textwrap.dedent("""
    import sys, threading, time
    from pathlib import Path
    from dumpbed import progress
    from dumpbed.images import canary
    from dumpbed.images.layout import DiskLayout, MiB
    from dumpbed.machine import resultchan

    work = Path(sys.argv[1])
    print("DATA on stdout", flush=True)
    canary.fill(work / "dump.img", DiskLayout.for_dump(8 * MiB, canary_seed=1))
    with progress.task("boot (to READY)"):
        time.sleep(0.6)
    log = work / "result.log"
    log.write_text("DUMPBED PROGRESS written=33554432 total=67108864 body=33554432 device=primary generation=1\\n")

    def guest():
        time.sleep(0.8)
        with open(log, "a") as f:
            f.write("DUMPBED DONE status=complete bytes=70000000 device=primary generation=1\\n")

    threading.Thread(target=guest).start()
    with progress.task("dump", unit="bytes") as bar:
        resultchan.wait_for(log, "DONE", 10, lambda: True, on_line=progress.DumpLines(bar))
    print("END on stdout", flush=True)
""")


@pytest.fixture(autouse=True)
def fresh_progress(monkeypatch):
    """Each test starts with the module's switches as a new process has them, and with rich
    judging a terminal by isatty alone."""
    for name, value in (("_disabled", False), ("_broken", False), ("_console", None), ("_progress", None),
                        ("_open", 0)):
        monkeypatch.setattr(progress, name, value)
    for name in ("TTY_COMPATIBLE", "FORCE_COLOR"):
        monkeypatch.delenv(name, raising=False)


def _terminal(width: int = 120) -> tuple[Console, io.StringIO]:
    buffer = io.StringIO()
    return Console(file=buffer, force_terminal=True, width=width, color_system=None), buffer


def _child_env() -> dict:
    env = dict(os.environ, TERM="xterm-256color", COLUMNS="120", LINES="40")
    for name in ("TTY_COMPATIBLE", "TTY_INTERACTIVE", "NO_COLOR", "FORCE_COLOR"):
        env.pop(name, None)
    env["PYTHONPATH"] = os.path.join(REPO, "harness") + os.pathsep + env.get("PYTHONPATH", "")
    return env


def _read_all(fd: int) -> bytes:
    chunks = []
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: the child's end closed
            break
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _run_phases(tmp_path, stdout, stderr) -> subprocess.CompletedProcess:
    script = tmp_path / "phases.py"
    script.write_text(PHASES)
    return subprocess.run([sys.executable, str(script), str(tmp_path)], stdout=stdout, stderr=stderr,
                          env=_child_env(), timeout=60)


# -- (a) nothing anywhere when not on a terminal ----------------------------------------------

def test_not_a_terminal_writes_nothing_in_process(tmp_path, capfd):
    assert not progress.active()  # pytest's capture: neither stdout nor stderr is a terminal
    canary.fill(tmp_path / "d.img", DiskLayout.for_dump(4 * MiB, canary_seed=3))
    with progress.task("boot (to READY)"), progress.task("dump", unit="bytes") as bar:
        progress.DumpLines(bar)(resultchan.parse_line(
            "DUMPBED PROGRESS written=1048576 total=2097152 body=1048576 device=primary generation=1"))
        assert (bar.completed, bar.total) == (1048576, 2097152)  # the figures are kept all the same
    assert capfd.readouterr() == ("", "")


def test_stdout_a_pipe_nothing_even_with_stderr_a_terminal(tmp_path):
    master, slave = pty.openpty()
    try:
        proc = _run_phases(tmp_path, subprocess.PIPE, slave)
        os.close(slave)
        slave = None
        err = _read_all(master)
    finally:
        if slave is not None:
            os.close(slave)
        os.close(master)
    assert proc.returncode == 0
    assert proc.stdout == b"DATA on stdout\nEND on stdout\n"
    assert err == b"", err


def test_stdout_and_stderr_pipes_nothing(tmp_path):
    proc = _run_phases(tmp_path, subprocess.PIPE, subprocess.PIPE)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == b"DATA on stdout\nEND on stdout\n"
    assert proc.stderr == b""


def test_disabled_draws_nothing_even_on_a_terminal():
    console, buffer = _terminal()
    progress.disable()  # `dumpbed session` (the fixture turns it back on)
    with progress.use(console):
        with progress.task("boot (to READY)"), progress.task("fill", total=10) as bar:
            bar.advance(5)
        assert bar.completed == 5
    assert buffer.getvalue() == ""


# -- (b) on a terminal: the phases and the dump's progress -------------------------------------

def test_terminal_shows_the_phases_on_stderr_never_on_stdout(tmp_path):
    """stdout and stderr two terminals: the bars (fill, boot, the dump at 50% of its estimate, its
    end) are on stderr's; stdout's holds the data only."""
    out_master, out_slave = pty.openpty()
    err_master, err_slave = pty.openpty()
    received = {}

    def drain(name, fd):
        received[name] = _read_all(fd)

    readers = [threading.Thread(target=drain, args=("out", out_master)),
               threading.Thread(target=drain, args=("err", err_master))]
    for reader in readers:
        reader.start()
    try:
        proc = _run_phases(tmp_path, out_slave, err_slave)
    finally:
        os.close(out_slave)
        os.close(err_slave)
        for reader in readers:
            reader.join(10)
        os.close(out_master)
        os.close(err_master)
    assert proc.returncode == 0
    out = received["out"].decode(errors="replace")
    err = received["err"].decode(errors="replace")
    assert out.replace("\r\n", "\n") == "DATA on stdout\nEND on stdout\n"
    assert "fill dump.img" in err and "boot (to READY)" in err
    assert "50%" in err and "32.0 MiB/64.0 MiB" in err, err  # the PROGRESS line, drawn
    # DONE: the dump's bar at its end, its own figures (DONE complete: all of the estimate)
    assert "dump: complete" in err and "64.0 MiB/64.0 MiB" in err, err


def test_terminal_shows_validation_check_by_check(good_run):
    console, buffer = _terminal()
    with progress.use(console):
        assert validate.validate_run(good_run.dir).ok
    shown = buffer.getvalue()
    assert "validate: guest-result" in shown and "100%" in shown, shown  # the last check, all done
    assert "\x1b[?25h" in shown  # the display stopped (cursor shown again): nothing left running


def test_nested_phases_share_one_display():
    console, buffer = _terminal()
    with progress.use(console):
        with progress.task("bench", total=3) as runs:  # as `dumpbed bench`: one bar, moved per run
            runs.update(completed=1, description="bench: nvme")
            with progress.task("fill dump.img", total=8 * MiB, unit="bytes") as bar:
                bar.advance(8 * MiB)
            assert progress._open == 1 and progress._progress is not None
        assert progress._progress is None
    assert "bench: nvme" in buffer.getvalue() and "1/3" in buffer.getvalue()


class FailingAfter(io.StringIO):
    """A terminal whose writes fail once `good` of them went through (EIO: the terminal gone)."""

    def __init__(self, good: int):
        super().__init__()
        self.good = good

    def write(self, text):
        if self.good <= 0:
            raise OSError(5, "Input/output error")
        self.good -= 1
        return super().write(text)


def test_a_failing_display_never_breaks_the_work(monkeypatch):
    """The terminal failing as the display starts, as rich's refresh thread draws it while the
    phases update their bars, or as it ends: the work goes on, its figures kept, nothing raised
    in any thread, and the display stays off for the rest of the process."""
    crashed = []
    monkeypatch.setattr(threading, "excepthook", crashed.append)  # what a thread would leave unhandled
    stderr = sys.stderr
    # (writes that go through, the pause between two updates, where it fails): the display's
    # start takes two writes, each bar added a frame, the refresh thread's first frame comes
    # 1/REFRESH_PER_SECOND later
    tick = 1 / progress.REFRESH_PER_SECOND
    for good, pause, where in ((0, 0, "start"), (2, 0, "start"), (3, 0, "start"), (4, tick / 4, "drawing"),
                               (4, 0, "end")):
        progress._broken = False
        with progress.use(Console(file=FailingAfter(good), force_terminal=True, width=80)):
            with progress.task("bench", total=2) as outer:
                with progress.task("dump", total=10) as bar:
                    assert (bar._progress is None) == (where == "start"), where
                    for _ in range(10):
                        bar.advance()
                        time.sleep(pause)
                    bar.update(description="dump: complete")
                    assert (bar._progress is None) == (where in ("start", "drawing")), where
                outer.update(completed=2)
                assert (progress._progress is None) == (where != "end"), where
            assert not progress.active() and progress._progress is None and progress._open == 0, where
            with progress.task("validate") as after:  # the display stays off
                assert after._progress is None
                after.advance()
        assert (bar.completed, bar.description, outer.completed, after.completed) == (10, "dump: complete", 2, 1)
        assert sys.stderr is stderr, where  # rich's redirection of stderr undone
    assert crashed == []


# -- (c) the result channel's lines move the dump bar ------------------------------------------

LINES = [
    "DUMPBED READY ram=33554432 dumpdev=vda part_lba=2048 part_blocks=100000 block=512 max_transfer=2097152 "
    "dumpdev2=none level=3",
    "DUMPBED CRASH reason=nmi vector=2",
    "DUMPBED QUIESCED device=primary",
    "DUMPBED PROGRESS written=0 total=67108864 body=0 device=primary generation=1",
    "DUMPBED PROGRESS written=16777216 total=67108864 body=16777216 device=primary generation=1",
    "DUMPBED PROGRESS written=oops total=67108864 body=0 device=primary generation=1",  # malformed: ignored
    "DUMPBED RESTART from=primary to=secondary error=-5 stage=body offset=1048576",
    "DUMPBED PROGRESS written=50331648 total=67108864 body=50331648 device=secondary generation=2",
    "DUMPBED PROGRESS written=69206016 total=67108864 body=69206016 device=secondary generation=2",
    "DUMPBED DONE status=complete bytes=70000000 device=secondary generation=2",
]


def test_progress_lines_advance_the_dump_bar(tmp_path):
    log = tmp_path / "result.log"
    log.write_text("".join(line + "\n" for line in LINES[:3]))
    bar = progress.Bar("dump", None, "bytes")
    on_bar = progress.DumpLines(bar)
    seen = []

    def on_line(line):
        on_bar(line)
        seen.append((line.word, bar.completed, bar.total, bar.description))

    def guest():  # the dump's lines come while the host waits
        for line in LINES[3:]:
            time.sleep(0.05)
            with open(log, "a") as f:
                f.write(line + "\n")

    writer = threading.Thread(target=guest)
    writer.start()
    done = resultchan.wait_for(log, "DONE", 10, lambda: True, on_line=on_line)
    writer.join()
    assert done.fields["status"] == "complete"
    assert [word for word, *_ in seen] == [resultchan.parse_line(line).word for line in LINES]  # each once, in order
    progress_rows = [row[1:] for row in seen if row[0] in ("PROGRESS", "RESTART", "DONE")]
    assert progress_rows == [
        (0, 67108864, "dump"),
        (16777216, 67108864, "dump"),
        (16777216, 67108864, "dump"),  # the malformed line moved nothing
        (0, 67108864, "dump: restarting on the secondary"),
        (50331648, 67108864, "dump to the secondary"),
        (69206016, 69206016, "dump to the secondary"),  # past the estimate: the total follows
        (69206016, 69206016, "dump: complete"),
    ]


def test_on_line_sees_lines_written_before_the_wait_and_a_last_look_at_exit(tmp_path):
    log = tmp_path / "result.log"
    log.write_text("DUMPBED PROGRESS written=1 total=2 body=1 device=primary generation=1\n"
                   "DUMPBED PROGRESS written=2 total=2 body=2 device=primary generation=1\n")
    seen = []
    with pytest.raises(resultchan.GuestGone):
        resultchan.wait_for(log, "DONE", 5, lambda: False, on_line=seen.append)
    assert [line.int("written") for line in seen] == [1, 2]  # each once, though read twice


def test_the_dump_bar_is_drawn_from_the_lines(tmp_path):
    console, buffer = _terminal()
    log = tmp_path / "result.log"
    log.write_text("DUMPBED PROGRESS written=25165824 total=100663296 body=25165824 device=primary generation=1\n")
    with progress.use(console), progress.task("dump", unit="bytes") as bar:
        with pytest.raises(resultchan.GuestGone):
            resultchan.wait_for(log, "DONE", 5, lambda: False, on_line=progress.DumpLines(bar))
    shown = buffer.getvalue()
    assert "dump" in shown and "25%" in shown and "24.0 MiB/96.0 MiB" in shown, shown
