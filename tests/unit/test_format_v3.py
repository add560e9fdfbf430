"""The rules version 3 of the dump format (docs/dump-format.md) brought, which version 4 keeps
(two slots, crash consistency), one test each: a synthetic dump (tests/support/synth.py, version
4 unless it says version=3) with exactly that rule broken, and the reader's classification and
first inconsistency. Version 4's own rules (compression, frames) are tests/unit/test_format_v4.py's."""

import json
import struct

import pytest
import synth

from dumpbed.oracles import validate
from dumpbed.oracles.validate import validate_image, validate_run
from dumpbed.reader import dumpfmt, outcome
from dumpbed.reader.dumpfmt import PAGE
from dumpbed.reader.show import show

MiB = 1 << 20


def read(run, **kw):
    return dumpfmt.read(run.image, run.part_offset, run.part_bytes, run.block_size, **kw)


def corrupt_with(run, first: str, **kw) -> dumpfmt.Dump:
    d = read(run, **kw)
    assert d.status == "corrupt" and d.first_inconsistency == first, [f.message for f in d.findings]
    return d


def header_bytes(run, **fields) -> bytes:
    """The leader's header with fields changed and a fresh CRC."""
    return synth.pack_header(dict(run.header, **fields), run.registers)


def write_trailer_block(run, raw: bytes) -> None:
    run.write(run.trailer_at, raw.ljust(run.block_size, b"\0"))


def expect(run, outcome_name: str) -> None:
    scenario = json.loads((run.dir / "scenario.json").read_text())
    scenario["expect"] = outcome_name
    (run.dir / "scenario.json").write_text(json.dumps(scenario))


# -- the good dumps ------------------------------------------------------------------------------


@pytest.mark.parametrize("options", [
    dict(), dict(block_size=4096), dict(samples="all", level=5), dict(samples="default", generation=2),
    dict(slot=2), dict(ram_bytes=96 * MiB), dict(version=3), dict(version=3, samples="all", generation=2),
], ids=["plain", "b4096", "samples", "restarted", "slot2", "checkpoint-at-64MiB", "v3", "v3-restarted"])
def test_a_good_dump_is_complete(make_run, options):
    run = make_run(**options)
    d = read(run, dump_id=run.dump_id)
    assert d.status == "complete" and d.findings == [] and d.first_inconsistency is None
    h = d.header
    assert h.version == options.get("version", 4) and h.slot == run.slot and h.slot in (1, 2)
    assert h.dir_slot_offset == run.dir_at and h.table_slot_offset == run.table_at
    assert h.crc_table_offset == synth.DIR_AT + 2 * h.dir_bytes
    assert h.body_offset == h.crc_table_offset + 2 * h.crc_table_bytes
    assert run.previous is not None  # the other slot holds the checkpoint before the final one
    assert validate_run(run.dir).ok and validate_image(run.image).ok


def test_the_writers_alternation_names_slot_1_then_2(make_run):
    """The first checkpoint takes slot 1, then they alternate; the final writes take the next."""
    run = make_run()  # 4 components: 4 checkpoints (1, 2, 1, 2), the final writes in slot 1
    assert run.slot == 1 and read(run).header.slot == 1
    run = make_run(state="in-progress", body_written=4096)  # the first checkpoint, after crash
    assert run.slot == 1 and run.previous is None and read(run).status == "partial"


def test_the_leader_names_the_slot_read_the_other_is_never_looked_at(make_run):
    run = make_run(slot=2)
    other = 3 - run.slot
    run.write_part(run.dir_slot_at(other), b"\xff" * run.dir_bytes)
    run.write_part(run.table_slot_at(other), b"\xff" * run.table_bytes)
    assert read(run).status == "complete"


def test_a_leader_naming_the_other_slot_is_checked_against_it(make_run):
    """The slot number is what locates the directory: a leader naming the other slot is held
    to that slot's bytes (here the previous checkpoint's, which its CRCs do not match)."""
    run = make_run()
    other = 3 - run.slot
    run.set_header(slot=other)
    crc = synth.crc32c(run.read_part(run.dir_slot_at(other), run.dir_bytes))
    corrupt_with(run, f"directory slot {other}: CRC32C 0x{crc:08x}, header says 0x{run.header['dir_crc']:08x}")


# -- none -----------------------------------------------------------------------------------------


