/* The x87/SSE register pattern (test/fpu_pattern.h). */
#include "test/fpu_pattern.h"
#include "arch/x86/cpu.h"
#include "arch/x86/usermode.h"

#define FCW_ROUND_UP	0x0b7f	/* default masks, 64-bit precision, rounding toward +inf */
#define MXCSR_ROUND_UP	0x5f80	/* default masks, rounding toward +inf */

static uint64_t xmm_words[32] __attribute__((aligned(16)));

/* Ring 3: on kvm-pvm, guest supervisor code is emulated and the emulator does not know these
 * instructions (docs/guest.md, "Ring 3"); user code runs natively. The registers are the CPU's,
 * whatever the ring. */
static uint64_t load_here(uint64_t seed, uint64_t unused1, uint64_t unused2)
{
	uint64_t x = seed ^ 0x9E3779B97F4A7C15ull;
	uint16_t fcw = FCW_ROUND_UP;
	uint32_t mxcsr = MXCSR_ROUND_UP;

	for (int i = 0; i < 32; i++) {	/* xorshift64 */
		x ^= x << 13;
		x ^= x >> 7;
		x ^= x << 17;
		xmm_words[i] = x;
	}
	__asm__ __volatile__(
		"fninit\n\t"
		"fldcw %[fcw]\n\t"
		"fldpi\n\t"
		"fld1\n\t"
		"fldl2e\n\t"
		"ldmxcsr %[mxcsr]\n\t"
		"movdqa 0(%[x]), %%xmm0\n\t"
		"movdqa 16(%[x]), %%xmm1\n\t"
		"movdqa 32(%[x]), %%xmm2\n\t"
		"movdqa 48(%[x]), %%xmm3\n\t"
		"movdqa 64(%[x]), %%xmm4\n\t"
		"movdqa 80(%[x]), %%xmm5\n\t"
		"movdqa 96(%[x]), %%xmm6\n\t"
		"movdqa 112(%[x]), %%xmm7\n\t"
		"movdqa 128(%[x]), %%xmm8\n\t"
		"movdqa 144(%[x]), %%xmm9\n\t"
		"movdqa 160(%[x]), %%xmm10\n\t"
		"movdqa 176(%[x]), %%xmm11\n\t"
		"movdqa 192(%[x]), %%xmm12\n\t"
		"movdqa 208(%[x]), %%xmm13\n\t"
		"movdqa 224(%[x]), %%xmm14\n\t"
		"movdqa 240(%[x]), %%xmm15\n\t"
		: : [fcw] "m"(fcw), [mxcsr] "m"(mxcsr), [x] "r"(xmm_words) : "memory");
	return 0;
}

void fpu_pattern_load(uint64_t seed)
{
	if (cpu_features.fxsr)
		run_unprivileged(load_here, seed, 0, 0);
}
