#ifndef TEST_FPU_PATTERN_H
#define TEST_FPU_PATTERN_H

#include <stdint.h>

/*
 * A test fixture: load the x87 and SSE registers with a state no reset leaves (values on the
 * x87 stack, a non-default rounding in FCW and MXCSR, XMM0..15 from the seed), so the host can
 * tell the crash record's FXSAVE image from a zeroed or default one. The kernel itself never
 * touches x87/SSE state (-mgeneral-regs-only): it stays as loaded until the crash.
 */
void fpu_pattern_load(uint64_t seed);

#endif
