"""`dumpbed session` driven through a pty (pexpect): the console handed over, the hot-keys, a
crash by hand validated as `dumpbed run` validates one, and nothing left behind by q or Ctrl-C
(docs/session.md)."""
from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pexpect
import pytest

from dumpbed import run as run_mod, session as session_mod
from tests.integration.test_robustness import DUMPBED, _assert_nothing_left, _env

MEMORY = "32M"
BOOT_TIMEOUT = 180  # to the first status line: the guest's build, disks, boot, estimates (TCG too)
RUN_TIMEOUT = 300  # from the crash key to the end of the report
ESC = "\x1d"  # Ctrl-]
VERDICT_PASS = r"\n(\x1b\[[0-9;]*m)*PASS(\x1b\[0m)?\r\n"  # the report's last line, in colour on a tty
STATUS = r"status: VM (\S+), guest (\S+), fault ([^,]+), run "


def _spawn(tmp_path: Path, out: Path, *args: str) -> pexpect.spawn:
    child = pexpect.spawn(DUMPBED[0], [*DUMPBED[1:], "session", "--memory", MEMORY, "--out", str(out), *args],
                          env=_env(tmp_path), encoding="utf-8", codec_errors="replace", timeout=BOOT_TIMEOUT,
                          dimensions=(50, 200))
    child.logfile_read = open(tmp_path / "terminal.log", "w")
    return child


def _ready(child: pexpect.spawn) -> None:
    child.expect(r"the guest is READY; its console is yours")
    child.expect(STATUS)
    assert child.match.groups() == ("running", "READY", "none"), child.match.groups()


def _finish(child: pexpect.spawn, timeout: float = RUN_TIMEOUT) -> tuple[int, str]:
    """Wait for the session to end; its exit status and everything it printed since the last match."""
    try:
        child.expect(pexpect.EOF, timeout=timeout)
    finally:
        if child.isalive():
            child.kill(signal.SIGKILL)  # the session this test started, by its PID
        child.close()
        child.logfile_read.close()
    assert child.signalstatus is None, f"the session died of signal {child.signalstatus}"
    return child.exitstatus, child.before


def _qemu_state(out: Path) -> list[str]:
    """The VM's status as QMP's query-status answered it, in the transcript, in order."""
    states = []
    for line in (out / "qmp.jsonl").read_text().splitlines():
        msg = json.loads(line)
        body = msg.get("msg", msg) if isinstance(msg, dict) else {}
        ret = body.get("return") if isinstance(body, dict) else None
        if isinstance(ret, dict) and "status" in ret and "running" in ret:
            states.append(ret["status"])
    return states


def _interrupted_and_clean(tmp_path: Path, out: Path, signal_word: str) -> None:
    marker = run_mod.interrupted(out)
    assert marker is not None, f"{out} is not marked interrupted"
    assert marker["signal"] == signal_word and abs(marker["time"] - time.time()) < 600, marker
    assert not (out / "report.json").exists()
    _assert_nothing_left(tmp_path, out)
    result = subprocess.run([*DUMPBED, "validate", str(out)], capture_output=True, text=True, env=_env(tmp_path))
    assert result.returncode == 2 and "interrupted" in result.stderr, result.stderr


def test_console_then_an_nmi_by_hand_dumps_and_validates(tmp_path):
    out = tmp_path / "run"
    child = _spawn(tmp_path, out)
    _ready(child)
    child.send("info\r")  # the guest's shell, typed at the terminal, answers on it
    child.expect(r"memory map \((\d+) bytes usable\)")
    assert int(child.match.group(1)) > 16 << 20
    child.expect(r"primary dump device: virtio-blk")
    child.send(ESC + "s")  # a snapshot on request, beside the run's own
    child.expect(r"snapshot of RAM and registers saved in (\S+) ")
    snap = Path(child.match.group(1))
    assert snap == out / "session" / "snapshot-1"
    assert sum(p.stat().st_size for p in snap.glob("mem-*.bin")) == 32 << 20
    assert json.loads((snap / "registers.json").read_text())["cr3"] > 0
    child.send(ESC + "n")
    child.expect(r"crash: an NMI sent over QMP")
    child.expect(VERDICT_PASS, timeout=RUN_TIMEOUT)
    status, _ = _finish(child)
    assert status == 0, (tmp_path / "terminal.log").read_text()[-3000:]
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "pass"
    assert json.loads((out / "scenario.json").read_text())["crash"] == "nmi"
    assert run_mod.interrupted(out) is None
    _assert_nothing_left(tmp_path, out)
    result = subprocess.run([*DUMPBED, "validate", str(out)], capture_output=True, text=True, env=_env(tmp_path))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr


