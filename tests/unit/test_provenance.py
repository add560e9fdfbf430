"""report.json's provenance (harness/dumpbed/provenance.py) and `dumpbed --version`."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from importlib import metadata
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from dumpbed import cli, provenance

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def fresh_caches():
    """Each test computes anew, and leaves no doctored value cached for the next."""
    caches = (provenance.git_commit, provenance.qemu_binary_version, provenance.dumpbed_version,
              provenance.host_kernel, provenance.host_cpu_model, provenance._sha256)
    for c in caches:
        c.cache_clear()
    yield
    for c in caches:
        c.cache_clear()


def _provenance_validator() -> Draft202012Validator:
    schema = json.loads((ROOT / "docs" / "report.schema.json").read_text())
    return Draft202012Validator({"$schema": schema["$schema"], "$defs": schema["$defs"],
                                 "$ref": "#/$defs/provenance"})


def test_the_commit_is_the_checkouts(fresh_caches):
    if shutil.which("git") is None:
        pytest.skip("no git on this machine")
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    dirty = bool(subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                                capture_output=True, text=True, check=True).stdout.strip())
    assert provenance.git_commit() == (head, dirty)
    assert provenance.version_line() == (f"dumpbed {metadata.version('dumpbed')} (commit {head[:12]}"
                                         + (", with uncommitted changes" if dirty else "") + ")")


def test_outside_a_checkout_the_commit_is_null(fresh_caches, tmp_path, monkeypatch):
    monkeypatch.setattr(provenance, "CHECKOUT", tmp_path)
    assert provenance.git_commit() == (None, None)
    assert provenance.version_line() == f"dumpbed {metadata.version('dumpbed')}"


def test_a_git_that_refuses_gives_null_not_an_error(fresh_caches, tmp_path, monkeypatch):
    (tmp_path / ".git").mkdir()  # not a repository: git rev-parse fails
    (tmp_path / "harness" / "dumpbed").mkdir(parents=True)
    monkeypatch.setattr(provenance, "CHECKOUT", tmp_path)
    assert provenance.git_commit() == (None, None)
    provenance.git_commit.cache_clear()
    monkeypatch.setenv("PATH", str(tmp_path / "no-such-bin"))  # no git at all
    monkeypatch.setattr(provenance, "CHECKOUT", ROOT)
    assert provenance.git_commit() == (None, None)


def test_git_is_run_without_the_callers_git_environment(fresh_caches, tmp_path, monkeypatch):
    if shutil.which("git") is None:
        pytest.skip("no git on this machine")
    monkeypatch.setenv("GIT_DIR", str(tmp_path))  # would make git read another (no) repository
    commit, _ = provenance.git_commit()
    assert commit is not None and len(commit) in (40, 64)


def _fake_qemu(tmp_path: Path, output: str, status: int = 0) -> str:
    binary = tmp_path / f"fake-qemu-{abs(hash((output, status)))}"
    binary.write_text(f"#!/bin/sh\nprintf '%s\\n' '{output}'\nexit {status}\n")
    binary.chmod(0o755)
    return str(binary)


def test_qemu_version_from_the_binary(fresh_caches, tmp_path):
    binary = _fake_qemu(tmp_path, "QEMU emulator version 8.1.5 (Debian 1:8.1.5+ds-1)")
    assert provenance.qemu_binary_version(binary) == {"version": "8.1.5", "package": "Debian 1:8.1.5+ds-1",
                                                      "source": "binary", "binary": binary}
    plain = _fake_qemu(tmp_path, "QEMU emulator version 9.2.0")
    assert provenance.qemu_binary_version(plain)["package"] is None
    assert provenance.qemu_binary_version(_fake_qemu(tmp_path, "QEMU emulator version 9.2.0", 1)) is None
    assert provenance.qemu_binary_version(_fake_qemu(tmp_path, "not QEMU at all")) is None
    assert provenance.qemu_binary_version(str(tmp_path / "absent")) is None


def test_the_binarys_version_is_asked_once(fresh_caches, tmp_path, monkeypatch):
    binary = _fake_qemu(tmp_path, "QEMU emulator version 8.1.5")
    calls = []
    real_run = subprocess.run
    monkeypatch.setattr(provenance.subprocess, "run", lambda argv, **kw: calls.append(argv) or real_run(argv, **kw))
    for _ in range(3):
        assert provenance.qemu_binary_version(binary)["version"] == "8.1.5"
    assert calls == [[binary, "--version"]]
    for _ in range(3):
        provenance.collect(None)
    assert sum(1 for argv in calls if argv[0] == "git") <= 2  # rev-parse and status, once


def _run_dir(tmp_path: Path, kernel: Path | None = None, greeting: dict | None = None) -> Path:
    run = tmp_path / "run"
    run.mkdir(parents=True)
    argv = ["qemu-system-x86_64", "-machine", "pc"] + (["-kernel", str(kernel)] if kernel else []) + ["-S"]
    (run / "qemu-argv.json").write_text(json.dumps(argv))
    if greeting is not None:
        lines = [{"t": 1.0, "dir": "in", "msg": greeting},
                 {"t": 1.1, "dir": "out", "msg": {"execute": "qmp_capabilities"}}]
        (run / "qmp.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return run


GREETING = {"QMP": {"version": {"qemu": {"micro": 1, "minor": 2, "major": 9}, "package": " v9.2.1 "},
                    "capabilities": ["oob"]}}


def test_qemu_version_of_the_run_from_its_qmp_greeting(fresh_caches, tmp_path):
    run = _run_dir(tmp_path, greeting=GREETING)
    assert provenance.qemu_of_run(run) == {"version": "9.2.1", "package": "v9.2.1", "source": "qmp",
                                           "binary": "qemu-system-x86_64"}
    assert provenance.collect(run, {"accel": "tcg"})["qemu"]["source"] == "qmp"


def test_a_run_without_a_greeting_names_the_binarys_version(fresh_caches, tmp_path, monkeypatch):
    binary = _fake_qemu(tmp_path, "QEMU emulator version 7.0.0")
    run = _run_dir(tmp_path)
    argv = json.loads((run / "qemu-argv.json").read_text())
    (run / "qemu-argv.json").write_text(json.dumps([binary, *argv[1:]]))
    assert provenance.collect(run)["qemu"] == {"version": "7.0.0", "package": None, "source": "binary",
                                               "binary": binary}


def test_the_guest_images_hash(fresh_caches, tmp_path):
    kernel = tmp_path / "guest.elf"
    kernel.write_bytes(b"\x7fELF" + bytes(range(256)) * 100)
    past = kernel.stat().st_mtime_ns - 10**9
    os.utime(kernel, ns=(past, past))
    run = _run_dir(tmp_path, kernel)
    image = provenance.guest_image(run)
    assert image == {"path": str(kernel), "bytes": kernel.stat().st_size,
                     "sha256": hashlib.sha256(kernel.read_bytes()).hexdigest()}


def test_a_guest_image_changed_since_the_run_has_no_hash(fresh_caches, tmp_path):
    kernel = tmp_path / "guest.elf"
    kernel.write_bytes(b"old")
    run = _run_dir(tmp_path, kernel)
    later = (run / "qemu-argv.json").stat().st_mtime_ns + 10**9
    kernel.write_bytes(b"rebuilt")
    os.utime(kernel, ns=(later, later))
    image = provenance.guest_image(run)
    assert image["sha256"] is None and "changed since the run" in image["note"]
    kernel.unlink()
    image = provenance.guest_image(run)
    assert image["sha256"] is None and "cannot read it now" in image["note"]
    assert provenance.guest_image(_run_dir(tmp_path / "x", None)) is None  # no -kernel


def test_the_host(fresh_caches):
    host = provenance.collect(None)["host"]
    assert host["kernel"] == os.uname().release
    models = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
              if line.startswith("model name")] if Path("/proc/cpuinfo").exists() else []
    if models:
        assert host["cpu_model"] == models[0]


def test_collect_never_raises_on_garbage(fresh_caches, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / "qemu-argv.json").write_text("{")
    (run / "qmp.jsonl").write_bytes(b"\xff\xfe garbage\n{\"msg\": {\"QMP\": {\"version\": 3}}}\n")
    got = provenance.collect(run, {"accel": 5})
    assert got["guest_image"] is None and got["accel"] is None
    (run / "qemu-argv.json").write_text(json.dumps({"-kernel": "x"}))
    assert provenance.collect(run, None)["guest_image"] is None
    assert list(_provenance_validator().iter_errors(got)) == []


def test_provenance_of_a_run_validates(fresh_caches, tmp_path):
    kernel = tmp_path / "guest.elf"
    kernel.write_bytes(b"kernel")
    past = kernel.stat().st_mtime_ns - 10**9
    os.utime(kernel, ns=(past, past))
    got = provenance.collect(_run_dir(tmp_path, kernel, GREETING), {"accel": "kvm"})
    assert got["accel"] == "kvm" and got["dumpbed"]["version"] == metadata.version("dumpbed")
    assert list(_provenance_validator().iter_errors(got)) == []


def test_dumpbed_version(fresh_caches, capsys):
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--version"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert out == provenance.version_line() + "\n"
    assert out.startswith(f"dumpbed {metadata.version('dumpbed')}")
    commit, _ = provenance.git_commit()
    assert (f"(commit {commit[:12]}" in out) if commit else ("commit" not in out)
