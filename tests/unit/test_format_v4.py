"""Dump format version 4 (docs/dump-format.md, "Compressed bodies", "Version 3"): compressed
synthetic dumps (tests/support/synth.py, compress=True) through the reader and every oracle;
each frame rule broken alone (the dump resealed, so that only that rule breaks) and named; a
self-consistent wrong compressed dump caught by the content oracle; version 3 dumps still read.
"""

import json
import random
import re
import struct

import pytest
import synth
from hypothesis import HealthCheck, given, settings, strategies as st

from dumpbed.oracles.validate import dump_summary, validate_image, validate_run
from dumpbed.reader import dumpfmt, frames
from dumpbed.reader.show import show

MiB = 1 << 20


def read(run, **kw):
    return dumpfmt.read(run.image, run.part_offset, run.part_bytes, run.block_size, **kw)


def corrupt_with(run, first: str) -> dumpfmt.Dump:
    d = read(run)
    assert d.status == "corrupt" and d.first_inconsistency == first, [f.message for f in d.findings]
    return d


def failed(v) -> set[str]:
    return {c.name for c in v.checks if not c.ok}


def frame_at(run, name: str, k: int) -> int:
    """Partition offset of frame k of an area (synth's own record of where its frames end)."""
    a = run.area(name)
    return a.disk_offset + (a.frame_ends[k - 1] if k else 0)


def frame_header(run, name: str, k: int) -> tuple[int, int, int, int]:
    """(kind, raw_bytes, payload_bytes, raw_crc) of frame k of an area, as on disk."""
    return struct.unpack("<IIII", run.read_part(frame_at(run, name, k), 16))


def first_frame(run, name: str, kind: int) -> int:
    a = run.area(name)
    return next(k for k in range(len(a.frame_ends)) if frame_header(run, name, k)[0] == kind)


def set_frame_header(run, name: str, k: int, **fields) -> None:
    """Rewrite fields of a frame header on disk, every CRC resealed (only the frame rule breaks)."""
    values = dict(zip(("kind", "raw_bytes", "payload_bytes", "raw_crc"), frame_header(run, name, k)), **fields)
    run.write_part(frame_at(run, name, k), struct.pack("<IIII", *values.values()))
    run.reseal()


def frame_note(run, name: str, k: int, problem: str) -> str:
    return f"area {run.area_index(name)} ({name}): frame {k} at partition offset 0x{frame_at(run, name, k):x}: {problem}"


@pytest.fixture
def lz4_run(make_run):
    """A complete compressed run: its frames LZ4 where memory compresses (synth.COMPRESSIBLE),
    RAW elsewhere; it reads complete with no finding."""
    run = make_run(compress=True, samples="default")
    d = read(run)
    assert d.status == "complete" and d.findings == [], d.findings
    return run


# -- good compressed dumps -----------------------------------------------------------------------


@pytest.mark.parametrize("options", [
    dict(), dict(block_size=4096), dict(samples="all", generation=2), dict(ram_bytes=96 * MiB),
], ids=["plain", "b4096", "restarted-samples", "checkpoint-inside-an-area"])
def test_a_compressed_run_passes_every_oracle(make_run, options):
    run = make_run(compress=True, **options)
    v = validate_run(run.dir)
    assert v.ok and failed(v) == set(), [(c.name, c.detail) for c in v.checks if not c.ok]
    assert validate_image(run.image).ok
    d = v.dump
    assert (d.header.version, d.compression) == (4, 1)
    kinds = {f.kind for index in d.frame_indexes.values() for f in index.frames}
    assert kinds == {frames.KIND_LZ4, frames.KIND_RAW}  # both kinds were read and decoded
    assert len(d.frame_indexes) == len(d.areas) and v.content.bytes_checked > 0
    high = d.areas[run.area_index("ram-high")]
    assert high.stored_bytes == run.area("ram-high").stored_bytes < high.length  # LZ4 made it smaller


