/* Ring 3 execution of pure functions (see arch/x86/user_entry.S for why). */
#ifndef ARCH_X86_USERMODE_H
#define ARCH_X86_USERMODE_H

#define USER_DS			0x2b	/* GDT 0x28 | RPL 3 */
#define USER_CS			0x33	/* GDT 0x30 | RPL 3 */
#define KERNEL_DS_SELECTOR	0x10
#define USER_STACK_SIZE		(16 * 1024)
/* Exceptions taken in ring 3 land on this stack (TSS rsp0), and so does the crash handler
 * and the dump they start. */
#define RING0_STACK_SIZE	(16 * 1024)

#ifndef __ASSEMBLER__
#include <stdbool.h>
#include <stdint.h>

#include "arch/x86/cpu.h"

typedef uint64_t (*user_fn)(uint64_t a0, uint64_t a1, uint64_t a2);

/* Runs fn(a0, a1, a2) in ring 3 and returns its result. fn must only compute on memory:
 * no I/O, no privileged instructions, no calls to user_call(). */
uint64_t user_call(user_fn fn, uint64_t a0, uint64_t a1, uint64_t a2);

/* Set by usermode_init() (after the GDT, TSS and IDT); before that, fn runs directly. */
extern bool usermode_ready;
/* Trips to ring 3 so far (the dump's profile counts its own: dump/prof.h). */
extern uint64_t user_calls;

/* Call after gdt_init() and idt_init(). */
void usermode_init(void);

/* Whether this code runs in ring 3 (a user_call() trip): the low bits of CS. */
static inline bool in_ring3(void)
{
	uint16_t cs;

	__asm__ __volatile__("mov %%cs, %0" : "=r"(cs));
	return (cs & 3) == 3;
}

/* fn in ring 3: by a trip from ring 0, or at once where there is no ring 3 yet or the caller
 * is already there (a pure function that calls another: user_call() is not reentrant). */
static inline uint64_t run_unprivileged(user_fn fn, uint64_t a0, uint64_t a1, uint64_t a2)
{
	if (!usermode_ready || in_ring3())
		return fn(a0, a1, a2);
	user_calls++;
	return user_call(fn, a0, a1, a2);
}

/* A pure part of the dump path: in ring 3 once the crash turned interrupts off for good (from
 * then on irq_save() is pure, so code that shares state with an interrupt handler may run there
 * too); before that, at once in ring 0. */
static inline uint64_t run_unprivileged_after_crash(user_fn fn, uint64_t a0, uint64_t a1, uint64_t a2)
{
	return irqs_off_for_good ? run_unprivileged(fn, a0, a1, a2) : fn(a0, a1, a2);
}

void user_ud_entry(void);
extern char ring0_stack_top[];
#endif

#endif
