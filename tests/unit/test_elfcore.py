"""`dumpbed export --elf`: the ELF64 core of a synthetic dump, read back with pyelftools."""
from __future__ import annotations

import struct

import pytest
from elftools.elf.elffile import ELFFile

import synth
from dumpbed.cli import main

# user_regs_struct order (Linux x86-64), as gdb reads NT_PRSTATUS's pr_reg at offset 112
USER_REGS = ("r15 r14 r13 r12 rbp rbx r11 r10 r9 r8 rax rcx rdx rsi rdi orig_rax rip cs rflags rsp ss "
             "fs_base gs_base ds es fs gs").split()


def export(source, elf, *more) -> int:
    return main(["export", str(source), "--elf", str(elf), *more])


def read_core(path):
    f = open(path, "rb")
    return f, ELFFile(f)


def notes(elf) -> dict:
    seg = elf.get_segment(0)
    assert seg["p_type"] == "PT_NOTE"
    return {n["n_type"]: n for n in seg.iter_notes()}


def loads(elf) -> list:
    return [s for s in elf.iter_segments() if s["p_type"] == "PT_LOAD"]


def test_complete_dump_core_structure(good_run, tmp_path):
    core = tmp_path / "core.elf"
    assert export(good_run.dir, core) == 0
    f, elf = read_core(core)
    with f:
        assert elf.elfclass == 64 and elf.little_endian
        assert elf["e_type"] == "ET_CORE" and elf["e_machine"] == "EM_X86_64"
        # NT_PRSTATUS: the crash record's registers in user_regs_struct order
        found = notes(elf)
        assert set(found) == {"NT_PRSTATUS", "NT_FPREGSET"}  # NT_PRFPREG is NT_FPREGSET (2)
        prstatus = found["NT_PRSTATUS"]
        assert prstatus["n_name"] == "CORE" and prstatus["n_descsz"] == 336
        pr_reg = struct.unpack_from("<27Q", prstatus["n_desc"], 112)
        regs = dict(zip(synth.REGISTERS, good_run.registers))
        for name, value in zip(USER_REGS, pr_reg):
            assert value == (2**64 - 1 if name == "orig_rax" else regs[name]), name
        assert struct.unpack_from("<i", prstatus["n_desc"], 328)[0] == 1  # pr_fpvalid
        # NT_PRFPREG: the crash record's FXSAVE image
        record = good_run.area("crash-record").data
        assert found["NT_FPREGSET"]["n_descsz"] == 512
        assert found["NT_FPREGSET"]["n_desc"] == record[512:1024]
        # one PT_LOAD per area at its physical address, with its bytes
        segments = loads(elf)
        assert len(segments) == len(good_run.areas)
        by_addr = {}
        for seg in segments:
            assert seg["p_vaddr"] == seg["p_paddr"]
            assert seg["p_filesz"] == seg["p_memsz"]
            assert seg["p_offset"] % 4096 == seg["p_vaddr"] % 4096
            by_addr.setdefault(seg["p_paddr"], []).append(seg.data())
        for area in good_run.areas:
            assert area.data[:area.length] in by_addr[area.phys], area.name


def test_memory_areas_come_first(good_run, tmp_path):
    """Overlapping areas: the KERNEL and RAM areas come before the others (gdb takes the first)."""
    core = tmp_path / "core.elf"
    assert export(good_run.dir, core) == 0
    memory = [a for c in good_run.components if c.kind in (synth.KERNEL, synth.RAM) for a in c.areas]
    f, elf = read_core(core)
    with f:
        first = [(s["p_paddr"], s["p_filesz"]) for s in loads(elf)][:len(memory)]
    assert first == [(a.phys, a.length) for a in memory]


def test_a_byte_of_the_dump_shows_in_the_core(make_run, tmp_path):
    run = make_run()
    area = run.areas[-1]
    run.flip(run.area_disk_offset(area.name) + 5)
    run.reseal()  # a dump that reads complete, with different content
    core = tmp_path / "core.elf"
    assert export(run.image, core) == 0  # a bare image: its GPT finds the partition
    f, elf = read_core(core)
    with f:
        data = [s.data() for s in loads(elf) if s["p_paddr"] == area.phys and s["p_filesz"] == area.length]
    assert data and data[0][5] == area.data[5] ^ 0xFF and data[0][:5] == area.data[:5]


def test_partial_dump_exports_its_usable_areas(make_run, tmp_path, capsys):
    run = make_run(state="in-progress")
    core = tmp_path / "core.elf"
    assert export(run.dir, core) == 0
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "partial" in err, err
    listed = run.listed_areas
    assert 0 < len(listed) < len(run.areas)
    f, elf = read_core(core)
    with f:
        got = sorted((s["p_paddr"], s["p_filesz"]) for s in loads(elf))
    from dumpbed.reader import dumpfmt
    d = dumpfmt.read_image(run.image)
    assert d.status == "partial"
    assert got == sorted((a.phys_addr, a.length) for a in d.areas if d.area_vouched(a))
    assert len(got) <= len(listed)


def test_complete_dump_says_nothing(good_run, tmp_path, capsys):
    assert export(good_run.dir, tmp_path / "core.elf") == 0
    assert capsys.readouterr().err == ""


@pytest.mark.parametrize("damage", ["corrupt", "none"])
def test_no_usable_dump_is_an_error_and_writes_nothing(make_run, tmp_path, capsys, damage):
    if damage == "none":
        run = make_run(state="none")
    else:
        run = make_run()
        run.flip(run.area_disk_offset(run.areas[-1].name) + 5)  # a sealed chunk's CRC now fails
    core = tmp_path / "core.elf"
    assert export(run.dir, core) == 2
    err = capsys.readouterr().err
    assert err.startswith("dumpbed: error: ") and damage in err, err
    assert not core.exists()
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".core")] == []


def test_absent_source_is_an_error(tmp_path, capsys):
    assert export(tmp_path / "nothing", tmp_path / "core.elf") == 2
    assert capsys.readouterr().err.startswith("dumpbed: error: ")
    assert not (tmp_path / "core.elf").exists()


def test_existing_file_kept_unless_force(good_run, tmp_path, capsys):
    core = tmp_path / "core.elf"
    core.write_bytes(b"precious")
    assert export(good_run.dir, core) == 2
    assert "already exists" in capsys.readouterr().err
    assert core.read_bytes() == b"precious"
    assert export(good_run.dir, core, "--force") == 0
    assert core.read_bytes()[:4] == b"\x7fELF"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["core.elf", good_run.dir.name])
