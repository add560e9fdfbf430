"""The dump facility on real guests (docs/components.md): sample components, levels, estimates,
pinning violations, and the restart on a secondary dump device.

Each scenario is judged by the harness's own oracles (protocol, completeness, sample-data,
devices, ...); the assertions here add what each scenario is about, read from the dump itself.
"""
from __future__ import annotations

import json

import pytest

from dumpbed.capture import cmdlog, writelog
from dumpbed.images import layout
from dumpbed.oracles import samples
from dumpbed.reader import dumpdir, dumpfmt
from tests.integration.conftest import accel_params

EFAULT, EIO, ENODATA = 14, 5, 61
GATHERED_AT_MOST = 64 * 1024  # the writer gathers areas this small (page-rounded)
DUMPED, EXCLUDED, FAILED, DISABLED = 1, 2, 3, 4
CALL_ON_RESTART, TABLE_REUSED, PIN_VIOLATION, RTNFAILURE = 1 << 0, 1 << 10, 1 << 8, 1 << 7
START, AGAIN, DONE = 1, 2, 3

# The dumpbed pytest plugin's marker: dumpbed_run's defaults in this module.
pytestmark = pytest.mark.dumpbed(memory="32M")  # enough for every check; a smaller guest boots, fills and validates faster


def assert_passed(result) -> None:
    __tracebackhide__ = True
    result.assert_passed()  # names the problem, each failing check with its detail, the run directory
    names = {c["name"] for c in result.report["checks"]}
    assert {"protocol", "completeness", "sample-data"} <= names, names


def by_name(dump: dumpfmt.Dump) -> dict:
    return {c.name: c for c in dump.components}


@pytest.mark.parametrize("accel", accel_params())
def test_default_samples_at_the_normal_level(dumpbed_run, accel):
    result = dumpbed_run(accel=accel)
    assert_passed(result)
    out = result.run_dir
    dump = dumpfmt.read_image(out / "dump.img")
    names = [c.name for c in dump.components]
    assert names == [*samples.BUILTIN_NAMES, *samples.resolve_components("default")]
    assert dump.header.level == 3
    comps = by_name(dump)
    assert comps["ras-negative"].status == EXCLUDED and comps["ras-negative"].reason == ENODATA
    assert comps["ras-off"].status == DISABLED
    assert comps["smp-rtnfail"].status == FAILED and comps["smp-rtnfail"].flags & RTNFAILURE
    assert comps["smp-rtnfail"].failure_handle == 0xD0B5EDF00D and comps["smp-rtnfail"].failure_rv == -5
    # The estimates the shell gave before the crash are the ones the dump recorded.
    before = json.loads((out / "estimates.json").read_text())["3"]["components"]
    for c in dump.components:
        if c.name in before and c.status != DISABLED:
            assert c.estimate_bytes == before[c.name], c.name
    # The small areas (smp-unlimited's hundreds of a page or less) went out gathered, a few
    # transfers for all, as QEMU's command log shows (dump-format.md, "Write order").
    small = [a for a in dump.areas if dumpdir.round_up(a.length, 4096) <= GATHERED_AT_MOST]
    writes = [c for c in cmdlog.read(out, dump.header.block_size).commands if c.kind == "write"]
    carried = {c.seq for a in small for c in writes
               if c.offset <= dump.partition_offset + a.disk_offset < c.offset + c.length}
    assert len(small) > 300 and len(carried) <= len(small) // 20, (len(small), len(carried))


@pytest.mark.parametrize("level", range(10))
def test_every_level_dumps_within_its_estimate(dumpbed_run, level):
    result = dumpbed_run(memory="32M", level=level)
    assert_passed(result)
    dump = dumpfmt.read_image(result.run_dir / "dump.img")
    comps = by_name(dump)
    assert len(dump.component_areas(comps["ras-levels"])) == level + 1
    for c in dump.components:
        assert c.dumped_bytes <= c.estimate_bytes or c.status in (DISABLED,), c.name
    assert dump.header.level == level


def test_no_sample_components(dumpbed_run):
    result = dumpbed_run(components="none")
    assert_passed(result)
    assert [c.name for c in dumpfmt.read_image(result.run_dir / "dump.img").components] == list(samples.BUILTIN_NAMES)


