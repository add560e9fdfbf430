"""The fault matrix of docs/faults.md: every fault on every disk it applies to. Each run must
end with the outcome its scenario declares and pass every oracle that applies; the session's
leak guard (tests/conftest.py) checks that no QEMU process, socket or temp dir is left."""
from __future__ import annotations

import json

import pytest

from dumpbed.capture import blklog
from dumpbed.images import layout
from dumpbed.reader import dumpfmt
from dumpbed.scenario import disks, faults
from dumpbed.guests import profiles
from tests.integration.conftest import FULL

DISKS = list(disks.DISKS)  # every kind: a new entry joins the matrix by itself
MATRIX = [
    ("eio-at=20", "partial"),
    ("enospc=50", "partial"),
    ("pause=1@50%", "complete"),
    ("reset@50%", "partial"),
    ("kill@50%", "partial"),
    ("unplug@50%", "partial"),
    ("slow=64", "complete"),
    ("stale", "partial"),
    ("net-drop=5", "complete"),
    ("net-dup=20", "complete"),
    ("net-reorder=20", "complete"),
    ("net-corrupt=5", "complete"),
    ("net-delay=5", "complete"),
    ("net-cut@50%", "partial"),
    ("server-kill@50%", "partial"),
]

# The dumpbed pytest plugin's marker: dumpbed_run's defaults in this module.
pytestmark = pytest.mark.dumpbed(memory="32M")


def explain(report: dict) -> str:
    failed = [f"{c['name']}: {c['detail']}" for c in report["checks"] if not c["ok"]]
    return f"outcome {report['outcome']} (expected {report['expected_outcome']}: {report['outcome_why']}), " \
           f"problem {report['problem']}, failed {failed}"


def applicable(fault: str, disk: str) -> bool:
    f = faults.parse(fault)
    return disks.get(disk).fault_applies(f.name, f.kind.stops_vm, f.kind.network) is None  # e.g. unplug: SCSI only


# `make matrix`: every crash kind x fault x disk. `make test`: the NMI with each fault on every
# other disk it applies to, alternating (a fault on three disks or fewer, and a disk that takes three
# faults or fewer, get every cell), so each fault meets at least two disks and each disk about half
# its faults; and every crash kind with two faults (below).
MATRIX_CRASHES = list(profiles.DUMPBED.crashes) if FULL else ["nmi"]


def _cells() -> list[tuple[str, str, str, str]]:
    few = {d for d in DISKS if sum(applicable(f, d) for f, _ in MATRIX) <= 3}
    cells = []
    for c in MATRIX_CRASHES:
        for i, (f, o) in enumerate(MATRIX):
            on = [d for d in DISKS if applicable(f, d)]
            network = faults.parse(f).kind.network  # one NIC or the other: about half the cells each
            cells += [(c, f, o, d) for j, d in enumerate(on)
                      if FULL or (i + j) % 2 == 0 or (not network and (len(on) <= 3 or d in few))]
    return cells


@pytest.mark.matrix
@pytest.mark.parametrize("crash,fault,outcome,disk", [
    pytest.param(c, f, o, d, id=f"{c}-{f.split('=')[0].split('@')[0]}-{d}") for c, f, o, d in _cells()])
def test_fault_matrix(dumpbed_run, crash, disk, fault, outcome):
    # A network dump under this box's nested KVM sends each frame with a VM exit (~4 MiB/s); TCG
    # runs it 3x faster. `make test` takes the lossy-link cells under TCG (test_every_disk_kind has
    # both NICs under KVM too), but not those that wait out the guest's I/O timeout: under TCG the
    # RFLAGS sampler stops the VM, and the guest's clock with it, 20 times a second.
    network = disks.get(disk).network and not FULL and not faults.parse(fault).kind.fails_device
    result = dumpbed_run(disk=disk, faults=[fault], crash=crash, **({"accel": "tcg"} if network else {}))
    assert result.verdict == "pass", explain(result.report)
    assert result.report["outcome"] == outcome
    if "@" in fault:
        log = json.loads((result.run_dir / "fault.json").read_text())
        assert log["fired"], log


def test_a_partial_dump_lists_what_is_usable(dumpbed_run):
    result = dumpbed_run(disk="virtio-blk", faults=["kill@50%"])
    assert result.verdict == "pass", explain(result.report)
    assert result.report["outcome"] == "partial"
    assert "usable components: crash-record" in result.check("completeness")["detail"]
    content = result.check("content")
    assert content["ok"], content  # what was written is still compared with the snapshot


def test_stale_never_takes_the_old_dump_for_the_new_one(dumpbed_run):
    result = dumpbed_run(disk="virtio-blk", faults=["stale"])
    assert result.verdict == "pass", explain(result.report)
    out = result.run_dir
    old = json.loads((out / "previous" / "scenario.json").read_text())["dump_id"]
    new = json.loads((out / "scenario.json").read_text())["dump_id"]
    dump = dumpfmt.read_image(out / "dump.img")
    assert dump.header.dump_id.hex() == new != old
    assert dump.status == "partial"


