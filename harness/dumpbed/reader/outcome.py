"""What a run ended with, against what its scenario expected (docs/faults.md, "Outcomes").

Every dump is classified complete, partial, unsupported, corrupt or none (harness/dumpbed/reader/dumpfmt.py).
The reader, given the run's dump id, reads another dump's leader as none: an older dump left on
the disk is never taken for the new one. The verdict is pass only when the classification is
the one the scenario expects and every oracle that applies passes.
"""
from __future__ import annotations

from typing import Optional

from dumpbed.reader.dumpfmt import another_dump

OUTCOMES = ("complete", "partial", "unsupported", "corrupt", "none")


def actual(dump: dict, scenario: Optional[dict]) -> tuple[str, str]:
    """(classification, why) of the dump of record (validate's dump summary)."""
    status = dump.get("status") or "none"
    found = _id_bytes(dump.get("dump_id"))
    if status != "none" and found is not None:
        # A dump read without the run's id (the reader names it none when given the id).
        other = another_dump(found, _id_bytes((scenario or {}).get("dump_id")))
        if other:
            return "none", f"a {status} dump: {other}"
    why = dump.get("first_inconsistency") if status == "corrupt" else dump.get("reason")
    return status, why or ""


def _id_bytes(value) -> Optional[bytes]:
    """A dump id as the summary (hex) or a loaded scenario (bytes) holds it; None if unusable."""
    if isinstance(value, bytes):
        return value
    try:
        return bytes.fromhex(value) if isinstance(value, str) else None
    except ValueError:
        return None


def expected(scenario: Optional[dict], expectation: Optional[dict] = None) -> str:
    """The outcome the run must end with: the validation's (it follows where a fault hit), else
    the scenario's declaration."""
    if expectation and expectation.get("outcome"):
        return expectation["outcome"]
    return (scenario or {}).get("expect") or "complete"


def verdict(checks: list[dict], dump: dict, scenario: Optional[dict], problem: Optional[str],
            expectation: Optional[dict] = None) -> dict:
    got, why = actual(dump, scenario)
    want = expected(scenario, expectation)
    ok = problem is None and got == want and all(c["ok"] for c in checks)
    failed = [c["name"] for c in checks if not c["ok"]]
    return {"verdict": "pass" if ok else "fail", "outcome": got, "expected_outcome": want, "outcome_why": why,
            "expectation_why": (expectation or {}).get("why"), "first_failed": failed[0] if failed else None}