def test_a_pinning_violation_is_caught_and_recorded(dumpbed_run):
    result = dumpbed_run(components="all")
    assert_passed(result)  # the violation is what the scenario expects, and the dump completes
    dump = dumpfmt.read_image(result.run_dir / "dump.img")
    assert dump.status == "complete"
    pin = by_name(dump)["smp-pinviolator"]
    assert pin.status == FAILED and pin.reason == EFAULT and pin.flags & PIN_VIOLATION
    index = [c.name for c in dump.components].index("smp-pinviolator")
    assert [v.component for v in dump.violations] == [index]


# --- restart on a secondary device --------------------------------------------------------


def write_numbers(out, component: str | None = None) -> list[int]:
    """From a clean run (the write sequence of a configuration is deterministic): the 1-based
    numbers of the writes after the crash that land in a component's areas, or in the body."""
    scenario = json.loads((out / "scenario.json").read_text())
    dump = dumpfmt.read_image(out / "dump.img")
    base = layout.load(out / "layout.json").dump_offset  # area offsets are partition offsets
    if component is None:
        lo, hi = base + dump.header.body_offset, base + dump.header.end_offset
    else:
        areas = dump.component_areas(by_name(dump)[component])
        lo, hi = base + areas[0].disk_offset, base + areas[-1].disk_offset + areas[-1].length
    writes = writelog.parse(out / writelog.TRACE_FILE, writelog.ANY_BUS, scenario["block_size"])
    crashed = writelog.crash_time(out)
    after = [w for w in writes if crashed is None or w.time is None or w.time >= crashed]
    return [n for n, w in enumerate(after, 1) if lo <= w.offset < hi]


@pytest.mark.parametrize("primary,secondary", [("virtio-blk", "lsi"), ("virtio-blk", "virtio-blk"),
                                               ("virtio-scsi", "virtio-scsi")])
def test_restart_on_the_secondary_device(dumpbed_run, primary, secondary):
    clean = dumpbed_run(disk=primary, secondary=secondary)
    assert_passed(clean)  # without a fault the secondary stays untouched (devices oracle)
    # Fail at the last write of the body: every component has been called once by then.
    last_body_write = write_numbers(clean.run_dir)[-1]
    late = dumpbed_run(disk=primary, secondary=secondary, faults=[f"eio-at={last_body_write}"])
    assert_passed(late)
    devices = {d["role"]: d for d in late.report["devices"]}
    assert devices["primary"]["status"] == "partial" and devices["primary"]["generation"] == 1
    assert devices["secondary"]["status"] == "complete" and devices["secondary"]["generation"] == 2
    dump = dumpfmt.read_image(late.run_dir / "secondary.img")
    assert dump.header.generation == 2 and dump.header.restart_error == EIO
    called_again = {dump.components[c.component].name for c in dump.calls if c.generation == 2 and c.op == START}
    for c in dump.components:
        if c.status in (DISABLED, EXCLUDED):
            continue
        if c.flags & CALL_ON_RESTART:
            assert c.name in called_again and not c.flags & TABLE_REUSED, c.name
        else:
            assert c.name not in called_again and c.flags & TABLE_REUSED, c.name
    assert called_again, "no component asked to be called on restart"


def test_restart_before_the_samples_were_reached_calls_them_once(dumpbed_run):
    """A failure in the middle of the ram area: the components registered after it are first
    called in generation 2, each exactly once."""
    clean = dumpbed_run(secondary="lsi")
    assert_passed(clean)
    ram = write_numbers(clean.run_dir, "ram")
    mid = dumpbed_run(secondary="lsi", faults=[f"eio-at={ram[len(ram) // 2]}"])
    assert_passed(mid)
    dump = dumpfmt.read_image(mid.run_dir / "secondary.img")
    starts = {}
    for call in dump.calls:
        if call.op == START:
            starts.setdefault(dump.components[call.component].name, []).append(call.generation)
    order = [c.name for c in dump.components]
    after_ram = order[order.index("ram") + 1:]
    for name in after_ram:
        if by_name(dump)[name].status != DISABLED:
            assert starts.get(name) == [2], (name, starts.get(name))


def test_primary_failure_without_a_secondary_is_partial(dumpbed_run):
    """The 5th write fails before the first area is on disk: partial, as the scenario expects;
    the header alone is judged by crash-record."""
    result = dumpbed_run(faults=["eio-at=5"])
    result.assert_passed()
    report = result.report
    assert report["outcome"] == report["expected_outcome"] == "partial"
    assert "cut short before its crash record was written" in result.check("crash-record")["detail"]
