"""The component oracles: the call protocol, the component entries, the samples' data.

    expectation_from_scenario(scenario)     the scenario's samples, level and restart
    check_protocol(dump, expect)            "protocol": the call records obey the facility's
                                            rules, and the samples' calls are the model's
    component_problems(dump, expect)        for "completeness": every built-in and enabled
                                            sample listed once, in order, as the model says
    check_sample_data(dump, image, expect)  "sample-data": every sample area holds its pattern

Written from docs/components.md and docs/dump-format.md. The dump may be hostile: every index
is checked before use and every problem is one line.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

import numpy as np

from dumpbed.errors import DumpbedError
from dumpbed.guest_interface import errno_name
from dumpbed.oracles.base import Check, make_check
from dumpbed.reader.frames import AreaDataError
from dumpbed.oracles.samples import (
    ALL_FLAGS,
    AREA_STAGED,
    BUILTIN_NAMES,
    CD_LVL_NORMAL,
    EIO,
    MAX_LEVEL,
    NO_COMPONENT,
    SAMPLE_NAMES,
    Call,
    Expectation,
    ExpectedComponent,
    Flag,
    Kind,
    Op,
    Outcome,
    Status,
    pattern,
    resolve_components,
)

HEADER_COMPLETE = 2
MAX_VIOLATION_RECORDS = 16  # the writer's limit: FAULT calls past it may have no record
MAX_SAMPLE_AREA = 32 << 20  # no sample area is larger (the staging limit)
COLLECT_OPS = (Op.START, Op.AGAIN)
ENDING_OUTCOMES = (Outcome.NONE, Outcome.NEGATIVE, Outcome.FAULT, Outcome.BAD)
OUTCOMES_OF = {
    Op.START: {Outcome.TABLE, Outcome.NONE, Outcome.NEGATIVE, Outcome.FAULT, Outcome.BAD},
    Op.AGAIN: {Outcome.TABLE, Outcome.NONE, Outcome.NEGATIVE, Outcome.FAULT, Outcome.BAD},
    Op.DONE: {Outcome.ACK, Outcome.FAULT},
    Op.ESTIMATE: {Outcome.VALUE, Outcome.NONE, Outcome.NEGATIVE, Outcome.FAULT},
}


# --------------------------------------------------------------------------------------------
# The scenario
# --------------------------------------------------------------------------------------------


def expectation_from_scenario(scenario: dict) -> Expectation | None:
    """The scenario's samples and level; None for a scenario without "components" (a run
    made before the facility had components). A malformed value is a one-line DumpbedError."""
    if not isinstance(scenario, dict) or "components" not in scenario:
        return None
    names = scenario["components"]
    if isinstance(names, str):  # a --components spec rather than the resolved list
        names = list(resolve_components(names)) if names else []
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DumpbedError(f"scenario components must be a list of sample names, not {names!r}")
    unknown = [n for n in names if n not in SAMPLE_NAMES]
    if unknown:
        raise DumpbedError(f"scenario components: unknown sample(s) {', '.join(unknown)}")
    repeated = sorted(n for n, k in Counter(names).items() if k > 1)
    if repeated:
        raise DumpbedError(f"scenario components: {', '.join(repeated)} listed more than once")
    level = scenario.get("level", CD_LVL_NORMAL)
    if isinstance(level, bool) or not isinstance(level, int) or not 0 <= level <= MAX_LEVEL:
        raise DumpbedError(f"scenario level must be an integer 0..{MAX_LEVEL}, not {level!r}")
    secondary = scenario.get("secondary")
    if secondary is not None and not isinstance(secondary, str):
        raise DumpbedError(f"scenario secondary must be a disk kind or null, not {secondary!r}")
    restart = scenario.get("restart_expected", False)
    if not isinstance(restart, bool):
        raise DumpbedError(f"scenario restart_expected must be true or false, not {restart!r}")
    if restart and secondary is None:
        raise DumpbedError("scenario expects a restart but names no secondary dump device")
    return Expectation.of(names, level, secondary, restart)


def expectation_from_dump(dump) -> Expectation | None:
    """For a bare image (no scenario) of the dumpbed guest (its built-ins listed first): the
    sample components the dump lists, at the level and generation its header gives, are judged
    against the model. None when the header or directory cannot be trusted, the dump is not
    the dumpbed guest's, or the names are not the samples' in order."""
    if _untrusted(dump) is not None:
        return None
    listed = [c.name for c in dump.components]
    if listed[:len(BUILTIN_NAMES)] != list(BUILTIN_NAMES):
        return None  # not the dumpbed guest's facility: only the generic rules apply
    names = [n for n in listed if n in SAMPLE_NAMES]
    level = getattr(dump.header, "level", CD_LVL_NORMAL)
    if names != [n for n in SAMPLE_NAMES if n in names] or len(set(names)) != len(names) or \
            not 0 <= level <= MAX_LEVEL:
        return None
    restarted = getattr(dump.header, "generation", 1) == 2
    return Expectation.of(names, level, "unknown" if restarted else None, restarted)


# --------------------------------------------------------------------------------------------
# Reading the dump defensively
# --------------------------------------------------------------------------------------------


def _untrusted(dump) -> str | None:
    """Why the directory cannot be judged, or None."""
    if getattr(dump, "header", None) is None:
        return "no valid header: no directory to judge"
    if not getattr(dump, "directory_ok", True):
        return "the directory is invalid (see format): components, areas and calls not trusted"
    return None


def _signed(value: int, bits: int) -> int:
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def _enum_name(enum, value) -> str:
    try:
        return enum(value).name
    except ValueError:
        return f"unknown({value})"


def _errno(value: int) -> str:
    return errno_name(value)


def _flag_names(bits: int) -> str:
    names = [f.name for f in Flag if bits & f]
    return "|".join(names) if names else "none"


def _is_complete(header) -> bool:
    return getattr(header, "status", None) == HEADER_COMPLETE


def _areas_of(dump, comp) -> tuple[list, str | None]:
    """Its area entries (first_area .. first_area + area_count - 1), or a problem when that
    range leaves the area list."""
    n = len(dump.areas)
    first, count = comp.first_area, comp.area_count
    if count == 0:
        return [], None
    if first < 0 or count < 0 or first + count > n:
        return [], f"{comp.name}: areas {first}..{first + count - 1} lie outside the {n} area entries"
    return list(dump.areas[first:first + count]), None


@dataclass(frozen=True)
class _Rec:
    """A call record that passed the field checks."""
    position: int
    component: int
    op: int
    generation: int
    outcome: int
    entries: int
    level: int
    value: int  # signed

    @property
    def call(self) -> Call:
        return Call(self.op, self.outcome, self.entries if self.outcome == Outcome.TABLE else 0)

    def __str__(self) -> str:
        return f"{self.call} (call record {self.position}, generation {self.generation})"


def _records(dump, generation: int) -> tuple[list[_Rec], list[str]]:
    """The call records whose fields make sense, and a problem for each that does not."""
    good, problems = [], []
    ncomp = len(dump.components)
    for pos, raw in enumerate(dump.calls):
        where = f"call record {pos}"
        if not 0 <= raw.component < ncomp:
            problems.append(f"{where}: component {raw.component} out of range ({ncomp} components)")
            continue
        if raw.op not in OUTCOMES_OF:
            problems.append(f"{where}: unknown op {raw.op}")
            continue
        if raw.outcome not in set(Outcome):
            problems.append(f"{where}: unknown outcome {raw.outcome}")
            continue
        if not 1 <= raw.generation <= generation:
            problems.append(f"{where}: generation {raw.generation} in a dump of generation {generation}")
            continue
        rec = _Rec(pos, raw.component, raw.op, raw.generation, raw.outcome, raw.entries, raw.level,
                   _signed(raw.value, 64))
        problem = _record_field_problem(rec)
        if problem:
            problems.append(f"{where} ({dump.components[rec.component].name}): {problem}")
            continue
        good.append(rec)
    return good, problems


def _record_field_problem(rec: _Rec) -> str | None:
    op, outcome = _enum_name(Op, rec.op), _enum_name(Outcome, rec.outcome)
    if rec.outcome not in OUTCOMES_OF[rec.op]:
        return f"op {op} cannot have outcome {outcome}"
    if rec.entries and rec.outcome != Outcome.TABLE:
        return f"{op}/{outcome} with {rec.entries} entries (only a TABLE has entries)"
    if rec.outcome == Outcome.NEGATIVE and rec.value >= 0:
        return f"{op}/NEGATIVE with value {rec.value}, not negative"
    if rec.outcome not in (Outcome.VALUE, Outcome.NEGATIVE) and rec.value != 0:
        return f"{op}/{outcome} with value {rec.value} (only VALUE and NEGATIVE carry one)"
    return None


# --------------------------------------------------------------------------------------------
# protocol
# --------------------------------------------------------------------------------------------


def check_protocol(dump, expect: Expectation | None) -> Check:
    """Generic call-protocol rules for every component, plus the model's exact sequences for
    the samples (docs/components.md, docs/dump-format.md "Call record")."""
    why = _untrusted(dump)
    if why:
        return Check("protocol", False, why)
    h = dump.header
    generation = h.generation if h.generation in (1, 2) else 1
    problems = [] if h.generation in (1, 2) else [f"header generation {h.generation}, not 1 or 2"]
    records, record_problems = _records(dump, generation)
    problems += record_problems
    problems += _order_problems(dump, records)
    by_comp: dict[int, list[_Rec]] = defaultdict(list)
    for rec in records:
        by_comp[rec.component].append(rec)
    for index, comp in enumerate(dump.components):
        problems += _component_call_problems(dump, comp, index, by_comp[index], generation)
    problems += _violation_problems(dump, records, generation)
    if expect is not None:
        problems += _restart_problems(h, expect)
        problems += _sample_call_problems(dump, expect, by_comp, generation)
    ok = (f"{len(records)} call records and {len(dump.violations)} violation records of "
          f"{len(dump.components)} components follow the protocol (generation {generation})")
    if expect is not None:
        ok += f"; {len(expect.samples)} samples called as the model says"
    return make_check("protocol", problems, ok)


def _order_problems(dump, records: list[_Rec]) -> list[str]:
    """Generations never go back; the DONE calls come after every other call; within a
    generation the routines are called one component at a time, in registration order.
    The first breach of each rule is reported (one out-of-place record breaks many pairs)."""
    back = late = order = None
    last_gen, done_seen, last_collected = 0, False, {}
    for rec in records:
        name = dump.components[rec.component].name
        where = f"call record {rec.position} ({name}, {rec.call})"
        if rec.generation < last_gen and back is None:
            back = f"{where}: generation {rec.generation} after generation {last_gen}"
        last_gen = max(last_gen, rec.generation)
        if rec.op == Op.DONE:
            done_seen = True
        elif done_seen and late is None:
            late = f"{where}: {_enum_name(Op, rec.op)} after the DONE calls began"
        if rec.op in COLLECT_OPS:
            prev = last_collected.get(rec.generation, -1)
            if rec.component < prev and order is None:
                order = (f"{where}: {name} called after {dump.components[prev].name} in generation "
                         f"{rec.generation} (routines are called in registration order)")
            last_collected[rec.generation] = max(prev, rec.component)
    return [p for p in (back, late, order) if p]


def _component_call_problems(dump, comp, index: int, calls: list[_Rec], generation: int) -> list[str]:
    name = comp.name
    if comp.status == Status.DISABLED:
        if calls:
            return [f"{name}: DISABLED but called {len(calls)} times (first: {calls[0]})"]
        return []
    problems = _estimate_problems(dump, comp, calls)
    for gen in range(1, generation + 1):
        problems += _collection_problems(dump, comp, [c for c in calls if c.generation == gen and c.op in COLLECT_OPS],
                                         gen, gen == generation)
    problems += _restart_call_problems(dump, comp, calls, generation)
    problems += _done_problems(dump, comp, calls, generation)
    problems += _level_problems(dump, comp, calls)
    faulted = any(c.outcome == Outcome.FAULT for c in calls)
    if faulted and not comp.flags & Flag.PIN_VIOLATION:
        problems.append("a call faulted (FAULT) but PIN_VIOLATION is not set")
    if comp.flags & Flag.PIN_VIOLATION and not faulted:
        problems.append("PIN_VIOLATION set but none of its calls faulted")
    return [f"{name}: {p}" for p in problems]


def _estimate_problems(dump, comp, calls: list[_Rec]) -> list[str]:
    estimates = [c for c in calls if c.op == Op.ESTIMATE]
    problems = []
    if len(estimates) != 1:
        problems.append(f"{len(estimates)} ESTIMATE calls, expected exactly one (generation 1)")
    first_collect = next((c.position for c in calls if c.op in COLLECT_OPS), None)
    for est in estimates:
        if est.generation != 1:
            problems.append(f"ESTIMATE in generation {est.generation} (only generation 1 asks)")
        if first_collect is not None and est.position > first_collect:
            problems.append(f"ESTIMATE (call record {est.position}) after its START")
        if est.level != dump.header.level:
            problems.append(f"ESTIMATE at level {est.level}, the dump's level is {dump.header.level}")
        if est.outcome == Outcome.VALUE and est.value != comp.estimate_bytes:
            problems.append(f"estimate_bytes {comp.estimate_bytes}, its ESTIMATE call answered {est.value}")
    return problems


def _collection_problems(dump, comp, coll: list[_Rec], gen: int, last_gen: bool) -> list[str]:
    """One generation's START and AGAIN calls: START first and once; AGAIN only right after a
    TABLE of an UNLIMITED component; an unlimited run ends with NULL or a negative return."""
    if not coll:
        return []
    problems = []
    starts = sum(1 for c in coll if c.op == Op.START)
    if coll[0].op != Op.START:
        problems.append(f"generation {gen} begins with {coll[0]}, not START")
    if starts > 1:
        problems.append(f"{starts} START calls in generation {gen}")
    unlimited = bool(comp.flags & Flag.UNLIMITED)
    for prev, cur in zip(coll, coll[1:]):
        if cur.op != Op.AGAIN:
            continue
        if not unlimited:
            problems.append(f"{cur}: AGAIN, but the component never returned an unlimited table (no UNLIMITED)")
            break
        if prev.outcome != Outcome.TABLE:
            problems.append(f"{cur}: AGAIN after {prev.call}, which ended its data")
            break
    ended = coll[-1].outcome in ENDING_OUTCOMES
    if unlimited and last_gen and not ended and _is_complete(dump.header):
        problems.append(f"its unlimited tables never ended (last call {coll[-1]}): no AGAIN returned NULL "
                        "or a negative value")
    return problems


def _restart_call_problems(dump, comp, calls: list[_Rec], generation: int) -> list[str]:
    """Routines are called once per dump: again in generation 2 only with CALL_ON_RESTART or
    if generation 1 never reached them; the others' tables are reused (TABLE_REUSED)."""
    problems = []
    start1 = any(c.op == Op.START and c.generation == 1 for c in calls)
    start2 = any(c.op == Op.START and c.generation == 2 for c in calls)
    table1 = any(c.outcome == Outcome.TABLE and c.generation == 1 for c in calls)
    restart = bool(comp.flags & Flag.CALL_ON_RESTART)
    reused = bool(comp.flags & Flag.TABLE_REUSED)
    if start1 and start2 and not restart:
        problems.append("called again (START) in generation 2 without CALL_ON_RESTART")
    faulted1 = any(c.outcome == Outcome.FAULT and c.generation == 1 for c in calls)
    if generation == 2 and _is_complete(dump.header) and not start2 and (restart or not start1) and not faulted1:
        why = "it has CALL_ON_RESTART" if restart else "generation 1 never reached it"
        problems.append(f"not called in generation 2, though {why}")
    if reused:
        if generation == 1:
            problems.append("TABLE_REUSED in a generation-1 dump")
        elif start2:
            problems.append("TABLE_REUSED, but it was called again in generation 2")
        elif restart:
            problems.append("TABLE_REUSED together with CALL_ON_RESTART")
        elif not table1:
            problems.append("TABLE_REUSED, but generation 1 returned no table")
    elif generation == 2 and table1 and not start2 and comp.area_count > 0:
        problems.append("its areas come from generation 1's table, but TABLE_REUSED is not set")
    problems += _table_generation_problems(comp, start1, start2)
    return problems


