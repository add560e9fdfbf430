"""The pattern-pages oracle of a Linux dump (harness/dumpbed/oracles/pattern_pages.py) on a
synthetic snapshot and vmcore: the pages are found in the snapshot by their own words, and any
page missing from the vmcore, or different there, fails it."""
from __future__ import annotations

import json

import numpy as np
import pytest
from test_vmcore_writer import kdump_file

from dumpbed.oracles import pattern_pages as pp
from dumpbed.oracles.content import Snapshot
from dumpbed.reader import vmcore

RUNID = 0x1234ABCD5678EF01
RAM_PAGES = 256  # 1 MiB of "RAM"
AT = {40: 0, 41: 1, 97: 2, 200: 3}  # pfn: pattern index (scattered, as a process's pages are)


def _snapshot(tmp_path, damage_pfn=None):
    ram = np.random.default_rng(7).integers(0, 2**63, RAM_PAGES * 512, dtype=np.uint64).reshape(RAM_PAGES, 512)
    for pfn, index in AT.items():
        ram[pfn] = pp.expected_page(RUNID, index)
    if damage_pfn is not None:
        ram[damage_pfn, 100] ^= np.uint64(1)
    d = tmp_path / "snapshot"
    d.mkdir()
    (d / "ram.bin").write_bytes(ram.tobytes())
    (d / "memory.json").write_text(json.dumps({"regions": [{"phys": 0, "length": RAM_PAGES * 4096, "file": "ram.bin"}]}))
    return Snapshot.load(d), ram


def _core(tmp_path, ram, leave_out=(), change=()):
    pages = {pfn: ram[pfn].tobytes() for pfn in range(RAM_PAGES) if pfn not in leave_out}
    for pfn in change:
        pages[pfn] = bytes(4096)
    path = tmp_path / "vmcore"
    path.write_bytes(bytes(kdump_file(pages, max_mapnr=RAM_PAGES).data))
    return vmcore.open(path)


def test_the_expected_page_checks_itself():
    page = pp.expected_page(RUNID, 5)
    assert page[0] == pp.MAGIC and page[1] == RUNID and page[2] == 5
    assert np.bitwise_xor.reduce(page) == 0
    assert page.tobytes()[:8] == b"DBPATTRN"
    # SplitMix64's first output for seed 0 (its published test vector)
    assert int(pp.splitmix64(np.array([0], dtype=np.uint64))[0]) == 0xE220A8397B1DCDAF


def test_every_pattern_page_found_and_in_the_vmcore(tmp_path):
    snap, ram = _snapshot(tmp_path)
    good, bad = pp.find(snap, RUNID)
    assert good == {pfn * 4096: index for pfn, index in AT.items()} and bad == []
    c = pp.check(_core(tmp_path, ram), snap, RUNID, listed=len(AT))
    assert c.ok, c.detail
    assert "4 pattern pages (16384 bytes)" in c.detail


@pytest.mark.parametrize("how, expect", [
    ({"leave_out": (97,)}, "1 of 4 pattern pages are not in the vmcore, e.g. 0x61000"),
    ({"change": (41,)}, "1 of 4 pattern pages differ in the vmcore from the snapshot, e.g. 0x29000"),
])
def test_a_vmcore_without_a_pattern_page_fails(tmp_path, how, expect):
    snap, ram = _snapshot(tmp_path)
    c = pp.check(_core(tmp_path, ram, **how), snap, RUNID, listed=len(AT))
    assert not c.ok and expect in c.detail, c.detail


def test_the_guests_list_is_held_to_the_snapshot(tmp_path):
    snap, ram = _snapshot(tmp_path)
    c = pp.check(_core(tmp_path, ram), snap, RUNID, listed=6)
    assert not c.ok and "the guest listed 6 pattern pages, the snapshot holds 4" in c.detail
    c = pp.check(_core(tmp_path, ram), snap, RUNID + 1, listed=None)
    assert not c.ok and "no page of the pattern" in c.detail


def test_a_damaged_pattern_page_in_the_snapshot_is_named(tmp_path):
    snap, ram = _snapshot(tmp_path, damage_pfn=200)
    good, bad = pp.find(snap, RUNID)
    assert bad == [200 * 4096] and 200 * 4096 not in good
    c = pp.check(_core(tmp_path, ram), snap, RUNID, listed=None)
    assert not c.ok and "damaged, e.g. at 0xc8000" in "; ".join(c.problems)
