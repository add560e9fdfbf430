/* CPU feature detection and the FPU/SSE setup needed for FXSAVE of the crash context. */
#include "arch/x86/cpu.h"
#include "lib/dumpstate.h"
#include "lib/string.h"

struct cpu_features cpu_features;
/* The dump path's state (lib/dumpstate.h): the crash sets it after the snapshot's moment. */
bool irqs_off_for_good __dumpstate;

void cpu_init(void)
{
	struct cpuid_regs r = cpuid(0, 0);
	uint32_t max_ext;

	memcpy(cpu_features.vendor + 0, &r.b, 4);
	memcpy(cpu_features.vendor + 4, &r.d, 4);
	memcpy(cpu_features.vendor + 8, &r.c, 4);
	cpu_features.vendor[12] = '\0';

	r = cpuid(1, 0);
	cpu_features.sse42 = r.c & (1u << 20);
	cpu_features.apic = r.d & (1u << 9);
	cpu_features.fxsr = r.d & (1u << 24);
	cpu_features.stepping = r.a & 0xf;
	cpu_features.model = (r.a >> 4) & 0xf;
	cpu_features.family = (r.a >> 8) & 0xf;
	if (cpu_features.family == 0xf)
		cpu_features.family += (r.a >> 20) & 0xff;
	if (cpu_features.family >= 6)
		cpu_features.model |= ((r.a >> 16) & 0xf) << 4;

	cpu_features.hypervisor = r.c & (1u << 31);
	if (cpu_features.hypervisor) {
		uint32_t max_hv = cpuid(0x40000000u, 0).a;

		for (int i = 0; i < 2; i++) {
			struct cpuid_regs h = cpuid(0x40000000u + 0x100u * i, 0);

			if (i && max_hv < 0x40000100u && cpuid(0x40000100u, 0).a < 0x40000100u)
				break;	/* no second signature block */

			memcpy(cpu_features.hv_vendor[i] + 0, &h.b, 4);
			memcpy(cpu_features.hv_vendor[i] + 4, &h.c, 4);
			memcpy(cpu_features.hv_vendor[i] + 8, &h.d, 4);
			for (int k = 0; k < 12; k++)
				if (cpu_features.hv_vendor[i][k] < 0x20 || cpu_features.hv_vendor[i][k] > 0x7e)
					cpu_features.hv_vendor[i][k] = '\0';
		}
	}

	max_ext = cpuid(0x80000000u, 0).a;
	if (max_ext >= 0x80000001u)
		cpu_features.pdpe1gb = cpuid(0x80000001u, 0).d & (1u << 26);

	/*
	 * The kernel itself never touches x87/SSE state (it is built with -mgeneral-regs-only),
	 * but the crash handler FXSAVEs the interrupted context: make FXSAVE legal and complete
	 * (CR0.EM/TS clear, CR4.OSFXSR set so XMM registers are included).
	 */
	write_cr0((read_cr0() & ~(CR0_EM | CR0_TS)) | CR0_MP | CR0_NE);
	if (cpu_features.fxsr)
		write_cr4(read_cr4() | CR4_OSFXSR | CR4_OSXMMEXCPT);
	__asm__ __volatile__("fninit" ::: "memory");
}