def _table_generation_problems(comp, start1: bool, start2: bool) -> list[str]:
    produced = 2 if start2 else 1 if start1 else None
    tg = comp.table_generation
    if produced is None:
        return [] if tg == 0 or comp.status != Status.DISABLED else [f"table_generation {tg}, never called"]
    if comp.area_count > 0 and tg != produced:
        return [f"table_generation {tg}, but its areas come from generation {produced}'s calls"]
    if comp.area_count == 0 and tg not in (0, produced):
        return [f"table_generation {tg}, but it has no areas and its last START was in generation {produced}"]
    return []


def _done_problems(dump, comp, calls: list[_Rec], generation: int) -> list[str]:
    """DONE exactly once, as its last call, in the last generation, for a component that gave
    data and whose START or AGAIN never returned a negative value (reference 003: "not issued
    if a prior START or AGAIN call returned a negative value"; a negative ESTIMATE does not count)."""
    dones = [c for c in calls if c.op == Op.DONE]
    gave = any(c.outcome == Outcome.TABLE for c in calls)
    # A routine whose call faulted is never called again (docs/components.md), like one that
    # returned a negative value.
    negative = any(c.outcome in (Outcome.NEGATIVE, Outcome.FAULT) and c.op in COLLECT_OPS for c in calls)
    problems = []
    if len(dones) > 1:
        problems.append(f"{len(dones)} DONE calls, expected one")
    if dones and negative:
        problems.append(f"{dones[0]}: DONE, but a call of it returned a negative value")
    elif dones and not gave:
        problems.append(f"{dones[0]}: DONE, but it gave no data")
    if dones and calls[-1].op != Op.DONE:
        problems.append(f"{calls[-1]} after its DONE")
    for done in dones:
        if done.generation != generation:
            problems.append(f"{done}: DONE in generation {done.generation} of a generation-{generation} dump")
    if not dones and gave and not negative and _is_complete(dump.header):
        problems.append("no DONE call, though it gave data and never returned a negative value or faulted")
    return problems


