"""The validation's work beside it in a forked child (harness/dumpbed/oracles/beside.py): what it
returns or raises comes back, what it is sent arrives, and it never outlives its deadline, the
validation, or the harness."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import procs
import pytest

from dumpbed.errors import DumpbedError
from dumpbed.oracles.beside import Beside

HARNESS = Path(__file__).resolve().parents[2] / "harness"


def _gone(pid: int) -> bool:
    """Whether the child was reaped: waitpid knows no such child of ours."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        return True
    return False


def _echo_sum(inbox, base):
    return base + sum(inbox())


def _raise(inbox, text):
    raise DumpbedError(text)


def _sleep(inbox, seconds):
    time.sleep(seconds)
    return "slept"


def _kill_self(inbox):
    os.kill(os.getpid(), signal.SIGKILL)


class _Unpicklable(Exception):
    def __reduce__(self):
        raise TypeError("no pickling here")


def _raise_unpicklable(inbox):
    raise _Unpicklable("a lock inside")


def _big_read_late(inbox, seconds):
    time.sleep(seconds)  # a send that waited for the child to read would wait this long
    return len(inbox())


def test_the_work_gets_what_it_is_sent_and_its_return_comes_back():
    with Beside("the sum", _echo_sum, 10) as child:
        child.send([1, 2, 3])
        assert child.result(30) == 16
    assert _gone(child.pid)


def test_a_big_object_is_sent_while_the_caller_goes_on():
    # 8 MiB: far more than a pipe holds, sent before the child asks for it
    with Beside("the length", _big_read_late, 2.0) as child:
        t0 = time.monotonic()
        child.send(b"x" * (8 << 20))
        assert time.monotonic() - t0 < 1.0  # the child reads it only 2 s from now
        assert child.result(30) == 8 << 20


def test_what_the_work_raises_is_raised_with_the_childs_traceback():
    with Beside("the failing one", _raise, "the log runs past its end") as child:
        with pytest.raises(DumpbedError, match="the log runs past its end") as caught:
            child.result(30)
    assert any("in the child process" in note and "_raise" in note for note in caught.value.__notes__)
    assert _gone(child.pid)


def test_an_exception_that_will_not_pickle_comes_back_as_its_text():
    with Beside("the odd one", _raise_unpicklable) as child:
        with pytest.raises(DumpbedError, match="a lock inside"):
            child.result(30)


def test_a_child_that_dies_gives_a_clear_error():
    with Beside("the consistency sweep", _kill_self) as child:
        with pytest.raises(DumpbedError, match=r"^the consistency sweep ended without a verdict \(killed by SIGKILL\)$"):
            child.result(30)
    assert _gone(child.pid)


def test_a_child_past_its_deadline_is_stopped():
    with Beside("the slow one", _sleep, 60) as child:
        t0 = time.monotonic()
        with pytest.raises(DumpbedError, match=r"the slow one gave no verdict in 1 s \(its process was stopped\)"):
            child.result(1)
        assert time.monotonic() - t0 < 10
        assert _gone(child.pid)


def test_leaving_early_stops_the_child():
    with Beside("the slow one", _sleep, 60) as child:
        child.send("never read")  # its writer must not keep the caller waiting either
    assert _gone(child.pid)


def test_ctrl_c_is_the_parents_to_decide():
    # the terminal sends SIGINT to the whole group: the child goes on, the parent stops it
    with Beside("the slow one", _sleep, 1) as child:
        os.kill(child.pid, signal.SIGINT)
        assert child.result(30) == "slept"


def test_the_child_dies_with_a_harness_killed_outright(tmp_path):
    """A harness killed by SIGKILL runs no cleanup: the child goes with it (PR_SET_PDEATHSIG)."""
    script = textwrap.dedent("""
        import sys, time
        from dumpbed.oracles.beside import Beside
        def work(inbox):
            time.sleep(120)
        child = Beside("the sweep", work)
        print(child.pid, flush=True)
        time.sleep(120)
    """)
    harness = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True,
                               env={**os.environ, "PYTHONPATH": str(HARNESS)})
    try:
        pid = int(harness.stdout.readline())
        harness.kill()
        harness.wait(10)
        deadline = time.monotonic() + 10
        while procs.alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not procs.alive(pid), f"the child {pid} outlived the harness: {Path(f'/proc/{pid}/stat').read_text()}"
    finally:
        if harness.poll() is None:
            harness.kill()
            harness.wait(10)
        harness.stdout.close()
