/*
 * On-disk structures of dump format version 4 (docs/dump-format.md). Every offset is a byte
 * offset from the start of the dump partition; every integer is little-endian (native here).
 * The directory and the CRC table have two slots each (1 and 2); a header names the one it
 * vouches for in `slot` (0: none yet).
 */
#ifndef DUMP_FORMAT_H
#define DUMP_FORMAT_H

#include <stddef.h>
#include <stdint.h>

#define DUMP_PAGE		4096u
#define DUMP_VERSION		4u	/* every dump: an uncompressed one is laid out as version 3 */
#define DUMP_HEADER_SIZE	512u
#define DUMP_LEADER_OFFSET	65536u
#define DUMP_DIR_OFFSET		69632u
#define DUMP_NREGS		32
#define DUMP_CHUNK_SIZE_MIN	65536u
#define DUMP_CRC_TABLE_MAX	(256u * 1024)
#define DUMP_PROGRESS_STEP	(64ull << 20)	/* a checkpoint after every 64 MiB of body */
#define DUMP_SLOTS		2u		/* directory and table slots: a leader names 1, 2 or 0 */

/* The writer's limits, which fix the directory slot's capacity (Layout). */
#define DUMP_DIR_MAX_COMPONENTS	32u
#define DUMP_DIR_MAX_AREAS	1024u
#define DUMP_DIR_MAX_CALLS	1024u
#define DUMP_DIR_MAX_VIOLATIONS	16u
/* The capacity of one directory slot. */
#define DUMP_DIR_BYTES \
	((64u + 128u * DUMP_DIR_MAX_COMPONENTS + 64u * DUMP_DIR_MAX_AREAS + \
	  24u * DUMP_DIR_MAX_CALLS + 32u * DUMP_DIR_MAX_VIOLATIONS + 4095u) & ~4095u)
_Static_assert(DUMP_DIR_BYTES == 98304, "dir_bytes as docs/dump-format.md says");

#define DUMP_STATUS_IN_PROGRESS	1u
#define DUMP_STATUS_COMPLETE	2u
#define DUMP_STATUS_FAILED	3u

/* The header's compression: how the body holds the areas' data. */
#define DUMP_COMPRESSION_NONE	0u
#define DUMP_COMPRESSION_LZ4	1u	/* LZ4 frames ("Compressed bodies") */

/* Compressed bodies: each area's data cut into frames of DUMP_FRAME_DATA bytes (the last
 * holds the rest), each a struct dump_frame_header and its payload, back to back. */
#define DUMP_FRAME_DATA		65536u
#define DUMP_FRAME_LZ4		1u	/* payload: one LZ4 block, 1..raw_bytes - 1 bytes */
#define DUMP_FRAME_RAW		2u	/* payload: the data itself */

#define DUMP_ROLE_PRIMARY	1u
#define DUMP_ROLE_SECONDARY	2u

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
#define COMPONENT_DISABLED	4u
#define COMPONENT_PENDING	5u
#define COMPONENT_PARTIAL	6u	/* being collected when the directory was written */

/* Component entry flags (the DMPF_* of dump/facility.h are the same bits). */
#define COMPONENT_FLAG_CALL_ON_RESTART	(1u << 0)
#define COMPONENT_FLAG_GLOBAL_BUFFER	(1u << 1)
#define COMPONENT_FLAG_RAS		(1u << 2)
#define COMPONENT_FLAG_UNLIMITED	(1u << 3)
#define COMPONENT_FLAG_PRIVATE_STAGING	(1u << 4)
#define COMPONENT_FLAG_SHARED_STAGING	(1u << 5)
#define COMPONENT_FLAG_SERIALIO		(1u << 6)
#define COMPONENT_FLAG_RTNFAILURE	(1u << 7)
#define COMPONENT_FLAG_PIN_VIOLATION	(1u << 8)
#define COMPONENT_FLAG_ENDED_EARLY	(1u << 9)
#define COMPONENT_FLAG_TABLE_REUSED	(1u << 10)

#define AREA_FLAG_VOLATILE	1u
#define AREA_FLAG_STAGED	2u

