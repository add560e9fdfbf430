/* Time from the TSC, calibrated once against PIT channel 2 (polled, no interrupts). */
#ifndef ARCH_X86_TSC_H
#define ARCH_X86_TSC_H

#include <stdbool.h>
#include <stdint.h>

#include "arch/x86/cpu.h"

extern uint64_t tsc_hz;		/* calibrated TSC frequency; never 0 after tsc_calibrate() */
extern bool tsc_calibrated;	/* false if the PIT never answered and tsc_hz is a guess */

void tsc_calibrate(void);

uint64_t tsc_from_us(uint64_t us);
uint64_t tsc_to_us(uint64_t ticks);

/* A deadline is an absolute TSC value. */
static inline uint64_t deadline_after_us(uint64_t us) { return rdtsc() + tsc_from_us(us); }
static inline uint64_t deadline_after_ms(uint64_t ms) { return deadline_after_us(ms * 1000); }
static inline bool deadline_passed(uint64_t deadline) { return (int64_t)(rdtsc() - deadline) >= 0; }

void udelay(uint64_t us);

#endif
