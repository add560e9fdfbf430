/* CRC32 (IEEE), byte-wise with a 256-entry table: only the GPT uses it, a few KiB at boot. */
#include "lib/crc.h"
#include "arch/x86/usermode.h"

static uint32_t table[256];
static bool table_ready;

static void build_table(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (c & 1 ? 0xedb88320u : 0);
		table[i] = c;
	}
	table_ready = true;
}

static uint64_t crc32_update_here(uint64_t crc, uint64_t buf, uint64_t len)
{
	const uint8_t *p = (const uint8_t *)(uintptr_t)buf;
	uint32_t c = (uint32_t)crc;

	if (!table_ready)
		build_table();
	while (len--)
		c = (c >> 8) ^ table[(c ^ *p++) & 0xff];
	return c;
}

/* In ring 3 (arch/x86/user_entry.S): a pure computation, and the table's too. */
uint32_t crc32_update(uint32_t crc, const void *buf, size_t len)
{
	return (uint32_t)run_unprivileged(crc32_update_here, crc, (uintptr_t)buf, len);
}

uint32_t crc32(const void *buf, size_t len)
{
	return ~crc32_update(CRC32_INIT, buf, len);
}
