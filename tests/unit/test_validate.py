"""Each oracle fails on a dump damaged for it, and (where the damage allows) only that one.

A synthetic run carries the evidence of its writes (tests/support/synth.py: the write log, QEMU's
trace), so damage done to the image afterwards inside the dump partition, where the write log
wrote, is also a disk the write log does not explain: the `consistency` oracle fails beside the
one the damage is for (DOCTORED below). Damage elsewhere (the GPT, the data partition, sectors
no dump write touched) is the canary's alone."""

import json
import os
import signal
import struct

import procs
import pytest
import synth

from dumpbed.errors import DumpbedError
from dumpbed.oracles import validate
from dumpbed.oracles.validate import validate_image, validate_run

ALL = set(validate.CHECK_ORDER)


# What damage to the image where the dump wrote also fails: the replay of the write log no longer
# ends in the image (harness/dumpbed/oracles/consistency.py).
DOCTORED = {"consistency"}


def failed(v) -> set[str]:
    return {c.name for c in v.checks if not c.ok}


def expect_complete(run) -> None:
    """Declare a complete dump expected, whatever the run's state (a scenario without faults)."""
    scenario = json.loads((run.dir / "scenario.json").read_text())
    scenario.update(expect="complete", expect_guest_result="complete")
    (run.dir / "scenario.json").write_text(json.dumps(scenario))


def test_good_run_passes_everything(good_run_any_block):
    run = good_run_any_block
    v = validate_run(run.dir)
    assert v.ok and failed(v) == set(), [c.detail for c in v.checks]
    assert [c.name for c in v.checks] == list(validate.CHECK_ORDER)
    assert v.dump.status == "complete"
    non_volatile = sum(a.length for a in run.areas if not a.volatile)
    assert v.content.bytes_checked == non_volatile
    assert v.content.bytes_volatile == sum(a.length for a in run.areas if a.volatile)
    assert v.content.ram_bytes == run.options.ram_bytes
    assert v.content.checked_fraction == pytest.approx(non_volatile / run.options.ram_bytes)


def test_to_dict_is_json(good_run):
    v = validate_run(good_run.dir)
    d = json.loads(json.dumps(v.to_dict()))
    assert d["ok"] is True
    assert [c["name"] for c in d["checks"]] == list(validate.CHECK_ORDER)
    assert set(d["checks"][0]) == {"name", "ok", "detail", "problems"}
    dump = d["dump"]
    assert dump["status"] == "complete" and dump["first_inconsistency"] is None
    assert dump["bytes"] == good_run.end_offset + 4096 - 65536 + 512
    assert dump["generation"] == 1 and dump["dump_id"] == good_run.dump_id.hex()
    assert (dump["device_role"], dump["restart_error"], dump["level"], dump["chunks_sealed"]) == ("PRIMARY", 0, 3, 122)
    assert [c["name"] for c in dump["components"]] == ["crash", "kernel", "ram", "log"]
    log = dump["components"][3]
    assert (log["status"], log["flags"], log["estimate_bytes"], log["dumped_bytes"], log["calls"]) == (
        "DUMPED", [], 3000, 3000, 3)
    assert dump["calls"] == 12 and dump["violations"] == []
    assert len(dump["areas"]) == 7 and dump["areas"][4]["volatile"] is True and dump["areas"][4]["staged"] is False
    assert d["content"]["bytes_checked"] > 0 and 0 < d["content"]["checked_fraction"] < 1


# -- one damage, one failing check --------------------------------------------------------------


def test_content_only(good_run):
    run = good_run
    a = run.area("ram-high")
    run.flip(run.part_offset + a.disk_offset + 0x12345)
    run.reseal()  # chunk CRCs, table and headers agree with the damaged body
    v = validate_run(run.dir)
    assert failed(v) == {"content"} | DOCTORED
    assert not v.ok and v.dump.status == "complete"
    detail = v.check("content").detail
    assert detail.startswith(f"area 5 (ram-high): first mismatch at phys 0x{a.phys + 0x12345:x}")
    assert "1 bytes differ" in detail and v.content.bytes_mismatched == 1


