/* The dump's profile (dump/prof.h). */
#include "dump/prof.h"
#include "arch/x86/pin.h"
#include "arch/x86/tsc.h"
#include "arch/x86/usermode.h"
#include "kern/result.h"
#include "lib/dumpstate.h"

/* Written during the dump: dump path state. */
static uint64_t cycles[PROF_NCAT] __dumpstate, count[PROF_NCAT] __dumpstate, write_bytes __dumpstate;
static uint64_t zip_in __dumpstate;
static uint64_t t0 __dumpstate, calls0 __dumpstate, cr3_0 __dumpstate;

void prof_start(void)
{
	t0 = rdtsc();
	calls0 = user_calls;
	cr3_0 = pin_cr3_writes;
}

void prof_end(enum prof_cat cat, uint64_t start)
{
	cycles[cat] += rdtsc() - start;
	count[cat]++;
}

void prof_bytes(uint64_t bytes)
{
	write_bytes += bytes;
}

void prof_zip_in(uint64_t bytes)
{
	zip_in += bytes;
}

static uint64_t empty_trip(uint64_t a0, uint64_t a1, uint64_t a2)
{
	(void)a1;
	(void)a2;
	return a0;
}

/* One ring 3 trip's cycles, the best of a few (the dump's are not timed one by one). */
static uint64_t user_call_cycles(void)
{
	uint64_t best = ~0ull;

	for (int i = 0; i < 16; i++) {
		uint64_t t = rdtsc();

		run_unprivileged(empty_trip, 0, 0, 0);
		t = rdtsc() - t;
		if (t < best)
			best = t;
	}
	return best;
}

void prof_report(void)
{
	uint64_t total = rdtsc() - t0;
	uint64_t calls = user_calls - calls0, cr3 = pin_cr3_writes - cr3_0;	/* before the trips timed here */

	result_line_unechoed("PROFILE tsc_hz=%llu total=%llu crc=%llu crc_n=%llu copy=%llu copy_n=%llu write=%llu "
			     "write_n=%llu write_bytes=%llu flush=%llu flush_n=%llu meta=%llu meta_n=%llu device=%llu "
			     "device_n=%llu pin=%llu pin_n=%llu lines=%llu lines_n=%llu calls=%llu calls_n=%llu "
			     "zip=%llu zip_n=%llu zip_in=%llu user_calls=%llu user_call=%llu cr3_writes=%llu",
			     (unsigned long long)tsc_hz, (unsigned long long)total,
			     (unsigned long long)cycles[PROF_CRC], (unsigned long long)count[PROF_CRC],
			     (unsigned long long)cycles[PROF_COPY], (unsigned long long)count[PROF_COPY],
			     (unsigned long long)cycles[PROF_WRITE], (unsigned long long)count[PROF_WRITE],
			     (unsigned long long)write_bytes,
			     (unsigned long long)cycles[PROF_FLUSH], (unsigned long long)count[PROF_FLUSH],
			     (unsigned long long)cycles[PROF_META], (unsigned long long)count[PROF_META],
			     (unsigned long long)cycles[PROF_DEVICE], (unsigned long long)count[PROF_DEVICE],
			     (unsigned long long)cycles[PROF_PIN], (unsigned long long)count[PROF_PIN],
			     (unsigned long long)cycles[PROF_LINES], (unsigned long long)count[PROF_LINES],
			     (unsigned long long)cycles[PROF_CALLS], (unsigned long long)count[PROF_CALLS],
			     (unsigned long long)cycles[PROF_ZIP], (unsigned long long)count[PROF_ZIP],
			     (unsigned long long)zip_in,
			     (unsigned long long)calls, (unsigned long long)user_call_cycles(), (unsigned long long)cr3);
}
