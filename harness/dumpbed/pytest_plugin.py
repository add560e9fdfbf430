"""dumpbed as a pytest plugin: run crash-dump scenarios from a driver's own test suite.

Registered through the `pytest11` entry point, so any pytest in an environment where dumpbed is
installed has it (docs/pytest-plugin.md):

    @pytest.mark.dumpbed(disk="virtio-scsi", memory="32M")
    def test_my_driver_dumps(dumpbed_run):
        dumpbed_run().assert_passed()

Fixtures: `dumpbed_guest` (session: the guest kernel, built once, or `--dumpbed-kernel`),
`dumpbed_run` (a factory: a scenario's keyword arguments -> DumpbedResult), `dumpbed_result` (the
marker's scenario, run once), `dumpbed_scenario` (the keyword arguments `dumpbed_matrix`
parametrises). Markers: `dumpbed(**scenario)` (the defaults of dumpbed_run) and
`dumpbed_matrix(disks=..., crashes=..., faults=...)`. Options: `--dumpbed-accel`,
`--dumpbed-kernel`, `--dumpbed-out`, `--dumpbed-keep`.

This module is imported by every pytest session of the environment: it imports nothing of
dumpbed's heavy parts (QEMU, the oracles) until a fixture runs.
"""
from __future__ import annotations

import hashlib
import itertools
import re
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Optional, Sequence

import pytest

KEEP_CHOICES = ("failed", "all", "none")
ACCEL_CHOICES = ("auto", "kvm", "tcg")
# The names the marker and the factory take beside Scenario's own fields.
ALIASES = ("memory", "fault")

_RUNS = pytest.StashKey[list]()  # a test's runs, in order: (run directory, DumpbedResult or None)
_REPORTS = pytest.StashKey[dict]()  # phase ("setup", "call", "teardown") -> passed
_BOOT = pytest.StashKey[dict]()  # the config's: _boot_options, checked once at configure


@dataclass(frozen=True)
class FailedCheck:
    name: str
    detail: str


@dataclass
class DumpbedResult:
    """One scenario's run and its validation: what a test asserts on."""
    verdict: str  # "pass" or "fail"
    dump_status: Optional[str]  # report["dump"]["status"]: complete, partial, corrupt, none, ...
    failed_checks: list[FailedCheck]  # in data-flow order
    report: dict  # report.json
    run_dir: Path
    mib_s: Optional[float]  # report["throughput_mib_s"]
    accel: Optional[str]  # kvm or tcg
    problem: Optional[str]  # why the run itself went wrong, or None
    exit_status: Optional[int]
    outcome: Any = field(repr=False, default=None)  # dumpbed.run.RunOutcome

    def __repr__(self) -> str:  # the report is long: pytest shows this in tracebacks
        return (f"DumpbedResult(verdict={self.verdict!r}, dump_status={self.dump_status!r}, "
                f"failed_checks={self.failed_check_names!r}, run_dir='{self.run_dir}')")

    @property
    def passed(self) -> bool:
        return self.verdict == "pass"

    @property
    def failed_check_names(self) -> list[str]:
        return [c.name for c in self.failed_checks]

    def check(self, name: str) -> dict:
        """The report's check of this name (KeyError if the run has none)."""
        for c in self.report.get("checks", []):
            if c["name"] == name:
                return c
        raise KeyError(f"no check {name!r} in {self.run_dir / 'report.json'}")

    def describe(self) -> str:
        """The run in a few lines: verdict, dump status, failing checks and where the run lies."""
        r = self.report
        lines = [f"dumpbed run {self.run_dir}: verdict={self.verdict} dump={self.dump_status} "
                 f"outcome={r.get('outcome')} expected={r.get('expected_outcome')} accel={self.accel}"]
        if self.problem:
            lines.append(f"  problem: {self.problem}")
        if r.get("outcome_why"):
            lines.append(f"  outcome: {r['outcome_why']}")
        if self.failed_checks:
            lines.append("  failing checks:")
            lines += [f"    {c.name}: {c.detail}" for c in self.failed_checks]
        return "\n".join(lines)

    def assert_passed(self) -> "DumpbedResult":
        """Fails the test unless the verdict is pass, naming each failing check with its detail
        and the run directory (kept by --dumpbed-keep failed, the default)."""
        __tracebackhide__ = True
        if not self.passed:
            raise AssertionError("the dumpbed scenario failed\n" + self.describe()
                                 + f"\n  run directory: {self.run_dir}")
        return self

    def assert_failed(self, *checks: str) -> "DumpbedResult":
        """Fails the test unless the verdict is fail and each check named failed."""
        __tracebackhide__ = True
        missing = [c for c in checks if c not in self.failed_check_names]
        if self.passed or missing:
            raise AssertionError(f"expected the scenario to fail{' ' + ', '.join(missing) if missing else ''}\n"
                                 + self.describe() + f"\n  run directory: {self.run_dir}")
        return self

    @classmethod
    def from_report(cls, report: dict, run_dir: Path, outcome: Any = None) -> "DumpbedResult":
        failed = [FailedCheck(c["name"], c.get("detail") or "") for c in report.get("checks", []) if not c.get("ok")]
        return cls(verdict=report.get("verdict"), dump_status=(report.get("dump") or {}).get("status"),
                   failed_checks=failed, report=report, run_dir=Path(run_dir),
                   mib_s=report.get("throughput_mib_s"), accel=report.get("accel"),
                   problem=report.get("problem"), exit_status=getattr(outcome, "exit_status", None),
                   outcome=outcome)


