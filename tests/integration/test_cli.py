"""The dumpbed command line on a real run: exit codes, JSON, re-validation, damage detection."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from dumpbed.oracles import validate

DUMPBED = [sys.executable, "-m", "dumpbed.cli"]


def dumpbed(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([*DUMPBED, *args], capture_output=True, text=True, timeout=900, cwd=cwd)


@pytest.fixture(scope="module")
def good_run(tmp_path_factory, guest_kernel) -> Path:
    base = tmp_path_factory.mktemp("cli")
    out = base / "run"
    # A relative --out, as a person types it: QEMU itself runs in another directory. Its output
    # and its messages in one stream, in the order they came (run-output.txt).
    proc = subprocess.run([*DUMPBED, "run", "--disk", "virtio-blk", "--crash", "nmi", "--memory", "64M", "--out",
                           "run", "--json"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=900, cwd=base)
    assert proc.returncode == 0, proc.stdout[-6000:]
    (base / "run-output.txt").write_text(proc.stdout)
    return out


def test_run_gives_its_verdict_before_it_draws_the_pictures(good_run):
    """The person waiting for a crash's verdict does not wait for matplotlib too."""
    said = (good_run.parent / "run-output.txt").read_text()
    assert '"verdict": "pass"' in said and "dumpbed: pictures and checks in" in said, said[-3000:]
    assert said.index('"verdict": "pass"') < said.index("dumpbed: pictures and checks in"), said[-3000:]


def test_run_json_report_has_the_promised_fields(good_run):
    report = json.loads((good_run / "report.json").read_text())
    assert report["verdict"] == "pass"
    assert report["accel"] in ("kvm", "tcg")
    assert report["dump"]["status"] == "complete" and report["dump"]["bytes"] > 60 << 20
    assert set(report["timings"]) >= {"boot", "crash_to_dump_done", "validate"}
    assert report["throughput_mib_s"] > 0
    for check in report["checks"]:
        assert set(check) >= {"name", "ok", "detail"}
    for name in ("qemu_cmdline", "console_log", "qemu_stderr", "qmp_transcript", "dump_image", "snapshot"):
        assert Path(report["artifacts"][name]).exists(), name
    assert "CRASH: NMI" in (good_run / "console.log").read_text()  # the guest told its console too
    transcript = [json.loads(l) for l in (good_run / "qmp.jsonl").read_text().splitlines()]
    sent = [m["msg"].get("execute") for m in transcript if m["dir"] == "out"]
    assert "inject-nmi" in sent and "pmemsave" in sent


def test_validate_dir_and_image_pass(good_run):
    assert dumpbed("validate", str(good_run)).returncode == 0
    proc = dumpbed("validate", str(good_run / "dump.img"), "--json")
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert json.loads(proc.stdout)["dump"]["status"] == "complete"


def test_show_prints_the_directory(good_run):
    proc = dumpbed("show", str(good_run / "dump.img"))
    assert proc.returncode == 0, proc.stderr
    for word in ("crash-record", "kernel", "ram", "COMPLETE"):
        assert word.lower() in proc.stdout.lower(), word
    # a run directory shows its dump disk, and points to the run's page
    by_dir = dumpbed("show", str(good_run))
    assert by_dir.returncode == 0, by_dir.stderr
    assert by_dir.stdout == proc.stdout


def _flip(path: Path, offset: int) -> int:
    with open(path, "r+b") as f:
        f.seek(offset)
        old = f.read(1)[0]
        f.seek(offset)
        f.write(bytes([old ^ 0x01]))
    return old


def _restore(path: Path, offset: int, old: int) -> None:
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(bytes([old]))


def test_validate_dir_fails_on_a_flipped_byte_in_ram_data(good_run):
    layout = json.loads((good_run / "layout.json").read_text())
    dump_part = [p for p in layout["partitions"] if p["name"] == "dumpbed-dump"][0]
    offset = dump_part["first_lba"] * layout["block_size"] + 4 * 1024 * 1024  # inside the body
    old = _flip(good_run / "dump.img", offset)
    try:
        proc = dumpbed("validate", str(good_run), "--json")
        assert proc.returncode == 1
        failed = {c["name"] for c in json.loads(proc.stdout)["checks"] if not c["ok"]}
        assert "chunk-crc" in failed
    finally:
        _restore(good_run / "dump.img", offset, old)
    assert dumpbed("validate", str(good_run)).returncode == 0


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(fraction=st.floats(min_value=0, max_value=1, exclude_max=True))
def test_any_flipped_byte_in_a_real_dump_disk_fails_validation(good_run, fraction):
    image = good_run / "dump.img"
    offset = int(fraction * image.stat().st_size)
    old = _flip(image, offset)
    try:
        assert not validate.validate_run(good_run).ok, f"flip at {offset} went unnoticed"
    finally:
        _restore(image, offset, old)


@pytest.mark.parametrize("args", [
    ["run", "--memory", "lots"],
    ["run", "--disk", "floppy"],
    ["run", "--crash", "meteor", "--out", "{tmp}/x"],
    ["run", "--memory", "64M", "--ram-below-4g", "64M", "--out", "{tmp}/x"],
    ["run", "--memory", "96M", "--ram-below-4g", "33M", "--out", "{tmp}/x"],
    ["run", "--disk", "lsi", "--fault", "hold-runtime", "--out", "{tmp}/x"],
    ["validate", "/nonexistent/dir"],
    ["show", "/nonexistent.img"],
    ["validate", "{tmp}/garbage.img"],
])
def test_bad_input_is_one_line_and_exit_2(tmp_path, args):
    (tmp_path / "garbage.img").write_bytes(os.urandom(8192))
    proc = dumpbed(*[a.replace("{tmp}", str(tmp_path)) for a in args])
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert not (tmp_path / "x").exists()  # refused before anything was written
