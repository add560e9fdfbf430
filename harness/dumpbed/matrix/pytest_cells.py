"""The matrix's cells as pytest tests, one per cell: the module `dumpbed matrix` hands to pytest
(with pytest-xdist's workers, each bound to one host slot). Not a test of dumpbed's own.

Running a cell is the fixture's work, so a cell that could not be judged (a host lost twice)
is a setup error, JUnit's <error>; the test asserts the verdict, a driver FAIL its <failure>."""
from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from dumpbed.matrix import cellrun

PLAN_ENV = "DUMPBED_MATRIX_PLAN"  # the plan's path: xdist's workers inherit the environment


def _plan() -> cellrun.Plan:
    return cellrun.Plan.load(Path(os.environ[PLAN_ENV]))


def _slot() -> int:
    """This worker's slot: gwK takes the K-th (docs/nightly.md); no xdist: slot 0."""
    match = re.fullmatch(r"gw(\d+)", os.environ.get("PYTEST_XDIST_WORKER", ""))
    return int(match[1]) if match else 0


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "matrix_cell" in metafunc.fixturenames:
        cells = _plan().cells
        metafunc.parametrize("matrix_cell", cells, ids=[c.id for c in cells])


@pytest.fixture
def cell_result(matrix_cell, request) -> dict:
    entry = cellrun.run_cell(_plan(), matrix_cell, _slot())
    for key in ("verdict", "dump_status", "mib_s", "host", "accel", "expect", "run_dir"):
        request.node.user_properties.append((key, entry[key]))
    if entry["outcome"] == "error":
        tried = "; ".join(f"{a['host']}: {a['error']}" for a in entry["attempts"])
        raise RuntimeError(f"infrastructure error, the cell not judged ({tried or entry['error']})")
    return entry


def test_cell(cell_result):
    if cell_result["outcome"] != "pass":
        pytest.fail(f"verdict {cell_result['verdict']}, dump {cell_result['dump_status']} "
                    f"(expected {cell_result['expect']}), failing checks: "
                    f"{', '.join(cell_result['failed_checks']) or '-'}; run directory {cell_result['run_dir']}",
                    pytrace=False)
