"""nightly/results.py and docs/matrix-results.schema.json: the docs' example is accepted, doctored
documents are refused with the place named, shards merge into the whole, exit statuses.

make_cell and make_doc are the other test_nightly_* files' builders too."""
from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from dumpbed.errors import DumpbedError
from dumpbed.nightly import results

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "a622ad1c0ffee0d2b6a7e4f1d9c3b5a7e2f40913"


def make_cell(index: int = 0, group="virtio", disk="virtio-blk", crash="nmi", fault=None, memory="64M",
              accel_requested="auto", outcome="pass", mib_s=800.0, host="kvm1", **over) -> dict:
    cell = {
        "group": group, "disk": disk, "crash": crash, "fault": fault, "memory": memory,
        "accel_requested": accel_requested, "args": [], "expect": "complete", "outcome": outcome,
        "verdict": outcome, "dump_status": "complete", "failed_checks": [], "mib_s": mib_s, "host": host,
        "accel": "kvm", "duration_s": 4.2, "run_dir": None, "attempts": [], "error": None, "index": index,
    }
    if outcome == "fail":
        cell.update(failed_checks=["canary", "format"], dump_status="partial")
    if outcome == "error":
        cell.update(verdict=None, dump_status=None, mib_s=None, host=None, accel=None,
                    attempts=[{"host": "kvm1", "error": "connection lost"}, {"host": "kvm2", "error": "host gone"}],
                    error="host gone")
    cell.update(over)
    cell["id"] = results.cell_id(cell)
    return cell


def make_doc(cells: list[dict], shard=None, started="2026-12-06T01:00:00Z", finished="2026-12-06T01:42:10Z",
             commit=COMMIT, matrix="examples/nightly/matrix.toml") -> dict:
    return {"schema_version": 1, "matrix": matrix, "shard": shard, "started": started, "finished": finished,
            "commit": commit, "require_kvm": True, "cells": cells}


def matrix_cells() -> list[dict]:
    """Nine cells of a matrix in its order: two disks, two crashes, faults, all three outcomes."""
    cells = []
    for disk in ("virtio-blk", "nvme"):
        for crash in ("nmi", "panic"):
            for fault in (None, "eio-at=40"):
                if disk == "nvme" and crash == "panic" and fault:
                    continue
                cells.append(make_cell(len(cells), disk=disk, crash=crash, fault=fault,
                                       run_dir=f"cells/c{len(cells)}/run"))
    cells.append(make_cell(len(cells), group="big", memory="256M", mib_s=900.0, run_dir=f"cells/c{len(cells)}/run"))
    cells.append(make_cell(len(cells), group="big", fault="kill@50%", outcome="fail", expect="partial",
                           run_dir=f"cells/c{len(cells)}/run"))
    cells.append(make_cell(len(cells), group="big", crash="panic", outcome="error"))
    for c in cells:
        c["id"] = results.cell_id(c)
    return cells


def docs_example() -> dict:
    text = (ROOT / "docs" / "nightly.md").read_text()
    block = re.search(r"## results\.json.*?```json\n(.*?)```", text, re.S)[1]
    return json.loads(re.sub(r"\s+//.*$", "", block, flags=re.M))


def test_the_schema_is_draft_2020_12_and_strict():
    schema = json.loads(results.schema_path().read_text())
    Draft202012Validator.check_schema(schema)
    assert schema["properties"]["schema_version"]["const"] == results.SCHEMA_VERSION
    assert set(schema["required"]) == set(schema["properties"])
    cell = schema["$defs"]["cell"]
    assert cell["additionalProperties"] is False and schema["additionalProperties"] is False
    assert set(cell["required"]) == set(cell["properties"]) - {"index"}  # index: optional


def test_the_docs_example_is_valid_and_its_cells_have_every_field():
    doc = docs_example()
    results.check(doc)
    schema = json.loads(results.schema_path().read_text())
    assert set(doc["cells"][0]) == set(schema["$defs"]["cell"]["properties"])


def test_built_documents_are_valid():
    results.check(make_doc(matrix_cells()))
    results.check(make_doc([], shard=[2, 4]))
    # a cell no worker reported (it died, the matrix was interrupted): an error with no attempt
    results.check(make_doc([make_cell(0, outcome="error", attempts=[], error="no worker reported it",
                                      duration_s=0.0)]))


