"""dumpbed as a user installs it: a wheel built from the sources, pip-installed (with its
dependencies) into a fresh venv, run from a directory outside any checkout. Its guest is built
from the sources the wheel carries into an image cache of its own, and one scenario passes."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

CHECKOUT = Path(__file__).resolve().parents[2]
# What a wheel is built from: the packaging files and the three trees (the harness, the guest
# sources and the image recipes the wheel carries as package data).
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "harness", "guest", "images")
# Build output planted in the copied sources: the wheel must carry none of it.
PLANTED = ("guest/build/junk.o", "guest/x.o")


def _run(argv, cwd: Path, env=None, timeout: float = 600) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{argv[:3]} exited {proc.returncode}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    return proc


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(the fresh venv, a scratch dir outside the checkout, the environment the user's shell has)."""
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in SOURCES:
        source = CHECKOUT / name
        if source.is_dir():  # build output and all: setup.py is what keeps it out of the wheel
            shutil.copytree(source, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy(source, src / name)
    for junk in PLANTED:  # whether or not the checkout has a build
        (src / junk).parent.mkdir(parents=True, exist_ok=True)
        (src / junk).write_bytes(b"\x7fELF not a source")
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", base / "dist", src], cwd=base)
    wheels = list((base / "dist").glob("dumpbed-*.whl"))
    assert len(wheels) == 1, wheels
    shutil.rmtree(src)  # the install must not find the sources anywhere but in the wheel
    venv = base / "venv"
    _run([getattr(sys, "_base_executable", sys.executable), "-m", "venv", venv], cwd=base)
    _run([venv / "bin" / "pip", "install", "-q", wheels[0]], cwd=base)
    work = base / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PYTEST"))}
    env["PATH"] = os.pathsep.join([str(venv / "bin")] + [p for p in env.get("PATH", "").split(os.pathsep)
                                                         if not p.startswith(str(CHECKOUT))])
    env["DUMPBED_CACHE"] = str(base / "cache")
    return venv, work, env


def test_the_installed_package_is_the_wheels(installed):
    venv, work, env = installed
    where = _run([venv / "bin" / "python", "-c", "import dumpbed, sys; print(dumpbed.__file__)"], cwd=work, env=env)
    assert Path(where.stdout.strip()).is_relative_to(venv), where.stdout
    data = Path(where.stdout.strip()).parent / "_data"
    assert (data / "guest" / "Makefile").is_file() and (data / "images" / "dumpbed-guest" / "recipe.toml").is_file()
    for junk in PLANTED:
        assert not (data / junk).exists(), junk
    assert not (data / "guest" / "build").exists()
    images = _run([venv / "bin" / "dumpbed", "list", "images"], cwd=work, env=env)
    assert "dumpbed-guest" in images.stdout and "not built" in images.stdout


def test_a_scenario_runs_from_the_wheel_outside_a_checkout(installed):
    venv, work, env = installed
    proc = subprocess.run([venv / "bin" / "dumpbed", "run", "--memory", "32M", "--out", work / "run", "--json"],
                          cwd=work, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    assert report["verdict"] == "pass" and report["dump"]["status"] == "complete"
    guest = report["scenario"]["guest"]
    cache = Path(env["DUMPBED_CACHE"])
    assert guest["recipe"] == "dumpbed-guest" and Path(guest["kernel"]).is_relative_to(cache)
    manifest = json.loads((Path(guest["kernel"]).parent / "manifest.json").read_text())
    assert Path(manifest["source_root"]).is_relative_to(venv)  # built from the wheel's own sources
    assert report["provenance"]["dumpbed"]["commit"] is None  # no checkout anywhere near
    again = _run([venv / "bin" / "dumpbed", "build-image"], cwd=work, env=env)
    assert again.stdout.strip() == f"dumpbed-guest: cached: {guest['kernel']}"
