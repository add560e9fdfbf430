/*
 * On-disk structures of dump format version 1 (docs/dump-format.md). Every offset is a byte
 * offset from the start of the dump partition; every integer is little-endian (native here).
 */
#ifndef DUMP_FORMAT_H
#define DUMP_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#define DUMP_PAGE		4096u
#define DUMP_VERSION		1u
#define DUMP_HEADER_SIZE	512u
#define DUMP_LEADER_OFFSET	65536u
#define DUMP_DIR_OFFSET		69632u
#define DUMP_NREGS		32
#define DUMP_CHUNK_SIZE_MIN	65536u
#define DUMP_CRC_TABLE_MAX	(256u * 1024)
#define DUMP_PROGRESS_STEP	(64ull << 20)

#define DUMP_STATUS_IN_PROGRESS	1u
#define DUMP_STATUS_COMPLETE	2u
#define DUMP_STATUS_FAILED	3u

#define CRASH_REASON_NMI	1u
#define CRASH_REASON_PANIC	2u
#define CRASH_REASON_EXCEPTION	3u
#define CRASH_VECTOR_NONE	0xffffffffu

#define COMPONENT_KIND_CRASH_RECORD	1u
#define COMPONENT_KIND_KERNEL		2u
#define COMPONENT_KIND_RAM		3u
#define COMPONENT_KIND_OTHER		4u

#define COMPONENT_DUMPED	1u
#define COMPONENT_EXCLUDED	2u
#define COMPONENT_FAILED	3u

#define AREA_FLAG_VOLATILE	1u

/* Register order of the header and the crash record. */
enum dump_reg {
	REG_RAX, REG_RBX, REG_RCX, REG_RDX, REG_RSI, REG_RDI, REG_RBP, REG_RSP,
	REG_R8, REG_R9, REG_R10, REG_R11, REG_R12, REG_R13, REG_R14, REG_R15,
	REG_RIP, REG_RFLAGS, REG_CS, REG_SS, REG_DS, REG_ES, REG_FS, REG_GS,
	REG_FS_BASE, REG_GS_BASE, REG_CR0, REG_CR2, REG_CR3, REG_CR4, REG_EFER,
	REG_RESERVED31,
};

struct dump_header {
	char magic[8];			/* "DBEDDUMP" */
	uint32_t version;
	uint32_t header_size;
	uint32_t block_size;
	uint32_t status;
	uint8_t dump_id[16];
	uint32_t generation;
	uint32_t crash_reason;
	uint32_t crash_vector;
	uint32_t failure;
	uint64_t crash_error_code;
	uint64_t crash_fault_addr;
	uint64_t partition_bytes;
	uint64_t dir_offset;
	uint32_t dir_bytes;
	uint32_t dir_crc;
	uint64_t crc_table_offset;
	uint32_t crc_table_bytes;
	uint32_t crc_table_crc;
	uint64_t body_offset;
	uint64_t body_bytes;
	uint64_t body_written;
	uint64_t end_offset;
	uint32_t chunk_size;
	uint32_t component_count;
	uint32_t area_count;
	uint32_t max_transfer;
	uint32_t min_transfer;
	uint32_t reserved164;
	uint64_t failure_offset;
	uint64_t ram_bytes;
	uint64_t tsc_hz;
	uint64_t tsc_crash;
	uint64_t tsc_done;
	uint64_t reserved208;
	uint64_t registers[DUMP_NREGS];
	uint8_t reserved472[36];
	uint32_t header_crc;		/* CRC32C of bytes 0..507 */
} __attribute__((packed));

struct dump_dir_header {
	char magic[8];			/* "DBEDDIR\0" */
	uint32_t component_count;
	uint32_t area_count;
	uint32_t component_entry_size;	/* 64 */
	uint32_t area_entry_size;	/* 64 */
	uint8_t zero[40];
} __attribute__((packed));

struct dump_component_entry {
	char name[32];
	uint32_t kind;
	uint32_t status;
	uint32_t reason;
	uint32_t first_area;
	uint32_t area_count;
	uint32_t flags;
	uint64_t reserved;
} __attribute__((packed));