# --- scenario arguments ----------------------------------------------------------------------

def scenario_kwargs(**kwargs: Any) -> dict:
    """The plugin's friendly arguments as Scenario's: memory="64M" -> memory_bytes, fault="x" ->
    faults=["x"] (both may be given: the fault comes first); anything not a Scenario field is a
    TypeError naming it."""
    from dumpbed.scenario.spec import Scenario
    from dumpbed.units import parse_size

    out = dict(kwargs)
    if "memory" in out:
        memory = out.pop("memory")
        out["memory_bytes"] = parse_size(memory, "memory") if isinstance(memory, str) else int(memory)
    if "fault" in out:
        fault = out.pop("fault")
        out["faults"] = ([fault] if fault else []) + list(out.get("faults") or [])
    names = {f.name for f in fields(Scenario)} - {"out_dir"}
    unknown = sorted(set(out) - names)
    if unknown:
        raise TypeError(f"dumpbed: unknown scenario argument(s) {', '.join(unknown)}; "
                        f"known: {', '.join(sorted(names | set(ALIASES)))}")
    return out


def _marker_defaults(node: pytest.Item) -> dict:
    """The dumpbed markers' keyword arguments, the closest (the function's) winning."""
    merged: dict = {}
    for mark in reversed(list(node.iter_markers("dumpbed"))):
        if mark.args:
            raise TypeError(f"dumpbed marker: keyword arguments only (got {mark.args!r})")
        merged.update(mark.kwargs)
    return merged


def _merge(*layers: dict) -> dict:
    """Later layers win; a `fault` given in a later layer replaces an earlier `faults` too."""
    out: dict = {}
    for layer in layers:
        layer = dict(layer)
        if "fault" in layer and "faults" not in layer:
            out.pop("faults", None)
        if "faults" in layer and "fault" not in layer:
            out.pop("fault", None)
        out.update(layer)
    return out


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.=-]+", "_", text).strip("_")[:80] or "run"


def _test_dir_name(nodeid: str) -> str:
    """A test's directory under --dumpbed-out: its id, readable; a long one cut and told apart
    by a hash of the whole id."""
    name = re.sub(r"[^A-Za-z0-9_.=-]+", "_", nodeid.replace("::", "-").replace("/", "-")).strip("_")
    if len(name) <= 100:
        return name
    return f"{name[:90]}-{hashlib.sha1(nodeid.encode()).hexdigest()[:8]}"


# --- parametrisation -------------------------------------------------------------------------

def matrix(disks: Optional[Sequence[str]] = None, crashes: Optional[Sequence[str]] = None,
           faults: Optional[Sequence[Optional[str]]] = None, memory: Optional[Sequence[str]] = None,
           **common: Any) -> list:
    """The product of the dimensions given (disks x crashes x faults x memory sizes) as
    pytest.param dicts of scenario arguments, with ids like `virtio-blk-nmi`, `lsi-eio-at=30`,
    `nvme-no-fault-32M`:

        @pytest.mark.parametrize("scenario", matrix(disks=["virtio-blk", "nvme"], faults=[None, "slow=16"]))
        def test_it(dumpbed_run, scenario):
            dumpbed_run(**scenario).assert_passed()

    A dimension not given is not set (the dumpbed marker's or Scenario's default holds); a
    fault of None is the run without one (id `no-fault`); `common` goes into every param."""
    dims = [(key, values) for key, values in (("disk", disks), ("crash", crashes), ("fault", faults),
                                              ("memory", memory)) if values is not None]
    params = []
    for combo in itertools.product(*(values for _, values in dims)):
        kwargs = dict(common)
        parts = []
        for (key, _), value in zip(dims, combo):
            kwargs[key] = value
            parts.append("no-fault" if key == "fault" and not value else _slug(str(value)))
        params.append(pytest.param(kwargs, id="-".join(parts) or "default"))
    return params