def test_content_area_not_in_snapshot(good_run):
    run = good_run
    meta = json.loads((run.dir / "snapshot" / "memory.json").read_text())
    meta["regions"][0]["length"] = 0x9D000  # ram-low (to 0x9e000) and console-log now uncovered
    (run.dir / "snapshot" / "memory.json").write_text(json.dumps(meta))
    v = validate_run(run.dir)
    assert failed(v) == {"content"}
    assert v.check("content").detail.startswith("area 3 (ram-low): phys 0x9d000..0x9e000 is not in the snapshot")


def test_volatile_area_is_not_compared(good_run):
    """Content never compares a VOLATILE area; the change, resealed, is seen only because the
    write log did not write it (it passed every check before runs carried their write log)."""
    run = good_run
    a = run.area("stack")
    run.flip(run.part_offset + a.disk_offset + 3)
    run.reseal()
    v = validate_run(run.dir)
    assert v.check("content").ok and failed(v) == DOCTORED


def test_chunk_crc_only(good_run):
    run = good_run
    a = run.area("stack")  # volatile: content does not look at it
    run.flip(run.part_offset + a.disk_offset + 100)
    v = validate_run(run.dir)
    assert failed(v) == {"chunk-crc"} | DOCTORED
    assert v.dump.status == "corrupt"
    k = (a.disk_offset - run.body_offset) // run.chunk_size
    offset = run.body_offset + k * run.chunk_size
    assert v.check("chunk-crc").detail.startswith(
        f"1 of {v.dump.chunk_count} chunks bad, first: chunk {k} at partition offset 0x{offset:x}"
    )
    assert "stack)" in v.check("chunk-crc").detail


def test_body_flip_fails_chunk_crc_and_content(good_run):
    run = good_run
    run.flip(run.area_disk_offset("kernel-text") + 77)
    assert failed(validate_run(run.dir)) == {"chunk-crc", "content"} | DOCTORED


@pytest.mark.parametrize("where,expect", [
    ("leader", "leader: header CRC32C"),
    ("trailer", "trailer differs from the leader at byte 300"),
    ("end marker", "end marker: CRC32C"),
    ("leader slot", "leader slot: nonzero byte"),
])
def test_format_only(good_run, where, expect):
    run = good_run
    offset = {
        "leader": run.leader_at + 300,  # a register: the trailer still has it right
        "trailer": run.trailer_at + 300,
        "end marker": run.part_offset + run.end_offset + 16,
        "leader slot": run.leader_at + 4000,
    }[where]
    run.flip(offset)
    v = validate_run(run.dir)
    assert failed(v) == {"format"} | DOCTORED, [c.detail for c in v.checks]
    assert v.check("format").detail.startswith(expect)


def test_table_damage_fails_format_and_leaves_chunks_unverified(good_run):
    run = good_run
    run.flip(run.part_offset + run.table_at + 4 * 200)  # past the 122 entries
    v = validate_run(run.dir)
    assert failed(v) == {"format", "chunk-crc"} | DOCTORED
    assert v.check("format").problems == [
        f"CRC table slot {run.slot}: CRC32C 0x{synth.crc32c(run.read_part(run.table_at, 4096)):08x}, header says "
        f"0x{run.header['crc_table_crc']:08x}", f"CRC table slot {run.slot}: entry 200 not zero, past the 122 sealed "
        f"entries"]
    assert v.check("chunk-crc").detail == "chunk CRCs not verified: the CRC table is invalid"


def test_format_only_padding_resealed(good_run):
    run = good_run
    a = run.area("console-log")
    run.flip(run.part_offset + a.disk_offset + a.length + 1)
    run.reseal()
    v = validate_run(run.dir)
    assert failed(v) == {"format"} | DOCTORED
    assert "area 6 (console-log): padding: nonzero byte" in v.check("format").detail


def test_a_dump_of_another_run_is_none(good_run):
    """The run's own dump never wrote its leader: the disk holds another run's (complete) dump,
    which is no dump of this run. Read without an id (a bare image) it is that dump."""
    run = good_run
    scenario = json.loads((run.dir / "scenario.json").read_text())
    scenario["dump_id"] = "00" * 16
    (run.dir / "scenario.json").write_text(json.dumps(scenario))
    v = validate_run(run.dir)
    assert not v.ok and v.dump.status == "none" and v.dump.extent is None
    assert v.check("format").detail == (f"no dump: the leader is a valid header of another dump (dump id "
                                        f"{run.dump_id.hex()}): no dump with id {'00' * 16}")
    assert {"format", "chunk-crc", "content", "canary"} <= failed(v)  # the canary: nothing may have been written
    assert validate_image(run.image).ok


