"""junit.xml from a results document (docs/nightly.md): one <testcase> per cell, in the shape
CI systems read (Jenkins' and GitLab's, pytest's own --junitxml): <testsuites> holding one
<testsuite>, each with tests, failures, errors, skipped and time."""
from __future__ import annotations

import io
import xml.etree.ElementTree as ET
from pathlib import Path

from dumpbed.errors import DumpbedError
from dumpbed.nightly.atomic import write_atomically

SUITE = "dumpbed.matrix"
PROPERTIES = ("verdict", "dump_status", "mib_s", "host", "accel", "expect", "run_dir")


def _text(value) -> str:
    return "" if value is None else str(value)  # null: an empty property, not the word None


def failure_message(cell: dict) -> str:
    """One line: the failing checks, the verdict, the dump's status against the expected one."""
    checks = cell["failed_checks"]
    parts = [f"failed checks: {', '.join(checks)}" if checks else "no check failed"]
    parts.append(f"verdict {cell['verdict']}")
    parts.append(f"dump status {cell['dump_status']} (expected {cell['expect']})")
    return "; ".join(parts)


def error_message(cell: dict) -> str:
    attempts = cell["attempts"]
    return f"infrastructure error after {len(attempts)} attempt{'s' * (len(attempts) != 1)}: {cell['error']}"


def _testcase(suite: ET.Element, cell: dict) -> None:
    group, _, name = cell["id"].partition("/")
    case = ET.SubElement(suite, "testcase", classname=f"{SUITE}.{group}", name=name,
                         time=f"{cell['duration_s'] or 0:.3f}")
    props = ET.SubElement(case, "properties")
    for key in PROPERTIES:
        ET.SubElement(props, "property", name=key, value=_text(cell[key]))
    if cell["outcome"] == "fail":
        body = failure_message(cell) + (f"\nrun directory: {cell['run_dir']}" if cell["run_dir"] else "")
        ET.SubElement(case, "failure", message=failure_message(cell), type="dumpbed.fail").text = body
    elif cell["outcome"] == "error":
        lines = [f"attempt {i} on {a['host'] or 'no host'}: {a['error']}" for i, a in enumerate(cell["attempts"], 1)]
        ET.SubElement(case, "error", message=error_message(cell), type="dumpbed.infrastructure").text = "\n".join(lines)


def tree(doc: dict) -> ET.ElementTree:
    cells = doc["cells"]
    failures = sum(c["outcome"] == "fail" for c in cells)
    errors = sum(c["outcome"] == "error" for c in cells)
    total = f"{sum(c['duration_s'] or 0 for c in cells):.3f}"
    counts = {"tests": str(len(cells)), "failures": str(failures), "errors": str(errors), "skipped": "0",
              "time": total}
    root = ET.Element("testsuites", name=SUITE, **counts)
    suite = ET.SubElement(root, "testsuite", name=SUITE, timestamp=doc["started"], **counts)
    props = ET.SubElement(suite, "properties")
    for key in ("matrix", "commit", "require_kvm", "started", "finished"):
        ET.SubElement(props, "property", name=key, value=_text(doc[key]))
    if doc["shard"] is not None:
        ET.SubElement(props, "property", name="shard", value=f"{doc['shard'][0]}/{doc['shard'][1]}")
    for cell in cells:
        _testcase(suite, cell)
    ET.indent(root)
    return ET.ElementTree(root)


def write(path: Path, doc: dict) -> None:
    """Write doc's JUnit file at path, whole (a reader never sees half of it)."""
    path = Path(path)
    try:
        buffer = io.BytesIO()
        tree(doc).write(buffer, encoding="utf-8", xml_declaration=True)
        write_atomically(path, buffer.getvalue())
    except OSError as exc:
        raise DumpbedError(f"{path}: cannot be written ({exc.strerror or exc})") from exc
