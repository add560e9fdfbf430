"""The crash recipe table (harness/dumpbed/scenario/crash.py) and the crash-record check's use of it."""
from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path
from types import SimpleNamespace

import pytest
import synth

from dumpbed.errors import DumpbedError
from dumpbed.oracles import validate
from dumpbed.scenario import crash as crash_mod

# docs/dump-format.md: reason 1 NMI / 2 PANIC / 3 EXCEPTION; x86 vectors.
EXPECTED = {
    "nmi": (1, 2, 0, 0), "panic": (2, 0xFFFFFFFF, 0, 0), "divide-error": (3, 0, 0, 0),
    "invalid-opcode": (3, 6, 0, 0), "general-protection": (3, 13, 0x80, 0),
    "page-fault": (3, 14, 0x2, 0xDEAD0000BAD), "double-fault": (3, 8, 0, 0), "hang": (1, 2, 0, 0),
    "nested": (1, 2, 0, 0), "sysrq-c": (2, 0xFFFFFFFF, 0, 0),
}


def test_table_holds_every_kind_with_its_cause():
    got = {n: (c.reason, c.vector, c.error_code, c.fault_addr) for n, c in crash_mod.CRASHES.items()}
    assert got == EXPECTED


def test_guest_constants_agree_with_the_recipes():
    header = (Path(__file__).resolve().parents[2] / "guest" / "kern" / "crash.h").read_text()
    assert f"CRASH_TEST_PF_ADDR\t0x{crash_mod.PF_ADDR:016x}ull" in header
    assert f"CRASH_TEST_GP_SELECTOR\t0x{crash_mod.GP_SELECTOR:x}" in header


def test_console_kinds_prepare_and_press_enter_and_idle_kinds_do_not():
    for c in crash_mod.CRASHES.values():
        if c.name in ("nmi", "nested"):
            assert c.prepare is None and c.same_registers is None  # every register compared
        else:
            assert c.prepare is not None and c.inject is crash_mod._press_enter
            assert set(crash_mod.STABLE_REGISTERS) <= set(c.same_registers)
            assert "rip" not in c.same_registers and "rsp" not in c.same_registers
    # A page fault and a double fault set CR2 after the ground truth; the others leave it.
    for name in ("page-fault", "double-fault"):
        assert "cr2" not in crash_mod.get(name).same_registers
    assert "cr2" in crash_mod.get("divide-error").same_registers


def test_only_hang_needs_a_watchdog_and_more_time():
    for c in crash_mod.CRASHES.values():
        if c.name == "hang":
            assert "ib700" in c.qemu_args and "watchdog=inject-nmi" in c.qemu_args
            assert c.extra_seconds > crash_mod.HANG_SECONDS
        else:
            assert c.qemu_args == () and c.extra_seconds == 0
    assert [c.name for c in crash_mod.CRASHES.values() if c.during_dump] == ["nested"]


def test_unknown_crash_is_refused():
    with pytest.raises(DumpbedError, match="unknown crash 'smash'.*page-fault"):
        crash_mod.get("smash")


