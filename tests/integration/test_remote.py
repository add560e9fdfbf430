"""Remote hosts (docs/nightly.md): real OpenSSH servers on 127.0.0.1 (tests/support/sshd.py),
reached as a KVM host is. Host keys are checked strictly, argument vectors arrive word for word,
a bare host is prepared from dumpbed's wheel (as a user installs it: built from the sources,
pip-installed with its dependencies into a venv outside any checkout, the guest built from the
sources the wheel carries) and reused, a cell runs there and the controller, not the host,
judges it; a host that vanishes mid-run is an infrastructure error."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest

from dumpbed.errors import DumpbedError, InfraError
from dumpbed.machine import accel
from dumpbed.remote import execute, prepare, ssh
from dumpbed.remote.hosts import load_hosts
from dumpbed.run import interrupted, validate_run_dir
from tests.integration.conftest import PLANTED
from tests.support.procs import alive, free_port
from tests.support.sshd import Sshd, keygen, write_hosts

SCENARIO = ["--disk", "virtio-blk", "--crash", "nmi", "--memory", "32M", "--accel", "tcg"]
PRINT_ARGV = ["python3", "-c", "import sys, json; print(json.dumps(sys.argv[1:]))"]


def _user_known_hosts() -> bytes:
    try:
        return (Path.home() / ".ssh" / "known_hosts").read_bytes()
    except OSError:
        return b""


def test_unknown_and_changed_host_keys_are_refused_never_added(ssh_hosts, dumpbed_wheel, tmp_path):
    sshd = ssh_hosts["alpha"]
    other = (keygen(tmp_path / "other").with_suffix(".pub")).read_text().split()[:2]
    user_file = _user_known_hosts()
    cases = {
        "unknown": f"[127.0.0.1]:{sshd.port + 1} {other[0]} {other[1]}\n127.0.0.1 {other[0]} {other[1]}\n",
        "changed": f"[127.0.0.1]:{sshd.port} {other[0]} {other[1]}\n",
    }
    for case, text in cases.items():
        known = tmp_path / f"known-{case}"
        known.write_text(text)
        host = replace(sshd.host, known_hosts=known)
        with pytest.raises(ssh.HostKeyRefused) as caught:
            ssh.connect(host, timeout=10)
        message = str(caught.value)
        assert message.startswith(f"host alpha: the host key of 127.0.0.1:{sshd.port} ")
        assert "ssh-ed25519 SHA256:" in message and f"ssh-keyscan -p {sshd.port} 127.0.0.1 >> {known}" in message
        assert ("has changed" in message) == (case == "changed") and "\n" not in message
        assert (f"ssh-keygen -R '[127.0.0.1]:{sshd.port}' -f {known}" in message) == (case == "changed"), message
        # prepare says the same, and it is a user error (exit 2), not an infrastructure one
        with pytest.raises(ssh.HostKeyRefused) as again:
            prepare.prepare(host, dumpbed_wheel, timeout=60)
        assert not isinstance(again.value, InfraError)
        assert known.read_text() == text, f"{case}: known_hosts changed"
    assert _user_known_hosts() == user_file


def test_a_wrong_client_key_or_no_server_is_refused_cleanly(ssh_hosts, tmp_path):
    host = ssh_hosts["alpha"].host
    with pytest.raises(ssh.AuthRefused) as caught:
        ssh.connect(replace(host, key_file=keygen(tmp_path / "stranger")), timeout=10)
    assert str(caught.value).startswith(f"host alpha: 127.0.0.1:{host.port} refused user root with key ")
    assert isinstance(caught.value, InfraError)
    with pytest.raises(InfraError, match=r"^host alpha: cannot connect to 127\.0\.0\.1:\d+: Connection refused"):
        ssh.connect(replace(host, port=free_port()), timeout=10)


def test_argument_vectors_reach_the_host_word_for_word(ssh_hosts, tmp_path):
    words = ["a b", "c'd", "$(x)", ";rm -rf x", '"q"', "*", "`id`", "ü", "", "--", "\\n", "a\tb"]
    # The hosts file the CLI loads is the one a test host writes.
    host, = load_hosts(write_hosts(tmp_path / "hosts.toml", [ssh_hosts["alpha"]]))
    with ssh.connect(host) as conn:
        for pty in (False, True):
            done = conn.run(PRINT_ARGV + words, timeout=30, pty=pty)
            assert done.exit_status == 0 and json.loads(done.output.strip().splitlines()[-1]) == words, done
        done = conn.run(["sh", "-c", 'printf "%s|" "$A" "$B"; exit 7'], timeout=30, env={"A": "x y", "B": "$(no)"})
        assert (done.exit_status, done.output) == (7, "x y|$(no)|")
        with pytest.raises(InfraError, match="sleep did not finish within 0.5s"):
            conn.run(["sleep", "30"], timeout=0.5, pty=True)


def test_a_tree_comes_back_whole_and_sparse_and_a_cut_copy_is_an_infrastructure_error(ssh_hosts, tmp_path):
    remote = tmp_path / "on-the-host"  # the host is this machine
    (remote / "sub").mkdir(parents=True)
    with open(remote / "sparse.img", "wb") as f:  # 64 MiB, data at both ends, a hole between
        f.write(b"head" * 1024)
        f.seek(64 << 20)
        f.write(b"tail")
    (remote / "sub" / "small.json").write_text('{"a": 1}')
    os.symlink("sub/small.json", remote / "link")
    with Sshd(tmp_path, "epsilon", tmp_path / "work", ssh_hosts["alpha"].env) as epsilon:
        with ssh.connect(epsilon.host) as conn:
            conn.get_tree(str(remote), tmp_path / "copy")
        copy = tmp_path / "copy"
        assert (copy / "sparse.img").read_bytes() == (remote / "sparse.img").read_bytes()
        assert (copy / "sparse.img").stat().st_blocks * 512 <= 512 << 10  # the hole stayed a hole
        assert (copy / "sub" / "small.json").read_text() == '{"a": 1}' and os.readlink(copy / "link") == "sub/small.json"
        assert (copy / "sparse.img").stat().st_mtime == int((remote / "sparse.img").stat().st_mtime)  # SFTP: seconds

        big = remote / "big.img"  # no zeros to skip: every byte crosses the wire
        with open(big, "wb") as f:
            for _ in range(256):
                f.write(b"\xa5" * (1 << 20))
        conn = ssh.connect(epsilon.host)
        failed: dict = {}

        def get():
            try:
                conn.get_tree(str(remote), tmp_path / "cut")
            except BaseException as exc:  # noqa: BLE001: the test's thread looks at it
                failed["error"] = exc

        thread = threading.Thread(target=get, daemon=True)
        thread.start()
        end = time.monotonic() + 60
        while time.monotonic() < end and thread.is_alive():
            if (tmp_path / "cut" / "big.img").exists() and (tmp_path / "cut" / "big.img").stat().st_size > 8 << 20:
                break
            time.sleep(0.01)
        epsilon.kill()
        thread.join(60)
        conn.close()
    error = failed.get("error")
    assert isinstance(error, InfraError), f"the copy was not cut: {failed}"
    assert str(error).startswith(f"host epsilon: copying {big} was cut"), str(error)


def test_a_bare_host_is_prepared_once_and_reused(prepared_hosts, dumpbed_wheel, ssh_hosts):
    prepared, seconds = prepared_hosts
    alpha = prepared["alpha"]
    version, sha16 = prepare.wheel_identity(dumpbed_wheel)
    home = ssh_hosts["alpha"].workdir / f"dumpbed-{version}-{sha16}"
    assert alpha.python == f"{home}/venv/bin/python" and alpha.workdir == str(ssh_hosts["alpha"].workdir)
    venv = Path(alpha.python).parents[1].resolve()
    assert Path(prepared["beta"].python).parents[1].resolve() == venv  # the same wheel: beta took alpha's venv
    assert sorted(p.name for p in home.iterdir()) == [dumpbed_wheel.name, "venv"]  # no half-made venv left
    probe = alpha.probe
    assert probe["dumpbed"] == version and probe["python"].startswith("3.")
    assert probe["qemu"].startswith("QEMU emulator version ") and probe["qemu_img"] is True
    assert probe["toolchain"] == {"cc": True, "make": True, "ld": True}
    assert probe["cpus"] >= 1 and probe["mem_available"] > 0
    assert probe["kvm"]["usable"] == accel.kvm_usable()[0]
    assert seconds["beta"] < 15 and seconds["beta"] < seconds["alpha"], seconds
    assert prepare.Prepared.from_dict(json.loads(json.dumps(alpha.to_dict()))) == alpha
    print(f"prepare: alpha {seconds['alpha']:.1f}s from nothing, beta {seconds['beta']:.1f}s reusing it")


def test_the_installed_package_is_the_wheels(prepared_hosts):
    alpha = prepared_hosts[0]["alpha"]
    venv = Path(alpha.python).parents[1].resolve()  # WORKDIR's install dir may be a link (SshHosts)
    paths = ["guest/Makefile", "images/dumpbed-guest/recipe.toml", "guest/build", *PLANTED]
    code = ("import dumpbed, json, pathlib, sys; d = pathlib.Path(dumpbed.__file__).parent / '_data'; "
            "print(json.dumps({'file': dumpbed.__file__, 'exists': {p: (d / p).exists() for p in sys.argv[1:]}}))")
    with ssh.connect(alpha.host) as conn:
        done = conn.check([alpha.python, "-c", code, *paths], 60, "looking at the install")
        images = conn.check([alpha.python, "-m", "dumpbed", "list", "images"], 60, "dumpbed list images",
                            env=prepare.PLAIN)
    found = json.loads(done.output.strip().splitlines()[-1])
    assert Path(found["file"]).resolve().is_relative_to(venv), found
    assert found["exists"] == {p: p in paths[:2] for p in paths}  # the sources, and none of the build junk
    line = next(ln for ln in images.output.splitlines() if "dumpbed-guest" in ln)
    assert "not built" not in line  # prepare built it


def test_a_cell_on_a_host_is_judged_by_the_controller(prepared_hosts, ssh_hosts, tmp_path):
    alpha = prepared_hosts[0]["alpha"]
    local = tmp_path / "cell" / "run"
    runs = Path(alpha.workdir) / "runs"
    before = set(runs.iterdir()) if runs.exists() else set()
    t0 = time.monotonic()
    ran = execute.run_cell(alpha, SCENARIO + ["--json"], local, timeout=600)
    print(f"remote cell: {time.monotonic() - t0:.1f}s")
    log = ran.log.read_text()
    assert ran.exit_status == 0, log[-3000:]
    assert ran.log == tmp_path / "cell" / "remote.log" and "\x1b" not in log  # no bar, no colour under the pty
    assert not (local / "report.json").exists()  # the host's verdict is only a log
    assert set(runs.iterdir()) == before  # removed from the host
    theirs = json.loads((local / execute.REMOTE_REPORT).read_text())
    assert theirs["verdict"] == "pass"
    # As a user installs it: the guest built from the wheel's sources into the host's cache
    guest = theirs["scenario"]["guest"]
    assert guest["recipe"] == "dumpbed-guest"
    assert Path(guest["kernel"]).is_relative_to(ssh_hosts["alpha"].env["DUMPBED_CACHE"])
    manifest = json.loads((Path(guest["kernel"]).parent / "manifest.json").read_text())
    assert Path(manifest["source_root"]).resolve().is_relative_to(Path(alpha.python).parents[1].resolve())
    assert theirs["provenance"]["dumpbed"]["commit"] is None  # no checkout anywhere near
    with ssh.connect(alpha.host) as conn:
        again = conn.check([alpha.python, "-m", "dumpbed", "build-image", "dumpbed-guest"], 120, "build-image",
                           env=prepare.PLAIN)
    assert again.output.strip() == f"dumpbed-guest: cached: {guest['kernel']}"

    ours = validate_run_dir(local, save=True)
    assert ours["verdict"] == "pass" and ours["dump"]["status"] == "complete"
    assert json.loads((local / "report.json").read_text())["verdict"] == "pass"

    # Doctored after the copy: the host still says pass, the controller does not.
    layout = json.loads((local / "layout.json").read_text())
    dump_part = next(p for p in layout["partitions"] if p["name"] == "dumpbed-dump")
    block = layout["block_size"]
    middle = (dump_part["first_lba"] + (dump_part["last_lba"] - dump_part["first_lba"]) // 2) * block
    with open(local / layout["image"], "r+b") as image:
        image.seek(middle)
        body = image.read(4096)
        image.seek(middle)
        image.write(bytes(b ^ 0xFF for b in body))
    doctored = validate_run_dir(local, save=True)
    assert doctored["verdict"] == "fail", [c for c in doctored["checks"] if not c["ok"]]
    assert json.loads((local / execute.REMOTE_REPORT).read_text())["verdict"] == "pass"


def test_a_host_killed_mid_run_is_an_infrastructure_error(prepared_hosts, ssh_hosts, dumpbed_wheel, tmp_path):
    gamma = ssh_hosts.start_extra("gamma")
    try:
        prepared = prepare.prepare(gamma.host, dumpbed_wheel, timeout=300)  # alpha's venv and image
        runs = Path(prepared.workdir) / "runs"
        before = set(runs.iterdir()) if runs.exists() else set()
        outcome: dict = {}

        def cell():
            try:  # throttled to 1 MiB/s: the 32 MiB dump lasts long enough to be cut
                outcome["ran"] = execute.run_cell(prepared, SCENARIO + ["--fault", "slow=1"], tmp_path / "cell" / "run",
                                                  timeout=300)
            except BaseException as exc:  # noqa: BLE001: handed to the test's thread
                outcome["error"] = exc

        thread = threading.Thread(target=cell, daemon=True)
        thread.start()
        qemu_pid = _wait_for_qemu(lambda: set(runs.iterdir()) - before if runs.exists() else (), thread)
        gamma.kill()
        thread.join(60)
        assert not thread.is_alive(), "run_cell did not return after the host vanished"
        error = outcome.get("error")
        assert isinstance(error, InfraError), outcome
        assert str(error).startswith("host gamma: connection lost while running python"), str(error)
        assert not alive(qemu_pid)
        assert (tmp_path / "cell" / "remote.log").exists()  # what it said before it went
    finally:
        gamma.stop()


def test_a_dropped_connection_hangs_the_run_up_and_it_stops_its_qemu(prepared_hosts, tmp_path):
    """The pty's point: the controller gone, the run gets SIGHUP, stops its QEMU, says so."""
    alpha = prepared_hosts[0]["alpha"]
    out = tmp_path / "run"  # the host is this machine: its run directory is visible here
    conn = ssh.connect(alpha.host)
    failed: dict = {}

    def run():
        try:
            conn.run([alpha.python, "-m", "dumpbed", "run", *SCENARIO, "--fault", "slow=1", "--out", out], 300,
                     pty=True, env=prepare.PLAIN)
        except BaseException as exc:  # noqa: BLE001: the test's thread looks at it
            failed["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        qemu_pid = _wait_for_qemu(lambda: [out], thread)
    finally:
        conn.close()
    thread.join(30)
    assert isinstance(failed.get("error"), InfraError), failed
    end = time.monotonic() + 60
    while time.monotonic() < end and (interrupted(out) is None or alive(qemu_pid)):
        time.sleep(0.1)
    assert not alive(qemu_pid), "the remote QEMU outlived the connection"
    assert interrupted(out)["signal"] == "SIGHUP"


def _wait_for_qemu(run_dirs, thread, seconds: float = 120) -> int:
    """The PID of the QEMU of the first of run_dirs() to have one, once it is into its dump."""
    end = time.monotonic() + seconds
    while time.monotonic() < end and thread.is_alive():
        for run in run_dirs():
            pid_file = run / "qemu.pid"
            if pid_file.exists() and pid_file.read_text().strip():
                time.sleep(1)  # into the dump (throttled: it lasts)
                return int(pid_file.read_text())
        time.sleep(0.05)
    raise AssertionError("no remote QEMU started")


def test_a_host_without_kvm_fails_require_kvm(prepared_hosts, ssh_hosts):
    nokvm = prepare.prepare(ssh_hosts.start_extra("nokvm", kvm=False).host, ssh_hosts.wheel, timeout=300)
    assert nokvm.probe["kvm"]["usable"] is False
    with pytest.raises(DumpbedError) as caught:
        prepare.require_kvm(nokvm)
    device = ssh_hosts.no_kvm_device
    assert str(caught.value) == f"host nokvm: KVM is not usable: {device}: No such file or directory (--require-kvm)"
    assert not isinstance(caught.value, InfraError)
    if accel.kvm_usable()[0]:
        prepare.require_kvm(prepared_hosts[0]["alpha"])


def test_a_host_without_qemu_or_toolchain_cannot_be_prepared(prepared_hosts, ssh_hosts, dumpbed_wheel, tmp_path):
    """Its PATH has Python and the basic tools, no QEMU, no compiler: prepare says so."""
    bare = tmp_path / "bin"
    bare.mkdir()
    for tool in ("python3", "env", "rm", "sh", "bash"):
        where = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        os.symlink(where, bare / tool)
    delta = ssh_hosts.start_extra("delta", env={"PATH": str(bare)})
    try:
        with pytest.raises(InfraError) as caught:
            prepare.prepare(delta.host, dumpbed_wheel, timeout=120)
    finally:
        delta.stop()
    assert str(caught.value) == ("host delta: cannot run cells: no QEMU (qemu-system-x86_64); no qemu-img; "
                                 "no C toolchain (cc, ld, make missing)")


def test_run_on_a_host_from_the_command_line(prepared_hosts, ssh_hosts, tmp_path):
    """`dumpbed run --host NAME --hosts FILE`: the user's options run on the host, the copy judged
    here (report.json ours, the host's kept beside it), the host's output in remote.log."""
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "dumpbed", "run", "--host", "beta", "--hosts",
                           str(ssh_hosts.hosts_file()), *SCENARIO, "--out", str(out), "--json"],
                          capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout)
    assert report["verdict"] == "pass" and json.loads((out / "report.json").read_text())["verdict"] == "pass"
    assert (out / execute.REMOTE_REPORT).exists() and (out / "remote.log").stat().st_size > 0
    scenario = json.loads((out / "scenario.json").read_text())
    assert scenario["memory_bytes"] == 32 << 20  # the options reached the host
    unknown = subprocess.run([sys.executable, "-m", "dumpbed", "run", "--host", "gamma", "--hosts",
                              str(ssh_hosts.hosts_file()), "--out", str(tmp_path / "no")],
                             capture_output=True, text=True, timeout=60, cwd=tmp_path)
    assert unknown.returncode == 2 and "--host gamma: no such host" in unknown.stderr
    assert not (tmp_path / "no").exists()
