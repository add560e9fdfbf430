"""Each new oracle shown failing on a real guest's dump, doctored on the host.

One guest run with every sample component and a restart on a secondary device; then, one at a
time, a directory record or a data byte of the dump of record is changed (with the directory
and header CRCs resealed, so that only the doctored fact is wrong), `validate_run` is asked
again, and the original bytes are put back.
"""
from __future__ import annotations

import struct
from contextlib import contextmanager

import pytest

from dumpbed.capture import writelog
from dumpbed.images import layout
from dumpbed.oracles import validate
from dumpbed.reader import dumpfmt
from dumpbed.run import Scenario, run_and_validate

MIB = 1 << 20
LEADER_AT = 65536
START, DONE, ESTIMATE = 1, 3, 4
VALUE = 5
EIO = 5


class Doctor:
    """Rewrites bytes of a dump partition and reseals the directory and header CRCs."""

    def __init__(self, image, part_offset: int, part_bytes: int, block_size: int):
        self.image, self.part, self.part_bytes, self.block = image, part_offset, part_bytes, block_size

    def read(self, offset: int, length: int) -> bytes:
        with open(self.image, "rb") as f:
            f.seek(self.part + offset)
            return f.read(length)

    def write(self, offset: int, data: bytes) -> None:
        with open(self.image, "r+b") as f:
            f.seek(self.part + offset)
            f.write(data)

    @property
    def dir_at(self) -> int:
        """The directory slot the leader names (format v3: slot 1 at dir_offset, slot 2 after it)."""
        header = self.read(LEADER_AT, 512)
        dir_offset, dir_bytes = struct.unpack_from("<QI", header, 80)
        slot, = struct.unpack_from("<I", header, 484)
        return dir_offset + (slot - 1) * dir_bytes

    def reseal(self) -> None:
        header = bytearray(self.read(LEADER_AT, 512))
        dir_bytes = struct.unpack_from("<I", header, 88)[0]
        struct.pack_into("<I", header, 92, dumpfmt.crc32c(self.read(self.dir_at, dir_bytes)))
        struct.pack_into("<I", header, 508, dumpfmt.crc32c(bytes(header[:508])))
        self.write(LEADER_AT, bytes(header))
        self.write(self.part_bytes - self.block, bytes(header))  # the trailer equals the leader

    @contextmanager
    def changed(self, offset: int, data: bytes, reseal: bool = True):
        saved_at = [(offset, self.read(offset, len(data))), (LEADER_AT, self.read(LEADER_AT, 512)),
                    (self.part_bytes - self.block, self.read(self.part_bytes - self.block, 512))]
        self.write(offset, data)
        if reseal:
            self.reseal()
        try:
            yield
        finally:
            for where, original in saved_at:
                self.write(where, original)


@pytest.fixture(scope="module")
def restarted_run(tmp_path_factory, guest_kernel):
    """A dump with every sample, restarted on an lsi secondary at the last body write."""
    base = tmp_path_factory.mktemp("doctored")
    clean = base / "clean"
    _, report = run_and_validate(Scenario(out_dir=clean, memory_bytes=32 * MIB, accel="auto",
                                          components="all", secondary="lsi"))
    assert report["verdict"] == "pass", report["checks"]
    dump = dumpfmt.read_image(clean / "dump.img")
    body_lo = layout.load(clean / "layout.json").dump_offset + dump.header.body_offset
    scenario = validate.load_scenario(clean / "scenario.json")
    writes = writelog.parse(clean / writelog.TRACE_FILE, writelog.ANY_BUS, scenario["block_size"])
    crashed = writelog.crash_time(clean)
    after = [w for w in writes if crashed is None or w.time is None or w.time >= crashed]
    last_body = max(n for n, w in enumerate(after, 1) if w.offset >= body_lo and w.offset < body_lo + dump.header.body_bytes)
    out = base / "restarted"
    _, report = run_and_validate(Scenario(out_dir=out, memory_bytes=32 * MIB, accel="auto", components="all",
                                          secondary="lsi", faults=[f"eio-at={last_body}"]))
    assert report["verdict"] == "pass", report["checks"]
    return out


