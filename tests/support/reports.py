"""Assertions on a run: its report.json (harness/dumpbed/report.py), or the pytest plugin's
DumpbedResult (dumpbed.pytest_plugin) of a run of the dumpbed_run fixture."""
from __future__ import annotations

CORE_CHECKS = {"format", "content", "crash-record", "canary", "chunk-crc", "completeness", "write-sizes",
               "guest-result"}


def assert_passed(report: dict) -> None:
    """The run passed with a complete dump, judged by at least the core checks."""
    failed = [f"{c['name']}: {c['detail']}" for c in report["checks"] if not c["ok"]]
    assert report["verdict"] == "pass", f"problem={report['problem']} failed={failed}"
    assert report["dump"]["status"] == "complete"
    assert CORE_CHECKS <= {c["name"] for c in report["checks"]}


def assert_complete(result) -> None:
    """assert_passed on a dumpbed_run result: the verdict first through the result's own
    assert_passed (its failure names each failing check, its detail and the run directory)."""
    __tracebackhide__ = True
    result.assert_passed()
    assert_passed(result.report)