def test_no_leader_magic_is_none_whatever_the_trailer_holds(make_run):
    run = make_run(state="none")
    trailers = {
        "another dump's": header_bytes(run, status=synth.COMPLETE, dump_id=bytes(16)),
        "this dump's, IN_PROGRESS": header_bytes(run),
        "bad CRC": header_bytes(run, status=synth.COMPLETE)[:508] + b"\0\0\0\0",
    }
    for what, raw in trailers.items():
        write_trailer_block(run, raw)
        d = read(run, dump_id=run.dump_id)
        assert d.status == "none" and d.extent is None and d.header is None, what
        assert d.reason == "no dump header magic in the leader slot"


def test_another_dumps_leader_is_none_when_the_id_is_given(good_run):
    run = good_run
    other = bytes(reversed(run.dump_id))
    d = read(run, dump_id=other)
    assert d.status == "none" and d.header is None and d.extent is None and d.components == []
    assert d.reason == d.first_inconsistency == (
        f"the leader is a valid header of another dump (dump id {run.dump_id.hex()}): no dump with id {other.hex()}")
    assert d.leader.dump_id == run.dump_id  # what was there, for show
    assert read(run).status == "complete"  # without an id: that dump
    assert dumpfmt.read_image(run.image, dump_id=other).status == "none"
    assert dumpfmt.read_image(run.image, dump_id=run.dump_id).status == "complete"


def test_another_dumps_damaged_leader_is_corrupt_not_none(good_run):
    """Only a valid header tells whose dump it is: with its CRC broken it is corrupt."""
    run = good_run
    run.flip(run.leader_at + 300)
    raw = run.read(run.leader_at, 512)
    said = struct.unpack_from("<I", raw, 508)[0]
    corrupt_with(run, f"leader: header CRC32C 0x{synth.crc32c(raw[:508]):08x}, header says 0x{said:08x}",
                 dump_id=bytes(16))


# -- unsupported ------------------------------------------------------------------------------------


@pytest.mark.parametrize("version", [1, 2, 5])
def test_a_valid_header_of_another_version_is_unsupported(good_run, version):
    """dumpbed versions 1 and 2 share the magic, header_size 512 and the CRC at 508: such a
    leader is a dump this reader does not read, reported with its version, not corrupt data."""
    good_run.set_header(version=version)
    d = read(good_run)
    assert d.status == "unsupported" and d.version == version and d.first_inconsistency is None
    assert d.reason == f"a version {version} dump: this reader reads versions 3 and 4 only"
    assert d.header is None and d.extent is None and d.findings == []


def test_a_v2_style_header_is_unsupported(good_run):
    """A version 2 leader laid out as version 2 was (one slot each: the table right after the
    directory, reserved 0 at 484), CRC valid."""
    run = good_run
    v2 = dict(run.header, version=2, slot=0, crc_table_offset=synth.DIR_AT + run.dir_bytes,
              body_offset=synth.DIR_AT + run.dir_bytes + run.table_bytes)
    run.write(run.leader_at, synth.pack_header(v2, run.registers))
    d = read(run, dump_id=run.dump_id)
    assert d.status == "unsupported" and d.version == 2
    v = validate_run(run.dir)
    assert v.dump.status == "unsupported"
    assert not any("corrupt" in c.detail for c in v.checks), [c.detail for c in v.checks]


@pytest.mark.parametrize("change,first", [
    (dict(header_size=256), "leader: version 2, expected 3 or 4"),
    (dict(header_crc=True), "leader: version 2, expected 3 or 4"),
])
def test_another_version_that_is_no_valid_header_is_corrupt(good_run, change, first):
    run = good_run
    raw = bytearray(header_bytes(run, version=2, **{k: v for k, v in change.items() if k != "header_crc"}))
    if "header_crc" in change:
        raw[508] ^= 1
    run.write(run.leader_at, bytes(raw))
    d = corrupt_with(run, first)
    assert len(d.findings) >= 2  # the version, and what makes it no valid header


def test_unsupported_is_told_before_the_dump_id(good_run):
    """Where another version keeps its dump id is not this reader's to know."""
    good_run.set_header(version=2)
    assert read(good_run, dump_id=bytes(16)).status == "unsupported"


# -- partial: the first leader (slot 0) ------------------------------------------------------------


