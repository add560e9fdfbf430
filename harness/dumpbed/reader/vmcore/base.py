"""What every vmcore reader offers (docs/vmcore-formats.md, "API"), and how it classifies.

A reader settles the file's structure when it is opened: status complete, partial, corrupt,
unsupported or none, with a one-line reason and the findings in the order they were found.
Page data is read lazily; a page whose data turns out damaged when read (bad compressed
data) is a new finding, and the status becomes corrupt from then on (`verify()` reads every
page up front).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Optional

import numpy as np

from dumpbed.reader.vmcore import notes as notes_mod
from dumpbed.reader.vmcore.source import Source

STATUSES = ("complete", "partial", "corrupt", "unsupported", "none")
_RANK = {"complete": 0, "partial": 1, "corrupt": 2}
MAX_FINDINGS = 200


@dataclass
class Finding:
    status: str  # what it makes of the file: partial, corrupt, unsupported or none
    message: str


class Vmcore:
    """A vmcore of some format; subclasses fill in the pages."""

    format = "unknown"

    def __init__(self, source: Source):
        self.source = source
        self.status = "complete"
        self.reason = ""
        self.findings: list[Finding] = []
        self.page_size = 4096
        self.notes: list[notes_mod.Note] = []
        self.vmcoreinfo: dict[str, str] = {}
        self.vmcoreinfo_raw = b""
        self.header = None
        self._dumped = np.zeros(0, dtype=np.uint64)

    # ---------------------------------------------------------------------------------------
    # Classification
    # ---------------------------------------------------------------------------------------

    def note(self, status: str, message: str) -> None:
        """Record a finding; the status becomes the worse of the two (complete < partial <
        corrupt; none and unsupported are settled before any page is looked at)."""
        if len(self.findings) < MAX_FINDINGS:
            self.findings.append(Finding(status, message))
        if status in ("none", "unsupported"):
            if self.status not in ("none", "unsupported", "corrupt"):
                self.status, self.reason = status, message
            return
        if self.status in ("none", "unsupported"):
            return
        if _RANK[status] > _RANK[self.status]:
            self.status, self.reason = status, message

    @property
    def first_inconsistency(self) -> Optional[str]:
        for f in self.findings:
            if f.status == "corrupt":
                return f.message
        return None

    def read_notes(self, data: bytes, where: str) -> None:
        """The ELF notes and the VMCOREINFO text in them."""
        self.notes, problem = notes_mod.parse_notes(data)
        if problem:
            self.note("corrupt", f"{where}: {problem}")
        vi = notes_mod.vmcoreinfo_note(self.notes)
        if vi is not None and not self.vmcoreinfo_raw:
            self.set_vmcoreinfo(vi.desc, where)

    def set_vmcoreinfo(self, raw: bytes, where: str) -> None:
        self.vmcoreinfo_raw = raw
        self.vmcoreinfo, problem = notes_mod.parse_vmcoreinfo(raw)
        if problem:
            self.note("corrupt", f"{where}: {problem}")

    @property
    def cpus(self) -> list[notes_mod.CpuState]:
        return notes_mod.cpu_states(self.notes)

    # ---------------------------------------------------------------------------------------
    # Pages
    # ---------------------------------------------------------------------------------------

    def dumped_pfns(self) -> np.ndarray:
        """The page frame numbers whose data the file holds, ascending (uint64). Pages a
        partial file lost (their data past its end, their descriptors never written) are not
        among them."""
        return self._dumped

    def dumped_ranges(self) -> list[tuple[int, int]]:
        """dumped_pfns() as runs [start, end) of consecutive pfns."""
        p = self._dumped
        if not len(p):
            return []
        breaks = np.flatnonzero(np.diff(p) != 1)
        starts = np.concatenate(([0], breaks + 1))
        ends = np.concatenate((breaks, [len(p) - 1]))
        return [(int(p[s]), int(p[e]) + 1) for s, e in zip(starts, ends)]

    def is_dumped(self, pfn: int) -> bool:
        i = int(np.searchsorted(self._dumped, np.uint64(pfn))) if 0 <= pfn < 1 << 64 else len(self._dumped)
        return i < len(self._dumped) and int(self._dumped[i]) == pfn

    def read_page(self, pfn: int) -> Optional[bytes]:
        """The page_size bytes of page pfn, or None when the file does not hold it (excluded,
        lost, or its data is damaged: then a finding says so)."""
        raise NotImplementedError

    def pages(self) -> Iterator[tuple[int, bytes]]:
        """(pfn, bytes) of every page the file holds, ascending, read lazily; pages whose data
        is damaged are skipped (and noted)."""
        for pfn in self._dumped:
            data = self.read_page(int(pfn))
            if data is not None:
                yield int(pfn), data

    def verify(self) -> str:
        """Read every page (decompressing it); returns the status, which is corrupt if any
        page's data is damaged."""
        for _ in self.pages():
            pass
        return self.status

    def read_phys(self, paddr: int, size: int) -> Optional[bytes]:
        """size bytes of physical memory at paddr, or None if any page of them is not held."""
        if paddr < 0 or size < 0:
            return None
        out = bytearray()
        ps = self.page_size
        while size > 0:
            pfn, off = divmod(paddr, ps)
            page = self.read_page(pfn)
            if page is None:
                return None
            n = min(size, ps - off)
            out += page[off:off + n]
            paddr += n
            size -= n
        return bytes(out)

    # ---------------------------------------------------------------------------------------

    def summary(self) -> dict:
        """A JSON-able summary (what `dumpbed show` would print)."""
        return {"format": self.format, "status": self.status, "reason": self.reason,
                "first_inconsistency": self.first_inconsistency, "page_size": self.page_size,
                "dumped_pages": int(len(self._dumped)), "cpus": len(self.cpus),
                "osrelease": self.vmcoreinfo.get("OSRELEASE"),
                "findings": [f"{f.status}: {f.message}" for f in self.findings]}

    def close(self) -> None:
        self.source.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