/* Call records: op and outcome (the DMPCALL_* of dump/facility.h are the same values). */
#define CALL_OP_START		1u
#define CALL_OP_AGAIN		2u
#define CALL_OP_DONE		3u
#define CALL_OP_ESTIMATE	4u
#define CALL_OUTCOME_TABLE	1u
#define CALL_OUTCOME_NONE	2u
#define CALL_OUTCOME_NEGATIVE	3u
#define CALL_OUTCOME_FAULT	4u
#define CALL_OUTCOME_VALUE	5u
#define CALL_OUTCOME_ACK	6u
#define CALL_OUTCOME_BAD	7u

#define VIOLATION_NO_COMPONENT	0xffffffffu

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
	uint32_t version;		/* 4 */
	uint32_t header_size;		/* 512 */
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
	uint64_t dir_offset;		/* directory slot 1; slot 2 follows it */
	uint32_t dir_bytes;		/* one slot */
	uint32_t dir_crc;		/* of directory slot `slot` */
	uint64_t crc_table_offset;	/* table slot 1 = dir_offset + 2 x dir_bytes; slot 2 follows */
	uint32_t crc_table_bytes;	/* one slot */
	uint32_t crc_table_crc;		/* of table slot `slot` */
	uint64_t body_offset;		/* crc_table_offset + 2 x crc_table_bytes */
	uint64_t body_bytes;		/* 0 until COMPLETE */
	uint64_t body_written;		/* durable and described by directory slot `slot` */
	uint64_t end_offset;		/* 0 until COMPLETE */
	uint32_t chunk_size;
	uint32_t component_count;
	uint32_t area_count;
	uint32_t max_transfer;
	uint32_t min_transfer;
	uint32_t level;
	uint64_t failure_offset;	/* FAILED: the offset the failure concerns, else 0 */
	uint64_t ram_bytes;
	uint64_t tsc_hz;
	uint64_t tsc_crash;
	uint64_t tsc_done;
	uint64_t estimate_bytes;
	uint64_t registers[DUMP_NREGS];
	uint32_t chunks_sealed;		/* floor(body_written / chunk_size); nchunks when COMPLETE */
	uint32_t device_role;
	uint32_t restart_error;
	uint32_t slot;			/* the slot vouched for: 1 or 2, 0 none yet */
	uint64_t restart_offset;
	uint32_t compression;		/* DUMP_COMPRESSION_*, as the leader's in the trailer */
	uint8_t reserved500[8];
	uint32_t header_crc;		/* CRC32C of bytes 0..507 */
} __attribute__((packed));

struct dump_dir_header {
	char magic[8];			/* "DBEDDIR\0" */
	uint32_t component_count;
	uint32_t area_count;
	uint32_t component_entry_size;	/* 128 */
	uint32_t area_entry_size;	/* 64 */
	uint32_t call_count;
	uint32_t call_entry_size;	/* 24 */
	uint32_t violation_count;
	uint32_t violation_entry_size;	/* 32 */
	uint32_t level;
	uint32_t generation;
	uint64_t estimate_bytes;
	uint64_t zero;
} __attribute__((packed));

struct dump_component_entry {
	char name[32];
	uint32_t kind;
	uint32_t status;
	uint32_t reason;
	uint32_t first_area;
	uint32_t area_count;
	uint32_t flags;
	uint32_t level;
	uint32_t table_generation;
	uint64_t estimate_bytes;
	uint64_t dumped_bytes;
	int32_t failure_rv;
	uint32_t staging_bytes;
	uint64_t failure_vaddr;
	uint64_t failure_handle;
	uint64_t global_buffer_bytes;
	uint8_t zero[16];
} __attribute__((packed));

struct dump_area_entry {
	char name[24];
	uint64_t phys_addr;
	uint64_t length;
	uint64_t disk_offset;
	uint32_t component;
	uint32_t flags;			/* AREA_FLAG_* */
	uint64_t stored_bytes;		/* in the body before its padding: = length uncompressed */
} __attribute__((packed));

struct dump_frame_header {
	uint32_t kind;			/* DUMP_FRAME_LZ4 / DUMP_FRAME_RAW */
	uint32_t raw_bytes;		/* data bytes: DUMP_FRAME_DATA, or the rest in an area's last */
	uint32_t payload_bytes;
	uint32_t raw_crc;		/* CRC32C of the frame's data */
} __attribute__((packed));

struct dump_call_record {
	uint32_t component;
	uint8_t op;			/* CALL_OP_* */
	uint8_t generation;
	uint8_t outcome;		/* CALL_OUTCOME_* */
	uint8_t zero;
	uint32_t entries;
	uint32_t level;
	int64_t value;
} __attribute__((packed));

