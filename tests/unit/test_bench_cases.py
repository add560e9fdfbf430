"""dumpbed bench: its rows (every disk kind once, a network target also through a lossy link) and its
host references."""
import subprocess

from dumpbed import bench
from dumpbed.capture import blklog
from dumpbed.scenario import disks, faults


def test_every_kind_has_a_row_and_a_network_one_a_lossy_row_too():
    cases = bench.bench_cases(tuple(disks.DISKS))
    labels = [c.label for c in cases]
    assert len(labels) == len(set(labels))
    assert all(c.fill and c.compress == "off" for c in cases)  # no compression rows unless asked
    for name, kind in disks.DISKS.items():
        assert bench.BenchCase(name, name) in cases
        lossy = [c for c in cases if c.disk == name and c.faults]
        assert bool(lossy) == kind.network
        for case in lossy:
            f = faults.parse(case.faults[0])
            assert f.kind.link == "drop" and f.value == 1
            assert disks.get(case.disk).fault_applies(f.name, f.kind.stops_vm, f.kind.network) is None


def test_compression_rows_bench_the_first_kind_on_both_kinds_of_memory():
    cases = bench.bench_cases(("nvme", "virtio-blk"), "lz4")
    extra = [(c.disk, c.fill, c.compress) for c in cases if not (c.fill and c.compress == "off")]
    assert extra == [("nvme", False, "off"), ("nvme", True, "lz4"), ("nvme", False, "lz4")]
    assert len({c.label for c in cases}) == len(cases)


def test_the_compression_gain_is_each_compressed_row_over_the_plain_one_of_the_same_memory():
    def row(disk, kind, fill, compress, rate, faults=()):
        return {"disk": disk, "kind": kind, "fill": fill, "compress": compress, "data_mib_s": rate,
                "faults": list(faults)}

    rows = [row("virtio-blk", "virtio-blk", True, "off", 300.0), row("nvme", "nvme", False, "off", 50.0),
            row("virtio-net-loss", "virtio-net", True, "off", 1.0, ["net-drop=1"]),
            row("virtio-blk-nofill", "virtio-blk", False, "off", 250.0),
            row("virtio-blk-lz4", "virtio-blk", True, "lz4", 240.0),
            row("virtio-blk-lz4-nofill", "virtio-blk", False, "lz4", 1000.0)]
    assert bench.compression_gains(rows, "lz4") == {"compressible": 4.0, "incompressible": 0.8}
    assert bench.compression_gains(rows[:4], "lz4") == {}  # nothing compressed: no gain to give


# -- the guest's PROFILE line (docs/guest-interface.md) and the repeats' spread -------------------

PROFILE = ("DUMPBED PROFILE tsc_hz=1000000000 total=1000000000 crc=100000000 crc_n=10 copy=50000000 copy_n=5 "
           "write=400000000 write_n=20 write_bytes=104857600 flush=100000000 flush_n=4 meta=10000000 meta_n=4 "
           "device=20000000 device_n=2 pin=20000000 pin_n=2 lines=50000000 lines_n=5 calls=30000000 calls_n=6 "
           "user_calls=15 "
           "user_call=70000 cr3_writes=3\n")


def test_the_profile_line_becomes_milliseconds_and_shares(tmp_path):
    from dumpbed.capture import guestprof

    (tmp_path / "result.log").write_text("DUMPBED READY ram=1\n" + PROFILE + "DUMPBED DONE status=complete\n")
    b = guestprof.breakdown(tmp_path)
    rows = {r["what"]: r for r in b["rows"]}
    assert b["total_ms"] == 1000.0
    assert rows["write"]["ms"] == 400.0 and rows["write"]["n"] == 20 and rows["write"]["per_ms"] == 20.0
    assert rows["calls"]["ms"] == 30.0 and rows["calls"]["n"] == 6
    assert rows["rest"]["ms"] == 220.0 and abs(sum(r["share"] for r in b["rows"]) - 1) < 1e-9
    assert b["user_calls"] == 15 and b["user_call_us"] == 70.0 and b["cr3_writes"] == 3
    assert b["device_mib_s"] == 200.0  # 100 MiB in 0.5 s of writes and flushes