def test_a_wrong_expectation_fails_the_verdict(dumpbed_run):
    """The verdict holds the outcome against the expectation: a kill cannot pass as complete."""
    out = dumpbed_run(disk="virtio-blk", faults=["kill@50%"]).run_dir  # its scenario.json is doctored
    from dumpbed import report as report_mod
    from dumpbed.oracles import validate

    scenario = json.loads((out / "scenario.json").read_text())
    scenario["expect"] = "complete"  # and no fault to tell where it hit: the declaration stands
    scenario["faults"] = []
    (out / "scenario.json").write_text(json.dumps(scenario))
    again = report_mod.build(out, validate.validate_run(out).to_dict(), {}, scenario=scenario)
    assert again["verdict"] == "fail" and again["outcome"] == "partial"


def test_eio_at_with_a_secondary_completes_there(dumpbed_run):
    result = dumpbed_run(disk="virtio-blk", faults=["eio-at=20"], secondary="lsi")
    assert result.verdict == "pass", explain(result.report)
    assert result.report["outcome"] == "complete"
    assert {d["role"]: d["generation"] for d in result.report["devices"]} == {"primary": 1, "secondary": 2}


@pytest.mark.parametrize("fault,outcome", [("kill@50%", "partial"), ("pause=1@50%", "complete")],
                         ids=["kill", "pause"])
@pytest.mark.parametrize("crash", [name for name in profiles.DUMPBED.crashes if name != "nmi"])
def test_every_crash_kind_under_a_fault(dumpbed_run, crash, fault, outcome):
    """Each crash kind with a fault that cuts its dump short, and one it must survive."""
    result = dumpbed_run(disk="virtio-blk", faults=[fault], crash=crash)
    assert result.verdict == "pass", explain(result.report)
    assert result.report["outcome"] == outcome


@pytest.mark.parametrize("disk", [d for d in DISKS if applicable("hold-runtime", d)])
def test_runtime_requests_held_across_the_crash_are_ended_by_a_correct_driver(dumpbed_run, disk):
    """hold-runtime: the workload's requests parked in the device at the crash and released after
    the guest's QUIESCED; the reference drivers abort or reset them, so nothing finishes late."""
    result = dumpbed_run(disk=disk, faults=["hold-runtime"], workload=True)
    assert result.verdict == "pass", explain(result.report)
    log = json.loads((result.run_dir / "fault.json").read_text())
    assert log["fired"] and "held in the device" in " ".join(log["events"]), log
    runtime = result.check("runtime-io")
    assert "still held by the device at the crash" in runtime["detail"]
    assert not runtime["detail"].startswith("0 runtime"), runtime


def _dump_writes(out) -> int:
    """The writes the dump's disk received in its partition (its write log)."""
    lay = layout.load(out / "layout.json")
    log = blklog.read(out / "dump.writes")
    return sum(1 for e in log.writes if lay.dump_offset <= e.offset < lay.dump_offset + lay.dump_size)


@pytest.mark.parametrize("n,outcome", [(1, "none"), (2, "partial"), (7, "partial")])
def test_kill_stops_at_exactly_the_nth_write(dumpbed_run, n, outcome):
    """QEMU stops on the trigger's write itself: n-1 writes of the dump landed, not one more; at
    the first write (the first leader) no dump of the run is on the disk."""
    result = dumpbed_run(disk="virtio-blk", faults=[f"kill@w{n}"])
    assert result.verdict == "pass", explain(result.report)
    log = json.loads((result.run_dir / "fault.json").read_text())
    assert log["fired"] and log["writes_landed"] == n - 1, log
    assert _dump_writes(result.run_dir) == n - 1
    assert result.report["outcome"] == result.report["expected_outcome"] == outcome
    assert f"write {n} of" in log["stopped_write"], log


@pytest.mark.matrix
def test_kill_at_every_point_of_a_dump(dumpbed_run):
    """A sweep of kill points over one whole dump (every write in `make matrix`, a sample here,
    the last writes always: between the trailer and the final leader, and after the commit):
    each ends with the outcome the format's rules give for where it hit, and passes."""
    base = dumpbed_run(disk="virtio-blk", faults=[])
    assert base.verdict == "pass", explain(base.report)
    total = _dump_writes(base.run_dir)
    points = range(1, total + 2) if FULL else sorted({1, 2, total // 2, total - 1, total, total + 1})
    seen = {}
    for n in points:
        result = dumpbed_run(disk="virtio-blk", faults=[f"kill@w{n}"])
        assert result.verdict == "pass", f"kill@w{n} of {total}: {explain(result.report)}"
        seen[n] = result.report["outcome"]
    assert seen[1] == "none" and seen[2] == "partial"
    assert seen[total] == "partial"  # the final leader itself stopped: the trailer is there, not the commit
    assert seen[total + 1] == "complete"  # never fired: the dump ended first
