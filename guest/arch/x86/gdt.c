/*
 * GDT and TSS. The GDT itself is set up in boot.S (needed before long mode); here we add the
 * TSS whose interrupt stack table gives the NMI, #DF and #MC handlers stacks of their own, so
 * they work whatever state the interrupted stack is in.
 */
#include "arch/x86/gdt.h"
#include "arch/x86/cpu.h"
#include "arch/x86/paging.h"
#include "arch/x86/usermode.h"
#include "lib/dumpstate.h"
#include "lib/string.h"

struct tss64 {
	uint32_t reserved0;
	uint64_t rsp[3];
	uint64_t reserved1;
	uint64_t ist[7];
	uint64_t reserved2;
	uint16_t reserved3;
	uint16_t iomap_base;
} __attribute__((packed));

#define NMI_STACK_SIZE	(16 * 1024)
#define DF_STACK_SIZE	(16 * 1024)	/* the dump of a double fault runs on it */
#define SMALL_IST_SIZE	(4 * 1024)

extern uint64_t gdt[];

/* All dump path state (lib/dumpstate.h): the crash path points the NMI IST entry at the
 * nested-NMI stack and pin.c rsp0 at its own stack; the crash handler and the dump run on the
 * IST stacks. */
static struct tss64 tss __dumpstate __attribute__((aligned(64)));
char nmi_stack_bottom[NMI_STACK_SIZE] __dumpstate __attribute__((aligned(16)));
static char df_stack[DF_STACK_SIZE] __dumpstate __attribute__((aligned(16)));
/* NMIs that arrive while a crash is handled (kern/crash.c: counted and ignored) run here, never
 * on the stack the dump runs on (which, for an NMI crash, is the NMI stack above). */
static char nested_nmi_stack[SMALL_IST_SIZE] __dumpstate __attribute__((aligned(16)));
static char mc_stack[SMALL_IST_SIZE] __dumpstate __attribute__((aligned(16)));
#define nmi_stack_top_addr ((uint64_t)(nmi_stack_bottom + NMI_STACK_SIZE))

void gdt_init(void)
{
	uint64_t base = (uint64_t)&tss;
	uint64_t limit = sizeof(tss) - 1;

	memset(&tss, 0, sizeof(tss));
	tss.ist[IST_NMI - 1] = nmi_stack_top_addr;
	tss.ist[IST_DF - 1] = (uint64_t)(df_stack + sizeof(df_stack));
	tss.ist[IST_MC - 1] = (uint64_t)(mc_stack + sizeof(mc_stack));
	tss.rsp[0] = (uint64_t)ring0_stack_top;	/* entries from ring 3 */
	tss.iomap_base = sizeof(tss);	/* no I/O permission bitmap: ring 3 has no port access */

	/* 64-bit available TSS descriptor (type 9), present, DPL 0: 16 bytes. */
	gdt[KERNEL_TSS / 8] = (limit & 0xffff) | ((base & 0xffffff) << 16) | (0x89ull << 40) |
			      (((limit >> 16) & 0xf) << 48) | (((base >> 24) & 0xff) << 56);
	gdt[KERNEL_TSS / 8 + 1] = base >> 32;

	__asm__ __volatile__("ltr %w0" : : "r"((uint16_t)KERNEL_TSS) : "memory");

	/* A kernel stack overflow faults on the guard page and becomes a #DF on df_stack. */
	paging_guard_kernel_stack();
}

void gdt_nmi_stack_for_nested(void)
{
	tss.ist[IST_NMI - 1] = (uint64_t)(nested_nmi_stack + sizeof(nested_nmi_stack));
}
