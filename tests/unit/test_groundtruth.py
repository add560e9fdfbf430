import pytest

from dumpbed.capture.groundtruth import REGISTER_NAMES, parse_info_registers
from dumpbed.errors import DumpbedError
from dumpbed.machine.memory import ram_regions
from dumpbed.units import parse_size

SAMPLE = """\
RAX=0000000000000001 RBX=0000000000000002 RCX=0000000000000003 RDX=0000000000000004
RSI=0000000000000005 RDI=0000000000000006 RBP=0000000000000007 RSP=0000000000108ff0
R8 =0000000000000008 R9 =0000000000000009 R10=000000000000000a R11=000000000000000b
R12=000000000000000c R13=000000000000000d R14=000000000000000e R15=000000000000000f
RIP=0000000000101234 RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=0
ES =0010 0000000000000000 ffffffff 00c09300 DPL=0 DS   [-WA]
CS =0008 0000000000000000 ffffffff 00a09b00 DPL=0 CS64 [-RA]
SS =0010 0000000000000000 ffffffff 00c09300 DPL=0 DS   [-WA]
DS =0010 0000000000000000 ffffffff 00c09300 DPL=0 DS   [-WA]
FS =0000 0000000000abc000 ffffffff 00c00000
GS =0000 0000000000def000 ffffffff 00c00000
LDT=0000 0000000000000000 0000ffff 00008200 DPL=0 LDT
TR =0000 0000000000000000 0000ffff 00008b00 DPL=0 TSS64-busy
GDT=     0000000000104000 0000002f
IDT=     0000000000105000 00000fff
CR0=80000011 CR2=0000000000000000 CR3=0000000000102000 CR4=00000020
DR0=0000000000000000 DR1=0000000000000000 DR2=0000000000000000 DR3=0000000000000000
DR6=00000000ffff0ff0 DR7=0000000000000400
EFER=0000000000000500
"""


def test_parses_every_header_register():
    regs = parse_info_registers(SAMPLE)
    assert set(regs) == set(REGISTER_NAMES)
    assert regs["rax"] == 1 and regs["r8"] == 8 and regs["r15"] == 15
    assert regs["rip"] == 0x101234 and regs["rflags"] == 0x246 and regs["rsp"] == 0x108FF0
    assert regs["cs"] == 8 and regs["ss"] == 0x10 and regs["fs"] == 0
    assert regs["fs_base"] == 0xABC000 and regs["gs_base"] == 0xDEF000
    assert regs["cr3"] == 0x102000 and regs["efer"] == 0x500


def test_ram_split_matches_pc_machine():
    assert ram_regions(256 << 20) == [(0, 256 << 20)]
    assert ram_regions(0xE0000000 - 4096) == [(0, 0xE0000000 - 4096)]
    assert ram_regions(6 << 30) == [(0, 0xC0000000), (4 << 30, (6 << 30) - 0xC0000000)]
    # max-ram-below-4g: a small guest with RAM above 4 GiB; a limit above the RAM changes nothing
    assert ram_regions(96 << 20, 64 << 20) == [(0, 64 << 20), (4 << 30, 32 << 20)]
    assert ram_regions(64 << 20, 128 << 20) == [(0, 64 << 20)]
    assert ram_regions(6 << 30, 2 << 30) == [(0, 2 << 30), (4 << 30, 4 << 30)]


@pytest.mark.parametrize("text,value", [("256M", 256 << 20), ("1G", 1 << 30), ("64MiB", 64 << 20), ("4096", 4096)])
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("text", ["", "lots", "-1G", "0", "inf", "nan", "1.0000001K"])
def test_parse_size_rejects(text):
    with pytest.raises(DumpbedError):
        parse_size(text)
