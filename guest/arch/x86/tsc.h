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
/* The milliseconds left until `deadline`, rounded up (at least 1 while it has not passed); 0
 * once it has. */
static inline uint32_t ms_until(uint64_t deadline)
{
	int64_t left = (int64_t)(deadline - rdtsc());
	uint64_t ms;

	if (left <= 0)
		return 0;
	ms = (tsc_to_us((uint64_t)left) + 999) / 1000;
	return ms > UINT32_MAX ? UINT32_MAX : ms ? (uint32_t)ms : 1;
}

void udelay(uint64_t us);

#endif