def test_directory_damage_fails_format_and_distrusts_areas(good_run):
    run = good_run
    run.flip(run.part_offset + run.area_entry_at(3) + 26)  # ram-low's phys_addr
    v = validate_run(run.dir)
    assert "format" in failed(v) and v.check("format").detail.startswith(f"directory slot {run.slot}: CRC32C")
    assert v.check("content").detail.startswith("directory invalid")


def test_crash_record_only_wrong_register(good_run):
    run = good_run
    regs = json.loads((run.dir / "snapshot" / "registers.json").read_text())
    header_rip = regs["rip"]
    regs["rip"] = header_rip ^ 0x10
    (run.dir / "snapshot" / "registers.json").write_text(json.dumps(regs))
    v = validate_run(run.dir)
    assert failed(v) == {"crash-record"}
    assert v.check("crash-record").detail == f"register rip: dump 0x{header_rip:x}, snapshot 0x{header_rip ^ 0x10:x}"


def test_crash_record_only_registers_compared_where_both_have_them(good_run):
    run = good_run
    regs = json.loads((run.dir / "snapshot" / "registers.json").read_text())
    for name in ("fs_base", "gs_base", "efer"):
        del regs[name]
    regs["dr7"] = 0x400  # not in the header: ignored
    (run.dir / "snapshot" / "registers.json").write_text(json.dumps(regs))
    v = validate_run(run.dir)
    assert v.ok and v.check("crash-record").detail.startswith("28 registers equal the snapshot")
    (run.dir / "snapshot" / "registers.json").write_text(json.dumps({"dr7": 1}))
    assert failed(validate_run(run.dir)) == {"crash-record"}


def test_crash_record_only_wrong_reason(good_run):
    run = good_run
    scenario = json.loads((run.dir / "scenario.json").read_text())
    scenario["crash"] = "panic"
    (run.dir / "scenario.json").write_text(json.dumps(scenario))
    v = validate_run(run.dir)
    assert failed(v) == {"crash-record"}
    assert "crash reason NMI, the scenario's crash 'panic' means PANIC" in v.check("crash-record").detail


def test_crash_record_only_record_differs_from_header(good_run):
    run = good_run
    raw = bytearray(run.area("crash-record").data)
    struct.pack_into("<Q", raw, 24, 0xE)  # error code
    run.set_crash_record(bytes(raw))
    run.reseal()
    v = validate_run(run.dir)
    assert failed(v) == {"crash-record"} | DOCTORED
    assert v.check("crash-record").detail == "crash record: crash_error_code 0xe, header says 0x0"


def test_panic_crash_passes(make_run):
    run = make_run(crash="panic")
    v = validate_run(run.dir)
    assert v.ok and v.dump.header.reason_name == "PANIC"


@pytest.mark.parametrize("where", ["data partition", "dump partition start", "after end marker", "before backup GPT"])
def test_canary_only(good_run_any_block, where):
    run = good_run_any_block
    lay = run.layout
    sector = {
        "data partition": lay.partitions[0].first_lba * lay.block_size // 512 + 3,
        "dump partition start": run.part_offset // 512 + 5,
        "after end marker": (run.part_offset + run.end_offset + 4096) // 512,
        "before backup GPT": (lay.last_usable_lba * lay.block_size) // 512,
    }[where]
    run.flip(sector * 512 + 17)
    v = validate_run(run.dir)
    # Inside the dump partition no logged write explains the change either (the replay starts
    # from the partition's canary): consistency fails too, after canary in the data flow.
    inside = where in ("dump partition start", "after end marker")
    assert failed(v) == ({"canary", "consistency"} if inside else {"canary"})
    assert [c.name for c in v.checks if not c.ok][0] == "canary"
    assert v.check("canary").detail.startswith(f"1 sectors outside the dump extent damaged, first: sector {sector} (")


@pytest.mark.parametrize("offset_blocks,name", [(0, "protective MBR"), (1, "primary GPT header"), (2, "primary GPT entries"),
                                                (-1, "backup GPT header"), (-2, "backup GPT entries")])
