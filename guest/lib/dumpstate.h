/*
 * The dump path's own mutable state (docs/guest.md, "Dumpstate").
 *
 * Everything the crash path writes after the crash instant - the stacks the crash handler and
 * the dump run on, the crash record, the dump-time page tables, the drivers' rings and request
 * slots, the facility's and the writer's state and buffers - is declared `__dumpstate`. The
 * linker script gathers it into one page-aligned range, [__dumpstate_start, __dumpstate_end),
 * and the dump declares only that range VOLATILE: every other byte of the kernel image (its
 * .data and .bss included) must equal memory at the crash instant.
 *
 * The section is a .bss one (NOBITS: it takes no room in the ELF file), so only variables
 * without an initialiser, or with an all-zero one, can be put there; GCC refuses anything else
 * ("only zero initializers are allowed in section"). boot.S zeroes it with the rest of .bss.
 * Assembly puts its variables there with `.section .bss.dumpstate, "aw", @nobits`.
 */
#ifndef LIB_DUMPSTATE_H
#define LIB_DUMPSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define __dumpstate __attribute__((section(".bss.dumpstate")))

/* The range, page aligned (linker.ld). */
extern char __dumpstate_start[], __dumpstate_end[];

static inline bool in_dumpstate(const void *p, size_t len)
{
	uintptr_t a = (uintptr_t)p;

	return a >= (uintptr_t)__dumpstate_start && a <= (uintptr_t)__dumpstate_end &&
	       len <= (uintptr_t)__dumpstate_end - a;
}

#endif
