"""`dumpbed matrix` end to end (docs/nightly.md): a small matrix on this machine, the same one
sharded over two SSH hosts (real sshds on 127.0.0.1) and merged, a host killed under a cell, and
the nightly's KVM guard. The verdicts must not depend on where a cell ran.

The tests with hosts take prepared_hosts first: the session's first preparation of a bare host is
that fixture's, which test_remote times."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from dumpbed.deadline import Deadline

pytestmark = pytest.mark.integration

# Three cells, 32 MiB under TCG: a clean dump, a dump cut short by SIGKILL (expected partial:
# a pass), and a guest that never flushes (a driver bug: the cell must FAIL).
MATRIX = """
[clean]
disk = "virtio-blk"
crash = "nmi"
memory = "32M"
accel = "tcg"

[killed]
disk = "virtio-scsi"
crash = "nmi"
fault = "kill@50%"
memory = "32M"
accel = "tcg"

[broken]
disk = "virtio-blk"
crash = "nmi"
memory = "32M"
accel = "tcg"
args = ["--guest-arg", "testfault=no-flush"]
"""
VERDICTS = {
    "clean/virtio-blk/nmi/none/32M/tcg": ("pass", "pass", "complete"),
    "killed/virtio-scsi/nmi/kill@50%/32M/tcg": ("pass", "pass", "partial"),
    "broken/virtio-blk/nmi/none/32M/tcg": ("fail", "fail", "complete"),
}
MATRIX_DEADLINE_S = 600.0


def dumpbed(*args, cwd: Path, timeout: float = MATRIX_DEADLINE_S, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dumpbed", *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


def verdicts(out: Path) -> dict[str, tuple]:
    doc = json.loads((out / "results.json").read_text())
    return {c["id"]: (c["outcome"], c["verdict"], c["dump_status"]) for c in doc["cells"]}


def judged(out: Path) -> dict[str, tuple]:
    """What a cell's verdict rests on, to compare runs made in different places."""
    doc = json.loads((out / "results.json").read_text())
    return {c["id"]: (c["outcome"], c["verdict"], c["dump_status"], tuple(c["failed_checks"]), c["expect"])
            for c in doc["cells"]}


@pytest.fixture(scope="module")
def matrix_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("matrix") / "matrix.toml"
    path.write_text(MATRIX)
    return path


@pytest.fixture(scope="module")
def local_run(matrix_file, tmp_path_factory):
    out = tmp_path_factory.mktemp("local") / "out"
    # a caller's pytest settings must not reach the matrix's own pytest: collected only, no cell would run
    env = dict(os.environ, PYTEST_ADDOPTS="--collect-only")
    done = dumpbed("matrix", matrix_file, "--out", out, "--history", out.parent / "h.sqlite", cwd=out.parent, env=env)
    return out, done


def test_a_local_matrix_judges_each_cell_and_fails_on_the_broken_driver(local_run):
    out, done = local_run
    assert done.returncode == 1, done.stderr  # a driver FAIL
    assert verdicts(out) == VERDICTS
    doc = json.loads((out / "results.json").read_text())
    for cell in doc["cells"]:
        assert cell["host"] == "local" and cell["accel"] == "tcg" and cell["attempts"] == []
        assert (out / cell["run_dir"] / "report.json").exists()
    broken = next(c for c in doc["cells"] if c["group"] == "broken")
    assert "write-order" in broken["failed_checks"]
    clean = next(c for c in doc["cells"] if c["group"] == "clean")
    assert clean["mib_s"] and clean["mib_s"] > 0
    # JUnit: one case per cell, the broken one a failure, properties present
    suite = ET.parse(out / "junit.xml").getroot()
    cases = list(suite.iter("testcase"))
    assert len(cases) == 3
    failures = [c for c in cases if c.find("failure") is not None]
    assert len(failures) == 1 and "broken" in failures[0].get("classname") + failures[0].get("name")
    props = {p.get("name"): p.get("value") for p in cases[0].iter("property")}
    assert {"verdict", "dump_status", "mib_s", "host", "accel"} <= set(props)
    html = (out / "report.html").read_text()
    assert all(cell_id in html for cell_id in VERDICTS)