def test_canary_only_gpt(good_run_any_block, offset_blocks, name):
    run = good_run_any_block
    b = run.block_size
    offset = (offset_blocks if offset_blocks >= 0 else run.layout.total_blocks + offset_blocks) * b + 40
    run.flip(offset)
    v = validate_run(run.dir)
    assert failed(v) == {"canary"}
    assert v.check("canary").detail.startswith(f"{name}: differs from the GPT regenerated from layout.json at disk offset 0x{offset:x}")


def test_canary_names_many_sectors(good_run):
    run = good_run
    run.write(1024 * 1024 + 512 * 10, b"\0" * 512 * 3)
    run.write(1024 * 1024 + 512 * 20, b"\0")
    v = validate_run(run.dir)
    problems = v.check("canary").problems
    assert problems[0] == "4 sectors outside the dump extent damaged, first: sectors 2058..2060 (data partition +0x1400): not canary"
    assert problems[1] == "sector 2068 (data partition +0x2800): not canary"


def test_completeness_only_excluded_component(make_run):
    run = make_run(extra_components=[synth.SComponent("nic", synth.OTHER, synth.EXCLUDED, reason=19)])
    v = validate_run(run.dir)
    assert failed(v) == {"completeness"} and v.dump.status == "complete"
    assert v.check("completeness").detail == "component nic: EXCLUDED (reason 19)"


def test_completeness_fails_when_usable_ram_is_not_covered(good_run):
    """The loader's memory map (in the snapshot) names 1 MiB more usable RAM than the dump's RAM
    and KERNEL areas cover. (The scenario's memory_bytes no longer sets what must be covered:
    the map does.) The map lies in low RAM, which the dump holds (ram-low): content sees the
    changed bytes too."""
    run = good_run
    low = run.dir / "snapshot" / "mem-0000000000000000.bin"
    raw = bytearray(low.read_bytes())
    mmap_length, = struct.unpack_from("<I", raw, synth.MBI_AT + 44)
    last = synth.MMAP_AT + mmap_length - 24  # the usable region up to the end of RAM
    size, base, length, kind = struct.unpack_from("<IQQI", raw, last)
    assert (kind, base + length) == (synth.E820_USABLE, run.options.ram_bytes)
    struct.pack_into("<IQQI", raw, last, size, base, length + (1 << 20), kind)
    low.write_bytes(raw)
    v = validate_run(run.dir)
    assert failed(v) == {"completeness", "content"}
    ram, ram_bytes = run.options.ram_bytes, run.header["ram_bytes"]
    assert ram_bytes == 7983395  # the RAM and KERNEL areas of 8 MiB, each byte once
    assert v.check("completeness").problems == [
        f"usable RAM [0x{ram:x}, 0x{ram + (1 << 20):x}) (1048576 bytes, the loader's memory map) is in no RAM or "
        f"KERNEL area: the dump left it out",
        f"the header's ram_bytes is {ram_bytes}, the usable RAM of the loader's memory map is {ram_bytes + (1 << 20)}"]
    assert v.check("content").detail.startswith("area 3 (ram-low): first mismatch at phys 0x9")


def test_partial_dumps_fail_but_compare_what_was_written(make_run):
    """A partial dump where the scenario expects a complete one. (A synthetic partial run
    declares a partial dump, as a faulted run does: the declaration is undone here.) The guest
    said DONE status=failed, which a complete run does not say either."""
    run = make_run(state="failed", body_written=0x100000)
    expect_complete(run)
    v = validate_run(run.dir)
    assert not v.ok and v.dump.status == "partial"
    assert failed(v) == {"format", "chunk-crc", "completeness", "guest-result"}
    assert v.check("guest-result").problems == [
        f"the guest reported DONE status=failed error=5 stage=body offset={run.header['failure_offset']} "
        f"device=primary generation=1, the run expects status=complete"]
    assert v.check("format").detail.startswith("leader status FAILED: dump FAILED: errno 5")
    assert v.check("chunk-crc").detail.startswith("dump is FAILED: the 14 sealed chunks of 65536 bytes match")
    completeness = v.check("completeness").problems
    assert completeness[:2] == ["component ram: PARTIAL (reason 0)", "component log: PENDING (reason 0)"]
    assert "the dump is FAILED: body_written 946176, no end marker" in completeness
    assert v.content.bytes_checked > 0
    # damage to a written area is still found, by its chunk CRC and by content
    run.flip(run.area_disk_offset("kernel-text") + 1)
    v = validate_run(run.dir)
    assert {"content", "chunk-crc"} <= failed(v) and v.dump.status == "corrupt"


