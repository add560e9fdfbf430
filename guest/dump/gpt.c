/*
 * GPT, primary header only (LBA 1). GUIDs are stored mixed-endian: the first three fields
 * (4, 2, 2 bytes) little-endian, the last two (2 and 6 bytes) as plain bytes.
 */
#include "dump/gpt.h"
#include "lib/crc.h"
#include "lib/errno.h"
#include "lib/printf.h"
#include "lib/string.h"

#define GPT_HEADER_MIN		92
#define GPT_BUF_SIZE		(16 * 1024)

const uint8_t gpt_dumpbed_dump_type[16] = {
	0x5e, 0x2a, 0x3c, 0x8f,		/* 8f3c2a5e, little-endian */
	0x1d, 0x6b,			/* 6b1d */
	0x7e, 0x4c,			/* 4c7e */
	0x9a, 0x40,			/* 9a40, as bytes */
	0xd0, 0xb3, 0xe1, 0xf2, 0xa7, 0xc9,	/* d0b3e1f2a7c9 */
};

struct gpt_header {
	char signature[8];
	uint32_t revision;
	uint32_t header_size;
	uint32_t header_crc32;
	uint32_t reserved;
	uint64_t my_lba;
	uint64_t alternate_lba;
	uint64_t first_usable_lba;
	uint64_t last_usable_lba;
	uint8_t disk_guid[16];
	uint64_t entries_lba;
	uint32_t num_entries;
	uint32_t entry_size;
	uint32_t entries_crc32;
} __attribute__((packed));

struct gpt_entry {
	uint8_t type_guid[16];
	uint8_t unique_guid[16];
	uint64_t first_lba;
	uint64_t last_lba;
	uint64_t attributes;
	uint16_t name[36];
} __attribute__((packed));

/* Boot-time only; the dump path never reads the disk. */
static uint8_t gpt_buf[GPT_BUF_SIZE] __attribute__((aligned(4096)));

static uint64_t le64(const void *p)
{
	uint64_t v;

	memcpy(&v, p, 8);
	return v;
}

void gpt_guid_to_text(const uint8_t g[16], char *buf)
{
	snprintf(buf, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
		 g[3], g[2], g[1], g[0], g[5], g[4], g[7], g[6], g[8], g[9], g[10], g[11], g[12],
		 g[13], g[14], g[15]);
}

int gpt_find_partition(const struct gpt_disk *disk, const uint8_t type_guid[16],
		       struct gpt_partition *out, const char **why)
{
	struct gpt_header h;
	uint32_t crc, stored, found = 0;
	uint64_t array_bytes, lba, done;
	int err;

	*why = "ok";
	if (disk->block_size > GPT_BUF_SIZE || disk->nblocks < 3) {
		*why = "disk-too-small";
		return EINVAL;
	}
	err = disk->read(disk->ctx, 1, gpt_buf, 1);
	if (err) {
		*why = "read-error";
		return err;
	}
	memcpy(&h, gpt_buf, sizeof(h));
	if (memcmp(h.signature, "EFI PART", 8) != 0) {
		*why = "no-gpt-signature";
		return EINVAL;
	}
	if (h.header_size < GPT_HEADER_MIN || h.header_size > disk->block_size) {
		*why = "bad-gpt-header-size";
		return EINVAL;
	}
	stored = h.header_crc32;
	memset(gpt_buf + 16, 0, 4);	/* the CRC covers the header with its CRC field zeroed */
	crc = crc32(gpt_buf, h.header_size);
	if (crc != stored) {
		*why = "bad-gpt-header-crc";
		return EINVAL;
	}
	if (h.my_lba != 1 || h.entry_size < sizeof(struct gpt_entry) || h.entry_size % 8 ||
	    h.entry_size > GPT_BUF_SIZE || GPT_BUF_SIZE % h.entry_size || h.num_entries == 0 ||
	    h.num_entries > 65536 || h.entries_lba >= disk->nblocks) {
		*why = "bad-gpt-header";
		return EINVAL;
	}

	/* Read the entry array in buffer-sized pieces, CRC-ing and scanning as we go. */
	array_bytes = (uint64_t)h.num_entries * h.entry_size;
	crc = CRC32_INIT;
	lba = h.entries_lba;
	for (done = 0; done < array_bytes;) {
		uint64_t piece = array_bytes - done;
		uint32_t nblocks;

		if (piece > GPT_BUF_SIZE)
			piece = GPT_BUF_SIZE;
		nblocks = (uint32_t)((piece + disk->block_size - 1) / disk->block_size);
		if (lba + nblocks > disk->nblocks) {
			*why = "gpt-entries-past-end";
			return EINVAL;
		}
		err = disk->read(disk->ctx, lba, gpt_buf, nblocks);
		if (err) {
			*why = "read-error";
			return err;
		}
		crc = crc32_update(crc, gpt_buf, piece);
		for (uint32_t i = 0; i < piece / h.entry_size; i++) {
			const struct gpt_entry *e = (const void *)(gpt_buf + i * h.entry_size);
			uint32_t index = (uint32_t)(done / h.entry_size) + i;

			if (found || memcmp(e->type_guid, type_guid, 16) != 0)
				continue;
			out->first_lba = le64(&e->first_lba);
			out->last_lba = le64(&e->last_lba);
			out->index = index;
			for (int k = 0; k < 36; k++)
				out->name[k] = e->name[k] < 0x80 ? (char)e->name[k] : '?';
			out->name[36] = '\0';
			found = 1;
		}
		/* Every piece but the last is GPT_BUF_SIZE, a whole number of blocks. */
		lba += nblocks;
		done += piece;
	}
	if (~crc != h.entries_crc32) {
		*why = "bad-gpt-entries-crc";
		return EINVAL;
	}
	if (!found) {
		*why = "no-dump-partition";
		return ENOENT;
	}
	if (out->last_lba < out->first_lba || out->first_lba < h.first_usable_lba ||
	    out->last_lba > h.last_usable_lba || out->last_lba >= disk->nblocks) {
		*why = "dump-partition-out-of-range";
		return EINVAL;
	}
	return 0;
}
