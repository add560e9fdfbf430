"""dumpbed bench's rows: every disk kind once, a network target also through a lossy link."""
from dumpbed import bench
from dumpbed.scenario import disks, faults


def test_every_kind_has_a_row_and_a_network_one_a_lossy_row_too():
    cases = bench.bench_cases(tuple(disks.DISKS))
    labels = [label for label, _, _ in cases]
    assert len(labels) == len(set(labels))
    for name, kind in disks.DISKS.items():
        assert (name, name, []) in cases
        lossy = [c for c in cases if c[1] == name and c[2]]
        assert bool(lossy) == kind.network
        for _, disk, specs in lossy:
            f = faults.parse(specs[0])
            assert f.kind.link == "drop" and f.value == 1
            assert disks.get(disk).fault_applies(f.name, f.kind.stops_vm, f.kind.network) is None
