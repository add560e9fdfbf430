"""results.json of a nightly matrix (docs/nightly.md): checked against
docs/matrix-results.schema.json when written and read, merged from shards, and the exit status
it implies."""
from __future__ import annotations

import functools
import json
import os
from datetime import datetime
from pathlib import Path
from typing import Any, Optional

from dumpbed.errors import DumpbedError
from dumpbed.nightly.atomic import write_atomically
from dumpbed.oracles.base import load_json

SCHEMA_VERSION = 1
FILE = "results.json"
SCHEMA_FILE = "matrix-results.schema.json"
# An installed wheel carries docs/ as package data (dumpbed/_data/docs, when setup.py copies it);
# an editable install or a checkout reads the checkout's docs/.
PACKAGE_DATA = Path(__file__).resolve().parents[1] / "_data" / "docs"
CHECKOUT_DOCS = Path(__file__).resolve().parents[3] / "docs"

# docs/nightly.md's exit statuses
EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 3


def schema_path() -> Path:
    for root in (PACKAGE_DATA, CHECKOUT_DOCS):
        if (root / SCHEMA_FILE).is_file():
            return root / SCHEMA_FILE
    raise DumpbedError(f"no {SCHEMA_FILE}: neither {PACKAGE_DATA} (an installed dumpbed) nor {CHECKOUT_DOCS} "
                       f"(a checkout) holds it")


@functools.lru_cache(maxsize=1)
def _validator():
    from jsonschema import Draft202012Validator

    path = schema_path()
    try:
        schema = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DumpbedError(f"{path}: cannot be read as JSON ({exc})") from exc
    return Draft202012Validator(schema)


def _where(doc: Any, path) -> str:
    """A JSON path as a reader finds it: cells[3] (its id) .outcome."""
    out = ""
    node = doc
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
            if isinstance(node, list) and part < len(node) and isinstance(node[part], dict) \
                    and isinstance(node[part].get("id"), str) and out.startswith("cells["):
                out += f" ({node[part]['id']})"
        else:
            out += ("." if out else "") + str(part)
        try:
            node = node[part]
        except (LookupError, TypeError):
            node = None
    return out or "the document"


def check(doc: dict) -> None:
    """DumpbedError naming the first place where doc is not a results document."""
    from jsonschema.exceptions import best_match

    error = best_match(_validator().iter_errors(doc))
    if error is not None:
        message = error.message
        path = list(error.absolute_path)
        if {"then", "else"} & set(map(str, error.schema_path)) and path[:1] == ["cells"] and len(path) > 1:
            # a rule of the cell's outcome: say which, or "'pass' was expected" reads as arbitrary
            message += f" for outcome {doc['cells'][path[1]].get('outcome')}"
        raise DumpbedError(f"{_where(doc, path)}: {message}")
    shard = doc["shard"]
    if shard is not None and shard[0] > shard[1]:
        raise DumpbedError(f"shard: {shard[0]}/{shard[1]} is not a shard (I must be at most N)")
    ids: set[str] = set()
    indexes: set[int] = set()
    for i, cell in enumerate(doc["cells"]):
        where = f"cells[{i}] ({cell['id']})"
        if cell["id"] in ids:
            raise DumpbedError(f"{where}: id given twice")
        ids.add(cell["id"])
        if cell.get("index") is not None:
            if cell["index"] in indexes:
                raise DumpbedError(f"{where}: index {cell['index']} given twice")
            indexes.add(cell["index"])
        made = cell_id(cell)
        if cell["id"] != made:
            raise DumpbedError(f"{where}: id is not its fields' {made}")


def cell_id(cell: dict) -> str:
    return "/".join((cell["group"], cell["disk"], cell["crash"], cell["fault"] or "none", cell["memory"],
                     cell["accel_requested"]))


def save(out_dir: Path, doc: dict) -> Path:
    """Check doc, then write out_dir/results.json whole (a reader never sees half of it)."""
    check(doc)
    out_dir = Path(out_dir)
    target = out_dir / FILE
    try:
        write_atomically(target, json.dumps(doc, indent=2) + "\n", fsync=True)
    except OSError as exc:
        raise DumpbedError(f"{target}: cannot be written ({exc.strerror or exc})") from exc
    return target


def results_file(path: Path) -> Path:
    """path itself when it names a file, else the results.json in it (a directory)."""
    path = Path(path)
    return path if path.name == FILE or path.is_file() else path / FILE


