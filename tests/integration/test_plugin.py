"""dumpbed's pytest plugin (harness/dumpbed/pytest_plugin.py), shown on the example external
suite (examples/external-suite) run under pytester: the outcome, the failure text naming the
failing checks and the run directory, which run directories --dumpbed-keep leaves, and the JUnit
properties. The suites pytester runs here boot QEMU (16M guests, one or two runs each): those
tests are marked integration. The rest (the marker, the options, the matrix) boot nothing.
"""
from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from dumpbed import pytest_plugin as plugin
from dumpbed.errors import DumpbedError

pytest_plugins = ["pytester"]

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "external-suite" / "test_my_driver.py"
PASSING = "test_the_driver_dumps_and_every_check_passes"
FAILING = "test_a_driver_that_never_flushes"


def run_example(pytester: pytest.Pytester, *args: str):
    """The example suite in pytester's directory, run in a pytest of its own (as a driver's
    suite would be: the plugin comes from the entry point, not from this session)."""
    shutil.copy(EXAMPLE, pytester.path / EXAMPLE.name)
    junit = pytester.path / "junit.xml"
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--junitxml={junit}", *args)
    props = {}
    for case in ET.parse(junit).getroot().iter("testcase"):
        props[case.get("name")] = {p.get("name"): p.get("value") for p in case.iter("property")}
    return result, props


@pytest.mark.integration
def test_the_example_suite_one_pass_one_failure_named_and_kept(pytester):
    result, props = run_example(pytester)  # --dumpbed-keep failed, the default
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    # The failure lists each failing check with its detail, and the run directory.
    result.stdout.fnmatch_lines(["*the dumpbed scenario failed*", "*failing checks:*",
                                 "*write-order: write * was taken before*", "*consistency: *",
                                 "*run directory: *dumpbed-1*", "*dumpbed runs (kept)*"])
    failing, passing = props[FAILING], props[PASSING]
    assert f"run directory: {failing['dumpbed_run_dir']}" in out
    # JUnit: verdict, dump status, MiB/s and accel per test.
    assert failing["dumpbed_verdict"] == "fail" and passing["dumpbed_verdict"] == "pass"
    assert passing["dumpbed_dump_status"] == "complete"
    assert float(passing["dumpbed_mib_s"]) > 0
    assert {failing["dumpbed_accel"], passing["dumpbed_accel"]} <= {"kvm", "tcg"}
    # The failing test's run directory stays, whole; the passing test's is gone.
    kept = Path(failing["dumpbed_run_dir"])
    assert (kept / "report.json").is_file() and (kept / "dump.img").is_file()
    assert (kept / "run.html").is_file()  # drawn for the directories kept (and only those)
    assert not Path(passing["dumpbed_run_dir"]).exists()


@pytest.mark.integration
def test_keep_all_under_dumpbed_out_keeps_a_passing_tests_run(pytester, tmp_path):
    out = tmp_path / "runs"
    result, props = run_example(pytester, "--dumpbed-keep", "all", f"--dumpbed-out={out}", "--dumpbed-accel=tcg",
                                "-k", PASSING)
    result.assert_outcomes(passed=1, deselected=1)
    run_dir = Path(props[PASSING]["dumpbed_run_dir"])
    assert run_dir.parent.parent == out and (run_dir / "report.json").is_file()
    assert (run_dir / "run.html").is_file() and (run_dir / "disk-map.svg").is_file()
    assert props[PASSING]["dumpbed_accel"] == "tcg"  # --dumpbed-accel reached the scenario


@pytest.mark.integration
def test_keep_none_removes_even_a_failing_tests_run(pytester):
    result, props = run_example(pytester, "--dumpbed-keep", "none", "-k", FAILING)
    result.assert_outcomes(failed=1, deselected=1)
    result.stdout.fnmatch_lines(["*dumpbed runs (removed after the test (--dumpbed-keep none))*"])
    assert props[FAILING]["dumpbed_verdict"] == "fail"
    assert not Path(props[FAILING]["dumpbed_run_dir"]).exists()


# --- without QEMU ----------------------------------------------------------------------------

