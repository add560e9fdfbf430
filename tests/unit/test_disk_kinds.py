"""Disk kinds are one entry each (dumpbed/scenario/disks.py): every entry is complete, the
modules that read a bus know each entry's, and no other module names a disk kind."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

import dumpbed
from dumpbed.capture import cmdlog, writelog
from dumpbed.errors import DumpbedError
from dumpbed.images.topology import DiskSpec, Topology
from dumpbed.scenario import disks, faults

PACKAGE = Path(dumpbed.__file__).parent


@pytest.mark.parametrize("name", list(disks.DISKS))
def test_every_entry_is_complete(name):
    kind = disks.get(name)
    assert kind.name == name and kind.description
    assert kind.bus in cmdlog.EVENTS_BY_BUS and kind.bus in writelog.EVENTS_BY_BUS
    if kind.on_hba:
        assert kind.targets >= 1 and kind.max_lun >= 0
        assert kind.guest_name(2, 0, 5) == f"{name}:0:2:0"
    else:
        assert kind.guest_name(0, 0, 5) == f"{name}:5"
    for fault in kind.no_faults:
        assert fault in faults.KINDS, f"{name} excludes an unknown fault {fault!r}"


def test_no_module_but_the_registry_names_a_disk_kind():
    """A disk kind's name as a string literal anywhere else is a comparison waiting to happen."""
    names = set(disks.DISKS)
    offenders = []
    for path in PACKAGE.rglob("*.py"):
        if path == PACKAGE / "scenario" / "disks.py":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and node.value in names:
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {node.value!r}")
    assert not offenders, offenders


def test_an_unknown_kind_and_an_inapplicable_fault_are_refused():
    with pytest.raises(DumpbedError, match="unknown disk type 'floppy'"):
        disks.get("floppy")
    with pytest.raises(DumpbedError, match="does not apply to a virtio-blk dump disk"):
        faults.check_combination([faults.parse("unplug@50%")], "virtio-blk", None)
    faults.check_combination([faults.parse("unplug@50%")], "lsi", None)


def test_a_kinds_devices_come_from_its_entry(tmp_path):
    for name, kind in disks.DISKS.items():
        disk = DiskSpec(tmp_path / "d.img", "disk0", 512, 0, 0)
        args = " ".join(Topology(name, disk).qemu_args(netdev_fd=9 if kind.network else None))
        if kind.network:  # a NIC on the link's datagram socket; no block device in QEMU
            assert f"-netdev dgram,id={disks.NETDEV},local.type=fd,local.str=9" in args and "-blockdev" not in args
        for device in kind.disk_devices("disk0", "hba0", 0, 0, ""):
            assert device.split(",")[0] in args
        assert any(",id=disk0-dev," in d for d in kind.disk_devices("disk0", "hba0", 0, 0, ""))
        if kind.on_hba:
            assert f"{kind.hba_device},id=hba0" in args
        problem = kind.address_problem(kind.targets, 0)
        assert (problem is not None) == kind.on_hba


def test_the_fault_table_in_the_docs_is_the_entries():
    """docs/faults.md's fault x disk table: a column per kind, n/a exactly where an entry says a
    fault cannot apply."""
    text = (PACKAGE.parents[1] / "docs" / "faults.md").read_text()
    lines = text[text.index("| fault \\ disk |"):].splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")][1:]
    assert header == list(disks.DISKS)
    for row in lines[2:]:
        if not row.startswith("|"):
            break
        cells = [c.strip() for c in row.strip("|").split("|")]
        name = cells[0].split()[0]
        if name not in faults.KINDS:
            continue
        for disk, cell in zip(header, cells[1:]):
            why_not = disks.get(disk).fault_applies(name, faults.KINDS[name].stops_vm, faults.KINDS[name].network)
            assert (cell == "n/a") == (why_not is not None), f"{name} on {disk}: table {cell!r}, entry {why_not!r}"
