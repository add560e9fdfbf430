"""Fixtures of the fuzz tests: real dumps made once per session, synthetic ones, and the
hypothesis profiles (docs/fuzzing.md).

Every fuzz test runs twice: on the synthetic devices ([synth], no guest booted: `-k synth`)
and on the real guests' devices ([real]).

Profiles: "fuzz" (the default, what `make test` runs: a bounded number of examples, the
whole directory in about a minute) and "fuzz-long" (`make fuzz`: DUMPBED_FUZZ=long, many
times more examples, each under a deadline). A test asks for fuzz_settings(weight): the
active profile's example count scaled by the weight.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "support"))

import synth  # noqa: E402

from dumpbed.run import Scenario, run_and_validate  # noqa: E402

from .bench import Device, make_device  # noqa: E402

MiB = 1 << 20

settings.register_profile(
    "fuzz", max_examples=25, deadline=None, derandomize=False, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.register_profile(
    "fuzz-long", max_examples=1000, deadline=15_000, print_blob=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROFILE = "fuzz-long" if os.environ.get("DUMPBED_FUZZ", "") == "long" else "fuzz"


def fuzz_settings(weight: float = 1.0):
    """The active fuzz profile with its example count scaled by weight (at least 1)."""
    profile = settings.get_profile(PROFILE)
    return settings(profile, max_examples=max(1, round(profile.max_examples * weight)))


def pytest_report_header(config):
    return f"dumpbed fuzz profile: {PROFILE} ({settings.get_profile(PROFILE).max_examples} examples per unit weight)"


# --------------------------------------------------------------------------------------------
# Dumps
# --------------------------------------------------------------------------------------------


def _real_run(out: Path, **options) -> tuple[Path, dict]:
    _, report = run_and_validate(Scenario(out_dir=out, memory_bytes=32 * MiB, accel="auto", components="all",
                                          **options))
    return out, report


@pytest.fixture(scope="session")
def real_runs(tmp_path_factory):
    """Two real guests' runs: a clean one (a complete dump with every sample component), and
    one restarted on an lsi secondary after the 40th write to the primary failed (a partial
    generation-1 primary, a complete generation-2 secondary)."""
    given = os.environ.get("DUMPBED_FUZZ_RUNS")
    if given:  # runs made earlier (clean/ and restart/, as below): no guest booted
        given = Path(given)
        restart_passes = json.loads((given / "restart" / "report.json").read_text())["verdict"] == "pass"
        return {"clean": given / "clean", "restart": given / "restart", "restart_passes": restart_passes}
    base = tmp_path_factory.mktemp("fuzz-real")
    clean, report = _real_run(base / "clean")
    if report["verdict"] != "pass":
        pytest.fail(f"the real clean run did not pass: {[c for c in report['checks'] if not c['ok']]}")
    restart, report = _real_run(base / "restart", secondary="lsi", faults=["eio-at=40"])
    return {"clean": clean, "restart": restart, "restart_passes": report["verdict"] == "pass"}


def _synth(base: Path, name: str, **options) -> Path:
    run = synth.make_run(base / name / "src", **options)
    return run.dir


def synth_devices(tmp_path_factory) -> list[Device]:
    """Synthetic dumps (tests/support/synth.py), each with its own dump id: every sample, 4096-byte
    blocks, a FAILED dump with a write past its leader, a dump cut short before its first
    checkpoint (slot 0), a partial dump whose final leader had not landed (the trailer COMPLETE,
    the leader the last checkpoint's), a generation-2 dump, a version 3 dump, and compressed
    ones (LZ4 frames: complete, and FAILED with E2BIG cut inside an area), so that frames are
    fuzzed too."""
    work = tmp_path_factory.mktemp("fuzz-work")
    s = tmp_path_factory.mktemp("fuzz-synth")
    landed = synth.make_run(s / "unlanded" / "src", samples="default", seed=6)
    landed.write(landed.leader_at, landed.previous_leader())
    return [
        make_device("synth-samples", _synth(s, "samples", samples="all", seed=1), work / "synth-samples"),
        make_device("synth-4096", _synth(s, "b4096", block_size=4096, seed=2), work / "synth-4096"),
        make_device("synth-failed", _synth(s, "failed", state="failed", spill=8192, samples="default", seed=3),
                    work / "synth-failed"),
        make_device("synth-begun", _synth(s, "begun", state="in-progress", slot=0, spill=65536, seed=4),
                    work / "synth-begun"),
        make_device("synth-unlanded", landed.dir, work / "synth-unlanded"),
        make_device("synth-gen2", _synth(s, "gen2", generation=2, samples="all", seed=5), work / "synth-gen2"),
        make_device("synth-v3", _synth(s, "v3", version=3, seed=7), work / "synth-v3"),
        make_device("synth-lz4", _synth(s, "lz4", compress=True, samples="default", seed=8), work / "synth-lz4"),
        make_device("synth-lz4-e2big", _synth(s, "lz4-e2big", compress=True, state="failed", failure=synth.E2BIG,
                                              body_written=0x1A3000, cut_inside=True, seed=9),
                    work / "synth-lz4-e2big"),
    ]


def real_devices(real_runs, tmp_path_factory) -> list[Device]:
    work = tmp_path_factory.mktemp("fuzz-work")
    devs = [
        make_device("real-clean", real_runs["clean"], work / "clean"),
        make_device("real-restart-primary", real_runs["restart"], work / "restart"),
        make_device("real-restart-secondary", real_runs["restart"], work / "restart", "secondary.layout.json",
                    role="secondary"),
    ]
    by_name = {d.name: d for d in devs}
    assert by_name["real-clean"].complete and by_name["real-clean"].run_passes
    assert by_name["real-restart-secondary"].complete
    return devs


@pytest.fixture(scope="session", params=["synth", "real"])
def devices(request, tmp_path_factory) -> dict[str, Device]:
    """Every device to fuzz, by name, each on a working copy of its run: the synthetic ones, or
    the real guests' (booted once per session, only when asked for)."""
    if request.param == "synth":
        devs = synth_devices(tmp_path_factory)
    else:
        devs = real_devices(request.getfixturevalue("real_runs"), tmp_path_factory)
    return {d.name: d for d in devs}


@pytest.fixture(scope="session")
def pool(devices) -> list[Device]:
    return list(devices.values())