def test_the_markers_and_options_are_registered(pytester):
    pytester.makepyfile("""
        import pytest
        @pytest.mark.dumpbed(disk="nvme")
        @pytest.mark.dumpbed_matrix(disks=["lsi"])
        def test_x(dumpbed_scenario):
            pass
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--strict-markers", "--collect-only", "-q")
    result.assert_outcomes()
    result.stdout.fnmatch_lines(["*test_x?lsi?*"])
    help_ = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--help")
    help_.stdout.fnmatch_lines(["*--dumpbed-accel*", "*--dumpbed-require-kvm*", "*--dumpbed-kernel*", "*--dumpbed-out*", "*--dumpbed-keep*"])


def test_the_marker_matrix_and_call_layer_their_arguments(pytester):
    """The factory's arguments reach the Scenario layered: module marker < function marker <
    dumpbed_matrix < the call; a wrong one is refused before any QEMU starts."""
    pytester.makepyfile("""
        import pytest
        from dumpbed import pytest_plugin
        seen = []

        def fake(scenario):
            seen.append(scenario)
            raise RuntimeError("stop before QEMU")

        pytestmark = pytest.mark.dumpbed(disk="nvme", memory="32M", level=5)

        @pytest.mark.dumpbed(crash="hang", fault="slow=16")
        @pytest.mark.dumpbed_matrix(disks=["lsi", "virtio-scsi"], faults=[None])
        def test_layers(dumpbed_run, monkeypatch):
            monkeypatch.setattr("dumpbed.run.run_and_validate", fake)
            with pytest.raises(RuntimeError):
                dumpbed_run(level=7)
            s = seen[-1]
            assert s.disk in ("lsi", "virtio-scsi") and s.crash == "hang"  # the matrix over the marker
            assert s.memory_bytes == 32 << 20 and s.level == 7 and s.accel == "tcg"
            assert s.faults == []  # the matrix's fault None replaces the marker's
            assert s.out_dir.name == "dumpbed-1"

        def test_unknown(dumpbed_run):
            with pytest.raises(TypeError, match="unknown scenario argument.*colour"):
                dumpbed_run(colour="red")
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--dumpbed-accel=tcg")
    result.assert_outcomes(passed=3)


def test_require_kvm_stops_the_session_without_kvm_and_runs_auto_under_kvm(pytester, monkeypatch, tmp_path):
    """--dumpbed-require-kvm, a nightly's guard: no KVM here is a usage error before any test;
    with KVM, a run's accel auto becomes kvm (no quiet TCG fallback)."""
    pytester.makepyfile("""
        import pytest
        seen = []

        def fake(scenario):
            seen.append(scenario)
            raise RuntimeError("stop before QEMU")

        def test_accel(dumpbed_run, monkeypatch):
            monkeypatch.setattr("dumpbed.run.run_and_validate", fake)
            with pytest.raises(RuntimeError):
                dumpbed_run()
            assert seen[-1].accel == "kvm"
            with pytest.raises(RuntimeError):
                dumpbed_run(accel="tcg")  # asked for outright: kept
            assert seen[-1].accel == "tcg"
    """)
    monkeypatch.setenv("DUMPBED_KVM_DEVICE", str(tmp_path / "no-kvm"))
    refused = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--dumpbed-require-kvm")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(["*--dumpbed-require-kvm: KVM is not usable here: *no-kvm: No such file*"])
    kvm = tmp_path / "fake-kvm"
    kvm.write_bytes(b"")  # opens, but answers no KVM ioctl: not usable either
    monkeypatch.setenv("DUMPBED_KVM_DEVICE", str(kvm))
    assert pytester.runpytest_subprocess("-p", "no:cacheprovider", "--dumpbed-require-kvm").ret \
        == pytest.ExitCode.USAGE_ERROR
    monkeypatch.delenv("DUMPBED_KVM_DEVICE")
    from dumpbed.machine import accel

    if accel.kvm_usable()[0]:
        pytester.runpytest_subprocess("-p", "no:cacheprovider", "--dumpbed-require-kvm").assert_outcomes(passed=1)


def test_a_failing_plain_assert_still_names_the_run(pytester):
    """A test failing on its own assert (not assert_passed) gets the runs in a report section."""
    pytester.makepyfile("""
        from dumpbed import pytest_plugin

        def fake(scenario):
            scenario.out_dir.mkdir(parents=True)
            return None, {"verdict": "fail", "dump": {"status": "partial"}, "throughput_mib_s": 1.5,
                          "accel": "tcg", "problem": None,
                          "checks": [{"name": "canary", "ok": False, "detail": "sector 9 rewritten"}]}

        def test_it(dumpbed_run, monkeypatch):
            monkeypatch.setattr("dumpbed.run.run_and_validate", fake)
            result = dumpbed_run()
            assert result.dump_status == "complete"
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*dumpbed runs (kept)*", "*dumpbed-1: verdict=fail dump=partial failing=canary*"])


def test_dumpbed_kernel_is_the_guest_every_run_boots(pytester, guest_kernel):
    """--dumpbed-kernel: every run's scenario boots that file (a copy of the guest here, as a user's
    own build would be), dumpbed_guest names it; a missing file or one that is no kernel stops the
    session with a usage error before any test."""
    kernel = pytester.path / "my-guest.elf"
    shutil.copy(guest_kernel, kernel)
    shutil.copy(Path(guest_kernel).with_suffix(".elf64"), kernel.with_suffix(".elf64"))
    pytester.makepyfile(f"""
        from pathlib import Path
        import pytest

        def fake(scenario):
            raise RuntimeError(f"would boot {{scenario.kernel}}")

        def test_it(dumpbed_guest, dumpbed_run, monkeypatch):
            assert dumpbed_guest == Path({str(kernel)!r})
            monkeypatch.setattr("dumpbed.run.run_and_validate", fake)
            with pytest.raises(RuntimeError, match="would boot {kernel}"):
                dumpbed_run()
    """)
    pytester.runpytest_subprocess("-p", "no:cacheprovider", f"--dumpbed-kernel={kernel}").assert_outcomes(passed=1)
    missing = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--dumpbed-kernel=nope.elf")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(["*--dumpbed-kernel nope.elf: no such file*"])
    (pytester.path / "notes.txt").write_text("not a kernel\n")
    garbage = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--dumpbed-kernel=notes.txt")
    assert garbage.ret == pytest.ExitCode.USAGE_ERROR
    garbage.stderr.fnmatch_lines(["*--dumpbed-kernel notes.txt: neither a multiboot kernel*"])


def test_matrix_ids_and_arguments():
    params = plugin.matrix(disks=["virtio-blk", "lsi"], faults=[None, "eio-at=30"], memory=["32M"], level=5)
    assert [p.id for p in params] == ["virtio-blk-no-fault-32M", "virtio-blk-eio-at=30-32M",
                                      "lsi-no-fault-32M", "lsi-eio-at=30-32M"]
    assert params[1].values[0] == {"disk": "virtio-blk", "fault": "eio-at=30", "memory": "32M", "level": 5}
    assert [p.id for p in plugin.matrix(crashes=["nmi", "hang"])] == ["nmi", "hang"]
    assert plugin.matrix(disks=["nvme"])[0].values[0] == {"disk": "nvme"}  # crash: the marker's or nmi


def test_scenario_kwargs_translate_and_refuse():
    assert plugin.scenario_kwargs(memory="64M", fault="slow=16", faults=["eio-at=3"]) == {
        "memory_bytes": 64 << 20, "faults": ["slow=16", "eio-at=3"]}
    assert plugin.scenario_kwargs(fault=None) == {"faults": []}
    with pytest.raises(TypeError, match="out_dir"):
        plugin.scenario_kwargs(out_dir="/tmp/x")  # the plugin places the run itself
    with pytest.raises(DumpbedError, match="memory lots"):
        plugin.scenario_kwargs(memory="lots")


def test_assert_passed_names_the_checks_and_the_directory(tmp_path):
    report = {"verdict": "fail", "dump": {"status": "complete"}, "accel": "kvm", "problem": None,
              "throughput_mib_s": 10.0, "checks": [{"name": "format", "ok": True, "detail": "fine"},
                                                   {"name": "write-order", "ok": False, "detail": "no flush"}]}
    result = plugin.DumpbedResult.from_report(report, tmp_path)
    with pytest.raises(AssertionError) as exc:
        result.assert_passed()
    text = str(exc.value)
    assert "write-order: no flush" in text and f"run directory: {tmp_path}" in text and "format" not in text
    result.assert_failed("write-order")
    with pytest.raises(AssertionError, match="expected the scenario to fail format"):
        result.assert_failed("format")
    report["verdict"] = "pass"
    report["checks"][1]["ok"] = True
    assert plugin.DumpbedResult.from_report(report, tmp_path).assert_passed().passed