def test_partial_damage_past_the_sealed_chunks_is_found_by_content(make_run):
    run = make_run(state="failed", body_written=0xDF000)  # ends with ram-low, 13 chunks sealed
    run.flip(run.area_disk_offset("ram-low") + 0x97000)  # body offset 0xd8000: chunk 13, not sealed
    v = validate_run(run.dir)
    assert v.dump.header.chunks_sealed == 13
    assert v.dump.status == "partial" and "content" in failed(v)
    assert v.check("content").detail.startswith("area 3 (ram-low): first mismatch")


def test_no_dump(make_run):
    run = make_run(state="none")
    v = validate_run(run.dir)
    assert not v.ok and v.dump.status == "none"
    assert failed(v) == ALL - {"canary"}  # nothing was written: the canary is intact
    assert v.check("format").detail == "no dump: no dump header magic in the leader slot"


def test_truncated_image_fails_without_raising(good_run):
    run = good_run
    with open(run.image, "r+b") as f:
        f.truncate(run.part_offset + run.end_offset - 5000)
    v = validate_run(run.dir)
    assert not v.ok and {"format", "canary", "chunk-crc"} <= failed(v)
    assert v.check("canary").detail.startswith(f"image is {run.part_offset + run.end_offset - 5000} bytes")


def test_empty_image(good_run):
    good_run.image.write_bytes(b"")
    v = validate_run(good_run.dir)
    assert not v.ok and v.dump.status == "none" and "canary" in failed(v)


# -- validate_image ------------------------------------------------------------------------------


def test_validate_image(good_run_any_block):
    v = validate_image(good_run_any_block.image)
    assert v.ok and [c.name for c in v.checks] == ["format", "chunk-crc", "sample-data", "crash-record", "protocol",
                                                   "completeness"]
    assert "dump id" not in v.check("format").detail and v.content is None


def test_validate_image_detects_damage(good_run):
    run = good_run
    run.flip(run.area_disk_offset("ram-high") + 5)
    assert failed(validate_image(run.image)) == {"chunk-crc"}


def test_validate_image_without_gpt(good_run):
    good_run.write(512, b"\0" * 8)
    with pytest.raises(DumpbedError, match="no GPT"):
        validate_image(good_run.image)
    with pytest.raises(DumpbedError, match="no such image"):
        validate_image(good_run.dir / "nope.img")


# -- artifacts that cannot be read: one-line errors -------------------------------------------------


def _break(run, what):
    d = run.dir
    if what == "no scenario":
        (d / "scenario.json").unlink()
    elif what == "garbled scenario":
        (d / "scenario.json").write_text("{nope")
    elif what == "scenario list":
        (d / "scenario.json").write_text("[]")
    elif what == "short dump id":
        s = json.loads((d / "scenario.json").read_text())
        s["dump_id"] = "abc"
        (d / "scenario.json").write_text(json.dumps(s))
    elif what == "no memory_bytes":
        s = json.loads((d / "scenario.json").read_text())
        del s["memory_bytes"]
        (d / "scenario.json").write_text(json.dumps(s))
    elif what == "no layout":
        (d / "layout.json").unlink()
    elif what == "no image":
        run.image.unlink()
    elif what == "no registers":
        (d / "snapshot" / "registers.json").unlink()
    elif what == "register string":
        (d / "snapshot" / "registers.json").write_text(json.dumps({"rip": "zz"}))
    elif what == "no memory.json":
        (d / "snapshot" / "memory.json").unlink()
    elif what == "memory.json shape":
        (d / "snapshot" / "memory.json").write_text(json.dumps({"regions": [{"phys": 0}]}))
    elif what == "snapshot file missing":
        next((d / "snapshot").glob("mem-*.bin")).unlink()
    elif what == "snapshot file short":
        f = next((d / "snapshot").glob("mem-0000000000100000.bin"))
        f.write_bytes(f.read_bytes()[:100])
    elif what == "overlapping regions":
        s = json.loads((d / "snapshot" / "memory.json").read_text())
        s["regions"][1]["phys"] = 0x1000
        (d / "snapshot" / "memory.json").write_text(json.dumps(s))


