"""dumpbed's command line. Exit codes: 0 pass, 1 validation failed, 2 usage or environment error."""
from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from dumpbed.errors import DumpbedError, describe_os_error
from dumpbed.scenario.disks import DEFAULT as DEFAULT_DISK, DISKS

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2, like every other bad input
        self.exit(EXIT_ERROR, f"dumpbed: error: {message} (see dumpbed --help)\n")


def _default_out(*words: str) -> Path:
    return Path("runs") / (time.strftime("%Y%m%d-%H%M%S") + "-" + "-".join(words))


def _emit(report: dict, as_json: bool) -> int:
    from dumpbed import report as report_mod

    if as_json:
        print(json.dumps(report, indent=1))
    else:
        report_mod.render(report)
    return EXIT_PASS if report["verdict"] == "pass" else EXIT_FAIL


def cmd_run(args) -> int:
    from dumpbed.machine.memory import parse_size
    from dumpbed.run import run_and_validate
    from dumpbed.scenario.spec import Scenario, check_scenario

    out = Path(args.out) if args.out else _default_out(args.disk, args.crash)
    scenario = Scenario(out_dir=out, disk=args.disk, crash=args.crash, memory_bytes=parse_size(args.memory),
                        ram_below_4g=parse_size(args.ram_below_4g) if args.ram_below_4g else None,
                        accel=args.accel, firmware=args.firmware, block_size=args.block_size,
                        fill=not args.no_fill, target=args.target, lun=args.lun,
                        disk_size=parse_size(args.disk_size) if args.disk_size else None,
                        other_disks=args.other_disks, workload=args.workload, stop_disk=args.stop_disk,
                        guest_args=args.guest_arg, level=args.level, components=args.components,
                        secondary=args.secondary, faults=args.fault)
    check_scenario(scenario)  # bad options are refused before anything is created
    if not args.json:
        print(f"dumpbed: running {args.disk}/{args.crash} with {args.memory} of RAM; artifacts in {out}",
              file=sys.stderr)
    _, report = run_and_validate(scenario)
    return _emit(report, args.json)


def cmd_validate(args) -> int:
    from dumpbed import report as report_mod
    from dumpbed.oracles import validate

    path = Path(args.path)
    t0 = time.monotonic()
    if path.is_dir():
        validation = validate.validate_run(path).to_dict()
        scenario = json.loads((path / "scenario.json").read_text())
        report = report_mod.build(path, validation, {"validate": time.monotonic() - t0}, scenario=scenario)
    elif path.is_file():
        validation = validate.validate_image(path).to_dict()
        report = report_mod.build(None, validation, {"validate": time.monotonic() - t0})
    else:
        raise DumpbedError(f"{path}: no such run directory or image")
    return _emit(report, args.json)


def cmd_show(args) -> int:
    from dumpbed.reader import show

    path = Path(args.image)
    if not path.is_file():
        raise DumpbedError(f"{path}: no such image")
    show.show(path, print_it=True)
    return EXIT_PASS


def cmd_list(args) -> int:
    from dumpbed.scenario.crash import CRASHES
    from dumpbed.scenario.faults import FAULTS

    if args.what == "crashes":
        width = max(len(name) for name in CRASHES) + 2
        for crash in CRASHES.values():
            print(f"{crash.name:{width}}{crash.description}")
    elif args.what == "faults":
        width = max(len(name) for name in FAULTS) + 2
        for name, description in FAULTS.items():
            print(f"{name:{width}}{description}")
    elif args.what == "components":
        from dumpbed.oracles import samples

        default = set(samples.resolve_components("default"))
        for name in samples.SAMPLE_NAMES:
            print(f"{name:16} {'default' if name in default else 'all only'}")
    else:
        for name, kind in DISKS.items():
            print(f"{name:12} {kind.description}")
    return EXIT_PASS