struct dump_area_entry {
	char name[24];
	uint64_t phys_addr;
	uint64_t length;
	uint64_t disk_offset;
	uint32_t component;
	uint32_t flags;
	uint64_t reserved;
} __attribute__((packed));

struct dump_end_marker {
	char magic[8];			/* "DBEDEND\0" */
	uint32_t version;
	uint32_t generation;
	uint8_t dump_id[16];
	uint64_t body_bytes;
	uint32_t nchunks;
	uint32_t crc_table_crc;
	uint8_t zero[4092 - 48];
	uint32_t crc;			/* CRC32C of bytes 0..4091 */
} __attribute__((packed));

/* The data of the crash-record area; lives in .bss, filled by the crash handler. */
struct crash_record {
	char magic[8];			/* "DBCRASH\0" */
	uint32_t version;
	uint32_t crash_reason;
	uint32_t crash_vector;
	uint32_t cpu;
	uint64_t crash_error_code;
	uint64_t crash_fault_addr;
	uint64_t tsc_crash;
	uint64_t registers[DUMP_NREGS];
	uint8_t zero[208];
	uint8_t fxsave[512];		/* FXSAVE needs 16-byte alignment: record is aligned */
} __attribute__((packed, aligned(64)));

#define FMT_CHECK(type, field, off) \
	_Static_assert(offsetof(struct type, field) == (off), #type "." #field " at " #off)

_Static_assert(sizeof(struct dump_header) == 512, "header size");
FMT_CHECK(dump_header, status, 20);
FMT_CHECK(dump_header, dump_id, 24);
FMT_CHECK(dump_header, generation, 40);
FMT_CHECK(dump_header, failure, 52);
FMT_CHECK(dump_header, crash_error_code, 56);
FMT_CHECK(dump_header, partition_bytes, 72);
FMT_CHECK(dump_header, dir_offset, 80);
FMT_CHECK(dump_header, dir_crc, 92);
FMT_CHECK(dump_header, crc_table_offset, 96);
FMT_CHECK(dump_header, crc_table_crc, 108);
FMT_CHECK(dump_header, body_offset, 112);
FMT_CHECK(dump_header, body_written, 128);
FMT_CHECK(dump_header, end_offset, 136);
FMT_CHECK(dump_header, chunk_size, 144);
FMT_CHECK(dump_header, max_transfer, 156);
FMT_CHECK(dump_header, min_transfer, 160);
FMT_CHECK(dump_header, failure_offset, 168);
FMT_CHECK(dump_header, ram_bytes, 176);
FMT_CHECK(dump_header, tsc_done, 200);
FMT_CHECK(dump_header, registers, 216);
FMT_CHECK(dump_header, reserved472, 472);
FMT_CHECK(dump_header, header_crc, 508);
_Static_assert(sizeof(struct dump_dir_header) == 64, "dir header size");
_Static_assert(sizeof(struct dump_component_entry) == 64, "component entry size");
FMT_CHECK(dump_component_entry, kind, 32);
FMT_CHECK(dump_component_entry, first_area, 44);
FMT_CHECK(dump_component_entry, flags, 52);
_Static_assert(sizeof(struct dump_area_entry) == 64, "area entry size");
FMT_CHECK(dump_area_entry, phys_addr, 24);
FMT_CHECK(dump_area_entry, disk_offset, 40);
FMT_CHECK(dump_area_entry, component, 48);
FMT_CHECK(dump_area_entry, flags, 52);
_Static_assert(sizeof(struct dump_end_marker) == 4096, "end marker size");
FMT_CHECK(dump_end_marker, dump_id, 16);
FMT_CHECK(dump_end_marker, body_bytes, 32);
FMT_CHECK(dump_end_marker, nchunks, 40);
FMT_CHECK(dump_end_marker, crc_table_crc, 44);
FMT_CHECK(dump_end_marker, crc, 4092);
_Static_assert(sizeof(struct crash_record) == 1024, "crash record size");
FMT_CHECK(crash_record, tsc_crash, 40);
FMT_CHECK(crash_record, registers, 48);
FMT_CHECK(crash_record, zero, 304);
FMT_CHECK(crash_record, fxsave, 512);

#endif