def _doctor(doc: dict, path: str, value) -> dict:
    doc = copy.deepcopy(doc)
    *parents, last = [int(p) if p.isdigit() else p for p in path.split(".")]
    node = doc
    for p in parents:
        node = node[p]
    if value is _DELETE:
        del node[last]
    else:
        node[last] = value
    return doc


class _Delete:
    def __repr__(self):  # a stable test id: xdist's workers must collect the same names
        return "deleted"


_DELETE = _Delete()
DOCTORED = [
    ("schema_version", 2, "schema_version"),
    ("surprise", 1, "the document"),  # an unknown top-level key
    ("shard", [3, 2], "shard"),
    ("shard", [0, 2], "shard"),
    ("started", "yesterday", "started"),
    ("commit", "a622ad1...", "commit"),
    ("require_kvm", "yes", "require_kvm"),
    ("cells.0.outcome", "maybe", "cells[0] (virtio/virtio-blk/nmi/none/64M/auto).outcome"),
    ("cells.0.verdict", "fail", "cells[0]"),  # pass with a failing verdict
    ("cells.0.failed_checks", ["canary"], "cells[0]"),  # pass with a failed check
    ("cells.0.mib_s", -1, "mib_s"),
    ("cells.0.fault", "none", "fault"),
    ("cells.0.accel", "hvf", "accel"),
    ("cells.0.run_dir", "/abs/run", "run_dir"),
    ("cells.0.index", -1, "index"),
    ("cells.0.color", "red", "cells[0]"),
    ("cells.0.host", _DELETE, "cells[0]"),
    ("cells.0.id", "virtio/virtio-blk/nmi/none/64M/kvm", "id is not its fields'"),
    ("cells.1.id", "virtio/virtio-blk/nmi/none/64M/auto", "given twice"),
    ("cells.1.index", 0, "index 0 given twice"),
    ("cells.9.host", "kvm1", "cells[9]"),  # an error cell with a host
    ("cells.9.error", None, "cells[9]"),
    ("cells.8.error", "why", "cells[8]"),  # a fail with an infrastructure error
    ("cells.8.verdict", "pass", "verdict: 'fail' was expected for outcome fail"),
]


@pytest.mark.parametrize("path,value,named", DOCTORED, ids=[f"{p}={v!r}" for p, v, _ in DOCTORED])
def test_doctored_documents_are_refused_naming_the_place(path, value, named):
    doc = make_doc(matrix_cells())
    results.check(doc)
    with pytest.raises(DumpbedError) as err:
        results.check(_doctor(doc, path, value))
    assert named in str(err.value)


def test_save_writes_a_checked_file_and_load_reads_it(tmp_path):
    doc = make_doc(matrix_cells())
    path = results.save(tmp_path / "out", doc)
    assert path == tmp_path / "out" / "results.json"
    assert results.load(tmp_path / "out") == doc == results.load(path)
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["results.json"]  # no temporary left
    with pytest.raises(DumpbedError, match="outcome"):
        results.save(tmp_path / "bad", _doctor(doc, "cells.0.outcome", "maybe"))
    assert not (tmp_path / "bad" / "results.json").exists()


@pytest.mark.parametrize("content,message", [
    (None, "no such file"),
    ("{not json", "is not valid JSON"),
    ('{"schema_version": 1}', "matrix"),
    ("[]", "not of type 'object'"),
    (b"\xff\xfe", "cannot read"),
])
def test_load_refuses_missing_corrupt_and_invalid_files_in_one_line(tmp_path, content, message):
    if isinstance(content, bytes):
        (tmp_path / "results.json").write_bytes(content)
    elif content is not None:
        (tmp_path / "results.json").write_text(content)
    with pytest.raises(DumpbedError) as err:
        results.load(tmp_path)
    assert message in str(err.value) and "\n" not in str(err.value)
    assert "results.json" in str(err.value)