@pytest.mark.parametrize("state", ["in-progress", "failed"])
def test_slot_0_is_a_partial_dump_with_nothing_usable(make_run, state):
    run = make_run(state=state, slot=0, spill=3 * 65536)  # body written, no checkpoint landed yet
    d = read(run, dump_id=run.dump_id)
    assert d.status == "partial" and d.findings == [], d.findings
    h = d.header
    assert (h.slot, h.body_written, h.chunks_sealed, h.component_count, h.area_count) == (0, 0, 0, 0, 0)
    assert d.components == [] and d.areas == [] and d.directory_header is None
    assert d.reason.endswith("slot 0: the dump has begun, no directory yet (nothing usable)")
    # the writes after the first leader lie within 64 MiB of body
    assert d.extent == [(65536, min(h.body_offset + 64 * MiB, run.part_bytes - run.block_size)),
                        (run.part_bytes - run.block_size, run.part_bytes)]
    expect(run, "partial")
    v = validate_run(run.dir)
    for name in ("format", "chunk-crc", "completeness", "content", "crash-record"):
        assert v.check(name).ok, (name, v.check(name).detail)
    assert v.check("completeness").detail == "partial, as expected: the dump has begun (slot 0), nothing usable yet"
    assert validate.usable_parts(v.dump) == ([], [], 0, 0)


@pytest.mark.parametrize("field_name", ["dir_crc", "crc_table_crc", "component_count", "area_count", "body_written",
                                        "chunks_sealed"])
def test_slot_0_has_no_figures(make_run, field_name):
    run = make_run(state="in-progress", slot=0)
    value = 65536 if field_name == "body_written" else 1
    run.set_header(**{field_name: value})
    d = read(run)
    assert d.status == "corrupt"
    assert f"leader: slot 0 with {field_name} {value} (0 until a directory is written)" in [f.message for f in d.findings]
    if field_name not in ("body_written", "chunks_sealed"):  # those also break the chunks_sealed rule
        assert d.first_inconsistency == f"leader: slot 0 with {field_name} {value} (0 until a directory is written)"


def test_a_complete_leader_names_a_slot(good_run):
    good_run.set_header(slot=0, dir_crc=0, crc_table_crc=0, component_count=0, area_count=0, body_written=0,
                        chunks_sealed=0)
    d = read(good_run)
    assert d.status == "corrupt"
    assert d.first_inconsistency == ("leader: COMPLETE with slot 0 (a COMPLETE leader names its final directory "
                                     "and table)")


@pytest.mark.parametrize("slot", [3, 0xFFFFFFFF])
def test_slot_is_0_1_or_2(good_run, slot):
    good_run.set_header(slot=slot)
    corrupt_with(good_run, f"leader: slot {slot} (0, 1 or 2)")


# -- partial: the trailer ---------------------------------------------------------------------------


def test_final_leader_not_landed_reads_partial(good_run):
    """The trailer COMPLETE, the leader still the last checkpoint's: the commit has not landed."""
    run = good_run
    run.write(run.leader_at, run.previous_leader())
    d = read(run, dump_id=run.dump_id)
    assert d.status == "partial" and d.findings == []
    assert d.header.slot == 3 - run.slot and d.trailer.complete and not d.trailer_matches
    assert d.reason.endswith("; the trailer is COMPLETE (the final leader had not landed)")


def test_a_failed_trailer_under_an_in_progress_leader_reads_partial(make_run):
    """The FAILED leader did not land, the trailer written after it did."""
    run = make_run(state="in-progress")
    write_trailer_block(run, header_bytes(run, status=synth.FAILED, failure=synth.EIO, failure_offset=0x200000))
    d = read(run)
    assert d.status == "partial" and d.trailer.status_name == "FAILED" and d.findings == []


def test_a_complete_trailer_under_a_failed_leader_reads_partial(good_run):
    """The final leader's write failed after the trailer had landed."""
    run = good_run
    failed = dict(run.header_at(run.previous, 3 - run.slot), status=synth.FAILED, failure=synth.EIO,
                  failure_offset=65536)
    run.write(run.leader_at, synth.pack_header(failed, run.registers))
    d = read(run)
    assert d.status == "partial" and d.trailer.complete and d.findings == []


