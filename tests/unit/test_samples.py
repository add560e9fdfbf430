"""harness/dumpbed/oracles/samples.py: names, --components, the pattern, and the model of the samples."""

import google_crc32c
import pytest

from dumpbed.errors import DumpbedError
from dumpbed.oracles import samples
from dumpbed.oracles.samples import Call, Flag, Op, Outcome, Status

M64 = (1 << 64) - 1


def slow_pattern(name: str, k: int, length: int) -> bytes:
    """docs/components.md's pattern, one word at a time, written from the page."""
    seed = (google_crc32c.value(name.encode()) << 32) | k
    x = seed ^ 0x9E3779B97F4A7C15
    out = bytearray()
    while len(out) < length:
        x ^= x >> 12
        x = (x ^ (x << 25)) & M64
        x ^= x >> 27
        out += ((x * 0x2545F4914F6CDD1D) & M64).to_bytes(8, "little")
    return bytes(out[:length])


# ---- the pattern ---------------------------------------------------------------------------


def test_crc32c_is_castagnoli():
    assert google_crc32c.value(b"123456789") == 0xE3069283  # the check value of dump-format.md


@pytest.mark.parametrize("name,k,length", [
    ("smp-classic", 0, 4096), ("smp-classic", 1, 10000), ("smp-classic", 2, 512),
    ("smp-unlimited", 299, 152), ("smp-global", 0, 12288), ("ras-private", 0, 163840),
    ("ras-early", 7, 4096), ("x", 0, 1), ("x", 5, 7), ("x", 5, 9), ("ras-shared", 11, 16 * 1024 + 3),
    ("ras-levels", 9, 40000),
])
def test_pattern_equals_the_slow_reference(name, k, length):
    assert samples.pattern(name, k, length) == slow_pattern(name, k, length)


def test_pattern_fixed_values_worked_by_hand():
    # crc32c("smp-classic") = 0xE2CB8DF1; area 1: seed 0xE2CB8DF1_00000001, state seed ^ golden;
    # two xorshift steps, each word times 0x2545F4914F6CDD1D, little-endian.
    assert google_crc32c.value(b"smp-classic") == 0xE2CB8DF1
    assert samples.pattern_state("smp-classic", 1) == 0xE2CB8DF100000001 ^ 0x9E3779B97F4A7C15
    assert samples.pattern("smp-classic", 1, 16).hex() == "981720f3522ed96c1519b9d063ba02be"
    assert samples.pattern("smp-classic", 1, 3) == bytes.fromhex("981720")


def test_pattern_is_a_stream_prefix_and_differs_per_area_and_name():
    long = samples.pattern("ras-levels", 3, 50000)
    assert samples.pattern("ras-levels", 3, 12345) == long[:12345]
    assert samples.pattern("ras-levels", 4, 64) != long[:64]
    assert samples.pattern("ras-shared", 3, 64) != long[:64]
    assert samples.pattern("ras-levels", 3, 0) == b""


def test_pattern_block_boundary():
    # 2048 words per vectorised block: the words around the boundary match the reference
    data = samples.pattern("smp-unlimited", 17, 8 * 4097)
    ref = slow_pattern("smp-unlimited", 17, 8 * 4097)
    assert data[8 * 2040:] == ref[8 * 2040:]


# ---- names ---------------------------------------------------------------------------------


def test_names_in_registration_order():
    assert samples.SAMPLE_NAMES == (
        "smp-classic", "smp-unlimited", "smp-global", "ras-levels", "ras-private", "ras-shared",
        "smp-rtnfail", "ras-negative", "ras-early", "ras-off", "smp-pinviolator")
    assert samples.BUILTIN_NAMES == ("crash-record", "kernel", "ram")


def test_resolve_keywords():
    assert samples.resolve_components("all") == samples.SAMPLE_NAMES
    assert samples.resolve_components("default") == samples.SAMPLE_NAMES[:-1]
    assert "smp-pinviolator" not in samples.resolve_components("default")
    assert samples.resolve_components("none") == ()


def test_resolve_list_comes_back_in_registration_order():
    assert samples.resolve_components("ras-off, smp-classic,ras-off") == ("smp-classic", "ras-off")
    assert samples.resolve_components("default,smp-pinviolator") == samples.SAMPLE_NAMES


@pytest.mark.parametrize("spec", ["smp-bogus", "smp-classic,,ras-off", "", " ", "ALL", "smp-classic,nope"])
def test_resolve_refuses_bad_lists_in_one_line(spec):
    with pytest.raises(DumpbedError) as e:
        samples.resolve_components(spec)
    assert "\n" not in str(e.value)


# ---- the model -----------------------------------------------------------------------------

S, A, D, E = Op.START, Op.AGAIN, Op.DONE, Op.ESTIMATE
T, N, NEG, F, V, K = Outcome.TABLE, Outcome.NONE, Outcome.NEGATIVE, Outcome.FAULT, Outcome.VALUE, Outcome.ACK


def model(name, level=3):
    return samples.expected_sample(name, level)


