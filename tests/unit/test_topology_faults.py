"""Secondary dump devices in the topology, and the fault specs (no QEMU)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dumpbed.errors import DumpbedError
from dumpbed.images.topology import DiskSpec, Topology
from dumpbed.scenario import faults


def disk(name: str, target: int = 0) -> DiskSpec:
    return DiskSpec(Path(f"/tmp/{name}.img"), name, target=target)


@pytest.mark.parametrize("primary,secondary,dumpdev2,hbas", [
    ("virtio-blk", "virtio-blk", "virtio-blk:1", 0),
    ("virtio-blk", "lsi", "lsi:0:1:0", 1),
    ("lsi", "lsi", "lsi:0:1:0", 1),  # same kind: the same HBA
    ("virtio-scsi", "lsi", "lsi:0:1:0", 2),
    ("lsi", "virtio-blk", "virtio-blk:0", 1),
])
def test_secondary_device_names_and_controllers(primary, secondary, dumpdev2, hbas):
    t = Topology(primary, disk("disk0"), [], secondary, disk("sec", target=1))
    assert t.dumpdev2() == dumpdev2
    devices = [a for a in t.qemu_args() if a.startswith(("lsi53c895a", "virtio-scsi-pci"))]
    assert len(devices) == hbas
    assert t.to_json()["secondary"]["kind"] == secondary


def test_secondary_virtio_blk_comes_after_the_other_disks():
    t = Topology("virtio-blk", disk("disk0"), [disk("disk1"), disk("disk2")], "virtio-blk", disk("sec"))
    assert t.dumpdev2() == "virtio-blk:3"
    nodes = [json.loads(a)["node-name"] for a in t.qemu_args() if a.startswith("{")]
    assert nodes == ["disk0", "disk1", "disk2", "sec"]


def test_no_secondary():
    t = Topology("virtio-blk", disk("disk0"))
    assert t.dumpdev2() is None and "secondary" not in t.to_json()


def test_secondary_on_the_same_hba_needs_its_own_target():
    with pytest.raises(DumpbedError, match="two disks at target 0"):
        Topology("lsi", disk("disk0"), [], "lsi", disk("sec", target=0))


def test_unknown_secondary_kind():
    with pytest.raises(DumpbedError, match="unknown disk type 'floppy'"):
        Topology("lsi", disk("disk0"), [], "floppy", disk("sec"))


def test_eio_at_builds_a_blkdebug_state_machine():
    """eio-at=N: a state machine counting write_aio events from the crash (the rules are armed
    then, under the running disk: harness/dumpbed/scenario/faultrun.py), the N-th write and every later one failing."""
    fault = faults.parse("eio-at=3")
    rules = faults.blkdebug_rules(fault)
    assert set(rules) == {"inject-error", "set-state"}  # rules only: the node is added at the crash
    assert rules["set-state"] == [{"event": "write_aio", "state": 1, "new_state": 2},
                                  {"event": "write_aio", "state": 2, "new_state": 3}]
    assert rules["inject-error"] == [{"event": "write_aio", "state": 3, "errno": 5}]  # not once: every later one
    assert faults.blkdebug_rules(faults.parse("eio-at=1")) == {  # QEMU refuses an empty set-state list
        "inject-error": [{"event": "write_aio", "state": 1, "errno": 5}]}
    # Nothing of blkdebug is in the disk's boot-time nodes: the dump disk's raw node sits on its
    # write log's blklogwrites node, which the fault node is put under at the crash.
    t = Topology("virtio-blk", DiskSpec(Path("/tmp/d.img"), "disk0", write_log=Path("/tmp/d.writes")))
    node = json.loads(next(a for a in t.qemu_args() if a.startswith("{")))
    assert node["file"]["driver"] == "blklogwrites" and node["file"]["node-name"] == "disk0-log"
    assert "blkdebug" not in json.dumps(node)


def test_a_live_fault_after_n_writes_stops_on_exactly_that_write():
    """@wN: the N-th write after the crash fails once (the disk stops the VM on it, parked)."""
    rules = faults.blkdebug_rules(faults.parse("kill@w4"))
    assert rules["inject-error"] == [{"event": "write_aio", "state": 4, "errno": 5, "once": True}]
    assert [(r["state"], r["new_state"]) for r in rules["set-state"]] == [(1, 2), (2, 3), (3, 4)]
    assert faults.blkdebug_rules(faults.parse("reset@w1")) == {
        "inject-error": [{"event": "write_aio", "state": 1, "errno": 5, "once": True}]}


def test_a_live_fault_at_a_percentage_stops_on_the_write_reaching_its_sector():
    """@P%: the first write that reaches the sector P% of the estimate into the body, once."""
    fault = faults.parse("kill@25%")
    assert fault.at_fraction == 0.25 and fault.after_writes is None
    dump_offset, partition_bytes, estimate = 2 << 20, 76 << 20, 10_000_000
    body = faults.body_offset_for(partition_bytes)
    sector = faults.trigger_sector(fault, dump_offset, body, estimate)
    assert sector == (dump_offset + body + 2_500_000) // 512
    assert faults.blkdebug_rules(fault, sector) == {
        "inject-error": [{"event": "write_aio", "sector": sector, "errno": 5, "once": True}]}
    # eio-at counts writes whatever sector it is given
    assert faults.blkdebug_rules(faults.parse("eio-at=2"), sector)["inject-error"][0]["state"] == 2


@pytest.mark.parametrize("ram_bytes", [8 << 20, 96 << 20])
def test_the_trigger_lands_in_the_body_the_writer_lays_out(make_run, ram_bytes):
    """body_offset_for (the harness's) and the synthetic writer (its own tables, from
    docs/dump-format.md) agree on where the body starts; a P% trigger lands in a body write."""
    run = make_run(ram_bytes=ram_bytes)
    assert faults.body_offset_for(run.part_bytes) == run.body_offset
    fault = faults.parse("kill@50%")
    sector = faults.trigger_sector(fault, run.part_offset, run.body_offset, run.header["estimate_bytes"])
    byte = sector * 512 - run.part_offset
    hit = [op for op in run.ops if op.kind == "write" and op.offset <= byte < op.end]
    assert hit and {op.what for op in hit} == {"body"}


@pytest.mark.parametrize("spec,message", [
    ("eio-at", "expected eio-at=N"), ("eio-at=0", "expected eio-at=N"), ("eio-at=x", "expected eio-at=N"),
    ("eio-at=100001", "expected eio-at=N"), ("melt=1", "unknown fault 'melt'"),
])
def test_bad_fault_specs_are_refused(spec, message):
    with pytest.raises(DumpbedError, match=message):
        faults.parse(spec)


@pytest.mark.parametrize("specs,message", [
    (["kill@50%", "pause=1@w9"], "at most one live fault"),
    (["stale", "kill@50%"], "stale cuts the new dump short itself"),
    (["hold-runtime", "slow=8"], "hold-runtime takes no other fault"),
    (["eio-at=20", "reset@w3"], "eio-at reports its failed writes to the guest"),
    (["eio-at=20", "stale"], "eio-at reports its failed writes to the guest"),
    (["slow=8", "slow=9"], "each fault kind may be given once"),
])
def test_fault_combinations_that_cannot_be_are_refused(specs, message):
    with pytest.raises(DumpbedError, match=message):
        faults.check_combination([faults.parse(s) for s in specs], "lsi", None)


def test_fault_combinations_that_can_be_pass():
    for specs in (["eio-at=20", "slow=8"], ["enospc=50", "kill@50%"], ["stale", "slow=8"]):
        faults.check_combination([faults.parse(s) for s in specs], "lsi", "virtio-blk")


def test_no_module_but_the_kinds_names_a_fault():
    """A fault kind's name as a string anywhere but its entry (and a disk kind's list of the
    faults it cannot take) is a comparison waiting to happen."""
    import ast

    import dumpbed

    package = Path(dumpbed.__file__).parent
    allowed = {package / "scenario" / "faults.py", package / "scenario" / "disks.py"}
    offenders = [f"{path.relative_to(package)}:{node.lineno}: {node.value!r}"
                 for path in package.rglob("*.py") if path not in allowed
                 for node in ast.walk(ast.parse(path.read_text()))
                 if isinstance(node, ast.Constant) and node.value in faults.KINDS]
    assert not offenders, offenders
