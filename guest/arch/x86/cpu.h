/* CPU registers, MSRs, CPUID and small privileged instructions. */
#ifndef ARCH_X86_CPU_H
#define ARCH_X86_CPU_H

#include <stdbool.h>
#include <stdint.h>

#define MSR_IA32_APIC_BASE	0x0000001b
#define MSR_EFER		0xc0000080
#define MSR_FS_BASE		0xc0000100
#define MSR_GS_BASE		0xc0000101

#define CR0_MP	(1ul << 1)
#define CR0_EM	(1ul << 2)
#define CR0_TS	(1ul << 3)
#define CR0_NE	(1ul << 5)
#define CR4_OSFXSR	(1ul << 9)
#define CR4_OSXMMEXCPT	(1ul << 10)

/* Selectors of the kernel GDT (arch/x86/gdt.c). */
#define KERNEL_CS	0x08
#define KERNEL_DS	0x10
#define KERNEL_TSS	0x18

struct cpuid_regs {
	uint32_t a, b, c, d;
};

static inline struct cpuid_regs cpuid(uint32_t leaf, uint32_t subleaf)
{
	struct cpuid_regs r;
	__asm__ __volatile__("cpuid"
			     : "=a"(r.a), "=b"(r.b), "=c"(r.c), "=d"(r.d)
			     : "a"(leaf), "c"(subleaf));
	return r;
}

static inline uint64_t rdmsr(uint32_t msr)
{
	uint32_t lo, hi;
	__asm__ __volatile__("rdmsr" : "=a"(lo), "=d"(hi) : "c"(msr));
	return lo | ((uint64_t)hi << 32);
}

static inline void wrmsr(uint32_t msr, uint64_t v)
{
	__asm__ __volatile__("wrmsr" : : "c"(msr), "a"((uint32_t)v), "d"((uint32_t)(v >> 32))
			     : "memory");
}

/* rdtsc is not ordered by itself; lfence keeps it from running ahead of earlier loads. */
static inline uint64_t rdtsc(void)
{
	uint32_t lo, hi;
	__asm__ __volatile__("lfence; rdtsc" : "=a"(lo), "=d"(hi) : : "memory");
	return lo | ((uint64_t)hi << 32);
}

#define DEFINE_READ_CR(n)                                                      \
	static inline uint64_t read_cr##n(void)                                \
	{                                                                      \
		uint64_t v;                                                    \
		__asm__ __volatile__("mov %%cr" #n ", %0" : "=r"(v));          \
		return v;                                                      \
	}
DEFINE_READ_CR(0)
DEFINE_READ_CR(2)
DEFINE_READ_CR(3)
DEFINE_READ_CR(4)
#undef DEFINE_READ_CR

static inline void write_cr0(uint64_t v) { __asm__ __volatile__("mov %0, %%cr0" : : "r"(v) : "memory"); }
static inline void write_cr3(uint64_t v) { __asm__ __volatile__("mov %0, %%cr3" : : "r"(v) : "memory"); }
static inline void write_cr4(uint64_t v) { __asm__ __volatile__("mov %0, %%cr4" : : "r"(v) : "memory"); }

#define DEFINE_READ_SEG(s)                                                     \
	static inline uint16_t read_##s(void)                                  \
	{                                                                      \
		uint16_t v;                                                    \
		__asm__ __volatile__("mov %%" #s ", %0" : "=r"(v));            \
		return v;                                                      \
	}
DEFINE_READ_SEG(cs)
DEFINE_READ_SEG(ds)
DEFINE_READ_SEG(es)
DEFINE_READ_SEG(fs)
DEFINE_READ_SEG(gs)
DEFINE_READ_SEG(ss)
#undef DEFINE_READ_SEG

static inline uint64_t read_rflags(void)
{
	uint64_t v;
	__asm__ __volatile__("pushfq; popq %0" : "=r"(v));
	return v;
}

static inline void cpu_relax(void) { __asm__ __volatile__("pause" ::: "memory"); }

/* Interrupts are never enabled in this kernel; this only documents intent at crash entry. */
static inline void irq_disable(void) { __asm__ __volatile__("cli" ::: "memory"); }

static inline void __attribute__((noreturn)) cpu_halt_forever(void)
{
	for (;;)
		__asm__ __volatile__("cli; hlt" ::: "memory");
}

struct cpu_features {
	bool sse42;		/* CPUID.1:ECX[20]: crc32 instruction */
	bool apic;		/* CPUID.1:EDX[9] */
	bool fxsr;		/* CPUID.1:EDX[24] */
	bool pdpe1gb;		/* CPUID.80000001h:EDX[26] */
	bool hypervisor;	/* CPUID.1:ECX[31] */
	char vendor[13];
	char hv_vendor[2][13];	/* signatures at leaves 0x40000000 and 0x40000100 */
	uint32_t family, model, stepping;
};

extern struct cpu_features cpu_features;

void cpu_init(void);

/* Set once by the crash path (kern/crash.c), never cleared: from then on IF stays 0, so
 * irq_save() has nothing to save and skips PUSHF and CLI, which a host that emulates ring 0
 * (docs/guest.md, "Ring 3") charges some 15 us for, several times in every SCSI command. */
extern bool irqs_off_for_good;

/* Interrupts off, returning the flags to give irq_restore(): for the few places the runtime
 * (interrupt-driven) I/O paths share state with their interrupt handlers. */
static inline uint64_t irq_save(void)
{
	uint64_t flags;

	if (irqs_off_for_good)
		return 0;
	__asm__ __volatile__("pushfq; popq %0; cli" : "=r"(flags) : : "memory");
	return flags;
}

static inline void irq_restore(uint64_t flags)
{
	if (flags & 0x200)
		__asm__ __volatile__("sti" : : : "memory");
}

#endif
