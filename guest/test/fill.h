#ifndef TEST_FILL_H
#define TEST_FILL_H

#include <stdint.h>

#define FILL_MULTIPLIER 0x9E3779B97F4A7C15ull

/* Write (addr * FILL_MULTIPLIER) ^ seed into every 8-byte word of usable RAM from the first
 * page boundary after the kernel image to the end of each usable region. Returns bytes filled. */
uint64_t fill_ram(uint64_t seed);

#endif
