"""`dumpbed bench --repeat N --profile` on a small guest: each figure's spread over the repeats,
the host's references measured in each, and the guest's PROFILE breakdown held to the device's
own write log (the bytes the guest says it wrote are the bytes that reached the disk)."""
from __future__ import annotations

import json
import subprocess
import sys

from dumpbed.capture import blklog
from dumpbed.units import MiB


def test_bench_repeats_and_profiles_a_dump(tmp_path):
    out = tmp_path / "bench"
    proc = subprocess.run([sys.executable, "-m", "dumpbed", "bench", "--memory", "32M", "--disks", "virtio-blk",
                           "--repeat", "2", "--compress", "off", "--json", "--keep", "--out", str(out)],
                          capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["repeat"] == 2 and len(result["repeats"]) == 2
    (row,) = result["disks"]
    for name in ("dump_mib_s", "ratio_to_host_write", "ratio_to_graph_write", "boot_s", "qemu_start_s",
                 "validate_mib_s"):
        # the spread is of the repeats' own figures (each ratio against its repeat's host write)
        values = [r["disks"][0][name] for r in result["repeats"]]
        assert row["repeats"][name] == {"min": min(values), "median": round(sum(values) / 2, 3),
                                        "max": max(values), "n": 2}, (name, values)
    for r in result["repeats"]:
        d = r["disks"][0]
        assert 0 < d["qemu_start_s"] < d["boot_s"]  # QEMU's start (its RAM preallocated) is part of the boot
        for ratio, reference in (("ratio_to_host_write", "host_write_mib_s"), ("ratio_to_graph_write", "graph_write_mib_s")):
            assert r[reference] > 0 and abs(d[ratio] - d["dump_mib_s"] / r[reference]) < 2e-3, ratio

    for k, repeat in enumerate(result["repeats"], start=1):
        prof = repeat["disks"][0]["profile"]
        rows = {r["what"]: r for r in prof["rows"]}
        assert abs(sum(r["share"] for r in prof["rows"]) - 1) < 1e-3 and rows["rest"]["ms"] >= 0
        assert rows["write"]["n"] >= 1 and rows["flush"]["n"] >= 2 and rows["crc"]["n"] >= 1
        assert prof["user_calls"] >= rows["crc"]["n"] + rows["copy"]["n"]
        # Each routine call the facility made is a call record in the dump's directory.
        report = json.loads((out / "virtio-blk" / str(k) / "report.json").read_text())
        assert rows["calls"]["n"] == report["dump"]["calls"] >= 1
        # What the guest says it wrote is what the device's write log shows landed.
        log = blklog.read(blklog.log_path(out / "virtio-blk" / str(k) / "dump.img"))
        landed = sum(e.length for e in log.writes)
        assert prof["write_bytes"] == landed and landed >= repeat["disks"][0]["dump_bytes"] >= 16 * MiB


def test_bench_prints_the_profile_and_the_compression_rows(tmp_path):
    """The default bench (--compress lz4) adds the first kind on unfilled and filled RAM,
    compressed and not: compression's gain, each row's effective (data) rate, the zip row."""
    proc = subprocess.run([sys.executable, "-m", "dumpbed", "bench", "--memory", "16M", "--disks", "virtio-blk",
                           "--profile", "--out", str(tmp_path / "bench")], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    for words in ("ms from the crash to DONE", "writes (DUMPWRITE, polled to completion or to a free slot)", "ring 3 trips:",
                  "page-table switches:", "while the guest waited", "compressing the data into LZ4 frames",
                  "lz4: data MiB/s (the RAM dumped per second) over the uncompressed dump"):
        # rich wraps its lines at the console's width, which differs with the environment
        assert words in " ".join(proc.stdout.split()), proc.stdout
    result = json.loads((tmp_path / "bench" / "bench.json").read_text())
    rows = {r["disk"]: r for r in result["disks"]}
    assert list(rows) == ["virtio-blk", "virtio-blk-nofill", "virtio-blk-lz4", "virtio-blk-lz4-nofill"]
    assert all(r["verdict"] == "pass" for r in rows.values())
    zeros, plain = rows["virtio-blk-lz4-nofill"], rows["virtio-blk-nofill"]
    assert zeros["dump_bytes"] < plain["dump_bytes"] // 4 and zeros["data_bytes"] == plain["data_bytes"]
    assert set(result["compression"]) == {"method", "compressible", "incompressible"}
    zip_row = next(r for r in zeros["profile"]["rows"] if r["what"] == "zip")
    assert zip_row["n"] >= 1 and zeros["profile"]["zip_in"] == zeros["data_bytes"]
    # Without --keep the GiB-sized files go: the images, the write logs, the RAM snapshot.
    for label in rows:
        run = tmp_path / "bench" / label
        assert (run / "report.json").is_file() and (run / "qemu-trace.log").is_file()
        assert not [*run.glob("*.img"), *run.glob("*.writes"), *(run / "snapshot").glob("mem-*.bin")]
