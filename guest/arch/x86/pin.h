/*
 * Pinned memory, after AIX pin()/unpin(), and its enforcement while a dump runs
 * (docs/components.md, "Pinned memory"): the dump-time page tables map only pinned memory
 * (writable) and the areas being dumped (read-only); any other touch faults, and the fault
 * comes back to the innermost pin_guarded_call() as a recorded violation.
 */
#ifndef ARCH_X86_PIN_H
#define ARCH_X86_PIN_H

#include <stdbool.h>
#include <stdint.h>

/* Pin / unpin a range (page granular, reference counted). 0, EINVAL or ENOMEM. */
int pin(const void *addr, uint64_t len);
int unpin(const void *addr, uint64_t len);
/* Physical ranges (device registers): the same, by address. */
int pin_phys(uint64_t phys, uint64_t len);
int unpin_phys(uint64_t phys, uint64_t len);
bool pin_is_pinned(uint64_t phys, uint64_t len);
/* How many pages are pinned (for the self-tests: DUMPINIT pins, DUMPTERM unpins). */
uint64_t pin_pinned_pages(void);

/* Dump time: switch to page tables mapping only pinned memory. 0 or ENOMEM. */
int pin_enforce_begin(void);
/* Map an area being dumped read-only (pinned pages stay writable). 0, EFAULT if not RAM-like
 * (unmapped before enforcement), ENOMEM if out of page tables. */
int pin_map_dumped(uint64_t phys, uint64_t len);
/* Back to the normal identity map. */
void pin_enforce_end(void);
/* Page-table switches so far (entering and leaving enforcement, and each EPT flush): the dump
 * profile counts its own (dump/prof.h). */
extern uint64_t pin_cr3_writes;
bool pin_enforcing(void);

typedef uint64_t (*pin_guarded_fn)(uint64_t a0, uint64_t a1, uint64_t a2);
/*
 * fn(a0, a1, a2), with a pinning violation inside it caught: then the violation hook has
 * been called, *violated is true and 0 is returned. Nests (the facility guards each routine
 * call; dumpsys guards the whole dump on a device).
 */
uint64_t pin_guarded_call(pin_guarded_fn fn, uint64_t a0, uint64_t a1, uint64_t a2,
			  bool *violated);

/* Who hears of a pinning violation: the dump facility registers dmp_note_violation() at boot
 * (arch/ does not call up into dump/). Until then violations are counted only. */
typedef void (*pin_violation_fn)(uint64_t address, uint64_t rip, uint32_t error_code);
void pin_set_violation_hook(pin_violation_fn fn);

/* Called from the page-fault path; returns only if the fault is not a pinning violation. */
void pin_check_fault(uint64_t cr2, uint64_t rip, uint64_t error_code);

/* The first crash: forget enforcement and guards left from before it (an NMI that landed in
 * pin_selftest()), so the dump starts from the normal map and its own guards only. */
void pin_abandon(void);

/*
 * Self-test (for the shell's `selftest`; not while a dump runs): with enforcement on, a read
 * of a mapped but unpinned page and a write to a dumped (read-only) page, from ring 0 and
 * from ring 3, inside pin_guarded_call(), must each come back as a violation; nested guards
 * and the reference counts are checked too; then the normal map is back. Interrupts are off
 * meanwhile; the violations it provokes are not left in dmp_state. 0 if all is well, else
 * the number of the first check that failed (printed), or an errno from pin_enforce_begin.
 */
int pin_selftest(void);

#endif
