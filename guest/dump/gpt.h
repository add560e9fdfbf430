#ifndef DUMP_GPT_H
#define DUMP_GPT_H

#include <stdint.h>

/* Reads `nblocks` logical blocks at `lba` into buf; returns 0 or an errno. */
typedef int (*blk_read_fn)(void *ctx, uint64_t lba, void *buf, uint32_t nblocks);

struct gpt_disk {
	void *ctx;
	blk_read_fn read;
	uint32_t block_size;	/* 512 or 4096 */
	uint64_t nblocks;
};

struct gpt_partition {
	uint64_t first_lba;	/* in logical blocks */
	uint64_t last_lba;	/* inclusive */
	uint32_t index;		/* entry number in the array */
	char name[37];		/* UTF-16LE name, ASCII part */
};

/* 8f3c2a5e-6b1d-4c7e-9a40-d0b3e1f2a7c9, in GPT's on-disk byte order. */
extern const uint8_t gpt_dumpbed_dump_type[16];

/*
 * Validate the primary GPT (signature, header CRC32, entry-array CRC32) and find the first
 * partition of the given type. Returns 0, ENOENT (no such partition), EINVAL (bad GPT) or the
 * read error. `why` gets a one-word reason on failure.
 */
int gpt_find_partition(const struct gpt_disk *disk, const uint8_t type_guid[16],
		       struct gpt_partition *out, const char **why);

/* Formats a GUID stored in GPT byte order as text. buf: at least 37 bytes. */
void gpt_guid_to_text(const uint8_t guid[16], char *buf);

#endif
