"""The guest's result channel (isa-debugcon to a file): `DUMPBED WORD key=value ...` lines."""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from dumpbed.deadline import Deadline, WaitAborted


@dataclass
class ResultLine:
    word: str
    fields: dict[str, str]
    raw: str

    def int(self, key: str) -> int:
        return int(self.fields[key], 0)


def parse_line(line: str) -> Optional[ResultLine]:
    parts = line.strip().split()
    if len(parts) < 2 or parts[0] != "DUMPBED":
        return None
    fields = {}
    for part in parts[2:]:
        key, sep, value = part.partition("=")
        if sep:
            fields[key] = value
    return ResultLine(parts[1], fields, line.strip())


def read_lines(path: Path) -> list[ResultLine]:
    try:
        text = Path(path).read_text(encoding="ascii", errors="replace")
    except FileNotFoundError:
        return []
    # A line without its newline may still be being written: leave it for the next read.
    complete = text[: text.rfind("\n") + 1]
    return [r for r in map(parse_line, complete.splitlines()) if r is not None]


def said(path: Path, word: str) -> bool:
    """Whether the channel holds a whole line with WORD yet."""
    return any(line.word == word for line in read_lines(path))


def wait_for(path: Path, word: str, timeout: float, alive: Callable[[], bool],
             what: Optional[str] = None, on_line: Optional[Callable[[ResultLine], None]] = None) -> ResultLine:
    """Poll the channel until a line with WORD appears. Stops early when `alive()` turns false
    and the line still has not come (the guest exited or QEMU died). on_line, if given, sees
    each line of the channel once, in order, up to and including the one returned (those
    written before the wait began too): e.g. PROGRESS lines for a progress bar."""
    deadline = Deadline(timeout, what or f"the guest's {word} line on the result channel")
    seen = 0

    def look() -> Optional[ResultLine]:
        nonlocal seen
        lines = read_lines(path)
        for i, line in enumerate(lines):
            if on_line is not None and i >= seen:
                seen = i + 1
                on_line(line)
            if line.word == word:
                return line
        return None

    while True:
        found = look()
        if found is not None:
            return found
        if deadline.expired:
            raise deadline.timeout()
        if not alive():
            found = look()  # one last look: the line may race the exit
            if found is not None:
                return found
            raise GuestGone(f"QEMU exited while waiting for {deadline.what}", deadline.what)
        time.sleep(min(0.02, max(deadline.remaining(), 0.001)))


class GuestGone(WaitAborted):
    """QEMU exited while we were waiting for a result line (`what` names the line)."""