def _elf64(symbols: dict[str, tuple[int, int, int]]) -> bytes:
    """A minimal ELF64 with a symbol table: {name: (value, size, type)}."""
    strtab = b"\0"
    entries = [b"\0" * 24]
    for name, (value, size, typ) in symbols.items():
        entries.append(struct.pack("<IBBHQQ", len(strtab), typ, 0, 1, value, size))
        strtab += name.encode() + b"\0"
    entries.append(struct.pack("<IBBHQQ", len(strtab), 2, 0, 0, 0x1234, 4))  # undefined: left out
    strtab += b"undef\0"
    symtab = b"".join(entries)
    data_off = 64
    sym_off, str_off = data_off, data_off + len(symtab)
    sh_off = (str_off + len(strtab) + 7) & ~7
    sections = [
        struct.pack("<IIQQQQIIQQ", 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        struct.pack("<IIQQQQIIQQ", 0, 2, 0, 0, sym_off, len(symtab), 2, 0, 8, 24),
        struct.pack("<IIQQQQIIQQ", 0, 3, 0, 0, str_off, len(strtab), 0, 0, 1, 0),
    ]
    ident = b"\x7fELF" + bytes([2, 1, 1]) + b"\0" * 9
    header = ident + struct.pack("<HHIQQQIHHHHHH", 2, 62, 1, 0, 0, sh_off, 0, 64, 0, 0, 64, 3, 2)
    body = header + symtab + strtab
    return body + b"\0" * (sh_off - len(body)) + b"".join(sections)


def test_elf_symbols(tmp_path):
    path = tmp_path / "k.elf64"
    path.write_bytes(_elf64({"panic": (0x108370, 0x4E, 0x12), "boot_stack_guard": (0x12E000, 0, 0x10)}))
    assert crash_mod.elf_symbols(path) == {"panic": (0x108370, 0x4E), "boot_stack_guard": (0x12E000, 0)}
    path.write_bytes(b"\x7fELF\x01\x01" + b"\0" * 60)
    with pytest.raises(DumpbedError, match="not a little-endian ELF64"):
        crash_mod.elf_symbols(path)


def test_save_symbols_keeps_what_the_recipe_needs(tmp_path):
    symbols = tmp_path / "k.elf64"
    symbols.write_bytes(_elf64({
        "crash_test_stack_overflow": (0x108330, 5, 0x12), "boot_stack_guard": (0x12E000, 0, 0x10),
        "boot_stack_bottom": (0x12F000, 0, 0x10), "unrelated": (0x100000, 1, 0x12)}))
    crash_mod.save_symbols(crash_mod.get("double-fault"), symbols, tmp_path)
    assert crash_mod.load_symbols(tmp_path) == {"crash_test_stack_overflow": (0x108330, 5),
                                               "boot_stack_guard": (0x12E000, 0),
                                               "boot_stack_bottom": (0x12F000, 0)}
    with pytest.raises(DumpbedError, match="no symbol crash_test_page_fault"):
        crash_mod.save_symbols(crash_mod.get("page-fault"), symbols, tmp_path)
    with pytest.raises(DumpbedError, match="crash page-fault needs the kernel's symbols"):
        crash_mod.save_symbols(crash_mod.get("page-fault"), None, tmp_path)


# --- the check on synthetic dumps (tests/support/synth.py writes page-fault-like exceptions) -----

def _symbols(run_dir, **entries):
    (run_dir / crash_mod.SYMBOLS_FILE).write_text(json.dumps(
        {n: {"address": a, "size": s} for n, (a, s) in entries.items()}))


def _check(run_dir, recipe):
    dump = validate.validate_run(run_dir).dump
    regs = validate.load_registers(run_dir / "snapshot" / "registers.json")
    return validate.check_crash_record(dump, regs, recipe, run_dir)


def test_exception_fields_and_rip_are_judged(make_run):
    run = make_run(crash="page-fault")
    h = validate.validate_run(run.dir).dump.header
    rip = h.register_dict()["rip"]
    recipe = dataclasses.replace(crash_mod.get("page-fault"), error_code=h.crash_error_code,
                                 fault_addr=h.crash_fault_addr)
    _symbols(run.dir, crash_test_page_fault=(rip - 4, 16))
    check = _check(run.dir, recipe)
    assert check.ok, check.detail
    assert f"rip 0x{rip:x} in crash_test_page_fault" in check.detail
    assert "12 registers equal the snapshot" in check.detail

    _symbols(run.dir, crash_test_page_fault=(rip + 1, 16))
    check = _check(run.dir, recipe)
    assert not check.ok and check.problems == [
        f"rip 0x{rip:x} is not in crash_test_page_fault [0x{rip + 1:x}, 0x{rip + 17:x})"]

    # As a panic's return address, rip may be the function's end but not its start.
    ret = dataclasses.replace(recipe, rip_in="crash_test_page_fault", rip_is_return=True)
    _symbols(run.dir, crash_test_page_fault=(rip - 16, 16))
    assert _check(run.dir, ret).ok
    _symbols(run.dir, crash_test_page_fault=(rip, 16))
    assert not _check(run.dir, ret).ok

    check = _check(run.dir, dataclasses.replace(recipe, error_code=h.crash_error_code + 1))
    assert check.problems == [f"crash_error_code 0x{h.crash_error_code:x}, the 'page-fault' crash means "
                              f"0x{h.crash_error_code + 1:x}"]
    check = _check(run.dir, "page-fault")  # the synthetic fault address (0xdead000) is not the guest's
    assert [p.split()[0] for p in check.problems] == ["crash_fault_addr"]


def test_stable_registers_only_for_console_crashes(make_run):
    run = make_run(crash="page-fault")
    h = validate.validate_run(run.dir).dump.header
    recipe = dataclasses.replace(crash_mod.get("page-fault"), error_code=h.crash_error_code,
                                 fault_addr=h.crash_fault_addr, rip_in=None)
    path = run.dir / "snapshot" / "registers.json"
    regs = json.loads(path.read_text())
    regs["rip"] ^= 0x40  # moved on after the ground truth: not compared
    regs["rax"] ^= 1
    path.write_text(json.dumps(regs))
    assert _check(run.dir, recipe).ok
    regs["efer"] ^= 1  # must not move
    path.write_text(json.dumps(regs))
    assert [p.split(":")[0] for p in _check(run.dir, recipe).problems] == ["register efer"]
    # The NMI recipe compares every register.
    nmi = dataclasses.replace(recipe, same_registers=None)
    assert {p.split(":")[0] for p in _check(run.dir, nmi).problems} == {
        "register rip", "register rax", "register efer"}


def _header(**regs):
    r = {"rip": 0x108330, "rsp": 0x12F000, "cr2": 0x12EFF8, **regs}
    return SimpleNamespace(crash_reason=3, crash_vector=8, crash_error_code=0, crash_fault_addr=0,
                           reason_name="EXCEPTION", register_dict=lambda: r)


def test_double_fault_rip_cr2_and_rsp(tmp_path):
    recipe = crash_mod.get("double-fault")
    _symbols(tmp_path, crash_test_stack_overflow=(0x108330, 5), boot_stack_guard=(0x12E000, 0),
             boot_stack_bottom=(0x12F000, 0))
    assert validate._cause_problems(_header(), recipe, tmp_path) == []
    assert validate._cause_problems(_header(cr2=0x12F000), recipe, tmp_path) == [
        "cr2 0x12f000 is not in [boot_stack_guard, boot_stack_bottom) = [0x12e000, 0x12f000)"]
    assert validate._cause_problems(_header(rsp=0x12EFF8), recipe, tmp_path) == [
        "rsp 0x12eff8, the 'double-fault' crash means boot_stack_bottom 0x12f000"]
    assert validate._cause_problems(_header(rip=0x108335), recipe, tmp_path) == [
        "rip 0x108335 is not in crash_test_stack_overflow [0x108330, 0x108335)"]
    # Without saved symbols nothing is placed, the cause fields still are.
    (tmp_path / crash_mod.SYMBOLS_FILE).unlink()
    assert validate._cause_problems(_header(rip=0, cr2=0, rsp=0), recipe, tmp_path) == []
    wrong = SimpleNamespace(**{**vars(_header()), "crash_vector": 14})
    assert validate._cause_problems(wrong, recipe, tmp_path) == ["crash_vector 0xe, the 'double-fault' crash means 0x8"]


def test_nested_needs_the_injection_and_the_guests_note(make_run):
    run = make_run(crash="nmi")
    recipe = crash_mod.get("nested")
    check = _check(run.dir, recipe)
    assert not check.ok and "never injected" in check.problems[0]
    (run.dir / crash_mod.NESTED_FILE).write_text("{}")
    (run.dir / "console.log").write_bytes(b"*** CRASH: NMI\n")
    assert "not seen" in _check(run.dir, recipe).problems[0]
    (run.dir / "console.log").write_bytes(crash_mod.NESTED_NOTE.encode() + b"\n*** CRASH: NMI\n")
    assert not _check(run.dir, recipe).ok  # a note before the crash does not count
    (run.dir / "console.log").write_bytes(b"*** CRASH: NMI\n\n*** " + crash_mod.NESTED_NOTE.encode() + b" (1)\n")
    assert _check(run.dir, recipe).ok


def test_no_note_is_owed_for_a_second_nmi_sent_to_a_stopped_vm(make_run):
    """A live fault that stopped the VM on a write before the second NMI went in, and QEMU never
    resumed (QMP's STOP and RESUME events against nested.json's time): the guest never ran after
    it. A pause that ended (the RFLAGS sampler's under TCG), or a stop after the NMI, excuses
    nothing."""
    run = make_run(crash="nmi")
    recipe = crash_mod.get("nested")
    (run.dir / "console.log").write_bytes(b"*** CRASH: NMI\n")
    (run.dir / crash_mod.NESTED_FILE).write_text(json.dumps({"second_nmi_injected": 100.5}))

    def events(*timed: tuple[str, float]) -> None:
        (run.dir / "qmp.jsonl").write_text("".join(json.dumps(
            {"t": t, "dir": "in", "msg": {"event": e, "timestamp": {"seconds": int(t),
                                                                   "microseconds": round(t % 1 * 1e6)}}}) + "\n"
            for e, t in timed))

    events(("STOP", 99.0), ("RESUME", 99.5), ("STOP", 100.7))  # stopped after it
    assert "not seen" in _check(run.dir, recipe).problems[0]
    events(("STOP", 100.25), ("RESUME", 100.3))  # a pause that ended before it
    assert "not seen" in _check(run.dir, recipe).problems[0]
    events(("STOP", 100.25), ("RESUME", 100.6))  # a pause it went into, that ended
    assert "not seen" in _check(run.dir, recipe).problems[0]
    events(("STOP", 99.0), ("RESUME", 99.5), ("STOP", 100.25))  # stopped for good before it
    assert _check(run.dir, recipe).ok
    (run.dir / "qmp.jsonl").unlink()
    assert "not seen" in _check(run.dir, recipe).problems[0]
