"""The dump disk's layout: what layout.json records (docs/artifacts.md).

A DiskLayout fully determines the disk: its size, block size, canary seed and GPT. The image
builder writes the canary and the GPT from it, and the validator regenerates both from it to
prove that nothing outside the dump was touched.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from dumpbed.errors import DumpbedError
from dumpbed.units import KiB, MiB

DUMP_PARTITION_TYPE = "8f3c2a5e-6b1d-4c7e-9a40-d0b3e1f2a7c9"
DUMP_PARTITION_NAME = "dumpbed-dump"
LINUX_FILESYSTEM_TYPE = "0fc63daf-8483-4772-8e79-3d69d8477de4"
DATA_PARTITION_NAME = "data"

BLOCK_SIZES = (512, 4096)
GPT_ENTRY_COUNT = 128
GPT_ENTRY_SIZE = 128
ALIGNMENT = MiB

# What for_dump reserves around the body of a dump (docs/dump-format.md):
# the untouched 64 KiB, the leader slot, a directory of up to 16 Ki entries, the largest chunk
# CRC table the writer makes (256 KiB) plus its page, the end marker and the largest trailer.
_DUMP_METADATA_BYTES = 64 * KiB + 4 * KiB + MiB + 260 * KiB + 4 * KiB + 4 * KiB
# Body allowance beyond RAM: page rounding of areas, the crash record, small components.
_BODY_FIXED_MARGIN = 4 * MiB
SPARSE_DATA_BYTES = 1 << 30  # a data partition larger than this is left as a hole


class LayoutError(DumpbedError):
    """layout.json is missing, unreadable or describes an impossible disk."""


@dataclass(frozen=True)
class Partition:
    name: str
    type_guid: str
    unique_guid: str
    first_lba: int
    last_lba: int

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "type_guid": self.type_guid,
            "unique_guid": self.unique_guid,
            "first_lba": self.first_lba,
            "last_lba": self.last_lba,
        }


@dataclass(frozen=True)
class DiskLayout:
    size_bytes: int
    block_size: int
    canary_seed: int
    disk_guid: str
    partitions: tuple[Partition, ...] = field(default_factory=tuple)
    image: str = "dump.img"
    format: str = "raw"
    version: int = 1
    # Byte ranges the harness never writes (no canary) and that must stay unallocated in the
    # sparse image: how a disk of several TiB is checked without writing TiBs of canary.
    holes: tuple[tuple[int, int], ...] = ()

    # -- geometry ---------------------------------------------------------------------------

    @property
    def total_blocks(self) -> int:
        return self.size_bytes // self.block_size

    @property
    def entry_array_blocks(self) -> int:
        return (GPT_ENTRY_COUNT * GPT_ENTRY_SIZE + self.block_size - 1) // self.block_size

    @property
    def first_usable_lba(self) -> int:
        return 2 + self.entry_array_blocks

    @property
    def last_usable_lba(self) -> int:
        return self.total_blocks - 2 - self.entry_array_blocks

    @property
    def dump_partition(self) -> Partition:
        found = [p for p in self.partitions if p.type_guid == DUMP_PARTITION_TYPE]
        if len(found) != 1:
            raise LayoutError(f"layout has {len(found)} dump partitions (type {DUMP_PARTITION_TYPE}), need 1")
        return found[0]

    @property
    def dump_offset(self) -> int:
        """Byte offset of the dump partition on the disk."""
        return self.dump_partition.first_lba * self.block_size

    @property
    def data_offset(self) -> int:
        """Byte offset of the data partition (where the runtime workload reads and writes)."""
        found = [p for p in self.partitions if p.name == DATA_PARTITION_NAME]
        if len(found) != 1:
            raise LayoutError(f"layout has {len(found)} data partitions, need 1")
        return found[0].first_lba * self.block_size

    @property
    def dump_size(self) -> int:
        """Size of the dump partition in bytes."""
        p = self.dump_partition
        return (p.last_lba - p.first_lba + 1) * self.block_size

    def partition_span(self, p: Partition) -> tuple[int, int]:
        """[start, end) byte range of a partition on the disk."""
        return p.first_lba * self.block_size, (p.last_lba + 1) * self.block_size

    # -- JSON -------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {
            "version": self.version,
            "image": self.image,
            "format": self.format,
            "size_bytes": self.size_bytes,
            "block_size": self.block_size,
            "canary_seed": self.canary_seed,
            "disk_guid": self.disk_guid,
            "partitions": [p.to_dict() for p in self.partitions],
            "holes": [list(h) for h in self.holes],
        }

    @classmethod
    def from_dict(cls, data: object, source: str = "layout") -> "DiskLayout":
        """Build and validate a layout; any problem is a LayoutError naming the field."""
        if not isinstance(data, dict):
            raise LayoutError(f"{source}: expected a JSON object")

        def get(obj: dict, key: str, kind: type, where: str):
            if key not in obj:
                raise LayoutError(f"{source}: missing {where}{key}")
            value = obj[key]
            if kind is int and (isinstance(value, bool) or not isinstance(value, int)):
                raise LayoutError(f"{source}: {where}{key} must be an integer, not {value!r}")
            if kind is str and not isinstance(value, str):
                raise LayoutError(f"{source}: {where}{key} must be a string, not {value!r}")
            return value

        parts_raw = data.get("partitions")
        if not isinstance(parts_raw, list):
            raise LayoutError(f"{source}: partitions must be a list")
        parts = []
        for i, p in enumerate(parts_raw):
            where = f"partitions[{i}]."
            if not isinstance(p, dict):
                raise LayoutError(f"{source}: partitions[{i}] must be an object")
            parts.append(
                Partition(
                    name=get(p, "name", str, where),
                    type_guid=_normal_guid(get(p, "type_guid", str, where), f"{source}: {where}type_guid"),
                    unique_guid=_normal_guid(get(p, "unique_guid", str, where), f"{source}: {where}unique_guid"),
                    first_lba=get(p, "first_lba", int, where),
                    last_lba=get(p, "last_lba", int, where),
                )
            )
        layout = cls(
            version=get(data, "version", int, ""),
            image=get(data, "image", str, ""),
            format=get(data, "format", str, ""),
            size_bytes=get(data, "size_bytes", int, ""),
            block_size=get(data, "block_size", int, ""),
            canary_seed=get(data, "canary_seed", int, ""),
            disk_guid=_normal_guid(get(data, "disk_guid", str, ""), f"{source}: disk_guid"),
            partitions=tuple(parts),
            holes=_holes(data.get("holes", []), source),
        )
        layout.check(source)
        return layout

    def check(self, source: str = "layout") -> None:
        """Raise LayoutError if the layout cannot describe a real GPT disk."""
        if self.version != 1:
            raise LayoutError(f"{source}: version {self.version} unsupported (need 1)")
        if self.format != "raw":
            raise LayoutError(f"{source}: format {self.format!r} unsupported (need raw)")
        if not self.image or "/" in self.image or self.image in (".", ".."):
            raise LayoutError(f"{source}: image must be a plain file name, not {self.image!r}")
        if self.block_size not in BLOCK_SIZES:
            raise LayoutError(f"{source}: block_size {self.block_size} unsupported (512 or 4096)")
        if self.size_bytes <= 0 or self.size_bytes % self.block_size:
            raise LayoutError(f"{source}: size_bytes {self.size_bytes} is not a positive multiple of {self.block_size}")
        if not 0 <= self.canary_seed < 1 << 32:
            raise LayoutError(f"{source}: canary_seed {self.canary_seed} does not fit in 32 bits")
        if self.last_usable_lba < self.first_usable_lba:
            raise LayoutError(f"{source}: disk of {self.size_bytes} bytes is too small for a GPT")
        if not 1 <= len(self.partitions) <= GPT_ENTRY_COUNT:
            raise LayoutError(f"{source}: {len(self.partitions)} partitions (1..{GPT_ENTRY_COUNT} allowed)")
        spans = []
        for p in self.partitions:
            if len(p.name.encode("utf-16-le")) > 72:
                raise LayoutError(f"{source}: partition name {p.name!r} longer than 36 UTF-16 units")
            if not self.first_usable_lba <= p.first_lba <= p.last_lba <= self.last_usable_lba:
                raise LayoutError(
                    f"{source}: partition {p.name!r} LBAs {p.first_lba}..{p.last_lba} outside the usable "
                    f"range {self.first_usable_lba}..{self.last_usable_lba}"
                )
            spans.append((p.first_lba, p.last_lba, p.name))
        spans.sort()
        for (_, last, name), (first, _, other) in zip(spans, spans[1:]):
            if first <= last:
                raise LayoutError(f"{source}: partitions {name!r} and {other!r} overlap")
        self.dump_partition  # raises unless exactly one
        dump_start, dump_end = self.partition_span(self.dump_partition)
        previous_end = 0
        for start, end in self.holes:
            if not (previous_end <= start < end <= self.size_bytes) or start % MiB or end % MiB:
                raise LayoutError(f"{source}: hole [{start}, {end}) is not a sorted, MiB-aligned range of the disk")
            if start < dump_end and dump_start < end:
                raise LayoutError(f"{source}: hole [{start}, {end}) overlaps the dump partition")
            previous_end = end

    # -- construction -----------------------------------------------------------------------

    @classmethod
    def for_dump(
        cls,
        ram_bytes: int,
        block_size: int = 512,
        canary_seed: int | None = None,
        data_bytes: int = MiB,
        image: str = "dump.img",
    ) -> "DiskLayout":
        """A disk with a small data partition and a dump partition big enough for ram_bytes.

        The dump partition holds the format's metadata, the body (RAM plus 1/16 plus 4 MiB for
        page rounding and extra components) and the trailer. Partitions are 1 MiB aligned.
        GUIDs derive from the canary seed, which is random when not given (and recorded).
        """
        if block_size not in BLOCK_SIZES:
            raise LayoutError(f"block size {block_size} unsupported (512 or 4096)")
        if ram_bytes <= 0:
            raise LayoutError(f"RAM size {ram_bytes} must be positive")
        if data_bytes <= 0:
            raise LayoutError(f"data partition size {data_bytes} must be positive")
        if canary_seed is None:
            canary_seed = secrets.randbits(32)
        if not 0 <= canary_seed < 1 << 32:
            raise LayoutError(f"canary seed {canary_seed} does not fit in 32 bits")

        body = ram_bytes + ram_bytes // 16 + _BODY_FIXED_MARGIN
        dump_bytes = _round_up(_DUMP_METADATA_BYTES + body, ALIGNMENT)
        return cls.with_dump_partition(dump_bytes, block_size, canary_seed, image, data_bytes=data_bytes)

    @classmethod
    def with_dump_partition(
        cls,
        dump_bytes: int,
        block_size: int,
        canary_seed: int,
        image: str,
        data_bytes: int = 0,
    ) -> "DiskLayout":
        """A disk whose dump partition is exactly dump_bytes: 1 MiB in, after a data partition of
        data_bytes (rounded up to 1 MiB; none for 0), with 1 MiB or more after it for the backup
        GPT and a 1 MiB aligned end. GUIDs derive from the canary seed. for_dump's disks, and the
        dump server's own images (net/server.py, `--dir`)."""
        if block_size not in BLOCK_SIZES:
            raise LayoutError(f"block size {block_size} unsupported (512 or 4096)")
        if dump_bytes <= 0 or dump_bytes % block_size:
            raise LayoutError(f"dump partition size {dump_bytes} is not a positive multiple of {block_size}")
        if data_bytes < 0:
            raise LayoutError(f"data partition size {data_bytes} is negative")
        data_start = ALIGNMENT
        data_end = data_start + _round_up(data_bytes, ALIGNMENT)
        dump_start = data_end
        dump_end = dump_start + dump_bytes
        size = _round_up(dump_end + ALIGNMENT, ALIGNMENT)  # room for the backup GPT, keeps the end aligned
        b = block_size
        partitions = (
            Partition(
                DATA_PARTITION_NAME, LINUX_FILESYSTEM_TYPE, derived_guid(canary_seed, "data"),
                data_start // b, data_end // b - 1,
            ),
        ) if data_bytes else ()
        partitions += (
            Partition(
                DUMP_PARTITION_NAME, DUMP_PARTITION_TYPE, derived_guid(canary_seed, "dump"),
                dump_start // b, dump_end // b - 1,
            ),
        )
        # A big data partition is left sparse: canary on its first and last MiB only.
        holes = ((data_start + MiB, data_end - MiB),) if data_end - data_start > SPARSE_DATA_BYTES else ()
        layout = cls(
            size_bytes=size,
            block_size=block_size,
            canary_seed=canary_seed,
            disk_guid=derived_guid(canary_seed, "disk"),
            partitions=partitions,
            image=image,
            holes=holes,
        )
        layout.check("with_dump_partition")
        return layout

    def save(self, path: str | Path) -> None:
        save(self, path)


