/* CRC32 (IEEE), byte-wise with a 256-entry table: only the GPT uses it, a few KiB at boot. */
#include "lib/crc.h"

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

uint32_t crc32_update(uint32_t crc, const void *buf, size_t len)
{
	const uint8_t *p = buf;

	if (!table_ready)
		build_table();
	while (len--)
		crc = (crc >> 8) ^ table[(crc ^ *p++) & 0xff];
	return crc;
}

uint32_t crc32(const void *buf, size_t len)
{
	return ~crc32_update(CRC32_INIT, buf, len);
}
