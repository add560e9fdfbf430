"""dumpbed's command line. Exit codes: 0 pass, 1 validation failed, 2 usage or environment error."""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import select
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

from dumpbed.errors import DumpbedError, Terminated, describe_os_error
from dumpbed.guest_interface import COMPRESSIONS
from dumpbed.scenario.disks import DEFAULT as DEFAULT_DISK, DISKS

EXIT_PASS, EXIT_FAIL, EXIT_ERROR = 0, 1, 2
EXIT_INTERRUPTED = 130  # Ctrl-C, or a session's q, before a dump was validated


class _Parser(argparse.ArgumentParser):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        # `--memory -5M` is a value to refuse with a reason, not a missing one: a word starting
        # with - and a digit is an argument (argparse itself only lets -5 and -.5 through).
        self._negative_number_matcher = re.compile(r"^-\.?\d")

    def error(self, message: str):  # main() prints it as one line, exit 2, like every other bad input
        raise ArgvError(message)


class ArgvError(DumpbedError):
    """Words the command line's parser refuses (main adds where to look)."""


def _default_out(*words: str) -> Path:
    return Path("runs") / (time.strftime("%Y%m%d-%H%M%S") + "-" + "-".join(words))


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (`dumpbed validate RUN | head -1`)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):
        return False


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that what is still buffered (and Python's flush at exit)
    goes nowhere instead of raising BrokenPipeError again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def _stdout_is_devnull() -> bool:
    try:
        ours, null = os.fstat(sys.stdout.fileno()), os.stat(os.devnull)
    except (OSError, ValueError, AttributeError):
        return False
    return (ours.st_dev, ours.st_ino, ours.st_rdev) == (null.st_dev, null.st_ino, null.st_rdev)


def _output(write) -> None:
    """Write the command's output and flush it; a reader that went away ends it quietly (the
    command then exits with its own status: its verdict, or 0)."""
    try:
        write()
        sys.stdout.flush()
    except BrokenPipeError:
        if not _stdout_closed():
            raise
        _silence_stdout()
    except SystemExit:
        # rich's Console meets a broken pipe the same way, with stdout pointed at /dev/null,
        # but then exits 1 whatever the command's status: keep ours
        if not _stdout_is_devnull():
            raise


def _emit(report: dict, as_json: bool) -> int:
    from dumpbed import report as report_mod

    if as_json:
        _output(lambda: print(json.dumps(report, indent=1)))
    else:
        _output(lambda: report_mod.render(report))
    return EXIT_PASS if report["verdict"] == "pass" else EXIT_FAIL


def cmd_run(args) -> int:
    from dumpbed.run import preflight, run_and_validate

    scenario = _scenario_from_args(args)
    if args.host:
        return _run_on_host(args, scenario)
    if args.hosts:
        raise DumpbedError("--hosts names the hosts file of --host NAME: give --host too")
    out = scenario.out_dir
    preflight(scenario)  # bad options, and a host short of room, are refused before anything is created
    if not args.json:
        print(f"dumpbed: running {args.disk}/{args.crash} with {args.memory} of RAM; artifacts in {out}",
              file=sys.stderr)
    return _verdict_then_pictures(run_and_validate, scenario, args.json)


def _verdict_then_pictures(run, scenario, as_json: bool) -> int:
    """run(scenario) (a run and its validation) with the verdict printed before the pictures are
    drawn: drawing them (matplotlib) takes half a second or more, which the person waiting for
    the verdict of a crash need not."""
    from dumpbed.run import draw_pictures

    _, report = run(dataclasses.replace(scenario, pictures=False))
    status = _emit(report, as_json)
    if scenario.pictures:
        draw_pictures(scenario.out_dir, report)
    return status


# run's options that say where and how to report, not what to run: not passed to a remote host
_NOT_FOR_THE_HOST = {"out", "json", "host", "hosts"}


def _run_on_host(args, scenario) -> int:
    """`run --host NAME`: the scenario's own words, run on the host, judged here."""
    from dumpbed.remote import hosts as hosts_mod, onehost
    from dumpbed.scenario.spec import check_scenario

    if args.kernel or args.initrd:
        raise DumpbedError("--kernel and --initrd name files on this machine: with --host the host boots its own "
                           "guest image (run dumpbed on the host to boot your kernel there)")
    check_scenario(scenario)  # refused here before the host is touched
    words = _words_of(args, _subparser("run"), skip=_NOT_FOR_THE_HOST)
    hosts_file = Path(args.hosts) if args.hosts else hosts_mod.default_hosts_file()
    report = onehost.run_on_host(words, args.host, hosts_file, scenario.out_dir, scenario.memory_bytes)
    return _emit(report, args.json)


def _subparser(name: str) -> argparse.ArgumentParser:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices[name]
    raise KeyError(name)


def _words_of(args, parser: argparse.ArgumentParser, skip: set[str]) -> list[str]:
    """The command-line words that give `args` its values (those not at their defaults), option
    by option: what the user typed, spelled out whole."""
    words: list[str] = []
    for action in parser._actions:
        if action.dest in skip or not action.option_strings:
            continue
        value = getattr(args, action.dest, action.default)
        if value == action.default:
            continue
        flag = action.option_strings[-1]
        if isinstance(action, argparse._StoreTrueAction):
            words.append(flag)
        elif isinstance(action, argparse._AppendAction):
            for item in value:
                words += [flag, str(item)]
        else:
            words += [flag, str(value)]
    return words


def _scenario_from_args(args):
    """The Scenario of the run options (`run`'s, which `session` shares)."""
    from dumpbed.scenario.spec import Scenario, scsi_address_problem
    from dumpbed.units import parse_size

    # Given at all, --target and --lun need a disk on an HBA (the API's 0 means "none given")
    problem = scsi_address_problem(args.disk, args.target, args.lun)
    if problem:
        raise DumpbedError(problem)
    out = Path(args.out) if args.out else _default_out(args.disk, args.crash)
    scenario = Scenario(out_dir=out, disk=args.disk, crash=args.crash,
                        memory_bytes=parse_size(args.memory, "--memory"),
                        ram_below_4g=parse_size(args.ram_below_4g, "--ram-below-4g") if args.ram_below_4g else None,
                        accel=args.accel, firmware=args.firmware, block_size=args.block_size,
                        fill=not args.no_fill, compress=args.compress, target=args.target or 0, lun=args.lun or 0,
                        disk_size=parse_size(args.disk_size, "--disk-size") if args.disk_size else None,
                        other_disks=args.other_disks, workload=args.workload, stop_disk=args.stop_disk,
                        guest_args=_append_words(args), level=args.level, components=args.components,
                        profile=args.profile, kernel=Path(args.kernel) if args.kernel else None,
                        initrd=Path(args.initrd) if args.initrd else None,
                        secondary=args.secondary, faults=args.fault)
    return scenario


def scenario_from_run_words(words: list[str], out: Path):
    """The Scenario `dumpbed run WORDS --out OUT` would run (a matrix cell's: docs/nightly.md);
    a word run refuses is an ArgvError."""
    args = build_parser().parse_args(["run", *words, "--out", str(out)])
    return _scenario_from_args(args)


def _append_words(args) -> list[str]:
    """--append's words (split at white space), then each --guest-arg."""
    words: list[str] = []
    for text in args.append:
        words += text.split()
    return words + args.guest_arg


def cmd_session(args) -> int:
    from dumpbed import progress, session
    from dumpbed.run import preflight

    progress.disable()  # the terminal is the guest's console: no bars drawn over it
    if args.crash != "nmi":
        raise DumpbedError(f"--crash {args.crash}: a session's crash is chosen at the console "
                           "(Ctrl-] n: an NMI, Ctrl-] w: the watchdog's hang), not with --crash")
    session.require_terminal()
    if not args.out:
        args.out = str(_default_out(args.disk, "session"))
    scenario = _scenario_from_args(args)
    preflight(scenario)
    print(f"dumpbed: session on {args.disk} with {args.memory} of RAM; artifacts in {scenario.out_dir}",
          file=sys.stderr)
    try:
        return _verdict_then_pictures(session.run_session, scenario, args.json)
    except session.SessionQuit:
        print(f"dumpbed: session quit before a dump; {scenario.out_dir} marked interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def cmd_validate(args) -> int:
    from dumpbed import report as report_mod
    from dumpbed.oracles import validate
    from dumpbed.run import validate_run_dir

    path = Path(args.path)
    t0 = time.monotonic()
    if path.is_dir():
        report = validate_run_dir(path)
    elif path.is_file():
        validation = validate.validate_image(path).to_dict()
        report = report_mod.build(None, validation, {"validate": time.monotonic() - t0})
    else:
        raise DumpbedError(f"{path}: {_not_a_file(path)}, not a run directory or a dump image")
    return _emit(report, args.json)


def _not_a_file(path: Path) -> str:
    """What a path that is neither a directory nor a regular file is, for a message."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        return "no such file or directory"
    except OSError as exc:
        return describe_os_error(exc)
    kinds = ((stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISFIFO, "a FIFO"),
             (stat.S_ISSOCK, "a socket"))
    return next((name for test, name in kinds if test(mode)), "not a regular file")


def cmd_show(args) -> int:
    from dumpbed.reader import show

    path = Path(args.image)
    if path.is_dir():
        # A run's artifacts directory: its dump disk image, as its layout.json names it
        try:
            path = path / json.loads((path / "layout.json").read_text())["image"]
        except (OSError, ValueError, KeyError, TypeError):
            raise DumpbedError(f"{path}: a directory, not a dump image or a run directory (no readable "
                               "layout.json naming its dump disk)") from None
    if not path.is_file():
        raise DumpbedError(f"{path}: {_not_a_file(path)}, not a dump image")
    _output(lambda: show.show(path, print_it=True, as_json=args.json))
    return EXIT_PASS


def cmd_list(args) -> int:
    from dumpbed.scenario.crash import CRASHES
    from dumpbed.scenario.faults import FAULTS

    if args.what == "crashes":
        from dumpbed.guests import profiles

        width = max(len(name) for name in CRASHES) + 2
        for crash in CRASHES.values():  # and the guest profiles it applies to
            where = ", ".join(p.name for p in profiles.PROFILES.values() if p.crash_applies(crash.name))
            print(f"{crash.name:{width}}{crash.description} [{where}]")
    elif args.what == "faults":
        width = max(len(name) for name in FAULTS) + 2
        for name, description in FAULTS.items():
            print(f"{name:{width}}{description}")
    elif args.what == "profiles":
        from dumpbed.guests import profiles

        for profile in profiles.PROFILES.values():
            print(f"{profile.name:12} {profile.summary} ({profile.interface}; image {profile.recipe})")
    elif args.what == "images":
        from dumpbed.guests import profiles, recipes

        for name in recipes.names():
            recipe = recipes.load(name)
            image = recipes.cached(recipe)
            state = f"built: {image.kernel}" if image else "not built (dumpbed build-image builds it)"
            speakers = [p.name for p in profiles.PROFILES.values() if p.recipe == name]  # the profile names its recipe
            print(f"{name:16} {recipe.summary}\n{'':16} profile {', '.join(speakers) or '-'}; {state}")
    elif args.what == "components":
        from dumpbed.oracles import samples

        default = set(samples.resolve_components("default"))
        for name in samples.SAMPLE_NAMES:
            print(f"{name:16} {'default' if name in default else 'all only'}")
    else:
        for name, kind in DISKS.items():
            print(f"{name:12} {kind.description}")
    return EXIT_PASS


def cmd_build_image(args) -> int:
    from dumpbed.guests import recipes

    for name in args.names or recipes.names():
        recipe = recipes.load(name)
        image = recipes.build(recipe, force=args.force)
        how = f"built in {image.seconds:.1f} s" if image.built else "cached"
        print(f"{name}: {how}: {image.kernel}")
    return EXIT_PASS


def cmd_bench(args) -> int:
    from dumpbed import bench
    from dumpbed.units import parse_size

    out = Path(args.out) if args.out else _default_out("bench")
    disks = tuple(args.disks.split(",")) if args.disks else bench.BENCH_DISKS
    for disk in disks:
        if disk not in DISKS:
            raise DumpbedError(f"unknown disk type {disk!r} (available: {', '.join(DISKS)})")
    if args.repeat < 1:
        raise DumpbedError(f"--repeat {args.repeat}: at least 1")
    result = bench.run_bench(out, memory_bytes=parse_size(args.memory, "--memory"), accel=args.accel,
                             keep=args.keep, disks=disks, repeat=args.repeat, compress=args.compress)
    if args.json:
        _output(lambda: print(json.dumps(result, indent=1)))
    else:
        _output(lambda: bench.render(result, profile=args.profile))
    return EXIT_PASS if result["verdict"] == "pass" else EXIT_FAIL


def cmd_matrix(args) -> int:
    from dumpbed.matrix import engine

    out = Path(args.out) if args.out else _default_out("matrix")
    return engine.run_matrix(Path(args.file), out, hosts_file=Path(args.hosts) if args.hosts else None,
                             shard=args.shard, jobs=args.jobs, require_kvm=args.require_kvm,
                             wheel=Path(args.wheel) if args.wheel else None,
                             history=Path(args.history) if args.history else None, label=args.label)


def cmd_matrix_report(args) -> int:
    from dumpbed.nightly import report_cmd

    return report_cmd.matrix_report(Path(args.out), [Path(d) for d in args.shards],
                                    Path(args.history) if args.history else None, args.label)


def cmd_export(args) -> int:
    from dumpbed.reader import elfcore

    result = elfcore.export(Path(args.path), Path(args.elf), force=args.force)
    if result.status != "complete":
        print(f"dumpbed: {args.path}: the dump is {result.status}: exported {len(result.areas)} usable areas of "
              f"{len(result.areas) + len(result.left_out)} (registers from the {result.registers_from})",
              file=sys.stderr)
    if result.symbols is not None:
        print(f"dumpbed: open it with: gdb {result.symbols} {args.elf}", file=sys.stderr)
    return EXIT_PASS


def cmd_netdumpd(args) -> int:
    from dumpbed.net import server as netserver
    from dumpbed.units import format_size, parse_size

    # Every option is checked, the image's GPT read and the port bound before a file is written
    listen = netserver.parse_listen(args.listen) if args.listen_fd is None else None
    if args.image and args.size:
        raise DumpbedError("--size goes with --dir (an --image's dump partition has the size its GPT gives)")
    if args.dir and args.dump_id:
        raise DumpbedError("--dump-id goes with --image (with --dir, every dump gets its own image)")
    if args.max_dumps is not None and args.max_dumps < 1:
        raise DumpbedError(f"--max-dumps {args.max_dumps}: must be at least 1")
    if args.image:
        dump_id = netserver.parse_dump_id(args.dump_id) if args.dump_id else None
        images = netserver.OneImage(args.image, dump_id)
        where = f"image {args.image} (dump partition {format_size(images.part_bytes)}, {images.block_size}-byte blocks)"
    else:
        images = netserver.ImageDir(args.dir, parse_size(args.size or netserver.DEFAULT_DIR_SIZE, "--size"))
        where = f"new images in {args.dir} (dump partitions of {format_size(images.size)})"
    if args.log and (Path(args.log).is_dir() or not Path(args.log).parent.is_dir()):
        raise DumpbedError(f"--log {args.log}: not a file in an existing directory")

    def notify(what: str, dump) -> None:
        if what == "started":
            line = (f"{dump.describe()} started: {dump.target.path} (max_data {dump.max_data}, "
                    f"window {dump.window})")
        else:
            line = (f"{dump.describe()} {what}: {dump.writes} writes, {format_size(dump.bytes)}, "
                    f"{dump.flushes} flushes, {dump.duplicates} duplicates")
        _output(lambda: print(line, flush=True))

    server = netserver.NetdumpServer(images, events=args.log, max_dumps=args.max_dumps, notify=notify)
    sock = netserver.bind(*listen) if listen else netserver.adopt(args.listen_fd)
    print(f"dumpbed: netdumpd listening on {netserver.client_text(sock.getsockname())}: {where}; "
          f"events in {server.events_path}", file=sys.stderr, flush=True)
    why = netserver.serve(server, sock)
    counts = server.counts
    print(f"dumpbed: netdumpd stopped ({why}): {server.started} dumps started, {server.finished} finished, "
          f"{counts['malformed']} malformed datagrams dropped, {counts['ignored']} messages ignored",
          file=sys.stderr)
    return EXIT_PASS


def build_parser() -> argparse.ArgumentParser:
    from dumpbed.provenance import VersionAction
    from dumpbed.scenario.crash import CRASHES
    from dumpbed.guests import profiles

    parser = _Parser(prog="dumpbed", description="QEMU testbed for polled crash-dump drivers")
    parser.add_argument("--version", action=VersionAction,
                        help="print dumpbed's version (and its git commit when run from a checkout) and exit")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser, metavar="COMMAND",
                                help="run, session, validate, show, export, list, build-image, bench, matrix, matrix-report or netdumpd "
                                     "(dumpbed COMMAND --help)")

    run = sub.add_parser("run", help="boot a guest, crash it, let it dump, validate the dump")
    run.add_argument("--disk", default=DEFAULT_DISK, choices=list(DISKS), metavar="DISK",
                     help="dump disk type: %(choices)s (default %(default)s; dumpbed list disks)")
    run.add_argument("--crash", default="nmi", metavar="KIND",
                     help=f"how the guest crashes: {', '.join(CRASHES)} (default %(default)s; dumpbed list crashes)")
    run.add_argument("--memory", default="256M", metavar="SIZE",
                     help=f"guest RAM in whole MiB, at least {profiles.DUMPBED_MIN_MEMORY >> 20}M for dumpbed's "
                          "guest, e.g. 64M, 1G (default 256M)")
    run.add_argument("--ram-below-4g", metavar="SIZE",
                     help="RAM below 4 GiB (QEMU's max-ram-below-4g); the rest of --memory lies above "
                          "4 GiB, e.g. --memory 96M --ram-below-4g 64M")
    run.add_argument("--accel", default="auto", choices=["auto", "kvm", "tcg"],
                     help="accelerator: %(choices)s (default %(default)s: KVM when /dev/kvm works, else TCG)")
    run.add_argument("--firmware", default="qboot", choices=["qboot", "seabios"],
                     help="the guest's firmware ROM: %(choices)s (default %(default)s)")
    run.add_argument("--block-size", type=int, default=512, choices=[512, 4096],
                     help="the dump disk's logical block size in bytes: %(choices)s (default %(default)s)")
    run.add_argument("--disk-size", metavar="SIZE",
                     help="dump disk size (default: just enough); the data partition takes the rest")
    run.add_argument("--target", type=int, metavar="T",
                     help="SCSI target of the dump disk (default 0); only for a disk on an HBA")
    run.add_argument("--lun", type=int, metavar="L",
                     help="SCSI LUN of the dump disk (default 0); only for a disk on an HBA")
    run.add_argument("--other-disks", type=int, default=0, metavar="N",
                     help="N more disks on the same controller; the dump must not touch them")
    run.add_argument("--workload", action="store_true", help="keep runtime I/O in flight when the crash lands")
    run.add_argument("--stop-disk", action="store_true",
                     help="stop the dump disk (START STOP UNIT) before the crash; the dump must start it")
    run.add_argument("--no-fill", action="store_true", help="leave free RAM unpatterned (mostly zeros)")
    run.add_argument("--compress", default="off", choices=list(COMPRESSIONS),
                     help="compress the dump's body in the guest: %(choices)s (default %(default)s; "
                          "docs/dump-format.md, Compressed bodies)")
    run.add_argument("--level", type=int, default=3, metavar="0..9",
                     help="dump detail level of the RAS components (default 3, CD_LVL_NORMAL)")
    run.add_argument("--components", default="default", metavar="LIST",
                     help="enabled sample components: default, all, none or a comma list "
                          "(dumpbed list components)")
    run.add_argument("--secondary", choices=list(DISKS), metavar="DISK",
                     help="a secondary dump device of this disk type (%(choices)s): the dump restarts there if "
                          "the primary fails")
    run.add_argument("--fault", action="append", default=[], metavar="SPEC",
                     help="a fault during the dump (dumpbed list faults), e.g. eio-at=40")
    run.add_argument("--profile", default=profiles.DEFAULT, choices=list(profiles.PROFILES), metavar="NAME",
                     help="the guest profile: the interface the guest speaks, how it is judged "
                          "(%(choices)s; default %(default)s; dumpbed list profiles)")
    run.add_argument("--kernel", metavar="FILE",
                     help="boot this kernel (a multiboot ELF, or a Linux bzImage) instead of the profile's own "
                          "image; it must speak the profile's interface (docs/guest-profiles.md)")
    run.add_argument("--initrd", metavar="FILE", help="the initrd of a bzImage --kernel")
    run.add_argument("--append", action="append", default=[], metavar="TEXT",
                     help="words added to the guest kernel's command line after dumpbed's (repeatable), "
                          "e.g. --append 'testfault=irq-on pinpool=4M'")
    run.add_argument("--guest-arg", action="append", default=[], metavar="KEY=VALUE",
                     help="one word added to the guest kernel's command line (repeatable; as --append)")
    run.add_argument("--out", metavar="DIR", help="artifacts directory (default runs/DATE-TIME-DISK-CRASH)")
    run.add_argument("--json", action="store_true",
                     help="print report.json (docs/report.schema.json) instead of the tables")
    run.set_defaults(func=cmd_run)

    session = sub.add_parser("session", parents=[run], add_help=False,
                             help="boot as run does, hand the guest's console to you, crash it on a hot-key "
                                  "(docs/session.md)",
                             description="Prepare and boot as `dumpbed run` does, wait for READY, then hand the "
                                         "guest's console to this terminal. Hot-keys after Ctrl-]: n NMI crash, "
                                         "w watchdog hang, p pause/continue, r registers, s memory snapshot, "
                                         "q quit, ? help. Exit codes as run's; 130 after q or Ctrl-C.")
    session.set_defaults(func=cmd_session)
    # After the session's copy of run's options: a session's console is this machine's guest.
    run.add_argument("--host", metavar="NAME",
                     help="run on this remote KVM host over SSH and judge the copied run here (docs/nightly.md)")
    run.add_argument("--hosts", metavar="FILE",
                     help="the hosts file of --host (default $DUMPBED_HOSTS, else ~/.config/dumpbed/hosts.toml)")

    val = sub.add_parser("validate", help="re-run every check on a run directory, or check a bare image")
    val.add_argument("path", metavar="DIR|IMAGE", help="a run's artifacts directory, or a dump disk image")
    val.add_argument("--json", action="store_true",
                     help="print the report as JSON (docs/report.schema.json) instead of the tables")
    val.set_defaults(func=cmd_validate)

    show = sub.add_parser("show", help="print a dump's header, components and areas")
    show.add_argument("image", metavar="IMAGE", help="a dump disk image (its dump partition found through its GPT)")
    show.add_argument("--json", action="store_true",
                      help="print what the reader found as JSON (the dump as report.json holds it, the header, "
                           "every call record) instead of the tables")
    show.set_defaults(func=cmd_show)

    lst = sub.add_parser("list", help="list crash kinds, faults, sample components, disk types, guest profiles or "
                                      "images")
    lst.add_argument("what", choices=["crashes", "faults", "components", "disks", "profiles", "images"],
                     help="what to list: %(choices)s")
    lst.set_defaults(func=cmd_list)

    image = sub.add_parser("build-image", help="build guest images from their images/ recipes into the cache "
                                               "(only when an input changed; docs/guest-profiles.md)")
    image.add_argument("names", nargs="*", metavar="NAME", help="the recipes to build (default: all; dumpbed list images)")
    image.add_argument("--force", action="store_true", help="build even when the cache has the image")
    image.set_defaults(func=cmd_build_image)

    bench = sub.add_parser("bench", help="dump throughput against the host's own write and dump speeds")
    bench.add_argument("--memory", default="1G", metavar="SIZE", help="guest RAM to dump (default %(default)s)")
    bench.add_argument("--accel", default="auto", choices=["auto", "kvm", "tcg"],
                       help="accelerator: %(choices)s (default %(default)s: KVM when /dev/kvm works, else TCG)")
    bench.add_argument("--out", metavar="DIR", help="artifacts directory (default runs/DATE-TIME-bench)")
    bench.add_argument("--keep", action="store_true", help="keep the multi-GiB images afterwards")
    bench.add_argument("--disks", metavar="LIST",
                       help=f"comma-separated disk types (default: every kind, {','.join(DISKS)})")
    bench.add_argument("--json", action="store_true", help="print the result as JSON instead of the table")
    bench.add_argument("--repeat", type=int, default=1, metavar="N",
                       help="run every disk N times, the host's references with each: each figure's minimum, "
                            "median and maximum (default 1)")
    bench.add_argument("--compress", default="lz4", choices=list(COMPRESSIONS),
                       help="with lz4 (the default), the first disk kind is benched again on unfilled and filled "
                            "RAM, uncompressed and compressed: what compression gains; off: no such rows")
    bench.add_argument("--profile", action="store_true",
                       help="also print where each dump's time went in the guest (its PROFILE line: writes, "
                            "flushes, CRC, copies, ring 3 trips; docs/benchmarks.md)")
    bench.set_defaults(func=cmd_bench)

    mtx = sub.add_parser("matrix", help="run a matrix file's cells here or on KVM hosts over SSH, judged here, "
                                        "with JUnit, HTML and history (docs/nightly.md)")
    mtx.add_argument("file", metavar="FILE", help="the matrix file (TOML: groups of disk x crash x fault x memory x accel)")
    mtx.add_argument("--hosts", metavar="FILE", help="run the cells on these hosts over SSH (TOML; default: this machine)")
    mtx.add_argument("--shard", metavar="I/N", help="run only shard I of N (the cells at positions I-1 modulo N)")
    mtx.add_argument("--jobs", type=int, default=1, metavar="N",
                     help="without --hosts: cells run at once on this machine (default %(default)s)")
    mtx.add_argument("--require-kvm", action="store_true",
                     help="a host (or this machine) without working KVM is an error, and 'auto' cells run under KVM")
    mtx.add_argument("--wheel", metavar="FILE", help="the dumpbed wheel the hosts install (default: built from this checkout)")
    mtx.add_argument("--history", metavar="DB", help="keep the results in this SQLite file and flag regressions")
    mtx.add_argument("--label", metavar="TEXT", help="a name for this night in the history (e.g. the CI run's)")
    mtx.add_argument("--out", metavar="DIR", help="results directory (default runs/DATE-TIME-matrix)")
    mtx.set_defaults(func=cmd_matrix)

    mrep = sub.add_parser("matrix-report", help="merge matrix shards' results into one report, with history "
                                                "(docs/nightly.md)")
    mrep.add_argument("shards", nargs="+", metavar="SHARD_DIR", help="the shards' --out directories (or results.json files)")
    mrep.add_argument("--out", required=True, metavar="DIR", help="where the merged results, JUnit and report go")
    mrep.add_argument("--history", metavar="DB", help="keep the results in this SQLite file and flag regressions")
    mrep.add_argument("--label", metavar="TEXT", help="a name for this night in the history")
    mrep.set_defaults(func=cmd_matrix_report)

    export = sub.add_parser("export", help="write a dump as an ELF64 core file gdb opens (docs/export.md)")
    export.add_argument("path", metavar="RUN|IMAGE", help="a run's artifacts directory, or a dump disk image")
    export.add_argument("--elf", required=True, metavar="FILE", help="the ELF core file to write")
    export.add_argument("--force", action="store_true", help="overwrite FILE if it exists")
    export.set_defaults(func=cmd_export)

    ndd = sub.add_parser("netdumpd", help="the network dump server: writes the dumps guests send over UDP into "
                                          "dump disk images (docs/netdumpd.md)")
    listen = ndd.add_mutually_exclusive_group()
    listen.add_argument("--listen", default="0.0.0.0:20023", metavar="HOST:PORT",
                        help="the UDP address to listen on (default %(default)s; port 0: any free one)")
    listen.add_argument("--listen-fd", type=int, metavar="N",
                        help="listen on file descriptor N: a UDP socket a parent process bound (the harness's)")
    where = ndd.add_mutually_exclusive_group(required=True)
    where.add_argument("--image", metavar="PATH",
                       help="write the dump into this dump disk image's GPT dump partition (the harness's)")
    where.add_argument("--dir", metavar="DIR",
                       help="give each new dump its own image DIR/CLIENTIP-DUMPID.img, created sparse")
    ndd.add_argument("--dump-id", metavar="HEX",
                     help="with --image: take only the dump with this id (32 hex digits, the guest's dumpid=)")
    ndd.add_argument("--size", metavar="SIZE",
                     help="with --dir: the dump partition of each new image (default 4G), e.g. 512M")
    ndd.add_argument("--log", metavar="FILE",
                     help="the event log, one JSON object a line (default netdumpd.jsonl beside the images)")
    ndd.add_argument("--max-dumps", type=int, metavar="N",
                     help="take at most N dumps, and exit once they have finished (default: no limit)")
    ndd.set_defaults(func=cmd_netdumpd)
    return parser


def _on_terminate(signum, frame):
    # A second signal must not interrupt the cleanup the first one started.
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    raise Terminated(signum)


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except ArgvError as exc:
        print(f"dumpbed: error: {exc} (see dumpbed --help)", file=sys.stderr)
        return EXIT_ERROR
    previous = {sig: signal.signal(sig, _on_terminate) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        status = args.func(args)
        _output(lambda: None)  # what list and show left buffered
        return status
    except DumpbedError as exc:
        print(f"dumpbed: error: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except BrokenPipeError as exc:
        if not _stdout_closed():  # a pipe of ours to QEMU, not the reader of our output
            print(f"dumpbed: error: {describe_os_error(exc)}", file=sys.stderr)
            return EXIT_ERROR
        _silence_stdout()  # list, show: their output was all they had to do
        return EXIT_PASS
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
    except Terminated as exc:
        print(f"dumpbed: terminated by {signal.Signals(exc.signum).name}", file=sys.stderr)
        return 128 + exc.signum
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
