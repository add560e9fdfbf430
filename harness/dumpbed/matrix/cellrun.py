"""One matrix cell on one slot: run it where the slot says (this machine, or a remote host),
judge it on this machine, and retry once elsewhere when a host fails under it (docs/nightly.md,
"A cell on a host"). The scheduling itself is pytest-xdist's (matrix/pytest_cells.py)."""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from dumpbed.errors import DumpbedError
from dumpbed.matrix.spec import Cell

LOCAL = "local"  # the host name of cells run on this machine
PLAN_FILE = "plan.json"  # the engine's hand-over to pytest and its workers, in OUT/.matrix


@dataclass
class Plan:
    """What the engine settled before any cell ran: the cells, where the slots are, how to run."""
    out: Path
    cells: list[Cell]
    slots: list[Optional[dict]]  # per slot: a prepared host (remote.prepare.Prepared.to_dict), None: local
    require_kvm: bool

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"out": str(self.out), "cells": [c.to_dict() for c in self.cells],
                                    "slots": self.slots, "require_kvm": self.require_kvm}, indent=1) + "\n")

    @classmethod
    def load(cls, path: Path) -> "Plan":
        d = json.loads(Path(path).read_text())
        return cls(out=Path(d["out"]), cells=[Cell.from_dict(c) for c in d["cells"]], slots=d["slots"],
                   require_kvm=d["require_kvm"])

    def places(self, slot: int) -> list[Optional[dict]]:
        """Where a cell of this slot may run, in turn: the slot's own host, then (for the one
        retry) the next other host in the slots' order. Locally there is no elsewhere."""
        own = self.slots[slot % len(self.slots)]
        if own is None:
            return [None]
        name = own["host"]["name"]
        others = []
        for offset in range(1, len(self.slots)):
            other = self.slots[(slot + offset) % len(self.slots)]
            if other is not None and other["host"]["name"] not in {name, *(o["host"]["name"] for o in others)}:
                others.append(other)
        return [own, *others[:1]]


def cell_dir(out: Path, cell: Cell) -> Path:
    return Path(out) / "cells" / cell.slug


def run_cell(plan: Plan, cell: Cell, slot: int) -> dict:
    """The cell's results.json entry; its run directory is OUT/cells/<slug>/run. Saved as
    cell.json beside it too (the engine gathers those: a worker that died leaves none)."""
    from dumpbed.pytest_plugin import DumpbedResult

    here = cell_dir(plan.out, cell)
    here.mkdir(parents=True, exist_ok=True)
    run_dir = here / "run"
    attempts: list[dict] = []
    t0 = time.monotonic()
    for place in plan.places(slot):
        host = LOCAL if place is None else place["host"]["name"]
        shutil.rmtree(run_dir, ignore_errors=True)  # an earlier attempt's, on a host that failed
        try:
            report = _run_local(cell, run_dir, plan.require_kvm) if place is None \
                else _run_remote(place, cell, run_dir, plan.require_kvm)
        except DumpbedError as exc:  # InfraError, or this machine could not run it at all
            attempts.append({"host": host, "error": str(exc)})
            continue
        result = DumpbedResult.from_report(report, run_dir)
        entry = _entry(cell, plan.out, time.monotonic() - t0, attempts,
                       outcome="pass" if result.passed else "fail", verdict=result.verdict,
                       dump_status=result.dump_status, failed_checks=result.failed_check_names,
                       mib_s=result.mib_s, host=host, accel=result.accel, run_dir=run_dir)
        break
    else:
        entry = _entry(cell, plan.out, time.monotonic() - t0, attempts, outcome="error",
                       error=attempts[-1]["error"] if attempts else "no place to run it",
                       run_dir=run_dir if run_dir.exists() else None)
    (here / "cell.json").write_text(json.dumps(entry, indent=1) + "\n")
    return entry


def _entry(cell: Cell, out: Path, duration: float, attempts: list[dict], outcome: str,
           run_dir: Optional[Path] = None, error: Optional[str] = None, **judged) -> dict:
    entry = {**cell.to_dict(), "outcome": outcome, "verdict": None, "dump_status": None, "failed_checks": [],
             "mib_s": None, "host": None, "accel": None, "duration_s": round(duration, 3),
             "run_dir": str(run_dir.relative_to(out)) if run_dir is not None else None,
             "attempts": attempts, "error": error}
    entry.update(judged)
    return entry


def not_run(cell: Cell, why: str) -> dict:
    """The entry of a cell no worker reported (it died, or the matrix was interrupted)."""
    return _entry(cell, Path("."), 0.0, [], outcome="error", error=why)


def _run_local(cell: Cell, run_dir: Path, require_kvm: bool) -> dict:
    from dumpbed import cli, run as run_mod

    scenario = cli.scenario_from_run_words(cell.run_words(require_kvm), run_dir)
    _, report = run_mod.run_and_validate(scenario)
    return report


def _run_remote(place: dict, cell: Cell, run_dir: Path, require_kvm: bool) -> dict:
    """Run on the host, copy back, and judge here (remote.execute.run_and_judge)."""
    from dumpbed.remote import execute, prepare
    from dumpbed.units import parse_size

    return execute.run_and_judge(prepare.Prepared.from_dict(place), cell.run_words(require_kvm), run_dir,
                                 parse_size(cell.memory, "memory"))