def _shards(whole: dict, n: int, base: Path) -> list[tuple[Path, dict]]:
    """whole's cells as --shard I/N would split them, each shard in base/shard-I with its run
    directories relative to it; shard I's times are inside the whole's."""
    out = []
    for i in range(1, n + 1):
        cells = copy.deepcopy(whole["cells"][i - 1::n])
        doc = make_doc(cells, shard=[i, n], started=f"2026-12-06T01:0{i}:00Z", finished=f"2026-12-06T01:3{i}:00Z")
        out.append((base / f"shard-{i}", doc))
    out[len(out) // 2][1]["started"] = whole["started"]  # the earliest start need not be shard 1's
    out[-1][1]["finished"] = whole["finished"]
    return out


@pytest.mark.parametrize("n", [1, 2, 3, 4])
@pytest.mark.parametrize("with_index", [True, False])
def test_shards_merge_into_the_whole(tmp_path, n, with_index):
    cells = matrix_cells()
    if not with_index:  # then the order comes from each shard's I/N
        for c in cells:
            del c["index"]
    whole = make_doc(cells)
    shards = _shards(whole, n, tmp_path)
    if n > 1:
        shards.reverse()  # the order they are given in does not matter
    merged = results.merge(shards, tmp_path / "night")
    expect = copy.deepcopy(whole)
    for c in expect["cells"]:
        if c["run_dir"]:
            shard = next(p for p, d in shards if any(x["id"] == c["id"] for x in d["cells"]))
            c["run_dir"] = f"../{shard.name}/{c['run_dir']}"
    assert merged == expect


def test_merge_run_dir_is_relative_to_the_output_wherever_it_is(tmp_path):
    doc = make_doc([make_cell(0, run_dir="cells/a/run")], shard=[1, 1])
    merged = results.merge([(tmp_path / "ci" / "shard-1" / "results.json", doc)], tmp_path / "out" / "night")
    assert merged["cells"][0]["run_dir"] == "../../ci/shard-1/cells/a/run"
    merged = results.merge([(tmp_path / "here", doc)], tmp_path / "here")
    assert merged["cells"][0]["run_dir"] == "cells/a/run"


@pytest.mark.parametrize("doctor,message", [
    (lambda a, b: b["cells"].append(copy.deepcopy(a["cells"][0])), "is in both"),
    (lambda a, b: b.update(matrix="other.toml"), "matrix file"),
    (lambda a, b: b.update(commit="b" * 40), "dumpbed commit"),
    (lambda a, b: b.update(require_kvm=False), "--require-kvm"),
    (lambda a, b: b.update(shard=[1, 2]), "given twice"),
    (lambda a, b: b.update(shard=[2, 3]), "different splits"),
    (lambda a, b: b["cells"][0].update(index=0), "index 0 given twice"),
    (lambda a, b: b["cells"][0].update(outcome="maybe"), "shard-2/results.json: cells[0]"),
])
def test_merge_refuses_shards_that_are_not_of_one_run(tmp_path, doctor, message):
    shards = _shards(make_doc(matrix_cells()), 2, tmp_path)
    results.merge(copy.deepcopy(shards), tmp_path / "night")  # undoctored: fine
    doctor(shards[0][1], shards[1][1])
    with pytest.raises(DumpbedError, match=re.escape(message)):
        results.merge(shards, tmp_path / "night")


def test_missing_shards_are_named(tmp_path):
    shards = _shards(make_doc(matrix_cells()), 4, tmp_path)
    assert results.missing_shards(shards) == []
    assert results.missing_shards([shards[0], shards[3]]) == ["2/4", "3/4"]
    assert results.missing_shards([(tmp_path, make_doc([]))]) == []  # not sharded: nothing to miss


@pytest.mark.parametrize("outcomes,status", [
    ([], 0), (["pass"], 0), (["pass", "pass"], 0), (["pass", "fail"], 1), (["error", "fail", "pass"], 1),
    (["error"], 3), (["pass", "error"], 3),
])
def test_exit_status(outcomes, status):
    doc = make_doc([make_cell(i, crash=f"c{i}", outcome=o) for i, o in enumerate(outcomes)])
    results.check(doc)
    assert results.exit_status(doc) == status


def test_the_schema_is_found_in_an_installed_package_first(tmp_path, monkeypatch):
    """An installed wheel's dumpbed/_data/docs wins over a checkout's docs/; neither: one line."""
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / results.SCHEMA_FILE).write_text(results.schema_path().read_text())
    monkeypatch.setattr(results, "PACKAGE_DATA", tmp_path / "docs")
    assert results.schema_path() == tmp_path / "docs" / results.SCHEMA_FILE
    monkeypatch.setattr(results, "PACKAGE_DATA", tmp_path / "nowhere")
    monkeypatch.setattr(results, "CHECKOUT_DOCS", tmp_path / "nowhere either")
    with pytest.raises(DumpbedError, match="no matrix-results.schema.json"):
        results.schema_path()