def secondary_doctor(run_dir) -> tuple[Doctor, dumpfmt.Dump]:
    lay = layout.load(run_dir / "secondary.layout.json")
    dump = dumpfmt.read(run_dir / lay.image, lay.dump_offset, lay.dump_size, lay.block_size)
    return Doctor(run_dir / lay.image, lay.dump_offset, lay.dump_size, lay.block_size), dump


def check(run_dir, name: str):
    return validate.validate_run(run_dir).check(name)


def call_entry_at(doctor: Doctor, dump: dumpfmt.Dump, index: int) -> int:
    return doctor.dir_at + 64 + 128 * len(dump.components) + 64 * len(dump.areas) + 24 * index


def test_the_restarted_run_passes_every_oracle(restarted_run):
    v = validate.validate_run(restarted_run)
    assert v.ok, [f"{c.name}: {c.detail}" for c in v.checks if not c.ok]
    assert {"protocol", "completeness", "sample-data", "devices"} <= {c.name for c in v.checks}


def test_protocol_fails_when_a_done_call_is_missing(restarted_run):
    """The DONE record turned into an ESTIMATE answered (a well-formed record, wrong protocol)."""
    doctor, dump = secondary_doctor(restarted_run)
    done = next(c for c in dump.calls if c.op == DONE)
    with doctor.changed(call_entry_at(doctor, dump, done.index) + 4, bytes([ESTIMATE, done.generation, VALUE])):
        assert dumpfmt.read(doctor.image, doctor.part, doctor.part_bytes, doctor.block).status == "complete"
        result = check(restarted_run, "protocol")
    assert not result.ok and dump.components[done.component].name in " ".join(result.problems)


def test_protocol_fails_when_a_routine_is_called_again_without_call_on_restart(restarted_run):
    doctor, dump = secondary_doctor(restarted_run)
    classic = next(c for c in dump.components if c.name == "smp-classic")
    start = next(c for c in dump.calls if c.component == classic.index and c.op == START)
    with doctor.changed(call_entry_at(doctor, dump, start.index) + 5, bytes([2])):  # its START, now in generation 2
        result = check(restarted_run, "protocol")
    assert not result.ok


def test_completeness_fails_on_a_wrong_exclusion_reason(restarted_run):
    """ras-negative excluded with EIO instead of ENODATA: a well-formed entry the model refuses."""
    doctor, dump = secondary_doctor(restarted_run)
    negative = next(c for c in dump.components if c.name == "ras-negative")
    with doctor.changed(doctor.dir_at + 64 + 128 * negative.index + 40, struct.pack("<I", EIO)):
        assert dumpfmt.read(doctor.image, doctor.part, doctor.part_bytes, doctor.block).status == "complete"
        result = check(restarted_run, "completeness")
    assert not result.ok and "ras-negative" in " ".join(result.problems)


def test_completeness_fails_when_the_estimate_is_below_the_dumped_bytes(restarted_run):
    doctor, dump = secondary_doctor(restarted_run)
    classic = next(c for c in dump.components if c.name == "smp-classic")
    with doctor.changed(doctor.dir_at + 64 + 128 * classic.index + 64, struct.pack("<Q", classic.dumped_bytes - 1)):
        result = check(restarted_run, "completeness")
    assert not result.ok and f"smp-classic: estimate_bytes {classic.dumped_bytes - 1} below dumped_bytes" in \
        " ".join(result.problems)


def test_sample_data_fails_on_a_changed_byte(restarted_run):
    doctor, dump = secondary_doctor(restarted_run)
    classic = next(c for c in dump.components if c.name == "smp-classic")
    area = dump.component_areas(classic)[1]
    offset = area.disk_offset + 100
    flipped = bytes([doctor.read(offset, 1)[0] ^ 0x40])
    with doctor.changed(offset, flipped, reseal=False):
        result = check(restarted_run, "sample-data")
    assert not result.ok and area.name in " ".join(result.problems)


def test_devices_fails_when_the_secondary_claims_generation_1(restarted_run):
    doctor, _ = secondary_doctor(restarted_run)
    with doctor.changed(LEADER_AT + 40, struct.pack("<I", 1)):
        result = check(restarted_run, "devices")
    assert not result.ok and "secondary" in result.detail
