"""nightly/junit.py: the merged junit.xml parses, counts right, names each cell as docs/nightly.md
says, with its properties, a <failure> for a driver FAIL and an <error> for an infrastructure one."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from test_nightly_results import make_doc, matrix_cells

from dumpbed.errors import DumpbedError
from dumpbed.nightly import junit


def _write(tmp_path, doc) -> ET.Element:
    junit.write(tmp_path / "junit.xml", doc)
    return ET.parse(tmp_path / "junit.xml").getroot()


def _counts(element: ET.Element) -> dict:
    return {k: element.get(k) for k in ("tests", "failures", "errors")}


def test_one_testcase_per_cell_and_the_counts(tmp_path):
    doc = make_doc(matrix_cells())
    root = _write(tmp_path, doc)
    assert root.tag == "testsuites"
    (suite,) = root.findall("testsuite")
    cases = suite.findall("testcase")
    assert len(cases) == len(doc["cells"]) == 10
    assert _counts(root) == _counts(suite) == {"tests": "10", "failures": "1", "errors": "1"}
    assert len(suite.findall("testcase/failure")) == 1 and len(suite.findall("testcase/error")) == 1
    assert float(suite.get("time")) == pytest.approx(4.2 * 10, abs=0.01)
    ids = [f"{c.get('classname').removeprefix('dumpbed.matrix.')}/{c.get('name')}" for c in cases]
    assert ids == [c["id"] for c in doc["cells"]]
    assert cases[0].get("classname") == "dumpbed.matrix.virtio"
    assert cases[0].get("name") == "virtio-blk/nmi/none/64M/auto"


def test_properties_of_every_case(tmp_path):
    doc = make_doc(matrix_cells())
    doc["cells"][0]["run_dir"] = "cells/a/run"
    root = _write(tmp_path, doc)
    for case, cell in zip(root.iter("testcase"), doc["cells"]):
        props = {p.get("name"): p.get("value") for p in case.findall("properties/property")}
        assert set(props) == {"verdict", "dump_status", "mib_s", "host", "accel", "expect", "run_dir"}
        assert props["host"] == (cell["host"] or "") and props["expect"] == cell["expect"]
    first = {p.get("name"): p.get("value") for p in root.find("testsuite/testcase").findall("properties/property")}
    assert first == {"verdict": "pass", "dump_status": "complete", "mib_s": "800.0", "host": "kvm1",
                     "accel": "kvm", "expect": "complete", "run_dir": "cells/a/run"}
    suite_props = {p.get("name"): p.get("value") for p in root.findall("testsuite/properties/property")}
    assert suite_props["commit"] == doc["commit"] and suite_props["matrix"] == doc["matrix"]


def test_failure_names_the_checks_verdict_and_dump_status_error_names_the_attempts(tmp_path):
    root = _write(tmp_path, make_doc(matrix_cells()))
    failure = root.find(".//testcase/failure")
    assert "canary, format" in failure.get("message")
    assert "verdict fail" in failure.get("message")
    assert "dump status partial (expected partial)" in failure.get("message")
    error = root.find(".//testcase/error")
    assert "2 attempts" in error.get("message") and "host gone" in error.get("message")
    assert error.text.splitlines() == ["attempt 1 on kvm1: connection lost", "attempt 2 on kvm2: host gone"]
    passed = [c for c in root.iter("testcase") if c.find("failure") is None and c.find("error") is None]
    assert len(passed) == 8


def test_outcomes_decide_the_element_not_the_position(tmp_path):
    """A doctored document (every cell failing) gives failures only: the counts follow the data."""
    doc = make_doc(matrix_cells())
    for c in doc["cells"]:
        if c["outcome"] == "pass":
            c.update(outcome="fail", verdict="fail")
    root = _write(tmp_path, doc)
    assert _counts(root) == {"tests": "10", "failures": "9", "errors": "1"}


def test_no_cells_is_an_empty_suite(tmp_path):
    root = _write(tmp_path, make_doc([]))
    assert _counts(root) == {"tests": "0", "failures": "0", "errors": "0"}


def test_an_unwritable_place_is_a_dumpbed_error(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(DumpbedError, match="cannot be written"):
        junit.write(tmp_path / "file" / "junit.xml", make_doc([]))
