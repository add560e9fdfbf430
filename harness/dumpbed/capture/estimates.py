"""Before any crash, the facility's estimate for every dump level, read at the guest's shell
(`estimate`, docs/components.md): estimates.json.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

from dumpbed.errors import DumpbedError
from dumpbed.guest_interface import PROMPT
from dumpbed.machine.qemu import Machine


def console_command(machine: Machine, command: str, timeout: float) -> str:
    """Type a shell command at the prompt, wait until it has run (the prompt after its echo)
    and return what it printed."""
    machine.console.wait_for(re.escape(PROMPT), timeout)  # the shell is listening
    mark = machine.console.mark()
    machine.console.send(command + "\r")
    match = machine.console.wait_for(re.escape(command) + r"(?P<output>[\s\S]*?)" + re.escape(PROMPT), timeout, since=mark)
    return match["output"].decode("utf-8", "replace")


_ESTIMATE_LINE = re.compile(r"^ESTIMATE level=(?P<level>\d+) total=(?P<total>\d+)(?P<rest>(?: \S+=\d+)*)\s*$", re.M)


def parse_estimates(output: str) -> dict[str, dict]:
    """The shell's `estimate` lines (docs/components.md) as {level: {"total": n, "components": {name: n}}}."""
    estimates = {}
    for m in _ESTIMATE_LINE.finditer(output):
        parts = dict(word.split("=", 1) for word in m["rest"].split())
        estimates[m["level"]] = {"total": int(m["total"]), "components": {k: int(v) for k, v in parts.items()}}
    return estimates


def capture_estimates(machine: Machine, out: Path, timeout: float) -> None:
    """Before any crash, the facility's estimate for every level: estimates.json."""
    estimates = parse_estimates(console_command(machine, "estimate", timeout))
    if len(estimates) != 10:
        raise DumpbedError(f"the guest's estimate command printed {len(estimates)} of the 10 levels")
    (out / "estimates.json").write_text(json.dumps(estimates, indent=1) + "\n")
