"""The guest's dump facility API self-tests (`selftest` at the console, guest/test/selftest.c).

The guest is booted once per accelerator for the whole module; each self-test it prints is a
test case here. SELFTEST_NAMES is the list the guest must print, no more and no fewer: a test
renamed or dropped in the guest shows up as a failure of test_the_guest_ran_exactly_these.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

import pytest

from dumpbed.deadline import WaitTimeout
from dumpbed.machine.qemu import Machine, MachineConfig
from tests.integration.conftest import accel_params

MIB = 1 << 20
PROMPT = "dumpbed> "
# Booting and the whole self-test take seconds; these only catch a hang.
BOOT_TIMEOUT = {"kvm": 30.0, "tcg": 120.0}
SELFTEST_TIMEOUT = {"kvm": 60.0, "tcg": 240.0}

SELFTEST_NAMES = [
    # dmp_ctl
    "dmpctl-add",
    "dmpctl-add-eexist",
    "dmpctl-add-einval-null",
    "dmpctl-add-einval-magic",
    "dmpctl-add-einval-func",
    "dmpctl-add-einval-flags",
    "dmpctl-add-einval-bsize",
    "dmpctl-add-einval-name",
    "dmpctl-add-einval-long-name",
    "dmpctl-del",
    "dmpctl-del-unknown",
    "dmpctl-rtnfailure-no-dump",
    "dmpctl-bad-op",
    "dmpctl-table-full",
    "ras-register-table-full",
    # the global buffer
    "global-first-request",
    "global-grow",
    "global-keep-smaller",
    "global-passed-to-askers",
    "global-del-keeps",
    # ras_register / ras_control
    "ras-register",
    "ras-register-eexist",
    "ras-register-einval",
    "ras-level-default",
    "ras-level-valid",
    "ras-level-invalid",
    "ras-bad-action",
    "ras-on-off",
    "ras-admin-level",
    "ras-estimate-level",
    "ras-admin-off-on",
    "ras-callonrestart",
    "ras-serialio-before-customize",
    "ras-serialio-after-customize",
    # staging buffers
    "ras-staging-over-max",
    "ras-staging-max",
    "ras-staging-private",
    "ras-private-then-shared-eexist",
    "ras-staging-remove",
    "ras-shared-then-private-eexist",
    "ras-shared-largest",
    # what a dump start records
    "ras-callonrestart-assumed",
    "ras-level-at-dump-start",
    "dmpctl-rtnfailure-recorded",
    "dmpctl-rtnfailure-after-dump",
    # the pinned pool exhausted
    "ras-staging-enomem",
    "ras-shared-staging-enomem",
    "global-enomem",
    "pool-restored",
    # cleanup, pinning
    "ras-unregister",
    "pin-selftest",
    "dumpterm-unpins",
    "registrations-untouched",
]

_LINE = re.compile(r"^SELFTEST (?P<name>\S+) (?P<verdict>pass|fail)(?: (?P<detail>.*))?$", re.M)
_END = re.compile(r"^SELFTEST-END passed=(?P<passed>\d+) failed=(?P<failed>\d+)\s*$", re.M)


@dataclass
class SelftestRun:
    accel: str
    lines: list[tuple[str, str, str]]  # (name, verdict, detail) in the order printed
    passed: int
    failed: int
    output: str

    def verdict(self, name: str) -> tuple[str, str]:
        found = [(v, d) for n, v, d in self.lines if n == name]
        if not found:
            pytest.fail(f"the guest printed no SELFTEST line for {name} ({self.accel})")
        return found[0]


def run_selftest(kernel, accel: str, out_dir) -> SelftestRun:
    """Boot the guest (no disks: the self-tests need none; the default samples registered, so
    they run beside real registrations), type `selftest`, and collect its lines."""
    config = MachineConfig(kernel=kernel, cmdline="fill=off components=default",
                           memory_bytes=64 * MIB, accel=accel)
    with Machine(config, out_dir) as machine:
        machine.cont()
        try:
            machine.console.wait_for(PROMPT, BOOT_TIMEOUT[accel])
            mark = machine.console.mark()
            machine.console.send("selftest\r")
            machine.console.wait_for(r"SELFTEST-END passed=\d+ failed=\d+\s*\r?\n",
                                     SELFTEST_TIMEOUT[accel], since=mark)
        except WaitTimeout as exc:
            raise AssertionError(f"{exc} ({accel}); console tail:\n{machine.console.tail()}") from None
        output = machine.console.text[mark:].replace("\r", "")
    end = _END.search(output)
    lines = [(m["name"], m["verdict"], (m["detail"] or "").strip()) for m in _LINE.finditer(output)]
    return SelftestRun(accel, lines, int(end["passed"]), int(end["failed"]), output)


@pytest.fixture(scope="module", params=accel_params())
def selftest_run(request, guest_kernel, tmp_path_factory) -> SelftestRun:
    accel = request.param
    return run_selftest(guest_kernel, accel, tmp_path_factory.mktemp(f"selftest-{accel}"))


@pytest.mark.parametrize("name", SELFTEST_NAMES)
def test_selftest(selftest_run, name):
    verdict, detail = selftest_run.verdict(name)
    assert verdict == "pass", f"{name} ({selftest_run.accel}): {detail}"


def test_the_guest_ran_exactly_these(selftest_run):
    names = [n for n, _, _ in selftest_run.lines]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"printed more than once: {duplicates}"
    assert set(names) == set(SELFTEST_NAMES), (
        f"not in the guest: {sorted(set(SELFTEST_NAMES) - set(names))}; "
        f"not in this list: {sorted(set(names) - set(SELFTEST_NAMES))}")
    passed = sum(1 for _, v, _ in selftest_run.lines if v == "pass")
    assert (selftest_run.passed, selftest_run.failed) == (passed, len(names) - passed)
