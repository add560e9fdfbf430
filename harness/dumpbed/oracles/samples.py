"""The host's model of the dump facility's sample components (docs/components.md).

    SAMPLE_NAMES                   the samples, in registration order
    resolve_components(spec)       `--components` (default / all / none / a comma list) -> names
    pattern(name, k, length)       the bytes of a sample's area k
    expected_components(names, v)  what the directory must hold for those samples at level v:
                                   the built-ins, then each sample's status, flags, areas,
                                   estimate and generation-1 call sequence

Written from docs/components.md and docs/dump-format.md, not from the guest's code. The
numbers (flags, ops, outcomes, statuses, errnos) are the pages' own, so this module does not
depend on the reader's enums.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import IntEnum, IntFlag
from functools import lru_cache
from typing import NamedTuple

import google_crc32c
import numpy as np

from dumpbed.errors import DumpbedError
from dumpbed.guest_interface import Errno

# --------------------------------------------------------------------------------------------
# Numbers of docs/dump-format.md
# --------------------------------------------------------------------------------------------


class Kind(IntEnum):
    CRASH_RECORD = 1
    KERNEL = 2
    RAM = 3
    OTHER = 4


class Status(IntEnum):
    DUMPED = 1
    EXCLUDED = 2
    FAILED = 3
    DISABLED = 4
    PENDING = 5
    PARTIAL = 6  # being collected when the directory was written (never in a COMPLETE dump)


class Flag(IntFlag):
    CALL_ON_RESTART = 1 << 0
    GLOBAL_BUFFER = 1 << 1
    RAS = 1 << 2
    UNLIMITED = 1 << 3
    PRIVATE_STAGING = 1 << 4
    SHARED_STAGING = 1 << 5
    SERIALIO = 1 << 6
    RTNFAILURE = 1 << 7
    PIN_VIOLATION = 1 << 8
    ENDED_EARLY = 1 << 9
    TABLE_REUSED = 1 << 10


ALL_FLAGS = 0x7FF  # every defined bit, as a plain int (~ on an IntFlag drops unknown bits)


class Op(IntEnum):
    START = 1
    AGAIN = 2
    DONE = 3
    ESTIMATE = 4


class Outcome(IntEnum):
    TABLE = 1
    NONE = 2
    NEGATIVE = 3
    FAULT = 4
    VALUE = 5
    ACK = 6
    BAD = 7


AREA_VOLATILE = 1
AREA_STAGED = 2
NO_COMPONENT = 0xFFFFFFFF

# errnos as the guest spells them
EIO, EFAULT, EINVAL, ENODATA = Errno.EIO, Errno.EFAULT, Errno.EINVAL, Errno.ENODATA

CD_LVL_NORMAL = 3
MAX_LEVEL = 9

# --------------------------------------------------------------------------------------------
# Names
# --------------------------------------------------------------------------------------------

BUILTIN_NAMES = ("crash-record", "kernel", "ram")
BUILTIN_KINDS = {"crash-record": Kind.CRASH_RECORD, "kernel": Kind.KERNEL, "ram": Kind.RAM}

SHORT_NAMES = {
    "smp-classic": "cls",
    "smp-unlimited": "unl",
    "smp-global": "glb",
    "ras-levels": "lvl",
    "ras-private": "prv",
    "ras-shared": "shr",
    "smp-rtnfail": "rtf",
    "ras-negative": "neg",
    "ras-early": "erl",
    "ras-off": "off",
    "smp-pinviolator": "pin",
}
SAMPLE_NAMES = tuple(SHORT_NAMES)  # registration order
NOT_DEFAULT = ("smp-pinviolator",)
KEYWORDS = {
    "all": SAMPLE_NAMES,
    "default": tuple(n for n in SAMPLE_NAMES if n not in NOT_DEFAULT),
    "none": (),
}


def resolve_components(spec: str) -> tuple[str, ...]:
    """`default`, `all`, `none` or a comma list of sample names (keywords may be part of the
    list: `default,smp-pinviolator`) -> the enabled samples in registration order."""
    if not isinstance(spec, str) or not spec.strip():
        raise DumpbedError("empty component list (use none, default, all or sample names)")
    chosen: set[str] = set()
    for word in spec.split(","):
        word = word.strip()
        if word in KEYWORDS:
            chosen.update(KEYWORDS[word])
        elif word in SHORT_NAMES:
            chosen.add(word)
        else:
            what = "an empty name" if not word else f"unknown component {word!r}"
            raise DumpbedError(f"--components {spec!r}: {what} (available: none, default, all, "
                               f"{', '.join(SAMPLE_NAMES)})")
    return tuple(n for n in SAMPLE_NAMES if n in chosen)


# --------------------------------------------------------------------------------------------
# The pattern
# --------------------------------------------------------------------------------------------

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15
MULTIPLIER = 0x2545F4914F6CDD1D
_BLOCK = 2048  # words per vectorised step


def pattern_state(name: str, index: int) -> int:
    """The xorshift state before the first word of area `index` of component `name`."""
    crc = google_crc32c.value(name.encode("ascii"))
    return ((crc << 32) | (index & 0xFFFFFFFF)) ^ GOLDEN


def _step(x: int) -> int:
    x ^= x >> 12
    x ^= (x << 25) & MASK64
    x ^= x >> 27
    return x


@lru_cache(maxsize=1)
def _jump_table() -> np.ndarray:
    """T[j, i] = the state after j+1 steps from the state with only bit i set. The step is
    linear over GF(2), so the state after j+1 steps from x is the XOR of T[j, i] over x's set
    bits: a whole block of states from one state, without a Python loop per word."""
    x = np.uint64(1) << np.arange(64, dtype=np.uint64)
    table = np.empty((_BLOCK, 64), dtype=np.uint64)
    for j in range(_BLOCK):
        x ^= x >> np.uint64(12)
        x ^= x << np.uint64(25)
        x ^= x >> np.uint64(27)
        table[j] = x
    return table


def _states(x: int, count: int) -> np.ndarray:
    """The `count` states following state x (the first is one step after x)."""
    table = _jump_table()
    out = np.empty(count, dtype=np.uint64)
    done = 0
    while done < count:
        n = min(_BLOCK, count - done)
        bits = [i for i in range(64) if x >> i & 1]
        block = np.bitwise_xor.reduce(table[:n, bits], axis=1) if bits else np.zeros(n, np.uint64)
        out[done:done + n] = block
        x = int(block[-1])
        done += n
    return out


def pattern(name: str, index: int, length: int) -> bytes:
    """The first `length` bytes of the pattern stream of area `index` of component `name`:
    seed (crc32c(name) << 32) | index, xorshift 12/25/27, each word times 0x2545F4914F6CDD1D,
    little-endian (docs/components.md)."""
    if length <= 0:
        return b""
    words = (length + 7) // 8
    with np.errstate(over="ignore"):
        values = _states(pattern_state(name, index), words) * np.uint64(MULTIPLIER)
    return values.astype("<u8").tobytes()[:length]


# --------------------------------------------------------------------------------------------
# The model
# --------------------------------------------------------------------------------------------


class Call(NamedTuple):
    """One routine call as the directory records it (op, outcome, entries)."""
    op: int
    outcome: int
    entries: int = 0

    def __str__(self) -> str:
        text = f"{_name(Op, self.op)}/{_name(Outcome, self.outcome)}"
        return text + (f"/{self.entries}" if self.outcome == Outcome.TABLE else "")


def _name(enum, value) -> str:
    try:
        return enum(value).name
    except ValueError:
        return f"?{value}"


@dataclass(frozen=True)
class ExpectedArea:
    name: str
    length: int
    staged: bool = False


@dataclass(frozen=True)
class ExpectedComponent:
    """What one component's directory entry must say. None: not checked (the built-ins' sizes
    depend on the machine)."""
    name: str
    kind: int
    status: int
    reason: int = 0
    flags: int = 0  # exactly these, TABLE_REUSED aside (a restart decides it)
    level: int | None = None
    areas: tuple[ExpectedArea, ...] | None = None
    estimate: int | None = None
    staging_bytes: int | None = None
    global_buffer_bytes: int | None = None
    failure_rv: int = 0
    failure_handle: int = 0
    collection: tuple[Call, ...] = ()  # START and AGAIN calls of one generation
    negative_value: int | None = None  # the value of its NEGATIVE call
    violations: int = 0

    @property
    def sample(self) -> bool:
        return self.name in SHORT_NAMES

    @property
    def dumped(self) -> int | None:
        return None if self.areas is None else sum(a.length for a in self.areas)

    @property
    def called(self) -> bool:
        return self.status != Status.DISABLED

    @property
    def gives_data(self) -> bool:
        """It returns a table and never a negative value: it gets DONE at the end."""
        outcomes = {c.outcome for c in self.collection}
        return Outcome.TABLE in outcomes and Outcome.NEGATIVE not in outcomes

    @property
    def calls(self) -> tuple[Call, ...]:
        """Its generation-1 call sequence, ESTIMATE first and DONE last, as in a dump
        without a restart."""
        if not self.called:
            return ()
        done = (Call(Op.DONE, Outcome.ACK),) if self.gives_data else ()
        return (Call(Op.ESTIMATE, Outcome.VALUE),) + self.collection + done


def _areas(short: str, lengths, staged: bool = False) -> tuple[ExpectedArea, ...]:
    return tuple(ExpectedArea(f"{short}.{k}", length, staged) for k, length in enumerate(lengths))


def _unlimited(areas: int, per_table: int, end: Call = Call(Op.AGAIN, Outcome.NONE)) -> tuple[Call, ...]:
    """START and AGAIN tables of `per_table` entries for `areas` areas, then `end`."""
    sizes = [min(per_table, areas - k) for k in range(0, areas, per_table)]
    calls = [Call(Op.START if i == 0 else Op.AGAIN, Outcome.TABLE, n) for i, n in enumerate(sizes)]
    return tuple(calls) + (end,)


def _sample(name: str, v: int) -> ExpectedComponent:
    short = SHORT_NAMES[name]
    ras = Flag.RAS
    if name == "smp-classic":
        areas = _areas(short, [4096, 10000, 512])
        return ExpectedComponent(name, Kind.OTHER, Status.DUMPED, areas=areas, level=0,
                                 collection=(Call(Op.START, Outcome.TABLE, 3),))
    if name == "smp-unlimited":
        areas = _areas(short, [64 + 8 * (k % 16) for k in range(300)])
        return ExpectedComponent(name, Kind.OTHER, Status.DUMPED, flags=Flag.UNLIMITED | Flag.CALL_ON_RESTART,
                                 areas=areas, level=0, collection=_unlimited(300, 16))
    if name == "smp-global":
        return ExpectedComponent(name, Kind.OTHER, Status.DUMPED, flags=Flag.GLOBAL_BUFFER | Flag.CALL_ON_RESTART,
                                 areas=_areas(short, [12288], staged=True), level=0, global_buffer_bytes=16384,
                                 collection=(Call(Op.START, Outcome.TABLE, 1),))
    if name == "ras-levels":
        return ExpectedComponent(name, Kind.OTHER, Status.DUMPED, flags=ras | Flag.SERIALIO, level=v,
                                 areas=_areas(short, [1024 * (k + 1) for k in range(v + 1)]),
                                 collection=(Call(Op.START, Outcome.TABLE, v + 1),))
    if name == "ras-private":
        return ExpectedComponent(name, Kind.OTHER, Status.DUMPED,
                                 flags=ras | Flag.PRIVATE_STAGING | Flag.CALL_ON_RESTART, level=v,
                                 areas=_areas(short, [16384 * (v + 1)], staged=True), staging_bytes=262144,
                                 collection=(Call(Op.START, Outcome.TABLE, 1),))
    if name == "ras-shared":
        n = 4 * (v + 1)
        return ExpectedComponent(name, Kind.OTHER, Status.DUMPED,
                                 flags=ras | Flag.SHARED_STAGING | Flag.UNLIMITED | Flag.CALL_ON_RESTART, level=v,
                                 areas=_areas(short, [2048] * n), staging_bytes=65536, collection=_unlimited(n, 3))
    if name == "smp-rtnfail":
        return ExpectedComponent(name, Kind.OTHER, Status.FAILED, EIO, flags=Flag.RTNFAILURE, level=0,
                                 areas=_areas(short, [4096]), failure_rv=-5, failure_handle=0xD0B5EDF00D,
                                 collection=(Call(Op.START, Outcome.TABLE, 1),))
    if name == "ras-negative":
        return ExpectedComponent(name, Kind.OTHER, Status.EXCLUDED, ENODATA, flags=ras, level=v, areas=(),
                                 estimate=4096, collection=(Call(Op.START, Outcome.NEGATIVE),), negative_value=-1)
    if name == "ras-early":
        end = Call(Op.AGAIN, Outcome.NEGATIVE)
        return ExpectedComponent(name, Kind.OTHER, Status.DUMPED,
                                 flags=ras | Flag.UNLIMITED | Flag.CALL_ON_RESTART | Flag.ENDED_EARLY, level=v,
                                 areas=_areas(short, [4096] * 8), estimate=12 * 4096,
                                 collection=_unlimited(8, 4, end), negative_value=-2)
    if name == "ras-off":
        # Never called: dumped at no level (0), no estimate asked (0).
        return ExpectedComponent(name, Kind.OTHER, Status.DISABLED, flags=ras, level=0, areas=(), estimate=0)
    if name == "smp-pinviolator":
        return ExpectedComponent(name, Kind.OTHER, Status.FAILED, EFAULT, flags=Flag.PIN_VIOLATION, level=0,
                                 areas=(), estimate=4096, collection=(Call(Op.START, Outcome.FAULT),), violations=1)
    raise DumpbedError(f"unknown sample component {name!r}")


def expected_sample(name: str, level: int) -> ExpectedComponent:
    """One sample at level `level`; its estimate is what it dumps unless the page says otherwise."""
    model = _sample(name, level)
    estimate = model.dumped if model.estimate is None else model.estimate
    return replace(model, estimate=estimate, staging_bytes=model.staging_bytes or 0,
                   global_buffer_bytes=model.global_buffer_bytes or 0)


def expected_builtin(name: str) -> ExpectedComponent:
    return ExpectedComponent(name, BUILTIN_KINDS[name], Status.DUMPED)


def expected_components(samples, level: int) -> list[ExpectedComponent]:
    """Every component the directory must list, in registration order: the built-ins, then
    the enabled samples."""
    enabled = set(samples)
    unknown = enabled - set(SAMPLE_NAMES)
    if unknown:
        raise DumpbedError(f"unknown sample component(s): {', '.join(sorted(unknown))}")
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= MAX_LEVEL:
        raise DumpbedError(f"dump level must be 0..{MAX_LEVEL}, not {level!r}")
    builtins = [expected_builtin(n) for n in BUILTIN_NAMES]
    return builtins + [expected_sample(n, level) for n in SAMPLE_NAMES if n in enabled]


@dataclass(frozen=True)
class Expectation:
    """What a run's scenario says the dump must hold."""
    samples: tuple[str, ...]
    level: int = CD_LVL_NORMAL
    secondary: str | None = None
    restart_expected: bool = False
    components: tuple[ExpectedComponent, ...] = field(default=())

    @classmethod
    def of(cls, samples, level: int = CD_LVL_NORMAL, secondary: str | None = None,
           restart_expected: bool = False) -> "Expectation":
        ordered = tuple(n for n in SAMPLE_NAMES if n in set(samples))
        comps = tuple(expected_components(ordered, level))
        return cls(ordered, level, secondary, restart_expected, comps)

    def component(self, name: str) -> ExpectedComponent | None:
        for c in self.components:
            if c.name == name:
                return c
        return None