def test_a_failed_trailer_differing_from_the_failed_leader_is_corrupt(make_run):
    run = make_run(state="failed")
    write_trailer_block(run, header_bytes(run, failure_offset=run.header["failure_offset"] + 4096))
    corrupt_with(run, "trailer differs from the FAILED leader at byte 169 (failure_offset)")


def test_an_in_progress_trailer_of_this_dump_is_corrupt(make_run):
    run = make_run(state="in-progress")
    write_trailer_block(run, header_bytes(run, body_written=0))
    corrupt_with(run, "trailer of this dump is IN_PROGRESS (a trailer is written COMPLETE or FAILED)")


def test_a_trailer_of_this_dump_breaking_a_field_rule_is_corrupt(good_run):
    run = good_run
    run.write(run.leader_at, run.previous_leader())
    write_trailer_block(run, header_bytes(run, ram_bytes=0))
    corrupt_with(run, "trailer: ram_bytes 0 (the usable RAM of the guest's memory map is never none)")


def test_trailers_that_are_not_this_dumps_are_ignored_under_a_partial_leader(make_run):
    run = make_run(state="in-progress")
    for raw in (header_bytes(run, status=synth.COMPLETE, dump_id=bytes(16)),  # an older dump's
                header_bytes(run, status=synth.IN_PROGRESS)[:508] + b"\1\2\3\4",  # no valid header
                b"DBEDDUMP" + bytes(504)):
        write_trailer_block(run, raw)
        d = read(run)
        assert d.status == "partial" and d.trailer is None, d.findings


def test_a_complete_leader_without_its_trailer_is_corrupt(good_run):
    run = good_run
    run.write(run.trailer_at, bytes(run.block_size))
    corrupt_with(run, "trailer block: no header magic, but the leader is COMPLETE")


# -- field rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize("state,change,first", [
    ("in-progress", dict(chunks_sealed=13),
     "leader: chunks_sealed 13, but body_written 946176 fills 14 chunks (each whole chunk written is sealed)"),
    ("in-progress", dict(failure_offset=0x10000),
     "leader: failure 0 / failure_offset 65536 set, but status is IN_PROGRESS"),
    ("complete", dict(failure_offset=0x10000),
     "leader: failure 0 / failure_offset 65536 set, but status is COMPLETE"),
    ("failed", dict(failure=0), "leader: FAILED with failure 0 (the errno that ended the dump)"),
    ("complete", dict(ram_bytes=0), "leader: ram_bytes 0 (the usable RAM of the guest's memory map is never none)"),
    ("complete", dict(tsc_done=123_456_788_999), "leader: tsc_done 123456788999 before tsc_crash 123456789000"),
    ("complete", dict(crc_table_offset=synth.DIR_AT + synth.WRITER_DIR_BYTES),
     f"leader: crc_table_offset {synth.DIR_AT + synth.WRITER_DIR_BYTES} != dir_offset + 2 x dir_bytes (two slots)"),
    ("complete", dict(min_transfer=0), "leader: min_transfer 0 / max_transfer 131072 (0 < min <= max)"),
    ("complete", dict(device_role=2),
     "leader: generation 1 on the secondary device (the secondary holds only a restarted dump)"),
    ("complete", dict(restart_error=5), "leader: restart_error 5 / restart_offset 0x0 in generation 1 (0 unless "
                                        "restarted)"),
], ids=["chunks-sealed-exact", "failure-offset-in-progress", "failure-offset-complete", "failed-without-errno",
        "ram-bytes", "tsc", "two-dir-slots", "transfer", "device-role", "restart"])
def test_header_field_rules(make_run, state, change, first):
    run = make_run(state=state)
    run.set_header(**change)
    corrupt_with(run, first)


def test_the_body_follows_two_table_slots(good_run):
    run = good_run
    body = run.table_offset + run.table_bytes  # where version 2 put it
    run.set_header(body_offset=body)
    corrupt_with(run, f"leader: body_offset {body} != crc_table_offset + 2 x crc_table_bytes (two slots)")


# -- the CRC table ------------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["in-progress", "failed", "complete"])
def test_table_entries_past_chunks_sealed_are_zero(make_run, state):
    run = make_run(state=state)
    n = run.header["chunks_sealed"]
    run.write_part(run.table_at + 4 * n, b"\x01\0\0\0")
    run.set_header(crc_table_crc=synth.crc32c(run.read_part(run.table_at, run.table_bytes)))
    corrupt_with(run, f"CRC table slot {run.slot}: entry {n} not zero, past the {n} sealed entries")


