#ifndef KERN_CRASH_H
#define KERN_CRASH_H

#include <stdbool.h>

#include "dump/format.h"

/* The interrupted CPU state of the (first) crash, in the format's layout. */
extern struct crash_record crash_record;

/* Set once boot is complete: a crash before that is a fatal boot error, not a dump. */
extern bool crash_dump_armed;

/* Print a message and crash with reason PANIC, recording the caller's registers. */
void panic(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));

const char *crash_reason_name(uint32_t reason);

/* A driver that enabled a device interrupt (the runtime workload) registers how to silence
 * it; the crash handler calls it first thing, before printing anything. One hook. */
void crash_set_mute_hook(void (*fn)(void));

/* NMIs that arrived while a crash was handled (ignored). */
uint32_t crash_nested_nmis(void);

/* Deliberate crashes (shell commands). Each raises its exception inside itself and returns
 * only if the exception did not come. */
#define CRASH_TEST_PF_ADDR	0x00000dead0000badull	/* canonical, PML4 slot 27: unmapped */
#define CRASH_TEST_GP_SELECTOR	0x80			/* GDT index 16, past its limit */
void crash_test_divide_error(void);		/* #DE, vector 0 */
void crash_test_invalid_opcode(void);		/* #UD, vector 6 (ud2 in ring 0) */
void crash_test_general_protection(void);	/* #GP(0x80), vector 13 */
void crash_test_page_fault(void);		/* #PF(0x2) at CRASH_TEST_PF_ADDR, vector 14 */
void crash_test_stack_overflow(void);		/* #PF on the guard page, then #DF(0), vector 8 */
/* Arm the ib700 watchdog for about `seconds` (even, 2..30) and spin with interrupts off; with
 * -action watchdog=inject-nmi its expiry is an NMI crash. Never returns. */
void crash_test_hang(unsigned seconds) __attribute__((noreturn));

#endif
