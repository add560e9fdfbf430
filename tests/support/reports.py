"""Assertions on a run's report.json (harness/dumpbed/report.py) for tests that call
run_and_validate directly rather than through the pytest plugin's result."""
from __future__ import annotations

CORE_CHECKS = {"format", "content", "crash-record", "canary", "chunk-crc", "completeness", "write-sizes",
               "guest-result"}


def assert_passed(report: dict) -> None:
    """The run passed with a complete dump, judged by at least the core checks."""
    failed = [f"{c['name']}: {c['detail']}" for c in report["checks"] if not c["ok"]]
    assert report["verdict"] == "pass", f"problem={report['problem']} failed={failed}"
    assert report["dump"]["status"] == "complete"
    assert CORE_CHECKS <= {c["name"] for c in report["checks"]}