def _level_problems(dump, comp, calls: list[_Rec]) -> list[str]:
    """RAS calls carry the component's level (FINISHED may carry 0); a dmp_ctl routine's
    START, AGAIN and DONE carry 0. ESTIMATE is checked with the estimates."""
    ras = bool(comp.flags & Flag.RAS)
    for c in calls:
        if c.op == Op.ESTIMATE:
            continue
        allowed = {comp.level} if ras else {0}
        if ras and c.op == Op.DONE:
            allowed.add(0)
        if c.level not in allowed:
            kind = f"a RAS component at level {comp.level}" if ras else "a dmp_ctl routine (level 0)"
            return [f"{c}: level {c.level}, for {kind}"]
    return []


def _violation_problems(dump, records: list[_Rec], generation: int) -> list[str]:
    """Each violation record names a FAULT call (component, op, generation) or no component;
    each FAULT call has its record (unless the writer's 16 records are used up)."""
    problems = []
    faults = {(r.component, r.op, r.generation) for r in records if r.outcome == Outcome.FAULT}
    recorded = set()
    ncomp = len(dump.components)
    for pos, v in enumerate(dump.violations):
        where = f"violation record {pos} (address 0x{v.address:x})"
        if not 1 <= v.generation <= generation:
            problems.append(f"{where}: generation {v.generation} in a dump of generation {generation}")
        if v.component == NO_COMPONENT:
            if v.op != 0:
                problems.append(f"{where}: names no component but op {v.op} (0 expected)")
            continue
        if not 0 <= v.component < ncomp:
            problems.append(f"{where}: component {v.component} out of range ({ncomp} components)")
            continue
        key = (v.component, v.op, v.generation)
        recorded.add(key)
        if v.op == 0:  # a fault while replaying a saved table: no routine call was in progress
            comp = dump.components[v.component]
            if not (comp.flags & Flag.TABLE_REUSED and v.generation == 2):
                problems.append(f"{where}: names {comp.name} but no call (op 0), and it replayed no table")
            continue
        if key not in faults:
            problems.append(f"{where}: no FAULT call of {dump.components[v.component].name} with op "
                            f"{_enum_name(Op, v.op)} in generation {v.generation} matches it")
    if len(dump.violations) < MAX_VIOLATION_RECORDS:
        for r in records:
            if r.outcome == Outcome.FAULT and (r.component, r.op, r.generation) not in recorded:
                problems.append(f"{dump.components[r.component].name}: {r} has no violation record")
    return problems


