"""harness/dumpbed/oracles/components.py: protocol, the component part of completeness, sample-data.

The dumps here are stand-ins with the reader's v2 field names, made by a tiny simulation of the
facility (`facility()`): a correct dump for any set of samples and level, optionally restarted
on a secondary after the primary failed `cut` collection calls into generation 1. Each test
breaks one thing and expects the check to name it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field, fields

import pytest

from dumpbed.errors import DumpbedError
from dumpbed.oracles import samples
from dumpbed.oracles.components import (
    check_protocol,
    check_sample_data,
    component_problems,
    expectation_from_scenario,
)
from dumpbed.oracles.samples import Expectation, Flag, Op, Outcome, Status

PAGE = 4096
PART = 1 << 20  # partition offset in the image
BODY = 0x40000  # body offset in the partition
BUILTIN_BYTES = {"crash-record": 1024, "kernel": 8192, "ram": 65536}
RTF_VADDR = 0x7F000


@dataclass
class FComp:
    index: int
    name: str
    kind: int
    status: int
    reason: int = 0
    first_area: int = 0
    area_count: int = 0
    flags: int = 0
    level: int = 0
    table_generation: int = 0
    estimate_bytes: int = 0
    dumped_bytes: int = 0
    failure_rv: int = 0
    staging_bytes: int = 0
    failure_vaddr: int = 0
    failure_handle: int = 0
    global_buffer_bytes: int = 0


@dataclass
class FArea:
    index: int
    name: str
    phys_addr: int
    length: int
    disk_offset: int
    component: int
    flags: int = 0


@dataclass
class FCall:
    index: int
    component: int
    op: int
    generation: int
    outcome: int
    entries: int = 0
    level: int = 0
    value: int = 0


@dataclass
class FViolation:
    index: int
    address: int
    rip: int
    error_code: int
    component: int
    op: int
    generation: int


@dataclass
class FHeader:
    generation: int = 1
    status: int = 2  # COMPLETE
    level: int = 3
    estimate_bytes: int = 0
    device_role: int = 1
    restart_error: int = 0
    restart_offset: int = 0


@dataclass
class FDump:
    header: FHeader | None
    components: list = field(default_factory=list)
    areas: list = field(default_factory=list)
    calls: list = field(default_factory=list)
    violations: list = field(default_factory=list)
    directory_ok: bool = True
    partition_offset: int = PART
    unwritten: set = field(default_factory=set)

    def read_area(self, image, area, pos, n):  # an uncompressed dump's (dumpfmt.Dump.read_area)
        return image.read(self.partition_offset + area.disk_offset + pos, min(n, area.length - pos))

    def area_written(self, area) -> bool:
        return area.index not in self.unwritten

    # test helpers
    def comp(self, name: str) -> FComp:
        return next(c for c in self.components if c.name == name)

    def area(self, name: str) -> FArea:
        return next(a for a in self.areas if a.name == name)

    def calls_of(self, name: str, op=None, generation=None) -> list[FCall]:
        i = self.comp(name).index
        return [c for c in self.calls if c.component == i and (op is None or c.op == op)
                and (generation is None or c.generation == generation)]

    def renumber(self) -> None:
        for k, c in enumerate(self.calls):
            c.index = k


class FImage:
    def __init__(self, size: int):
        self.data = bytearray(size)

    def read(self, offset: int, length: int) -> bytes:
        if offset < 0 or length <= 0:
            return b""
        return bytes(self.data[offset:offset + length])


def _collection(model):
    if model.sample:
        return list(model.collection)
    return [samples.Call(Op.START, Outcome.TABLE, 1)]


def _model_areas(model):
    if model.sample:
        return [(a.name, a.length, a.staged) for a in model.areas]
    return [(model.name, BUILTIN_BYTES[model.name], False)]


def facility(names=samples.SAMPLE_NAMES, level=3, cut=None):
    """A correct dump of these samples at this level; with `cut`, the primary failed after
    `cut` collection calls of generation 1 and the dump restarted on the secondary."""
    expect = Expectation.of(names, level, "virtio-blk" if cut is not None else None, cut is not None)
    generation = 1 if cut is None else 2
    dump = FDump(FHeader(generation=generation, level=level, device_role=generation,
                         restart_error=5 if cut is not None else 0))
    models = expect.components
    for i, m in enumerate(models):
        estimate = m.estimate if m.sample else BUILTIN_BYTES[m.name]
        dump.components.append(FComp(
            i, m.name, m.kind, m.status, m.reason, flags=int(m.flags), level=m.level or 0,
            estimate_bytes=estimate, staging_bytes=m.staging_bytes or 0,
            global_buffer_bytes=m.global_buffer_bytes or 0, failure_rv=m.failure_rv,
            failure_handle=m.failure_handle, failure_vaddr=RTF_VADDR if m.failure_rv else 0))

    def call(i, c, gen, value=0):
        m = models[i]
        ras = bool(m.flags & Flag.RAS)
        lvl = level if (c.op == Op.ESTIMATE or ras) else 0
        if c.outcome == Outcome.NEGATIVE:
            value = m.negative_value
        dump.calls.append(FCall(len(dump.calls), i, c.op, gen, c.outcome, c.entries, lvl, value))
        if c.outcome == Outcome.FAULT:
            dump.violations.append(FViolation(len(dump.violations), 0x200000, 0x101234, 2, i, c.op, gen))

    for i, m in enumerate(models):
        if m.called:
            call(i, samples.Call(Op.ESTIMATE, Outcome.VALUE), 1, value=dump.components[i].estimate_bytes)
    budget = cut if cut is not None else 10 ** 9
    started1 = set()
    for i, m in enumerate(models):
        for c in _collection(m) if m.called else []:
            if budget == 0:
                break
            call(i, c, 1)
            budget -= 1
            started1.add(i)
    for i, m in enumerate(models):
        comp = dump.components[i]
        if not m.called:
            continue
        if generation == 2 and (m.flags & Flag.CALL_ON_RESTART or i not in started1):
            for c in _collection(m):
                call(i, c, 2)
            comp.table_generation = 2
        else:
            comp.table_generation = 1
    for i, m in enumerate(models):
        gives = m.gives_data if m.sample else True
        if m.called and gives:
            call(i, samples.Call(Op.DONE, Outcome.ACK), generation)
    _lay_out_areas(dump, models, generation)
    dump.header.estimate_bytes = sum(c.estimate_bytes for c in dump.components)
    return dump, expect


def _lay_out_areas(dump, models, generation):
    pos = BODY
    image = FImage(PART + BODY + (4 << 20))
    for i, m in enumerate(models):
        comp = dump.components[i]
        comp.first_area = len(dump.areas)
        for k, (name, length, staged) in enumerate(_model_areas(m)):
            data = samples.pattern(m.name, k, length) if m.sample else bytes([i + 1]) * length
            flags = 3 if staged else (1 if m.name == "crash-record" else 0)
            dump.areas.append(FArea(len(dump.areas), name, 0x100000 + pos, length, pos, i, flags))
            image.data[PART + pos:PART + pos + length] = data
            pos += -(-length // PAGE) * PAGE
        comp.area_count = len(dump.areas) - comp.first_area
        comp.dumped_bytes = sum(a.length for a in dump.areas[comp.first_area:])
        if generation == 2 and comp.area_count and comp.table_generation == 1:
            comp.flags |= Flag.TABLE_REUSED
    dump.image = image


def problems_of(check):
    return "\n".join(check.problems) if check.problems else check.detail


def assert_fails(check, *fragments):
    assert not check.ok, "the check passed on a broken dump"
    text = problems_of(check)
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in:\n{text}"
    assert all("\n" not in p for p in check.problems)


# --------------------------------------------------------------------------------------------
# The scenario
# --------------------------------------------------------------------------------------------


def test_expectation_none_without_components():
    assert expectation_from_scenario({"dump_id": "00" * 16, "level": 3}) is None


def test_expectation_from_scenario():
    e = expectation_from_scenario({"components": ["ras-off", "smp-classic"], "level": 7, "secondary": "lsi",
                                   "restart_expected": True})
    assert e.samples == ("smp-classic", "ras-off") and e.level == 7 and e.restart_expected
    assert [c.name for c in e.components] == ["crash-record", "kernel", "ram", "smp-classic", "ras-off"]
    assert expectation_from_scenario({"components": []}).level == 3
    # a --components spec instead of the resolved list (tests/support/synth.py writes one)
    assert expectation_from_scenario({"components": "default"}).samples == samples.SAMPLE_NAMES[:-1]
    assert expectation_from_scenario({"components": ""}).samples == ()


def test_staged_area_may_or_may_not_carry_volatile():
    dump, expect = facility(["smp-global"])
    dump.area("glb.0").flags = 2  # STAGED alone: "it is VOLATILE too" read as implied
    assert component_problems(dump, expect) == []


def test_disabled_component_level_is_0():
    dump, expect = facility(["ras-off"])
    dump.comp("ras-off").level = 3
    assert "ras-off: level 3, expected 0" in joined(component_problems(dump, expect))


@pytest.mark.parametrize("scenario", [
    {"components": "smp-bogus"}, {"components": 7}, {"components": ["smp-bogus"]},
    {"components": ["ras-off", "ras-off"]},
    {"components": [], "level": 10}, {"components": [], "level": "3"}, {"components": [], "level": True},
    {"components": [], "restart_expected": True}, {"components": [], "secondary": 3},
    {"components": [], "restart_expected": "yes", "secondary": "lsi"},
])
def test_expectation_refuses_bad_scenarios_in_one_line(scenario):
    with pytest.raises(DumpbedError) as e:
        expectation_from_scenario(scenario)
    assert "\n" not in str(e.value)


# --------------------------------------------------------------------------------------------
# The stand-in facility is right: every check passes on it
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("level", [0, 3, 9])
def test_all_checks_pass_on_a_correct_dump(level):
    dump, expect = facility(level=level)
    assert check_protocol(dump, expect).ok, problems_of(check_protocol(dump, expect))
    assert component_problems(dump, expect) == []
    data = check_sample_data(dump, dump.image, expect)
    assert data.ok, data.detail
    assert "of 11 sample components" in data.detail


@pytest.mark.parametrize("cut", [0, 1, 3, 8, 12, 30, 40, 1000])
def test_all_checks_pass_on_a_restarted_dump(cut):
    dump, expect = facility(cut=cut)
    assert check_protocol(dump, expect).ok, problems_of(check_protocol(dump, expect))
    assert component_problems(dump, expect) == []
    assert check_sample_data(dump, dump.image, expect).ok


def test_protocol_without_an_expectation_applies_the_generic_rules():
    dump, _ = facility()
    assert check_protocol(dump, None).ok
    dump.calls.remove(dump.calls_of("smp-classic", Op.DONE)[0])
    assert_fails(check_protocol(dump, None), "smp-classic: no DONE call")


# --------------------------------------------------------------------------------------------
# protocol: broken dumps
# --------------------------------------------------------------------------------------------


def test_protocol_missing_done():
    dump, expect = facility()
    dump.calls.remove(dump.calls_of("smp-classic", Op.DONE)[0])
    assert_fails(check_protocol(dump, expect), "smp-classic: no DONE call", "calls end after 2")


def test_protocol_done_after_negative():
    dump, expect = facility()
    neg = dump.comp("ras-negative").index
    dump.calls.append(FCall(0, neg, Op.DONE, 1, Outcome.ACK, 0, 3, 0))
    assert_fails(check_protocol(dump, expect), "ras-negative: DONE/ACK (call record", "returned a negative value")


def test_protocol_negative_estimate_does_not_cancel_done():
    dump, expect = facility(["ras-levels"])
    est = dump.calls_of("ras-levels", Op.ESTIMATE)[0]
    est.outcome, est.value = Outcome.NEGATIVE, -1
    dump.comp("ras-levels").estimate_bytes = dump.comp("ras-levels").dumped_bytes
    assert check_protocol(dump, None).ok, problems_of(check_protocol(dump, None))
    assert_fails(check_protocol(dump, expect), "ras-levels: call 0 is ESTIMATE/NEGATIVE")


def test_protocol_done_for_ended_early():
    dump, expect = facility()
    dump.calls.append(FCall(0, dump.comp("ras-early").index, Op.DONE, 1, Outcome.ACK, 0, 3, 0))
    assert_fails(check_protocol(dump, expect), "ras-early: DONE/ACK")


def test_protocol_done_twice_and_not_last():
    dump, expect = facility()
    done = dump.calls_of("smp-global", Op.DONE)[0]
    dump.calls.append(FCall(0, done.component, Op.DONE, 1, Outcome.ACK))
    assert_fails(check_protocol(dump, expect), "smp-global: 2 DONE calls")
    dump, expect = facility()
    dump.calls.append(FCall(0, dump.comp("ram").index, Op.AGAIN, 1, Outcome.NONE))
    assert_fails(check_protocol(dump, expect), "after the DONE calls began", "ram: AGAIN/NONE")


def test_protocol_extra_start_in_generation_2_without_call_on_restart():
    dump, expect = facility(cut=1000)
    cls = dump.comp("smp-classic").index
    first_done = next(k for k, c in enumerate(dump.calls) if c.op == Op.DONE)
    dump.calls.insert(first_done, FCall(0, cls, Op.START, 2, Outcome.TABLE, 3))
    assert_fails(check_protocol(dump, expect), "smp-classic: called again (START) in generation 2 without "
                                               "CALL_ON_RESTART")


def test_protocol_call_on_restart_component_not_called_again():
    dump, expect = facility(cut=1000)
    for c in dump.calls_of("smp-unlimited", generation=2):
        if c.op != Op.DONE:
            dump.calls.remove(c)
    assert_fails(check_protocol(dump, expect), "smp-unlimited: not called in generation 2, though it has "
                                               "CALL_ON_RESTART")


def test_protocol_component_not_reached_must_be_called_in_generation_2():
    dump, expect = facility(cut=0)
    for c in dump.calls_of("smp-classic", Op.START, generation=2):
        dump.calls.remove(c)
    assert_fails(check_protocol(dump, expect), "generation 1 never reached it")


def test_protocol_table_reused_missing_or_wrong():
    dump, expect = facility(cut=1000)
    dump.comp("smp-classic").flags &= ~Flag.TABLE_REUSED
    assert_fails(check_protocol(dump, expect), "smp-classic: its areas come from generation 1's table, but "
                                               "TABLE_REUSED is not set")
    dump, expect = facility(cut=1000)
    dump.comp("smp-global").flags |= Flag.TABLE_REUSED
    assert_fails(check_protocol(dump, expect), "smp-global: TABLE_REUSED, but it was called again")
    dump, expect = facility()
    dump.comp("smp-classic").flags |= Flag.TABLE_REUSED
    assert_fails(check_protocol(dump, expect), "TABLE_REUSED in a generation-1 dump")


def test_protocol_table_generation():
    dump, expect = facility(cut=1000)
    dump.comp("smp-unlimited").table_generation = 1
    assert_fails(check_protocol(dump, expect), "smp-unlimited: table_generation 1, but its areas come from "
                                               "generation 2's calls")


def test_protocol_disabled_component_called():
    dump, expect = facility()
    dump.calls.insert(0, FCall(0, dump.comp("ras-off").index, Op.ESTIMATE, 1, Outcome.VALUE, 0, 3, 0))
    assert_fails(check_protocol(dump, expect), "ras-off: DISABLED but called 1 times")


def test_protocol_again_after_none():
    dump, expect = facility()
    unl = dump.calls_of("smp-unlimited")
    at = dump.calls.index(unl[-1])  # before its DONE
    dump.calls.insert(at, FCall(0, unl[0].component, Op.AGAIN, 1, Outcome.NONE))
    assert_fails(check_protocol(dump, expect), "smp-unlimited: AGAIN/NONE", "after AGAIN/NONE, which ended its data")


def test_protocol_again_for_a_classic_table():
    dump, expect = facility()
    start = dump.calls_of("smp-classic", Op.START)[0]
    dump.calls.insert(dump.calls.index(start) + 1, FCall(0, start.component, Op.AGAIN, 1, Outcome.NONE))
    assert_fails(check_protocol(dump, expect), "never returned an unlimited table")


def test_protocol_unlimited_tables_never_ended():
    dump, expect = facility()
    dump.calls.remove(dump.calls_of("smp-unlimited", Op.AGAIN)[-1])
    assert_fails(check_protocol(dump, expect), "smp-unlimited: its unlimited tables never ended")


def test_protocol_estimate_rules():
    dump, expect = facility()
    est = dump.calls_of("smp-classic", Op.ESTIMATE)[0]
    dump.calls.remove(est)
    dump.calls.insert(dump.calls.index(dump.calls_of("smp-classic", Op.START)[0]) + 1, est)
    assert_fails(check_protocol(dump, expect), "smp-classic: ESTIMATE (call record")
    dump, expect = facility()
    dump.calls.remove(dump.calls_of("ras-levels", Op.ESTIMATE)[0])
    assert_fails(check_protocol(dump, expect), "ras-levels: 0 ESTIMATE calls")
    dump, expect = facility(cut=1000)
    dump.calls_of("kernel", Op.ESTIMATE)[0].generation = 2
    assert_fails(check_protocol(dump, expect), "kernel: ESTIMATE in generation 2")


def test_protocol_estimate_value_against_entry_and_model():
    dump, expect = facility()
    dump.calls_of("ras-shared", Op.ESTIMATE)[0].value = 1000
    assert_fails(check_protocol(dump, expect), "ras-shared: estimate_bytes 32768, its ESTIMATE call answered 1000",
                 "the model's estimate at level 3 is 32768")


def test_protocol_generation_2_record_in_a_generation_1_dump():
    dump, expect = facility()
    dump.calls_of("smp-classic", Op.START)[0].generation = 2
    assert_fails(check_protocol(dump, expect), "generation 2 in a dump of generation 1")


def test_protocol_generation_goes_back():
    dump, expect = facility(cut=5)
    dump.calls.append(FCall(0, 0, Op.ESTIMATE, 1, Outcome.VALUE, 0, 3, 1024))
    assert_fails(check_protocol(dump, expect), "generation 1 after generation 2")


def test_protocol_registration_order():
    dump, expect = facility(["smp-classic", "ras-levels"])
    cls = [c for c in dump.calls if c.op == Op.START and dump.components[c.component].name == "smp-classic"][0]
    dump.calls.remove(cls)
    last_start = max(k for k, c in enumerate(dump.calls) if c.op == Op.START)
    dump.calls.insert(last_start + 1, cls)
    assert_fails(check_protocol(dump, expect), "smp-classic called after ras-levels in generation 1")


def test_protocol_model_sequence_mismatch():
    dump, expect = facility()
    dump.calls_of("smp-unlimited", Op.AGAIN)[2].entries = 15
    assert_fails(check_protocol(dump, expect), "smp-unlimited: call 4 is AGAIN/TABLE/15, the model expects "
                                               "AGAIN/TABLE/16")


def test_protocol_model_negative_value():
    dump, expect = facility()
    dump.calls_of("ras-early", Op.AGAIN)[-1].value = -1
    assert_fails(check_protocol(dump, expect), "ras-early: AGAIN/NEGATIVE", "returned -1, the model returns -2")


def test_protocol_ras_call_level():
    dump, expect = facility()
    dump.calls_of("ras-private", Op.START)[0].level = 0
    assert_fails(check_protocol(dump, expect), "ras-private: START/TABLE/1", "level 0, for a RAS component at level 3")
    dump, expect = facility()
    dump.calls_of("smp-classic", Op.START)[0].level = 3
    assert_fails(check_protocol(dump, expect), "for a dmp_ctl routine (level 0)")


def test_protocol_violation_without_fault_call():
    dump, expect = facility()
    dump.violations[0].op = Op.AGAIN
    assert_fails(check_protocol(dump, expect), "violation record 0 (address 0x200000): no FAULT call of "
                                               "smp-pinviolator with op AGAIN")


def test_protocol_fault_without_violation_record():
    dump, expect = facility()
    dump.violations.clear()
    assert_fails(check_protocol(dump, expect), "has no violation record", "0 violation records, the model expects 1")


def test_protocol_violation_naming_no_component():
    dump, expect = facility()
    dump.violations.append(FViolation(1, 0x300000, 0x101000, 2, 0xFFFFFFFF, 0, 1))
    assert check_protocol(dump, expect).ok
    dump.violations[-1].op = Op.START
    assert_fails(check_protocol(dump, expect), "names no component but op 1")
    dump.violations[-1].component = 99
    assert_fails(check_protocol(dump, expect), "component 99 out of range")


def test_protocol_pin_violation_flag():
    dump, expect = facility()
    dump.comp("smp-pinviolator").flags &= ~Flag.PIN_VIOLATION
    assert_fails(check_protocol(dump, expect), "smp-pinviolator: a call faulted (FAULT) but PIN_VIOLATION is not set")
    dump, expect = facility()
    dump.comp("kernel").flags |= Flag.PIN_VIOLATION
    assert_fails(check_protocol(dump, expect), "kernel: PIN_VIOLATION set but none of its calls faulted")


@pytest.mark.parametrize("change,fragment", [
    (dict(component=40), "component 40 out of range"),
    (dict(op=9), "unknown op 9"),
    (dict(outcome=0), "unknown outcome 0"),
    (dict(generation=0), "generation 0 in a dump of generation 1"),
    (dict(outcome=Outcome.VALUE), "op START cannot have outcome VALUE"),
    (dict(outcome=Outcome.NONE), "START/NONE with 3 entries"),
    (dict(value=7), "START/TABLE with value 7"),
])
def test_protocol_bad_call_record_fields(change, fragment):
    dump, expect = facility()
    rec = dump.calls_of("smp-classic", Op.START)[0]
    for k, v in change.items():
        setattr(rec, k, v)
    assert_fails(check_protocol(dump, expect), fragment)


def test_protocol_negative_with_positive_value():
    dump, expect = facility()
    dump.calls_of("ras-negative", Op.START)[0].value = 1
    assert_fails(check_protocol(dump, expect), "START/NEGATIVE with value 1, not negative")


def test_protocol_restart_expectations():
    dump, _ = facility()
    restarted = Expectation.of(samples.SAMPLE_NAMES, 3, "lsi", True)
    assert_fails(check_protocol(dump, restarted), "expects a restart on the secondary, but the dump completed in "
                                                 "generation 1")
    dump, _ = facility(cut=4)
    plain = Expectation.of(samples.SAMPLE_NAMES, 3)
    assert_fails(check_protocol(dump, plain), "the dump is generation 2 (restarted on the secondary), but the "
                                             "scenario expects no restart")


def test_protocol_generation_1_prefix_must_follow_the_model():
    dump, expect = facility(cut=1000)
    dump.calls_of("ras-levels", Op.START, generation=1)[0].entries = 2
    assert_fails(check_protocol(dump, expect), "ras-levels: generation 1 call 1 is START/TABLE/2")


def test_protocol_partial_dump_needs_no_done():
    dump, expect = facility()
    dump.header.status = 3  # FAILED
    dump.calls = [c for c in dump.calls if c.op != Op.DONE]
    assert check_protocol(dump, expect).ok
    dump.calls.remove(dump.calls_of("ras-early", Op.AGAIN)[0])  # a hole, not a prefix
    assert_fails(check_protocol(dump, expect), "ras-early: call 2 is AGAIN/NEGATIVE")


def test_protocol_untrusted_dumps():
    dump, expect = facility()
    dump.header = None
    assert_fails(check_protocol(dump, expect), "no valid header")
    dump, expect = facility()
    dump.directory_ok = False
    assert_fails(check_protocol(dump, expect), "the directory is invalid")


# --------------------------------------------------------------------------------------------
# completeness: broken component entries
# --------------------------------------------------------------------------------------------


def joined(problems):
    assert problems, "no problem found in a broken dump"
    assert all("\n" not in p for p in problems)
    return "\n".join(problems)


def test_completeness_no_expectation():
    dump, _ = facility()
    dump.components.clear()
    assert component_problems(dump, None) == []


def test_completeness_missing_component():
    dump, expect = facility()
    dump.components.remove(dump.comp("ras-early"))
    assert "component ras-early missing from the directory" in joined(component_problems(dump, expect))


def test_completeness_missing_builtin():
    dump, expect = facility(["smp-classic"])
    dump.components.remove(dump.comp("kernel"))
    assert "component kernel missing" in joined(component_problems(dump, expect))


def test_completeness_duplicate_and_unexpected():
    dump, expect = facility(["smp-classic"])
    dump.components.append(FComp(len(dump.components), "smp-classic", 4, Status.DUMPED))
    dump.components.append(FComp(len(dump.components), "smp-pinviolator", 4, Status.DISABLED))
    text = joined(component_problems(dump, expect))
    assert "component smp-classic listed 2 times" in text
    assert "unexpected component 'smp-pinviolator'" in text


def test_completeness_order():
    dump, expect = facility(["smp-classic", "ras-off"])
    dump.components[3], dump.components[4] = dump.components[4], dump.components[3]
    assert "not in registration order: crash-record, kernel, ram, ras-off, smp-classic" in \
        joined(component_problems(dump, expect))


def test_completeness_wrong_status_and_reason():
    dump, expect = facility()
    dump.comp("smp-classic").status = Status.FAILED
    dump.comp("ras-negative").reason = 0
    text = joined(component_problems(dump, expect))
    assert "smp-classic: status FAILED reason 0, expected DUMPED reason 0" in text
    assert "ras-negative: status EXCLUDED reason 0, expected EXCLUDED reason ENODATA" in text


def test_completeness_builtin_status_and_kind():
    dump, expect = facility([])
    dump.comp("ram").status = Status.PENDING
    dump.comp("kernel").kind = 4
    text = joined(component_problems(dump, expect))
    assert "ram: status PENDING" in text and "kernel: kind OTHER, expected KERNEL" in text


def test_completeness_estimate_below_dumped():
    dump, expect = facility([])
    dump.comp("ram").estimate_bytes = 100
    dump.header.estimate_bytes = sum(c.estimate_bytes for c in dump.components)
    assert "ram: estimate_bytes 100 below dumped_bytes 65536" in joined(component_problems(dump, expect))


def test_completeness_sample_estimate_and_dumped_against_model():
    dump, expect = facility()
    dump.comp("ras-early").estimate_bytes = 32768
    dump.header.estimate_bytes = sum(c.estimate_bytes for c in dump.components)
    assert "ras-early: estimate_bytes 32768, the model says 49152" in joined(component_problems(dump, expect))


def test_completeness_header_estimate_sum():
    dump, expect = facility()
    dump.header.estimate_bytes += 1
    assert "the components' estimates sum to" in joined(component_problems(dump, expect))


def test_completeness_header_level():
    dump, expect = facility(level=3)
    assert component_problems(dump, Expectation.of(samples.SAMPLE_NAMES[:1], 3)) != []  # samples differ
    text = joined(component_problems(dump, Expectation.of(samples.SAMPLE_NAMES, 5)))
    assert "header level 3, the scenario's level is 5" in text
    assert "ras-levels: level 3, expected 5" in text


@pytest.mark.parametrize("field_name,value,fragment", [
    ("failure_handle", 0xD0B5EDF00E, "smp-rtnfail: failure_handle 0xd0b5edf00e, the model reports 0xd0b5edf00d"),
    ("failure_rv", 0, "smp-rtnfail: failure_rv 0, the model reports -5"),
    ("failure_vaddr", 0, "smp-rtnfail: failure_vaddr 0"),
    ("status", Status.DUMPED, "smp-rtnfail: status DUMPED reason EIO, expected FAILED reason EIO"),
    ("flags", 0, "smp-rtnfail: flags lack RTNFAILURE"),
])
def test_completeness_rtnfailure(field_name, value, fragment):
    dump, expect = facility()
    setattr(dump.comp("smp-rtnfail"), field_name, value)
    assert fragment in joined(component_problems(dump, expect))


def test_completeness_rtnfailure_rv_read_unsigned_is_signed():
    dump, expect = facility()
    dump.comp("smp-rtnfail").failure_rv = 0xFFFFFFFB  # -5 as the u32 on disk
    assert component_problems(dump, expect) == []


def test_completeness_failure_fields_without_rtnfailure():
    dump, expect = facility()
    dump.comp("kernel").failure_handle = 1
    dump.comp("smp-classic").failure_vaddr = 0x1000
    text = joined(component_problems(dump, expect))
    assert "kernel: failure_rv 0, failure_vaddr 0x0, failure_handle 0x1 without RTNFAILURE" in text
    assert "smp-classic: failure_vaddr 0x1000 without an RTNFAILURE report" in text


def test_completeness_builtin_rtnfailure_needs_failed_eio():
    dump, expect = facility([])
    dump.comp("kernel").flags |= Flag.RTNFAILURE
    assert "kernel: RTNFAILURE, but status DUMPED" in joined(component_problems(dump, expect))


def test_completeness_flags():
    dump, expect = facility()
    dump.comp("ras-shared").flags &= ~Flag.CALL_ON_RESTART
    dump.comp("smp-classic").flags |= Flag.UNLIMITED
    dump.comp("ras-off").flags |= 1 << 20
    text = joined(component_problems(dump, expect))
    assert "ras-shared: flags lack CALL_ON_RESTART" in text
    assert "smp-classic: flags UNLIMITED set, the model has none of them" in text
    assert "ras-off: unknown flag bits 0x100000" in text


def test_completeness_areas():
    dump, expect = facility()
    dump.area("cls.1").length = 9999
    dump.comp("smp-classic").dumped_bytes -= 1
    assert "smp-classic: area entry 4 is 'cls.1' of 9999 bytes, the model has 'cls.1' of 10000" in \
        joined(component_problems(dump, expect))
    dump, expect = facility()
    dump.area("unl.7").name = "unl.8"
    assert "'unl.8' of 120 bytes, the model has 'unl.7'" in joined(component_problems(dump, expect))


def test_completeness_area_count():
    dump, expect = facility()
    erl = dump.comp("ras-early")
    erl.area_count -= 1
    erl.dumped_bytes -= 4096
    assert "ras-early: 7 areas, the model has 8" in joined(component_problems(dump, expect))


def test_completeness_staged_flags():
    dump, expect = facility()
    dump.area("glb.0").flags = 1
    dump.area("cls.0").flags = 2
    text = joined(component_problems(dump, expect))
    assert "smp-global: area glb.0 flags 0x1: not STAGED" in text
    assert "smp-classic: area cls.0 is STAGED" in text


def test_completeness_staging_and_global_buffer_sizes():
    dump, expect = facility()
    dump.comp("ras-private").staging_bytes = 4096
    dump.comp("smp-global").global_buffer_bytes = 0
    text = joined(component_problems(dump, expect))
    assert "ras-private: staging_bytes 4096, the model says 262144" in text
    assert "smp-global: global_buffer_bytes 0, the model says 16384" in text


def test_completeness_area_range_and_ownership():
    dump, expect = facility()
    dump.comp("ras-early").first_area = len(dump.areas) - 2
    assert "ras-early: areas" in joined(component_problems(dump, expect))
    dump, expect = facility()
    dump.area("lvl.2").component = 0
    assert "ras-levels: area entry" in joined(component_problems(dump, expect))
    dump, expect = facility()
    dump.comp("ras-levels").dumped_bytes = 1
    assert "ras-levels: dumped_bytes 1, its areas hold 10240" in joined(component_problems(dump, expect))


def test_completeness_untrusted():
    dump, expect = facility()
    dump.directory_ok = False
    assert "directory is invalid" in joined(component_problems(dump, expect))


# --------------------------------------------------------------------------------------------
# sample-data
# --------------------------------------------------------------------------------------------


def test_sample_data_flipped_byte():
    dump, expect = facility()
    area = dump.area("unl.5")
    dump.image.data[PART + area.disk_offset + 3] ^= 0x40
    check = check_sample_data(dump, dump.image, expect)
    assert_fails(check, f"sample area unl.5 (area entry {area.index}, smp-unlimited area 5): first differing byte "
                        "at offset 3 (0x3)", "1 bytes differ")


def test_sample_data_flipped_byte_in_staged_area_last_byte():
    dump, expect = facility()
    area = dump.area("prv.0")
    dump.image.data[PART + area.disk_offset + area.length - 1] ^= 1
    assert_fails(check_sample_data(dump, dump.image, expect), "prv.0", f"offset {area.length - 1}")


def test_sample_data_byte_after_the_area_is_not_its_data():
    dump, expect = facility()
    area = dump.area("cls.1")  # 10000 bytes: the page's tail is padding, not pattern
    dump.image.data[PART + area.disk_offset + area.length] ^= 1
    assert check_sample_data(dump, dump.image, expect).ok


def test_sample_data_short_image():
    dump, expect = facility()
    area = dump.area("erl.7")
    del dump.image.data[PART + area.disk_offset + 100:]
    assert_fails(check_sample_data(dump, dump.image, expect), "erl.7", "only 100 of its 4096 bytes are in the image")


def test_sample_data_areas_swapped():
    dump, expect = facility(["smp-classic"])
    a, b = dump.area("cls.0"), dump.area("cls.2")
    a.disk_offset, b.disk_offset = b.disk_offset, a.disk_offset
    assert_fails(check_sample_data(dump, dump.image, expect), "cls.0")


def test_sample_data_skipped_without_samples():
    dump, expect = facility([])
    check = check_sample_data(dump, dump.image, expect)
    assert check.ok and check.detail.startswith("skipped: no sample components (none enabled)")
    check = check_sample_data(dump, dump.image, None)
    assert check.ok and "skipped" in check.detail


def test_sample_data_without_expectation_still_checks_sample_components():
    dump, _ = facility(["smp-global"])
    assert check_sample_data(dump, dump.image, None).ok
    dump.image.data[PART + dump.area("glb.0").disk_offset] ^= 1
    assert_fails(check_sample_data(dump, dump.image, None), "glb.0")


def test_sample_data_missing_samples_compared_nothing():
    dump, expect = facility([])
    assert_fails(check_sample_data(dump, dump.image, Expectation.of(["smp-classic"])), "nothing compared")


def test_sample_data_unwritten_areas_not_compared():
    dump, expect = facility(["ras-early"])
    erl = dump.comp("ras-early")
    dump.unwritten = {erl.first_area + 7}
    dump.image.data[PART + dump.area("erl.7").disk_offset] ^= 1
    check = check_sample_data(dump, dump.image, expect)
    assert check.ok and "1 areas beyond body_written not compared" in check.detail


def test_sample_data_hostile_areas():
    dump, expect = facility(["smp-classic"])
    dump.area("cls.0").length = 1 << 62
    dump.area("cls.1").disk_offset = 1 << 50
    dump.comp("smp-classic").area_count = 1 << 32
    assert_fails(check_sample_data(dump, dump.image, expect), "lie outside")
    dump.comp("smp-classic").area_count = 3
    check = check_sample_data(dump, dump.image, expect)
    assert_fails(check, "not a sample area's", "cls.1", "only 0 of its 10000 bytes")


def test_sample_data_untrusted():
    dump, expect = facility()
    dump.directory_ok = False
    assert_fails(check_sample_data(dump, dump.image, expect), "directory is invalid")


# --------------------------------------------------------------------------------------------
# Hostile dumps: problems, never exceptions
# --------------------------------------------------------------------------------------------

WILD = [-1, 0, 1, 2, 3, 5, 7, 16, 255, 2 ** 31, 2 ** 32 - 1, 2 ** 63, 2 ** 64 - 1, 10 ** 6]


@pytest.mark.parametrize("seed", range(40))
def test_hostile_fields_give_problems_not_exceptions(seed):
    rng = random.Random(seed)
    dump, expect = facility(cut=rng.choice([None, 0, 7, 1000]))
    pools = [dump.components, dump.areas, dump.calls, dump.violations, [dump.header]]
    for _ in range(rng.randint(1, 12)):
        pool = rng.choice([p for p in pools if p])
        obj = rng.choice(pool)
        names = [f.name for f in fields(obj) if f.name not in ("name", "index")]
        setattr(obj, rng.choice(names), rng.choice(WILD))
    if rng.random() < 0.3:
        del dump.calls[rng.randrange(len(dump.calls))]
    for check in (check_protocol(dump, expect), check_sample_data(dump, dump.image, expect)):
        assert all(isinstance(p, str) and "\n" not in p for p in check.problems)
    assert all(isinstance(p, str) for p in component_problems(dump, expect))


# --------------------------------------------------------------------------------------------
# The real reader on tests/support/synth.py's runs (a second writer of the same pages)
# --------------------------------------------------------------------------------------------


def read_run(run):
    import json

    from dumpbed.reader import dumpfmt
    expect = expectation_from_scenario(json.loads((run.dir / "scenario.json").read_text()))
    image = dumpfmt.open_image(run.image)
    dump = dumpfmt.read(image, run.layout.dump_offset, run.layout.dump_size, run.layout.block_size)
    return dump, image, expect


@pytest.mark.parametrize("options", [
    dict(samples="all", level=0), dict(samples="all", level=9), dict(samples="default", generation=2),
    dict(samples="default", generation=2, restart_reached=0), dict(samples="default", generation=2, restart_reached=9),
    dict(samples="all", generation=2, restart_reached=9), dict(samples="all", generation=2, restart_reached=13),
])
def test_synth_runs_pass(make_run, options):
    dump, image, expect = read_run(make_run(**options))
    with image:
        assert dump.status == "complete", dump.reason
        assert check_protocol(dump, expect).ok, problems_of(check_protocol(dump, expect))
        assert component_problems(dump, expect) == []
        assert check_sample_data(dump, image, expect).ok


def test_synth_broken_call_and_component_records(make_run):
    run = make_run(samples="all")
    dump, image, expect = read_run(run)
    image.close()
    calls = run.call_records()
    names = [c.name for c in dump.components]
    unl_again = [i for i, r in enumerate(calls) if names[r["component"]] == "smp-unlimited" and r["op"] == Op.AGAIN]
    run.patch_call(unl_again[-1], outcome=Outcome.TABLE, entries=16)  # its tables never end
    run.patch_component(names.index("smp-rtnfail"), failure_handle=0xD0B5EDF00E)
    dump, image, expect = read_run(run)
    with image:
        assert_fails(check_protocol(dump, expect), "smp-unlimited: its unlimited tables never ended",
                     "smp-unlimited: call 20 is AGAIN/TABLE/16, the model expects AGAIN/NONE")
        assert "smp-rtnfail: failure_handle 0xd0b5edf00e, the model reports 0xd0b5edf00d" in \
            component_problems(dump, expect)


def test_synth_flipped_sample_byte(make_run):
    run = make_run(samples=["ras-shared"], level=1)
    a = run.area("shr.6")
    run.flip(run.part_offset + a.disk_offset + 2047)
    run.reseal()
    dump, image, expect = read_run(run)
    with image:
        assert_fails(check_sample_data(dump, image, expect), "sample area shr.6", "offset 2047 (0x7ff)")
