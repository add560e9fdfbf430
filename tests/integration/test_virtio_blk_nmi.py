"""The virtio-blk NMI scenario on real QEMU guests: boot, crash, polled dump, every check."""
from __future__ import annotations

import pytest

from dumpbed.run import Scenario, run_and_validate
from tests.integration.conftest import accel_params

MIB = 1 << 20


def assert_passed(report: dict) -> None:
    failed = [f"{c['name']}: {c['detail']}" for c in report["checks"] if not c["ok"]]
    assert report["verdict"] == "pass", f"problem={report['problem']} failed={failed}"
    assert report["dump"]["status"] == "complete"
    names = {c["name"] for c in report["checks"]}
    assert {"format", "content", "crash-record", "canary", "chunk-crc", "completeness", "write-sizes",
            "guest-result"} <= names


@pytest.mark.parametrize("accel", accel_params())
@pytest.mark.parametrize("firmware", ["qboot", "seabios"])
def test_nmi_dump_64m(tmp_path, guest_kernel, accel, firmware):
    outcome, report = run_and_validate(
        Scenario(out_dir=tmp_path / "run", memory_bytes=64 * MIB, accel=accel, firmware=firmware))
    assert_passed(report)
    assert report["accel"] == accel
    assert outcome.exit_status == 67


@pytest.mark.parametrize("accel", accel_params())
def test_nmi_dump_1g(tmp_path, guest_kernel, accel):
    _, report = run_and_validate(Scenario(out_dir=tmp_path / "run", memory_bytes=1024 * MIB, accel=accel))
    assert_passed(report)
    assert report["content"]["checked_fraction"] >= 0.99


def test_nmi_dump_256m_checks_99_percent_of_ram(tmp_path, guest_kernel):
    _, report = run_and_validate(Scenario(out_dir=tmp_path / "run", memory_bytes=256 * MIB, accel="auto"))
    assert_passed(report)
    content = report["content"]
    assert content["checked_fraction"] >= 0.99, content
    assert content["bytes_volatile"] > 0  # the guest declares its own stacks and rings volatile


def test_dump_partition_beyond_lba_2_32_on_a_sparse_disk(tmp_path, guest_kernel):
    _, report = run_and_validate(
        Scenario(out_dir=tmp_path / "run", memory_bytes=64 * MIB, accel="auto", disk_size=3 << 40))
    assert_passed(report)
    assert report["dump"]["partition_offset"] // 512 >= 1 << 32