def _restart_problems(header, expect: Expectation) -> list[str]:
    if header.generation == 2 and not expect.restart_expected:
        return ["the dump is generation 2 (restarted on the secondary), but the scenario expects no restart"]
    if expect.restart_expected and header.generation == 1 and _is_complete(header):
        return ["the scenario expects a restart on the secondary, but the dump completed in generation 1"]
    return []


# --------------------------------------------------------------------------------------------
# protocol: the samples' sequences
# --------------------------------------------------------------------------------------------


def _first_by_name(dump) -> dict[str, int]:
    found: dict[str, int] = {}
    for index, comp in enumerate(dump.components):
        found.setdefault(comp.name, index)
    return found


def _sample_call_problems(dump, expect: Expectation, by_comp, generation: int) -> list[str]:
    problems = []
    where = _first_by_name(dump)
    complete = _is_complete(dump.header)
    for model in expect.components:
        if not model.sample or model.name not in where:
            continue  # a missing component is completeness's problem
        index = where[model.name]
        calls = by_comp[index]
        problems += _sequence_problems(model, calls, generation, complete)
        problems += _value_problems(model, calls, expect.level)
        problems += _sample_violation_problems(dump, model, index)
    return problems


def _sequence_problems(model: ExpectedComponent, calls: list[_Rec], generation: int, complete: bool) -> list[str]:
    """A generation-1 dump: the model's calls. A restarted dump: ESTIMATE and a prefix of the
    calls in generation 1, the whole collection again in generation 2 if the component is
    called on restart or was not reached, then DONE. An incomplete dump may stop early."""
    if not model.called:
        return []  # DISABLED: the generic rule already forbids any call
    done = [Call(Op.DONE, Outcome.ACK)] if model.gives_data and complete else []
    if generation == 1:
        expected = list(model.calls)
        actual = [c.call for c in calls]
        if complete:
            return _compare(model.name, actual, expected, "")
        return _compare_prefix(model.name, [c for c in actual if c.op != Op.DONE],
                               [c for c in expected if c.op != Op.DONE], "")
    head = [Call(Op.ESTIMATE, Outcome.VALUE)]
    collection = list(model.collection)
    gen1 = [c.call for c in calls if c.generation == 1 and c.op != Op.DONE]
    problems = _compare(model.name, gen1, head + collection[:max(0, len(gen1) - 1)], "generation 1 ")
    if problems:
        return problems
    started = any(c.op == Op.START for c in gen1)
    again = bool(model.flags & Flag.CALL_ON_RESTART) or not started
    gen2 = [c.call for c in calls if c.generation == 2 and c.op != Op.DONE]
    expected2 = collection if again else []
    if complete:
        problems = _compare(model.name, gen2, expected2, "generation 2 ")
    else:
        problems = _compare_prefix(model.name, gen2, expected2, "generation 2 ")
    dones = [c.call for c in calls if c.op == Op.DONE]
    if not problems and complete and dones != done:
        problems.append(f"{model.name}: {len(dones)} DONE calls, the model expects {len(done)}")
    return problems


