"""What a run ended with, against what its scenario expected (docs/faults.md, "Outcomes").

Every dump is classified complete, partial, corrupt or none (harness/dumpfmt.py). A dump whose
id is not this run's is none: an older dump left on the disk is never taken for the new one.
The verdict is pass only when the classification is the one the scenario expects and every
oracle that applies passes.
"""
from __future__ import annotations

from typing import Optional

OUTCOMES = ("complete", "partial", "corrupt", "none")


def actual(dump: dict, scenario: Optional[dict]) -> tuple[str, str]:
    """(classification, why) of the dump of record."""
    status = dump.get("status") or "none"
    want_id = (scenario or {}).get("dump_id")
    if status != "none" and want_id and dump.get("dump_id") and dump["dump_id"] != want_id:
        return "none", f"the disk holds a {status} dump of another run (dump id {dump['dump_id']})"
    why = dump.get("first_inconsistency") if status == "corrupt" else dump.get("reason")
    return status, why or ""


def expected(scenario: Optional[dict]) -> str:
    return (scenario or {}).get("expect") or "complete"


def verdict(checks: list[dict], dump: dict, scenario: Optional[dict], problem: Optional[str]) -> dict:
    got, why = actual(dump, scenario)
    want = expected(scenario)
    ok = problem is None and got == want and all(c["ok"] for c in checks)
    return {"verdict": "pass" if ok else "fail", "outcome": got, "expected_outcome": want, "outcome_why": why}