def test_a_sealed_chunk_that_mismatches_is_corrupt(make_run):
    run = make_run(state="in-progress", body_written=3 * 65536, cut_inside=True)
    run.flip(run.part_offset + run.body_offset + 65536 + 17)
    d = read(run)
    assert d.status == "corrupt" and d.bad_chunk_count == 1
    assert d.first_inconsistency.startswith(f"chunk 1 at partition offset 0x{run.body_offset + 65536:x}")


# -- the directory: PARTIAL, STAGED, levels, call outcomes --------------------------------------------


def test_a_partial_component_is_listed_with_its_areas_so_far(make_run):
    run = make_run(state="failed", body_written=0x100000, cut_inside=True)  # inside ram-high
    d = read(run)
    assert d.status == "partial" and d.findings == []
    ram = d.components[2]
    assert (ram.name, ram.status_name, ram.area_count) == ("ram", "PARTIAL", 3)
    high = d.areas[ram.first_area + 2]
    assert high.name == "ram-high" and high.disk_offset + high.length == run.body_offset + 0x100000
    usable, in_part, sealed, listed = validate.usable_parts(d)
    assert usable == ["crash", "kernel"] and in_part == ["ram"] and (sealed, listed) == (6, 6)
    expect(run, "partial")
    v = validate_run(run.dir)
    assert v.check("completeness").ok and v.check("completeness").detail.endswith(
        "usable components: crash, kernel; in part only (PARTIAL): ram")


def test_usable_components_lie_within_the_sealed_chunks(make_run):
    """A component is usable when it is DUMPED and all its areas lie in sealed chunks."""
    run = make_run(state="in-progress", body_written=0x41000)  # the checkpoint after the kernel
    d = read(run)
    assert [c.status_name for c in d.components] == ["DUMPED", "DUMPED", "PENDING", "PENDING"]
    # 4 chunks sealed end at 0x40000: kernel-data, ending at 0x41000, is not vouched for yet
    assert d.header.chunks_sealed == 4 and not d.area_sealed(d.areas[2])
    assert validate.usable_parts(d) == (["crash"], [], 2, 3)
    run = make_run(state="failed", body_written=0xDF000)  # to the end of ram-low: 13 chunks sealed
    d = read(run)
    assert [c.status_name for c in d.components] == ["DUMPED", "DUMPED", "PARTIAL", "PENDING"]
    assert validate.usable_parts(d) == (["crash", "kernel"], ["ram"], 3, 4)


def test_partial_in_a_complete_dump_is_corrupt(good_run):
    good_run.patch_component(3, status=synth.PARTIAL)
    corrupt_with(good_run, "component 3 (log): PARTIAL in a COMPLETE dump (every component's collection ended)")


def test_a_partial_component_has_no_reason(make_run):
    run = make_run(state="failed", body_written=0x100000, cut_inside=True)
    run.patch_component(2, reason=synth.EIO)
    corrupt_with(run, "component 2 (ram): PARTIAL with reason 5 (only FAILED and EXCLUDED have one)")


def test_staged_without_volatile_is_corrupt(make_run):
    run = make_run(samples=["smp-global"])
    staged = run.area_index("glb.0")
    run.patch_area(staged, flags=synth.STAGED)
    corrupt_with(run, f"area {staged} (glb.0): STAGED without VOLATILE (staged data was not in memory at the crash)")


def test_a_ras_component_keeps_its_level_until_disabled(make_run):
    run = make_run(samples=["ras-levels", "ras-off"], level=6, state="in-progress", body_written=4096)
    d = read(run)
    assert d.status == "partial", d.findings
    by_name = {c.name: c for c in d.components}
    assert (by_name["ras-levels"].status_name, by_name["ras-levels"].level) == ("PENDING", 6)
    assert (by_name["ras-off"].status_name, by_name["ras-off"].level) == ("DISABLED", 0)
    off = [c.name for c in run.components].index("ras-off")
    run.patch_component(off, level=6)
    corrupt_with(run, f"component {off} (ras-off): DISABLED but has an estimate or a level (it is never called)")