def _compare(name: str, actual: list[Call], expected: list[Call], what: str) -> list[str]:
    for k, (got, want) in enumerate(zip(actual, expected)):
        if got != want:
            return [f"{name}: {what}call {k} is {got}, the model expects {want}"]
    if len(actual) < len(expected):
        return [f"{name}: {what}calls end after {len(actual)}, the model expects {expected[len(actual)]} next "
                f"({len(expected)} calls)"]
    if len(actual) > len(expected):
        return [f"{name}: {what}call {len(expected)} is {actual[len(expected)]}, the model expects no more "
                f"calls after {len(expected)}"]
    return []


def _compare_prefix(name: str, actual: list[Call], expected: list[Call], what: str) -> list[str]:
    """`actual` may stop early (a dump cut short), but may not differ or go on."""
    return _compare(name, actual, expected[:len(actual)] if len(actual) <= len(expected) else expected, what)


def _value_problems(model: ExpectedComponent, calls: list[_Rec], level: int) -> list[str]:
    problems = []
    for c in calls:
        if c.op == Op.ESTIMATE and c.outcome == Outcome.VALUE and c.value != model.estimate:
            problems.append(f"{model.name}: ESTIMATE answered {c.value} bytes, the model's estimate at level "
                            f"{level} is {model.estimate}")
        if c.outcome == Outcome.NEGATIVE and c.value != model.negative_value:
            problems.append(f"{model.name}: {c} returned {c.value}, the model returns {model.negative_value}")
    return problems


