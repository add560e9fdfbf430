"""The properties every mutated dump is held to.

1. The reader, validate_image and validate_run return; the only exception they may raise is
   dumpbed.errors.DumpbedError (input unusable as a whole, e.g. an image with no GPT).
2. Each call finishes within TIME_BOUND seconds and grows the process's memory by at most
   MEMORY_BOUND bytes (the peak resident set, measured with /proc/self/clear_refs and VmHWM;
   tracemalloc where that is unavailable).
3. Never a pass for a damaged dump:
   - a dump any of whose bytes its (pristine) leader vouches for changed is never classified
     "complete" by the reader (unless the mutation resealed CRCs on purpose), and
     validate_image never passes it;
   - validate_run never passes a run that passed before, once a byte changed that its leader
     vouches for or that lies outside its extent (the canary covers that), resealed or not for
     a complete dump. What the leader vouches for (docs/dump-format.md, "Durability"): the
     leader slot, directory and table slot `slot`, the body's sealed chunks, and when COMPLETE
     the end marker and the trailer. The rest of the extent is the other slot (an earlier
     checkpoint's) and, in a partial dump, body the writer may have written after its last
     checkpoint: nothing vouches for it, so changing it may pass.
   A mutation that changes no byte (a zeroed range already zero, two equal blocks swapped)
   is held to 1 and 2 only.
"""

from __future__ import annotations

import os
import re
import time
import tracemalloc
from dataclasses import dataclass
from pathlib import Path

from dumpbed.errors import DumpbedError
from dumpbed.oracles import validate
from dumpbed.reader import dumpfmt

from .bench import Bench

MiB = 1 << 20
TIME_BOUND = float(os.environ.get("DUMPBED_FUZZ_TIME_BOUND", "10"))
# Peak growth of the resident set during one call. The reader reads big regions 8 MiB at a
# time; validate_run also holds the snapshot (32 MiB of guest RAM for the real runs).
MEMORY_BOUND = {"read": 96 * MiB, "validate_image": 96 * MiB, "validate_run": 192 * MiB, "cli": 96 * MiB}
STATUSES = {"none", "unsupported", "partial", "corrupt", "complete"}
_CLEAR_REFS = Path("/proc/self/clear_refs")


def _rss_kib(field: str) -> int:
    m = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(m.group(1)) if m else 0


def _hwm_usable() -> bool:
    try:
        _CLEAR_REFS.write_text("5")
        return _rss_kib("VmHWM") > 0
    except OSError:
        return False


HWM = _hwm_usable()


@dataclass
class Outcome:
    what: str
    value: object = None
    error: DumpbedError | None = None
    seconds: float = 0.0
    peak: int = 0


PEAKS: dict[str, int] = {}  # the largest peak seen per call, for the report at the end


def guarded(what: str, fn) -> Outcome:
    """Call fn; a DumpbedError is an answer, anything else propagates (a bug)."""
    out = Outcome(what)
    if HWM:
        _CLEAR_REFS.write_text("5")
        base = _rss_kib("VmRSS")
    else:
        tracemalloc.start()
    t = time.perf_counter()
    try:
        out.value = fn()
    except DumpbedError as exc:
        out.error = exc
    finally:
        out.seconds = time.perf_counter() - t
        if HWM:
            out.peak = max(0, _rss_kib("VmHWM") - base) * 1024
        else:
            out.peak = tracemalloc.get_traced_memory()[1]
            tracemalloc.stop()
    PEAKS[what] = max(PEAKS.get(what, 0), out.peak)
    assert out.seconds < TIME_BOUND, f"{what} took {out.seconds:.1f} s (bound {TIME_BOUND} s)"
    assert out.peak < MEMORY_BOUND[what], f"{what} grew memory by {out.peak >> 20} MiB (bound {MEMORY_BOUND[what] >> 20})"
    return out


def passed(outcome: Outcome) -> bool:
    return outcome.error is None and outcome.value.ok


def read(dev) -> dumpfmt.Dump:
    return dumpfmt.read(dev.image, dev.part_offset, dev.part_bytes, dev.block_size)


def hold(bench: Bench, mutations, run: bool = True) -> dict[str, Outcome]:
    """Check every property on the bench's mutated image; returns the outcomes."""
    dev = bench.dev
    resealed = any(m.resealed for m in mutations)
    plausible = any(getattr(m, "plausible", False) for m in mutations)
    in_vouched = bench.changed_within(dev.vouched or [dev.regions["anywhere"]])

    r = guarded("read", lambda: read(dev))
    assert r.error is None, f"the reader raised {r.error!r}"
    dump = r.value
    assert dump.status in STATUSES
    assert dump.status != "corrupt" or dump.first_inconsistency, "corrupt, but no inconsistency named"
    vi = guarded("validate_image", lambda: validate.validate_image(dev.image))
    outcomes = {"read": r, "validate_image": vi}
    if vi.error is None:
        assert vi.value.dump.status in STATUSES
        if vi.value.ok:
            assert vi.value.dump.status == "complete"
    if in_vouched and not plausible:
        if not resealed:
            assert dump.status != "complete", f"damaged where the leader vouches, yet read as complete: {dump.reason}"
        assert not passed(vi), "damaged where the leader vouches, yet validate_image passes"
    if run:
        vr = guarded("validate_run", lambda: validate.validate_run(dev.run_dir))
        outcomes["validate_run"] = vr
        if vr.error is None and vr.value.ok:
            assert vr.value.dump.status == "complete"
        if dev.run_passes and not plausible:
            must_fail = (dev.complete or not resealed) and bench.changed_within(dev.vouched + _outside(dev))
            if must_fail:
                assert not passed(vr), "the run's disk was damaged, yet validate_run passes"
    return outcomes


def _outside(dev) -> list[tuple[int, int]]:
    out, pos = [], 0
    for s, e in sorted(dev.extent):
        if s > pos:
            out.append((pos, s))
        pos = max(pos, e)
    if pos < dev.size:
        out.append((pos, dev.size))
    return out