# --- pytest hooks ----------------------------------------------------------------------------

def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("dumpbed", "dumpbed crash-dump scenarios")
    group.addoption("--dumpbed-accel", choices=ACCEL_CHOICES, default="auto",
                    help="the accelerator of dumpbed_run's guests (default auto: KVM where usable, else TCG)")
    group.addoption("--dumpbed-require-kvm", action="store_true", default=False,
                    help="a nightly's guard: the session stops at once when KVM is not usable here, and runs "
                         "with accel auto run under KVM (never a silent TCG fallback or skip)")
    group.addoption("--dumpbed-kernel", metavar="FILE", default=None,
                    help="boot this kernel (multiboot or bzImage) in every run instead of the guest profile's own "
                         "image (docs/guest-profiles.md)")
    group.addoption("--dumpbed-initrd", metavar="FILE", default=None,
                    help="the initrd of a bzImage --dumpbed-kernel")
    group.addoption("--dumpbed-profile", metavar="NAME", default=None,
                    help="the guest profile of the runs (default dumpbed: dumpbed's own guest and its interface)")
    group.addoption("--dumpbed-out", metavar="DIR", default=None,
                    help="where run directories go, DIR/<test>/<n> (default: the test's tmp_path)")
    group.addoption("--dumpbed-keep", choices=KEEP_CHOICES, default="failed",
                    help="which tests' run directories stay (default failed: a failing test's, named in its "
                         "failure; all; none)")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_BOOT] = _boot_options(config)  # a bad kernel, initrd or profile stops the session here
    if config.getoption("dumpbed_require_kvm", False):
        from dumpbed.machine import accel

        usable, reason = accel.kvm_usable()
        if not usable:
            raise pytest.UsageError(f"dumpbed: --dumpbed-require-kvm: KVM is not usable here: {reason}")
    config.addinivalue_line(
        "markers", "dumpbed(disk=..., crash=..., fault=..., memory=..., **scenario): the defaults of the "
                   "dumpbed_run fixture's scenario (dumpbed.scenario.spec.Scenario's fields)")
    config.addinivalue_line(
        "markers", "dumpbed_matrix(disks=[...], crashes=[...], faults=[...], memory=[...]): parametrise the "
                   "test's dumpbed_scenario (dumpbed_run's defaults) over their product (dumpbed.pytest_plugin.matrix)")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    mark = metafunc.definition.get_closest_marker("dumpbed_matrix")
    if mark is None:
        return
    if "dumpbed_scenario" not in metafunc.fixturenames:
        raise pytest.UsageError(f"{metafunc.definition.nodeid}: dumpbed_matrix parametrises dumpbed_scenario: "
                                "the test must use dumpbed_run, dumpbed_result or dumpbed_scenario")
    metafunc.parametrize("dumpbed_scenario", matrix(*mark.args, **mark.kwargs))


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = (yield).get_result()
    item.stash.setdefault(_REPORTS, {})[report.when] = report.passed
    runs = item.stash.get(_RUNS, None)
    if runs and report.failed and report.when == "call":
        keep = item.config.getoption("dumpbed_keep")
        where = "removed after the test (--dumpbed-keep none)" if keep == "none" else "kept"
        text = "\n".join(f"{d}: verdict={r.verdict} dump={r.dump_status} failing={','.join(r.failed_check_names) or '-'}"
                         if r else f"{d}: no report (the run raised)" for d, r in runs)
        report.sections.append((f"dumpbed runs ({where})", text))


# --- fixtures --------------------------------------------------------------------------------

def _boot_options(config: pytest.Config) -> dict:
    """The scenario arguments of --dumpbed-kernel, --dumpbed-initrd and --dumpbed-profile, checked
    (a UsageError naming the option otherwise)."""
    from dumpbed.errors import DumpbedError
    from dumpbed.guests import boot, profiles

    out: dict = {}
    for option, key in (("dumpbed_kernel", "kernel"), ("dumpbed_initrd", "initrd")):
        value = config.getoption(option, None)
        if value is not None:
            out[key] = Path(value)
    if config.getoption("dumpbed_profile", None):
        out["profile"] = config.getoption("dumpbed_profile")
    try:
        profile = profiles.get(out.get("profile", profiles.DEFAULT))
        if "kernel" in out or "initrd" in out:
            # crash None: the runs' crash kinds are not known yet (each run checks its own)
            boot.check(profile, out.get("kernel"), out.get("initrd"), None, ("--dumpbed-kernel", "--dumpbed-initrd"))
    except DumpbedError as exc:
        raise pytest.UsageError(f"dumpbed: {exc}") from None
    return out