def _sample_violation_problems(dump, model: ExpectedComponent, index: int) -> list[str]:
    mine = [v for v in dump.violations if v.component == index]
    if len(mine) != model.violations:
        return [f"{model.name}: {len(mine)} violation records, the model expects {model.violations}"]
    bad_op = [v for v in mine if v.op != Op.START]
    if bad_op:
        return [f"{model.name}: violation record for op {_enum_name(Op, bad_op[0].op)}, the model faults in START"]
    return []


# --------------------------------------------------------------------------------------------
# completeness: the component entries
# --------------------------------------------------------------------------------------------


def component_problems(dump, expect: Expectation | None) -> list[str]:
    """The component part of the completeness check: every built-in and every enabled sample
    listed once, in registration order, as the model says; nothing else; for every component
    consistent sizes (estimate >= dumped = its areas' bytes) and RTNFAILURE fields."""
    if expect is None:
        return []
    why = _untrusted(dump)
    if why:
        return [why]
    h = dump.header
    problems = []
    if h.level != expect.level:
        problems.append(f"header level {h.level}, the scenario's level is {expect.level}")
    total = sum(c.estimate_bytes for c in dump.components)
    if h.estimate_bytes != total:
        problems.append(f"header estimate_bytes {h.estimate_bytes}, the components' estimates sum to {total}")
    problems += _listing_problems(dump, expect)
    where = _first_by_name(dump)
    for index, comp in enumerate(dump.components):
        model = expect.component(comp.name)
        problems += _generic_entry_problems(dump, comp, index, model is not None and model.sample)
        if model is not None and where[comp.name] == index:
            problems += _entry_problems(dump, comp, model)
    return problems


