"""`dumpbed matrix`: settle everything first (the file, the shard, the hosts prepared, KVM
where it is required), then hand the cells to pytest and pytest-xdist, one worker per host
slot, and write the results, JUnit, history and the HTML report (docs/nightly.md)."""
from __future__ import annotations

import datetime
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

from dumpbed.errors import DumpbedError, InfraError
from dumpbed.matrix import cellrun, pytest_cells, spec

WORK = ".matrix"  # OUT/.matrix: the plan, pytest's own files, the wheel built for the hosts


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def run_matrix(matrix_file: Path, out: Path, hosts_file: Optional[Path] = None, shard: Optional[str] = None,
               jobs: int = 1, require_kvm: bool = False, wheel: Optional[Path] = None,
               history: Optional[Path] = None, label: Optional[str] = None) -> int:
    from dumpbed.nightly import history as history_mod, htmlreport, junit, report_cmd, results
    from dumpbed.provenance import git_commit
    from dumpbed.remote import hosts as hosts_mod
    from dumpbed.run import prepare_out_dir

    # Everything that can be refused is refused before anything is written.
    cells = spec.load(matrix_file)
    total = len(cells)
    where = spec.parse_shard(shard) if shard else None
    if where:
        cells = spec.shard(cells, *where)
        if not cells:
            raise DumpbedError(f"--shard {shard}: no cells (the matrix has {total}: use at most {total} shards)")
    if jobs < 1:
        raise DumpbedError(f"--jobs {jobs}: at least 1")
    hosts = hosts_mod.load_hosts(hosts_file) if hosts_file else None
    if hosts and jobs != 1:
        raise DumpbedError("--jobs is for cells on this machine: with --hosts, the hosts' slots say how many run at once")
    if wheel is not None and not Path(wheel).is_file():
        raise DumpbedError(f"--wheel {wheel}: no such file")
    if wheel is not None and not hosts:
        raise DumpbedError("--wheel is what remote hosts install: it needs --hosts")
    if history is not None:
        history_mod.check_path(history)
    if hosts is None and require_kvm:
        _require_local_kvm()
    out = prepare_out_dir(Path(out))
    work = out / WORK
    work.mkdir()

    slots = _prepared_slots(hosts, wheel, require_kvm, work) if hosts else [None] * jobs
    plan = cellrun.Plan(out=out.absolute(), cells=cells, slots=slots, require_kvm=require_kvm)
    plan.save(work / cellrun.PLAN_FILE)
    started = _now()
    _run_pytest(work, min(len(slots), len(cells)))
    commit, _ = git_commit()
    doc = {"schema_version": results.SCHEMA_VERSION, "matrix": str(matrix_file),
           "shard": list(where) if where else None, "started": started, "finished": _now(),
           "commit": commit, "require_kvm": require_kvm, "cells": _gathered(plan)}
    results.save(out, doc)
    junit.write(out / "junit.xml", doc)
    night = history_mod.record(history, doc, label) if history is not None else None
    htmlreport.write(out, doc, history=history, night=night)
    report_cmd.print_summary(out, doc, history, night)
    return results.exit_status(doc)


def _require_local_kvm() -> None:
    from dumpbed.machine import accel

    usable, reason = accel.kvm_usable()
    if not usable:
        raise DumpbedError(f"KVM is not usable on this machine: {reason} (--require-kvm: a nightly must run under KVM)")


def _prepared_slots(hosts: list, wheel: Optional[Path], require_kvm: bool, work: Path) -> list[dict]:
    """Every host prepared at once; the slots of those that could be, taken in turn host by host
    (slot 0 of each, then slot 1 of each...), so the first workers land on different hosts."""
    from dumpbed.remote import prepare

    if wheel is None:
        wheel = prepare.build_wheel(prepare.source_root(), work / "wheel")
    print(f"dumpbed: preparing {len(hosts)} host{'s' if len(hosts) > 1 else ''} "
          f"({', '.join(h.name for h in hosts)}) with {Path(wheel).name}", file=sys.stderr)
    with ThreadPoolExecutor(max_workers=len(hosts)) as pool:
        futures = [(host, pool.submit(prepare.prepare, host, Path(wheel))) for host in hosts]
        ready = []
        for host, future in futures:
            try:
                ready.append(future.result())
            except InfraError as exc:  # the others may still carry the matrix
                print(f"dumpbed: host {host.name} cannot be used: {exc}", file=sys.stderr)
    if not ready:
        raise DumpbedError("no host could be prepared (each one's reason above)")
    if require_kvm:
        for prepared in ready:
            prepare.require_kvm(prepared)
    slots = []
    for k in range(max(p.host.slots for p in ready)):
        slots += [p.to_dict() for p in ready if k < p.host.slots]
    return slots


def _run_pytest(work: Path, workers: int) -> None:
    """The cells as pytest tests on `workers` xdist workers (docs/nightly.md: why xdist). In this
    process, with an empty configuration of its own: neither the caller's pytest.ini or
    conftest.py nor its cache. The outcome is read from the cells' own files afterwards."""
    import pytest

    (work / "pytest.ini").write_text("[pytest]\n")
    module = Path(pytest_cells.__file__)
    args = [str(module), "-c", str(work / "pytest.ini"), "--rootdir", str(work), "--confcutdir", str(module.parent),
            "--import-mode=importlib", "-p", "no:cacheprovider", "--basetemp", str(work / "tmp"),
            "-n", str(workers), "--dist", "load", "-q", "--tb=line", "-rfE"]
    # the plan for the workers; none of the caller's pytest settings (PYTEST_ADDOPTS -x would
    # stop a night at its first FAIL): the engine's own arguments only
    settings = {pytest_cells.PLAN_ENV: str(work / cellrun.PLAN_FILE), "PYTEST_ADDOPTS": None, "PYTEST_PLUGINS": None}
    previous = {name: os.environ.get(name) for name in settings}
    try:
        for name, value in settings.items():
            _set_env(name, value)
        pytest.main(args)
    finally:
        for name, value in previous.items():
            _set_env(name, value)


def _set_env(name: str, value) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


def _gathered(plan: cellrun.Plan) -> list[dict]:
    """Each cell's entry as its worker saved it, in the matrix's order; a cell without one did
    not run (its worker died, or the matrix was stopped) and is an error, never a pass."""
    import json

    entries = []
    for cell in plan.cells:
        path = cellrun.cell_dir(plan.out, cell) / "cell.json"
        try:
            entries.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            entries.append(cellrun.not_run(cell, "the cell did not run to its end (its worker died, or the matrix "
                                                 "was stopped)"))
    return entries
