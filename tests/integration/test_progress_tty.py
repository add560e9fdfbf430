"""`dumpbed run` on a terminal (a pty, pexpect) draws its phases' bars: the disk's fill, the
boot, the dump moved by the guest's PROGRESS lines, the validation check by check; the report
follows as it does anywhere else (docs/guest-interface.md, "Result channel"; README, "Usage")."""
from __future__ import annotations

import re
import signal

import pexpect

from tests.integration.test_robustness import DUMPBED, _env

VERDICT_PASS = r"\n(\x1b\[[0-9;]*m)*PASS(\x1b\[0m)?\r\n"  # the report's last line, in colour on a tty


def test_run_on_a_terminal_shows_its_phases(tmp_path):
    out = tmp_path / "run"
    child = pexpect.spawn(DUMPBED[0], [*DUMPBED[1:], "run", "--memory", "32M", "--out", str(out)],
                          env=_env(tmp_path, TERM="xterm-256color"), encoding="utf-8", codec_errors="replace",
                          timeout=300, dimensions=(40, 160))
    child.logfile_read = open(tmp_path / "terminal.log", "w")
    try:
        for phase in (r"fill dump\.img", r"boot \(to READY\)", r"dump", r"validate: ", VERDICT_PASS):
            child.expect(phase)
        child.expect(pexpect.EOF)
    finally:
        if child.isalive():
            child.kill(signal.SIGKILL)  # the run this test started, by its PID
        child.close()
        child.logfile_read.close()
    assert child.exitstatus == 0, (tmp_path / "terminal.log").read_text()[-3000:]
    shown = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", (tmp_path / "terminal.log").read_text())
    # the dump's bar, moved by the PROGRESS lines (bytes written of the estimate), ended by DONE
    assert re.search(r"dump: complete .* 100% [0-9.]+ MiB/[0-9.]+ MiB", shown), shown[-3000:]
    assert re.search(r"validate: \S+ .* 100% (\d+)/\1 ", shown), shown[-3000:]  # every check done
