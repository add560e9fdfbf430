"""What every oracle returns: a named check with ok and a one-line detail."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from dumpbed.errors import DumpbedError

MAX_PROBLEMS = 20  # problems kept per check; the detail says how many there were


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    problems: list[str] = field(default_factory=list)

    def to_dict(self) -> dict:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "problems": list(self.problems)}


def make_check(name: str, problems: list[str], ok_detail: str) -> Check:
    """ok when there are no problems; else the detail is the first problem (and a count)."""
    if not problems:
        return Check(name, True, ok_detail)
    detail = problems[0]
    if len(problems) > 1:
        detail += f" (and {len(problems) - 1} more)"
    return Check(name, False, detail, problems[:MAX_PROBLEMS])


def load_json(path: Path, what: str):
    """Read an artifact's JSON; a missing or garbled file is a one-line DumpbedError."""
    try:
        text = Path(path).read_text()
    except FileNotFoundError:
        raise DumpbedError(f"{path}: no such file ({what})") from None
    except (OSError, UnicodeDecodeError) as e:
        raise DumpbedError(f"{path}: cannot read {what}: {e}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise DumpbedError(f"{path}: {what} is not valid JSON: {e}") from None


def require_int(value, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise DumpbedError(f"{where} must be an integer >= {minimum}, not {value!r}")
    return value
