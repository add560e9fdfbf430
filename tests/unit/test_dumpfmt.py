"""The reader against the independent synthetic writer: round trips and classification."""

import struct

import pytest
import synth

from harness import dumpfmt
from harness.dumpfmt import PAGE


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

    assert [(c.name, c.kind, c.status, c.area_count) for c in d.components] == [
        (c.name, c.kind, c.status, len(c.areas)) for c in run.components
    ]
    assert [(a.name, a.phys_addr, a.length, a.disk_offset, a.volatile) for a in d.areas] == [
        (a.name, a.phys, a.length, a.disk_offset, a.volatile) for a in run.areas
    ]
    first = 0
    for c in d.components:
        assert c.first_area == first and all(a.component == c.index for a in d.component_areas(c))
        first += c.area_count

    assert len(d.crc_table) == -(-run.body_bytes // run.chunk_size) == d.chunk_count
    assert d.chunks_verified and d.bad_chunk_count == 0
    m = d.end_marker
    assert (m.magic, m.generation, m.dump_id, m.body_bytes, m.nchunks) == (
        b"DBEDEND\0", 1, run.dump_id, run.body_bytes, len(d.crc_table))
    rec = d.crash_record
    assert rec.magic == b"DBCRASH\0" and list(rec.registers) == run.registers
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
    assert dumpfmt.header_field_at(480) == "reserved_472"
    assert dumpfmt.header_field_at(511) == "header_crc"


@pytest.mark.parametrize("body,chunk", [
    (0, 65536), (4096, 65536), (4 << 30, 65536), ((4 << 30) + 4096, 131072), (9 << 30, 262144),
])
def test_writer_chunk_size(body, chunk):
    assert dumpfmt.writer_chunk_size(body) == chunk
    assert 4 * -(-body // chunk) <= 256 * 1024


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
    assert d.status == "partial" and d.first_inconsistency is None
    assert "IN_PROGRESS" in d.reason and "196608 of" in d.reason
    assert d.trailer is None and d.crc_table is None and not d.chunks_verified
    written = {a.name: d.area_written(a) for a in d.areas}
    # crash-record, kernel-text end within 196608 body bytes; kernel-data does not.
    assert written["crash-record"] and written["kernel-text"] and not written["kernel-data"]
    assert not written["ram-high"] and not written["console-log"]


def test_partial_failed_with_identical_trailer(make_run):
    run = make_run(state="failed", block_size=4096)
    d = read(run)
    assert d.status == "partial" and d.trailer_matches
    assert "FAILED: errno 5 at partition offset" in d.reason


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
    assert d.status == "corrupt" and d.first_inconsistency.startswith("trailer differs from the leader at byte 52 (failure)")


def test_in_progress_with_a_stale_trailer_is_corrupt(make_run):
    run = make_run(state="in-progress")
    run.header["generation"] = 7
    run.write_trailer()
    d = read(run)
    assert d.status == "corrupt" and "generation" in d.first_inconsistency


def test_in_progress_with_table_crc_is_corrupt(make_run):
    run = make_run(state="in-progress")
    run.set_header(crc_table_crc=0x1234)
    d = read(run)
    assert d.status == "corrupt" and "crc_table_crc" in d.first_inconsistency


def test_complete_without_trailer_is_corrupt(good_run):
    good_run.write(good_run.trailer_at, bytes(512))
    d = read(good_run)
    assert d.status == "corrupt" and d.first_inconsistency.startswith("trailer block: no header magic")


def test_leader_crc_damage_is_corrupt_and_read_through_the_trailer(good_run):
    good_run.flip(good_run.leader_at + 200)  # tsc_done
    d = read(good_run)
    assert d.status == "corrupt"
    assert d.first_inconsistency.startswith("leader: header CRC32C")
    assert d.header is d.trailer and d.geometry_ok and d.directory_ok and d.chunks_verified
    assert d.findings[1].message.startswith("trailer differs from the leader at byte 200 (tsc_done)")


@pytest.mark.parametrize("where,expect", [
    ("dir", "directory: CRC32C"),
    ("table", "CRC table: CRC32C"),
    ("end", "end marker: CRC32C"),
    ("slot", "leader slot: nonzero byte"),
    ("trailer-pad", "trailer block: nonzero byte"),
])
def test_structure_damage_is_corrupt(make_run, where, expect):
    run = make_run(block_size=4096)
    offset = {
        "dir": synth.DIR_AT + 3000,
        "table": run.table_offset + 8,
        "end": run.end_offset + 100,
        "slot": synth.LEADER + 1000,
        "trailer-pad": run.part_bytes - 100,
    }[where]
    run.flip(run.part_offset + offset)
    d = read(run)
    assert d.status == "corrupt" and d.first_inconsistency.startswith(expect), d.findings


def test_chunk_damage_names_chunk_offset_and_areas(good_run):
    run = good_run
    a = run.area("stack")
    run.flip(run.part_offset + a.disk_offset + 5)
    d = read(run)
    assert d.status == "corrupt" and d.bad_chunk_count == 1
    bc = d.bad_chunks[0]
    k = (a.disk_offset - run.body_offset) // run.chunk_size
    assert bc.index == k and bc.offset == run.body_offset + k * run.chunk_size
    assert "stack" in bc.areas
    assert d.first_inconsistency == bc.describe() and f"chunk {k} at partition offset 0x{bc.offset:x}" in bc.describe()


def test_chunk_spanning_areas_names_them_all(good_run):
    run = good_run
    # kernel-text ends inside a chunk that also holds the start of kernel-data
    a = run.area("kernel-data")
    run.flip(run.part_offset + a.disk_offset - 1)  # last padding byte of kernel-text
    d = read(run)
    assert {"kernel-text", "kernel-data"} <= set(d.bad_chunks[0].areas)
    assert any("padding" in f.message for f in d.findings)


def test_padding_damage_resealed_is_a_format_finding(good_run):
    run = good_run
    a = run.area("kernel-text")
    run.flip(run.part_offset + a.disk_offset + a.length + 10)
    run.reseal()
    d = read(run)
    assert d.status == "corrupt" and d.bad_chunk_count == 0
    assert d.first_inconsistency.startswith("area 1 (kernel-text): padding: nonzero byte")


@pytest.mark.parametrize("change,expect", [
    (dict(dir_offset=73728), "dir_offset 73728"),
    (dict(chunk_size=131072), "chunk_size 131072"),
    (dict(chunk_size=65537), "chunk_size 65537"),
    (dict(partition_bytes=1 << 40), "partition_bytes"),
    (dict(end_offset=1 << 30), "end_offset"),
    (dict(body_bytes=(1 << 63)), "body_bytes"),
    (dict(crc_table_bytes=8192), "crc_table_bytes 8192"),
    (dict(block_size=4096), "block_size 4096, but the device's block size is 512"),
    (dict(crash_vector=3), "crash_vector 3 for an NMI"),
    (dict(crash_reason=9), "crash_reason 9"),
    (dict(failure=5), "failure 5"),
    (dict(status=9), "status 9"),
    (dict(generation=0), "generation 0"),
    (dict(body_written=4096), "COMPLETE with body_written 4096"),
    (dict(version=2), "leader: version 2"),
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
    raw[480] = 1
    struct.pack_into("<I", raw, 508, synth.crc32c(raw[:508]))
    run.write(run.leader_at, raw)
    run.write(run.trailer_at, raw)
    d = read(run)
    assert d.status == "corrupt" and d.first_inconsistency == "leader: reserved bytes 472..507 not zero"


def _patch_dir(run, offset, fmt, value):
    raw = bytearray(run.read_part(offset, struct.calcsize("<" + fmt)))
    struct.pack_into("<" + fmt, raw, 0, value)
    run.write_part(offset, bytes(raw))
    run.reseal()


@pytest.mark.parametrize("patch,expect", [
    (("comp", 0, 32, "I", 9), "component 0 (crash): kind 9 unknown"),
    (("comp", 1, 36, "I", 2), "component 1 (kernel): EXCLUDED but has 2 areas"),
    (("comp", 1, 40, "I", 5), "component 1 (kernel): DUMPED with reason 5"),
    (("comp", 2, 44, "I", 4), "component 2 (ram): its area 6 (console-log) names component 3"),
    (("comp", 3, 48, "I", 9), "beyond the 7 area entries"),
    (("comp", 3, 52, "I", 1), "flags 0x1"),
    (("comp", 0, 0, "4s", b"a\0b\0"), "not NUL-padded ASCII"),
    (("comp", 0, 0, "4s", b"\xffab\0"), "not NUL-padded ASCII"),
    (("area", 2, 40, "Q", 0x99000), "area 2 (kernel-data): disk_offset 0x99000"),
    (("area", 2, 32, "Q", 0x1E000), "area 3 (ram-low): disk_offset"),
    (("area", 6, 32, "Q", 1 << 62), "beyond the body end"),
    (("area", 6, 32, "Q", 0), "areas fill 7991296 body bytes, header says body_bytes 7995392"),
    (("area", 5, 48, "I", 0), "outside the area range of its component 0"),
    (("area", 5, 48, "I", 40), "component 40 does not exist"),
    (("area", 0, 52, "I", 0), "crash record area is not marked VOLATILE"),
    (("area", 0, 32, "Q", 2048), "one area of 1024 bytes"),
    (("area", 3, 52, "I", 2), "flags 0x2"),
    (("area", 3, 56, "Q", 1), "reserved field not zero"),
    (("area", 3, 24, "Q", (1 << 64) - 4096), "overflows 64 bits"),
    (("dir", 0, 0, "8s", b"DBEDDIRX"), "directory: magic"),
    (("dir", 0, 16, "I", 128), "entry sizes 128"),
    (("dir", 0, 40, "I", 1), "header bytes 24..63 not zero"),
    (("dir", 0, 4000, "I", 1), "nonzero byte at partition offset 0x11fa0 after the last entry"),
])
def test_directory_violations(good_run, patch, expect):
    run = good_run
    kind, index, field, fmt, value = patch
    base = {"comp": run.component_entry_at, "area": run.area_entry_at, "dir": lambda i: synth.DIR_AT}[kind](index)
    _patch_dir(run, base + field, fmt, value)
    d = read(run)
    assert d.status == "corrupt" and not d.directory_ok
    assert any(expect in f.message for f in d.findings), [f.message for f in d.findings]


def test_crash_record_findings_do_not_change_classification(good_run):
    run = good_run
    raw = bytearray(run.area("crash-record").data)
    struct.pack_into("<Q", raw, 48 + 16 * 8, 0x1234)  # rip
    raw[20] = 1  # cpu
    run.set_crash_record(bytes(raw))
    run.reseal()
    d = read(run)
    assert d.status == "complete"
    messages = [f.message for f in d.findings_for("crash-record")]
    assert messages[0] == "crash record: cpu 1, expected 0"
    assert messages[1].startswith("crash record: register rip 0x1234, header says")


def test_extra_excluded_component_is_format_valid(make_run):
    run = make_run(extra_components=[synth.SComponent("nic", synth.OTHER, synth.EXCLUDED, reason=19)])
    d = read(run)
    assert d.status == "complete"
    assert d.components[-1].status_name == "EXCLUDED" and d.components[-1].reason == 19


def test_skip_chunk_verification(good_run):
    d = read(good_run, verify_chunks=False)
    assert d.status == "corrupt" and d.first_inconsistency == "chunk CRCs not verified"


@pytest.mark.parametrize("step", [16384, 65536, 3 * 65536])
def test_chunks_checked_whatever_the_read_step(good_run, monkeypatch, step):
    """Chunks bigger than the read step are CRCed in pieces (huge bodies have huge chunks)."""
    monkeypatch.setattr(dumpfmt, "_STEP", step)
    assert read(good_run).status == "complete"
    good_run.flip(good_run.area_disk_offset("ram-high") + 70000)
    d = read(good_run)
    assert d.bad_chunk_count == 1 and d.bad_chunks[0].areas == ("ram-high",)
    assert d.findings_for("chunk-crc")[0].offset == d.bad_chunks[0].offset
