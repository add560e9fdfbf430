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

void idt_set_gate(int vec, uint64_t handler, int ist)
{
	struct idt_gate *g = &idt[vec];

	/* The present bit goes last: a gate being rewritten is never half valid. */
	g->type_attr = 0;
	barrier();
	g->offset_low = handler & 0xffff;
	g->selector = KERNEL_CS;
	g->ist = ist & 7;
	g->offset_mid = (handler >> 16) & 0xffff;
	g->offset_high = handler >> 32;
	g->reserved = 0;
	barrier();
	g->type_attr = GATE_INTERRUPT_DPL0;
}

static void idt_load(const void *base, uint16_t limit)
{
	struct idt_pointer p = { .limit = limit, .base = (uint64_t)base };

	__asm__ __volatile__("lidt %0" : : "m"(p) : "memory");
}

/* A gate as idt_set_gate() leaves it, in two quadwords: the first holds the present bit. */
static inline void gate_words(uint64_t handler, int ist, uint64_t *lo, uint64_t *hi)
{
	*lo = (handler & 0xffff) | (uint64_t)KERNEL_CS << 16 | (uint64_t)(ist & 7) << 32 |
	      (uint64_t)GATE_INTERRUPT_DPL0 << 40 | ((handler >> 16) & 0xffff) << 48;
	*hi = handler >> 32;
}

void idt_init(void)
{
	/* Not loaded yet (idt_load below): each gate is written whole, two stores instead of
	 * idt_set_gate()'s seven, which counts where ring 0 is emulated (arch/x86/user_entry.S). */
	_Static_assert(sizeof(struct idt_gate) == 16, "two quadwords a gate");
	uintptr_t base = (uintptr_t)idt;	/* aligned(16) */
	uint64_t *w = (uint64_t *)base;

	for (int vec = 0; vec < 256; vec++) {
		int ist = 0;

		if (vec == VEC_NMI)
			ist = IST_NMI;
		else if (vec == VEC_DF)
			ist = IST_DF;
		else if (vec == VEC_MC)
			ist = IST_MC;
		gate_words((uint64_t)(trap_stubs + vec * TRAP_STUB_SIZE), ist, &w[2 * vec], &w[2 * vec + 1]);
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
