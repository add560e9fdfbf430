#ifndef LIB_CRC_H
#define LIB_CRC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * CRC32C (Castagnoli, reflected 0x82F63B78): the dump format's checksum.
 * crc32c_update() works on the raw register (start with CRC32C_INIT, finish with ~), so a
 * checksum can be fed in pieces; crc32c() does a whole buffer.
 */
#define CRC32C_INIT 0xffffffffu

void crc32c_init(void);
uint32_t crc32c_update(uint32_t crc, const void *buf, size_t len);
uint32_t crc32c(const void *buf, size_t len);
/* Same as crc32c_update() but computed in the current ring: for code already in ring 3. */
uint32_t crc32c_compute(uint32_t crc, const void *buf, size_t len);
bool crc32c_uses_hw(void);
/* Known-answer test of both the hardware and the table implementation. */
bool crc32c_selftest(void);

/* CRC32 (IEEE 802.3, reflected 0xEDB88320), as used by GPT. Same calling convention. */
#define CRC32_INIT 0xffffffffu
uint32_t crc32_update(uint32_t crc, const void *buf, size_t len);
uint32_t crc32(const void *buf, size_t len);

#endif