@pytest.fixture(scope="session")
def dumpbed_guest(pytestconfig: pytest.Config) -> Path:
    """The guest kernel the runs boot: the profile's own image, built once for the session (or
    found in the image cache), or the --dumpbed-kernel given (then every run boots that one)."""
    from dumpbed.guests import boot, profiles

    given = pytestconfig.stash[_BOOT]
    profile = profiles.get(given.get("profile", profiles.DEFAULT))
    return boot.prepare(profile, given.get("kernel"), given.get("initrd")).kernel


@pytest.fixture
def dumpbed_scenario() -> dict:
    """Scenario arguments layered over the dumpbed marker's (the dumpbed_matrix marker
    parametrises it; overriding the fixture sets a suite's defaults)."""
    return {}


@pytest.fixture
def dumpbed_run(request: pytest.FixtureRequest, dumpbed_guest, dumpbed_scenario):
    """A factory: dumpbed_run(disk=..., crash=..., faults=[...], memory="64M", **scenario) runs
    one scenario end to end (dumpbed.run.run_and_validate) and returns its DumpbedResult. The
    dumpbed marker's arguments and dumpbed_scenario are the defaults; accel defaults to
    --dumpbed-accel. A run's directory follows --dumpbed-keep."""
    from dumpbed import run as run_mod  # looked up at each call: a test may patch run_and_validate

    config = request.config
    node = request.node
    keep = config.getoption("dumpbed_keep")
    out_root = config.getoption("dumpbed_out")
    if out_root:
        base = Path(out_root).absolute() / _test_dir_name(node.nodeid)
    else:
        base = request.getfixturevalue("tmp_path")
    accel = config.getoption("dumpbed_accel")
    if accel == "auto" and config.getoption("dumpbed_require_kvm"):
        accel = "kvm"  # so a run can never fall back to TCG unseen
    defaults = _merge({"accel": accel, **config.stash[_BOOT]},
                      _marker_defaults(node), dumpbed_scenario)
    runs: list = node.stash.setdefault(_RUNS, [])
    made: list[Path] = []

    def run(**kwargs: Any) -> DumpbedResult:
        __tracebackhide__ = True
        args = scenario_kwargs(**_merge(defaults, kwargs))
        run_dir = base / f"dumpbed-{len(made) + 1}"
        if out_root and run_dir.exists():  # a rerun of the same test under the same --dumpbed-out
            shutil.rmtree(run_dir)
        made.append(run_dir)
        runs.append((run_dir, None))
        # the pictures only for the directories kept, at the end (matplotlib's drawing is most of
        # a small run's validation time, for a directory a passing test removes at once)
        outcome, report = run_mod.run_and_validate(run_mod.Scenario(out_dir=run_dir, pictures=False, **args))
        result = DumpbedResult.from_report(report, run_dir, outcome)
        runs[-1] = (run_dir, result)
        for name, value in (("verdict", result.verdict), ("dump_status", result.dump_status),
                            ("mib_s", result.mib_s), ("accel", result.accel), ("run_dir", str(run_dir))):
            node.user_properties.append((f"dumpbed_{name}", value))
        return result

    yield run
    phases = node.stash.get(_REPORTS, {})
    passed = all(phases.get(when, True) for when in ("setup", "call"))
    if keep == "none" or (keep == "failed" and passed):
        for run_dir in made:
            shutil.rmtree(run_dir, ignore_errors=True)
    else:
        _draw_pictures(runs)
        if out_root:
            try:
                base.rmdir()  # only if nothing else is in it
            except OSError:
                pass


def _draw_pictures(runs: list) -> None:
    """run.html and its pictures for the kept runs that have a report (never an error)."""
    from dumpbed import pictures

    for run_dir, result in runs:
        if result is not None and Path(run_dir).is_dir():
            pictures.write(Path(run_dir), result.report)


@pytest.fixture
def dumpbed_result(dumpbed_run) -> DumpbedResult:
    """The scenario of the dumpbed marker (and dumpbed_scenario), run once."""
    return dumpbed_run()
