"""docs/report.schema.json against real and synthetic reports, and against doctored ones.

The real reports in report_samples/ are `dumpbed run --memory 32M ... --json` outputs, as
report.py wrote them (regenerate them when the schema's version changes):

    virtio-blk-complete.json        (no other option)
    virtio-blk-kill-partial.json    --fault kill@50%
    virtio-blk-no-flush-fails.json  --components none --guest-arg testfault=no-flush
    nvme-complete.json              --disk nvme --components none
    restart-on-lsi.json             --secondary lsi --fault eio-at=40 --components none
"""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator, ValidationError

from dumpbed import cli, report
from dumpbed.oracles.validate import CHECK_ORDER, validate_image, validate_run
from dumpbed.reader import outcome


ROOT = Path(__file__).resolve().parents[2]
SCHEMA_PATH = ROOT / "docs" / "report.schema.json"
SAMPLES = sorted((Path(__file__).parent / "report_samples").glob("*.json"))


@pytest.fixture(scope="module")
def schema() -> dict:
    return json.loads(SCHEMA_PATH.read_text())


@pytest.fixture(scope="module")
def validator(schema) -> Draft202012Validator:
    return Draft202012Validator(schema, format_checker=Draft202012Validator.FORMAT_CHECKER)


def _errors(validator, document) -> list[str]:
    """Every error, with those under an anyOf (which say more than the anyOf's own)."""
    def flat(errors):
        for e in errors:
            yield f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
            yield from flat(e.context or [])
    return list(flat(validator.iter_errors(document)))


def test_the_schema_is_a_valid_draft_2020_12_schema(schema):
    Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_version_is_the_reports(schema):
    assert schema["properties"]["schema_version"]["const"] == report.SCHEMA_VERSION
    # every top-level field is required: a consumer can rely on each one being there
    assert set(schema["required"]) == set(schema["properties"])


def test_the_schema_knows_the_vocabulary(schema):
    names = [*CHECK_ORDER, "devices", "ground-truth"]
    for name in names:
        Draft202012Validator(schema["$defs"]["check_name"]).validate(name)
        assert name in schema["$defs"]["check_name"]["description"]
    assert schema["$defs"]["classification"]["enum"] == list(outcome.OUTCOMES)


def test_the_real_samples_are_what_they_claim():
    reports = {p.stem: json.loads(p.read_text()) for p in SAMPLES}
    assert set(reports) == {"virtio-blk-complete", "virtio-blk-kill-partial", "virtio-blk-no-flush-fails",
                            "nvme-complete", "restart-on-lsi"}
    assert reports["virtio-blk-kill-partial"]["outcome"] == "partial" and reports["virtio-blk-kill-partial"]["fault"]
    assert reports["virtio-blk-no-flush-fails"]["verdict"] == "fail"
    assert reports["nvme-complete"]["scenario"]["disk"] == "nvme"
    assert [d["role"] for d in reports["restart-on-lsi"]["devices"]] == ["primary", "secondary"]
    assert all(r["provenance"]["qemu"]["source"] == "qmp" for r in reports.values())


@pytest.mark.parametrize("path", SAMPLES, ids=[p.stem for p in SAMPLES])
def test_real_reports_validate(validator, path):
    assert _errors(validator, json.loads(path.read_text())) == []


def _report_of(run, **kwargs) -> dict:
    scenario = json.loads((run.dir / "scenario.json").read_text())
    return report.build(run.dir, validate_run(run.dir).to_dict(),
                        {"boot": 0.5, "crash_to_dump_done": 1.25, "validate": 0.75}, scenario=scenario, **kwargs)


SYNTHETIC = {
    "complete": dict(),
    "in-progress": dict(state="in-progress", body_written=3 * 65536),
    "failed": dict(state="failed", body_written=0x100000),
    "none": dict(state="none"),
    "restart-with-every-sample": dict(samples="all", generation=2),
    "panic-4096": dict(crash="panic", block_size=4096),
}


@pytest.mark.parametrize("options", SYNTHETIC.values(), ids=SYNTHETIC.keys())
def test_synthetic_reports_validate(validator, make_run, options):
    rep = _report_of(make_run(**options))
    assert _errors(validator, rep) == []
    assert rep["schema_version"] == report.SCHEMA_VERSION


def test_a_report_with_violations_findings_and_a_problem_validates(validator, make_run):
    run = make_run(samples="all", generation=2)
    run.flip(run.area_disk_offset("ram-high") + 9)  # a chunk CRC mismatch: findings, failing checks
    (run.dir / "fault.json").write_text("{")  # unreadable: {"note": ...}
    validation = validate_run(run.dir).to_dict()
    validation["checks"].append({"name": "ground-truth", "ok": False, "detail": "as run.py appends it"})
    scenario = json.loads((run.dir / "scenario.json").read_text())
    rep = report.build(run.dir, validation, {"validate": 0.1}, scenario=scenario, problem="the guest hung")
    assert rep["dump"]["violations"] and rep["dump"]["findings"] and rep["verdict"] == "fail"
    assert rep["fault"] == {"note": "fault.json unreadable"} and rep["throughput_mib_s"] is None
    assert _errors(validator, rep) == []


def test_a_bare_image_report_validates(validator, good_run):
    rep = report.build(None, validate_image(good_run.image).to_dict(), {"validate": 0.2})
    assert rep["scenario"] is None and rep["provenance"]["guest_image"] is None
    assert _errors(validator, rep) == []