def test_pause_and_continue(tmp_path):
    """p stops the VM (the status line says paused, as QMP's query-status did: the guest then
    takes no input), p again continues it (the typed line is then answered)."""
    out = tmp_path / "run"
    child = _spawn(tmp_path, out)
    _ready(child)
    child.send(ESC + "p")
    child.expect(STATUS)
    assert child.match.groups() == ("paused", "READY", "none")
    child.send("help\r")
    with pytest.raises(pexpect.TIMEOUT):  # a paused guest echoes nothing
        child.expect(r"list commands", timeout=3)
    child.send(ESC + "p")
    child.expect(STATUS)
    assert child.match.groups() == ("running", "READY", "none")
    child.expect(r"help\s+list commands", timeout=30)
    child.send(ESC + "r")
    child.expect(r"RIP=([0-9a-f]{16})")
    child.send(ESC + "?")
    child.expect(r"q  quit")
    child.expect(STATUS)
    child.send(ESC + "q")
    status, _ = _finish(child)
    assert status == 130
    # what QMP answered, in order: running at READY, paused after the first p, running after the second
    states = [s for i, s in enumerate(_qemu_state(out)) if i == 0 or s != _qemu_state(out)[i - 1]]
    assert states[:3] == ["running", "paused", "running"], states
    _interrupted_and_clean(tmp_path, out, session_mod.QUIT_MARK)


def test_quit_before_a_crash_leaves_nothing(tmp_path):
    out = tmp_path / "run"
    child = _spawn(tmp_path, out)
    _ready(child)
    child.send(ESC + "q")
    child.expect(r"dumpbed: session quit before a dump; \S+ marked interrupted")
    status, _ = _finish(child)
    assert status == 130
    _interrupted_and_clean(tmp_path, out, session_mod.QUIT_MARK)


@pytest.mark.parametrize("how", ["sigint", "ctrl-c"])
def test_ctrl_c_leaves_nothing(tmp_path, how):
    """SIGINT to the session's process, or Ctrl-C typed at its terminal (ISIG stays on)."""
    out = tmp_path / "run"
    child = _spawn(tmp_path, out)
    _ready(child)
    if how == "sigint":
        os.kill(child.pid, signal.SIGINT)  # the session this test started
    else:
        child.sendcontrol("c")
    child.expect(r"dumpbed: interrupted")
    status, _ = _finish(child)
    assert status == 130
    _interrupted_and_clean(tmp_path, out, "SIGINT")


def test_refused_without_a_terminal(tmp_path):
    out = tmp_path / "run"
    result = subprocess.run([*DUMPBED, "session", "--memory", MEMORY, "--out", str(out)], stdin=subprocess.DEVNULL,
                            capture_output=True, text=True, env=_env(tmp_path), timeout=60)
    assert result.returncode == 2
    assert result.stderr.splitlines() == [result.stderr.strip()] and \
        result.stderr.startswith("dumpbed: error: session needs a terminal"), result.stderr
    assert not out.exists()


def test_crash_option_refused(tmp_path):
    out = tmp_path / "run"
    child = _spawn(tmp_path, out, "--crash", "panic")
    status, text = _finish(child, timeout=60)
    assert status == 2 and "dumpbed: error: --crash panic: a session's crash is chosen at the console" in text
    assert not out.exists()


def test_watchdog_hang_by_hand(tmp_path):
    """w: what was typed so far is dropped (^U), the console's `hang` typed, the ib700 watchdog
    (on the session's machine whatever the key) fires its NMI: validated as `--crash hang`."""
    out = tmp_path / "run"
    child = _spawn(tmp_path, out)
    _ready(child)
    child.send("inf")  # half a line, never entered
    child.expect("inf")
    child.send(ESC + "w")
    child.expect(r"crash: the console's `hang`")
    child.expect(VERDICT_PASS, timeout=RUN_TIMEOUT)
    status, _ = _finish(child)
    assert status == 0, (tmp_path / "terminal.log").read_text()[-3000:]
    assert json.loads((out / "scenario.json").read_text())["crash"] == "hang"
    assert json.loads((out / "report.json").read_text())["verdict"] == "pass"
    _assert_nothing_left(tmp_path, out)