def test_unlimited_sequence_by_hand():
    m = model("smp-unlimited")
    want = [(E, V, 0), (S, T, 16)] + [(A, T, 16)] * 17 + [(A, T, 12), (A, N, 0), (D, K, 0)]
    assert [tuple(c) for c in m.calls] == want
    assert len(m.areas) == 300 and m.areas[299] == samples.ExpectedArea("unl.299", 64 + 8 * 11)
    assert m.estimate == m.dumped == 37008  # 300 * 64 + 8 * (18 * 120 + 66)
    assert m.flags == Flag.UNLIMITED | Flag.CALL_ON_RESTART and m.level == 0


def test_classic_global_rtnfail_by_hand():
    cls = model("smp-classic")
    assert [(a.name, a.length, a.staged) for a in cls.areas] == [
        ("cls.0", 4096, False), ("cls.1", 10000, False), ("cls.2", 512, False)]
    assert cls.estimate == 14608 and cls.flags == 0 and cls.status == Status.DUMPED
    assert [str(c) for c in cls.calls] == ["ESTIMATE/VALUE", "START/TABLE/3", "DONE/ACK"]
    glb = model("smp-global")
    assert [(a.name, a.length, a.staged) for a in glb.areas] == [("glb.0", 12288, True)]
    assert glb.flags == Flag.GLOBAL_BUFFER | Flag.CALL_ON_RESTART and glb.global_buffer_bytes == 16384
    rtf = model("smp-rtnfail")
    assert (rtf.status, rtf.reason, rtf.flags) == (Status.FAILED, 5, Flag.RTNFAILURE)
    assert (rtf.failure_rv, rtf.failure_handle, rtf.estimate) == (-5, 0xD0B5EDF00D, 4096)
    assert [str(c) for c in rtf.calls] == ["ESTIMATE/VALUE", "START/TABLE/1", "DONE/ACK"]


@pytest.mark.parametrize("level,areas,estimate", [(0, 1, 1024), (3, 4, 10240), (9, 10, 56320)])
def test_ras_levels_by_level(level, areas, estimate):
    m = model("ras-levels", level)
    assert len(m.areas) == areas and m.areas[-1].length == 1024 * areas
    assert m.estimate == estimate and m.level == level
    assert m.flags == Flag.RAS | Flag.SERIALIO
    assert [tuple(c) for c in m.collection] == [(S, T, areas)]


@pytest.mark.parametrize("level,tables", [(0, [3, 1]), (3, [3, 3, 3, 3, 3, 1]), (9, [3] * 13 + [1])])
def test_ras_shared_tables_by_level(level, tables):
    m = model("ras-shared", level)
    want = [(S, T, tables[0])] + [(A, T, n) for n in tables[1:]] + [(A, N, 0)]
    assert [tuple(c) for c in m.collection] == want
    assert m.estimate == 2048 * 4 * (level + 1) and m.staging_bytes == 65536
    assert m.flags == Flag.RAS | Flag.SHARED_STAGING | Flag.UNLIMITED | Flag.CALL_ON_RESTART


def test_ras_private_by_level():
    m = model("ras-private", 9)
    assert [(a.name, a.length, a.staged) for a in m.areas] == [("prv.0", 163840, True)]
    assert m.staging_bytes == 262144 and m.flags & Flag.CALL_ON_RESTART and m.flags & Flag.PRIVATE_STAGING


def test_negative_early_off_pin_by_hand():
    neg = model("ras-negative")
    assert [tuple(c) for c in neg.calls] == [(E, V, 0), (S, NEG, 0)]  # no FINISHED
    assert (neg.status, neg.reason, neg.estimate, neg.negative_value) == (Status.EXCLUDED, 61, 4096, -1)
    erl = model("ras-early")
    assert [tuple(c) for c in erl.calls] == [(E, V, 0), (S, T, 4), (A, T, 4), (A, NEG, 0)]
    assert (erl.estimate, erl.dumped, erl.negative_value) == (49152, 32768, -2)
    assert erl.flags & Flag.ENDED_EARLY and [a.name for a in erl.areas][-1] == "erl.7"
    off = model("ras-off")
    assert off.calls == () and off.status == Status.DISABLED and off.areas == ()
    pin = model("smp-pinviolator")
    assert [tuple(c) for c in pin.calls] == [(E, V, 0), (S, F, 0)]  # gave no data: no DONE
    assert (pin.status, pin.reason, pin.flags, pin.violations) == (Status.FAILED, 14, Flag.PIN_VIOLATION, 1)


def test_expected_components_builtins_first_then_registration_order():
    comps = samples.expected_components(["smp-pinviolator", "smp-classic"], 3)
    assert [c.name for c in comps] == ["crash-record", "kernel", "ram", "smp-classic", "smp-pinviolator"]
    assert [c.kind for c in comps[:3]] == [1, 2, 3] and comps[3].kind == 4


@pytest.mark.parametrize("names,level", [(["nope"], 3), ([], 10), ([], -1), ([], True)])
def test_expected_components_refuses_bad_input(names, level):
    with pytest.raises(DumpbedError):
        samples.expected_components(names, level)


def test_call_str():
    assert str(Call(S, T, 16)) == "START/TABLE/16" and str(Call(A, N)) == "AGAIN/NONE"
    assert str(Call(9, 9)) == "?9/?9"
