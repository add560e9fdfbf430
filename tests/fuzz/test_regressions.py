"""What the fuzzing found, one plain test each (docs/fuzzing.md, "Findings")."""

from __future__ import annotations

import os

import pytest
import synth

from dumpbed.oracles.validate import validate_image, validate_run
from dumpbed.reader import dumpfmt


@pytest.fixture
def run(tmp_path):
    return synth.make_run(tmp_path / "run", samples="all")


def read(run):
    return dumpfmt.read(run.image, run.part_offset, run.part_bytes, run.block_size)


@pytest.mark.parametrize("change,expect", [
    (dict(max_transfer=0), "min_transfer 512 / max_transfer 0"),
    (dict(max_transfer=511, min_transfer=256), "max_transfer 511 below the block size 512"),
    (dict(min_transfer=0), "min_transfer 0 / max_transfer"),
    (dict(min_transfer=4096), "min_transfer 4096 above the block size 512"),
])
def test_impossible_transfer_limits_are_corrupt(run, change, expect):
    """A resealed header with DUMPQUERY limits no write of the dump could have kept to passed
    validate_image (the reader only compared min with a nonzero max)."""
    run.set_header(**change)
    d = read(run)
    assert d.status == "corrupt" and expect in d.first_inconsistency, d.findings
    assert not validate_image(run.image).ok


def test_table_generation_without_areas_is_corrupt(run):
    """An EXCLUDED component (no areas) with table_generation 1 passed: only the converse was
    checked."""
    excluded = next(i for i, c in enumerate(run.components) if c.status == synth.EXCLUDED)
    run.patch_component(excluded, table_generation=1)
    d = read(run)
    assert d.status == "corrupt" and "no areas but table_generation 1" in d.first_inconsistency
    assert not validate_image(run.image).ok and not validate_run(run.dir).ok


def test_ram_bytes_below_the_ram_dumped_fails_completeness(run):
    """A header naming less usable RAM than its RAM areas hold passed validate_image (the 99%
    coverage it is judged against shrinks with it) and validate_run (which ignored it). Now
    ram_bytes must be the RAM the areas cover (an image) and the usable RAM of the loader's
    memory map (a run, whose snapshot holds the map)."""
    ram = run.header["ram_bytes"]
    run.set_header(ram_bytes=4096)
    assert read(run).status == "complete"
    c = validate_image(run.image).check("completeness")
    assert not c.ok and f"RAM and KERNEL areas hold {ram} bytes, the header's ram_bytes is 4096" in c.detail
    c = validate_run(run.dir).check("completeness")
    assert not c.ok and f"the header's ram_bytes is 4096, the usable RAM of the loader's memory map is {ram}" in c.detail
    # Format version 3 makes ram_bytes 0 a field rule of the header itself.
    run.set_header(ram_bytes=0)
    assert read(run).first_inconsistency == "leader: ram_bytes 0 (the usable RAM of the guest's memory map is never none)"


@pytest.mark.parametrize("size", [604, 512, 1024 + 17])
def test_image_cut_inside_the_gpt_fails_the_canary(run, size):
    """An image cut inside its GPT, where the bytes left equal the GPT's: the canary oracle
    raised IndexError looking for a differing byte."""
    os.truncate(run.image, size)
    v = validate_run(run.dir)
    c = v.check("canary")
    assert not c.ok and any("missing from disk offset" in p for p in c.problems), c.problems


def test_image_cut_where_the_snapshot_holds_zeros_fails_content(run):
    """An image cut inside an area whose RAM, from the cut on, is zeros in the snapshot: the
    content oracle padded the missing bytes with zeros, found no difference and raised
    IndexError naming the first one."""
    area = run.area("ram-high")
    cut = area.length // 2
    tail = area.length - cut
    area.data = area.data[:cut] + bytes(tail)  # the dump holds zeros there (the writer wrote them) ...
    run.replay()
    snap = run.dir / "snapshot" / f"mem-{synth.HIGH_RAM_START:016x}.bin"
    with open(snap, "r+b") as f:  # ... as the snapshot does
        f.seek(area.phys + cut - synth.HIGH_RAM_START)
        f.write(bytes(tail))
    assert validate_run(run.dir).ok
    os.truncate(run.image, run.part_offset + area.disk_offset + cut)
    c = validate_run(run.dir).check("content")
    assert not c.ok and "ram-high" in c.detail


@pytest.mark.parametrize("builtin", ["crash-record", "kernel", "ram"])
def test_a_flag_on_a_builtin_component_fails(run, builtin):
    """CALL_ON_RESTART set on the RAM component of a restarted (generation 2) real dump passed
    validate_image: the flags were held to the model for the samples only. The built-ins are
    the facility's own, not dmp_ctl routines: no flag may be set on them."""
    index = next(i for i, c in enumerate(run.components) if c.name == builtin)
    run.patch_component(index, flags=1)
    assert read(run).status == "complete"  # a plausible field: the format alone cannot tell
    check = validate_image(run.image).check("completeness")  # the components held to the model
    assert not check.ok and f"{builtin}: flags CALL_ON_RESTART set, the model has none of them" in check.detail, \
        check.detail
    assert not validate_run(run.dir).ok