def _holes(raw: object, source: str) -> tuple[tuple[int, int], ...]:
    if not isinstance(raw, list) or not all(
        isinstance(h, list) and len(h) == 2 and all(isinstance(v, int) and not isinstance(v, bool) for v in h)
        for h in raw
    ):
        raise LayoutError(f"{source}: holes must be a list of [start, end] integer pairs")
    return tuple((h[0], h[1]) for h in raw)


def derived_guid(seed: int, what: str) -> str:
    """A random-looking (version 4) GUID that is a pure function of the seed and a label."""
    digest = hashlib.sha256(f"dumpbed-gpt:{seed}:{what}".encode()).digest()
    return str(uuid.UUID(bytes=digest[:16], version=4))


def load(path: str | Path) -> DiskLayout:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise LayoutError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as e:
        raise LayoutError(f"{path}: cannot read: {e}") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise LayoutError(f"{path}: not valid JSON: {e}") from None
    return DiskLayout.from_dict(data, str(path))


def save(layout: DiskLayout, path: str | Path) -> None:
    layout.check()
    Path(path).write_text(json.dumps(layout.to_dict(), indent=2) + "\n")


def _normal_guid(text: str, where: str) -> str:
    try:
        return str(uuid.UUID(text))
    except ValueError:
        raise LayoutError(f"{where}: {text!r} is not a GUID") from None


def _round_up(value: int, multiple: int) -> int:
    return -(-value // multiple) * multiple