def test_the_report_and_show_say_compression_and_stored_bytes(lz4_run):
    run = lz4_run
    d = read(run)
    summary = dump_summary(d)
    assert summary["compression"] == "lz4"
    assert [(a["length"], a["stored_bytes"]) for a in summary["areas"]] == [
        (a.length, a.stored_bytes) for a in run.areas]
    text = show(run.image, width=200)
    assert "compression      lz4 (version 4)" in text
    high = run.area("ram-high")
    assert re.search(rf"│ {high.length} +│ +{high.stored_bytes} │", text), text
    plain = dump_summary(read(synth.make_run(run.dir.parent / "plain")))
    assert plain["compression"] == "none" and all(a["stored_bytes"] == a["length"] for a in plain["areas"])


# -- version 3 -----------------------------------------------------------------------------------


def test_a_v3_dump_still_reads_complete(make_run):
    run = make_run(version=3, samples="default")
    d = read(run, dump_id=run.dump_id)
    assert d.status == "complete" and d.findings == [], d.findings
    assert (d.header.version, d.compression, d.end_marker.version, d.crash_record.version) == (3, 0, 3, 3)
    assert all(a.stored_bytes == a.length for a in d.areas)
    assert run.read_part(run.area_entry_at(3) + 56, 8) == bytes(8)  # the reserved bytes on disk
    assert validate_run(run.dir).ok


def test_a_v3_header_with_compression_set_is_corrupt(make_run):
    run = make_run(version=3)
    run.set_header(compression=1)
    corrupt_with(run, "leader: reserved bytes 496..507 not zero (version 3)")


def test_a_v3_area_entry_with_stored_bytes_is_corrupt(make_run):
    run = make_run(version=3)
    run.patch_area(3, stored_bytes=run.area("ram-low").length)  # what version 4 would say there
    corrupt_with(run, "area 3 (ram-low): bytes 56..63 not zero (reserved in version 3)")


def test_a_v3_end_marker_carries_version_3(make_run):
    run = make_run(version=3)
    raw = bytearray(run.end_marker())
    struct.pack_into("<I", raw, 8, 4)
    struct.pack_into("<I", raw, 4092, synth.crc32c(bytes(raw[:4092])))
    run.write_part(run.end_offset, bytes(raw))
    corrupt_with(run, "end marker: version 4, the header's is 3")


@pytest.mark.parametrize("version", [5, 0xFFFFFFFF])
def test_a_later_version_is_unsupported(good_run, version):
    good_run.set_header(version=version)
    d = read(good_run)
    assert d.status == "unsupported" and d.version == version and d.findings == []
    assert d.reason == f"a version {version} dump: this reader reads versions 3 and 4 only"


# -- header rules ----------------------------------------------------------------------------------


def test_compression_is_0_or_1(lz4_run):
    lz4_run.set_header(compression=2)
    corrupt_with(lz4_run, "leader: compression 2 (0 none, 1 LZ4 frames)")


def test_e2big_only_with_compression(make_run):
    assert read(make_run(compress=True, state="failed", failure=synth.E2BIG)).status == "partial"
    run = make_run(state="failed", failure=synth.E2BIG)
    corrupt_with(run, "leader: failure E2BIG with compression 0 (only a compressed dump outgrows its partition so)")


def test_enospc_only_without_compression(make_run):
    assert read(make_run(state="failed", failure=synth.ENOSPC)).status == "partial"
    run = make_run(compress=True, state="failed", failure=synth.ENOSPC)
    corrupt_with(run, "leader: failure ENOSPC with compression 1 (a compressed dump that does not fit ends with E2BIG)")


def test_an_early_trailer_keeps_the_leaders_compression(make_run):
    """A COMPLETE trailer under the last checkpoint's leader (the commit had not landed)."""
    run = make_run(compress=True)
    run.write(run.leader_at, run.previous_leader())
    assert read(run).status == "partial"
    trailer = synth.pack_header(dict(run.header, compression=0), run.registers)
    run.write(run.trailer_at, trailer.ljust(run.block_size, b"\0"))
    corrupt_with(run, "trailer: version 4 / compression 0, the leader's 4 / 1")


# -- frame rules, each broken alone ----------------------------------------------------------------


def test_a_flipped_payload_byte_is_named(lz4_run):
    run = lz4_run
    k = first_frame(run, "ram-high", frames.KIND_LZ4)
    run.flip(run.part_offset + frame_at(run, "ram-high", k) + 16 + 40)
    run.reseal()
    d = read(run)
    assert d.status == "corrupt" and d.chunks_verified and d.bad_chunk_count == 0
    assert d.first_inconsistency.startswith(frame_note(run, "ram-high", k, ""))
    assert any(why in d.first_inconsistency for why in ("does not decode", "raw_crc says", "decodes to"))


