#ifndef TEST_SCRATCH_H
#define TEST_SCRATCH_H

#include <stdint.h>

/*
 * Scratch memory for the console's test tools: `bytes` of free RAM past the kernel image,
 * 2 MiB aligned and below 4 GiB, or NULL when the memory map has none there. Interactive use
 * only: whatever was there (the fill pattern) is overwritten, and nothing else owns it.
 */
uint8_t *test_scratch(uint64_t bytes);

#endif