def test_a_matrix_refuses_bad_input_before_writing_anything(matrix_file, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[g]\ndisk = "floppy"\ncrash = "nmi"\n')
    for args in (["matrix", bad, "--out", tmp_path / "o1"],
                 ["matrix", matrix_file, "--shard", "4/3", "--out", tmp_path / "o2"],
                 ["matrix", matrix_file, "--shard", "3/3", "--hosts", tmp_path / "none.toml", "--out", tmp_path / "o3"],
                 ["matrix", matrix_file, "--jobs", "0", "--out", tmp_path / "o4"]):
        done = dumpbed(*args, cwd=tmp_path, timeout=60)
        assert done.returncode == 2, (args, done.stderr)
        assert done.stderr.startswith("dumpbed: error:") and done.stderr.count("\n") == 1, done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


def test_a_sharded_matrix_on_two_hosts_merges_to_the_local_verdicts(local_run, matrix_file, prepared_hosts, ssh_hosts,
                                                                    tmp_path):
    """Shard 1/2 spreads over both hosts at once (a slot each), shard 2/2 runs after; each cell
    is judged here from the copied run directory; merged, the verdicts are the local run's."""
    local_out, _ = local_run
    hosts_file = ssh_hosts.hosts_file()
    shards = []
    for i in (1, 2):
        out = tmp_path / f"shard-{i}"
        done = dumpbed("matrix", matrix_file, "--hosts", hosts_file, "--shard", f"{i}/2",
                       "--wheel", ssh_hosts.wheel, "--out", out, cwd=tmp_path)
        assert done.returncode in (0, 1), done.stderr
        shards.append(out)
    first = json.loads((shards[0] / "results.json").read_text())
    assert {c["host"] for c in first["cells"]} == {h.name for h in ssh_hosts.hosts}  # both hosts at once
    merged = tmp_path / "night"
    done = dumpbed("matrix-report", "--out", merged, *shards, cwd=tmp_path, timeout=120)
    assert done.returncode == 1, done.stderr  # the broken cell
    assert judged(merged) == judged(local_out)
    for cell in json.loads((merged / "results.json").read_text())["cells"]:
        assert (merged / cell["run_dir"] / "remote-report.json").exists()  # the host's verdict kept as a log


def test_a_host_lost_under_a_cell_is_retried_on_the_other_host(matrix_file, prepared_hosts, ssh_hosts, tmp_path):
    """The first host's sshd and everything under it killed while the cell's guest runs there:
    an infrastructure error for that attempt, the cell run again on the second host, and passed."""
    doomed = ssh_hosts.start_extra("doomed")
    hosts_file = ssh_hosts.hosts_file([doomed, ssh_hosts.hosts[1]])
    out = tmp_path / "out"
    one = tmp_path / "one.toml"
    one.write_text(MATRIX.split("[killed]")[0])
    proc = subprocess.Popen([sys.executable, "-m", "dumpbed", "matrix", str(one), "--hosts", str(hosts_file),
                             "--wheel", str(ssh_hosts.wheel), "--out", str(out)], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = Deadline(300.0, "the cell's guest on the doomed host")
        while not any(doomed.runs_dir().glob("*/console.log")):
            deadline.check()
            assert proc.poll() is None, proc.communicate()
            time.sleep(0.1)
        doomed.kill()
        stdout, stderr = proc.communicate(timeout=MATRIX_DEADLINE_S)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, stderr
    (cell,) = json.loads((out / "results.json").read_text())["cells"]
    assert (cell["outcome"], cell["host"]) == ("pass", ssh_hosts.hosts[1].name)
    assert [a["host"] for a in cell["attempts"]] == ["doomed"], cell["attempts"]
    assert "doomed" in cell["attempts"][0]["error"]


def test_require_kvm_refuses_a_host_without_kvm(matrix_file, prepared_hosts, ssh_hosts, tmp_path):
    nokvm = ssh_hosts.start_extra("nokvm", kvm=False)
    out = tmp_path / "out"
    done = dumpbed("matrix", matrix_file, "--hosts", ssh_hosts.hosts_file([nokvm]), "--wheel", ssh_hosts.wheel,
                   "--require-kvm", "--out", out, cwd=tmp_path, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "dumpbed: error: host nokvm: KVM is not usable" in done.stderr
    assert not (out / "results.json").exists()


def test_require_kvm_on_this_machine_without_kvm(matrix_file, tmp_path):
    env = dict(os.environ, DUMPBED_KVM_DEVICE=str(tmp_path / "no-kvm"))
    done = subprocess.run([sys.executable, "-m", "dumpbed", "matrix", str(matrix_file), "--require-kvm",
                           "--out", str(tmp_path / "out")], cwd=tmp_path, capture_output=True, text=True,
                          timeout=60, env=env)
    assert done.returncode == 2 and "KVM is not usable on this machine" in done.stderr, done.stderr
    assert not (tmp_path / "out").exists()