def cmd_bench(args) -> int:
    from dumpbed import bench
    from dumpbed.machine.memory import parse_size

    out = Path(args.out) if args.out else _default_out("bench")
    disks = tuple(args.disks.split(",")) if args.disks else bench.BENCH_DISKS
    for disk in disks:
        if disk not in DISKS:
            raise DumpbedError(f"unknown disk type {disk!r} (available: {', '.join(DISKS)})")
    result = bench.run_bench(out, memory_bytes=parse_size(args.memory), accel=args.accel, keep=args.keep,
                             disks=disks)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        bench.render(result)
    return EXIT_PASS if result["verdict"] == "pass" else EXIT_FAIL


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dumpbed", description="QEMU testbed for polled crash-dump drivers")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="boot a guest, crash it, let it dump, validate the dump")
    run.add_argument("--disk", default=DEFAULT_DISK, choices=list(DISKS))
    run.add_argument("--crash", default="nmi")
    run.add_argument("--memory", default="256M", help="guest RAM, e.g. 64M, 1G (default 256M)")
    run.add_argument("--ram-below-4g", metavar="SIZE",
                     help="RAM below 4 GiB (QEMU's max-ram-below-4g); the rest of --memory lies above "
                          "4 GiB, e.g. --memory 96M --ram-below-4g 64M")
    run.add_argument("--accel", default="auto", choices=["auto", "kvm", "tcg"])
    run.add_argument("--firmware", default="qboot", choices=["qboot", "seabios"])
    run.add_argument("--block-size", type=int, default=512, choices=[512, 4096])
    run.add_argument("--disk-size", help="dump disk size (default: just enough); the data partition takes the rest")
    run.add_argument("--target", type=int, default=0, help="SCSI target of the dump disk (default 0)")
    run.add_argument("--lun", type=int, default=0, help="SCSI LUN of the dump disk (default 0)")
    run.add_argument("--other-disks", type=int, default=0, metavar="N",
                     help="N more disks on the same controller; the dump must not touch them")
    run.add_argument("--workload", action="store_true", help="keep runtime I/O in flight when the crash lands")
    run.add_argument("--stop-disk", action="store_true",
                     help="stop the dump disk (START STOP UNIT) before the crash; the dump must start it")
    run.add_argument("--no-fill", action="store_true", help="leave free RAM unpatterned (mostly zeros)")
    run.add_argument("--level", type=int, default=3, metavar="0..9",
                     help="dump detail level of the RAS components (default 3, CD_LVL_NORMAL)")
    run.add_argument("--components", default="default", metavar="LIST",
                     help="enabled sample components: default, all, none or a comma list "
                          "(dumpbed list components)")
    run.add_argument("--secondary", choices=list(DISKS), metavar="DISK",
                     help="a secondary dump device of this disk type: the dump restarts there if the primary fails")
    run.add_argument("--fault", action="append", default=[], metavar="SPEC",
                     help="a fault during the dump (dumpbed list faults), e.g. eio-at=40")
    run.add_argument("--guest-arg", action="append", default=[], metavar="KEY=VALUE",
                     help="an extra guest kernel command-line word (repeatable), e.g. testfault=irq-on")
    run.add_argument("--out", help="artifacts directory (default runs/DATE-TIME-DISK-CRASH)")
    run.add_argument("--json", action="store_true", help="print report.json instead of the table")
    run.set_defaults(func=cmd_run)

    val = sub.add_parser("validate", help="re-run every check on a run directory, or check a bare image")
    val.add_argument("path", help="a run's artifacts directory, or a dump disk image")
    val.add_argument("--json", action="store_true")
    val.set_defaults(func=cmd_validate)

    show = sub.add_parser("show", help="print a dump's header, components and areas")
    show.add_argument("image")
    show.set_defaults(func=cmd_show)

    lst = sub.add_parser("list", help="list crash kinds, faults, sample components or disk types")
    lst.add_argument("what", choices=["crashes", "faults", "components", "disks"])
    lst.set_defaults(func=cmd_list)

    bench = sub.add_parser("bench", help="dump throughput against the host's own write and dump speeds")
    bench.add_argument("--memory", default="1G")
    bench.add_argument("--accel", default="auto", choices=["auto", "kvm", "tcg"])
    bench.add_argument("--out", help="artifacts directory (default runs/DATE-TIME-bench)")
    bench.add_argument("--keep", action="store_true", help="keep the multi-GiB images afterwards")
    bench.add_argument("--disks", help=f"comma-separated disk types (default: every kind, {','.join(DISKS)})")
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(func=cmd_bench)
    return parser


class _Terminated(BaseException):
    """SIGTERM or SIGHUP: unwind like Ctrl-C, so every finally (QEMU shutdown) runs."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _on_terminate(signum, frame):
    # A second signal must not interrupt the cleanup the first one started.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    raise _Terminated(signum)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    previous = {sig: signal.signal(sig, _on_terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        return args.func(args)
    except DumpbedError as exc:
        print(f"dumpbed: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except OSError as exc:  # full disk, permissions, a vanished file: environment, not a bug
        print(f"dumpbed: error: {describe_os_error(exc)}", file=sys.stderr)
        return EXIT_ERROR
    except subprocess.TimeoutExpired as exc:
        cmd = exc.cmd[0] if isinstance(exc.cmd, (list, tuple)) else exc.cmd
        print(f"dumpbed: error: timed out after {exc.timeout:g}s waiting for {cmd}", file=sys.stderr)
        return EXIT_ERROR
    except json.JSONDecodeError as exc:
        print(f"dumpbed: error: malformed JSON in an artifact: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("dumpbed: interrupted", file=sys.stderr)
        return 130
    except _Terminated as exc:
        print(f"dumpbed: terminated by {signal.Signals(exc.signum).name}", file=sys.stderr)
        return 128 + exc.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
