"""Every crash kind on real QEMU guests: the dump completes with every check passing, the crash
record says what the harness injected, and the crash-record check fails when the expectation
is wrong (vector, error code, fault address, the function rip must lie in, the nested NMI)."""
from __future__ import annotations

import dataclasses
import json

import pytest

from dumpbed.guests import profiles
from dumpbed.oracles import validate
from dumpbed.scenario import crash as crash_mod
from tests.integration.conftest import accel_params
from tests.support.reports import assert_complete

KINDS = ["nmi", "panic", "divide-error", "invalid-opcode", "general-protection", "page-fault",
         "double-fault", "hang", "nested"]


def crash_record(dump, run_dir, recipe) -> validate.Check:
    """The crash-record check alone, on the run's dump (read once) and its files as they are now."""
    registers = validate.load_registers(run_dir / "snapshot" / "registers.json")
    return validate.check_crash_record(dump, registers, recipe, run_dir)


def test_the_issue_lists_every_kind():
    """dumpbed's guest has the nine; the crash table holds Linux's sysrq-c too (guest profile
    linux-kdump: tests/integration/test_linux_kdump.py)."""
    assert list(profiles.DUMPBED.crashes) == KINDS
    assert list(crash_mod.CRASHES) == KINDS + ["sysrq-c"]


@pytest.mark.parametrize("accel", accel_params())
@pytest.mark.parametrize("kind", KINDS)
def test_crash_kind(dumpbed_run, accel, kind):
    result = dumpbed_run(crash=kind, memory="64M", accel=accel)
    assert_complete(result)
    assert result.exit_status == 67
    run_dir = result.run_dir  # its files are doctored below and the crash-record check asked again
    recipe = crash_mod.get(kind)
    dump = validate.validate_run(run_dir).dump
    header = dump.header
    assert (header.crash_reason, header.crash_vector, header.crash_error_code, header.crash_fault_addr) == (
        recipe.reason, recipe.vector, recipe.error_code, recipe.fault_addr)
    detail = result.check("crash-record")["detail"]
    if recipe.rip_in:
        assert f"in {recipe.rip_in}" in detail and "not placed" not in detail

    # The same dump against a wrong expectation: the crash-record check fails, naming the field.
    wrong = {"vector": recipe.vector ^ 1, "error_code": recipe.error_code ^ 0x10,
             "fault_addr": recipe.fault_addr ^ 0x1000}
    for field, value in wrong.items():
        check = crash_record(dump, run_dir, dataclasses.replace(recipe, **{field: value}))
        assert not check.ok and f"crash_{field}" in " ".join(check.problems), (field, check.problems)
    other = "panic" if kind != "panic" else "nmi"
    check = crash_record(dump, run_dir, other)
    assert not check.ok and "crash_vector" in " ".join(check.problems), check.problems

    if recipe.rip_in:  # rip must be in the function: move the function and it is not
        path = run_dir / crash_mod.SYMBOLS_FILE
        symbols = json.loads(path.read_text())
        symbols[recipe.rip_in]["address"] += 0x1000
        path.write_text(json.dumps(symbols))
        check = crash_record(dump, run_dir, recipe)
        assert not check.ok and f"is not in {recipe.rip_in}" in " ".join(check.problems), check.problems
    if recipe.same_registers is not None:  # the registers that must not move, moved
        regs_path = run_dir / "snapshot" / "registers.json"
        regs = json.loads(regs_path.read_text())
        regs["cr3"] ^= 0x1000
        regs_path.write_text(json.dumps(regs))
        check = crash_record(dump, run_dir, recipe)
        assert not check.ok and "register cr3" in " ".join(check.problems)
    if kind == "nested":  # no note from the guest: the second NMI was not seen
        console = run_dir / "console.log"
        console.write_bytes(console.read_bytes().replace(crash_mod.NESTED_NOTE.encode(), b"x"))
        check = crash_record(dump, run_dir, recipe)
        assert not check.ok and "second NMI was not seen" in " ".join(check.problems)
        (run_dir / crash_mod.NESTED_FILE).unlink()
        check = crash_record(dump, run_dir, recipe)
        assert not check.ok and "never injected" in " ".join(check.problems)