def test_a_run_without_a_whole_profile_line_has_none(tmp_path):
    from dumpbed.capture import guestprof

    (tmp_path / "result.log").write_text("DUMPBED DONE status=complete\n")
    assert guestprof.breakdown(tmp_path) is None
    (tmp_path / "result.log").write_text("DUMPBED PROFILE tsc_hz=0x zz\n")  # cut short, garbled
    assert guestprof.breakdown(tmp_path) is None


def test_the_spread_of_repeats():
    assert bench._spread([3.0, 1.0, 2.0, None]) == {"min": 1.0, "median": 2.0, "max": 3.0, "n": 3}
    assert bench._spread([None]) is None


def test_the_graph_reference_goes_through_a_write_log_as_the_dump_disk_does(tmp_path):
    """The same-graph reference writes through blklogwrites: every request lands in the log."""
    image, log = tmp_path / "ref.img", tmp_path / "ref.writes"
    subprocess.run(["qemu-img", "create", "-q", "-f", "raw", str(image), str(8 * bench.REQUEST_BYTES)], check=True)
    log.write_bytes(b"")
    assert bench.qemu_img_bench(bench.graph_target(image, log), 8) > 0
    entries = blklog.read(log).entries
    assert [e.length for e in entries if e.is_write] == [bench.REQUEST_BYTES] * 8
    assert entries[-1].is_flush
    assert bench.graph_target(image, None) == ["-f", "raw", str(image)]  # the bare reference: no log


def test_bench_leaves_no_reference_image_or_log(tmp_path):
    assert bench.host_write_mib_s(tmp_path, 2 * bench.REQUEST_BYTES, write_log=True) > 0
    assert list(tmp_path.iterdir()) == []


def test_each_repeat_runs_the_rows_in_an_order_rotated_by_one(tmp_path, monkeypatch):
    """The run right after the references' GiBs is the slower for it: each repeat starts with
    another row, so a median of three never holds that penalty; the rows still come out in the
    cases' order, and QEMU's reference is always the first case's guest, in a run of its own."""
    ran, referenced = [], []

    class Outcome:
        accel = "kvm"

    def fake_run(scenario):
        ran.append(scenario.out_dir.parent.name)
        report = {"verdict": "pass", "dump": {"bytes": MIB, "areas": []}, "throughput_mib_s": 1.0,
                  "timings": {"crash_to_dump_done": 1.0, "validate": 1.0, "boot": 1.0}}
        return Outcome(), report

    monkeypatch.setattr(bench, "run_and_validate", fake_run)
    monkeypatch.setattr(bench, "host_write_mib_s", lambda *a, **k: 1.0)
    monkeypatch.setattr(bench, "_qemu_dump_mib_s", lambda out, case, *a: referenced.append(case.label) or 1.0)
    monkeypatch.setattr(bench.guestprof, "breakdown", lambda run_dir: None)
    cases = bench.bench_cases(("virtio-blk", "nvme", "lsi"))
    labels = [c.label for c in cases]
    for k in range(3):
        rows, _, _ = bench._one_repeat(tmp_path, cases, 64 * MIB, "kvm", True, _Bar(), k, 3)
        assert [r["disk"] for r in rows] == labels
    assert ran == labels + labels[1:] + labels[:1] + labels[2:] + labels[:2]
    assert referenced == [labels[0]] * 3


MIB = 1 << 20


class _Bar:
    def update(self, **kwargs):
        pass


def test_the_compression_line_gives_the_median_and_range_of_the_repeats():
    one = {"method": "lz4", "compressible": 2.5, "incompressible": 0.6}
    assert bench.compression_line(one).endswith("compressible (no fill) 2.5x, incompressible (fill) 0.6x")
    each = [{"compressible": 2.514, "incompressible": 0.585}, {"compressible": 2.655, "incompressible": 0.668},
            {"compressible": 3.077, "incompressible": 0.733}]
    three = {**each[0], "method": "lz4", "repeats": each,
             "spread": {k: bench._spread([g[k] for g in each]) for k in ("compressible", "incompressible")}}
    assert bench.compression_line(three).endswith(
        "compressible (no fill) 2.655 (2.514-3.077)x, incompressible (fill) 0.668 (0.585-0.733)x")
