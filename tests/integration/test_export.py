"""`dumpbed export --elf` on a real run: gdb opens the core with the guest's ELF and finds the
crash's registers, the kernel's variables and its memory; every PT_LOAD of an area that is not
VOLATILE equals QEMU's RAM of the stopped guest (the run's snapshot/, taken at the crash)."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from elftools.elf.elffile import ELFFile

from dumpbed.cli import main
from dumpbed.oracles.content import Snapshot
from dumpbed.reader import dumpfmt
from dumpbed.run import Scenario, run_and_validate

MIB = 1 << 20
# gdb's names of the crash record's registers (rflags is eflags to gdb)
GDB_REGS = {"rax": "rax", "rbx": "rbx", "rcx": "rcx", "rdx": "rdx", "rsi": "rsi", "rdi": "rdi", "rbp": "rbp",
            "rsp": "rsp", "r8": "r8", "r9": "r9", "r10": "r10", "r11": "r11", "r12": "r12", "r13": "r13",
            "r14": "r14", "r15": "r15", "rip": "rip", "eflags": "rflags", "cs": "cs", "ss": "ss", "ds": "ds",
            "es": "es", "fs": "fs", "gs": "gs", "fs_base": "fs_base", "gs_base": "gs_base"}

pytestmark = pytest.mark.skipif(shutil.which("gdb") is None, reason="gdb is not installed (make host-deps)")


@pytest.fixture(scope="module")
def exported(tmp_path_factory, guest_kernel):
    """A 32 MiB guest crashed by NMI, its dump exported: (run dir, core path, dump)."""
    out = tmp_path_factory.mktemp("export")
    _, report = run_and_validate(Scenario(out_dir=out / "run", memory_bytes=32 * MIB, accel="auto"))
    assert report["verdict"] == "pass" and report["dump"]["status"] == "complete", report["problem"]
    core = out / "core.elf"
    assert main(["export", str(out / "run"), "--elf", str(core)]) == 0
    return out / "run", core, dumpfmt.read_image(out / "run" / "dump.img")


def symbols(run: Path) -> Path:
    """The symbol file of the kernel the run booted (scenario.json's guest.symbols)."""
    return Path(json.loads((run / "scenario.json").read_text())["guest"]["symbols"])


def gdb(run: Path, core: Path, *commands: str) -> str:
    argv = ["gdb", "-batch", "-nx"]
    for c in commands:
        argv += ["-ex", c]
    done = subprocess.run(argv + [str(symbols(run)), str(core)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


def core_mismatches(core: Path, dump: dumpfmt.Dump, snapshot_dir: Path) -> tuple[int, list[str]]:
    """Compare every PT_LOAD of an area that is not VOLATILE with the snapshot's RAM at its
    address: (bytes compared, the places that differ)."""
    keep = [a for a in dump.areas if not a.volatile]
    compared, problems = 0, []
    with open(core, "rb") as f, Snapshot.load(snapshot_dir) as snapshot:
        segments = [s for s in ELFFile(f).iter_segments() if s["p_type"] == "PT_LOAD"]
        by_place = {(s["p_paddr"], s["p_filesz"]): s for s in segments}
        assert len(segments) == len(dump.areas)
        for a in keep:
            seg = by_place.get((a.phys_addr, a.length))
            if seg is None:
                problems.append(f"area {a.name}: no PT_LOAD at 0x{a.phys_addr:x}")
                continue
            assert seg["p_vaddr"] == a.phys_addr
            data = seg.data()
            for phys, n, region in snapshot.pieces(a.phys_addr, a.length):
                if region is None:
                    continue  # outside guest RAM (a ROM, a hole): QEMU's RAM has nothing to say
                got, want = data[phys - a.phys_addr:phys - a.phys_addr + n], snapshot.read(region, phys, n)
                compared += n
                if got != want:
                    at = next(i for i in range(n) if got[i] != want[i])
                    problems.append(f"area {a.name}: core byte at 0x{phys + at:x} is 0x{got[at]:02x}, "
                                    f"RAM at the crash 0x{want[at]:02x}")
    return compared, problems


def test_gdb_registers_equal_the_crash(exported):
    run, core, dump = exported
    truth = json.loads((run / "snapshot" / "registers.json").read_text())
    text = gdb(run, core, "info registers " + " ".join(GDB_REGS), "info registers mxcsr")
    got = {m[1]: int(m[2], 16) for m in re.finditer(r"^(\w+)\s+(0x[0-9a-f]+)", text, re.M)}
    record = dump.crash_record.register_dict()
    for gdb_name, name in GDB_REGS.items():
        assert got.get(gdb_name) == record[name] == truth[name], (gdb_name, text)
    fpu = json.loads((run / "snapshot" / "fpu.json").read_text())
    assert got["mxcsr"] == fpu["mxcsr"]


def test_gdb_reads_kernel_variables_and_memory(exported):
    run, core, dump = exported
    nm = subprocess.run(["nm", str(symbols(run))], capture_output=True, text=True, check=True).stdout
    address = int(next(line.split()[0] for line in nm.splitlines() if line.endswith(" boot_config")), 16)
    text = gdb(run, core, "print crash_dump_armed", "print boot_config.iotimeout_ms", f"x/16xb 0x{address:x}")
    assert re.search(r"^\$1 = true$", text, re.M), text
    assert re.search(r"^\$2 = 10000$", text, re.M), text
    shown = bytes(int(b, 16) for b in re.findall(r"\b0x([0-9a-f]{2})\b", text.split(f"0x{address:x}", 1)[1]))
    with Snapshot.load(run / "snapshot") as snapshot:
        (_, _, region), = snapshot.pieces(address, 16)
        assert shown == snapshot.read(region, address, 16)


def test_core_memory_equals_ram_at_the_crash(exported):
    run, core, dump = exported
    compared, problems = core_mismatches(core, dump, run / "snapshot")
    assert problems == []
    # most of RAM is not volatile (the dump path's own state is: 4.5 MiB of a 32 MiB guest, its
    # 2 MiB compression buffer among it)
    assert compared >= 0.8 * dump.header.ram_bytes


def test_a_doctored_core_fails_the_comparison(exported, tmp_path):
    run, core, dump = exported
    doctored = tmp_path / "doctored.elf"
    shutil.copyfile(core, doctored)
    area = next(a for a in dump.areas if dump.components[a.component].kind == dumpfmt.ComponentKind.RAM
                and not a.volatile and a.length > 8192)
    with open(doctored, "r+b") as f:
        seg = next(s for s in ELFFile(f).iter_segments()
                   if s["p_type"] == "PT_LOAD" and s["p_paddr"] == area.phys_addr and s["p_filesz"] == area.length)
        at = seg["p_offset"] + 4096 + 7
        f.seek(at)
        byte = f.read(1)[0]
        f.seek(at)
        f.write(bytes([byte ^ 0x01]))
    _, problems = core_mismatches(doctored, dump, run / "snapshot")
    assert problems == [f"area {area.name}: core byte at 0x{area.phys_addr + 4096 + 7:x} is "
                        f"0x{byte ^ 1:02x}, RAM at the crash 0x{byte:02x}"]


def test_partial_dump_exports_its_usable_areas(dumpbed_run, tmp_path, capsys):
    """A dump cut short by EIO: the sealed, verified areas only, one line on stderr, exit 0;
    gdb still finds the crash's registers and the areas still equal RAM at the crash."""
    # A 32 MiB dump takes about 145 writes; the 100th is in the kernel image's areas.
    result = dumpbed_run(memory="32M", faults=["eio-at=100"])
    assert result.dump_status == "partial", result.report["dump"]["reason"]
    run = result.run_dir
    capsys.readouterr()
    core = tmp_path / "core.elf"
    assert main(["export", str(run), "--elf", str(core)]) == 0
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 2 and "the dump is partial" in err[0], err
    assert err[1] == f"dumpbed: open it with: gdb {symbols(run)} {core}"  # the booted kernel's symbols
    dump = dumpfmt.read_image(run / "dump.img")
    usable = [a for a in dump.areas if dump.area_vouched(a)]
    assert 0 < len(usable) < len(dump.areas)
    with open(core, "rb") as f:
        got = sorted((s["p_paddr"], s["p_filesz"]) for s in ELFFile(f).iter_segments() if s["p_type"] == "PT_LOAD")
    assert got == sorted((a.phys_addr, a.length) for a in usable)
    truth = json.loads((run / "snapshot" / "registers.json").read_text())
    text = gdb(run, core, "info registers rip rsp")
    assert re.search(rf"^rip\s+0x{truth['rip']:x}\b", text, re.M), text
    assert re.search(rf"^rsp\s+0x{truth['rsp']:x}\b", text, re.M), text
