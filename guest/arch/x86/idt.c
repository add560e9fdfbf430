/*
 * IDT: all 256 vectors go to the stubs of trap_entry.S. Exceptions 0-31 (NMI included) are
 * what we expect; 32-255 can only be reached by a stray INT n since interrupts stay disabled,
 * and are crashes too. NMI, #DF and #MC run on IST stacks.
 */
#include <stdint.h>

#include "arch/x86/cpu.h"
#include "arch/x86/gdt.h"
#include "arch/x86/idt.h"
#include "arch/x86/io.h"
#include "arch/x86/trap.h"
#include "arch/x86/usermode.h"

struct idt_gate {
	uint16_t offset_low;
	uint16_t selector;
	uint8_t ist;
	uint8_t type_attr;
	uint16_t offset_mid;
	uint32_t offset_high;
	uint32_t reserved;
} __attribute__((packed));

struct idt_pointer {
	uint16_t limit;
	uint64_t base;
} __attribute__((packed));

#define GATE_INTERRUPT_DPL0 0x8e	/* present, DPL 0, 64-bit interrupt gate (clears IF) */

static struct idt_gate idt[256] __attribute__((aligned(16)));

_Static_assert(sizeof(struct idt_gate) == 16, "two quadwords a gate");

/* A gate in two quadwords (struct idt_gate's layout): the first holds the present bit. Written
 * whole, a gate is three stores instead of seven field by field, which counts where ring 0 is
 * emulated (arch/x86/user_entry.S): idt_init() writes 256. */
static inline void gate_words(uint64_t handler, int ist, uint64_t *lo, uint64_t *hi)
{
	*lo = (handler & 0xffff) | (uint64_t)KERNEL_CS << 16 | (uint64_t)(ist & 7) << 32 |
	      (uint64_t)GATE_INTERRUPT_DPL0 << 40 | ((handler >> 16) & 0xffff) << 48;
	*hi = handler >> 32;
}

void idt_set_gate(int vec, uint64_t handler, int ist)
{
	volatile uint64_t *w = (volatile uint64_t *)&idt[vec];
	uint64_t lo, hi;

	gate_words(handler, ist, &lo, &hi);
	/* The present bit goes last: a gate being rewritten is never half valid. */
	w[0] = 0;
	barrier();
	w[1] = hi;
	barrier();
	w[0] = lo;
}

static void idt_load(const void *base, uint16_t limit)
{
	struct idt_pointer p = { .limit = limit, .base = (uint64_t)base };

	__asm__ __volatile__("lidt %0" : : "m"(p) : "memory");
}

void idt_init(void)
{
	for (int vec = 0; vec < 256; vec++) {
		int ist = 0;

		if (vec == VEC_NMI)
			ist = IST_NMI;
		else if (vec == VEC_DF)
			ist = IST_DF;
		else if (vec == VEC_MC)
			ist = IST_MC;
		idt_set_gate(vec, (uint64_t)(trap_stubs + vec * TRAP_STUB_SIZE), ist);
	}
	/* An NMI during a crash returns (arch/x86/trap_entry.S). */
	idt_set_gate(VEC_NMI, (uint64_t)nmi_entry, IST_NMI);
	/* #UD first checks for the way back from ring 3 (arch/x86/user_entry.S). */
	idt_set_gate(VEC_UD, (uint64_t)user_ud_entry, 0);
	idt_load(idt, sizeof(idt) - 1);
}

void idt_load_empty(void)
{
	idt_load(0, 0);
}