def _listing_problems(dump, expect: Expectation) -> list[str]:
    names = [c.name for c in dump.components]
    expected = [m.name for m in expect.components]
    counts = Counter(names)
    problems = []
    for name in expected:
        if counts[name] == 0:
            problems.append(f"component {name} missing from the directory")
        elif counts[name] > 1:
            problems.append(f"component {name} listed {counts[name]} times")
    for index, name in enumerate(names):
        if name not in expected:
            problems.append(f"unexpected component {name!r} (entry {index})")
    present = [n for n in dict.fromkeys(names) if n in expected]
    order = [n for n in expected if n in present]
    if present != order:
        problems.append(f"components not in registration order: {', '.join(present)} (expected {', '.join(order)})")
    return problems


def _generic_entry_problems(dump, comp, index: int, sample: bool) -> list[str]:
    areas, problem = _areas_of(dump, comp)
    problems = [problem] if problem else []
    for area in areas:
        if area.component != index:
            problems.append(f"{comp.name}: area entry {area.index} ({area.name}) names component {area.component}")
            break
    held = sum(a.length for a in areas)
    if not problem and comp.dumped_bytes != held:
        problems.append(f"{comp.name}: dumped_bytes {comp.dumped_bytes}, its areas hold {held}")
    if comp.estimate_bytes < comp.dumped_bytes:
        problems.append(f"{comp.name}: estimate_bytes {comp.estimate_bytes} below dumped_bytes {comp.dumped_bytes}")
    if not sample:  # the model checks the samples' failure fields exactly
        problems += _rtnfailure_problems(comp)
    return problems


def _rtnfailure_problems(comp) -> list[str]:
    rv, vaddr, handle = _signed(comp.failure_rv, 32), comp.failure_vaddr, comp.failure_handle
    if comp.flags & Flag.RTNFAILURE:
        if comp.status != Status.FAILED or comp.reason != EIO:
            return [f"{comp.name}: RTNFAILURE, but status {_enum_name(Status, comp.status)} reason "
                    f"{_errno(comp.reason)} (FAILED, EIO expected)"]
        return []
    if rv or vaddr or handle:
        return [f"{comp.name}: failure_rv {rv}, failure_vaddr 0x{vaddr:x}, failure_handle 0x{handle:x} "
                "without RTNFAILURE (all 0 expected)"]
    return []


def _entry_problems(dump, comp, model: ExpectedComponent) -> list[str]:
    name = comp.name
    problems = []
    if comp.kind != model.kind:
        problems.append(f"{name}: kind {_enum_name(Kind, comp.kind)}, expected {model.kind.name}")
    if comp.status != model.status or comp.reason != model.reason:
        problems.append(f"{name}: status {_enum_name(Status, comp.status)} reason {_errno(comp.reason)}, expected "
                        f"{Status(model.status).name} reason {_errno(model.reason)}")
    if model.level is not None and comp.level != model.level:
        problems.append(f"{name}: level {comp.level}, expected {model.level}")
    # the built-ins are the facility's own, not dmp_ctl routines: none of the flags, which say
    # what a routine asked for or did, may be set on them (a fuzzed CALL_ON_RESTART was taken)
    problems += _flag_problems(comp, model)
    if not model.sample:
        if model.status == Status.DUMPED and comp.area_count == 0:
            problems.append(f"{name}: no areas")
        return problems
    problems += _area_model_problems(dump, comp, model)
    for field, want in (("estimate_bytes", model.estimate), ("dumped_bytes", model.dumped),
                        ("staging_bytes", model.staging_bytes), ("global_buffer_bytes", model.global_buffer_bytes)):
        got = getattr(comp, field)
        if got != want:
            problems.append(f"{name}: {field} {got}, the model says {want}")
    problems += _sample_failure_problems(comp, model)
    return problems


def _flag_problems(comp, model: ExpectedComponent) -> list[str]:
    actual = comp.flags & ~int(Flag.TABLE_REUSED)
    problems = []
    missing = int(model.flags) & ~actual
    extra = actual & ALL_FLAGS & ~int(model.flags)
    unknown = comp.flags & ~ALL_FLAGS
    if missing:
        problems.append(f"{comp.name}: flags lack {_flag_names(missing)} (has {_flag_names(actual)})")
    if extra:
        problems.append(f"{comp.name}: flags {_flag_names(extra)} set, the model has none of them")
    if unknown:
        problems.append(f"{comp.name}: unknown flag bits 0x{unknown:x}")
    return problems


