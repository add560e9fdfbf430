"""The reader against the independent synthetic writer: round trips and classification."""

import struct

import pytest
import synth

from dumpbed.reader import dumpfmt
from dumpbed.reader.dumpfmt import PAGE


def read(run, **kw):
    return dumpfmt.read(run.image, run.part_offset, run.part_bytes, run.block_size, **kw)


def test_crc32c_check_value():
    assert dumpfmt.crc32c(b"123456789") == 0xE3069283


def test_round_trip(good_run_any_block):
    run = good_run_any_block
    d = read(run)
    assert d.status == "complete", d.findings
    assert d.findings == [] and d.first_inconsistency is None
    h = d.header
    assert h is d.leader and d.trailer_matches and d.trailer.raw == d.leader.raw
    for _, _, name in synth.HEADER_FIELDS:
        assert getattr(h, name) == run.header[name], name
    assert list(h.registers) == run.registers
    assert h.register_dict() == {n: run.registers[i] for i, n in enumerate(synth.REGISTERS)}
    assert h.status_name == "COMPLETE" and h.reason_name == "NMI"

    assert [(c.name, c.kind, c.status, c.area_count, c.flags, c.level, c.table_generation, c.estimate_bytes,
             c.dumped_bytes) for c in d.components] == [
        (c.name, c.kind, c.status, len(c.areas), c.flags, c.level, 1, sum(a.length for a in c.areas),
         sum(a.length for a in c.areas)) for c in run.components
    ]
    assert [(a.name, a.phys_addr, a.length, a.stored_bytes, a.disk_offset, a.volatile, a.flags) for a in d.areas] == [
        (a.name, a.phys, a.length, a.length, a.disk_offset, a.volatile, a.flags) for a in run.areas
    ]
    assert [(r.component, r.op, r.generation, r.outcome, r.entries, r.level, r.value) for r in d.calls] == [
        (r["component"], r["op"], r["generation"], r["outcome"], r["entries"], r["level"], r["value"])
        for r in run.call_records()
    ]
    assert [r.op_name for r in d.calls] == ["ESTIMATE"] * 4 + ["START"] * 4 + ["DONE"] * 4
    assert d.violations == [] and d.directory_header.call_count == 12
    assert (h.level, h.estimate_bytes, h.chunks_sealed, h.device_role_name, h.restart_error) == (
        3, sum(a.length for a in run.areas), d.chunk_count, "PRIMARY", 0)
    first = 0
    for c in d.components:
        assert c.first_area == first and all(a.component == c.index for a in d.component_areas(c))
        first += c.area_count

    assert len(d.crc_table) == -(-run.body_bytes // run.chunk_size) == d.chunk_count
    assert d.chunks_verified and d.bad_chunk_count == 0
    m = d.end_marker
    assert (m.magic, m.version, m.generation, m.dump_id, m.body_bytes, m.nchunks) == (
        b"DBEDEND\0", 4, 1, run.dump_id, run.body_bytes, len(d.crc_table))
    rec = d.crash_record
    assert rec.magic == b"DBCRASH\0" and rec.version == 4 and list(rec.registers) == run.registers
    assert (h.version, h.compression, d.compression) == (4, 0, 0)
    assert (rec.crash_reason, rec.crash_vector, rec.tsc_crash) == (1, 2, run.header["tsc_crash"])
    assert rec.fxsave == run.area("crash-record").data[512:]
    assert d.extent == [(65536, run.end_offset + PAGE), (run.part_bytes - run.block_size, run.part_bytes)]
    assert d.extent_bytes == run.end_offset + PAGE - 65536 + run.block_size


def test_read_accepts_bytes_file_and_image(good_run):
    run = good_run
    data = run.image.read_bytes()
    with open(run.image, "rb") as f:
        from_file = dumpfmt.read(f, run.part_offset, run.part_bytes, 512)
    with dumpfmt.open_image(run.image) as img:
        from_image = dumpfmt.read(img, run.part_offset, run.part_bytes, 512)
    from_bytes = dumpfmt.read(data, run.part_offset, run.part_bytes, 512)
    assert from_file.status == from_image.status == from_bytes.status == "complete"
    assert dumpfmt.read_image(run.image).status == "complete"


def test_header_field_names_by_offset():
    assert dumpfmt.header_field_at(0) == "magic"
    assert dumpfmt.header_field_at(30) == "dump_id"
    assert dumpfmt.header_field_at(128) == "body_written"
    assert dumpfmt.header_field_at(216 + 16 * 8 + 3) == "registers[16] (rip)"
    assert dumpfmt.header_field_at(164) == "level"
    assert dumpfmt.header_field_at(210) == "estimate_bytes"
    assert dumpfmt.header_field_at(472) == "chunks_sealed"
    assert dumpfmt.header_field_at(477) == "device_role"
    assert dumpfmt.header_field_at(480) == "restart_error"
    assert dumpfmt.header_field_at(486) == "slot"
    assert dumpfmt.header_field_at(490) == "restart_offset"
    assert dumpfmt.header_field_at(497) == "compression"
    assert dumpfmt.header_field_at(500) == "reserved_500"
    assert dumpfmt.header_field_at(511) == "header_crc"


@pytest.mark.parametrize("partition,chunk,table", [
    (0, 65536, 4096), (14 << 20, 65536, 4096), (4 << 30, 65536, 256 << 10), ((4 << 30) + 4096, 131072, 132 << 10),
    (9 << 30, 262144, 144 << 10),
])
def test_chunk_size_and_table_from_the_partition_size(partition, chunk, table):
    assert dumpfmt.writer_chunk_size(partition) == chunk
    assert dumpfmt.crc_table_bytes_for(partition) == table


# -- classification ------------------------------------------------------------------------


def test_none_when_nothing_was_written(make_run):
    run = make_run(state="none")
    d = read(run)
    assert d.status == "none" and d.leader is None and d.header is None
    assert d.first_inconsistency == "no dump header magic in the leader slot"
    assert d.extent is None and d.extent_bytes == 0


def test_partial_in_progress(make_run):
    run = make_run(state="in-progress", body_written=3 * 65536)
    d = read(run)
    assert d.status == "partial" and d.first_inconsistency is None, d.findings
    # cut at the last area boundary: crash-record (4096) + kernel-text (0x21000) = 0x22000; the
    # second checkpoint (after crash): slot 2, slot 1 holding the first
    assert d.reason == ("dump IN_PROGRESS: slot 2: 139264 body bytes written in 2 areas, 2 chunks sealed and "
                        "verified, 2 components PENDING, 1 PARTIAL")
    h = d.header
    assert (h.slot, h.body_written, h.body_bytes, h.end_offset, h.chunks_sealed) == (2, 0x22000, 0, 0, 2)
    assert d.trailer is None and d.end_marker is None
    assert d.chunks_verified and d.chunk_count == 2 and len(d.crc_table) == 2
    assert [a.name for a in d.areas] == ["crash-record", "kernel-text"]
    assert all(d.area_written(a) for a in d.areas)
    # the kernel is being collected: PARTIAL with its first area; ram and log not reached
    assert [(c.name, c.status_name, c.area_count) for c in d.components] == [
        ("crash", "DUMPED", 1), ("kernel", "PARTIAL", 1), ("ram", "PENDING", 0), ("log", "PENDING", 0)]
    assert d.area_vouched(d.areas[0]) and not d.area_vouched(d.areas[1])  # kernel-text ends in chunk 2
    # the writes may run up to 64 MiB of body past the leader's body_written: here, to the trailer
    assert d.extent == [(65536, run.part_bytes - 512), (run.part_bytes - 512, run.part_bytes)]
    assert [r.op_name for r in d.calls] == ["ESTIMATE"] * 4 + ["START"] * 2


def test_partial_before_any_chunk_is_sealed(make_run):
    run = make_run(state="failed", body_written=0)  # failed in the first write of the body
    d = read(run)
    assert d.status == "partial" and d.header.slot == 1 and d.header.chunks_sealed == 0 and d.crc_table == ()
    assert [c.status_name for c in d.components] == ["PENDING"] * 4 and d.areas == []
    # the table slot is checked all the same: one that was never written is corrupt
    run.write_part(run.table_at, b"DBCN" * 1024)
    assert read(run).first_inconsistency.startswith("CRC table slot 1: CRC32C")


def test_extent_of_partial_dumps(make_run):
    run = make_run(state="failed", body_written=0, ram_bytes=96 << 20)
    d = read(run)
    assert d.extent[0] == (65536, run.body_offset + (64 << 20))


def test_the_extent_of_a_failed_dump_is_64_mib_of_body_past_its_leader(make_run):
    """The failed write lies within the 64 MiB past the leader's body_written, like every write
    after the last durable leader (the page's "The dump extent"): failure_offset does not
    widen it."""
    run = make_run(state="failed", spill=5000, ram_bytes=96 << 20, body_written=80 << 20)
    d = read(run)
    assert d.status == "partial", d.findings
    h = d.header
    assert h.failure_offset == h.body_offset + h.body_written + 5000
    assert d.extent[0] == (65536, h.body_offset + h.body_written + (64 << 20))
    run.set_header(failure_offset=run.part_bytes - (2 << 20))
    assert read(run).extent[0] == (65536, h.body_offset + h.body_written + (64 << 20))


def test_partial_failed_with_identical_trailer(make_run):
    run = make_run(state="failed", block_size=4096)
    d = read(run)
    assert d.status == "partial" and d.trailer_matches
    assert d.reason.startswith("dump FAILED: errno 5 at partition offset")


def test_partial_failed_without_trailer(make_run):
    run = make_run(state="failed")
    run.write(run.trailer_at, bytes(512))
    assert read(run).status == "partial"


def test_failed_with_a_different_trailer_is_corrupt(make_run):
    run = make_run(state="failed")
    run.write_trailer()
    run.header["failure"] = 28
    run.write_leader()
    d = read(run)
    assert d.status == "corrupt"
    assert d.first_inconsistency.startswith("trailer differs from the FAILED leader at byte 52 (failure)")


def test_in_progress_with_an_in_progress_trailer_of_this_dump_is_corrupt(make_run):
    run = make_run(state="in-progress")
    run.header["generation"] = 7
    run.write_trailer()
    d = read(run)
    assert d.status == "corrupt"
    assert d.first_inconsistency == "trailer of this dump is IN_PROGRESS (a trailer is written COMPLETE or FAILED)"


def test_partial_with_a_bad_table_crc_is_corrupt(make_run):
    run = make_run(state="in-progress")
    run.set_header(crc_table_crc=0x1234)
    d = read(run)
    assert d.status == "corrupt" and d.first_inconsistency.startswith("CRC table slot 1: CRC32C")


def test_partial_with_a_bad_sealed_chunk_is_corrupt(make_run):
    run = make_run(state="failed")
    run.flip(run.area_disk_offset("ram-low") + 10)
    d = read(run)
    assert d.status == "corrupt" and d.bad_chunk_count == 1
    assert d.first_inconsistency.startswith("chunk 4 at partition offset") and "ram-low" in d.first_inconsistency


def test_partial_chunks_sealed_beyond_body_written_is_corrupt(make_run):
    run = make_run(state="failed")
    run.set_header(chunks_sealed=run.header["chunks_sealed"] + 1)
    d = read(run)
    assert d.status == "corrupt"
    assert d.first_inconsistency == (f"leader: chunks_sealed 15, but body_written {run.header['body_written']} "
                                     f"fills 14 chunks (each whole chunk written is sealed)")


def test_partial_unsealed_damage_is_not_a_chunk_finding(make_run):
    """Past the sealed chunks no CRC vouches: damage there is found only by content."""
    run = make_run(state="failed")  # 946176 body bytes: 14 chunks sealed, stack ends in chunk 14
    run.flip(run.part_offset + run.body_offset + 14 * 65536 + 5)
    d = read(run)
    by_name = {a.name: a for a in d.areas}
    assert d.status == "partial" and d.bad_chunk_count == 0
    assert d.area_vouched(by_name["ram-low"]) and not d.area_vouched(by_name["stack"])
    assert d.area_written(by_name["stack"])


@pytest.mark.parametrize("change,expect", [
    (dict(body_bytes=4096), "FAILED with body_bytes 4096 / end_offset 0 (0 until COMPLETE)"),
    (dict(end_offset=1 << 20), "end_offset 1048576"),
    (dict(body_written=4097), "body_written 4097 not a page multiple"),
    (dict(body_written=1 << 40), "leaves no room for the end marker"),
    (dict(failure=0), "FAILED with failure 0"),
])
def test_partial_header_rules(make_run, change, expect):
    run = make_run(state="failed")
    run.set_header(**change)
    d = read(run)
    assert d.status == "corrupt" and expect in d.first_inconsistency, d.findings


def test_partial_areas_must_end_at_body_written(make_run):
    run = make_run(state="failed")
    run.set_header(body_written=run.header["body_written"] + 65536, chunks_sealed=15)
    d = read(run)
    assert d.status == "corrupt"
    assert d.first_inconsistency.startswith("areas fill 946176 body bytes, header says body_written 1011712")


def test_pending_components_have_no_areas(make_run):
    run = make_run(state="failed")
    run.patch_component(2, status=synth.PENDING)  # ram, being written, listed PENDING with its areas
    d = read(run)
    assert d.status == "corrupt"
    assert d.first_inconsistency.startswith("component 2 (ram): PENDING but has 2 areas")
    good = make_run()
    good.patch_component(3, status=synth.PENDING, area_count=0, table_generation=0, dumped_bytes=0)
    assert any("PENDING in a COMPLETE dump" in f.message for f in read(good).findings)


@pytest.mark.parametrize("change,expect", [
    (dict(dir_offset=73728), "dir_offset 73728"),
    (dict(chunk_size=131072), "chunk_size 131072, a partition of 14680064 bytes has 65536"),
    (dict(chunk_size=65537), "chunk_size 65537"),
    (dict(chunks_sealed=121), "COMPLETE with chunks_sealed 121, the body has 122 chunks"),
    (dict(partition_bytes=1 << 40), "partition_bytes"),
    (dict(end_offset=1 << 30), "end_offset"),
    (dict(body_bytes=(1 << 63)), "body_bytes"),
    (dict(crc_table_bytes=8192), "crc_table_bytes 8192, a partition of 14680064 bytes has 4096"),
    (dict(block_size=4096), "block_size 4096, but the device's block size is 512"),
    (dict(crash_vector=3), "crash_vector 3 for an NMI"),
    (dict(crash_reason=9), "crash_reason 9"),
    (dict(failure=5), "failure 5"),
    (dict(status=9), "status 9"),
    (dict(generation=0), "generation 0 (1, or 2 for the dump restarted on the secondary)"),
    (dict(generation=3), "generation 3"),
    (dict(body_written=4096), "COMPLETE with body_written 4096"),
    (dict(level=10), "level 10 (0..9)"),
    (dict(device_role=0), "device_role 0 unknown"),
    (dict(device_role=2), "generation 1 on the secondary device"),
    (dict(generation=2), "generation 2 on the primary device"),
    (dict(restart_error=5), "restart_error 5 / restart_offset 0x0 in generation 1"),
    (dict(restart_offset=0x10000), "restart_offset 0x10000 in generation 1"),
    (dict(header_size=256), "header_size 256"),
    (dict(min_transfer=1 << 20), "min_transfer"),
    (dict(area_count=1 << 31), "exceed the reader's limit"),
    (dict(component_count=0xFFFFFFFF, area_count=0xFFFFFFFF), "exceed the reader's limit"),
    (dict(dir_bytes=0xFFFFF000), "crc_table_offset"),
])
def test_contradicting_header_fields_are_corrupt(good_run, change, expect):
    run = good_run
    run.header.update(change)
    run.write_leader()  # the trailer keeps the original
    d = read(run)
    assert d.status == "corrupt"
    assert expect in d.first_inconsistency, d.findings


def test_counts_disagreeing_with_the_directory(good_run):
    run = good_run
    run.set_header(component_count=5)
    d = read(run)
    assert d.status == "corrupt"
    assert d.first_inconsistency == "directory: counts 4 components / 7 areas, header says 5 / 7"
    assert not d.directory_ok


def test_reserved_fields_must_be_zero(good_run):
    run = good_run
    raw = bytearray(run.header_bytes())
    raw[500] = 1
    struct.pack_into("<I", raw, 508, synth.crc32c(raw[:508]))
    run.write(run.leader_at, raw)
    run.write(run.trailer_at, raw)
    d = read(run)
    assert d.status == "corrupt" and d.first_inconsistency == "leader: reserved bytes 500..507 not zero"


@pytest.mark.parametrize("role,error,offset,expect", [
    (2, 5, 0x2345000, None),
    (2, 5, 0, None),  # no write had failed (0: none)
    (1, 5, 0x2345000, "leader: generation 2 on the primary device"),
    (2, 0, 0x2345000, "leader: generation 2 with restart_error 0"),
    (2, 5, 0x1000, "leader: generation 2 with restart_offset 0x1000"),
])
def test_restart_fields(make_run, role, error, offset, expect):
    run = make_run(generation=2)
    run.set_header(device_role=role, restart_error=error, restart_offset=offset)
    d = read(run)
    if expect is None:
        assert d.status == "complete" and d.header.device_role_name == "SECONDARY", d.findings
        assert (d.header.restart_error, d.header.restart_offset) == (5, offset)
    else:
        assert d.status == "corrupt" and d.first_inconsistency.startswith(expect)


def test_restarted_dump_round_trip(make_run):
    run = make_run(generation=2, samples="default")
    d = read(run)
    assert d.status == "complete" and d.generation == 2 and d.findings == []
    reused = [c.name for c in d.components if c.has(dumpfmt.ComponentFlag.TABLE_REUSED)]
    assert reused == ["crash-record", "kernel", "ram"]
    assert all(c.table_generation == 1 for c in d.components[:3])
    assert {c.table_generation for c in d.components[3:] if c.area_count} == {2}
    assert {r.generation for r in d.calls} == {1, 2} and d.end_marker.generation == 2
    assert d.directory_header.generation == 2


@pytest.mark.parametrize("patch,expect", [
    (("comp", 0, dict(kind=9)), "component 0 (crash): kind 9 unknown"),
    (("comp", 0, dict(status=9)), "component 0 (crash): status 9 unknown"),
    (("comp", 1, dict(status=2)), "component 1 (kernel): EXCLUDED but has 2 areas"),
    (("comp", 1, dict(status=4)), "component 1 (kernel): DISABLED but has 2 areas"),
    (("comp", 1, dict(reason=5)), "component 1 (kernel): DUMPED with reason 5"),
    (("comp", 1, dict(status=3)), "component 1 (kernel): FAILED with reason 0"),
    (("comp", 2, dict(first_area=4)), "component 2 (ram): first_area 4, expected 3"),
    (("comp", 3, dict(area_count=9)), "components claim 15 area entries, there are 7"),
    (("comp", 3, dict(flags=0x800)), "component 3 (log): flags 0x800: bits 0x800 undefined"),
    (("comp", 3, dict(flags=0x10)), "flags PRIVATE_STAGING on a dmp_ctl component (RAS only)"),
    (("comp", 3, dict(flags=0x2)), "GLOBAL_BUFFER flag and global_buffer_bytes 0 disagree"),
    (("comp", 3, dict(flags=0x80)), "RTNFAILURE but DUMPED"),
    (("comp", 3, dict(flags=0x100)), "PIN_VIOLATION but DUMPED"),
    (("comp", 3, dict(flags=0x201)), "ENDED_EARLY without UNLIMITED"),
    (("comp", 3, dict(flags=0x8)), "UNLIMITED without CALL_ON_RESTART"),
    (("comp", 3, dict(flags=0x400)), "TABLE_REUSED in a generation 1 dump"),
    (("comp", 3, dict(level=2)), "level 2 on a dmp_ctl component"),
    (("comp", 3, dict(flags=0x4, level=10)), "level 10 (0..9)"),
    (("comp", 3, dict(table_generation=0)), "1 areas but table_generation 0"),
    (("comp", 3, dict(table_generation=2)), "table_generation 2, the dump is generation 1"),
    (("comp", 3, dict(dumped_bytes=4096)), "component 3 (log): dumped_bytes 4096, its areas hold 3000"),
    (("comp", 3, dict(failure_handle=7)), "failure_rv / failure_vaddr / failure_handle set without RTNFAILURE"),
    (("comp", 3, dict(staging_bytes=7)), "staging flags and staging_bytes 7 disagree"),
    (("comp", 3, dict(zero=b"\1")), "component 3 (log): bytes 112..127 not zero"),
    (("comp", 0, dict(name=b"a\0b\0")), "not NUL-padded ASCII"),
    (("comp", 0, dict(name=b"\xffab\0")), "not NUL-padded ASCII"),
    (("area", 2, dict(disk_offset=0x99000)), "area 2 (kernel-data): disk_offset 0x99000"),
    (("area", 2, dict(length=0x1E000, stored_bytes=0x1E000)), "area 3 (ram-low): disk_offset"),
    (("area", 6, dict(length=1 << 62, stored_bytes=1 << 62)), "beyond the body written"),
    (("area", 2, dict(length=0x1E000)), "area 2 (kernel-data): stored_bytes 126976 != length 122880"),
    (("area", 6, dict(length=0)), "area 6 (console-log): length 0"),
    (("area", 5, dict(component=0)), "outside the area range of its component 0"),
    (("area", 5, dict(component=40)), "component 40 does not exist"),
    (("area", 0, dict(flags=0)), "crash record area is not marked VOLATILE"),
    (("area", 0, dict(length=2048)), "one area of 1024 bytes"),
    (("area", 3, dict(flags=4)), "flags 0x4 (bits 0 VOLATILE and 1 STAGED are defined)"),
    (("area", 3, dict(flags=2)), "area 3 (ram-low): STAGED, but component 2 (ram) has no global buffer"),
    (("area", 3, dict(stored_bytes=1)), "area 3 (ram-low): stored_bytes 1 != length 647168"),
    (("area", 3, dict(phys_addr=(1 << 64) - 4096)), "overflows 64 bits"),
    (("call", 0, dict(component=4)), "call 0 (ESTIMATE of component 4): component 4 does not exist"),
    (("call", 4, dict(op=9)), "call 4 (unknown(9) of component 0): op 9 unknown"),
    (("call", 4, dict(outcome=8)), "call 4 (START of component 0): outcome 8 unknown"),
    (("call", 4, dict(outcome=6)), "call 4 (START of component 0): outcome ACK for a START call"),
    (("call", 8, dict(outcome=5)), "call 8 (DONE of component 0): outcome VALUE for a DONE call"),
    (("call", 4, dict(zero=1)), "call 4: byte 7 not zero"),
    (("call", 8, dict(entries=3)), "entries 3 with outcome ACK"),
    (("call", 0, dict(outcome=3)), "NEGATIVE with value 1024"),
    (("call", 0, dict(value=-3)), "estimate -3 is negative"),
    (("call", 4, dict(value=3)), "value 3 with outcome TABLE"),
    (("call", 4, dict(level=12)), "level 12 (0..9)"),
    (("call", 4, dict(generation=2)), "call 4 (START of component 0): generation 2, the dump is generation 1"),
    (("call", 4, dict(generation=0)), "generation 0, the dump is generation 1"),
    (("dir", 0, dict(magic=b"DBEDDIRX")), "directory: magic"),
    (("dir", 0, dict(component_entry_size=64)), "entry sizes 64 / 64 / 24 / 32"),
    (("dir", 0, dict(call_entry_size=32)), "entry sizes 128 / 64 / 32 / 32"),
    (("dir", 0, dict(violation_entry_size=24)), "entry sizes 128 / 64 / 24 / 24"),
    (("dir", 0, dict(level=4)), "directory: level 4, header says 3"),
    (("dir", 0, dict(generation=2)), "directory: generation 2, header says 1"),
    (("dir", 0, dict(estimate_bytes=5)), "directory: estimate_bytes 5, header says"),
    (("dir", 0, dict(zero=1)), "header bytes 56..63 not zero"),
    (("dir", 0, dict(call_count=11)), "directory: nonzero byte at partition offset"),
    (("dir", 0, dict(call_count=13)), "call 12 (unknown(0) of component 0): op 0 unknown"),
    (("dir", 0, dict(call_count=5000)), "need 121024 bytes, the slot has dir_bytes 98304"),
    (("dir", 0, dict(call_count=0xFFFFFFFF)), "exceed the reader's limit of 65536 records"),
    (("dir", 0, dict(violation_count=1)), "violation 0 (address 0x0): generation 0, the dump is generation 1"),
    (("dir", 0, dict(violation_count=1 << 20)), "exceed the reader's limit of 65536 records"),
])
def test_directory_violations(good_run, patch, expect):
    run = good_run
    kind, index, fields = patch
    getattr(run, {"comp": "patch_component", "area": "patch_area", "call": "patch_call"}.get(kind, "patch_dir_header"))(
        *([index] if kind != "dir" else []), **fields)
    d = read(run)
    assert d.status == "corrupt" and not d.directory_ok
    assert any(expect in f.message for f in d.findings), [f.message for f in d.findings]


def test_directory_beyond_its_slot_is_not_parsed(good_run):
    good_run.patch_dir_header(call_count=5000)
    d = read(good_run)
    assert d.calls == [] and d.components == []
    assert d.first_inconsistency.startswith("directory: 4 components, 7 areas, 5000 calls and 0 violations need")


def test_dir_bytes_larger_than_the_writers_is_accepted(make_run):
    run = make_run(dir_bytes=2 * 98304)
    assert read(run).status == "complete"


def test_dir_bytes_too_small_for_the_counts(good_run):
    good_run.set_header(area_count=2000)
    d = read(good_run)
    assert d.status == "corrupt"
    assert d.first_inconsistency == "leader: dir_bytes 98304 is not a page multiple holding 4 components and 2000 areas"


def test_violation_records_round_trip(make_run):
    run = make_run(samples="all")
    d = read(run)
    assert d.status == "complete", d.findings
    (v,) = d.violations
    c = d.components[v.component]
    assert (c.name, c.status_name, c.reason) == ("smp-pinviolator", "FAILED", 14)
    assert (v.address, v.error_code, v.op_name, v.generation) == (0x7000, 3, "START", 1)
    assert c.has(dumpfmt.ComponentFlag.PIN_VIOLATION) and c.flag_names == ["PIN_VIOLATION"]


@pytest.mark.parametrize("fields,expect", [
    (dict(component=99), "violation 0 (address 0x7000): component 99 does not exist"),
    (dict(op=0), "violation 0 (address 0x7000): op 0 against component 3 in generation 1"),
    (dict(op=7), "op 7 unknown"),
    (dict(generation=2), "generation 2, the dump is generation 1"),
    (dict(component=synth.NO_COMPONENT), "op 1 without a component"),
])
def test_violation_record_rules(make_run, fields, expect):
    run = make_run(samples=["smp-pinviolator"])
    run.patch_violation(0, **fields)
    d = read(run)
    assert d.status == "corrupt" and any(expect in f.message for f in d.findings), [f.message for f in d.findings]


def test_a_fault_replaying_a_saved_table_has_no_op(make_run):
    run = make_run(samples=["smp-classic"], generation=2, restart_reached=3,
                   violations=[synth.SViolation(0x7000, 0x1234, 1, 3, 0, generation=2)])
    d = read(run)
    assert d.violations[0].op_name == "none" and d.violations[0].component == 3
    assert not any("violation" in f.message for f in d.findings), d.findings


def test_a_facility_violation_cannot_end_in_a_complete_dump(make_run):
    v = synth.SViolation(0x7000, 0x1234, 3, synth.NO_COMPONENT, 0)
    assert read(make_run(violations=[v], state="failed")).status == "partial"
    d = read(make_run(violations=[v]))
    assert d.status == "corrupt"
    assert d.first_inconsistency == ("violation 0 (address 0x7000): a fault in the facility or a driver in "
                                     "generation 1, yet the dump is COMPLETE")


def test_sample_components_round_trip(make_run):
    run = make_run(samples="all", level=5)
    d = read(run)
    assert d.status == "complete", d.findings
    by_name = {c.name: c for c in d.components}
    F = dumpfmt.ComponentFlag
    assert by_name["ras-off"].status == dumpfmt.ComponentStatus.DISABLED
    assert by_name["ras-negative"].status_name == "EXCLUDED" and by_name["ras-negative"].reason == 61
    assert by_name["ras-levels"].level == 5 and by_name["ras-levels"].area_count == 6
    assert by_name["ras-early"].flags == F.RAS | F.UNLIMITED | F.ENDED_EARLY | F.CALL_ON_RESTART
    rtf = by_name["smp-rtnfail"]
    assert (rtf.failure_rv, rtf.failure_handle, rtf.status_name) == (-5, 0xD0B5EDF00D, "FAILED")
    assert by_name["smp-global"].global_buffer_bytes == 16384
    assert by_name["ras-private"].staging_bytes == 262144
    staged = [a.name for a in d.areas if a.staged]
    assert staged == ["glb.0", "prv.0"] and all(a.volatile for a in d.areas if a.staged)
    negative = [r for r in d.calls if r.outcome == dumpfmt.CallOutcome.NEGATIVE]
    assert [r.value for r in negative] == [-1, -2]
    assert d.header.estimate_bytes == sum(c.estimate_bytes for c in d.components)


# --- an older dump's trailer under an unfinished leader (the `stale` fault) --------------------


def _older_trailer(run, same_id: bool) -> bytes:
    header = dict(run.header, status=2)  # COMPLETE
    if not same_id:
        header["dump_id"] = bytes(reversed(run.header["dump_id"]))
    return synth.pack_header(header, run.registers).ljust(run.block_size, b"\0")


def test_an_older_dumps_trailer_under_an_unfinished_leader_is_ignored(make_run):
    run = make_run(state="in-progress")
    run.write(run.trailer_at, _older_trailer(run, same_id=False))
    dump = dumpfmt.read_image(run.image)
    assert dump.status == "partial", dump.reason
    assert dump.trailer is None and dump.stale_trailer is not None


def test_a_complete_trailer_of_the_same_dump_under_an_unfinished_leader_is_corrupt(make_run):
    run = make_run(state="in-progress")
    run.write(run.trailer_at, _older_trailer(run, same_id=True))
    assert dumpfmt.read_image(run.image).status == "corrupt"