def test_the_cli_json_of_a_validation_validates(validator, good_run, capsys):
    assert cli.main(["validate", str(good_run.dir), "--json"]) == 0
    assert _errors(validator, json.loads(capsys.readouterr().out)) == []


# ---- doctored reports: the schema says no -------------------------------------------------

def _doctor(rep: dict, path: str, value=..., delete=False) -> dict:
    doctored = copy.deepcopy(rep)
    *parents, last = path.split("/")
    node = doctored
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if delete:
        del node[last]
    else:
        node[int(last) if isinstance(node, list) else last] = value
    return doctored


DOCTORED = {
    # missing required fields
    "no verdict": (dict(path="verdict", delete=True), "'verdict' is a required property"),
    "no dump status": (dict(path="dump/status", delete=True), "'status' is a required property"),
    "no provenance": (dict(path="provenance", delete=True), "'provenance' is a required property"),
    "no check detail": (dict(path="checks/0/detail", delete=True), "'detail' is a required property"),
    "no host kernel": (dict(path="provenance/host/kernel", delete=True), "'kernel' is a required property"),
    # wrong types
    "ok as a string": (dict(path="checks/0/ok", value="yes"), "'yes' is not of type 'boolean'"),
    "bytes as a string": (dict(path="dump/bytes", value="34824704"), "is not of type 'integer'"),
    "a negative length": (dict(path="dump/areas/0/length", value=-1), "less than the minimum of 0"),
    "timings as a list": (dict(path="timings", value=[1.0]), "is not of type 'object'"),
    "a short sha256": (dict(path="provenance/guest_image/sha256", value="abc"), "does not match"),
    # unknown values
    "an unknown verdict": (dict(path="verdict", value="maybe"), "'maybe' is not one of ['pass', 'fail']"),
    "an unknown outcome": (dict(path="outcome", value="mostly"), "'mostly' is not one of"),
    "another schema version": (dict(path="schema_version", value=2), "1 was expected"),
    "an undocumented field": (dict(path="extra", value=1), "Additional properties are not allowed"),
    "an undocumented dump field": (dict(path="dump/extra", value=1), "Additional properties are not allowed"),
    "a bad check name": (dict(path="checks/0/name", value="Write Sizes"), "does not match"),
}


@pytest.mark.parametrize("how, message", DOCTORED.values(), ids=DOCTORED.keys())
def test_doctored_reports_are_rejected(validator, how, message):
    rep = json.loads((Path(__file__).parent / "report_samples" / "virtio-blk-complete.json").read_text())
    assert _errors(validator, rep) == []  # the report as it was is fine
    errors = _errors(validator, _doctor(rep, **how))
    assert errors, f"the schema took a report with {how}"
    assert any(message in e for e in errors), errors


def test_a_doctored_report_fails_validate_as_a_whole(validator):
    rep = json.loads((Path(__file__).parent / "report_samples" / "virtio-blk-kill-partial.json").read_text())
    with pytest.raises(ValidationError):
        validator.validate(_doctor(rep, "devices/0/role", "tertiary"))


# ---- dumpbed show --json ---------------------------------------------------------------------

def _show_validator(schema) -> Draft202012Validator:
    return Draft202012Validator({"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": "#/$defs/show"})


@pytest.mark.parametrize("options", [dict(), dict(state="in-progress", body_written=3 * 65536),
                                     dict(samples="all", generation=2), dict(state="none")],
                         ids=["complete", "in-progress", "every-sample", "none"])
def test_show_json_is_the_reports_dump_and_more(schema, make_run, options, capsys):
    run = make_run(**options)
    assert cli.main(["show", "--json", str(run.image)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert _errors(_show_validator(schema), shown) == []
    # the dump as report.json holds it for the same image
    assert shown["dump"] == validate_image(run.image).to_dict()["dump"]
    assert shown["image"] == str(run.image.resolve())
    if options.get("state") == "none":
        assert shown["header"] is None and shown["call_records"] == []
        return
    assert shown["header"]["dump_id"] == shown["dump"]["dump_id"]
    assert shown["header"]["status_name"] == shown["dump"]["header_status"] and shown["header"]["crc_ok"]
    assert len(shown["call_records"]) == shown["dump"]["calls"]
    sealed = shown["areas_sealed"]
    assert (sealed is None) == (options.get("state") is None)
    if sealed is not None:
        assert 0 < len(sealed) < len(shown["dump"]["areas"])


def test_show_json_counts_every_finding(make_run, capsys):
    run = make_run()
    for name in ("ram-high", "ram-low", "kernel-text"):
        run.flip(run.area_disk_offset(name) + 9)
    assert cli.main(["show", "--json", str(run.image)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["dump"]["status"] == "corrupt"
    assert shown["findings_total"] == len(shown["dump"]["findings"]) >= 3
    assert {f["check"] for f in shown["dump"]["findings"]} == {"chunk-crc"}


def test_the_schema_rejects_a_doctored_show(schema, good_run, capsys):
    assert cli.main(["show", "--json", str(good_run.image)]) == 0
    shown = json.loads(capsys.readouterr().out)
    shown["header"]["status_name"] = 7
    assert _errors(_show_validator(schema), shown)