def _area_model_problems(dump, comp, model: ExpectedComponent) -> list[str]:
    areas, problem = _areas_of(dump, comp)
    if problem:
        return []  # reported by the generic checks
    if len(areas) != len(model.areas):
        return [f"{comp.name}: {len(areas)} areas, the model has {len(model.areas)}"]
    for area, want in zip(areas, model.areas):
        if area.name != want.name or area.length != want.length:
            return [f"{comp.name}: area entry {area.index} is {area.name!r} of {area.length} bytes, the model "
                    f"has {want.name!r} of {want.length}"]
        staged = area.flags & AREA_STAGED
        if want.staged and not staged:
            return [f"{comp.name}: area {area.name} flags 0x{area.flags:x}: not STAGED, but its data is produced "
                    "at dump time"]
        if not want.staged and staged:
            return [f"{comp.name}: area {area.name} is STAGED, but its data is in memory (.bss)"]
    return []


def _sample_failure_problems(comp, model: ExpectedComponent) -> list[str]:
    rv, vaddr, handle = _signed(comp.failure_rv, 32), comp.failure_vaddr, comp.failure_handle
    problems = []
    if rv != model.failure_rv:
        problems.append(f"{comp.name}: failure_rv {rv}, the model reports {model.failure_rv}")
    if handle != model.failure_handle:
        problems.append(f"{comp.name}: failure_handle 0x{handle:x}, the model reports 0x{model.failure_handle:x}")
    if model.failure_rv and vaddr == 0:
        problems.append(f"{comp.name}: failure_vaddr 0, the model reports the address of its missing data")
    if not model.failure_rv and vaddr:
        problems.append(f"{comp.name}: failure_vaddr 0x{vaddr:x} without an RTNFAILURE report")
    return problems


# --------------------------------------------------------------------------------------------
# sample-data
# --------------------------------------------------------------------------------------------


def check_sample_data(dump, image, expect: Expectation | None) -> Check:
    """Every written area of every sample component holds its pattern (docs/components.md)."""
    why = _untrusted(dump)
    if why:
        return Check("sample-data", False, why)
    samples = [(i, c) for i, c in enumerate(dump.components) if c.name in SAMPLE_NAMES]
    wanted = sum(len(m.areas or ()) for m in expect.components if m.sample) if expect else 0
    if not samples and not wanted:
        enabled = "the scenario names none" if expect is None else "none enabled"
        return Check("sample-data", True, f"skipped: no sample components ({enabled})")
    problems, compared, unwritten, nbytes = [], 0, 0, 0
    for index, comp in samples:
        areas, problem = _areas_of(dump, comp)
        if problem:
            problems.append(problem)
            continue
        for k, area in enumerate(areas):
            if not _written(dump, area):
                unwritten += 1
                continue
            problem = _area_data_problem(dump, image, comp, k, area)
            if problem:
                problems.append(problem)
            compared += 1
            nbytes += max(0, area.length)
    if compared == 0 and wanted and not problems and _is_complete(dump.header):
        problems.append(f"no sample area written: nothing compared (the model expects {wanted} areas)")
    note = f"; {unwritten} areas beyond body_written not compared" if unwritten else ""
    ok = f"{compared} areas ({nbytes} bytes) of {len(samples)} sample components hold their pattern{note}"
    return make_check("sample-data", problems, ok)


def _written(dump, area) -> bool:
    written = getattr(dump, "area_written", None)
    return written(area) if written is not None else True


def _area_data_problem(dump, image, comp, k: int, area) -> str | None:
    label = f"sample area {area.name} (area entry {area.index}, {comp.name} area {k})"
    if not 0 <= area.length <= MAX_SAMPLE_AREA:
        return f"{label}: length {area.length} is not a sample area's (at most {MAX_SAMPLE_AREA}), not compared"
    try:
        data = dump.read_area(image, area, 0, area.length)
    except AreaDataError as e:
        return f"{label}: {e}"
    if len(data) < area.length:
        return f"{label}: only {len(data)} of its {area.length} bytes are in the image"
    want = pattern(comp.name, k, area.length)
    if data == want:
        return None
    diff = np.frombuffer(data, np.uint8) != np.frombuffer(want, np.uint8)
    first = int(np.flatnonzero(diff)[0])
    return (f"{label}: first differing byte at offset {first} (0x{first:x}): dump 0x{data[first]:02x}, "
            f"pattern 0x{want[first]:02x}; {int(np.count_nonzero(diff))} bytes differ")