@pytest.mark.parametrize("what", [
    "no scenario", "garbled scenario", "scenario list", "short dump id", "no memory_bytes", "no layout",
    "no image", "no registers", "register string", "no memory.json", "memory.json shape",
    "snapshot file missing", "snapshot file short", "overlapping regions",
])
def test_bad_artifacts_raise_one_line(good_run, what):
    _break(good_run, what)
    with pytest.raises(DumpbedError) as e:
        validate_run(good_run.dir)
    assert str(e.value) and "\n" not in str(e.value)


def test_run_dir_missing(tmp_path):
    with pytest.raises(DumpbedError, match="not a directory"):
        validate_run(tmp_path / "nope")


def test_registers_as_hex_strings(good_run):
    path = good_run.dir / "snapshot" / "registers.json"
    regs = json.loads(path.read_text())
    path.write_text(json.dumps({k: hex(v) for k, v in regs.items()}))
    assert validate_run(good_run.dir).ok


def test_no_dump_on_a_truncated_image_names_the_missing_header(make_run):
    run = make_run(state="none")
    with open(run.image, "r+b") as f:
        f.truncate(run.part_offset + 1000)
    v = validate_run(run.dir)
    assert v.check("format").problems[0] == "no dump: no dump header magic in the leader slot"
    assert any("truncated" in p for p in v.check("format").problems)


# -- the component oracles and the v2 completeness rules ------------------------------------------


def test_samples_run_passes_everything(make_run):
    run = make_run(samples="all", level=5)
    v = validate_run(run.dir)
    assert v.ok, [(c.name, c.detail) for c in v.checks if not c.ok]
    assert v.check("protocol").detail.endswith("11 samples called as the model says")
    assert v.check("sample-data").detail.startswith("344 areas")
    assert "11 samples as the model says" in v.check("completeness").detail


def test_restarted_samples_run_passes_everything(make_run):
    run = make_run(samples="default", generation=2)
    v = validate_run(run.dir)
    assert v.ok, [(c.name, c.detail) for c in v.checks if not c.ok]
    assert v.to_dict()["dump"]["device_role"] == "SECONDARY"


def test_sample_data_only(make_run):
    run = make_run(samples="default")
    a = run.area("glb.0")  # staged: not compared with the snapshot, only with the pattern
    run.flip(run.part_offset + a.disk_offset + 100)
    run.reseal()
    v = validate_run(run.dir)
    assert failed(v) == {"sample-data"} | DOCTORED, [c.detail for c in v.checks]
    assert v.check("sample-data").detail.startswith("sample area glb.0")


def test_protocol_only(make_run):
    run = make_run(samples="default")
    done = [i for i, r in enumerate(run.call_records()) if r["op"] == synth.DONE][-1]
    run.patch_call(done, outcome=synth.FAULT)  # a fault without PIN_VIOLATION: format allows the pair
    v = validate_run(run.dir)
    assert failed(v) == {"protocol"} | DOCTORED, [c.detail for c in v.checks]
    assert v.dump.status == "complete"


def test_completeness_only_missing_sample(make_run):
    run = make_run(samples=["smp-classic"])
    scenario = json.loads((run.dir / "scenario.json").read_text())
    scenario["components"] = "smp-classic,ras-levels"
    (run.dir / "scenario.json").write_text(json.dumps(scenario))
    v = validate_run(run.dir)
    assert "completeness" in failed(v)
    assert "component ras-levels missing from the directory" in v.check("completeness").problems


def test_completeness_only_estimate_below_dumped(make_run):
    nic = synth.SComponent("nic", synth.OTHER, areas=[synth.SArea("nic-ring", 0x9E800, 512, volatile=True)],
                           estimate=100)
    v = validate_run(make_run(extra_components=[nic]).dir)
    assert failed(v) == {"completeness"}
    assert v.check("completeness").detail == "component nic: estimate_bytes 100 below dumped_bytes 512"


def test_completeness_only_header_estimate_not_the_sum(good_run):
    run = good_run
    run.header["estimate_bytes"] += 4096
    run.patch_dir_header(estimate_bytes=run.header["estimate_bytes"])
    v = validate_run(run.dir)
    assert failed(v) == {"completeness"} | DOCTORED
    assert v.check("completeness").detail.startswith(
        f"header estimate_bytes {run.header['estimate_bytes']}, the components' estimates sum to")