struct dump_violation_record {
	uint64_t address;
	uint64_t rip;
	uint32_t error_code;
	uint32_t component;		/* VIOLATION_NO_COMPONENT: the facility or a driver */
	uint32_t op;
	uint32_t generation;
} __attribute__((packed));

struct dump_end_marker {
	char magic[8];			/* "DBEDEND\0" */
	uint32_t version;		/* 4 */
	uint32_t generation;
	uint8_t dump_id[16];
	uint64_t body_bytes;
	uint32_t nchunks;
	uint32_t crc_table_crc;		/* as the COMPLETE header's */
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
FMT_CHECK(dump_header, magic, 0);
FMT_CHECK(dump_header, version, 8);
FMT_CHECK(dump_header, header_size, 12);
FMT_CHECK(dump_header, block_size, 16);
FMT_CHECK(dump_header, status, 20);
FMT_CHECK(dump_header, dump_id, 24);
FMT_CHECK(dump_header, generation, 40);
FMT_CHECK(dump_header, crash_reason, 44);
FMT_CHECK(dump_header, crash_vector, 48);
FMT_CHECK(dump_header, failure, 52);
FMT_CHECK(dump_header, crash_error_code, 56);
FMT_CHECK(dump_header, crash_fault_addr, 64);
FMT_CHECK(dump_header, partition_bytes, 72);
FMT_CHECK(dump_header, dir_offset, 80);
FMT_CHECK(dump_header, dir_bytes, 88);
FMT_CHECK(dump_header, dir_crc, 92);
FMT_CHECK(dump_header, crc_table_offset, 96);
FMT_CHECK(dump_header, crc_table_bytes, 104);
FMT_CHECK(dump_header, crc_table_crc, 108);
FMT_CHECK(dump_header, body_offset, 112);
FMT_CHECK(dump_header, body_bytes, 120);
FMT_CHECK(dump_header, body_written, 128);
FMT_CHECK(dump_header, end_offset, 136);
FMT_CHECK(dump_header, chunk_size, 144);
FMT_CHECK(dump_header, component_count, 148);
FMT_CHECK(dump_header, area_count, 152);
FMT_CHECK(dump_header, max_transfer, 156);
FMT_CHECK(dump_header, min_transfer, 160);
FMT_CHECK(dump_header, level, 164);
FMT_CHECK(dump_header, failure_offset, 168);
FMT_CHECK(dump_header, ram_bytes, 176);
FMT_CHECK(dump_header, tsc_hz, 184);
FMT_CHECK(dump_header, tsc_crash, 192);
FMT_CHECK(dump_header, tsc_done, 200);
FMT_CHECK(dump_header, estimate_bytes, 208);
FMT_CHECK(dump_header, registers, 216);
FMT_CHECK(dump_header, chunks_sealed, 472);
FMT_CHECK(dump_header, device_role, 476);
FMT_CHECK(dump_header, restart_error, 480);
FMT_CHECK(dump_header, slot, 484);
FMT_CHECK(dump_header, restart_offset, 488);
FMT_CHECK(dump_header, compression, 496);
FMT_CHECK(dump_header, reserved500, 500);
FMT_CHECK(dump_header, header_crc, 508);

_Static_assert(sizeof(struct dump_dir_header) == 64, "dir header size");
FMT_CHECK(dump_dir_header, magic, 0);
FMT_CHECK(dump_dir_header, component_count, 8);
FMT_CHECK(dump_dir_header, area_count, 12);
FMT_CHECK(dump_dir_header, component_entry_size, 16);
FMT_CHECK(dump_dir_header, area_entry_size, 20);
FMT_CHECK(dump_dir_header, call_count, 24);
FMT_CHECK(dump_dir_header, call_entry_size, 28);
FMT_CHECK(dump_dir_header, violation_count, 32);
FMT_CHECK(dump_dir_header, violation_entry_size, 36);
FMT_CHECK(dump_dir_header, level, 40);
FMT_CHECK(dump_dir_header, generation, 44);
FMT_CHECK(dump_dir_header, estimate_bytes, 48);
FMT_CHECK(dump_dir_header, zero, 56);

_Static_assert(sizeof(struct dump_component_entry) == 128, "component entry size");
FMT_CHECK(dump_component_entry, name, 0);
FMT_CHECK(dump_component_entry, kind, 32);
FMT_CHECK(dump_component_entry, status, 36);
FMT_CHECK(dump_component_entry, reason, 40);
FMT_CHECK(dump_component_entry, first_area, 44);
FMT_CHECK(dump_component_entry, area_count, 48);
FMT_CHECK(dump_component_entry, flags, 52);
FMT_CHECK(dump_component_entry, level, 56);
FMT_CHECK(dump_component_entry, table_generation, 60);
FMT_CHECK(dump_component_entry, estimate_bytes, 64);
FMT_CHECK(dump_component_entry, dumped_bytes, 72);
FMT_CHECK(dump_component_entry, failure_rv, 80);
FMT_CHECK(dump_component_entry, staging_bytes, 84);
FMT_CHECK(dump_component_entry, failure_vaddr, 88);
FMT_CHECK(dump_component_entry, failure_handle, 96);
FMT_CHECK(dump_component_entry, global_buffer_bytes, 104);
FMT_CHECK(dump_component_entry, zero, 112);

_Static_assert(sizeof(struct dump_area_entry) == 64, "area entry size");
FMT_CHECK(dump_area_entry, name, 0);
FMT_CHECK(dump_area_entry, phys_addr, 24);
FMT_CHECK(dump_area_entry, length, 32);
FMT_CHECK(dump_area_entry, disk_offset, 40);
FMT_CHECK(dump_area_entry, component, 48);
FMT_CHECK(dump_area_entry, flags, 52);
FMT_CHECK(dump_area_entry, stored_bytes, 56);

_Static_assert(sizeof(struct dump_frame_header) == 16, "frame header size");
FMT_CHECK(dump_frame_header, kind, 0);
FMT_CHECK(dump_frame_header, raw_bytes, 4);
FMT_CHECK(dump_frame_header, payload_bytes, 8);
FMT_CHECK(dump_frame_header, raw_crc, 12);

_Static_assert(sizeof(struct dump_call_record) == 24, "call record size");
FMT_CHECK(dump_call_record, component, 0);
FMT_CHECK(dump_call_record, op, 4);
FMT_CHECK(dump_call_record, generation, 5);
FMT_CHECK(dump_call_record, outcome, 6);
FMT_CHECK(dump_call_record, zero, 7);
FMT_CHECK(dump_call_record, entries, 8);
FMT_CHECK(dump_call_record, level, 12);
FMT_CHECK(dump_call_record, value, 16);

_Static_assert(sizeof(struct dump_violation_record) == 32, "violation record size");
FMT_CHECK(dump_violation_record, address, 0);
FMT_CHECK(dump_violation_record, rip, 8);
FMT_CHECK(dump_violation_record, error_code, 16);
FMT_CHECK(dump_violation_record, component, 20);
FMT_CHECK(dump_violation_record, op, 24);
FMT_CHECK(dump_violation_record, generation, 28);

_Static_assert(sizeof(struct dump_end_marker) == 4096, "end marker size");
FMT_CHECK(dump_end_marker, magic, 0);
FMT_CHECK(dump_end_marker, version, 8);
FMT_CHECK(dump_end_marker, generation, 12);
FMT_CHECK(dump_end_marker, dump_id, 16);
FMT_CHECK(dump_end_marker, body_bytes, 32);
FMT_CHECK(dump_end_marker, nchunks, 40);
FMT_CHECK(dump_end_marker, crc_table_crc, 44);
FMT_CHECK(dump_end_marker, zero, 48);
FMT_CHECK(dump_end_marker, crc, 4092);

_Static_assert(sizeof(struct crash_record) == 1024, "crash record size");
FMT_CHECK(crash_record, magic, 0);
FMT_CHECK(crash_record, version, 8);
FMT_CHECK(crash_record, crash_reason, 12);
FMT_CHECK(crash_record, crash_vector, 16);
FMT_CHECK(crash_record, cpu, 20);
FMT_CHECK(crash_record, crash_error_code, 24);
FMT_CHECK(crash_record, crash_fault_addr, 32);
FMT_CHECK(crash_record, tsc_crash, 40);
FMT_CHECK(crash_record, registers, 48);
FMT_CHECK(crash_record, zero, 304);
FMT_CHECK(crash_record, fxsave, 512);

#endif