def test_a_wrong_raw_crc_is_named(lz4_run):
    run = lz4_run
    kind, raw, payload, crc = frame_header(run, "ram-high", 2)
    set_frame_header(run, "ram-high", 2, raw_crc=crc ^ 1)
    corrupt_with(run, frame_note(run, "ram-high", 2, f"data CRC32C 0x{crc:08x}, raw_crc says 0x{crc ^ 1:08x}"))


def test_a_bad_kind_is_named(lz4_run):
    set_frame_header(lz4_run, "kernel-text", 1, kind=3)
    corrupt_with(lz4_run, frame_note(lz4_run, "kernel-text", 1, "kind 3 (1 LZ4, 2 RAW)"))


def test_an_lz4_frame_no_smaller_than_its_data_is_named(lz4_run):
    run = lz4_run
    k = first_frame(run, "ram-high", frames.KIND_RAW)  # its payload the data: 65536 bytes
    set_frame_header(run, "ram-high", k, kind=frames.KIND_LZ4)
    corrupt_with(run, frame_note(run, "ram-high", k, "LZ4 with payload_bytes 65536 (1..raw_bytes - 1 = 65535: "
                                                     "else it is stored RAW)"))


def test_a_raw_frame_whose_payload_is_not_its_data_is_named(lz4_run):
    run = lz4_run
    k = first_frame(run, "ram-high", frames.KIND_LZ4)
    payload = frame_header(run, "ram-high", k)[2]
    set_frame_header(run, "ram-high", k, kind=frames.KIND_RAW)
    corrupt_with(run, frame_note(run, "ram-high", k, f"RAW with payload_bytes {payload} != raw_bytes 65536"))


def test_a_short_frame_that_is_not_the_last_is_named(lz4_run):
    set_frame_header(lz4_run, "ram-high", 0, raw_bytes=65535)
    corrupt_with(lz4_run, frame_note(lz4_run, "ram-high", 0, "raw_bytes 65535, expected 65536 (65536, the area's last "
                                                             "frame the rest of its length)"))


def test_stored_bytes_one_too_many(lz4_run):
    run = lz4_run
    i, a = next((i, a) for i, a in enumerate(run.areas) if a.stored_bytes % 4096 not in (0, 4095))
    run.patch_area(i, stored_bytes=a.stored_bytes + 1)  # the same page rounding: the layout holds
    n = len(a.frame_ends)
    corrupt_with(run, f"area {i} ({a.name}): its {n} frames take {a.stored_bytes} bytes, stored_bytes says "
                      f"{a.stored_bytes + 1}")


def test_stored_bytes_one_too_few(lz4_run):
    """The stack's data made to end in zeros, so that its last stored byte is 0: one byte less
    leaves its padding zero, and only the frame rule breaks."""
    run = lz4_run
    a = run.area("stack")
    a.data = a.data[:-1024] + bytes(1024)
    run.replay()
    assert a.stored[-1] == 0 and a.stored_bytes % 4096 != 1 and read(run).status == "complete"
    run.patch_area(run.area_index("stack"), stored_bytes=a.stored_bytes - 1)
    k = len(a.frame_ends) - 1
    end = a.disk_offset + a.stored_bytes
    corrupt_with(run, frame_note(run, "stack", k, f"ends at 0x{end:x}, past the area's stored_bytes "
                                                  f"{a.stored_bytes - 1} (to 0x{end - 1:x})"))


def test_nonzero_padding_after_the_frames_is_named(lz4_run):
    run = lz4_run
    i, a = next((i, a) for i, a in enumerate(run.areas) if a.stored_bytes % 4096)
    run.write_part(a.disk_offset + a.stored_bytes + 3, b"\x01")
    run.reseal()
    corrupt_with(run, f"area {i} ({a.name}): padding: nonzero byte at partition offset "
                      f"0x{a.disk_offset + a.stored_bytes + 3:x}")


