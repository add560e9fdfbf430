"""The fault matrix of docs/faults.md: every fault on every disk it applies to. Each run must
end with the outcome its scenario declares and pass every oracle that applies; the session's
leak guard (tests/conftest.py) checks that no QEMU process, socket or temp dir is left."""
from __future__ import annotations

import json
import os

import pytest

from harness import dumpfmt, faults
from harness.crash import CRASHES
from harness.run import Scenario, run_and_validate

MIB = 1 << 20
DISKS = ["virtio-blk", "virtio-scsi", "lsi"]
MATRIX = [
    ("eio-at=20", "partial"),
    ("enospc=50", "partial"),
    ("pause=1@50%", "complete"),
    ("reset@50%", "partial"),
    ("kill@50%", "partial"),
    ("unplug@50%", "partial"),
    ("slow=64", "complete"),
    ("stale", "partial"),
]


def run(tmp_path, disk, faults, **kw):
    out = tmp_path / "run"
    kw.setdefault("memory_bytes", 32 * MIB)
    _, report = run_and_validate(Scenario(out_dir=out, disk=disk, accel="auto", faults=faults, **kw))
    return out, report


def explain(report: dict) -> str:
    failed = [f"{c['name']}: {c['detail']}" for c in report["checks"] if not c["ok"]]
    return f"outcome {report['outcome']} (expected {report['expected_outcome']}: {report['outcome_why']}), " \
           f"problem {report['problem']}, failed {failed}"


def applicable(fault: str, disk: str) -> bool:
    return disk in faults.parse(fault).kind.disks  # unplug needs a SCSI disk (docs/faults.md)


# `make matrix` (DUMPBED_FULL_MATRIX=1): every crash kind x fault x disk; `make test`: every
# fault x disk with the NMI, and every crash kind with two faults (below).
FULL = bool(os.environ.get("DUMPBED_FULL_MATRIX"))
MATRIX_CRASHES = list(CRASHES) if FULL else ["nmi"]


@pytest.mark.parametrize("crash,fault,outcome,disk", [
    pytest.param(c, f, o, d, id=f"{c}-{f.split('=')[0].split('@')[0]}-{d}")
    for c in MATRIX_CRASHES for f, o in MATRIX for d in DISKS if applicable(f, d)])
def test_fault_matrix(tmp_path, guest_kernel, crash, disk, fault, outcome):
    out, report = run(tmp_path, disk, [fault], crash=crash)
    assert report["verdict"] == "pass", explain(report)
    assert report["outcome"] == outcome
    if "@" in fault:
        log = json.loads((out / "fault.json").read_text())
        assert log["fired"], log


def test_a_partial_dump_lists_what_is_usable(tmp_path, guest_kernel):
    out, report = run(tmp_path, "virtio-blk", ["kill@50%"])
    assert report["verdict"] == "pass", explain(report)
    completeness = next(c for c in report["checks"] if c["name"] == "completeness")
    assert "usable components: crash-record" in completeness["detail"]
    content = next(c for c in report["checks"] if c["name"] == "content")
    assert content["ok"], content  # what was written is still compared with the snapshot


def test_stale_never_takes_the_old_dump_for_the_new_one(tmp_path, guest_kernel):
    out, report = run(tmp_path, "virtio-blk", ["stale"])
    assert report["verdict"] == "pass", explain(report)
    old = json.loads((out / "previous" / "scenario.json").read_text())["dump_id"]
    new = json.loads((out / "scenario.json").read_text())["dump_id"]
    dump = dumpfmt.read_image(out / "dump.img")
    assert dump.header.dump_id.hex() == new != old
    assert dump.status == "partial"


def test_a_wrong_expectation_fails_the_verdict(tmp_path, guest_kernel):
    """The verdict holds the outcome against the expectation: a kill cannot pass as complete."""
    out, report = run(tmp_path, "virtio-blk", ["kill@50%"])
    from harness import report as report_mod, validate

    scenario = json.loads((out / "scenario.json").read_text())
    scenario["expect"] = "complete"
    (out / "scenario.json").write_text(json.dumps(scenario))
    again = report_mod.build(out, validate.validate_run(out).to_dict(), {}, scenario=scenario)
    assert again["verdict"] == "fail" and again["outcome"] == "partial"


def test_eio_at_with_a_secondary_completes_there(tmp_path, guest_kernel):
    out, report = run(tmp_path, "virtio-blk", ["eio-at=20"], secondary="lsi")
    assert report["verdict"] == "pass", explain(report)
    assert report["outcome"] == "complete"
    assert {d["role"]: d["generation"] for d in report["devices"]} == {"primary": 1, "secondary": 2}


@pytest.mark.parametrize("fault,outcome", [("kill@50%", "partial"), ("pause=1@50%", "complete")],
                         ids=["kill", "pause"])
@pytest.mark.parametrize("crash", [name for name in CRASHES if name != "nmi"])
def test_every_crash_kind_under_a_fault(tmp_path, guest_kernel, crash, fault, outcome):
    """Each crash kind with a fault that cuts its dump short, and one it must survive."""
    out, report = run(tmp_path, "virtio-blk", [fault], crash=crash)
    assert report["verdict"] == "pass", explain(report)
    assert report["outcome"] == outcome