def load(path: Path) -> dict:
    """A results document from a results.json or a directory holding one, checked."""
    file = results_file(path)
    doc = load_json(file, f"a matrix's {FILE}")
    try:
        check(doc)
    except DumpbedError as exc:
        raise DumpbedError(f"{file}: {exc}") from None
    return doc


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def merge(docs: list[tuple[Path, dict]], out_dir: Path) -> dict:
    """One document of the shards of one matrix, for out_dir: each (shard's directory or its
    results.json, its document). Cells in the matrix's order, run_dir relative to out_dir."""
    if not docs:
        raise DumpbedError("no results to merge")
    for path, doc in docs:
        try:
            check(doc)
        except DumpbedError as exc:
            raise DumpbedError(f"{results_file(path)}: {exc}") from None
    first_dir, first = docs[0]
    for path, doc in docs[1:]:
        for key, what in (("matrix", "matrix file"), ("commit", "dumpbed commit"),
                          ("require_kvm", "--require-kvm")):
            if doc[key] != first[key]:
                raise DumpbedError(f"{results_file(path)}: {what} {doc[key]!r}, but {results_file(first_dir)} has "
                                   f"{first[key]!r}: not shards of one matrix run")
    _check_shards(docs)
    out_dir = Path(out_dir)
    seen: dict[str, Path] = {}
    keyed = []
    for path, doc in docs:
        shard_dir = results_file(path).parent
        for k, cell in enumerate(doc["cells"]):
            if cell["id"] in seen:
                raise DumpbedError(f"cell {cell['id']} is in both {results_file(seen[cell['id']])} and "
                                   f"{results_file(path)}")
            seen[cell["id"]] = path
            cell = dict(cell)
            if cell["run_dir"] is not None:
                cell["run_dir"] = os.path.relpath(os.path.abspath(shard_dir / cell["run_dir"]),
                                                  os.path.abspath(out_dir))
            keyed.append((_position(doc, k, cell), len(keyed), cell))
    keyed.sort(key=lambda item: (item[0] is None, item[0] or 0, item[1]))
    merged = {
        "schema_version": SCHEMA_VERSION,
        "matrix": first["matrix"],
        "shard": None,
        "started": min((d["started"] for _, d in docs), key=_time),
        "finished": max((d["finished"] for _, d in docs), key=_time),
        "commit": first["commit"],
        "require_kvm": first["require_kvm"],
        "cells": [cell for _, _, cell in keyed],
    }
    check(merged)  # e.g. two shards that gave one index to different cells
    return merged


def _position(doc: dict, k: int, cell: dict) -> Optional[int]:
    """The cell's place in the matrix: its index, else where shard I/N's k-th cell is (I-1 + kN,
    exact when the shard wrote every one of its cells, as the engine does); None: unknown."""
    if cell.get("index") is not None:
        return cell["index"]
    if doc["shard"] is not None:
        i, n = doc["shard"]
        return i - 1 + k * n
    return None


def _check_shards(docs: list[tuple[Path, dict]]) -> None:
    given: dict[tuple[int, int], Path] = {}
    for path, doc in docs:
        if doc["shard"] is None:
            continue
        shard = tuple(doc["shard"])
        if shard in given:
            raise DumpbedError(f"shard {shard[0]}/{shard[1]} given twice: {results_file(given[shard])} and "
                               f"{results_file(path)}")
        other = next((s for s in given if s[1] != shard[1]), None)
        if other:
            raise DumpbedError(f"{results_file(path)} is shard {shard[0]}/{shard[1]}, {results_file(given[other])} "
                               f"shard {other[0]}/{other[1]}: shards of different splits")
        given[shard] = path


def missing_shards(docs: list[tuple[Path, dict]]) -> list[str]:
    """The shards of the split that are not among docs ("3/4"), when every doc is a shard."""
    shards = [tuple(d["shard"]) for _, d in docs if d["shard"] is not None]
    if not shards or len(shards) != len(docs):
        return []
    n = shards[0][1]
    return [f"{i}/{n}" for i in range(1, n + 1) if (i, n) not in shards]


def exit_status(doc: dict) -> int:
    """0 every cell passed; 1 a cell failed; 3 none failed but some could not be judged."""
    outcomes = {cell["outcome"] for cell in doc["cells"]}
    if "fail" in outcomes:
        return EXIT_FAIL
    if "error" in outcomes:
        return EXIT_ERROR
    return EXIT_PASS


def counts(doc: dict) -> dict[str, int]:
    out = {"pass": 0, "fail": 0, "error": 0}
    for cell in doc["cells"]:
        out[cell["outcome"]] += 1
    return out