def test_an_unread_frame_of_an_area_in_unsealed_chunks_fails_the_content_only(make_run):
    """A partial dump: an area written but not wholly in sealed chunks is not the reader's to
    vouch for; its damaged frame is the content oracle's to find (never a traceback)."""
    run = make_run(compress=True, state="in-progress", body_written=0x1A3000, cut_inside=True)
    d = read(run)
    high = d.areas[run.area_index("ram-high")]
    assert d.status == "partial" and d.area_written(high) and not d.area_sealed(high)
    k = high.length // 65536 - 1  # its last whole frame, beyond the sealed chunks
    kind, raw, payload, crc = frame_header(run, "ram-high", k)
    run.write_part(frame_at(run, "ram-high", k) + 12, struct.pack("<I", crc ^ 1))
    run.reseal()  # (the write log no longer explains the disk: consistency fails too)
    assert read(run).status == "partial"
    v = validate_run(run.dir)
    assert "content" in failed(v)
    assert frame_note(run, "ram-high", k, "data CRC32C") in v.check("content").detail


# -- a self-consistent wrong dump ------------------------------------------------------------------


def test_frames_made_from_the_wrong_data_read_complete_but_fail_the_content(lz4_run):
    """The lz4-stuck bug: every frame of an area made from its first 64 KiB, raw_crc that of
    that data. The format holds; the content oracle alone sees it."""
    run = lz4_run
    a = run.area("ram-high")
    a.data = (a.data[:65536] * (len(a.data) // 65536 + 1))[:len(a.data)]
    run.replay()
    v = validate_run(run.dir)
    assert v.dump.status == "complete" and failed(v) == {"content"}
    detail = v.check("content").detail
    assert detail.startswith(f"area {run.area_index('ram-high')} (ram-high): first mismatch at phys 0x1580"), detail
    assert "of the area, in its frame 1): dump 0x" in detail


# -- a partial area --------------------------------------------------------------------------------


def test_a_partial_area_is_read_as_far_as_its_whole_frames(make_run):
    """Cut inside ram-high at a chunk boundary: the partial area lies in sealed chunks, its
    whole frames are checked and compared, the start of the next frame after them is not read."""
    run = make_run(compress=True, state="in-progress", body_written=0x1A0000, cut_inside=True)
    d = read(run)
    assert d.status == "partial" and d.findings == [], d.findings
    i = run.area_index("ram-high")
    high = d.areas[i]
    assert d.partial_area == i and d.area_sealed(high)
    assert high.length % 65536 == 0 and 0 < high.length < run.area("ram-high").length
    assert high.stored_bytes == run.body_offset + 0x1A0000 - high.disk_offset
    whole = len(d.frame_indexes[i].frames)
    assert whole * 65536 == high.length
    tail = frame_at(run, "ram-high", whole)  # the next frame's start, cut by stored_bytes
    assert high.disk_offset + high.stored_bytes - tail > 16
    v = validate_run(run.dir)
    assert failed(v) == set(), [(c.name, c.detail) for c in v.checks if not c.ok]
    assert v.content.bytes_checked >= high.length
    assert d.read_area(dumpfmt.Image(run.image), high, 0, high.length) == run.area("ram-high").data[:high.length]

    run.write_part(tail, b"\xee" * (high.disk_offset + high.stored_bytes - tail))  # garbage, resealed
    run.reseal()
    assert read(run).status == "partial"
    run.flip(run.part_offset + tail - 1)  # the last byte of the last whole frame
    run.reseal()
    assert read(run).first_inconsistency.startswith(frame_note(run, "ram-high", whole - 1, ""))


def test_a_partial_area_with_a_whole_frame_left_out_is_corrupt(make_run):
    run = make_run(compress=True, state="in-progress", body_written=0x1A0000, cut_inside=True)
    i = run.area_index("ram-high")
    entry = read(run).areas[i]
    run.patch_area(i, length=entry.length - 65536)
    run.patch_component(2, dumped_bytes=sum(a.length for a in read(run).areas if a.component == 2))
    d = read(run)
    assert d.status == "corrupt"
    assert d.first_inconsistency.startswith(f"area {i} (ram-high): a whole frame follows its "
                                            f"{entry.length // 65536 - 1} frames"), d.first_inconsistency


def test_a_cut_area_that_is_not_partial_is_corrupt(lz4_run):
    """Only the PARTIAL component's last area of an unfinished dump may stop short of its frames."""
    run = lz4_run
    i, a = next((i, a) for i, a in enumerate(run.areas) if a.stored_bytes % 4096 not in (0, 4095))
    run.patch_area(i, stored_bytes=a.stored_bytes + 1)
    assert read(run).first_inconsistency.endswith(f"stored_bytes says {a.stored_bytes + 1}")


# -- the accessor ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def twin_dumps(tmp_path_factory):
    """The same run written plain and compressed (same seed, same memory)."""
    base = tmp_path_factory.mktemp("twins")
    runs = [synth.make_run(base / name, compress=compress, samples="default")
            for name, compress in (("plain", False), ("lz4", True))]
    dumps = [read(run) for run in runs]
    images = [dumpfmt.Image(run.image) for run in runs]
    yield runs, dumps, images
    for image in images:
        image.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_read_area_is_the_same_data_compressed_or_not(twin_dumps, data):
    (plain_run, _), (plain, lz4), (plain_image, lz4_image) = twin_dumps[0], twin_dumps[1], twin_dumps[2]
    index = data.draw(st.integers(0, len(plain.areas) - 1), label="area")
    a, b = plain.areas[index], lz4.areas[index]
    pos = data.draw(st.integers(-10, a.length + 10), label="pos")
    n = data.draw(st.one_of(st.integers(0, 70000), st.integers(0, a.length + 10)), label="n")
    want = plain_run.areas[index].data[max(0, pos):max(0, pos + n)] if pos >= 0 else b""
    assert plain.read_area(plain_image, a, pos, n) == want
    assert lz4.read_area(lz4_image, b, pos, n) == want


def test_read_area_decodes_only_the_frames_it_needs(lz4_run):
    run = lz4_run
    d = read(run)
    a = d.areas[run.area_index("ram-high")]

    class Counting(dumpfmt.Image):
        reads: list = []

        def read(self, offset, length):
            self.reads.append(length)
            return super().read(offset, length)

    with Counting(run.image) as image:
        assert d.read_area(image, a, 65536 * 3 + 5, 100) == run.area("ram-high").data[65536 * 3 + 5:65536 * 3 + 105]
        assert len(image.reads) == 1 and image.reads[0] <= 65536 + 16  # one frame's bytes, one read
        image.reads.clear()
        assert d.read_area(image, a, 65536 * 3 + 200, 65536) == \
            run.area("ram-high").data[65536 * 3 + 200:65536 * 4 + 200]
        assert image.reads[0] <= 65536 + 16  # frame 3 came from the cache: frame 4 read alone


def test_a_truncated_compressed_image_raises_a_dumpbed_error(lz4_run, tmp_path):
    run = lz4_run
    d = read(run)
    a = d.areas[run.area_index("ram-high")]
    cut = run.image.read_bytes()[:run.part_offset + a.disk_offset + 100000]
    with dumpfmt.Image(cut) as image, pytest.raises(frames.AreaDataError, match="lie past the image"):
        d.read_area(image, a, 0, a.length)


def test_report_of_a_compressed_run_validates(make_run):
    from jsonschema import Draft202012Validator

    from dumpbed import report

    schema = json.loads((synth.Path(__file__).resolve().parents[2] / "docs" / "report.schema.json").read_text())
    run = make_run(compress=True)
    scenario = json.loads((run.dir / "scenario.json").read_text())
    rep = report.build(run.dir, validate_run(run.dir).to_dict(), {"validate": 0.1}, scenario=scenario)
    assert rep["dump"]["compression"] == "lz4" and "stored_bytes" in rep["dump"]["areas"][0]
    assert list(Draft202012Validator(schema).iter_errors(rep)) == []
    rep["dump"]["compression"] = "zstd"
    assert list(Draft202012Validator(schema).iter_errors(rep))


# -- the compression the run asked for (scenario.json's `compress`: the format check) -------------


@pytest.mark.parametrize("compress,asked", [(True, "off"), (False, "lz4")])
def test_a_dump_not_compressed_as_the_run_asked_fails_the_format_check(make_run, compress, asked):
    """A guest that ignores the command line's compress word (or compresses unasked) writes a
    valid dump of the wrong kind: only the harness knows what it asked for."""
    run = make_run(compress=compress)
    assert validate_run(run.dir).ok
    scenario = json.loads((run.dir / "scenario.json").read_text())
    scenario["compress"] = asked
    (run.dir / "scenario.json").write_text(json.dumps(scenario))
    v = validate_run(run.dir)
    assert failed(v) == {"format"}
    detail = next(c.detail for c in v.checks if c.name == "format")
    assert f"the run asked for {'none' if asked == 'off' else asked}" in detail
    del scenario["compress"]  # an older run's scenario.json: any compression
    (run.dir / "scenario.json").write_text(json.dumps(scenario))
    assert validate_run(run.dir).ok


def test_the_elf_core_of_a_compressed_dump_is_that_of_the_plain_one(twin_dumps, tmp_path):
    """`dumpbed export` reads areas through the one accessor: the same memory, compressed or
    not, makes the same PT_LOAD contents (the twins differ only in their dump ids and bodies)."""
    from dumpbed.reader import elfcore

    (plain_run, lz4_run), _, _ = twin_dumps
    cores = [tmp_path / "plain.elf", tmp_path / "lz4.elf"]
    for run, core in zip((plain_run, lz4_run), cores):
        elfcore.export(run.dir, core)
    plain, packed = (c.read_bytes() for c in cores)
    assert len(plain) == len(packed) and plain == packed



def test_a_compressed_dump_whose_frame_fails_its_crc_is_not_exported(make_run, tmp_path):
    """Memory a frame's raw_crc does not vouch for never reaches a core (chunk CRCs resealed,
    so only the frame is wrong)."""
    from dumpbed.errors import DumpbedError
    from dumpbed.reader import elfcore

    run = make_run(compress=True)
    elfcore.export(run.dir, tmp_path / "good.elf")
    run.flip(run.part_offset + run.area("ram-high").disk_offset + 40)  # inside frame 0's payload
    run.reseal()
    with pytest.raises(DumpbedError, match="no dump to export: the dump is corrupt"):
        elfcore.export(run.dir, tmp_path / "bad.elf")
    assert not (tmp_path / "bad.elf").exists()


def test_a_cached_read_decodes_a_frame_again_once_its_bytes_changed(make_run):
    """The cache the consistency oracle shares between reads of one disk keeps the frames that
    decoded, by the CRCs of the chunks holding them: the same bytes are not decoded again, a
    frame whose bytes changed is (here: resealed, so only its own raw_crc can tell)."""
    run = make_run(compress=True)
    cache = dumpfmt.ReadCache()
    assert read(run, cache=cache).status == "complete"
    assert cache.decoded.frames  # the frames that decoded, kept for the next read
    assert read(run, cache=cache).status == "complete"
    a = run.area("ram-high")
    run.flip(run.part_offset + a.disk_offset + 40)  # frame 0's payload
    run.reseal()
    d = read(run, cache=cache)
    assert d.status == "corrupt" and "frame 0" in d.first_inconsistency


def test_a_scenario_asking_for_an_unknown_compression_is_refused_before_any_check(make_run):
    from dumpbed.errors import DumpbedError

    run = make_run()
    scenario = json.loads((run.dir / "scenario.json").read_text())
    scenario["compress"] = "zstd"
    (run.dir / "scenario.json").write_text(json.dumps(scenario))
    with pytest.raises(DumpbedError, match="scenario compress must be one of off, lz4, not 'zstd'"):
        validate_run(run.dir)


# -- the fast paths of compressed data: decoding into the caller's buffer, the runs of decoded
# frames a walk takes at once, the store of decoded frames a validation keeps --------------------------


def _area_bytes(data: bytes, at: int = 4096) -> tuple[bytearray, int, frames.Read]:
    """A partition holding one area's frames (synth's) at `at`: (its bytes, the frames' size, a Read)."""
    stored, ends = synth.frames_of(data)
    part = bytearray(at) + bytearray(stored) + bytearray(4096)
    return part, len(stored), lambda off, n: bytes(part[off:off + n]) if 0 <= off and off + n <= len(part) else None


def _span_of(part: bytearray, chunk: int = 4096):
    """Decoded's span: the CRCs of the 4 KiB chunks holding [start, end), as the bytes are now."""
    return lambda s, e: tuple(dumpfmt.crc32c(part[c:c + chunk]) for c in range(s // chunk * chunk, e, chunk))


NOISE = random.Random(7).randbytes(6 * 65536)  # stored RAW
MIXED = bytes(65536) + NOISE[:2 * 65536] + bytes(100)  # LZ4, RAW, RAW, LZ4 short last frame


def test_decode_into_checks_a_raw_frame_without_a_buffer():
    data = bytes((i * 7 + 3) % 251 for i in range(1000))
    good = frames.Frame(0, frames.KIND_RAW, 1000, 1000, dumpfmt.crc32c(data))
    assert frames.decode_into(good, memoryview(data), None) is None
    out = bytearray(1000)
    assert frames.decode_into(good, memoryview(data), memoryview(out)) is None and out == data
    bad = frames.Frame(0, frames.KIND_RAW, 1000, 1000, good.raw_crc ^ 1)
    assert "data CRC32C" in frames.decode_into(bad, memoryview(data), None)
    assert "data CRC32C" in frames.decode_into(bad, memoryview(data), memoryview(out))


def test_decode_range_decodes_into_the_callers_buffer():
    part, size, read = _area_bytes(MIXED)
    fi = frames.walk(read, "area", 4096, len(MIXED), size, False, decode=True)
    assert fi.problem is None and len(fi.frames) == 4
    out = bytearray(4 * 65536 + 7)
    view = frames.decode_range(read, fi, 1, 3, out=out)
    assert view.obj is out and bytes(view) == MIXED[65536:] and out[:len(view)] == MIXED[65536:]
    assert bytes(frames.decode_range(read, fi, 0, 3)) == MIXED  # a new buffer
    with pytest.raises(ValueError):
        frames.decode_range(read, fi, 0, 3, out=bytearray(100))  # too small: never a short view
    assert fi.frames[1].kind == frames.KIND_RAW
    part[fi.frames[1].offset + 16 + 5] ^= 1  # in its payload
    # An index whose walk decoded every frame vouches for their CRCs: decoding them again takes
    # its word (the content oracle compares the data itself). One walked without decoding does
    # not: its frames are checked as they are decoded.
    assert fi.checked and bytes(frames.decode_range(read, fi, 0, 3, out=out)) != MIXED
    unchecked = frames.walk(read, "area", 4096, len(MIXED), size, False, decode=False)
    assert not unchecked.checked and unchecked.frames == fi.frames
    with pytest.raises(frames.AreaDataError, match="frame 1 at partition offset .*data CRC32C"):
        frames.decode_range(read, unchecked, 0, 3, out=out)


@pytest.mark.parametrize("pos,n,size", [
    (0, 4 * 65536, 4 * 65536), (0, 65536 + 100, 4 * 65536), (65536, 65536 * 2, 65536 * 2),  # straight into out
    (100, 65536, 4 * 65536), (0, 3000, 3000), (65536 * 3, 65536, 200),  # through a buffer of its own
])
def test_read_area_into_a_buffer_is_the_data(lz4_run, pos, n, size):
    run = lz4_run
    d = read(run)
    a = d.areas[run.area_index("ram-high")]
    want = run.area("ram-high").data[pos:pos + n]
    out = bytearray(b"\xaa" * size)
    with dumpfmt.Image(run.image) as image:
        got = d.read_area(image, a, pos, n, out)
        assert isinstance(got, memoryview) and got.obj is out and bytes(got) == want
        assert out[:len(want)] == want
        got = d.read_area(image, a, pos, n, out)  # again: the frame kept from the last read
        assert bytes(got) == want


def _counting_decodes(monkeypatch) -> list:
    decoded = []
    real = frames.decode_into

    def counting(frame, payload, out=None, **options):
        decoded.append(frame.offset)
        return real(frame, payload, out, **options)

    monkeypatch.setattr(frames, "decode_into", counting)
    return decoded


def test_a_walk_takes_the_run_of_frames_the_last_walk_took(monkeypatch):
    data = NOISE  # six RAW frames
    part, size, read = _area_bytes(data)
    kept = frames.DecodedStore()
    runs = kept.runs
    decoded = frames.Decoded(kept, _span_of(part))
    looked = []
    monkeypatch.setattr(frames.Decoded, "known", lambda self, at: looked.append(at))  # frame by frame: none
    counted = _counting_decodes(monkeypatch)
    assert frames.walk(read, "area", 4096, len(data), size, False, True, decoded).problem is None
    assert len(counted) == 6 and list(runs) == [4096] and len(runs[4096][0]) == 6
    counted.clear(), looked.clear()
    fi = frames.walk(read, "area", 4096, len(data), size, False, True, decoded)
    assert fi.problem is None and len(fi.frames) == 6
    assert counted == [4096 + 5 * (65536 + 16)] and len(looked) == 1  # only the area's last frame
    # a shorter area of the same bytes: the run's frame 4 is its last, short of 65536: checked as any frame
    counted.clear()
    fi = frames.walk(read, "area", 4096, 5 * 65536 - 100, 5 * (65536 + 16), False, True, decoded)
    assert fi.problem.startswith("frame 4 at partition offset") and "raw_bytes 65536, expected 65436" in fi.problem
    assert len(fi.frames) == 4
    # a byte of the run changed: the run is not taken, its frames are decoded again
    part[4096 + 2 * (65536 + 16) + 16 + 9] ^= 1
    counted.clear()
    fi = frames.walk(read, "area", 4096, len(data), size, False, True, decoded)
    assert fi.problem.startswith("frame 2 at partition offset") and "data CRC32C" in fi.problem
    assert len(counted) == 3 and len(fi.frames) == 2


def test_a_run_is_never_taken_past_the_areas_stored_bytes():
    data = NOISE[:4 * 65536]
    part, size, read = _area_bytes(data)
    decoded = frames.Decoded(frames.DecodedStore(), _span_of(part))
    assert frames.walk(read, "area", 4096, len(data), size, False, True, decoded).problem is None
    fi = frames.walk(read, "area", 4096, len(data), 2 * (65536 + 16) + 10, False, True, decoded)
    assert fi.problem.startswith("frame 2 at partition offset") and "past the area's stored_bytes" in fi.problem


def test_the_store_of_decoded_frames_is_bounded(monkeypatch):
    monkeypatch.setattr(frames, "FRAMES_KEPT", 3)
    monkeypatch.setattr(frames, "RUNS_KEPT", 2)
    data = NOISE[:5 * 65536]
    part, size, read = _area_bytes(data)
    kept = frames.DecodedStore()
    store, runs = kept.frames, kept.runs
    decoded = frames.Decoded(kept, _span_of(part))
    for at in range(5):
        decoded.add(frames.Frame(4096 + at * (65536 + 16), frames.KIND_RAW, 65536, 65536, 0))
        assert 0 < len(store) <= 3
    for k in range(4):
        decoded.add_run([frames.Frame(4096 + k * (65536 + 16), frames.KIND_RAW, 65536, 65536, 0)])
        assert 0 < len(runs) <= 2


def test_a_read_without_a_cache_decodes_every_frame_and_leaves_them_for_the_cached_reads(lz4_run, monkeypatch):
    run = lz4_run
    store = frames.DecodedStore()
    counted = _counting_decodes(monkeypatch)
    assert read(run, keep_decoded=store).status == "complete"
    every = len(counted)
    assert every and len(store.frames) >= every - 1  # left there (the crash record read again)
    counted.clear()
    assert read(run, keep_decoded=store).status == "complete" and len(counted) == every  # never taken by it
    counted.clear()
    assert read(run, cache=dumpfmt.ReadCache()).status == "complete"
    assert len(counted) == every  # a cache of its own: nothing left for it
    counted.clear()
    assert read(run, cache=dumpfmt.ReadCache(store)).status == "complete"
    assert len(counted) < every // 4  # a cached read takes them (a run's last frame is checked again)


def test_the_frames_kept_are_keyed_by_where_the_chunks_lie_too(lz4_run):
    """Equal CRCs of chunks elsewhere (another body offset or chunk size) say nothing of a frame's bytes."""
    run = lz4_run
    cache = dumpfmt.ReadCache()
    d = read(run, cache=cache)
    h = d.header
    a = d.areas[run.area_index("ram-high")]
    frame, then = cache.decoded.frames[a.disk_offset]
    first = (a.disk_offset - h.body_offset) // h.chunk_size
    assert then[:3] == (h.body_offset, h.chunk_size, first) and then[3:] == tuple(d.chunk_crcs[first:first + len(then) - 3])