@pytest.mark.parametrize("version", [1, 2, 5])
def test_another_version_is_unsupported_never_corrupt(good_run, version):
    good_run.set_header(version=version)
    for v in (validate_run(good_run.dir), validate_image(good_run.image)):
        assert not v.ok and v.dump.status == "unsupported" and v.dump.version == version
        assert v.check("format").detail == (f"unsupported dump: a version {version} dump: this reader reads "
                                            f"versions 3 and 4 only")
        assert v.check("chunk-crc").detail.startswith("chunk CRCs not verified: unsupported dump")
        assert not any("corrupt" in c.detail for c in v.checks), [c.detail for c in v.checks]


def test_protocol_and_sample_data_without_a_dump(make_run):
    v = validate_run(make_run(state="none").dir)
    assert v.check("protocol").detail == "no dump: no call records"
    assert v.check("sample-data").detail == "no dump: no sample data"


# --- a bare image of the dumpbed guest: its sample components are judged by the model ---------


def test_a_bare_guest_image_is_judged_against_the_samples_model(make_run):
    run = make_run(samples="all", level=7)
    v = validate_image(run.image)
    assert v.ok, [f"{c.name}: {c.detail}" for c in v.checks if not c.ok]
    assert "samples called as the model says" in v.check("protocol").detail


def test_a_bare_guest_image_with_a_wrong_sample_status_fails_completeness(make_run):
    run = make_run(samples="default")
    rtnfail = [c.name for c in run.components].index("smp-rtnfail")
    run.patch_component(rtnfail, status=1, reason=0)  # DUMPED, as if RTNFAILURE were never reported
    assert "completeness" in failed(validate_image(run.image))


def test_a_bare_image_of_another_guest_gets_only_the_generic_rules(good_run):
    v = validate_image(good_run.image)
    assert v.ok and "samples called as the model says" not in v.check("protocol").detail


def test_a_profiles_inapplicable_checks_are_settled_not_run(make_run, monkeypatch):
    """A guest profile's not_applicable checks are reported ok and skipped with the reason,
    never run: a run whose scenario names the wrong crash fails crash-record under dumpbed's own
    profile, and passes it (skipped) under one that says crash-record does not apply."""
    import dataclasses

    from dumpbed.guests import profiles

    run = make_run()
    scenario = json.loads((run.dir / "scenario.json").read_text())
    scenario["crash"] = "panic"
    (run.dir / "scenario.json").write_text(json.dumps(scenario))
    assert failed(validate_run(run.dir)) == {"crash-record"}
    narrow = dataclasses.replace(profiles.DUMPBED, not_applicable={"crash-record": "it keeps no crash record"})
    monkeypatch.setitem(profiles.PROFILES, "dumpbed", narrow)
    v = validate_run(run.dir)
    assert v.ok
    assert v.check("crash-record").detail == "skipped: not applicable to guest profile dumpbed (it keeps no crash record)"


# -- the consistency sweep's process (oracles/beside.py) ------------------------------------------


def _children() -> set[int]:
    """Every process under this one (zombies too: a child not reaped is left behind)."""
    return set(procs.descendants(os.getpid())[1:])


def _die(inbox, *args):
    os.kill(os.getpid(), signal.SIGKILL)


def _fail(inbox, *args):
    raise DumpbedError("the write log runs past its end")


def test_a_sweep_whose_process_dies_is_an_error_and_leaves_nothing(good_run, monkeypatch):
    before = _children()
    monkeypatch.setattr(validate, "_consistency", _die)
    with pytest.raises(DumpbedError, match=r"^the consistency sweep ended without a verdict \(killed by SIGKILL\)$"):
        validate_run(good_run.dir)
    assert _children() == before


def test_what_the_sweep_raises_the_validation_raises(good_run, monkeypatch):
    before = _children()
    monkeypatch.setattr(validate, "_consistency", _fail)
    with pytest.raises(DumpbedError, match="the write log runs past its end"):
        validate_run(good_run.dir)
    assert _children() == before


def test_a_validation_that_fails_stops_its_sweep(good_run, monkeypatch):
    """The sweep still at work (here, waiting for the dumps) when the validation fails is stopped."""
    def broken_reader(*args, **kwargs):
        raise DumpbedError("the reader failed")
    before = _children()
    monkeypatch.setattr(validate.dumpfmt, "read", broken_reader)
    with pytest.raises(DumpbedError, match="the reader failed"):
        validate_run(good_run.dir)
    assert _children() == before
