"""The crash record's FXSAVE image (docs/dump-format.md, "Crash record") against the x87/SSE
state QEMU reported at the crash instant (harness/dumpbed/capture/groundtruth.py's fpu.json).

FXSAVE (64-bit layout): FCW at 0, FSW at 2, the abridged tag byte at 4 (bit i: physical register
R(i) holds a value), MXCSR at 24, ST(0)..ST(7) at 32 + 16 j (10 bytes each: 64-bit mantissa, then
sign and exponent), XMM0..15 at 160 + 16 i. ST(j) is physical register R((TOP + j) mod 8), TOP
being FSW bits 11..13. QEMU 7.2 prints its own array (FPR0..7), which under TCG holds the
physical registers and under KVM the stack order (it copies KVM's XSAVE legacy area, in ST order,
as it is): `stack_order` says which. The instruction and data pointers and the opcode (bytes
6..23) are not in QEMU's report and are not compared.
"""
from __future__ import annotations

import struct


def problems(image: bytes, fpu: dict, stack_order: bool) -> list[str]:
    if len(image) < 512:
        return [f"the FXSAVE image is {len(image)} bytes, not 512"]
    out = []
    fcw, fsw, ftw = struct.unpack_from("<HHB", image, 0)
    mxcsr, = struct.unpack_from("<I", image, 24)
    for name, got in (("FCW", fcw), ("FSW", fsw), ("FTW", ftw), ("MXCSR", mxcsr)):
        want = fpu[name.lower()]
        if got != want:
            out.append(f"FXSAVE {name} 0x{got:x}, QEMU reported 0x{want:x} at the crash")
    top = (fpu["fsw"] >> 11) & 7
    for j in range(8):
        mantissa, upper = struct.unpack_from("<QH", image, 32 + 16 * j)
        k = j if stack_order else (top + j) & 7
        want = fpu["fpr"][k]
        if [mantissa, upper] != want:
            out.append(f"FXSAVE ST({j}) {upper:04x}:{mantissa:016x}, QEMU reported FPR{k} "
                       f"{want[1]:04x}:{want[0]:016x}")
    for i in range(16):
        low, high = struct.unpack_from("<QQ", image, 160 + 16 * i)
        if [high, low] != fpu["xmm"][i]:
            out.append(f"FXSAVE XMM{i} {high:016x}{low:016x}, QEMU reported "
                       f"{fpu['xmm'][i][0]:016x}{fpu['xmm'][i][1]:016x}")
    return out