def test_a_dmp_ctl_component_has_no_level(good_run):
    good_run.patch_component(3, level=1)
    corrupt_with(good_run, "component 3 (log): level 1 on a dmp_ctl component (0 unless RAS)")


@pytest.mark.parametrize("state,table_generation,first", [
    ("complete", 0, "component 3 (log): 1 areas but table_generation 0"),
    ("in-progress", 1, "component 3 (log): no areas but table_generation 1 (0 when it lists no areas)"),
])
def test_table_generation_is_0_exactly_without_areas(make_run, state, table_generation, first):
    run = make_run(state=state, body_written=0x22000)  # in progress: log PENDING, no areas
    run.patch_component(3, table_generation=table_generation)
    corrupt_with(run, first)


ALLOWED = {  # the page's table: the outcomes each op may have
    synth.START: {synth.TABLE, synth.NONE, synth.NEGATIVE, synth.BAD, synth.FAULT},
    synth.AGAIN: {synth.TABLE, synth.NONE, synth.NEGATIVE, synth.BAD, synth.FAULT},
    synth.DONE: {synth.ACK, synth.FAULT},
    synth.ESTIMATE: {synth.VALUE, synth.NONE, synth.NEGATIVE, synth.FAULT},
}
OP_NAMES = {synth.START: "START", synth.AGAIN: "AGAIN", synth.DONE: "DONE", synth.ESTIMATE: "ESTIMATE"}
OUTCOME_NAMES = {synth.TABLE: "TABLE", synth.NONE: "NONE", synth.NEGATIVE: "NEGATIVE", synth.FAULT: "FAULT",
                 synth.VALUE: "VALUE", synth.ACK: "ACK", synth.BAD: "BAD"}


@pytest.mark.parametrize("op,result", [(op, result) for op in ALLOWED for result in OUTCOME_NAMES],
                         ids=[f"{OP_NAMES[op]}-{OUTCOME_NAMES[r]}" for op in ALLOWED for r in OUTCOME_NAMES])
def test_call_outcomes_per_op(good_run, op, result):
    """Call 0 (log's ESTIMATE) rewritten to each op and outcome; its value fits the outcome."""
    run = good_run
    value = -1 if result == synth.NEGATIVE else 4096 if result == synth.VALUE else 0
    run.patch_call(0, op=op, outcome=result, entries=0, value=value)
    d = read(run)
    if result in ALLOWED[op]:
        assert d.status == "complete", [f.message for f in d.findings]
    else:
        corrupt_with(run, f"call 0 ({OP_NAMES[op]} of component 0): outcome {OUTCOME_NAMES[result]} for a "
                          f"{OP_NAMES[op]} call")


# -- the header's version everywhere ---------------------------------------------------------------


def test_the_end_marker_has_the_headers_version(good_run):
    run = good_run
    raw = bytearray(run.end_marker())
    struct.pack_into("<I", raw, 8, 2)
    struct.pack_into("<I", raw, 4092, synth.crc32c(bytes(raw[:4092])))
    run.write_part(run.end_offset, bytes(raw))
    corrupt_with(run, "end marker: version 2, the header's is 4")


def test_the_crash_record_has_the_headers_version(good_run):
    run = good_run
    raw = bytearray(run.crash_record())
    struct.pack_into("<I", raw, 8, 2)
    run.set_crash_record(bytes(raw))
    run.reseal()
    d = read(run)
    assert d.status == "complete"  # the crash record's findings are the crash-record check's
    assert [f.message for f in d.findings_for("crash-record")] == ["crash record: version 2, the header's is 4"]


# -- the extent --------------------------------------------------------------------------------------


def test_the_extent_as_the_leader_tells_it(make_run):
    run = make_run(state="failed", body_written=0x22000)
    d = read(run)
    trailer = (run.part_bytes - 512, run.part_bytes)
    assert d.extent == [(65536, trailer[0]), trailer]  # 64 MiB of body past body_written: to the trailer
    big = make_run(state="in-progress", ram_bytes=96 * MiB, body_written=0x22000)
    d = read(big)
    assert d.extent[0] == (65536, big.body_offset + 0x22000 + 64 * MiB)
    good = make_run()
    assert read(good).extent[0] == (65536, good.end_offset + PAGE)


# -- chunk CRCs through the image --------------------------------------------------------------------


