/*
 * CRC32C. With SSE4.2 (CPUID.1:ECX[20]) the crc32 instruction does 8 bytes at a time;
 * otherwise slicing-by-8 tables, built at boot. Both are checked against the standard check
 * value at boot (crc32c_selftest).
 */
#include "lib/crc.h"
#include "arch/x86/cpu.h"
#include "arch/x86/usermode.h"
#include "lib/string.h"

#define CRC32C_POLY_REFLECTED 0x82f63b78u

static uint32_t table[8][256];
static bool use_hw;

static uint64_t build_tables_here(uint64_t unused0, uint64_t unused1, uint64_t unused2)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;

		for (int k = 0; k < 8; k++)
			c = (c >> 1) ^ (c & 1 ? CRC32C_POLY_REFLECTED : 0);
		table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			table[t][i] = (table[t - 1][i] >> 8) ^ table[0][table[t - 1][i] & 0xff];
	return 0;
}

/* The tables are built in ring 3 (arch/x86/user_entry.S): a pure computation. */
void crc32c_init(void)
{
	run_unprivileged(build_tables_here, 0, 0, 0);
	use_hw = cpu_features.sse42;
}

bool crc32c_uses_hw(void)
{
	return use_hw;
}

static uint32_t crc32c_sw(uint32_t crc, const uint8_t *p, size_t len)
{
	while (len && ((uintptr_t)p & 7)) {
		crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
		len--;
	}
	while (len >= 8) {
		uint64_t w;

		memcpy(&w, p, 8);
		w ^= crc;
		crc = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff] ^ table[5][(w >> 16) & 0xff] ^
		      table[4][(w >> 24) & 0xff] ^ table[3][(w >> 32) & 0xff] ^
		      table[2][(w >> 40) & 0xff] ^ table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
	return crc;
}

static uint32_t crc32c_hw(uint32_t crc, const uint8_t *p, size_t len)
{
	uint64_t c = crc;

	while (len && ((uintptr_t)p & 7)) {
		__asm__("crc32b %1, %k0" : "+r"(c) : "rm"(*p));
		p++;
		len--;
	}
	while (len >= 32) {
		const uint64_t *q = (const uint64_t *)p;

		__asm__("crc32q %1, %0" : "+r"(c) : "rm"(q[0]));
		__asm__("crc32q %1, %0" : "+r"(c) : "rm"(q[1]));
		__asm__("crc32q %1, %0" : "+r"(c) : "rm"(q[2]));
		__asm__("crc32q %1, %0" : "+r"(c) : "rm"(q[3]));
		p += 32;
		len -= 32;
	}
	while (len >= 8) {
		__asm__("crc32q %1, %0" : "+r"(c) : "rm"(*(const uint64_t *)p));
		p += 8;
		len -= 8;
	}
	while (len--) {
		__asm__("crc32b %1, %k0" : "+r"(c) : "rm"(*p));
		p++;
	}
	return (uint32_t)c;
}

static uint64_t crc32c_update_here(uint64_t crc, uint64_t buf, uint64_t len)
{
	const uint8_t *p = (const uint8_t *)(uintptr_t)buf;

	return use_hw ? crc32c_hw((uint32_t)crc, p, len) : crc32c_sw((uint32_t)crc, p, len);
}

uint32_t crc32c_compute(uint32_t crc, const void *buf, size_t len)
{
	return (uint32_t)crc32c_update_here(crc, (uintptr_t)buf, len);
}

/*
 * In ring 3: besides speed on hypervisors that emulate supervisor code, this keeps the crc32
 * instruction away from such an emulator, which may not know it.
 */
uint32_t crc32c_update(uint32_t crc, const void *buf, size_t len)
{
	return (uint32_t)run_unprivileged(crc32c_update_here, crc, (uintptr_t)buf, len);
}

uint32_t crc32c(const void *buf, size_t len)
{
	return ~crc32c_update(CRC32C_INIT, buf, len);
}

static uint64_t selftest_here(uint64_t unused0, uint64_t unused1, uint64_t unused2);

bool crc32c_selftest(void)
{
	return run_unprivileged(selftest_here, 0, 0, 0);
}

static uint64_t selftest_here(uint64_t unused0, uint64_t unused1, uint64_t unused2)
{
	static const char check[] = "123456789";
	/* A buffer long and misaligned enough to exercise every loop of both versions. */
	static const char text[] = "dumpbed: the quick brown fox jumps over the lazy dog 0123456789";
	bool ok = ~crc32c_sw(CRC32C_INIT, (const uint8_t *)check, 9) == 0xe3069283u;

	if (use_hw) {
		ok = ok && ~crc32c_hw(CRC32C_INIT, (const uint8_t *)check, 9) == 0xe3069283u;
		for (size_t off = 0; off < 8; off++)
			ok = ok && crc32c_hw(CRC32C_INIT, (const uint8_t *)text + off, sizeof(text) - 1 - off) ==
					   crc32c_sw(CRC32C_INIT, (const uint8_t *)text + off, sizeof(text) - 1 - off);
	}
	return ok && ~(uint32_t)crc32c_update_here(CRC32C_INIT, (uintptr_t)check, 9) == 0xe3069283u;
}