def test_a_crash_typed_at_the_console_is_refused(tmp_path):
    """`panic` typed at the console crashes the guest before any ground truth: the session says
    so in one error line (exit 2) instead of judging the dump against nothing, and QEMU is gone."""
    out = tmp_path / "run"
    child = _spawn(tmp_path, out)
    _ready(child)
    child.send("panic\r")
    child.expect(r"dumpbed: error: the guest crashed by itself", timeout=RUN_TIMEOUT)
    status, _ = _finish(child)
    assert status == 2
    assert not (out / "report.json").exists() and run_mod.interrupted(out) is None
    _assert_nothing_left(tmp_path, out)


def _arm(child: pexpect.spawn, spec: str, said: str) -> str:
    """Ctrl-] f, SPEC at the prompt: what the session said (a regex), and the fault the status line then shows."""
    child.send(ESC + "f")
    child.expect(r"fault> ")
    child.send(spec + "\r")
    child.expect(r"\[dumpbed\] " + said + r"\r*\n")  # the terminal's ONLCR makes \r\n of \n: \r\r\n
    child.expect(STATUS)
    assert child.match.group(2) == "READY", child.match.groups()
    return child.match.group(3)


def test_a_fault_armed_by_hot_key(tmp_path):
    """f asks for a --fault SPEC: a bad one, and one QEMU must be started for (kill's werror=stop),
    are refused in one line, nothing armed; slow armed, disarmed by an empty answer, then
    eio-at=20 armed: the NMI's dump runs with it as `dumpbed run --fault eio-at=20` would, and
    the report shows the fault and its expected outcome (partial, the guest's DONE failed)."""
    out = tmp_path / "run"
    child = _spawn(tmp_path, out)
    _ready(child)
    assert _arm(child, "bogus=3", r"fault refused: unknown fault 'bogus' \(available: [^)]+\); no fault armed") \
        == "none"
    assert _arm(child, "kill@50%", r"fault refused: kill must be set up before QEMU starts "
                r"\([^)]*werror/rerror=stop\): give it with --fault kill@50% on the `dumpbed session` command "
                r"line; no fault armed") == "none"
    assert _arm(child, "slow", r"fault armed for the crash: slow=16; the dump is then expected complete, "
                r"the guest's DONE complete") == "slow=16"
    assert _arm(child, "", r"fault slow=16 disarmed") == "none"
    assert _arm(child, "eio-at=20", r"fault armed for the crash: eio-at=20; the dump is then expected partial, "
                r"the guest's DONE failed") == "eio-at=20"
    child.send(ESC + "f")
    child.expect(r"fault> ")
    child.send("kil" + ESC)  # Ctrl-] at the prompt: nothing changes
    child.expect(r"fault unchanged: eio-at=20")
    child.expect(STATUS)
    assert child.match.group(3) == "eio-at=20"
    child.send(ESC + "n")
    child.expect(r"crash: an NMI sent over QMP")
    child.expect(r"fault armed at this crash: eio-at=20 ")
    child.expect(VERDICT_PASS, timeout=RUN_TIMEOUT)
    status, _ = _finish(child)
    terminal = re.sub(r"\x1b\[[0-9;]*m", "", (tmp_path / "terminal.log").read_text())  # the report in colour
    assert status == 0, terminal[-3000:]
    assert "\nfault eio-at=20:" in terminal and "\noutcome partial (expected partial" in terminal, terminal[-3000:]
    scenario = json.loads((out / "scenario.json").read_text())
    assert (scenario["faults"], scenario["expect"], scenario["expect_guest_result"]) == (["eio-at=20"], "partial",
                                                                                         "failed")
    report = json.loads((out / "report.json").read_text())
    assert report["verdict"] == "pass" and report["fault"]["fault"] == "eio-at=20", report["fault"]
    assert (report["outcome"], report["expected_outcome"]) == ("partial", "partial")
    assert report["fault"]["writes_landed"] == 19, report["fault"]  # the 20th write and every later one failed
    _assert_nothing_left(tmp_path, out)
    result = subprocess.run([*DUMPBED, "validate", str(out), "--json"], capture_output=True, text=True,
                            env=_env(tmp_path))  # judged the same again, from scenario.json's faults
    assert result.returncode == 0 and json.loads(result.stdout)["expected_outcome"] == "partial", result.stderr
