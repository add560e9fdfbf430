"""The matrix file (docs/nightly.md): groups of rows expanded into cells, each one `dumpbed run`.

A cell is checked here the way `dumpbed run` checks its options (the same parser, the same
check_scenario), so a bad disk, crash, fault or size stops the matrix before any cell runs,
naming the file, the group and the key."""
from __future__ import annotations

import itertools
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from dumpbed.errors import DumpbedError

DEFAULTS = {"memory": "64M", "accel": "auto"}
KEYS = ("disk", "crash", "fault", "memory", "accel", "args")  # the id's order, then args
REQUIRED = ("disk", "crash")
GROUP_NAME = re.compile(r"^[A-Za-z0-9_-]+$")
NO_FAULT = "none"


@dataclass(frozen=True)
class Cell:
    index: int  # position in the file's order: what --shard splits on
    group: str
    disk: str
    crash: str
    fault: Optional[str]  # one spec, or several joined by ','; None: no fault
    memory: str
    accel: str  # as the file asks: auto, kvm or tcg
    args: tuple[str, ...] = ()
    expect: str = field(default="complete", compare=False)  # the fault table's outcome

    @property
    def id(self) -> str:
        return "/".join((self.group, self.disk, self.crash, self.fault or NO_FAULT, self.memory, self.accel))

    @property
    def slug(self) -> str:
        """The id as one directory name."""
        return re.sub(r"[^A-Za-z0-9_.=@,+-]", "_", self.id.replace("/", "--"))

    def run_words(self, require_kvm: bool = False) -> list[str]:
        """`dumpbed run`'s words for this cell (without --out). Under --require-kvm an 'auto'
        cell asks for KVM outright, so it can never fall back to TCG unseen."""
        accel = "kvm" if require_kvm and self.accel == "auto" else self.accel
        words = ["--disk", self.disk, "--crash", self.crash, "--memory", self.memory, "--accel", accel]
        for spec in self.faults:
            words += ["--fault", spec]
        return words + list(self.args)

    @property
    def faults(self) -> list[str]:
        return self.fault.split(",") if self.fault else []

    def to_dict(self) -> dict:
        return {"index": self.index, "id": self.id, "group": self.group, "disk": self.disk, "crash": self.crash,
                "fault": self.fault, "memory": self.memory, "accel_requested": self.accel,
                "args": list(self.args), "expect": self.expect}

    @classmethod
    def from_dict(cls, d: dict) -> "Cell":
        return cls(index=d["index"], group=d["group"], disk=d["disk"], crash=d["crash"], fault=d["fault"],
                   memory=d["memory"], accel=d["accel_requested"], args=tuple(d["args"]), expect=d["expect"])


def load(path: Path) -> list[Cell]:
    """Every cell of the matrix file, in its order; a DumpbedError for anything wrong."""
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise DumpbedError(f"matrix file {path}: {exc.strerror}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise DumpbedError(f"matrix file {path}: not TOML: {exc}") from None
    if not data:
        raise DumpbedError(f"matrix file {path}: no groups (a table per group: docs/nightly.md)")
    cells: list[Cell] = []
    seen: dict[str, str] = {}
    for name, group in data.items():
        where = f"matrix file {path}, group [{name}]"
        for cell in _expand(name, group, where, len(cells)):
            if cell.id in seen:
                raise DumpbedError(f"{where}: cell {cell.id} is already in group [{seen[cell.id]}]")
            seen[cell.id] = name
            cells.append(cell)
    return cells


def _expand(name: str, group, where: str, first_index: int) -> list[Cell]:
    if not isinstance(group, dict):
        raise DumpbedError(f"{where}: not a table (write [{name}] and its keys)")
    if not GROUP_NAME.match(name):
        raise DumpbedError(f"{where}: a group's name is letters, digits, '-' and '_'")
    unknown = sorted(set(group) - set(KEYS))
    if unknown:
        raise DumpbedError(f"{where}: unknown key {unknown[0]!r} (the keys: {', '.join(KEYS)})")
    for key in REQUIRED:
        if key not in group:
            raise DumpbedError(f"{where}: no {key!r} (required: {', '.join(REQUIRED)})")
    values = {key: _strings(group.get(key, DEFAULTS.get(key)), key, where) for key in KEYS if key != "args"}
    args = tuple(_strings(group.get("args", []), "args", where, allow_empty=True))
    cells = []
    for combo in itertools.product(*(values[key] for key in KEYS if key != "args")):
        disk, crash, fault, memory, accel = combo
        cell = Cell(index=first_index + len(cells), group=name, disk=disk, crash=crash,
                    fault=None if fault == NO_FAULT else fault, memory=memory, accel=accel, args=args)
        cells.append(_checked(cell, where))
    return cells


def _strings(value, key: str, where: str, allow_empty: bool = False) -> list[str]:
    if value is None:  # fault not given: the runs without one
        return [NO_FAULT]
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(v, str) and v.strip() == v and v for v in items):
        raise DumpbedError(f"{where}: {key} must be a word or a list of words")
    if not items and not allow_empty:
        raise DumpbedError(f"{where}: {key} is an empty list (no cell would run)")
    if len(set(items)) != len(items):
        raise DumpbedError(f"{where}: {key} names a value twice")
    return items


def _checked(cell: Cell, where: str) -> Cell:
    """The cell as `dumpbed run` would take it: its words parsed by run's own parser and its
    scenario checked; its expected outcome from the fault table."""
    from dumpbed import cli
    from dumpbed.scenario import faults as faults_mod
    from dumpbed.scenario.spec import check_scenario

    try:
        scenario = cli.scenario_from_run_words(cell.run_words(), Path("unused"))
        _, faults = check_scenario(scenario)
    except DumpbedError as exc:
        raise DumpbedError(f"{where}: cell {cell.id}: {exc}") from None
    expect = faults_mod.expected_outcome(faults, scenario.secondary)
    return Cell(**{**cell.__dict__, "expect": expect})


def parse_shard(text: str) -> tuple[int, int]:
    """--shard I/N, 1 <= I <= N."""
    match = re.fullmatch(r"(\d+)/(\d+)", text.strip())
    if not match or not 1 <= int(match[1]) <= int(match[2]):
        raise DumpbedError(f"--shard {text}: write I/N with 1 <= I <= N, e.g. 2/4")
    return int(match[1]), int(match[2])


def shard(cells: list[Cell], i: int, n: int) -> list[Cell]:
    """Shard I of N: the cells at positions I-1 modulo N of the file's order. Disjoint, whole
    together, the same on every machine."""
    return [c for c in cells if c.index % n == i - 1]