class CountingImage(dumpfmt.Image):
    """An image that records what the reader asks of it."""

    def __init__(self, source):
        super().__init__(source)
        self.chunk_calls = []
        self.largest_read = 0

    def read(self, offset, length):
        self.largest_read = max(self.largest_read, length)
        return super().read(offset, length)

    def chunk_crcs(self, offset, chunk_size, count, end):
        self.chunk_calls.append((offset, chunk_size, count, end))
        return super().chunk_crcs(offset, chunk_size, count, end)


def test_the_reader_takes_chunk_crcs_from_the_image(make_run):
    run = make_run(ram_bytes=24 * MiB)
    with CountingImage(run.image) as image:
        d = dumpfmt.read(image, run.part_offset, run.part_bytes, 512)
    assert d.status == "complete"
    p = run.part_offset
    assert image.chunk_calls == [(p + run.body_offset, 65536, run.nchunks, p + run.end_offset)]
    assert image.largest_read <= 8 * MiB  # bounded reads, whatever the body's size

    class Cached(dumpfmt.Image):  # serves the chunk CRCs without reading the body
        def chunk_crcs(self, offset, chunk_size, count, end):
            return list(d.crc_table)

    with Cached(run.image) as cached:
        assert dumpfmt.read(cached, p, run.part_bytes, 512).status == "complete"
    run.flip(run.area_disk_offset("ram-high") + 5)  # the cache does not know: the reader believes it
    with Cached(run.image) as cached:
        assert dumpfmt.read(cached, p, run.part_bytes, 512).status == "complete"
    assert read(run).status == "corrupt"


def test_image_chunk_crcs():
    data = bytes(range(256)) * 1024  # 256 KiB
    with dumpfmt.Image(data) as image:
        assert image.chunk_crcs(4096, 65536, 3, 4096 + 3 * 65536) == [
            dumpfmt.crc32c(data[4096 + k * 65536:4096 + (k + 1) * 65536]) for k in range(3)]
        assert image.chunk_crcs(0, 65536, 2, 65536 + 100) == [dumpfmt.crc32c(data[:65536]),
                                                             dumpfmt.crc32c(data[65536:65636])]
        assert image.chunk_crcs(0, 65536, 0, 0) == []
        assert image.chunk_crcs(0, 65536, 5, 5 * 65536) is None  # the image ends first


# -- around the reader: outcome, show, validate ---------------------------------------------------------


def test_outcome_of_a_dump_read_without_the_id(good_run):
    summary = validate.dump_summary(read(good_run))
    assert outcome.actual(summary, {"dump_id": good_run.dump_id.hex()})[0] == "complete"
    status, why = outcome.actual(summary, {"dump_id": "00" * 16})
    assert status == "none" and why.startswith("a complete dump: the leader is a valid header of another dump")
    assert outcome.actual({"status": "unsupported", "reason": "a version 2 dump", "dump_id": None},
                          {"dump_id": "00" * 16}) == ("unsupported", "a version 2 dump")
    assert "unsupported" in outcome.OUTCOMES


def test_show_prints_the_slot(make_run):
    run = make_run(slot=2)
    text = show(run.image, width=200)
    assert f"slot             2 (directory at 0x{run.dir_at:x}, table at 0x{run.table_at:x})" in text
    run = make_run(state="in-progress", slot=0)
    assert "slot             0 (the first leader: no directory or table yet)" in show(run.image, width=200)
    good = make_run()
    good.set_header(version=2)
    text = show(good.image, width=200)
    assert text.startswith("dump: unsupported  a version 2 dump") and "leader: version 2" in text


def test_partial_expected_but_the_checks_still_fail_on_damage(make_run):
    """With a partial dump expected, format, chunk-crc and completeness pass a consistent one and
    fail a damaged one."""
    run = make_run(state="failed")
    expect(run, "partial")
    v = validate_run(run.dir)
    assert all(v.check(n).ok for n in ("format", "chunk-crc", "completeness")), [c.detail for c in v.checks]
    run.flip(run.area_disk_offset("ram-low") + 10)  # a sealed chunk
    v = validate_run(run.dir)
    assert v.dump.status == "corrupt"
    assert {"format", "chunk-crc", "completeness"} <= {c.name for c in v.checks if not c.ok}
    assert v.check("completeness").detail == "a partial dump was expected, the disk holds: corrupt"
